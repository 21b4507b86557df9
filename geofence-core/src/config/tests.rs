use super::*;
use crate::db::parse_range_csv;
use crate::packet::Protocol;
use crate::PortRange;
use std::sync::Arc;

fn error(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

const RULE: &str = "default = \"drop\"\n[[rule]]\n";

#[test]
fn full_config_builds_a_policy_with_every_feature() {
    let config = Config::parse(
        r#"
queue = 3
database = "/var/lib/geofence/countries.gfdb"
fail_open = true
queue_length = 64
default = "accept"
malformed = "accept"
[lists]
trunks = ["203.0.113.10", "2001:db8:5::/48"]
[[rule]]
name = "trunks"
source = ["trunks", "rfc1918"]
action = "accept"
mark = 0x10
[[rule]]
name = "sip"
protocol = ["udp", "tcp"]
ports = [5060, "5061-5062"]
country = ["GB", "unknown"]
continent = ["OC"]
not_country = ["AU"]
action = "drop"
"#,
    )
    .unwrap();
    assert_eq!(
        (config.deployment.queues, config.policy.database.as_deref()),
        ((3, 3), Some("/var/lib/geofence/countries.gfdb"))
    );
    assert_eq!((config.deployment.fail_open, config.deployment.queue_length), (true, Some(64)));
    assert!(config.policy.warnings.is_empty());
    let policy = config.policy.build(Arc::new(parse_range_csv("").unwrap())).unwrap();
    assert_eq!(policy.malformed_verdict(), Verdict::Accept);
    let rules: Vec<&Rule> = policy.rules().collect();
    assert_eq!(rules[0].verdict(), Verdict::AcceptWithMark(16));
    assert_eq!(rules[0].source_lists(), ["trunks", "rfc1918"]);
    assert_eq!(rules[1].protocols(), [Protocol::UDP, Protocol::TCP]);
    assert_eq!(rules[1].ports(), [PortRange::single(5060), PortRange { first: 5061, last: 5062 }]);
    let countries = rules[1].countries().unwrap();
    assert!(countries.contains(None));
    assert!(countries.contains(Some("NZ".parse().unwrap())));
    assert!(countries.contains(Some("GB".parse().unwrap())));
    assert!(!countries.contains(Some("FR".parse().unwrap())));
    assert!(rules[1].not_countries().unwrap().contains(Some("AU".parse().unwrap())));
}

#[test]
fn rules_without_names_are_numbered() {
    let config = Config::parse(&format!("{RULE}action = \"drop\"\n")).unwrap();
    assert_eq!(config.deployment, Deployment::default());
    let d = &config.deployment;
    assert_eq!((d.queues, d.fail_open, d.queue_length), ((0, 0), false, None));
    assert_eq!((d.hashlimit_rate, d.hashlimit_burst, d.flow_mark, d.examined_mark), (2, 5, 0x4000_0000, 0x2000_0000));
    assert_eq!((d.metrics, d.summary_seconds), (None, 10));
    let policy = config.policy.build(Arc::new(parse_range_csv("").unwrap())).unwrap();
    assert_eq!(policy.rules().next().unwrap().name(), "rule 1");
}

#[test]
fn queue_ranges_and_their_errors() {
    let with = |queue: &str| Config::parse(&format!("queue = {queue}\ndefault = \"drop\"\n"));
    assert_eq!(with("\"0-3\"").unwrap().deployment.queues, (0, 3));
    assert_eq!(with("\"7\"").unwrap().deployment.queues, (7, 7));
    assert_eq!(with("12").unwrap().deployment.queues, (12, 12));
    for bad in ["\"3-1\"", "70000", "\"a-b\"", "-1"] {
        let message = with(bad).unwrap_err().to_string();
        assert!(message.starts_with("line 1, column 9: `"), "{bad}: {message}");
        assert!(message.ends_with("is not a queue number or range (write 0 or \"0-3\" (0 to 65535))"), "{message}");
    }
}

#[test]
fn unknown_country_suggests_the_fix() {
    assert_eq!(
        error(&format!("{RULE}country = [\"GB\", \"UK\"]\naction = \"accept\"\n")),
        "line 3, column 18: unknown country `UK` (did you mean `GB`?)"
    );
    assert_eq!(
        error(&format!("{RULE}country = [\"de\"]\naction = \"accept\"\n")),
        "line 3, column 12: unknown country `de` (did you mean `DE`?)"
    );
    assert_eq!(
        error(&format!("{RULE}country = [\"EU\"]\naction = \"accept\"\n")),
        "line 3, column 12: unknown country `EU` (`EU` is a continent: list it in `continent`)"
    );
    assert_eq!(
        error(&format!("{RULE}country = [\"QQ\"]\naction = \"accept\"\n")),
        "line 3, column 12: unknown country `QQ`"
    );
}

#[test]
fn bad_cidr_names_the_network_and_the_fix() {
    assert_eq!(
        error("default = \"drop\"\n[lists]\ntrunks = [\"192.0.2.1/24\"]\n"),
        "line 3, column 11: `192.0.2.1/24` is not an address or CIDR network (host bits are set; did you mean `192.0.2.0/24`?)"
    );
    assert_eq!(
        error("default = \"drop\"\n[lists]\ntrunks = [\"192.0.2.0/33\"]\n"),
        "line 3, column 11: `192.0.2.0/33` is not an address or CIDR network (the prefix length 33 is too long for 192.0.2.0)"
    );
    assert_eq!(
        error("default = \"drop\"\n[lists]\ntrunks = [\"example.com\"]\n"),
        "line 3, column 11: `example.com` is not an address or CIDR network"
    );
}

#[test]
fn unknown_list_suggests_the_nearest_name() {
    let text =
        "default = \"drop\"\n[lists]\ntrunks = [\"192.0.2.1\"]\n[[rule]]\nsource = [\"trunk\"]\naction = \"accept\"\n";
    assert_eq!(error(text), "line 5, column 11: unknown list `trunk` (did you mean `trunks`?)");
    let far = format!("{RULE}source = [\"carriers\"]\naction = \"accept\"\n");
    assert!(error(&far).starts_with("line 3, column 11: unknown list `carriers` (define it under [lists] or [feeds], or use a built-in list: rfc1918, loopback"));
}

#[test]
fn syntax_and_schema_errors_give_the_line() {
    assert!(error("default = \"drop\"\nqueue = \n").starts_with("line 2, column 9: "));
    assert!(error(&format!("{RULE}action = \"drop\"\ncontry = [\"GB\"]\n")).contains("unknown field `contry`"));
    assert_eq!(
        error(&format!("{RULE}action = \"reject\"\n")),
        "line 3, column 10: unknown action `reject` (expected `accept`, `drop` or `ban`)"
    );
    assert!(error("queue = 0\n").contains("missing field `default`"));
    assert_eq!(
        error("default = \"drop\"\nfail_opem = true\n"),
        "line 2, column 13: unknown setting `fail_opem` (did you mean `fail_open`?)"
    );
    assert!(error("default = \"drop\"\ncolour = 1\n").starts_with(
        "line 2, column 10: unknown setting `colour` (expected one of database, database_may_shrink, asn_database, asn_groups, default,"
    ));
}

#[test]
fn names_with_control_characters_are_refused() {
    assert_eq!(
        error("default = \"drop\"\n[[rule]]\nname = \"lan\\ngeofence_packets_total 9\"\naction = \"drop\"\n"),
        "line 3, column 8: the name \"lan\\ngeofence_packets_total 9\" holds the control character '\\n' \
         (names are written in logs and metrics: use printable characters)"
    );
}

#[test]
fn impossible_deployment_values_are_refused_at_their_line() {
    assert_eq!(
        error("default = \"drop\"\nqueue_length = 0\n"),
        "line 2, column 16: queue_length 0 leaves no room for a packet to wait for its verdict: every flow \
         would be dropped (or, with fail_open, pass unexamined) (leave it out for the default of 8192)"
    );
    assert_eq!(
        error("queue = \"0-65535\"\ndefault = \"drop\"\n"),
        "line 1, column 9: `0-65535` names 65536 queues; geofence serves at most 64 (one queue a CPU is \
         plenty: the rules balance flows over them)"
    );
    assert!(Config::parse("queue = \"0-63\"\ndefault = \"drop\"\n").is_ok());
    assert!(Config::parse("queue = \"0-64\"\ndefault = \"drop\"\n").is_err());
    assert_eq!(
        error("default = \"drop\"\nmetrics = \"not-an-address\"\n"),
        "line 2, column 11: `not-an-address` is not an address and port to serve metrics on (write an IP \
         address and a port, such as \"127.0.0.1:9477\" or \"[::1]:9477\")"
    );
    assert_eq!(
        error("default = \"drop\"\ncopy_range = 28\n"),
        "line 2, column 14: copy_range 28 is shorter than a packet's headers: every packet would be decided \
         as malformed (use at least 64, or leave it out for the default of 256)"
    );
    assert!(error("default = \"drop\"\ncopy_range = 65536\n").starts_with("line 2, column 14: "));
    assert_eq!(
        error("default = \"drop\"\nflow_mark = 0x3\nexamined_mark = 0x2\n"),
        "line 3, column 17: examined_mark 0x2 shares bits with flow_mark 0x3 (give it a bit of its own, or 0 \
         to turn it off)"
    );
    let marks = Config::parse("default = \"drop\"\nflow_mark = 0x1\nexamined_mark = 0x2\n").unwrap().deployment;
    assert_eq!((marks.flow_mark, marks.examined_mark), (1, 2));
    let config =
        Config::parse("default = \"drop\"\nmetrics = \"[::1]:9477\"\nqueue_length = 1\ncopy_range = 64\n").unwrap();
    assert_eq!(config.deployment.metrics, Some("[::1]:9477".parse().unwrap()));
    assert_eq!((config.deployment.queue_length, config.deployment.copy_range), (Some(1), Some(64)));
}

#[test]
fn the_policy_part_reads_from_a_table_of_another_file() {
    #[derive(serde::Deserialize)]
    struct Outer {
        #[allow(dead_code)]
        name: String,
        firewall: PolicyTable,
    }
    let text = "name = \"pbx\"\n[firewall]\ndefault = \"drop\"\n[firewall.lists]\ntrunks = [\"192.0.2.1\"]\n\
                [[firewall.rule]]\nsource = [\"trunks\"]\naction = \"accept\"\n";
    let outer: Outer = toml::from_str(text).unwrap();
    let config = outer.firewall.check(text).unwrap();
    assert_eq!((config.builder.rules().len(), config.builder.default_verdict()), (1, Verdict::Drop));

    let stray = "name = \"pbx\"\n[firewall]\ndefault = \"drop\"\nqueue = 3\n";
    let outer: Outer = toml::from_str(stray).unwrap();
    assert_eq!(
        outer.firewall.check(stray).unwrap_err().to_string(),
        "line 2, column 1: unknown policy setting `queue` (expected one of database, database_may_shrink, asn_database, asn_groups, default, malformed, lists, feeds, sip_patterns, behaviour, rule)"
    );
    let bad_list = "name = \"pbx\"\n[firewall]\ndefault = \"drop\"\n[[firewall.rule]]\nsource = [\"trunk\"]\naction = \"accept\"\n";
    let outer: Outer = toml::from_str(bad_list).unwrap();
    assert!(outer
        .firewall
        .check(bad_list)
        .unwrap_err()
        .to_string()
        .starts_with("line 5, column 11: unknown list `trunk`"));
}

#[test]
fn ports_protocols_and_marks_are_checked() {
    assert_eq!(
        error(&format!("{RULE}ports = [70000]\naction = \"drop\"\n")),
        "line 3, column 10: `70000` is not a port or port range (write 5060 or \"10000-20000\")"
    );
    assert_eq!(
        error(&format!("{RULE}ports = [\"20-10\"]\naction = \"drop\"\n")),
        "line 3, column 10: `20-10` is not a port or port range (write 5060 or \"10000-20000\")"
    );
    assert_eq!(
        error(&format!("{RULE}protocol = \"sip\"\naction = \"drop\"\n")),
        "line 3, column 12: unknown protocol `sip` (expected one of tcp, udp, udplite, sctp, icmp, icmpv6, esp)"
    );
    assert_eq!(
        error(&format!("{RULE}action = \"drop\"\nmark = 1\n")),
        "line 4, column 8: a mark is set only on accepted packets (use action = \"accept\")"
    );
    assert_eq!(
        error(&format!("{RULE}continent = [\"XX\"]\naction = \"drop\"\n")),
        "line 3, column 14: `XX` is not a continent: expected one of AF AN AS EU NA OC SA"
    );
}

#[test]
fn duplicate_rule_names_and_built_in_list_names_are_refused() {
    let twice =
        "default = \"drop\"\n[[rule]]\nname = \"a\"\naction = \"drop\"\n[[rule]]\nname = \"a\"\naction = \"drop\"\n";
    assert!(error(twice).ends_with("rule name `a` is used twice"));
    assert_eq!(
        error("default = \"drop\"\n[lists]\nrfc1918 = [\"10.0.0.0/8\"]\n"),
        "line 3, column 11: list `rfc1918` has the name of a built-in list (choose another name)"
    );
}

#[test]
fn rules_that_can_never_match_are_warned_about_with_their_line() {
    let config = Config::parse(
        "default = \"drop\"\n[[rule]]\nname = \"all\"\naction = \"accept\"\n[[rule]]\nname = \"late\"\nprotocol = \"udp\"\naction = \"drop\"\n",
    )
    .unwrap();
    assert_eq!(config.policy.warnings.len(), 1);
    assert_eq!(
        config.policy.warnings[0].to_string(),
        "line 5: rule `late` can never match: it follows rule `all`, which matches every packet"
    );
}

#[test]
fn asn_rules_read_numbers_names_and_groups_and_need_a_database() {
    let text = "default = \"accept\"\nasn_database = \"asn.csv\"\n\
                [asn_groups]\nhosting = [64500, \"AS64501\"]\n\
                [[rule]]\nname = \"hosting\"\nasn = [\"hosting\", 64502]\nnot_asn = [\"unknown\"]\naction = \"drop\"\n";
    let config = Config::parse(text).unwrap();
    assert_eq!(config.policy.asn_database, ["asn.csv"]);
    let both = Config::parse("default = \"accept\"\nasn_database = [\"asn-ipv4.csv\", \"asn-ipv6.csv\"]\n").unwrap();
    assert_eq!(both.policy.asn_database, ["asn-ipv4.csv", "asn-ipv6.csv"]);
    assert_eq!(Config::parse("default = \"accept\"\n").unwrap().policy.asn_database, Vec::<String>::new());
    assert_eq!(
        error("default = \"accept\"\nasn_database = 5\n"),
        "line 2, column 16: a file name, or a list of file names"
    );
    let rule = &config.policy.builder.rules()[0];
    assert_eq!(rule.conditions().to_string(), "AS in {AS64500 AS64501 AS64502} and AS not in {unknown}");
    let db = Arc::new(parse_range_csv("192.0.2.0,192.0.2.255,GB\n").unwrap());
    let refused = Config::parse(text).unwrap().policy.build(db.clone()).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "rule `hosting` asks the source's AS, but no ASN database is given (`asn_database` in the config)"
    );
    let asn = Arc::new(crate::AsnTable::from_csv("192.0.2.0,192.0.2.127,64501,Example\n").unwrap());
    let policy = config.policy.build_with_asn(db, asn).unwrap();
    assert_eq!(policy.decide_flow("192.0.2.9".parse().unwrap(), Protocol::UDP, Some(5060)), Verdict::Drop);
    assert_eq!(policy.decide_flow("192.0.2.200".parse().unwrap(), Protocol::UDP, Some(5060)), Verdict::Accept);
    assert_eq!(
        policy.explain(&crate::sample::sip_options("192.0.2.9".parse().unwrap(), "192.0.2.1".parse().unwrap())).asn,
        crate::Looked::Found(Some(crate::Asn(64501)))
    );
}

#[test]
fn bad_asn_entries_are_refused_at_their_place() {
    let rule = |asn: &str| error(&format!("default = \"accept\"\n[[rule]]\nasn = [{asn}]\naction = \"drop\"\n"));
    assert_eq!(rule("0"), "line 3, column 8: AS0 is reserved (RFC 7607): it names no network");
    assert_eq!(rule("-5"), "line 3, column 8: -5 is not an AS number (1 to 4294967295)");
    assert_eq!(
        rule("\"hostng\""),
        "line 3, column 8: `hostng` is not an AS number: expected a number such as 14061 or AS14061 (no `[asn_groups]` table defines `hostng`)"
    );
    let grouped =
        error("default = \"accept\"\n[asn_groups]\nhosting = [1]\n[[rule]]\nasn = [\"hostng\"]\naction = \"drop\"\n");
    assert!(grouped.ends_with("(the groups are hosting)"), "{grouped}");
    let in_group = error(
        "default = \"accept\"\n[asn_groups]\nhosting = [\"AS-1\"]\n[[rule]]\nasn = [\"hosting\"]\naction = \"drop\"\n",
    );
    assert!(in_group.starts_with("line 3, column 12: `AS-1` is not an AS number"), "{in_group}");
}

#[test]
fn organisation_patterns_resolve_to_systems_when_the_policy_is_built() {
    let text =
        "default = \"accept\"\n[[rule]]\nname = \"hosting\"\nas_organisation = [\"EXAMPLE hosting\", \"Nowhere\"]\n\
                asn = [65001]\naction = \"drop\"\n";
    let config = Config::parse(text).unwrap();
    assert_eq!(
        config.policy.builder.rules()[0].conditions().to_string(),
        "AS in {AS65001} or of organisation \"EXAMPLE hosting\", \"Nowhere\""
    );
    let asn = Arc::new(
        crate::AsnTable::from_csv(
            "192.0.2.0,192.0.2.63,64500,\"Example Hosting, Inc.\"\n192.0.2.64,192.0.2.127,64501,Example Broadband\n\
             192.0.2.128,192.0.2.255,65001,Other\n",
        )
        .unwrap(),
    );
    let db = Arc::new(parse_range_csv("192.0.2.0,192.0.2.255,GB\n").unwrap());
    let policy = config.policy.build_with_asn(db, asn).unwrap();
    let resolved: Vec<(&str, Vec<crate::Asn>)> =
        policy.organisation_patterns().iter().map(|r| (r.pattern.as_str(), r.asns.clone())).collect();
    assert_eq!(resolved, [("EXAMPLE hosting", vec![crate::Asn(64500)]), ("Nowhere", vec![])]);
    let verdict = |source: &str| policy.decide_flow(source.parse().unwrap(), Protocol::UDP, Some(5060));
    assert_eq!(
        (verdict("192.0.2.9"), verdict("192.0.2.70"), verdict("192.0.2.200")),
        (Verdict::Drop, Verdict::Accept, Verdict::Drop)
    );
    assert_eq!(
        error("default = \"accept\"\n[[rule]]\nas_organisation = [\" \"]\naction = \"drop\"\n"),
        "line 3, column 20: an empty organisation pattern would match every system"
    );
}

const WITH_FEED: &str = r#"default = "accept"
[feeds]
voipbl = { files = ["voipbl.txt", "extra.txt"] }
drop = { files = ["drop_v4.json"], may_shrink = true }
[[rule]]
name = "blocklisted"
source = ["voipbl", "drop"]
action = "drop"
"#;

#[test]
fn feeds_are_named_for_the_caller_and_rules_use_them_as_lists() {
    let config = Config::parse(WITH_FEED).unwrap();
    let names: Vec<(&str, usize, bool)> =
        config.policy.feeds.iter().map(|f| (f.name.as_str(), f.files.len(), f.may_shrink)).collect();
    assert_eq!(names, [("drop", 1, true), ("voipbl", 2, false)]);
    assert_eq!(config.policy.feeds[1].files, ["voipbl.txt", "extra.txt"]);
    let db = Arc::new(parse_range_csv("192.0.2.0,192.0.2.255,GB\n").unwrap());
    let feed = |text: &str| crate::feed::parse(text.as_bytes()).unwrap().networks.into_iter().collect::<PrefixList>();
    let builder = config.policy.builder.list("voipbl", feed("192.0.2.66\n")).list("drop", feed("198.51.100.0/24\n"));
    let policy = builder.build(db).unwrap();
    let decide = |source: &str| policy.decide_flow(source.parse().unwrap(), Protocol::UDP, Some(5060));
    assert_eq!(decide("192.0.2.66"), Verdict::Drop);
    assert_eq!(decide("198.51.100.9"), Verdict::Drop);
    assert_eq!(decide("192.0.2.67"), Verdict::Accept);
}

#[test]
fn a_feed_the_caller_did_not_read_fails_the_build_by_name() {
    let config = Config::parse(WITH_FEED).unwrap();
    let error = config.policy.build(Arc::new(parse_range_csv("192.0.2.0,192.0.2.255,GB\n").unwrap())).unwrap_err();
    assert!(matches!(&error, PolicyError::UnknownList { list, .. } if list == "voipbl" || list == "drop"), "{error}");
}

#[test]
fn feed_names_and_files_are_checked() {
    let clash = "default = \"drop\"\n[lists]\nbad = [\"192.0.2.1\"]\n[feeds]\nbad = { files = [\"a.txt\"] }\n";
    assert_eq!(
        error(clash),
        "line 5, column 7: feed `bad` has the name of a list under [lists] (a rule names either; choose another name)"
    );
    let built_in = "default = \"drop\"\n[feeds]\nrfc1918 = { files = [\"a.txt\"] }\n";
    assert!(error(built_in).starts_with("line 3, column 11: list `rfc1918` has the name of a built-in list"));
    let no_file = "default = \"drop\"\n[feeds]\nempty = { files = [] }\n";
    assert!(error(no_file).starts_with("line 3, column 9: feed `empty` names no file"), "{}", error(no_file));
    let typo = "default = \"drop\"\n[feeds]\nx = { file = [\"a.txt\"] }\n";
    assert!(error(typo).contains("unknown field `file`"), "{}", error(typo));
    let misspelt = "default = \"drop\"\n[feeds]\nvoipbl = { files = [\"a\"] }\n[[rule]]\nsource = [\"voipbI\"]\naction = \"drop\"\n";
    assert!(error(misspelt).contains("unknown list `voipbI` (did you mean `voipbl`?)"), "{}", error(misspelt));
}

const SIP_RULE: &str = "[[rule]]\nports = [5060]\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n";

#[test]
fn sip_keys_are_read_and_their_mistakes_located() {
    let config = Config::parse(&format!("default = \"accept\"\n{SIP_RULE}")).unwrap();
    assert!(config.policy.builder.reads_payload());
    let text = config.policy.builder.rules()[0].conditions().to_string();
    assert_eq!(text, "port 5060 and user agent @scanners");
    let cases = [
        ("sip_method = [\"register\"]", "line 3, column 15: `register` is not a SIP method geofence knows (SIP methods are upper case: `REGISTER`)"),
        ("user_agent = [\"@mine\"]", "line 3, column 15: `@mine` names no pattern list (define it under [sip_patterns], or use the built-in @scanners)"),
        ("user_agent = [\" \"]", "line 3, column 15: an empty pattern would match every value: ` `"),
        ("sip = \"sip\"", "line 3, column 7: `sip` is not a kind of SIP payload (expected request, response, keep-alive, empty or not-sip)"),
    ];
    for (key, expected) in cases {
        assert_eq!(error(&format!("default = \"accept\"\n[[rule]]\n{key}\naction = \"drop\"\n")), expected);
    }
    let own = "default = \"accept\"\n[sip_patterns]\nscanners = [\"only-mine\"]\n[[rule]]\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n";
    assert!(
        Config::parse(own).unwrap().policy.builder.reads_payload(),
        "a list named scanners replaces the built-in one"
    );
    let never = "default = \"accept\"\n[[rule]]\nprotocol = \"icmp\"\nsip_method = [\"INVITE\"]\naction = \"drop\"\n";
    let warnings = Config::parse(never).unwrap().policy.warnings;
    assert!(warnings[0].reason.contains("reads SIP, but none of its protocols carries it"), "{warnings:?}");
}

#[test]
fn the_behaviour_table_is_read_and_checked() {
    let good = format!(
        "default = \"accept\"\n[behaviour]\nwindow = \"10s\"\nmax_targets = 8\npenalty = \"10m\"\nmax_sources = 1000\n\
         watched_methods = [\"REGISTER\"]\nmax_watched = 20\nmax_failures = 12\n{SIP_RULE}"
    );
    let behaviour = Config::parse(&good).unwrap().policy.behaviour.unwrap();
    assert_eq!(
        (
            behaviour.limits.window_ms,
            behaviour.limits.max_requests,
            behaviour.limits.max_targets,
            behaviour.limits.penalty_ms
        ),
        (10_000, u32::MAX, 8, 600_000)
    );
    assert_eq!(behaviour.max_sources, 1000);
    assert!(behaviour.limits.watched.contains(crate::sip::Method::Register));
    assert!(!behaviour.limits.watched.contains(crate::sip::Method::Options));
    assert_eq!(behaviour.limits.max_watched, 20);
    assert_eq!(behaviour.limits.max_failures, 12);
    for (change, expected) in [
        (("window = \"10s\"", "window = \"ten\""), "line 3, column 10: `ten` is not a duration"),
        (("max_targets = 8", "max_targets = 40"), "max_targets = 40 is more than geofence counts (32)"),
        (("max_sources = 1000", "max_sources = 0"), "line 6, column 15: max_sources = 0 is not 1 to 16777216"),
        (("[\"REGISTER\"]", "[\"register\"]"), "line 7, column 20: `register` is not a SIP method geofence knows"),
        (("max_watched = 20", "max_watched = 70000"), "max_watched = 70000 is more than geofence counts (65535)"),
        (("max_failures = 12", "max_failures = 65536"), "max_failures = 65536 is more than geofence counts (65535)"),
    ] {
        let text = good.replace(change.0, change.1);
        assert!(error(&text).contains(expected), "{change:?}: {}", error(&text));
    }
    let without_sip = "default = \"accept\"\n[behaviour]\nwindow = \"1s\"\npenalty = \"1s\"\n";
    assert!(
        error(without_sip).contains("[behaviour] counts SIP requests, but no rule reads SIP"),
        "{}",
        error(without_sip)
    );
}

#[test]
fn a_ban_rule_drops_and_carries_its_ban_and_bans_has_its_bounds() {
    let text = concat!(
        "default = \"drop\"\n[bans]\nmax_entries = 1000\nmax_duration = \"2d\"\nstate = \"bans.txt\"\nports = [5060, \"10000-20000\"]\n[[rule]]\nname = \"honeypot\"\nports = [23]\naction = \"ban\"\n",
        "ban = \"6h\"\nban_prefix = 24\nban_prefix6 = 64\n[[rule]]\nports = [2323]\naction = \"ban\"\n"
    );
    let config = Config::parse(text).unwrap();
    assert_eq!(config.deployment.bans.limits, BanLimits { max_entries: 1000, max_duration_ms: 2 * 86_400_000 });
    assert_eq!(config.deployment.bans.state.as_deref(), Some("bans.txt"));
    assert_eq!(config.deployment.bans.ports, [PortRange::single(5060), PortRange { first: 10000, last: 20000 }]);
    let policy = config.policy.build(Arc::new(parse_range_csv("").unwrap())).unwrap();
    let rules: Vec<&Rule> = policy.rules().collect();
    assert_eq!(rules[0].verdict(), Verdict::Drop);
    assert_eq!(rules[0].ban(), Some(BanSpec { duration_ms: 6 * 3_600_000, prefix_v4: 24, prefix_v6: 64 }));
    assert_eq!(rules[0].action().to_string(), "ban 6h /24 /64");
    assert_eq!(rules[1].ban(), Some(BanSpec { duration_ms: 3_600_000, prefix_v4: 32, prefix_v6: 128 }), "defaults");
    assert_eq!(Config::parse("default = \"drop\"\n").unwrap().deployment.bans, BanSettings::default());
}

#[test]
fn ban_settings_out_of_place_or_out_of_range_are_refused_where_written() {
    assert_eq!(
        error(&format!("{RULE}action = \"drop\"\nban = \"1h\"\n")),
        "line 4, column 7: ban, ban_prefix and ban_prefix6 belong to a ban rule (use action = \"ban\")"
    );
    assert_eq!(
        error(&format!("{RULE}action = \"ban\"\nban_prefix = 8\n")),
        "line 4, column 14: a IPv4 ban prefix of /8 is not /16 to /32 (ban the source alone, or its /24 (IPv4) or \
         /64 (IPv6))"
    );
    assert!(error(&format!("{RULE}action = \"ban\"\nban_prefix6 = 129\n")).contains("IPv6 ban prefix of /129"));
    assert_eq!(
        error(&format!("{RULE}action = \"ban\"\nban = \"30d\"\n")),
        "line 4, column 7: ban = 30d is longer than the kernel's sets keep an entry (24 days) (at most \"24d\")"
    );
    assert!(error(&format!("{RULE}action = \"ban\"\nban = \"soon\"\n")).contains("`soon` is not a duration"));
    assert!(error(&format!("{RULE}action = \"ban\"\nmark = 1\n")).contains("a mark is set only on accepted packets"));
    assert!(error(&format!("{RULE}action = \"reject\"\n")).ends_with("(expected `accept`, `drop` or `ban`)"));
    assert_eq!(
        error("default = \"ban\"\n"),
        "line 1, column 11: only a rule can ban (a default or malformed verdict is `accept` or `drop`)"
    );
    assert!(error("default = \"drop\"\n[bans]\nmax_entries = 0\n").contains("max_entries = 0 is not 1 to 16777216"));
    assert!(error("default = \"drop\"\n[bans]\nmax_duration = \"25d\"\n").contains("longer than the kernel"));
    assert!(error("default = \"drop\"\n[bans]\nsize = 1\n").contains("unknown field `size`"));
    assert_eq!(
        error("default = \"drop\"\n[bans]\nsets = \"nftables\"\n"),
        "line 3, column 8: unknown kind of set `nftables` (expected `ipset` (the iptables backend) or `nft`)"
    );
    assert!(error("default = \"drop\"\n[bans]\nports = [\"20-10\"]\n").contains("`20-10` is not a port or port range"));
    let nft = Config::parse("default = \"drop\"\n[bans]\nsets = \"nft\"\n").unwrap();
    assert_eq!(nft.deployment.bans.sets, crate::ban::SetKind::Nft);
}

#[test]
fn the_update_table_names_urls_and_files_and_refuses_what_cannot_be_fetched() {
    let text = "default = \"drop\"\ndatabase = \"countries.csv\"\n[update]\ntimeout = \"90s\"\n\
                geoip_conf = \"GeoIP.conf\"\n[[update.source]]\n\
                url = \"https://example.org/dbip-country-lite-{year}-{month}.csv.gz\"\n\
                file = \"countries.csv\"\nmax_size_mib = 64\n";
    let update = Config::parse(text).unwrap().deployment.update;
    assert_eq!((update.timeout_ms, update.geoip_conf.as_deref()), (90_000, Some("GeoIP.conf")));
    let source = &update.sources[0];
    assert_eq!((source.file.as_str(), source.max_size, source.is_monthly()), ("countries.csv", Some(64 << 20), true));
    assert_eq!(source.url_for(2027, 1), "https://example.org/dbip-country-lite-2027-01.csv.gz");
    assert!(Config::parse("default = \"drop\"\n").unwrap().deployment.update.is_empty());

    let with = |source: &str| error(&format!("default = \"drop\"\n[[update.source]]\n{source}"));
    assert_eq!(
        with("url = \"ftp://example.org/x\"\nfile = \"x\"\n"),
        "line 3, column 7: `ftp://example.org/x` is not an http:// or https:// URL"
    );
    assert_eq!(
        with("url = \"https://example.org/{date}.gz\"\nfile = \"x\"\n"),
        "line 3, column 7: `https://example.org/{date}.gz` holds a placeholder other than {year} and {month}: `{date}.gz`"
    );
    assert!(with("url = \"https://example.org/x\"\nfile = \"x\"\nmax_size_mib = 4096\n").contains("not 1 to 1024"));
    assert!(
        with("url = \"https://example.org/x\"\nfile = \"x\"\nformat = \"csv\"\n").contains("unknown field `format`")
    );
    assert!(with("url = \"https://example.org/x\"\n").contains("missing field `file`"));
    assert_eq!(
        with("url = \"https://example.org/x\"\nfile = \"x\"\napi = \"apiban2\"\n"),
        "line 5, column 7: unknown api `apiban2` (the one known is `apiban`)"
    );
    let apiban = Config::parse("default = \"drop\"\n[[update.source]]\nurl = \"https://apiban.org/api/K/banned\"\nfile = \"a.json\"\napi = \"apiban\"\n");
    assert_eq!(apiban.unwrap().deployment.update.sources[0].api, crate::config::Api::Apiban);
    assert!(error("default = \"drop\"\n[update]\ntimeout = \"0s\"\n").contains("`0s` is not a duration"));
}
