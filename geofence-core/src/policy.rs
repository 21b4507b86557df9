//! The decision: ordered rules, first match wins, else the default verdict.
//!
//! [`Policy::decide`] is the per-packet call: it parses the bytes, tests the rules and returns a
//! [`Verdict`], without allocating or locking. Each lookup a condition needs (the country, the
//! AS) happens at most once a packet, and only when a rule that asks it could decide the packet.
//! What each condition means is defined once, by [`Rule::matches`]; the masks here are a faster
//! way to the same answer, which the property tests in `policy/tests.rs` check.

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::asn::{Asn, AsnTable, Resolved};
use crate::ban::BanSpec;
use crate::condition::port::{PortClasses, PortMask};
use crate::condition::protocol::ProtocolMask;
use crate::condition::sip::SipTests;
use crate::condition::source::{SourceIndex, SourceMask};
use crate::condition::{Condition, Lookup, LookupMask};
use crate::country::{self, CountryCode};
use crate::db::{CountryDb, CountryTable};
use crate::packet::{self, PacketError, PacketMeta, Protocol, Transport};
use crate::prefix::{self, PrefixList};
use crate::rule::{Rule, Verdict};
use crate::sip::{self, SipError, SipMessage};

/// Why a policy cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A rule asks the source's AS, and the policy has no ASN database.
    #[error("rule `{0}` asks the source's AS, but no ASN database is given (`asn_database` in the config)")]
    NoAsnDatabase(String),
    /// More distinct SIP conditions than a packet's answer has bits for.
    #[error("rule `{0}` brings the policy over {most} distinct SIP conditions", most = SipTests::MOST)]
    TooManySipConditions(String),
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
/// let lan = Rule::new("lan", Verdict::Accept).with_source_list("rfc1918");
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
    asn: Option<Arc<AsnTable>>,
}

impl PolicyBuilder {
    /// An empty policy whose packets all get `default`; packets that cannot be parsed are dropped.
    pub fn new(default: Verdict) -> PolicyBuilder {
        PolicyBuilder { lists: Vec::new(), rules: Vec::new(), default, malformed: Verdict::Drop, asn: None }
    }

    /// The ASN database that `asn` conditions look sources up in; without one, a policy with
    /// such a rule is refused.
    pub fn asn_database(mut self, asn: Arc<AsnTable>) -> PolicyBuilder {
        self.asn = Some(asn);
        self
    }

    /// Defines a named prefix list that rules can name as a source (`Rule::with_source_list`).
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

    /// Whether a rule asks the source's autonomous system: the policy then needs an ASN
    /// database ([`PolicyBuilder::asn_database`]).
    pub fn asks_asn(&self) -> bool {
        self.rules.iter().any(|rule| !rule.conditions.asn.is_any())
    }

    /// Whether a rule reads the packet's payload (a SIP condition): the queue must then copy
    /// whole datagrams, and each datagram, not only a flow's first, must reach the policy.
    pub fn reads_payload(&self) -> bool {
        self.rules.iter().any(Rule::reads_payload)
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
                catch_all = Some(rule.name());
            }
        }
        found
    }

    fn all_sources_empty(&self, rule: &Rule) -> Option<String> {
        let all_empty = rule.conditions.source.names_only_empty_lists(&self.lists);
        all_empty.then(|| "every list it names is empty".to_owned())
    }

    /// Resolves list names and builds the policy, which looks countries up in `db`.
    pub fn build(self, db: Arc<dyn CountryDb>) -> Result<Policy, PolicyError> {
        let mut lists: Vec<(String, PrefixList)> = Vec::new();
        for (name, list) in self.lists {
            if lists.iter().any(|(n, _)| *n == name) || prefix::is_built_in(&name) {
                return Err(PolicyError::DuplicateList(name));
            }
            lists.push((name, list));
        }
        let sources = self
            .rules
            .iter()
            .map(|rule| rule.conditions.source.resolve(&mut lists, rule.name()))
            .collect::<Result<Vec<_>, _>>()?;
        if self.asn.is_none() {
            if let Some(rule) = self.rules.iter().find(|rule| !rule.conditions.asn.is_any()) {
                return Err(PolicyError::NoAsnDatabase(rule.name().to_owned()));
            }
        }
        let asn = self.asn.unwrap_or_default();
        let mut sip = SipTests::default();
        let sip_bits = self
            .rules
            .iter()
            .map(|rule| {
                sip.bit_of(&rule.conditions.sip).map_err(|()| PolicyError::TooManySipConditions(rule.name().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules = self.rules;
        let organisations: Vec<Resolved> = rules
            .iter_mut()
            .flat_map(|rule| {
                let name = rule.name().to_owned();
                rule.conditions.asn.resolve(&name, &asn)
            })
            .collect();
        let db = Database::new(db);
        let answers = Answers { country: db.answers(), asn: asn.answers() };
        let port_classes = PortClasses::new(rules.iter().map(|rule| &rule.conditions.port));
        let chunks = rules
            .chunks(RULES_PER_CHUNK)
            .zip(sources.chunks(RULES_PER_CHUNK))
            .zip(sip_bits.chunks(RULES_PER_CHUNK))
            .map(|((rules, sources), sip_bits)| Chunk::new(rules, sources, sip_bits, &lists, &port_classes, &answers))
            .collect();
        let first_payload_rule = rules.iter().position(Rule::reads_payload);
        Ok(Policy {
            chunks,
            port_classes,
            verdicts: rules.iter().map(Rule::verdict).collect(),
            rules,
            lists,
            default: self.default,
            malformed: self.malformed,
            db,
            asn,
            organisations,
            first_payload_rule,
            sip,
        })
    }
}

/// Rules tested at once: one bit each in a `u64`.
const RULES_PER_CHUNK: usize = 64;

/// Up to 64 consecutive rules as the packet path tests them: every condition is a mask of the
/// rules it lets through, so a packet is tested against all of them at once, with a few loads
/// and no branch per rule. The first rule is bit 0.
struct Chunk {
    protocols: ProtocolMask,
    ports: PortMask,
    sources: SourceMask,
    /// By [`Lookup::index`]: the rules each lookup's answers admit.
    lookups: [LookupMask; Lookup::COUNT],
}

impl Chunk {
    /// The chunk of `rules`, whose source lists are resolved to `sources`, indices into `lists`,
    /// and whose SIP conditions are the policy's tests `sip_bits`.
    fn new(
        rules: &[Rule],
        sources: &[Vec<usize>],
        sip_bits: &[Option<usize>],
        lists: &[(String, PrefixList)],
        port_classes: &PortClasses,
        answers: &Answers,
    ) -> Chunk {
        let bits = || rules.iter().zip((0..).map(|n: u32| 1u64 << n));
        let lookups = Lookup::ALL.map(|lookup| match lookup {
            Lookup::Country => {
                LookupMask::new(bits().map(|(rule, bit)| (&rule.conditions.country, bit)), &answers.country)
            }
            Lookup::Asn => LookupMask::new(bits().map(|(rule, bit)| (&rule.conditions.asn, bit)), &answers.asn),
            Lookup::Sip => LookupMask::of_bits(sip_bits.iter().copied().zip(bits().map(|(_, bit)| bit))),
        });
        Chunk {
            protocols: ProtocolMask::new(bits().map(|(rule, bit)| (&rule.conditions.protocol, bit))),
            ports: PortMask::new(bits().map(|(rule, bit)| (&rule.conditions.port, bit)), port_classes),
            sources: SourceMask::new(sources.iter().map(Vec::as_slice).zip(bits().map(|(_, bit)| bit)), lists),
            lookups,
        }
    }

    /// The rules that match, as a mask: the first candidate that needs no further lookup, and
    /// before it those whose lookup conditions admit the packet. A lookup is made (through
    /// `look_up`, once a packet: `keys` keeps its answer's key) only while a candidate before
    /// the first sure match asks it.
    #[inline(always)]
    fn first_match<S: Fn(&Chunk) -> &SourceIndex, L: Fn(usize) -> bool>(
        &self,
        packet: &Probe<'_, S, L>,
        keys: &mut Keys,
        look_up: &impl Fn(Lookup) -> usize,
    ) -> u64 {
        let header = self.protocols.admitted(packet.meta.protocol) & self.ports.admitted(packet.port_class);
        let mut candidates = self.sources.admitted(header, (packet.source_index)(self), packet.first, packet.in_list);
        // Per lookup, the rules it does not hold up: those that do not ask it, and all of them
        // once its answer is applied.
        let mut not_held = self.lookups.each_ref().map(|mask| mask.any);
        // Answers an earlier chunk looked up cost nothing: applied first, so that no rule they
        // rule out makes another lookup.
        for lookup in Lookup::ALL {
            if let Some(key) = keys[lookup.index()] {
                candidates &= self.lookups[lookup.index()].admitted(key);
                not_held[lookup.index()] = !0;
            }
        }
        // One round a lookup at most: a bounded loop the compiler unrolls.
        for _ in Lookup::ALL {
            let settled = not_held.iter().fold(!0, |rules, not_held| rules & not_held);
            let sure = candidates & settled;
            let first_sure = sure & sure.wrapping_neg();
            // The candidates before the first sure match (all of them when there is none).
            let unsure = candidates & !settled & first_sure.wrapping_sub(1);
            if unsure == 0 {
                return first_sure;
            }
            // The earliest unsure rule waits on some lookup: make the first of those.
            let earliest = unsure & unsure.wrapping_neg();
            let Some(lookup) = Lookup::ALL.into_iter().find(|l| not_held[l.index()] & earliest == 0) else {
                return first_sure;
            };
            // Not `get_or_insert_with`, which is not inlined and would take the lookup with it.
            let key = match keys[lookup.index()] {
                Some(key) => key,
                None => *keys[lookup.index()].insert(look_up(lookup)),
            };
            candidates &= self.lookups[lookup.index()].admitted(key);
            not_held[lookup.index()] = !0;
        }
        // Every lookup is applied: the remaining candidates all match.
        candidates & candidates.wrapping_neg()
    }
}

/// Per lookup (by [`Lookup::index`]): the key of the packet's answer, once looked up.
type Keys = [Option<usize>; Lookup::COUNT];

/// Every answer each lookup can give, by key, for building the masks.
struct Answers {
    country: Vec<Option<CountryCode>>,
    asn: Vec<Option<Asn>>,
}

/// What a packet brings to each chunk: its header, its port's class, and how to settle its
/// source (the family's index, the source's first byte, the list search).
struct Probe<'a, S, L> {
    meta: &'a PacketMeta,
    port_class: Option<usize>,
    source_index: &'a S,
    first: u8,
    in_list: &'a L,
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
    /// The ASN database (empty when no rule asks the AS).
    asn: Arc<AsnTable>,
    /// What each `as_organisation` pattern resolved to.
    organisations: Vec<Resolved>,
    /// The first rule that reads the payload: a verdict of an earlier rule holds for the flow.
    first_payload_rule: Option<usize>,
    /// The distinct SIP conditions of the rules.
    sip: SipTests,
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

/// A lookup's answer as a decision saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Looked<T> {
    /// No rule that could decide the packet asked it, so it was not looked up.
    Skipped,
    /// Looked up: `None` when the database does not know the source.
    Found(Option<T>),
}

impl<T> Looked<T> {
    /// The answer, if it was looked up and known.
    pub fn known(self) -> Option<T> {
        match self {
            Looked::Found(answer) => answer,
            Looked::Skipped => None,
        }
    }
}

/// For logs: the country code, `unknown`, or `-` when it was not looked up.
impl<T: fmt::Display> fmt::Display for Looked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Looked::Found(Some(answer)) => answer.fmt(f),
            Looked::Found(None) => f.write_str("unknown"),
            Looked::Skipped => f.write_str("-"),
        }
    }
}

/// Why a packet got its verdict: for logs, counters and `check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The source's country, if the decision looked it up ([`Policy::country_of`] finds it
    /// when it did not).
    pub country: Looked<CountryCode>,
    /// The source's autonomous system, if the decision looked it up ([`Policy::asn_of`]).
    pub asn: Looked<Asn>,
    /// Whether the decision read the payload as SIP (a candidate rule had a SIP condition).
    pub read_payload: bool,
}

impl Policy {
    /// The verdict for one raw IPv4 or IPv6 packet. Allocates nothing and takes no lock.
    pub fn decide(&self, packet: &[u8]) -> Verdict {
        match packet::parse(packet) {
            Ok(meta) => self.verdict_of(&meta, meta.payload(packet)),
            Err(_) => self.malformed,
        }
    }

    /// The verdict for a packet already parsed, by [`packet::parse`] or by the caller, whose
    /// payload is not at hand: SIP conditions see an empty payload.
    pub fn decide_meta(&self, meta: &PacketMeta) -> Verdict {
        self.verdict_of(meta, &[])
    }

    /// The verdict for a packet parsed by the caller, with its transport payload.
    pub fn decide_meta_with_payload(&self, meta: &PacketMeta, payload: &[u8]) -> Verdict {
        self.verdict_of(meta, payload)
    }

    /// Inlined into the callers, so that the parsed header stays in registers for `decide`.
    #[inline(always)]
    fn verdict_of(&self, meta: &PacketMeta, payload: &[u8]) -> Verdict {
        let sip_key = || self.sip.key(&sip::parse(payload));
        self.first_match(meta, &sip_key, &mut Keys::default()).map_or(self.default, |index| self.verdicts[index])
    }

    /// Whether a verdict given by rule `rule_index` (`None`: the default) holds for the rest
    /// of the packet's flow: no rule up to it reads the payload, so a later packet of the flow
    /// would get the same verdict. A queue gives the flow bypass only to such verdicts; the
    /// others are decided again datagram by datagram.
    pub fn settles_flow(&self, rule_index: Option<usize>) -> bool {
        match (self.first_payload_rule, rule_index) {
            (None, _) => true,
            (Some(first), Some(index)) => index < first,
            (Some(_), None) => false,
        }
    }

    /// Whether a decision may be given to the rest of the packet's flow, so that a queue gives
    /// the flow the kernel bypass: its rule [settles the flow](Policy::settles_flow), or it
    /// accepted a TCP segment that holds a SIP request's whole headers (`message` is what the
    /// decision read of the payload, [`Policy::explain_sip`]).
    ///
    /// A TCP stream's later segments need not start a message, so they cannot be read alone:
    /// rules that read SIP decide a connection by its first whole request. Until it comes
    /// (the handshake's last ACK, a keep-alive, a request whose headers run on into the next
    /// segment) each segment is decided on its own. An accepted segment that is not a SIP
    /// request at all settles the connection too: no later segment of such a stream could be
    /// read, and it should not pass through the queue whole.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use geofence_core::{sample, Config};
    /// let db = Arc::new(geofence_core::db::parse_range_csv("192.0.2.0,192.0.2.255,GB\n")?);
    /// let text = "default = \"accept\"\n[[rule]]\nprotocol = \"tcp\"\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n";
    /// let policy = Config::parse(text)?.policy.build(db)?;
    /// let (source, server) = ("192.0.2.7".parse()?, "198.51.100.1".parse()?);
    /// let request = sample::tcp_segment(source, server, 5060, &sample::sip_options_payload(source, server));
    /// let (decision, message) = policy.explain_sip(&request);
    /// assert!(policy.settles(&decision, message.as_ref()), "the first whole request decides the connection");
    /// let ack = sample::tcp_segment(source, server, 5060, b"");
    /// let (decision, message) = policy.explain_sip(&ack);
    /// assert!(!policy.settles(&decision, message.as_ref()), "the handshake's ACK does not");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn settles(&self, decision: &Decision<'_>, message: Option<&Result<SipMessage<'_>, SipError>>) -> bool {
        if self.settles_flow(decision.rule_index) {
            return true;
        }
        let tcp = decision.packet.as_ref().is_ok_and(|meta| meta.protocol == Protocol::TCP);
        let read_to_the_end = || match message {
            Some(Ok(SipMessage::Request(request))) => request.complete,
            Some(Ok(SipMessage::Response { .. })) => true,
            Some(Err(error)) => *error != SipError::Empty,
            Some(Ok(SipMessage::KeepAlive)) | None => false,
        };
        decision.verdict != Verdict::Drop && tcp && read_to_the_end()
    }

    /// The ban a packet's source gets when rule `rule_index` decided it: the rule's
    /// [`BanSpec`] if it is a ban rule, unless `source` is trusted, that is, in a list that an
    /// accepting rule before it names. A trunk's address that a scanner forges to probe a
    /// honeypot port is dropped, not banned: banning it would shut the trunk out.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use geofence_core::{Config, db::CountryTable};
    /// let text = "default = \"drop\"\n[lists]\ntrunks = [\"192.0.2.10\"]\n\
    ///     [[rule]]\nsource = [\"trunks\"]\nports = [5060]\naction = \"accept\"\n\
    ///     [[rule]]\nports = [23]\naction = \"ban\"\nban = \"1h\"\n";
    /// let policy = Config::parse(text)?.policy.build(Arc::new(CountryTable::empty()))?;
    /// let probe = |source: &str| policy.ban_for(1, source.parse().unwrap());
    /// assert_eq!(probe("198.51.100.4").map(|spec| spec.duration_ms), Some(3_600_000));
    /// assert_eq!(probe("192.0.2.10"), None, "a trunk is never banned");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ban_for(&self, rule_index: usize, source: IpAddr) -> Option<BanSpec> {
        let spec = self.rules.get(rule_index)?.ban()?;
        let source = source.to_canonical();
        let trusted = self.rules[..rule_index].iter().filter(|rule| rule.verdict() != Verdict::Drop).any(|rule| {
            rule.source_lists()
                .iter()
                .any(|name| self.lists.iter().any(|(listed, list)| listed == name && list.contains(source)))
        });
        (!trusted).then_some(spec)
    }

    /// Whether a rule reads the payload (see [`PolicyBuilder::reads_payload`]).
    pub fn reads_payload(&self) -> bool {
        self.first_payload_rule.is_some()
    }

    /// The verdict for a flow known only by its source, protocol and destination port (`None`
    /// for a protocol without ports), with no packet at hand.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use geofence_core::{db::parse_range_csv, Config, Protocol, Verdict};
    /// let config = Config::parse("default = \"drop\"\n[[rule]]\nports = [5060]\ncountry = [\"GB\"]\naction = \"accept\"\n")?;
    /// let policy = config.policy.build(Arc::new(parse_range_csv("192.0.2.0,192.0.2.255,GB\n")?))?;
    /// assert_eq!(policy.decide_flow("192.0.2.7".parse()?, Protocol::UDP, Some(5060)), Verdict::Accept);
    /// assert_eq!(policy.decide_flow("::ffff:192.0.2.7".parse()?, Protocol::UDP, Some(5060)), Verdict::Accept);
    /// assert_eq!(policy.decide_flow("192.0.2.7".parse()?, Protocol::UDP, Some(5061)), Verdict::Drop);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decide_flow(&self, source: IpAddr, protocol: Protocol, destination_port: Option<u16>) -> Verdict {
        self.decide_meta(&flow_meta(source, protocol, destination_port))
    }

    /// The verdict with its reasons: the matching rule, the source and, when the decision
    /// needed it, its country. Looks up nothing that [`Policy::decide`] would not.
    pub fn explain(&self, packet: &[u8]) -> Decision<'_> {
        match packet::parse(packet) {
            Ok(meta) => self.explain_with_payload(&meta, meta.payload(packet)),
            Err(error) => self.malformed_decision(error),
        }
    }

    /// The decision for a packet that cannot be parsed.
    fn malformed_decision(&self, error: PacketError) -> Decision<'_> {
        Decision {
            verdict: self.malformed,
            rule: None,
            rule_index: None,
            packet: Err(error),
            source: None,
            country: Looked::Skipped,
            asn: Looked::Skipped,
            read_payload: false,
        }
    }

    /// [`Policy::explain`] for a packet already parsed, whose payload is not at hand.
    pub fn explain_meta(&self, meta: &PacketMeta) -> Decision<'_> {
        self.explain_with_payload(meta, &[])
    }

    /// [`Policy::explain`] for a packet already parsed, with its transport payload.
    pub fn explain_with_payload(&self, meta: &PacketMeta, payload: &[u8]) -> Decision<'_> {
        self.explain_by(meta, &|| self.sip.key(&sip::parse(payload)))
    }

    /// [`Policy::explain`], and the SIP message the decision read from the payload, when a rule
    /// asked it: what a caller that goes on with the request (a per-source count, say) reads
    /// without parsing it again.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use geofence_core::{sample, sip::SipMessage, Config, Verdict};
    /// let db = Arc::new(geofence_core::db::parse_range_csv("192.0.2.0,192.0.2.255,GB\n")?);
    /// let text = "default = \"accept\"\n[[rule]]\nprotocol = \"udp\"\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n";
    /// let policy = Config::parse(text)?.policy.build(db)?;
    /// let packet = sample::sip_options("192.0.2.7".parse()?, "198.51.100.1".parse()?);
    /// let (decision, message) = policy.explain_sip(&packet);
    /// assert_eq!(decision.verdict, Verdict::Accept);
    /// assert!(matches!(message, Some(Ok(SipMessage::Request(_)))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn explain_sip<'p>(&self, packet: &'p [u8]) -> (Decision<'_>, Option<Result<SipMessage<'p>, SipError>>) {
        let meta = match packet::parse(packet) {
            Ok(meta) => meta,
            Err(error) => return (self.malformed_decision(error), None),
        };
        let payload = meta.payload(packet);
        let read = std::cell::Cell::new(None);
        let decision = self.explain_by(&meta, &|| {
            let message = sip::parse(payload);
            read.set(Some(message));
            self.sip.key(&message)
        });
        (decision, read.into_inner())
    }

    /// The decision, where `sip_key` reads the payload's SIP key when a rule asks it.
    #[inline(always)]
    fn explain_by(&self, meta: &PacketMeta, sip_key: &impl Fn() -> usize) -> Decision<'_> {
        let mut keys = Keys::default();
        let rule_index = self.first_match(meta, sip_key, &mut keys);
        let rule = rule_index.and_then(|index| self.rules.get(index));
        let country = match keys[Lookup::Country.index()] {
            Some(key) => Looked::Found(self.db.answer(key)),
            None => Looked::Skipped,
        };
        let asn = match keys[Lookup::Asn.index()] {
            Some(key) => Looked::Found(self.asn.answer(key)),
            None => Looked::Skipped,
        };
        Decision {
            verdict: rule.map_or(self.default, Rule::verdict),
            rule: rule.map(Rule::name),
            rule_index,
            packet: Ok(*meta),
            source: Some(meta.source),
            country,
            asn,
            read_payload: keys[Lookup::Sip.index()].is_some(),
        }
    }

    /// The country of `source` in the policy's database (an IPv4-mapped IPv6 address is looked
    /// up as the IPv4 address it maps); `None` when the database does not know it.
    pub fn country_of(&self, source: IpAddr) -> Option<CountryCode> {
        self.db.answer(self.country_key(source.to_canonical()))
    }

    /// The autonomous system of `source` in the policy's ASN database; `None` when it does not
    /// know it (or the policy has none).
    pub fn asn_of(&self, source: IpAddr) -> Option<Asn> {
        self.asn.lookup(source)
    }

    /// The ASN database the policy looks sources up in (empty when it was given none).
    pub fn asn_database(&self) -> &AsnTable {
        &self.asn
    }

    /// What each rule's `as_organisation` patterns resolved to, rule by rule: for `config
    /// check` and the log, which warn about a pattern that named no system.
    pub fn organisation_patterns(&self) -> &[Resolved] {
        &self.organisations
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

    /// The index of the first matching rule. `keys` caches each lookup's answer: `None` until
    /// a rule needs it.
    ///
    /// Per chunk of rules, the candidates are those whose protocol, port and source conditions
    /// hold. The first candidate that needs no lookup is a sure match; a lookup is made only
    /// when a candidate before it asks it, and then its answer selects, through one load,
    /// which of those admit the packet. An IPv4-mapped IPv6 source is decided as the IPv4
    /// address it maps, by every condition alike.
    #[inline(always)]
    fn first_match(&self, meta: &PacketMeta, sip_key: &impl Fn() -> usize, keys: &mut Keys) -> Option<usize> {
        // Matched by family rather than through `IpAddr::to_canonical`, whose returned copy of
        // the address would be read back in other pieces than it was written: a stall.
        match meta.source {
            IpAddr::V4(source) => self.first_match_v4(meta, sip_key, keys, source),
            IpAddr::V6(source) => match source.to_ipv4_mapped() {
                Some(mapped) => self.first_match_v4(meta, sip_key, keys, mapped),
                None => self.first_match_by(
                    meta,
                    keys,
                    (|chunk: &Chunk| &chunk.sources.v6, source.octets()[0]),
                    |list| self.lists.get(list).is_some_and(|(_, list)| list.contains_v6(source)),
                    #[inline(always)]
                    |lookup| match lookup {
                        Lookup::Country => self.db.key_v6(source),
                        Lookup::Asn => self.asn.key_v6(source),
                        Lookup::Sip => sip_key(),
                    },
                ),
            },
        }
    }

    #[inline(always)]
    fn first_match_v4(
        &self,
        meta: &PacketMeta,
        sip_key: &impl Fn() -> usize,
        keys: &mut Keys,
        source: Ipv4Addr,
    ) -> Option<usize> {
        self.first_match_by(
            meta,
            keys,
            (|chunk: &Chunk| &chunk.sources.v4, source.octets()[0]),
            |list| self.lists.get(list).is_some_and(|(_, list)| list.contains_v4(source)),
            #[inline(always)]
            |lookup| match lookup {
                Lookup::Country => self.db.key_v4(source),
                Lookup::Asn => self.asn.key_v4(source),
                Lookup::Sip => sip_key(),
            },
        )
    }

    #[inline(always)]
    fn first_match_by(
        &self,
        meta: &PacketMeta,
        keys: &mut Keys,
        (source_index, first): (impl Fn(&Chunk) -> &SourceIndex, u8),
        in_list: impl Fn(usize) -> bool,
        look_up: impl Fn(Lookup) -> usize,
    ) -> Option<usize> {
        let port_class = meta.destination_port().map(|port| self.port_classes.of(port));
        let probe = Probe { meta, port_class, source_index: &source_index, first, in_list: &in_list };
        // Most policies fit one chunk: tested without a loop, nothing is kept aside for a next
        // round.
        if let [chunk] = self.chunks.as_slice() {
            let matched = chunk.first_match(&probe, keys, &look_up);
            return (matched != 0).then(|| matched.trailing_zeros() as usize);
        }
        for (index, chunk) in self.chunks.iter().enumerate() {
            let matched = chunk.first_match(&probe, keys, &look_up);
            if matched != 0 {
                return Some(index * RULES_PER_CHUNK + matched.trailing_zeros() as usize);
            }
        }
        None
    }

    /// The key of `source`'s country in the database.
    fn country_key(&self, source: IpAddr) -> usize {
        match source {
            IpAddr::V4(address) => self.db.key_v4(address),
            IpAddr::V6(address) => self.db.key_v6(address),
        }
    }
}

/// A packet's view of a flow known by its source, protocol and destination port: addressed to
/// the unspecified address of the source's family.
fn flow_meta(source: IpAddr, protocol: Protocol, destination_port: Option<u16>) -> PacketMeta {
    let destination = match source {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let transport = match destination_port {
        Some(destination) => Transport::Ports { source: 0, destination },
        None => Transport::Opaque,
    };
    PacketMeta::new(source, destination, protocol, transport)
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
