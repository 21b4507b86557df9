use super::*;
use crate::asn::AsnSet;
use crate::condition::Facts;
use crate::country::CountrySet;
use crate::db::parse_range_csv;
use crate::sample;
use crate::sip::Method;
use crate::PortRange;
use crate::SipKind;

const DB: &str = "192.0.2.0,192.0.2.127,GB\n198.51.100.0,198.51.100.255,CN\n2001:db8:1::,2001:db8:1::ffff,NZ\n";
/// Autonomous systems over some of the same sources, cutting across the countries.
const ASN_DB: &str = "192.0.2.0,192.0.2.63,64500,Example A\n192.0.2.64,192.0.2.255,64501,Example B\n\
                      198.51.100.0,198.51.100.255,64500,Example A\n10.0.0.0,10.255.255.255,64502,Example C\n\
                      2001:db8:1::,2001:db8:1::ff,64501,Example B\n";
const SERVER: &str = "192.0.2.200";

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn countries(codes: &[&str]) -> CountrySet {
    let mut set = CountrySet::new();
    for code in codes {
        match *code {
            "unknown" => set.insert_unknown(),
            code => set.insert(code.parse().unwrap()),
        }
    }
    set
}

fn sip_rule(name: &str, verdict: Verdict) -> Rule {
    Rule::new(name, verdict).with_protocol(Protocol::UDP).with_ports(PortRange::single(5060))
}

fn policy_of(rules: Vec<Rule>) -> Policy {
    let trunks: PrefixList = ["203.0.113.10/32".parse().unwrap()].into_iter().collect();
    let builder =
        rules.into_iter().fold(PolicyBuilder::new(Verdict::Accept).list("trunks", trunks), PolicyBuilder::rule);
    builder.build(Arc::new(parse_range_csv(DB).unwrap())).unwrap()
}

fn sip_from(source: &str) -> Vec<u8> {
    let server = if source.contains(':') { "2001:db8::1" } else { SERVER };
    sample::sip_options(addr(source), addr(server))
}

#[test]
fn first_matching_rule_wins() {
    let gb = sip_rule("gb", Verdict::AcceptWithMark(7)).with_countries(countries(&["GB"]));
    let policy = policy_of(vec![gb, sip_rule("rest", Verdict::Drop)]);
    assert_eq!(policy.decide(&sip_from("192.0.2.9")), Verdict::AcceptWithMark(7));
    assert_eq!(policy.decide(&sip_from("198.51.100.9")), Verdict::Drop);
}

#[test]
fn default_applies_when_no_rule_matches() {
    let policy = policy_of(vec![sip_rule("rest", Verdict::Drop)]);
    let other_port = sample::udp_packet(addr("198.51.100.9"), addr(SERVER), (5000, 5070), b"x");
    assert_eq!(policy.decide(&other_port), Verdict::Accept);
    let decision = policy.explain(&other_port);
    assert_eq!((decision.rule, decision.country), (None, Looked::Skipped), "no rule for the port asks the country");
    assert_eq!(policy.country_of(addr("198.51.100.9")), Some("CN".parse().unwrap()));
}

#[test]
fn malformed_packets_get_their_own_verdict() {
    let policy = PolicyBuilder::new(Verdict::Accept)
        .on_malformed(Verdict::AcceptWithMark(3))
        .build(Arc::new(parse_range_csv(DB).unwrap()))
        .unwrap();
    let packet = sip_from("192.0.2.9");
    assert_eq!(policy.decide(&packet[..25]), Verdict::AcceptWithMark(3));
    let decision = policy.explain(&packet[..25]);
    assert!(decision.packet.is_err());
    assert_eq!((decision.rule, decision.source), (None, None));
}

#[test]
fn unknown_country_is_a_member_only_when_named() {
    let known_only = sip_rule("not-cn", Verdict::Accept).with_not_countries(countries(&["CN", "unknown"]));
    let policy = policy_of(vec![known_only, sip_rule("rest", Verdict::Drop)]);
    assert_eq!(policy.decide(&sip_from("192.0.2.9")), Verdict::Accept);
    assert_eq!(policy.decide(&sip_from("198.51.100.9")), Verdict::Drop);
    assert_eq!(policy.decide(&sip_from("203.0.113.50")), Verdict::Drop, "unknown country");

    let with_unknown = sip_rule("gb-or-unknown", Verdict::Accept).with_countries(countries(&["GB", "unknown"]));
    let policy = policy_of(vec![with_unknown, sip_rule("rest", Verdict::Drop)]);
    assert_eq!(policy.decide(&sip_from("203.0.113.50")), Verdict::Accept);
    assert_eq!(policy.decide(&sip_from("198.51.100.9")), Verdict::Drop);
}

#[test]
fn source_lists_match_named_and_built_in_networks() {
    let trusted = sip_rule("trusted", Verdict::Accept).with_source_list("trunks").with_source_list("rfc1918");
    let policy = policy_of(vec![trusted, sip_rule("rest", Verdict::Drop)]);
    assert_eq!(policy.decide(&sip_from("203.0.113.10")), Verdict::Accept);
    assert_eq!(policy.decide(&sip_from("203.0.113.11")), Verdict::Drop);
    let lan = sample::sip_options(addr("10.1.2.3"), addr("10.0.0.1"));
    assert_eq!(policy.decide(&lan), Verdict::Accept);
    let names: Vec<&str> = policy.lists().map(|(name, _)| name).collect();
    assert_eq!(names, ["trunks", "rfc1918"]);
}

#[test]
fn ipv6_sources_are_decided_by_country_too() {
    let mut set = CountrySet::new();
    set.insert_continent(crate::Continent::Oceania);
    let oceania = sip_rule("oceania", Verdict::Accept).with_countries(set);
    let policy = policy_of(vec![oceania, sip_rule("rest", Verdict::Drop)]);
    assert_eq!(policy.decide(&sip_from("2001:db8:1::5")), Verdict::Accept);
    assert_eq!(policy.decide(&sip_from("2001:db8:2::5")), Verdict::Drop);
}

#[test]
fn port_ranges_and_protocol_sets_are_inclusive() {
    let media = Rule::new("media", Verdict::Drop)
        .with_protocol(Protocol::UDP)
        .with_protocol(Protocol::TCP)
        .with_ports(PortRange { first: 10000, last: 20000 });
    let policy = policy_of(vec![media]);
    for (port, verdict) in
        [(9999, Verdict::Accept), (10000, Verdict::Drop), (20000, Verdict::Drop), (20001, Verdict::Accept)]
    {
        let packet = sample::udp_packet(addr("198.51.100.9"), addr(SERVER), (4000, port), b"");
        assert_eq!(policy.decide(&packet), verdict, "port {port}");
    }
    let icmp = sample::ip_packet(addr("198.51.100.9"), addr(SERVER), Protocol::ICMP, &[8, 0, 0, 0]);
    assert_eq!(policy.decide(&icmp), Verdict::Accept);
}

#[test]
fn unknown_list_is_refused_at_build() {
    let rule = Rule::new("r", Verdict::Accept).with_source_list("trunk");
    let error = PolicyBuilder::new(Verdict::Drop).rule(rule).build(Arc::new(parse_range_csv("").unwrap())).unwrap_err();
    assert_eq!(error.to_string(), "rule `r` names list `trunk`, which is neither defined nor built in");
}

#[test]
fn list_named_like_a_built_in_is_refused() {
    let error = PolicyBuilder::new(Verdict::Drop)
        .list("rfc1918", PrefixList::new())
        .build(Arc::new(parse_range_csv("").unwrap()))
        .unwrap_err();
    assert_eq!(error, PolicyError::DuplicateList("rfc1918".into()));
}

#[test]
fn unreachable_rules_are_reported_with_reasons() {
    let empty_countries = Rule::new("nobody", Verdict::Accept).with_countries(CountrySet::new());
    let contradiction = Rule::new("contradiction", Verdict::Accept)
        .with_countries(countries(&["GB"]))
        .with_not_countries(countries(&["GB", "FR"]));
    let icmp_ports =
        Rule::new("icmp-ports", Verdict::Accept).with_protocol(Protocol::ICMP).with_ports(PortRange::single(1));
    let builder = PolicyBuilder::new(Verdict::Drop)
        .rule(empty_countries)
        .rule(contradiction)
        .rule(icmp_ports)
        .rule(Rule::new("everything", Verdict::Drop))
        .rule(sip_rule("shadowed", Verdict::Accept));
    let reasons: Vec<(usize, String)> = builder.unreachable_rules().into_iter().map(|u| (u.index, u.reason)).collect();
    assert_eq!(
        reasons,
        [
            (0, "its country set is empty".to_owned()),
            (1, "every country it requires is also one it excludes".to_owned()),
            (2, "it names ports, but none of its protocols carries ports".to_owned()),
            (4, "it follows rule `everything`, which matches every packet".to_owned()),
        ]
    );
}

#[test]
fn policy_is_shared_across_threads() {
    let policy = Arc::new(policy_of(vec![sip_rule("rest", Verdict::Drop)]));
    let packet = sip_from("198.51.100.9");
    let verdicts: Vec<Verdict> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let policy = Arc::clone(&policy);
                let packet = &packet;
                scope.spawn(move || policy.decide(packet))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(verdicts, [Verdict::Drop, Verdict::Drop]);
}

#[test]
fn verdicts_display_for_logs() {
    assert_eq!(Verdict::Accept.to_string(), "accept");
    assert_eq!(Verdict::Drop.to_string(), "drop");
    assert_eq!(Verdict::AcceptWithMark(16).to_string(), "accept mark=0x10");
}

/// A database that counts its lookups and knows every address as GB.
#[derive(Default)]
struct CountingDb(std::sync::atomic::AtomicUsize);

impl CountryDb for CountingDb {
    fn lookup(&self, _: IpAddr) -> Option<CountryCode> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some("GB".parse().unwrap())
    }
}

#[test]
fn the_source_is_looked_up_only_when_a_country_rule_could_decide() {
    let db = Arc::new(CountingDb::default());
    let lan = sip_rule("lan", Verdict::Accept).with_source_list("rfc1918");
    let gb = sip_rule("gb", Verdict::AcceptWithMark(1)).with_countries(countries(&["GB"]));
    let policy = [lan, gb, sip_rule("rest", Verdict::Drop)]
        .into_iter()
        .fold(PolicyBuilder::new(Verdict::Accept), PolicyBuilder::rule)
        .build(db.clone())
        .unwrap();
    let lookups = || db.0.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((policy.decide(&sip_from("10.1.2.3")), lookups()), (Verdict::Accept, 0));
    let other_port = sample::udp_packet(addr("198.51.100.9"), addr(SERVER), (5000, 5070), b"x");
    assert_eq!((policy.decide(&other_port), lookups()), (Verdict::Accept, 0));
    assert_eq!((policy.decide(&sip_from("198.51.100.9")), lookups()), (Verdict::AcceptWithMark(1), 1));
    assert_eq!((policy.decide(&sip_from("2001:db8:1::9")), lookups()), (Verdict::AcceptWithMark(1), 2));
}

#[test]
fn rules_past_the_first_sixty_four_keep_their_order() {
    // 70 rules for other ports, then NZ (rule 70) before a catch-all (rule 71): the packet's
    // match lies in the second group of 64, and so does the country rule it needs.
    let mut rules: Vec<Rule> = (0..70)
        .map(|n| {
            Rule::new(format!("port-{n}"), Verdict::AcceptWithMark(n))
                .with_protocol(Protocol::UDP)
                .with_ports(PortRange::single(6000 + n as u16))
        })
        .collect();
    let nz = sip_rule("nz", Verdict::AcceptWithMark(100)).with_countries(countries(&["NZ"]));
    rules.extend([nz, sip_rule("rest", Verdict::Drop)]);
    let policy = policy_of(rules);
    assert_eq!(policy.decide(&sip_from("2001:db8:1::9")), Verdict::AcceptWithMark(100));
    assert_eq!(policy.explain(&sip_from("2001:db8:1::9")).rule_index, Some(70));
    assert_eq!(policy.decide(&sip_from("198.51.100.9")), Verdict::Drop);
    let port_65 = sample::udp_packet(addr("198.51.100.9"), addr(SERVER), (5000, 6065), b"x");
    assert_eq!(policy.decide(&port_65), Verdict::AcceptWithMark(65));
}

/// The same table, reached through the trait: the policy's other database path.
struct Wrapped(CountryTable);

impl CountryDb for Wrapped {
    fn lookup(&self, address: IpAddr) -> Option<CountryCode> {
        self.0.lookup(address)
    }
}

/// The facts of a packet as the reference reads them: the table and lists asked directly.
struct PlainFacts<'a> {
    meta: PacketMeta,
    payload: &'a [u8],
    lists: &'a [(&'a str, PrefixList)],
    table: &'a CountryTable,
    asn: &'a AsnTable,
}

impl Facts for PlainFacts<'_> {
    fn packet(&self) -> &PacketMeta {
        &self.meta
    }

    fn in_list(&self, name: &str) -> bool {
        let source = self.meta.source.to_canonical();
        self.lists.iter().any(|(n, list)| *n == name && list.contains(source))
    }

    fn country(&self) -> Option<CountryCode> {
        self.table.lookup(self.meta.source)
    }

    fn asn(&self) -> Option<Asn> {
        self.asn.lookup(self.meta.source)
    }

    fn payload(&self) -> &[u8] {
        self.payload
    }
}

/// Which lookups a lazy decision makes, by [`Lookup::index`]: the earliest rule that meets its
/// other conditions and the lookups made so far either asks none that is still to be made (it
/// matches: done) or gets the first of those made, and the search starts again.
fn looked_up(rules: &[Rule], facts: &dyn Facts) -> [bool; Lookup::COUNT] {
    let mut made = [false; Lookup::COUNT];
    loop {
        let waiting = rules.iter().find_map(|rule| {
            let asks =
                [!rule.conditions.country.is_any(), !rule.conditions.asn.is_any(), !rule.conditions.sip.is_any()];
            let mut unsettled = rule.clone();
            if !made[Lookup::Country.index()] {
                unsettled.conditions.country = Default::default();
            }
            if !made[Lookup::Asn.index()] {
                unsettled.conditions.asn = Default::default();
            }
            if !made[Lookup::Sip.index()] {
                unsettled.conditions.sip = Default::default();
            }
            unsettled.matches(facts).then(|| Lookup::ALL.into_iter().find(|l| asks[l.index()] && !made[l.index()]))
        });
        match waiting {
            Some(Some(lookup)) => made[lookup.index()] = true,
            _ => return made,
        }
    }
}

mod agreement {
    use super::*;
    use proptest::prelude::*;

    const PORTS: [u16; 6] = [0, 80, 443, 5060, 5061, 65535];
    const SOURCES: [&str; 16] = [
        "10.1.2.3",
        "10.200.0.1",
        "172.16.5.5",
        "172.21.0.1",
        "172.40.0.1",
        "192.168.1.1",
        "192.0.2.5",
        "192.0.2.200",
        "198.51.100.9",
        "203.0.113.200",
        "8.8.8.8",
        "2001:db8:1::9",
        "2001:db8:9000::1",
        "fd00::1",
        "::ffff:192.0.2.5",
        "2001:db8:1::ffff",
    ];
    const LISTS: [&str; 3] = ["rfc1918", "documentation", "mine"];
    const CODES: [&str; 4] = ["GB", "CN", "NZ", "unknown"];

    fn subset<T: Copy + std::fmt::Debug>(items: &'static [T]) -> impl Strategy<Value = Vec<T>> {
        proptest::sample::subsequence(items, 0..=items.len())
    }

    fn country_set() -> impl Strategy<Value = Option<CountrySet>> {
        proptest::option::of(subset(&CODES).prop_map(|codes| countries(&codes)))
    }

    /// AS sets over the fixture's numbers, one that no source has, and unknown (0).
    fn asn_set() -> impl Strategy<Value = Option<AsnSet>> {
        proptest::option::of(subset(&[64500u32, 64501, 64502, 65000, 0]).prop_map(|numbers| {
            AsnSet::new(numbers.iter().filter(|n| **n != 0).map(|n| Asn(*n)), numbers.contains(&0))
        }))
    }

    /// A SIP condition over the payloads below, as data (for proptest to show).
    #[derive(Clone, Debug)]
    enum Sip {
        None,
        Kinds(Vec<SipKind>),
        Methods(Vec<Method>),
        UserAgents(Vec<&'static str>),
        NotUserAgents(Vec<&'static str>),
        Hosts(Vec<&'static str>, bool, bool),
        ToUsers(Vec<&'static str>),
    }

    impl Sip {
        fn on(self, rule: Rule) -> Rule {
            match self {
                Sip::None => rule,
                Sip::Kinds(kinds) => rule.with_sip_kinds(kinds),
                Sip::Methods(methods) => rule.with_sip_methods(methods),
                Sip::UserAgents(patterns) => rule.with_user_agents(&patterns),
                Sip::NotUserAgents(patterns) => rule.with_not_user_agents(&patterns),
                Sip::Hosts(names, address, false) => rule.with_request_hosts(&names, address),
                Sip::Hosts(names, address, true) => rule.with_not_request_hosts(&names, address),
                Sip::ToUsers(patterns) => rule.with_to_users(&patterns),
            }
        }
    }

    fn sip() -> impl Strategy<Value = Sip> {
        prop_oneof![
            3 => Just(Sip::None),
            1 => subset(&SipKind::ALL).prop_map(Sip::Kinds),
            1 => subset(&[Method::Options, Method::Register, Method::Invite]).prop_map(Sip::Methods),
            1 => subset(&["friendly", "yealink*", "*scanner", "sipcli"]).prop_map(Sip::UserAgents),
            1 => subset(&["friendly", "linphone"]).prop_map(Sip::NotUserAgents),
            1 => (subset(&["pbx.example.com", "*.com"]), any::<bool>(), any::<bool>())
                .prop_map(|(names, address, not)| Sip::Hosts(names, address, not)),
            1 => subset(&["100?", "1001", "*"]).prop_map(Sip::ToUsers),
        ]
    }

    /// UDP payloads: SIP requests of each shape, a response, a keep-alive, nothing, not SIP.
    const PAYLOADS: [&[u8]; 7] = [
        b"x",
        b"",
        b"\r\n\r\n",
        b"SIP/2.0 404 Not Found\r\n\r\n",
        b"OPTIONS sip:100@198.51.100.1 SIP/2.0\r\nTo: <sip:100@1.1.1.1>\r\nUser-Agent: friendly-scanner\r\n\r\n",
        b"REGISTER sip:pbx.example.com SIP/2.0\r\nt: <sip:1001@pbx.example.com>\r\nUser-Agent: Yealink T46\r\n\r\n",
        b"INVITE sip:2000@[2001:db8::1] SIP/2.0\r\nTo: sip:2000@x\r\n\r\n",
    ];

    fn rule() -> impl Strategy<Value = Rule> {
        let ports = proptest::collection::vec((0..PORTS.len(), 0..PORTS.len()), 0..3);
        let verdict =
            prop_oneof![Just(Verdict::Accept), Just(Verdict::Drop), (0u32..4).prop_map(Verdict::AcceptWithMark)];
        let lookups = (country_set(), country_set(), asn_set(), asn_set());
        (subset(&[Protocol::UDP, Protocol::TCP]), ports, subset(&LISTS), lookups, verdict, sip()).prop_map(
            |(protocols, ports, sources, (countries, not_countries, asns, not_asns), verdict, sip)| {
                let mut rule = Rule::new("r", verdict);
                for protocol in protocols {
                    rule = rule.with_protocol(protocol);
                }
                for (a, b) in ports {
                    rule = rule.with_ports(PortRange { first: PORTS[a.min(b)], last: PORTS[a.max(b)] });
                }
                for list in sources {
                    rule = rule.with_source_list(list);
                }
                if let Some(set) = countries {
                    rule = rule.with_countries(set);
                }
                if let Some(set) = not_countries {
                    rule = rule.with_not_countries(set);
                }
                if let Some(set) = asns {
                    rule = rule.with_asns(set);
                }
                if let Some(set) = not_asns {
                    rule = rule.with_not_asns(set);
                }
                sip.on(rule)
            },
        )
    }

    /// A TCP, UDP or ICMP packet (0, 1, 2) from one of the sources to one of the ports, a UDP
    /// one carrying `payload`.
    fn packet(kind: usize, source: &str, port: u16, payload: &[u8]) -> Vec<u8> {
        let source = addr(source);
        let server = if source.is_ipv4() { addr(SERVER) } else { addr("2001:db8::1") };
        match kind {
            0 => {
                let mut tcp = [0u8; 20];
                tcp[..4].copy_from_slice(&[0x13, 0xc6, (port >> 8) as u8, port as u8]);
                tcp[12] = 5 << 4;
                sample::ip_packet(source, server, Protocol::TCP, &tcp)
            }
            1 => sample::udp_packet(source, server, (5062, port), payload),
            _ => {
                let protocol = if source.is_ipv4() { Protocol::ICMP } else { Protocol::ICMPV6 };
                sample::ip_packet(source, server, protocol, &[8, 0, 0, 0, 0, 0, 0, 0])
            }
        }
    }

    proptest! {
        #[test]
        fn decisions_agree_with_the_rules_read_one_by_one(
            rules in proptest::collection::vec(rule(), 0..80),
            probes in proptest::collection::vec((0..3usize, 0..SOURCES.len(), 0..PORTS.len(), 0..PAYLOADS.len()), 1..40),
        ) {
            let mine = || -> PrefixList {
                ["172.20.0.0/14", "203.0.113.128/25", "2001:db8:8000::/33", "10.1.0.0/16"].iter().map(|n| n.parse().unwrap()).collect()
            };
            let table = parse_range_csv(DB).unwrap();
            let asn = Arc::new(AsnTable::from_csv(ASN_DB).unwrap());
            let lists: Vec<(&str, PrefixList)> =
                vec![("rfc1918", prefix::built_in("rfc1918").unwrap()), ("documentation", prefix::built_in("documentation").unwrap()), ("mine", mine())];
            let build = |db: Arc<dyn CountryDb>| {
                let builder = PolicyBuilder::new(Verdict::Accept).list("mine", mine()).asn_database(Arc::clone(&asn));
                rules.iter().cloned().fold(builder, PolicyBuilder::rule).build(db).unwrap()
            };
            let direct = build(Arc::new(table.clone()));
            let through_trait = build(Arc::new(Wrapped(table.clone())));
            for (kind, source, port, payload) in probes {
                let bytes = packet(kind, SOURCES[source], PORTS[port], PAYLOADS[payload]);
                let meta = packet::parse(&bytes).unwrap();
                let facts = PlainFacts { meta, payload: meta.payload(&bytes), lists: &lists, table: &table, asn: &asn };
                let expected = rules.iter().position(|rule| rule.matches(&facts));
                let verdict = expected.map_or(Verdict::Accept, |index| rules[index].verdict());
                for policy in [&direct, &through_trait] {
                    prop_assert_eq!(policy.decide(&bytes), verdict, "{:?}", meta);
                    let explained = policy.explain(&bytes);
                    prop_assert_eq!(explained.rule_index, expected);
                    // Looked up exactly when a rule asking it could have decided the packet.
                    let made = looked_up(&rules, &facts);
                    let country = if made[Lookup::Country.index()] { Looked::Found(facts.country()) } else { Looked::Skipped };
                    let asn = if made[Lookup::Asn.index()] { Looked::Found(facts.asn()) } else { Looked::Skipped };
                    prop_assert_eq!((explained.country, explained.asn), (country, asn));
                    prop_assert_eq!(explained.read_payload, made[Lookup::Sip.index()]);
                    prop_assert_eq!(policy.decide_meta_with_payload(&meta, facts.payload), verdict);
                    // Without the payload at hand, SIP conditions see none.
                    let bare = PlainFacts { payload: &[], ..facts };
                    let without = rules.iter().find(|rule| rule.matches(&bare)).map_or(Verdict::Accept, Rule::verdict);
                    prop_assert_eq!(policy.decide_meta(&meta), without);
                    prop_assert_eq!(policy.decide_flow(meta.source, meta.protocol, meta.destination_port()), without);
                    // A verdict that settles the flow is one no payload could change.
                    if policy.settles_flow(expected) {
                        prop_assert_eq!(without, verdict);
                    }
                }
            }
        }
    }
}

/// Over TCP the first whole SIP request an untrusted rule accepts settles the connection, as
/// does an accepted segment that is not SIP at all; a datagram, a drop, a segment without a
/// payload, a keep-alive or headers that run on do not.
#[test]
fn an_accepted_whole_request_or_a_stream_that_is_not_sip_settles_a_tcp_connection() {
    let any = |rule: Rule| rule.with_protocol(Protocol::UDP).with_protocol(Protocol::TCP);
    let scanners = any(Rule::new("scanners", Verdict::Drop).with_user_agents(&["friendly-scanner"]));
    let policy = policy_of(vec![scanners, any(Rule::new("gb", Verdict::Accept).with_countries(countries(&["GB"])))]);
    let (source, server) = (addr("192.0.2.9"), addr(SERVER));
    let request = sample::sip_options_payload(source, server);
    let settles = |packet: &[u8]| {
        let (decision, message) = policy.explain_sip(packet);
        policy.settles(&decision, message.as_ref())
    };
    assert!(settles(&sample::tcp_segment(source, server, 5060, &request)));
    assert!(!settles(&sample::udp_packet(source, server, (5062, 5060), &request)), "a datagram is decided alone");
    assert!(!settles(&sample::tcp_segment(source, server, 5060, b"")), "the handshake's ACK");
    assert!(!settles(&sample::tcp_segment(source, server, 5060, b"\r\n\r\n")), "a keep-alive");
    let cut = &request[..request.len() - 2];
    assert!(!settles(&sample::tcp_segment(source, server, 5060, cut)), "headers that run on");
    let scanner = [&request[..request.len() - 2], b"User-Agent: friendly-scanner\r\n\r\n"].concat();
    assert!(!settles(&sample::tcp_segment(source, server, 5060, &scanner)), "a drop");
    assert!(settles(&sample::tcp_segment(source, server, 5060, b"\x16\x03\x01 TLS")), "no SIP to read later either");
}
