//! A rule: a name, the conditions a packet must meet, and the verdict it then gets.
//!
//! [`Rule::matches`] is what a rule means, read condition by condition over the plain
//! [`Facts`] of a packet; a [`Policy`](crate::Policy) decides the same way, only faster.

use std::fmt;

use crate::asn::AsnSet;
use crate::ban::BanSpec;
use crate::condition::sip::Kind as SipKind;
use crate::condition::{Condition, Conditions, Facts};
use crate::country::CountrySet;
use crate::packet::Protocol;
use crate::sip::Method;
use crate::PortRange;

/// What to do with a packet: the answer a netfilter queue needs.
///
/// Deliberately exhaustive: these are the answers the kernel takes, and an embedder matching on
/// them must not need a guess for a variant it has never seen. Actions with side effects (a
/// ban, say) are a rule's business and still end in one of these.
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

struct Action<'a>(&'a Rule);

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.ban {
            Some(spec) => spec.fmt(f),
            None => self.0.verdict.fmt(f),
        }
    }
}

/// One rule: every condition that is set must hold for the rule to match.
///
/// A new rule matches every packet; each `with_` method narrows it.
///
/// ```
/// use geofence_core::{CountrySet, PortRange, Protocol, Rule, Verdict};
/// let mut europe = CountrySet::new();
/// europe.insert_continent("EU".parse()?);
/// let rule = Rule::new("sip-europe", Verdict::Accept)
///     .with_protocol(Protocol::UDP)
///     .with_ports(PortRange::single(5060))
///     .with_countries(europe);
/// assert!(rule.conditions().to_string().starts_with("protocol udp and port 5060 and country in {AD AL AT"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    name: String,
    verdict: Verdict,
    ban: Option<BanSpec>,
    pub(crate) conditions: Conditions,
}

impl Rule {
    /// A rule that matches every packet, to be narrowed with the `with_` methods.
    pub fn new(name: impl Into<String>, verdict: Verdict) -> Rule {
        Rule { name: name.into(), verdict, ban: None, conditions: Conditions::default() }
    }

    pub(crate) fn with_conditions(name: String, verdict: Verdict, conditions: Conditions) -> Rule {
        Rule { name, verdict, ban: None, conditions }
    }

    /// The rule's name, for logs and counters.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a matching packet gets.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Makes the rule a ban rule (`action = "ban"`): a matching packet is dropped and its
    /// source banned as `spec` says. The policy only says so
    /// ([`Policy::ban_for`](crate::Policy::ban_for)); the caller gives the ban.
    pub fn with_ban(mut self, spec: BanSpec) -> Rule {
        self.verdict = Verdict::Drop;
        self.ban = Some(spec);
        self
    }

    /// The ban a matching packet's source gets, for a ban rule.
    pub fn ban(&self) -> Option<BanSpec> {
        self.ban
    }

    /// The action as `config check` shows it: the verdict, or the ban.
    pub fn action(&self) -> impl fmt::Display + '_ {
        Action(self)
    }

    /// Also admits transport protocol `protocol` (a rule with none admits any).
    pub fn with_protocol(mut self, protocol: Protocol) -> Rule {
        self.conditions.protocol.protocols.push(protocol);
        self
    }

    /// Also admits destination ports in `range` (a rule with none admits any packet, with ports
    /// or without).
    pub fn with_ports(mut self, range: PortRange) -> Rule {
        self.conditions.port.ranges.push(range);
        self
    }

    /// Also admits sources in the list called `name`, defined in the policy or built in.
    pub fn with_source_list(mut self, name: impl Into<String>) -> Rule {
        self.conditions.source.lists.push(name.into());
        self
    }

    /// Admits only sources whose country (or "unknown") is in `set`.
    pub fn with_countries(mut self, set: CountrySet) -> Rule {
        self.conditions.country.inside = Some(set);
        self
    }

    /// Admits only sources whose country (or "unknown") is not in `set`.
    pub fn with_not_countries(mut self, set: CountrySet) -> Rule {
        self.conditions.country.outside = Some(set);
        self
    }

    /// Admits only sources whose autonomous system (or "unknown") is in `set`; the policy
    /// needs an ASN database ([`crate::PolicyBuilder::asn_database`]).
    pub fn with_asns(mut self, set: AsnSet) -> Rule {
        self.conditions.asn.inside = Some(set);
        self
    }

    /// Admits only sources whose autonomous system (or "unknown") is not in `set`.
    pub fn with_not_asns(mut self, set: AsnSet) -> Rule {
        self.conditions.asn.outside = Some(set);
        self
    }

    /// Admits only payloads of these kinds (`sip = [...]`).
    pub fn with_sip_kinds(mut self, kinds: impl IntoIterator<Item = SipKind>) -> Rule {
        self.conditions.sip.set_kinds(kinds);
        self
    }

    /// Admits only SIP requests of these methods (`sip_method`).
    pub fn with_sip_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Rule {
        self.conditions.sip.set_methods(methods);
        self
    }

    /// Admits only SIP requests whose User-Agent matches one of `patterns` (`user_agent`):
    /// substrings ignoring case, or with `*` and `?` wildcards over the whole value.
    ///
    /// ```
    /// use geofence_core::{sample, Rule, Verdict, PolicyBuilder, db::CountryTable};
    /// let scanners = Rule::new("scanners", Verdict::Drop).with_user_agents(&["friendly-scanner", "sipcli*"]);
    /// let policy = PolicyBuilder::new(Verdict::Accept).rule(scanners).build(std::sync::Arc::new(CountryTable::empty()))?;
    /// // sample::sip_options sends no User-Agent: no scanner.
    /// assert_eq!(policy.decide(&sample::sip_options("192.0.2.9".parse()?, "192.0.2.1".parse()?)), Verdict::Accept);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_user_agents(mut self, patterns: &[&str]) -> Rule {
        self.conditions.sip.set_user_agents(patterns, false);
        self
    }

    /// Admits only SIP requests whose User-Agent matches none of `patterns` (`not_user_agent`).
    pub fn with_not_user_agents(mut self, patterns: &[&str]) -> Rule {
        self.conditions.sip.set_user_agents(patterns, true);
        self
    }

    /// Admits only SIP requests whose Request-URI host matches one of the name patterns or,
    /// when `address`, is an address literal (`request_host`).
    pub fn with_request_hosts(mut self, names: &[&str], address: bool) -> Rule {
        self.conditions.sip.set_request_hosts(names, address, false);
        self
    }

    /// Admits only SIP requests whose Request-URI host is none of those (`not_request_host`).
    pub fn with_not_request_hosts(mut self, names: &[&str], address: bool) -> Rule {
        self.conditions.sip.set_request_hosts(names, address, true);
        self
    }

    /// Admits only SIP requests whose To user matches one of `patterns` (`to_user`).
    pub fn with_to_users(mut self, patterns: &[&str]) -> Rule {
        self.conditions.sip.set_to_users(patterns);
        self
    }

    /// The transport protocols admitted; empty: any.
    pub fn protocols(&self) -> &[Protocol] {
        &self.conditions.protocol.protocols
    }

    /// The destination port ranges admitted; empty: any.
    pub fn ports(&self) -> &[PortRange] {
        &self.conditions.port.ranges
    }

    /// The lists a source must be in one of; empty: any.
    pub fn source_lists(&self) -> &[String] {
        &self.conditions.source.lists
    }

    /// The countries admitted, when the rule restricts them.
    pub fn countries(&self) -> Option<&CountrySet> {
        self.conditions.country.inside.as_ref()
    }

    /// The countries excluded, when the rule excludes some.
    pub fn not_countries(&self) -> Option<&CountrySet> {
        self.conditions.country.outside.as_ref()
    }

    /// The autonomous systems admitted, when the rule restricts them.
    pub fn asns(&self) -> Option<&AsnSet> {
        self.conditions.asn.inside.as_ref()
    }

    /// The autonomous systems excluded, when the rule excludes some.
    pub fn not_asns(&self) -> Option<&AsnSet> {
        self.conditions.asn.outside.as_ref()
    }

    /// The conditions as `config check` shows them: "protocol udp and port 5060 and source in
    /// rfc1918", or "any packet".
    pub fn conditions(&self) -> impl fmt::Display + '_ {
        &self.conditions
    }

    /// Whether a packet with these facts matches: the reference meaning of the rule, which
    /// [`Policy::decide`](crate::Policy::decide) is tested against.
    pub fn matches(&self, facts: &dyn Facts) -> bool {
        self.conditions.hold(facts)
    }

    /// Whether the rule reads the packet's payload: it has a SIP condition.
    pub fn reads_payload(&self) -> bool {
        !self.conditions.sip.is_any()
    }

    /// Whether the rule matches every packet.
    pub(crate) fn matches_everything(&self) -> bool {
        self.conditions.each().iter().all(|condition| condition.is_any())
    }

    /// Why this rule can never match on its own terms, if it cannot.
    pub(crate) fn never_matches(&self) -> Option<String> {
        self.conditions.each().iter().find_map(|condition| condition.never_holds(&self.conditions))
    }
}
