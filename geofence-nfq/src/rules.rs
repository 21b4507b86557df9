//! The firewall rules that feed a queue, derived from a policy: only the first packet of a flow
//! reaches geofence (conntrack NEW), a per-source hashlimit drops floods ahead of it, and once a
//! flow's first packet is accepted (its verdict carries the flow mark, which the rules save to
//! the connection) the rest of the flow never leaves the kernel.
//!
//! Packets conntrack calls INVALID (an ICMP error or echo reply for no flow, a UDP length that
//! disagrees with the packet, a TCP segment outside every window) belong to no flow, so they are
//! neither NEW nor part of one the queue accepted: they would pass INPUT unexamined. They get the
//! policy's `malformed` verdict in the kernel instead: dropped ahead of the queue when it is
//! `drop` (the default), left to pass when it is `accept`. ICMP errors about a flow that exists
//! are RELATED, not INVALID, and pass as before.
//!
//! With fail-open, the kernel accepts a packet that finds the queue full (or no reader) without
//! counting it anywhere in `/proc/net/netfilter/nfnetlink_queue`. The rules count those: a new
//! packet of the selected traffic that reaches the security table with neither geofence's mark
//! nor its connection's was not decided by geofence, and a rule commented
//! [`UNEXAMINED_COMMENT`] counts it. A packet accepted without the flow mark (a SIP rule's
//! verdict, which holds for that packet alone) carries the examined mark instead, which is never
//! saved to the connection, and the count passes over it too.
//!
//! A policy that reads SIP payloads must see every datagram its SIP rules could decide, not
//! only a flow's first: otherwise a scanner that keeps its source port rides the verdict of its
//! first, harmless request. For those rules' UDP ports the rules queue every datagram that does
//! not carry the flow mark, still behind the per-source hashlimit (which then counts every
//! datagram of the source, not only new flows); only verdicts of rules ahead of every SIP rule
//! (trunks, the LAN) give the flow mark, so trusted sources keep the kernel bypass.
//!
//! Their TCP ports are queued segment by segment too, until a connection has the flow mark: a
//! connection's first packet is its SYN, which carries no payload, and a stream's later
//! segments need not start a message, so geofence decides a connection by its first whole
//! request and gives the flow mark with that request's accept. A dropped segment gets no mark,
//! so the sender's retransmissions are queued and dropped again. The hashlimit counts new
//! connections, not segments. The server's answers over TCP are not queued for
//! `max_failures`: behind IPv6's header and TCP's options the status line can start past the
//! string match's reach.
//!
//! A `[behaviour]` with `max_failures` counts the server's failure answers (401, 403, 404,
//! 407) to a source, so the rules also queue, on OUTPUT, the UDP datagrams leaving those SIP
//! ports that start `SIP/2.0 40` (a `string` match over the first 64 bytes, which hold the
//! status line's start behind an IPv4 or IPv6 header and UDP's). geofence accepts each and
//! counts it against its destination; other answers never leave the kernel, and neither do those
//! on a flow with the flow mark (to a trusted source, never counted). The queue is passed by
//! when no geofence reads it, even for a policy that fails closed: it only counts.
//!
//! A policy with ban rules gets the two sets of banned networks ([`crate::bans`]: ipsets for
//! iptables, sets of the `inet geofence` table for nft) and, first of all, a rule a family that
//! drops their members on every port: a banned source's packets die in the kernel, before any
//! queue or flow-mark accept.
//!
//! Pure text generation for iptables/ip6tables command lines and for an nft ruleset.

use std::fmt::Write;

use geofence_core::{Config, PortRange, Protocol, Rule, Verdict};

use geofence_core::ban::SetKind;

use crate::bans::{ipset, nft as nft_sets};

/// The comment of the rules that count what fail-open let pass unexamined.
pub const UNEXAMINED_COMMENT: &str = "geofence-unexamined";

/// What the rules send to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every new inbound flow.
    All,
    /// Every new flow of one protocol.
    Protocol(Protocol),
    /// New flows of one protocol to a destination port range.
    Ports(Protocol, PortRange),
}

impl Selector {
    /// The one protocol it selects, if it selects one.
    pub fn protocol(self) -> Option<Protocol> {
        match self {
            Selector::All => None,
            Selector::Protocol(protocol) | Selector::Ports(protocol, _) => Some(protocol),
        }
    }
}

/// What a ruleset needs to know besides the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOptions {
    /// The queues, first to last; more than one is balanced by flow.
    pub queues: (u16, u16),
    /// Whether packets pass when no geofence serves the queue (`--queue-bypass`).
    pub bypass: bool,
    /// New flows a second one source may start; 0 turns the hashlimit off.
    pub hashlimit_rate: u32,
    /// The burst above that rate.
    pub hashlimit_burst: u32,
    /// The mark bit accepted verdicts carry; 0 turns flow bypass off.
    pub flow_mark: u32,
    /// The mark bit of packets accepted without the flow mark, one by one: decided, so the
    /// count of unexamined packets passes over them; 0: no such mark.
    pub examined_mark: u32,
    /// Whether packets of the selected traffic that conntrack calls INVALID are dropped ahead
    /// of the queue (the policy's `malformed` verdict is drop) rather than let through.
    pub drop_invalid: bool,
    /// Traffic whose every packet without the flow mark is queued, not only a flow's first:
    /// what rules that read SIP payloads could decide. UDP datagrams are decided one by one;
    /// a TCP connection until its first whole request settles it ([`Policy::settles`]). Its
    /// rules come first.
    ///
    /// [`Policy::settles`]: geofence_core::Policy::settles
    pub every_packet: Vec<Selector>,
    /// The ban sets, when a rule bans: created first, and their members dropped on every port
    /// ahead of every other rule.
    pub bans: Option<BanSetOptions>,
    /// Traffic whose server's failure answers are queued on OUTPUT, by the answers' source
    /// port: the SIP datagrams of `every_packet`, when `[behaviour]` counts failures.
    pub failure_answers: Vec<Selector>,
}

/// The kernel sets of banned networks, as `ipset create` makes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanSetOptions {
    /// Entries each set holds at most (`maxelem`, `size`).
    pub max_entries: usize,
    /// The kind of set the daemon writes, which must be the backend's.
    pub kind: SetKind,
    /// The TCP and UDP destination ports the drop rules cover; empty: all traffic.
    pub ports: Vec<PortRange>,
}

/// The nft backend's hashlimit sets, one a family: name, element type, and the source it keys.
const HASHLIMIT_SETS: [(&str, &str, &str); 2] =
    [("geofence4", "ipv4_addr", "ip saddr"), ("geofence6", "ipv6_addr", "ip6 saddr")];

/// Sources the nft backend's hashlimit sets hold at most, and how long one is kept after its
/// last packet.
const HASHLIMIT_SOURCES: usize = 65_536;
const HASHLIMIT_IDLE: &str = "1m";

/// Port ranges one `multiport` match takes: it counts a range as two of its 15 ports.
const MULTIPORT_RANGES: usize = 7;

/// What a config's rules send to the queue, and how: the inputs of [`iptables`] and [`nft`].
pub fn for_config(config: &Config) -> (Vec<Selector>, RuleOptions) {
    let policy = &config.policy.builder;
    let mut options = crate::deployment::rule_options(&config.deployment, policy.malformed_verdict());
    options.every_packet = payload_selectors(policy.rules());
    if config.policy.behaviour.is_some_and(|behaviour| behaviour.limits.max_failures != u32::MAX) {
        // Only UDP's: a TCP answer's status line may start past the string match's 64 bytes.
        options.failure_answers =
            options.every_packet.iter().copied().filter(|s| s.protocol() == Some(Protocol::UDP)).collect();
    }
    if policy.rules().iter().any(|rule| rule.ban().is_some()) {
        let bans = &config.deployment.bans;
        options.bans =
            Some(BanSetOptions { max_entries: bans.limits.max_entries, kind: bans.sets, ports: bans.ports.clone() });
    }
    let mut flows = selectors(policy.rules(), policy.default_verdict());
    flows.retain(|selector| !options.every_packet.contains(selector));
    (flows, options)
}

/// The traffic rules that read SIP payloads could decide, UDP and TCP: their ports, or all of
/// the protocol.
pub fn payload_selectors(rules: &[Rule]) -> Vec<Selector> {
    let mut wanted: Vec<Selector> = Vec::new();
    for rule in rules.iter().filter(|rule| rule.reads_payload()) {
        for protocol in [Protocol::UDP, Protocol::TCP] {
            if !rule.protocols().is_empty() && !rule.protocols().contains(&protocol) {
                continue;
            }
            let selectors: Vec<Selector> = match rule.ports() {
                [] => vec![Selector::Protocol(protocol)],
                ranges => ranges.iter().map(|range| Selector::Ports(protocol, *range)).collect(),
            };
            for selector in selectors {
                if !wanted.contains(&selector) {
                    wanted.push(selector);
                }
            }
        }
    }
    for protocol in [Protocol::UDP, Protocol::TCP] {
        if wanted.contains(&Selector::Protocol(protocol)) {
            wanted.retain(|selector| !matches!(selector, Selector::Ports(p, _) if *p == protocol));
        }
    }
    wanted
}

/// The traffic a policy must see: what its rules name, or everything when a rule names no
/// protocol or packets no rule matches would not simply be accepted.
pub fn selectors(rules: &[Rule], default: Verdict) -> Vec<Selector> {
    if default != Verdict::Accept || rules.iter().any(|rule| rule.protocols().is_empty()) {
        return vec![Selector::All];
    }
    let mut selectors: Vec<Selector> = Vec::new();
    for rule in rules {
        for &protocol in rule.protocols() {
            let wanted: Vec<Selector> = if rule.ports().is_empty() || !protocol.has_ports() {
                vec![Selector::Protocol(protocol)]
            } else {
                rule.ports().iter().map(|range| Selector::Ports(protocol, *range)).collect()
            };
            for selector in wanted {
                if !selectors.contains(&selector) {
                    selectors.push(selector);
                }
            }
        }
    }
    let whole: Vec<Protocol> =
        selectors.iter().filter_map(|s| if let Selector::Protocol(p) = s { Some(*p) } else { None }).collect();
    selectors.retain(|s| !matches!(s, Selector::Ports(p, _) if whole.contains(p)));
    selectors
}

/// The IP family a command is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// iptables and ip6tables commands, one a line, ready for a shell.
pub fn iptables(selectors: &[Selector], options: &RuleOptions) -> String {
    let mut out = String::new();
    for family in [Family::V4, Family::V6] {
        let (tool, suffix) = if family == Family::V4 { ("iptables", "4") } else { ("ip6tables", "6") };
        if let Some(bans) = &options.bans {
            let (set, inet) = if family == Family::V4 { (ipset::SET_V4, "inet") } else { (ipset::SET_V6, "inet6") };
            // The set's default timeout only marks it as a set with timeouts: each ban gives its own.
            let _ = writeln!(
                out,
                "ipset create {set} hash:net family {inet} timeout 3600 maxelem {} -exist",
                bans.max_entries
            );
            for matched in ban_port_matches(&bans.ports) {
                let _ = writeln!(out, "{tool} -w -A INPUT -m set --match-set {set} src{matched} -j DROP");
            }
        }
        for (selector, limited, state) in queued(selectors, options, " -m conntrack --ctstate NEW") {
            let Some(matched) = iptables_match(*selector, family) else { continue };
            if options.drop_invalid {
                let _ = writeln!(out, "{tool} -w -A INPUT{matched} -m conntrack --ctstate INVALID -j DROP");
            }
            let mark = options.flow_mark;
            if mark != 0 {
                let _ = writeln!(out, "{tool} -w -A INPUT{matched} -m connmark --mark {mark:#x}/{mark:#x} -j ACCEPT");
            }
            if options.hashlimit_rate > 0 {
                let _ = writeln!(
                    out,
                    "{tool} -w -A INPUT{matched}{limited} -m hashlimit --hashlimit-above {}/sec --hashlimit-burst {} \
                     --hashlimit-mode srcip --hashlimit-name geofence{suffix} -j DROP",
                    options.hashlimit_rate, options.hashlimit_burst
                );
            }
            let _ = writeln!(
                out,
                "{tool} -w -A INPUT{matched}{state} -j NFQUEUE {}",
                queue_target(options, options.bypass)
            );
        }
        iptables_answers(&mut out, tool, &options.failure_answers, options);
        if options.flow_mark != 0 {
            let mark = options.flow_mark;
            let _ = writeln!(
                out,
                "{tool} -w -t security -A INPUT -m mark --mark {mark:#x}/{mark:#x} -j CONNMARK --save-mark --nfmask {mark:#x} --ctmask {mark:#x}"
            );
            let counted = options.every_packet.iter().chain(selectors).filter(|_| options.bypass);
            let examined = match options.examined_mark {
                0 => String::new(),
                bit => format!(" -m mark ! --mark {bit:#x}/{bit:#x}"),
            };
            for matched in counted.filter_map(|s| iptables_match(*s, family)) {
                let _ = writeln!(
                    out,
                    "{tool} -w -t security -A INPUT{matched} -m conntrack --ctstate NEW -m connmark ! --mark {mark:#x}/{mark:#x} \
                     -m mark ! --mark {mark:#x}/{mark:#x}{examined} -m comment --comment {UNEXAMINED_COMMENT}"
                );
            }
        }
    }
    out
}

/// The first bytes of a failure answer's payload: `SIP/2.0 401`, `403`, `404`, `407` (and the
/// other 40x, which geofence passes over).
const FAILURE_START: &str = "SIP/2.0 40";

/// OUTPUT rules that queue the server's failure answers from the ports of `answers`. Answers
/// on a connection with the flow mark go to a trusted source, which is never counted, so they
/// are not queued; and the queue is passed by when no geofence reads it, whatever `fail_open`
/// says, since geofence only counts these answers and a stopped one must not silence the
/// server.
fn iptables_answers(out: &mut String, tool: &str, answers: &[Selector], options: &RuleOptions) {
    let trusted = match options.flow_mark {
        0 => String::new(),
        mark => format!(" -m connmark ! --mark {mark:#x}/{mark:#x}"),
    };
    for selector in answers {
        let matched = match selector {
            Selector::Ports(_, range) => format!(" -p udp --sport {}", range_text(*range, ":")),
            _ => " -p udp".to_owned(),
        };
        let _ = writeln!(
            out,
            "{tool} -w -A OUTPUT{matched}{trusted} -m string --algo bm --to 64 --string \"{FAILURE_START}\" -j NFQUEUE {}",
            queue_target(options, true)
        );
    }
}

/// What the rules queue, in order, each with the matches that limit its hashlimit and its
/// queue to new flows (`new`) or not: first the traffic queued packet by packet, whose TCP
/// hashlimit still counts connections, not segments; then the flows' first packets.
fn queued<'a>(
    selectors: &'a [Selector],
    options: &'a RuleOptions,
    new: &'static str,
) -> impl Iterator<Item = (&'a Selector, &'static str, &'static str)> {
    let every_packet = options.every_packet.iter().map(move |selector| {
        let limited = if selector.protocol() == Some(Protocol::TCP) { new } else { "" };
        (selector, limited, "")
    });
    every_packet.chain(selectors.iter().map(move |s| (s, new, new)))
}

fn queue_target(options: &RuleOptions, bypass: bool) -> String {
    let (first, last) = options.queues;
    let mut target =
        if first == last { format!("--queue-num {first}") } else { format!("--queue-balance {first}:{last}") };
    if bypass {
        target.push_str(" --queue-bypass");
    }
    target
}

/// The iptables match for a selector in a family (with a leading space), or `None` when the
/// selector cannot apply to the family (ICMP in IPv6, ICMPv6 in IPv4).
fn iptables_match(selector: Selector, family: Family) -> Option<String> {
    let protocol = |p: Protocol| -> Option<String> {
        match (p, family) {
            (Protocol::ICMP, Family::V6) | (Protocol::ICMPV6, Family::V4) => None,
            (Protocol::ICMPV6, Family::V6) => Some("ipv6-icmp".into()),
            (p, _) => Some(p.name().map_or(p.0.to_string(), str::to_owned)),
        }
    };
    Some(match selector {
        Selector::All => String::new(),
        Selector::Protocol(p) => format!(" -p {}", protocol(p)?),
        // iptables cannot match UDP-Lite ports: such flows are queued whatever the port.
        Selector::Ports(Protocol::UDPLITE, _) => format!(" -p {}", protocol(Protocol::UDPLITE)?),
        Selector::Ports(p, range) => format!(" -p {} --dport {}", protocol(p)?, range_text(range, ":")),
    })
}

/// What limits a ban set's drop rule to the config's ports, one match a rule: nothing for all
/// traffic, else TCP and UDP `multiport` matches of up to [`MULTIPORT_RANGES`] ranges each.
fn ban_port_matches(ports: &[PortRange]) -> Vec<String> {
    if ports.is_empty() {
        return vec![String::new()];
    }
    let mut matches = Vec::new();
    for protocol in ["tcp", "udp"] {
        for chunk in ports.chunks(MULTIPORT_RANGES) {
            let ranges: Vec<String> = chunk.iter().map(|range| range_text(*range, ":")).collect();
            matches.push(format!(" -p {protocol} -m multiport --dports {}", ranges.join(",")));
        }
    }
    matches
}

fn range_text(range: PortRange, separator: &str) -> String {
    if range.first == range.last {
        range.first.to_string()
    } else {
        format!("{}{separator}{}", range.first, range.last)
    }
}

/// An nft ruleset (`nft -f`): table `inet geofence` with an input chain and one that saves the
/// flow mark to the connection after the queue's verdict.
pub fn nft(selectors: &[Selector], options: &RuleOptions) -> String {
    let mut out = String::from("table inet geofence {\n");
    if options.hashlimit_rate > 0 {
        // One set a family, declared once and updated by every rule, like iptables' one
        // hashlimit name: a second `meter` of the same name in a ruleset is refused.
        for (set, kind, _) in HASHLIMIT_SETS {
            let _ = writeln!(
                out,
                "    set {set} {{\n        type {kind}\n        size {HASHLIMIT_SOURCES}\n        flags dynamic, timeout\n        \
                 timeout {HASHLIMIT_IDLE}\n    }}"
            );
        }
    }
    if let Some(bans) = &options.bans {
        for (set, kind) in [(nft_sets::SET_V4, "ipv4_addr"), (nft_sets::SET_V6, "ipv6_addr")] {
            let _ = writeln!(
                out,
                "    set {set} {{\n        type {kind}\n        flags interval, timeout\n        size {}\n    }}",
                bans.max_entries
            );
        }
    }
    out.push_str("    chain input {\n        type filter hook input priority filter; policy accept;\n");
    if let Some(bans) = &options.bans {
        let ports = match bans.ports.as_slice() {
            [] => String::new(),
            ranges => {
                let ranges: Vec<String> = ranges.iter().map(|range| range_text(*range, "-")).collect();
                format!(" meta l4proto {{ tcp, udp }} th dport {{ {} }}", ranges.join(", "))
            }
        };
        let _ = writeln!(
            out,
            "        ip saddr @{}{ports} drop\n        ip6 saddr @{}{ports} drop",
            nft_sets::SET_V4,
            nft_sets::SET_V6
        );
    }
    let queue = nft_queue(options, options.bypass);
    for (selector, limited, state) in queued(selectors, options, "ct state new ") {
        let matched = nft_match(*selector);
        if options.drop_invalid {
            let _ = writeln!(out, "        {matched}ct state invalid drop");
        }
        let mark = options.flow_mark;
        if mark != 0 {
            let _ = writeln!(out, "        {matched}ct mark & {mark:#x} == {mark:#x} accept");
        }
        if options.hashlimit_rate > 0 {
            for (set, _, address) in HASHLIMIT_SETS {
                let _ = writeln!(
                    out,
                    "        {matched}{limited}update @{set} {{ {address} limit rate over {}/second burst {} packets }} drop",
                    options.hashlimit_rate, options.hashlimit_burst
                );
            }
        }
        let _ = writeln!(out, "        {matched}{state}{queue}");
    }
    out.push_str("    }\n");
    if !options.failure_answers.is_empty() {
        let start: String = FAILURE_START.bytes().map(|byte| format!("{byte:02x}")).collect();
        let bits = FAILURE_START.len() * 8;
        out.push_str("    chain output {\n        type filter hook output priority filter; policy accept;\n");
        // As iptables_answers: not to trusted sources, and passed by without a geofence.
        let trusted = match options.flow_mark {
            0 => String::new(),
            mark => format!("ct mark & {mark:#x} != {mark:#x} "),
        };
        let queue = nft_queue(options, true);
        for selector in &options.failure_answers {
            let matched = match selector {
                Selector::Ports(_, range) => format!("udp sport {} ", range_text(*range, "-")),
                _ => "meta l4proto udp ".to_owned(),
            };
            // The payload's first bytes, 8 bytes into the transport header (UDP's length).
            let _ = writeln!(out, "        {matched}{trusted}@th,64,{bits} 0x{start} {queue}");
        }
        out.push_str("    }\n");
    }
    if options.flow_mark != 0 {
        let mark = options.flow_mark;
        let _ =
            writeln!(out, "    chain save-flow-mark {{\n        type filter hook input priority 100; policy accept;");
        let counted = options.every_packet.iter().chain(selectors).filter(|_| options.bypass);
        let examined = match options.examined_mark {
            0 => String::new(),
            bit => format!("meta mark & {bit:#x} != {bit:#x} "),
        };
        for matched in counted.map(|s| nft_match(*s)) {
            let _ = writeln!(
                out,
                "        {matched}ct state new ct mark & {mark:#x} != {mark:#x} meta mark & {mark:#x} != {mark:#x} \
                 {examined}counter comment \"{UNEXAMINED_COMMENT}\""
            );
        }
        let _ = write!(out, "        meta mark & {mark:#x} == {mark:#x} ct mark set ct mark | {mark:#x}\n    }}\n");
    }
    out.push_str("}\n");
    out
}

fn nft_queue(options: &RuleOptions, bypass: bool) -> String {
    let (first, last) = options.queues;
    let queue = if first == last { format!("queue num {first}") } else { format!("queue num {first}-{last} fanout") };
    if bypass {
        format!("{queue} bypass")
    } else {
        queue
    }
}

fn nft_match(selector: Selector) -> String {
    let name = |p: Protocol| match p {
        Protocol::ICMPV6 => "ipv6-icmp".to_owned(),
        p => p.name().map_or(p.0.to_string(), str::to_owned),
    };
    match selector {
        Selector::All => String::new(),
        Selector::Protocol(p) => format!("meta l4proto {} ", name(p)),
        Selector::Ports(p, range) => format!("{} dport {} ", name(p), range_text(range, "-")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asterisk() -> (Vec<Selector>, RuleOptions) {
        for_config(&Config::parse(include_str!("../data/asterisk.toml")).unwrap())
    }

    #[test]
    fn the_asterisk_policy_queues_new_sip_flows_behind_a_hashlimit() {
        let (selectors, options) = asterisk();
        assert_eq!(selectors, [Selector::Ports(Protocol::UDP, PortRange::single(5060))]);
        assert_eq!(
            iptables(&selectors, &options),
            "iptables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate INVALID -j DROP\n\
             iptables -w -A INPUT -p udp --dport 5060 -m connmark --mark 0x40000000/0x40000000 -j ACCEPT\n\
             iptables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 2/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name geofence4 -j DROP\n\
             iptables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -j NFQUEUE --queue-num 0\n\
             iptables -w -t security -A INPUT -m mark --mark 0x40000000/0x40000000 -j CONNMARK --save-mark --nfmask 0x40000000 --ctmask 0x40000000\n\
             ip6tables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate INVALID -j DROP\n\
             ip6tables -w -A INPUT -p udp --dport 5060 -m connmark --mark 0x40000000/0x40000000 -j ACCEPT\n\
             ip6tables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 2/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name geofence6 -j DROP\n\
             ip6tables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -j NFQUEUE --queue-num 0\n\
             ip6tables -w -t security -A INPUT -m mark --mark 0x40000000/0x40000000 -j CONNMARK --save-mark --nfmask 0x40000000 --ctmask 0x40000000\n"
        );
    }

    /// The ban sets come first and drop their members on every port, ahead of the queue.
    #[test]
    fn a_policy_that_bans_creates_the_sets_and_drops_their_members_first() {
        let config = Config::parse(
            "default = \"accept\"\nhashlimit_rate = 0\nflow_mark = 0\nmalformed = \"accept\"\n[bans]\nmax_entries = 5000\n\
             [[rule]]\nprotocol = \"tcp\"\nports = [23]\naction = \"ban\"\n",
        )
        .unwrap();
        let (selectors, options) = for_config(&config);
        assert_eq!(options.bans, Some(BanSetOptions { max_entries: 5000, kind: SetKind::Ipset, ports: Vec::new() }));
        assert_eq!(
            iptables(&selectors, &options),
            "ipset create geofence-ban4 hash:net family inet timeout 3600 maxelem 5000 -exist\n\
             iptables -w -A INPUT -m set --match-set geofence-ban4 src -j DROP\n\
             iptables -w -A INPUT -p tcp --dport 23 -m conntrack --ctstate NEW -j NFQUEUE --queue-num 0\n\
             ipset create geofence-ban6 hash:net family inet6 timeout 3600 maxelem 5000 -exist\n\
             ip6tables -w -A INPUT -m set --match-set geofence-ban6 src -j DROP\n\
             ip6tables -w -A INPUT -p tcp --dport 23 -m conntrack --ctstate NEW -j NFQUEUE --queue-num 0\n"
        );
        assert_eq!(asterisk().1.bans, None, "no ban rule, no sets");
        let nft_options = RuleOptions {
            bans: Some(BanSetOptions { kind: SetKind::Nft, ..options.bans.clone().unwrap() }),
            ..options.clone()
        };
        assert_eq!(
            nft(&selectors, &nft_options),
            "table inet geofence {\n    set ban4 {\n        type ipv4_addr\n        flags interval, timeout\n        size 5000\n    }\n    \
             set ban6 {\n        type ipv6_addr\n        flags interval, timeout\n        size 5000\n    }\n    chain input {\n        \
             type filter hook input priority filter; policy accept;\n        ip saddr @ban4 drop\n        ip6 saddr @ban6 drop\n        \
             tcp dport 23 ct state new queue num 0\n    }\n}\n"
        );
    }

    /// `[bans] ports` limits the drop rules to TCP and UDP on those ports, in multiport matches
    /// of at most seven ranges.
    #[test]
    fn ban_ports_limit_the_drop_rules_to_tcp_and_udp_on_them() {
        let ports: Vec<String> = (1..=8).map(|n| format!("\"{}-{}\"", n * 100, n * 100 + 9)).collect();
        let config = Config::parse(&format!(
            "default = \"accept\"\n[bans]\nports = [{}]\n[[rule]]\nprotocol = \"tcp\"\nports = [23]\naction = \"ban\"\n",
            ports.join(", ")
        ))
        .unwrap();
        let (selectors, options) = for_config(&config);
        let drops: Vec<String> = iptables(&selectors, &options)
            .lines()
            .filter(|l| l.starts_with("iptables") && l.contains("match-set"))
            .map(str::to_owned)
            .collect();
        let set = "iptables -w -A INPUT -m set --match-set geofence-ban4 src";
        assert_eq!(
            drops,
            [
                format!("{set} -p tcp -m multiport --dports 100:109,200:209,300:309,400:409,500:509,600:609,700:709 -j DROP"),
                format!("{set} -p tcp -m multiport --dports 800:809 -j DROP"),
                format!("{set} -p udp -m multiport --dports 100:109,200:209,300:309,400:409,500:509,600:609,700:709 -j DROP"),
                format!("{set} -p udp -m multiport --dports 800:809 -j DROP"),
            ]
        );
        let nft_options = RuleOptions {
            bans: Some(BanSetOptions {
                kind: SetKind::Nft,
                ports: vec![PortRange::single(5060)],
                ..options.bans.clone().unwrap()
            }),
            ..options
        };
        assert!(nft(&selectors, &nft_options)
            .contains("        ip saddr @ban4 meta l4proto { tcp, udp } th dport { 5060 } drop\n"));
    }

    /// Trunks keep the flow bypass; every other datagram to the port a SIP rule reads is queued.
    #[test]
    fn a_policy_that_reads_sip_queues_every_packet_of_its_ports() {
        let config = Config::parse(
            "default = \"accept\"\n[lists]\ntrunks = [\"203.0.113.10\"]\n\
             [[rule]]\nsource = [\"trunks\"]\nprotocol = [\"udp\", \"tcp\"]\nports = [5060]\naction = \"accept\"\n\
             [[rule]]\nprotocol = \"udp\"\nports = [5060]\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n\
             [[rule]]\nprotocol = \"tcp\"\nports = [5061]\naction = \"drop\"\n",
        )
        .unwrap();
        let (selectors, options) = for_config(&config);
        let sip = Selector::Ports(Protocol::UDP, PortRange::single(5060));
        assert_eq!(options.every_packet, [sip]);
        assert_eq!(
            selectors,
            [
                Selector::Ports(Protocol::TCP, PortRange::single(5060)),
                Selector::Ports(Protocol::TCP, PortRange::single(5061))
            ],
            "the UDP port is queued datagram by datagram, not by flow"
        );
        let lines = iptables(&selectors, &options);
        assert!(lines.starts_with(
            "iptables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate INVALID -j DROP\n\
             iptables -w -A INPUT -p udp --dport 5060 -m connmark --mark 0x40000000/0x40000000 -j ACCEPT\n\
             iptables -w -A INPUT -p udp --dport 5060 -m hashlimit --hashlimit-above 2/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name geofence4 -j DROP\n\
             iptables -w -A INPUT -p udp --dport 5060 -j NFQUEUE --queue-num 0\n\
             iptables -w -A INPUT -p tcp --dport 5060 -m conntrack --ctstate INVALID -j DROP\n"
        ), "{lines}");
        assert!(nft(&selectors, &options).contains(
            "        udp dport 5060 update @geofence4 { ip saddr limit rate over 2/second burst 5 packets } drop\n\
             \x20       udp dport 5060 update @geofence6 { ip6 saddr limit rate over 2/second burst 5 packets } drop\n\
             \x20       udp dport 5060 queue num 0\n"
        ));
        let geography = Config::parse("default = \"drop\"\n[[rule]]\nports = [5060]\naction = \"accept\"\n").unwrap();
        assert!(for_config(&geography).1.every_packet.is_empty());
    }

    /// A SIP rule over TCP queues each segment of its port's connections that carry no flow
    /// mark (until the first whole request settles one), behind a hashlimit that still counts
    /// connections; the failure answers queued on OUTPUT stay UDP's.
    #[test]
    fn a_sip_rule_over_tcp_queues_its_unsettled_connections_segment_by_segment() {
        let config = Config::parse(
            "default = \"accept\"\n[behaviour]\nwindow = \"10s\"\npenalty = \"1m\"\nmax_failures = 20\n\
             [[rule]]\nprotocol = [\"udp\", \"tcp\"]\nports = [5060]\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n",
        )
        .unwrap();
        let (selectors, options) = for_config(&config);
        let (udp, tcp) = (
            Selector::Ports(Protocol::UDP, PortRange::single(5060)),
            Selector::Ports(Protocol::TCP, PortRange::single(5060)),
        );
        assert_eq!((options.every_packet.as_slice(), selectors.as_slice()), (&[udp, tcp][..], &[][..]));
        assert_eq!(options.failure_answers, [udp]);
        let lines = iptables(&selectors, &options);
        assert!(lines.contains(
            "iptables -w -A INPUT -p tcp --dport 5060 -m connmark --mark 0x40000000/0x40000000 -j ACCEPT\n\
             iptables -w -A INPUT -p tcp --dport 5060 -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 2/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name geofence4 -j DROP\n\
             iptables -w -A INPUT -p tcp --dport 5060 -j NFQUEUE --queue-num 0\n"
        ), "{lines}");
        assert_eq!(lines.matches("-A OUTPUT").count(), 2, "UDP's answers, IPv4 and IPv6: {lines}");
        let ruleset = nft(&selectors, &options);
        assert!(ruleset.contains(
            "        tcp dport 5060 ct state new update @geofence6 { ip6 saddr limit rate over 2/second burst 5 packets } drop\n\
             \x20       tcp dport 5060 queue num 0\n"
        ), "{ruleset}");
    }

    /// With `max_failures`, the server's 40x answers from the SIP port are queued on OUTPUT,
    /// but not those to trusted sources, and passed by when no geofence reads the queue even
    /// when the policy fails closed; without it, no answer is.
    #[test]
    fn counting_failures_queues_the_servers_failure_answers_on_output() {
        let text = "default = \"accept\"\nhashlimit_rate = 0\nqueue = \"2-3\"\n\
                    [behaviour]\nwindow = \"10s\"\npenalty = \"1m\"\nmax_failures = 20\n\
                    [[rule]]\nprotocol = \"udp\"\nports = [5060]\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n";
        let (selectors, options) = for_config(&Config::parse(text).unwrap());
        assert_eq!(options.failure_answers, [Selector::Ports(Protocol::UDP, PortRange::single(5060))]);
        let lines = iptables(&selectors, &options);
        for tool in ["iptables", "ip6tables"] {
            let answers = format!(
                "{tool} -w -A OUTPUT -p udp --sport 5060 -m connmark ! --mark 0x40000000/0x40000000 -m string --algo bm \
                 --to 64 --string \"SIP/2.0 40\" -j NFQUEUE --queue-balance 2:3 --queue-bypass\n"
            );
            assert!(lines.contains(&answers), "{lines}");
        }
        assert!(lines.contains("--dport 5060 -j NFQUEUE --queue-balance 2:3\n"), "fails closed on INPUT: {lines}");
        let ruleset = nft(&selectors, &options);
        assert!(
            ruleset.contains(
                "    chain output {\n        type filter hook output priority filter; policy accept;\n        \
             udp sport 5060 ct mark & 0x40000000 != 0x40000000 @th,64,80 0x5349502f322e30203430 queue num 2-3 fanout \
             bypass\n    }\n"
            ),
            "{ruleset}"
        );
        let uncounted = Config::parse(&text.replace("max_failures = 20\n", "max_requests = 20\n")).unwrap();
        let (selectors, options) = for_config(&uncounted);
        assert!(options.failure_answers.is_empty());
        assert!(!iptables(&selectors, &options).contains("OUTPUT") && !nft(&selectors, &options).contains("output"));
    }

    #[test]
    fn options_change_the_queue_target_and_drop_what_is_off() {
        let (selectors, mut options) = asterisk();
        options.queues = (2, 5);
        options.bypass = true;
        options.hashlimit_rate = 0;
        options.flow_mark = 0;
        options.drop_invalid = false;
        assert_eq!(
            iptables(&selectors, &options),
            "iptables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -j NFQUEUE --queue-balance 2:5 --queue-bypass\n\
             ip6tables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -j NFQUEUE --queue-balance 2:5 --queue-bypass\n"
        );
    }

    #[test]
    fn selectors_cover_what_the_rules_name_or_everything() {
        let sip = Rule::new("sip", Verdict::Drop)
            .with_protocol(Protocol::UDP)
            .with_protocol(Protocol::TCP)
            .with_protocol(Protocol::ICMP)
            .with_ports(PortRange::single(5060))
            .with_ports(PortRange { first: 5061, last: 5062 });
        let all_udp = Rule::new("udp", Verdict::Drop).with_protocol(Protocol::UDP);
        let picked = selectors(&[sip.clone(), all_udp], Verdict::Accept);
        assert_eq!(
            picked,
            [
                Selector::Ports(Protocol::TCP, PortRange::single(5060)),
                Selector::Ports(Protocol::TCP, PortRange { first: 5061, last: 5062 }),
                Selector::Protocol(Protocol::ICMP),
                Selector::Protocol(Protocol::UDP),
            ]
        );
        assert_eq!(selectors(std::slice::from_ref(&sip), Verdict::Drop), [Selector::All]);
        assert_eq!(selectors(&[sip, Rule::new("any", Verdict::Accept)], Verdict::Accept), [Selector::All]);
        let icmp = iptables(
            &[Selector::Protocol(Protocol::ICMP)],
            &RuleOptions {
                queues: (0, 0),
                bypass: false,
                hashlimit_rate: 0,
                hashlimit_burst: 0,
                flow_mark: 0,
                examined_mark: 0,
                drop_invalid: false,
                every_packet: Vec::new(),
                bans: None,
                failure_answers: Vec::new(),
            },
        );
        assert_eq!(icmp, "iptables -w -A INPUT -p icmp -m conntrack --ctstate NEW -j NFQUEUE --queue-num 0\n");
    }

    #[test]
    fn the_nft_ruleset_says_the_same() {
        let (selectors, options) = asterisk();
        assert_eq!(
            nft(&selectors, &options),
            "table inet geofence {\n    \
             set geofence4 {\n        type ipv4_addr\n        size 65536\n        flags dynamic, timeout\n        timeout 1m\n    }\n    \
             set geofence6 {\n        type ipv6_addr\n        size 65536\n        flags dynamic, timeout\n        timeout 1m\n    }\n    \
             chain input {\n        type filter hook input priority filter; policy accept;\n        \
             udp dport 5060 ct state invalid drop\n        \
             udp dport 5060 ct mark & 0x40000000 == 0x40000000 accept\n        \
             udp dport 5060 ct state new update @geofence4 { ip saddr limit rate over 2/second burst 5 packets } drop\n        \
             udp dport 5060 ct state new update @geofence6 { ip6 saddr limit rate over 2/second burst 5 packets } drop\n        \
             udp dport 5060 ct state new queue num 0\n    }\n    chain save-flow-mark {\n        \
             type filter hook input priority 100; policy accept;\n        \
             meta mark & 0x40000000 == 0x40000000 ct mark set ct mark | 0x40000000\n    }\n}\n"
        );
    }

    #[test]
    fn with_fail_open_the_rules_count_what_passed_unexamined() {
        let (selectors, mut options) = asterisk();
        assert!(!iptables(&selectors, &options).contains(UNEXAMINED_COMMENT));
        options.bypass = true;
        let lines = iptables(&selectors, &options);
        assert!(lines.contains(
            "iptables -w -t security -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -m connmark ! --mark \
             0x40000000/0x40000000 -m mark ! --mark 0x40000000/0x40000000 -m mark ! --mark 0x20000000/0x20000000 -m \
             comment --comment geofence-unexamined\n"
        ));
        assert_eq!(lines.matches(UNEXAMINED_COMMENT).count(), 2, "one a family");
        assert!(nft(&selectors, &options).contains(
            "        udp dport 5060 ct state new ct mark & 0x40000000 != 0x40000000 meta mark & 0x40000000 != 0x40000000 \
             meta mark & 0x20000000 != 0x20000000 counter comment \"geofence-unexamined\"\n        \
             meta mark & 0x40000000 == 0x40000000 ct mark set"
        ));
        options.examined_mark = 0;
        assert!(!iptables(&selectors, &options).contains("0x20000000"), "no examined mark, no match of it");
    }

    #[test]
    fn invalid_packets_get_the_malformed_verdict_in_the_kernel() {
        let accepting = Config::parse("default = \"drop\"\nmalformed = \"accept\"\n").unwrap();
        let (selectors, options) = for_config(&accepting);
        assert!(!options.drop_invalid);
        assert!(!iptables(&selectors, &options).contains("INVALID") && !nft(&selectors, &options).contains("invalid"));
        let dropping = Config::parse("default = \"drop\"\n").unwrap();
        let (selectors, options) = for_config(&dropping);
        assert!(
            iptables(&selectors, &options).starts_with("iptables -w -A INPUT -m conntrack --ctstate INVALID -j DROP\n")
        );
    }
}
