//! The decision: ordered rules, first match wins, else the default verdict.
//!
//! [`Policy::decide`] is the per-packet call: it parses the bytes, walks the rules and returns a
//! [`Verdict`], without allocating or locking. The country lookup happens at most once a packet,
//! and only when a rule that asks about countries is reached.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::country::{CountryCode, CountrySet};
use crate::db::CountryDb;
use crate::packet::{self, PacketError, PacketMeta, Protocol};
use crate::prefix::{self, PrefixList};

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

    fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
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
        let mut matchers = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let sources =
                rule.sources.iter().map(|name| resolve_list(&mut lists, name, &rule.name)).collect::<Result<_, _>>()?;
            matchers.push(Matcher::new(rule, sources));
        }
        Ok(Policy { matchers, rules: self.rules, lists, default: self.default, malformed: self.malformed, db })
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

/// A rule as the packet path tests it: flat, with names resolved and nothing to compare but
/// numbers and bits.
struct Matcher {
    /// Bit `p` set: protocol `p` matches (all bits set when the rule names no protocol).
    protocols: [u64; 4],
    /// Destination port ranges; empty: any port.
    ports: Box<[PortRange]>,
    /// Indices into the policy's lists; empty: any source.
    sources: Box<[usize]>,
    /// The countries (and maybe "unknown") the rule admits, its country and not_country
    /// conditions in one set; `None` when it asks nothing about countries.
    countries: Option<CountrySet>,
    verdict: Verdict,
}

impl Matcher {
    fn new(rule: &Rule, sources: Vec<usize>) -> Matcher {
        let mut protocols = [0u64; 4];
        if rule.protocols.is_empty() {
            protocols = [u64::MAX; 4];
        }
        for protocol in &rule.protocols {
            protocols[usize::from(protocol.0 >> 6)] |= 1 << (protocol.0 & 63);
        }
        Matcher {
            protocols,
            ports: rule.ports.clone().into_boxed_slice(),
            sources: sources.into_boxed_slice(),
            countries: match (rule.countries, rule.not_countries) {
                (None, None) => None,
                (inside, outside) => {
                    Some(inside.unwrap_or_else(CountrySet::everything).without(&outside.unwrap_or_default()))
                }
            },
            verdict: rule.verdict,
        }
    }

    #[inline]
    fn protocol_matches(&self, protocol: Protocol) -> bool {
        self.protocols[usize::from(protocol.0 >> 6)] >> (protocol.0 & 63) & 1 != 0
    }
}

/// A built policy: shared behind an `Arc` by every thread that decides packets.
pub struct Policy {
    matchers: Vec<Matcher>,
    rules: Vec<Rule>,
    lists: Vec<(String, PrefixList)>,
    default: Verdict,
    malformed: Verdict,
    db: Arc<dyn CountryDb>,
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
            Ok(meta) => self.first_match(&meta, &mut None).map_or(self.default, |index| self.matchers[index].verdict),
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
        let country = country.unwrap_or_else(|| self.country_of(meta.source));
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

    /// The index of the first matching rule. `country` caches the lookup: `None` until a rule
    /// needs it.
    ///
    /// Protocol, port and source conditions follow the shape of the traffic, so the processor
    /// predicts branches on them well; whether a source's country is admitted splits a flood at
    /// random, and a wrong guess there would stall on the lookup. So the country outcomes of up
    /// to 64 rules are gathered as bits, with no branch, and the lowest set bit names the rule.
    #[inline(always)]
    fn first_match(&self, meta: &PacketMeta, country: &mut Option<Option<CountryCode>>) -> Option<usize> {
        for (group, matchers) in self.matchers.chunks(64).enumerate() {
            let mut matched = 0u64;
            for (bit, matcher) in matchers.iter().enumerate() {
                if !self.matches_apart_from_country(matcher, meta) {
                    continue;
                }
                let Some(admitted) = &matcher.countries else {
                    // No later rule can come before this one.
                    matched |= 1 << bit;
                    break;
                };
                let found = *country.get_or_insert_with(|| self.country_of(meta.source));
                matched |= u64::from(admitted.contains(found)) << bit;
            }
            if matched != 0 {
                return Some(group * 64 + matched.trailing_zeros() as usize);
            }
        }
        None
    }

    #[inline]
    fn country_of(&self, source: IpAddr) -> Option<CountryCode> {
        match source {
            IpAddr::V4(address) => self.db.lookup_v4(address),
            IpAddr::V6(address) => self.db.lookup_v6(address),
        }
    }

    #[inline(always)]
    fn matches_apart_from_country(&self, rule: &Matcher, meta: &PacketMeta) -> bool {
        if !rule.protocol_matches(meta.protocol) {
            return false;
        }
        if !rule.ports.is_empty() {
            let Some(port) = meta.destination_port() else { return false };
            if !rule.ports.iter().any(|range| range.contains(port)) {
                return false;
            }
        }
        if rule.sources.is_empty() {
            return true;
        }
        // A loop rather than `any`, which is not always inlined and would make the packet's
        // facts go through memory.
        for &list in rule.sources.iter() {
            if self.lists.get(list).is_some_and(|(_, list)| list.contains(meta.source)) {
                return true;
            }
        }
        false
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
