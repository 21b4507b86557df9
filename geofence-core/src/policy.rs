//! The decision: ordered rules, first match wins, else the default verdict.
//!
//! [`Policy::decide`] is the per-packet call: it parses the bytes, walks the rules and returns a
//! [`Verdict`], without allocating or locking. The country lookup happens at most once a packet,
//! and only when a rule that asks about countries could decide it.

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::country::{self, CountryCode, CountrySet};
use crate::db::{CountryDb, CountryTable};
use crate::packet::{self, PacketError, PacketMeta, Protocol};
use crate::prefix::{self, Coverage, PrefixList};

/// What to do with a packet: the answer a netfilter queue needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the packet through.
    Accept,
    /// Discard the packet.
    Drop,
    /// Let the packet through and set its netfilter mark, for later rules (`-m mark`) to act on.
    AcceptWithMark(u32),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::AcceptWithMark(mark) => write!(f, "accept mark={mark:#x}"),
        }
    }
}

/// An inclusive range of destination ports; a single port is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// The lowest port in the range.
    pub first: u16,
    /// The highest port in the range.
    pub last: u16,
}

impl PortRange {
    /// The range holding just `port`.
    pub fn single(port: u16) -> PortRange {
        PortRange { first: port, last: port }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One rule: every condition that is set must hold for the rule to match.
///
/// An empty `sources`, `protocols` or `ports`, and a `None` country set, mean "any".
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// A name for logs and counters.
    pub name: String,
    /// The source must be in at least one of these lists (a config's own or a built-in one).
    pub sources: Vec<String>,
    /// The source's country (or "unknown") must be in this set.
    pub countries: Option<CountrySet>,
    /// The source's country (or "unknown") must not be in this set.
    pub not_countries: Option<CountrySet>,
    /// The transport protocol must be one of these.
    pub protocols: Vec<Protocol>,
    /// The destination port must be in one of these ranges.
    pub ports: Vec<PortRange>,
    /// What a matching packet gets.
    pub verdict: Verdict,
}

impl Rule {
    /// A rule that matches every packet, to be narrowed by setting its fields.
    pub fn new(name: impl Into<String>, verdict: Verdict) -> Rule {
        Rule {
            name: name.into(),
            sources: Vec::new(),
            countries: None,
            not_countries: None,
            protocols: Vec::new(),
            ports: Vec::new(),
            verdict,
        }
    }

    fn matches_everything(&self) -> bool {
        self.sources.is_empty()
            && self.countries.is_none()
            && self.not_countries.is_none()
            && self.protocols.is_empty()
            && self.ports.is_empty()
    }

    /// Why this rule can never match on its own terms, if it cannot.
    fn never_matches(&self) -> Option<String> {
        if self.countries.is_some_and(|set| set.is_empty()) {
            return Some("its country set is empty".into());
        }
        if let (Some(inside), Some(outside)) = (self.countries, self.not_countries) {
            if inside.is_subset(&outside) {
                return Some("every country it requires is also one it excludes".into());
            }
        }
        if !self.ports.is_empty() && !self.protocols.is_empty() && !self.protocols.iter().any(|p| p.has_ports()) {
            return Some("it names ports, but none of its protocols carries ports".into());
        }
        None
    }
}

/// Why a policy cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A rule names a list that is neither defined nor built in.
    #[error("rule `{rule}` names list `{list}`, which is neither defined nor built in")]
    UnknownList {
        /// The rule's name.
        rule: String,
        /// The name it uses.
        list: String,
    },
    /// Two lists share a name, or a list takes a built-in name.
    #[error("list `{0}` is defined twice")]
    DuplicateList(String),
}

/// A rule that can never match, and why: for `config check` and start-up warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// The rule's position in the policy, from 0.
    pub index: usize,
    /// Why it never matches.
    pub reason: String,
}

/// Collects lists and rules, then builds a [`Policy`].
///
/// ```
/// use std::sync::Arc;
/// use geofence_core::{db::CountryTable, PolicyBuilder, Rule, Verdict};
/// let mut lan = Rule::new("lan", Verdict::Accept);
/// lan.sources.push("rfc1918".into());
/// let policy = PolicyBuilder::new(Verdict::Drop).rule(lan).build(Arc::new(CountryTable::empty()))?;
/// assert_eq!(policy.rules().len(), 1);
/// # Ok::<(), geofence_core::PolicyError>(())
/// ```
#[derive(Debug)]
pub struct PolicyBuilder {
    lists: Vec<(String, PrefixList)>,
    rules: Vec<Rule>,
    default: Verdict,
    malformed: Verdict,
}

impl PolicyBuilder {
    /// An empty policy whose packets all get `default`; packets that cannot be parsed are dropped.
    pub fn new(default: Verdict) -> PolicyBuilder {
        PolicyBuilder { lists: Vec::new(), rules: Vec::new(), default, malformed: Verdict::Drop }
    }

    /// Defines a named prefix list that rules can use in `sources`.
    pub fn list(mut self, name: impl Into<String>, list: PrefixList) -> PolicyBuilder {
        self.lists.push((name.into(), list));
        self
    }

    /// Appends a rule; rules are tried in the order they were added.
    pub fn rule(mut self, rule: Rule) -> PolicyBuilder {
        self.rules.push(rule);
        self
    }

    /// The verdict for packets that cannot be parsed (default: drop).
    pub fn on_malformed(mut self, verdict: Verdict) -> PolicyBuilder {
        self.malformed = verdict;
        self
    }

    /// The rules, in the order they will be tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The verdict for packets no rule matches.
    pub fn default_verdict(&self) -> Verdict {
        self.default
    }

    /// The verdict for packets that cannot be parsed.
    pub fn malformed_verdict(&self) -> Verdict {
        self.malformed
    }

    /// The rules that can never match: shadowed by an earlier catch-all rule, or contradictory.
    pub fn unreachable_rules(&self) -> Vec<Unreachable> {
        let mut found = Vec::new();
        let mut catch_all: Option<&str> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            let reason = match catch_all {
                Some(earlier) => Some(format!("it follows rule `{earlier}`, which matches every packet")),
                None => rule.never_matches().or_else(|| self.all_sources_empty(rule)),
            };
            if let Some(reason) = reason {
                found.push(Unreachable { index, reason });
            } else if rule.matches_everything() {
                catch_all = Some(&rule.name);
            }
        }
        found
    }

    fn all_sources_empty(&self, rule: &Rule) -> Option<String> {
        let all_empty = !rule.sources.is_empty()
            && rule.sources.iter().all(|name| self.lists.iter().any(|(n, list)| n == name && list.is_empty()));
        all_empty.then(|| "every list it names is empty".to_owned())
    }

    /// Resolves list names and builds the policy, which looks countries up in `db`.
    pub fn build(self, db: Arc<dyn CountryDb>) -> Result<Policy, PolicyError> {
        let mut lists: Vec<(String, PrefixList)> = Vec::new();
        for (name, list) in self.lists {
            if lists.iter().any(|(n, _)| *n == name) || prefix::built_in(&name).is_some() {
                return Err(PolicyError::DuplicateList(name));
            }
            lists.push((name, list));
        }
        let mut sources = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            sources.push(
                rule.sources
                    .iter()
                    .map(|name| resolve_list(&mut lists, name, &rule.name))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let db = Database::new(db);
        let answers = db.answers();
        let port_classes = PortClasses::new(&self.rules);
        let chunks = self
            .rules
            .chunks(RULES_PER_CHUNK)
            .zip(sources.chunks(RULES_PER_CHUNK))
            .map(|part| Chunk::new(part, &lists, &port_classes, &answers))
            .collect();
        Ok(Policy {
            chunks,
            port_classes,
            verdicts: self.rules.iter().map(|rule| rule.verdict).collect(),
            rules: self.rules,
            lists,
            default: self.default,
            malformed: self.malformed,
            db,
        })
    }
}

/// The index of list `name`, adding a built-in list the first time a rule uses it.
fn resolve_list(lists: &mut Vec<(String, PrefixList)>, name: &str, rule: &str) -> Result<usize, PolicyError> {
    if let Some(index) = lists.iter().position(|(n, _)| n == name) {
        return Ok(index);
    }
    let list = prefix::built_in(name)
        .ok_or_else(|| PolicyError::UnknownList { rule: rule.to_owned(), list: name.to_owned() })?;
    lists.push((name.to_owned(), list));
    Ok(lists.len() - 1)
}

/// Rules tested at once: one bit each in a `u64`.
const RULES_PER_CHUNK: usize = 64;

/// Up to 64 consecutive rules as the packet path tests them: every condition is a mask of the
/// rules it lets through, so a packet is tested against all of them at once, with a few loads
/// and no branch per rule. The first rule is bit 0.
struct Chunk {
    /// `protocols[p]`: the rules that admit protocol `p`.
    protocols: Box<[u64; 256]>,
    /// The rules that name no ports: those a packet without ports can match.
    any_port: u64,
    /// `ports[class]`: the rules that admit the destination ports of that class (see
    /// [`PortClasses`]).
    ports: Box<[u64]>,
    /// The rules that name no source lists.
    any_source: u64,
    /// Each list named (an index into the policy's lists), with the rules naming it.
    sources: Box<[(usize, u64)]>,
    /// The source conditions as an IPv4 source's first byte settles them.
    v4_sources: SourceIndex,
    /// The source conditions as an IPv6 source's first byte settles them.
    v6_sources: SourceIndex,
    /// The rules that ask nothing about countries.
    any_country: u64,
    /// `countries[key]`: the rules that admit the lookup result of that key (see
    /// [`Database::answers`]).
    countries: Box<[u64]>,
}

impl Chunk {
    /// The chunk of `rules`, whose source lists are resolved to `sources`, indices into `lists`.
    /// `answers` are the database's lookup results by key.
    fn new(
        (rules, sources): (&[Rule], &[Vec<usize>]),
        lists: &[(String, PrefixList)],
        port_classes: &PortClasses,
        answers: &[Option<CountryCode>],
    ) -> Chunk {
        let mut chunk = Chunk {
            protocols: Box::new([0; 256]),
            any_port: 0,
            ports: Box::default(),
            any_source: 0,
            sources: Box::default(),
            v4_sources: SourceIndex::default(),
            v6_sources: SourceIndex::default(),
            any_country: 0,
            countries: vec![0; answers.len()].into_boxed_slice(),
        };
        let mut ports = vec![0; port_classes.count];
        let mut named: Vec<(usize, u64)> = Vec::new();
        for ((rule, rule_sources), bit) in rules.iter().zip(sources).zip((0..).map(|n: u32| 1u64 << n)) {
            chunk.add_protocols(rule, bit);
            if rule.ports.is_empty() {
                chunk.any_port |= bit;
            }
            if rule.ports.is_empty() {
                ports.iter_mut().for_each(|rules| *rules |= bit);
            }
            // A range's ends are class boundaries: it covers whole classes, a run of them.
            for range in &rule.ports {
                let classes = port_classes.of(range.first)..=port_classes.of(range.last);
                ports.get_mut(classes).into_iter().flatten().for_each(|rules| *rules |= bit);
            }
            if rule_sources.is_empty() {
                chunk.any_source |= bit;
            }
            rule_sources.iter().for_each(|list| add_to(&mut named, *list, bit));
            chunk.add_countries(rule, bit, answers);
        }
        chunk.ports = ports.into_boxed_slice();
        let list = |index: usize| &lists[index].1;
        chunk.v4_sources = SourceIndex::new(chunk.any_source, &named, |index, first| list(index).coverage_v4(first));
        chunk.v6_sources = SourceIndex::new(chunk.any_source, &named, |index, first| list(index).coverage_v6(first));
        chunk.sources = named.into_boxed_slice();
        chunk
    }

    fn add_protocols(&mut self, rule: &Rule, bit: u64) {
        if rule.protocols.is_empty() {
            self.protocols.iter_mut().for_each(|rules| *rules |= bit);
        }
        for protocol in &rule.protocols {
            self.protocols[usize::from(protocol.0)] |= bit;
        }
    }

    /// A rule's country and not_country conditions, as one set of admitted lookup results.
    fn add_countries(&mut self, rule: &Rule, bit: u64, answers: &[Option<CountryCode>]) {
        let admitted = match (rule.countries, rule.not_countries) {
            (None, None) => {
                self.any_country |= bit;
                return;
            }
            (inside, outside) => inside.unwrap_or_else(CountrySet::everything).without(&outside.unwrap_or_default()),
        };
        for (rules, answer) in self.countries.iter_mut().zip(answers) {
            if admitted.contains(*answer) {
                *rules |= bit;
            }
        }
    }

    /// The rules that match, as a mask: the first candidate without a country condition,
    /// and before it those whose country condition admits the source (looked up through
    /// `look_up` only then, and once: `country` keeps the key).
    #[inline(always)]
    fn first_match<S: Fn(&Chunk) -> &SourceIndex, L: Fn(usize) -> bool>(
        &self,
        conditions: &Conditions<'_, S, L>,
        country: &mut Option<usize>,
        look_up: &impl Fn() -> usize,
    ) -> u64 {
        let by_port = self.by_protocol_and_port(conditions.meta, conditions.port_class);
        let candidates = self.by_source(by_port, (conditions.source_index)(self), conditions.first, conditions.in_list);
        let sure = candidates & self.any_country;
        let first_sure = sure & sure.wrapping_neg();
        // The candidates before the first sure match (all of them when there is none).
        let ask_country = candidates & !self.any_country & first_sure.wrapping_sub(1);
        let mut matched = first_sure;
        if ask_country != 0 {
            let key = match *country {
                Some(key) => key,
                None => *country.insert(look_up()),
            };
            matched |= ask_country & self.countries.get(key).copied().unwrap_or(0);
        }
        matched
    }

    /// The rules whose conditions other than sources and countries hold, for a packet whose
    /// destination port is of `port_class` (`None`: the packet has no ports).
    #[inline(always)]
    fn by_protocol_and_port(&self, meta: &PacketMeta, port_class: Option<usize>) -> u64 {
        let ports = match port_class {
            Some(class) => self.ports.get(class).copied().unwrap_or(0),
            None => self.any_port,
        };
        self.protocols[usize::from(meta.protocol.0)] & ports
    }

    /// Of the `candidates`, those whose source condition holds. Most sources are settled by
    /// their first byte in `index`; for the others `in_list` says whether the source is in a
    /// list, and a list is only searched when a candidate names it.
    #[inline(always)]
    fn by_source(&self, candidates: u64, index: &SourceIndex, first: u8, in_list: impl Fn(usize) -> bool) -> u64 {
        match index.settled(first, candidates) {
            Some(admitted) => candidates & admitted,
            None => self.by_source_lists(candidates, in_list),
        }
    }

    /// The few sources whose first byte leaves a list undecided.
    #[cold]
    #[inline(never)]
    fn by_source_lists(&self, candidates: u64, in_list: impl Fn(usize) -> bool) -> u64 {
        let mut admitted = self.any_source;
        for &(list, rules) in self.sources.iter() {
            if candidates & rules != 0 && in_list(list) {
                admitted |= rules;
            }
        }
        candidates & admitted
    }
}

/// What a packet brings to each chunk: its header, its port's class, and how to settle its
/// source (the family's index, the source's first byte, the list search).
struct Conditions<'a, S, L> {
    meta: &'a PacketMeta,
    port_class: Option<usize>,
    source_index: &'a S,
    first: u8,
    in_list: &'a L,
}

/// Destination ports sorted into classes: ports that no range of any rule tells apart share a
/// class, so one table read settles every port condition of a packet.
struct PortClasses {
    /// The class of each port.
    class: Box<[u16]>,
    /// How many classes there are.
    count: usize,
}

impl PortClasses {
    fn new(rules: &[Rule]) -> PortClasses {
        let mut starts: Vec<u32> = vec![0];
        for range in rules.iter().flat_map(|rule| &rule.ports) {
            starts.extend([u32::from(range.first), u32::from(range.last) + 1]);
        }
        starts.sort_unstable();
        starts.dedup();
        starts.retain(|start| *start <= u32::from(u16::MAX));
        let mut class = vec![0u16; 1 << 16].into_boxed_slice();
        let ends = starts.iter().skip(1).copied().chain([1 << 16]);
        // At most 65,536 classes (one a port), so each number fits a u16.
        for ((number, start), end) in starts.iter().enumerate().zip(ends) {
            class[*start as usize..end as usize].fill(number as u16);
        }
        PortClasses { class, count: starts.len() }
    }

    #[inline(always)]
    fn of(&self, port: u16) -> usize {
        self.class.get(usize::from(port)).map_or(0, |class| usize::from(*class))
    }
}

/// For each first byte of a source address, the rules whose source condition holds for every
/// address of that /8, unless some list a rule names covers the /8 only in part: then the
/// address itself must be looked up in the lists.
struct SourceIndex {
    /// Per first byte: the rules the /8 admits whole, and the rules whose lists cover it in
    /// part (for which the lists must be searched).
    by_first_byte: Box<[(u64, u64); 256]>,
}

impl Default for SourceIndex {
    fn default() -> SourceIndex {
        SourceIndex { by_first_byte: Box::new([(0, 0); 256]) }
    }
}

impl SourceIndex {
    /// The index for rules `any_source` (that name no list) and `named` (each list, by index,
    /// with the rules naming it), where `coverage(list, first)` says how a list covers a /8.
    fn new(any_source: u64, named: &[(usize, u64)], coverage: impl Fn(usize, u8) -> Coverage) -> SourceIndex {
        let mut index = SourceIndex::default();
        for first in 0..=u8::MAX {
            let (settled, unsettled) = &mut index.by_first_byte[usize::from(first)];
            *settled = any_source;
            for &(list, rules) in named {
                match coverage(list, first) {
                    Coverage::All => *settled |= rules,
                    Coverage::Nothing => {}
                    Coverage::Part => *unsettled |= rules,
                }
            }
        }
        index
    }

    /// Of the `candidates`, the rules admitted by the source conditions for any address that
    /// starts with `first`, or `None` when a candidate's lists must be searched.
    #[inline(always)]
    fn settled(&self, first: u8, candidates: u64) -> Option<u64> {
        let (settled, unsettled) = self.by_first_byte[usize::from(first)];
        (unsettled & candidates == 0).then_some(settled)
    }
}

/// Adds `bit` to the rules of `key`, which gets an entry the first time.
fn add_to<K: PartialEq>(entries: &mut Vec<(K, u64)>, key: K, bit: u64) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some((_, rules)) => *rules |= bit,
        None => entries.push((key, bit)),
    }
}

/// A built policy: shared behind an `Arc` by every thread that decides packets.
pub struct Policy {
    chunks: Vec<Chunk>,
    port_classes: PortClasses,
    /// Each rule's verdict, by index: read once a packet has matched.
    verdicts: Vec<Verdict>,
    rules: Vec<Rule>,
    lists: Vec<(String, PrefixList)>,
    default: Verdict,
    malformed: Verdict,
    db: Database,
}

/// The database as the packet path calls it: a [`CountryTable`] directly, so that its lookup is
/// inlined into the decision; any other database through its trait.
enum Database {
    Table(Arc<CountryTable>),
    Other(Arc<dyn CountryDb>),
}

impl Database {
    fn new(db: Arc<dyn CountryDb>) -> Database {
        let any: Arc<dyn Any + Send + Sync> = db.clone();
        match any.downcast::<CountryTable>() {
            Ok(table) => Database::Table(table),
            Err(_) => Database::Other(db),
        }
    }

    /// Every result a lookup can give, by key: for a table, its values by slot; for another
    /// database, every country code by index. Unknown comes last.
    fn answers(&self) -> Vec<Option<CountryCode>> {
        match self {
            Database::Table(table) => table.values().iter().copied().map(Some).chain([None]).collect(),
            Database::Other(_) => (0..CountryCode::COUNT).map(CountryCode::from_index).chain([None]).collect(),
        }
    }

    /// The lookup result of a key (see [`Database::answers`]).
    fn answer(&self, key: usize) -> Option<CountryCode> {
        match self {
            Database::Table(table) => table.values().get(key).copied(),
            Database::Other(_) => CountryCode::from_index(key),
        }
    }

    /// The key of an IPv4 address's lookup result: a table's slot needs no further load.
    #[inline(always)]
    fn key_v4(&self, address: Ipv4Addr) -> usize {
        match self {
            Database::Table(table) => table.key_v4(address),
            Database::Other(db) => country::position(db.lookup_v4(address)),
        }
    }

    #[inline(always)]
    fn key_v6(&self, address: Ipv6Addr) -> usize {
        match self {
            Database::Table(table) => table.key_v6(address),
            Database::Other(db) => country::position(db.lookup_v6(address)),
        }
    }
}

/// Why a packet got its verdict: for logs, counters and `check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The verdict, as [`Policy::decide`] returns it.
    pub verdict: Verdict,
    /// The rule that matched, or `None` when the default (or the malformed-packet verdict) applied.
    pub rule: Option<&'a str>,
    /// The matching rule's position among [`Policy::rules`], for counters.
    pub rule_index: Option<usize>,
    /// The parsed packet, or why it could not be parsed.
    pub packet: Result<PacketMeta, PacketError>,
    /// The source address, when the packet could be parsed.
    pub source: Option<IpAddr>,
    /// The source's country, when the packet could be parsed and the database knows it.
    pub country: Option<CountryCode>,
}

impl Policy {
    /// The verdict for one raw IPv4 or IPv6 packet. Allocates nothing and takes no lock.
    pub fn decide(&self, packet: &[u8]) -> Verdict {
        match packet::parse(packet) {
            Ok(meta) => self.first_match(&meta, &mut None).map_or(self.default, |index| self.verdicts[index]),
            Err(_) => self.malformed,
        }
    }

    /// The verdict with its reasons: the matching rule, the source and its country.
    pub fn explain(&self, packet: &[u8]) -> Decision<'_> {
        let meta = match packet::parse(packet) {
            Ok(meta) => meta,
            Err(error) => {
                return Decision {
                    verdict: self.malformed,
                    rule: None,
                    rule_index: None,
                    packet: Err(error),
                    source: None,
                    country: None,
                }
            }
        };
        let mut country = None;
        let rule_index = self.first_match(&meta, &mut country);
        let rule = rule_index.and_then(|index| self.rules.get(index));
        let country = self.db.answer(country.unwrap_or_else(|| self.country_key(meta.source)));
        Decision {
            verdict: rule.map_or(self.default, |rule| rule.verdict),
            rule: rule.map(|rule| rule.name.as_str()),
            rule_index,
            packet: Ok(meta),
            source: Some(meta.source),
            country,
        }
    }

    /// The verdict for packets no rule matches.
    pub fn default_verdict(&self) -> Verdict {
        self.default
    }

    /// The verdict for packets that cannot be parsed.
    pub fn malformed_verdict(&self) -> Verdict {
        self.malformed
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &Rule> {
        self.rules.iter()
    }

    /// The prefix lists the rules use, defined and built-in, by name.
    pub fn lists(&self) -> impl Iterator<Item = (&str, &PrefixList)> {
        self.lists.iter().map(|(name, list)| (name.as_str(), list))
    }

    /// The index of the first matching rule. `country` caches the lookup's key: `None` until a
    /// rule needs it.
    ///
    /// Per chunk of rules, the candidates are those whose protocol, port and source conditions
    /// hold. The first candidate that asks nothing about countries is a sure match; the source
    /// is looked up only when a candidate before it asks about countries, and then the lookup
    /// result selects, through one load, which of those admit it.
    #[inline(always)]
    fn first_match(&self, meta: &PacketMeta, country: &mut Option<usize>) -> Option<usize> {
        match meta.source {
            IpAddr::V4(source) => self.first_match_by(
                meta,
                country,
                (|chunk: &Chunk| &chunk.v4_sources, source.octets()[0]),
                |list| self.lists.get(list).is_some_and(|(_, list)| list.contains_v4(source)),
                #[inline(always)]
                || self.db.key_v4(source),
            ),
            IpAddr::V6(source) => self.first_match_by(
                meta,
                country,
                (|chunk: &Chunk| &chunk.v6_sources, source.octets()[0]),
                |list| self.lists.get(list).is_some_and(|(_, list)| list.contains_v6(source)),
                #[inline(always)]
                || self.db.key_v6(source),
            ),
        }
    }

    #[inline(always)]
    fn first_match_by(
        &self,
        meta: &PacketMeta,
        country: &mut Option<usize>,
        (source_index, first): (impl Fn(&Chunk) -> &SourceIndex, u8),
        in_list: impl Fn(usize) -> bool,
        look_up: impl Fn() -> usize,
    ) -> Option<usize> {
        let port_class = meta.destination_port().map(|port| self.port_classes.of(port));
        let conditions = Conditions { meta, port_class, source_index: &source_index, first, in_list: &in_list };
        // Most policies fit one chunk: tested without a loop, nothing is kept aside for a next
        // round.
        if let [chunk] = self.chunks.as_slice() {
            let matched = chunk.first_match(&conditions, country, &look_up);
            return (matched != 0).then(|| matched.trailing_zeros() as usize);
        }
        for (index, chunk) in self.chunks.iter().enumerate() {
            let matched = chunk.first_match(&conditions, country, &look_up);
            if matched != 0 {
                return Some(index * RULES_PER_CHUNK + matched.trailing_zeros() as usize);
            }
        }
        None
    }

    /// The key of `source`'s lookup result, for a packet whose decision did not need it.
    fn country_key(&self, source: IpAddr) -> usize {
        match source {
            IpAddr::V4(address) => self.db.key_v4(address),
            IpAddr::V6(address) => self.db.key_v6(address),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules().collect::<Vec<_>>())
            .field("default", &self.default)
            .field("malformed", &self.malformed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
