//! examples/asterisk.toml decides the how-to's cases as the original Perl script did: accept
//! RFC 1918 and 24 countries on UDP 5060, drop the rest there, leave other traffic alone.

use std::net::IpAddr;
use std::sync::Arc;

use geofence::{db::parse_range_csv, sample, Config, Policy, Protocol, Verdict};

fn policy() -> Policy {
    let config = Config::parse(include_str!("../examples/asterisk.toml")).unwrap();
    assert!(config.policy.warnings.is_empty(), "{:?}", config.policy.warnings);
    assert_eq!(config.deployment.queues, (0, 0));
    let db = parse_range_csv(include_str!("fixtures/countries.csv")).unwrap();
    config.policy.build(Arc::new(db)).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn sip_verdict(policy: &Policy, source: &str) -> (Verdict, Option<String>) {
    let server = if source.contains(':') { "2001:db8::1" } else { "192.0.2.1" };
    let decision = policy.explain(&sample::sip_options(ip(source), ip(server)));
    (decision.verdict, decision.rule.map(str::to_owned))
}

#[test]
fn rfc1918_source_is_accepted() {
    let policy = policy();
    for source in ["10.1.2.3", "172.20.0.9", "192.168.1.20"] {
        assert_eq!(sip_verdict(&policy, source), (Verdict::Accept, Some("lan".to_owned())), "{source}");
    }
}

#[test]
fn allowed_country_is_accepted_ipv4_and_ipv6() {
    let policy = policy();
    for source in ["192.0.2.10", "192.0.2.200", "203.0.113.130", "2001:db8:1::10"] {
        assert_eq!(sip_verdict(&policy, source), (Verdict::Accept, Some("allowed-countries".to_owned())), "{source}");
    }
}

#[test]
fn blocked_country_is_dropped_ipv4_and_ipv6() {
    let policy = policy();
    for source in ["198.51.100.23", "203.0.113.5", "2001:db8:2::10", "2001:db8:4::1"] {
        assert_eq!(sip_verdict(&policy, source), (Verdict::Drop, Some("everyone-else".to_owned())), "{source}");
    }
}

#[test]
fn address_with_no_country_is_dropped() {
    let policy = policy();
    for source in ["203.0.113.200", "2001:db8:3::1", "2001:db8:ff::1"] {
        assert_eq!(sip_verdict(&policy, source), (Verdict::Drop, Some("everyone-else".to_owned())), "{source}");
    }
}

#[test]
fn another_port_or_protocol_is_not_filtered() {
    let policy = policy();
    let http = sample::udp_packet(ip("198.51.100.23"), ip("192.0.2.1"), (40000, 8080), b"x");
    assert_eq!(policy.decide(&http), Verdict::Accept);
    let tcp_sip = sample::ip_packet(
        ip("198.51.100.23"),
        ip("192.0.2.1"),
        Protocol::TCP,
        &[0x9c, 0x40, 0x13, 0xc4, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 2, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(policy.decide(&tcp_sip), Verdict::Accept);
}

#[test]
fn truncated_packet_is_dropped() {
    let policy = policy();
    let packet = sample::sip_options(ip("192.0.2.10"), ip("192.0.2.1"));
    for cut in [0, 1, 19, 24, 27] {
        assert_eq!(policy.decide(&packet[..cut]), Verdict::Drop, "cut at {cut}");
    }
}

#[test]
fn all_24_countries_of_the_how_to_are_allowed() {
    let config = Config::parse(include_str!("../examples/asterisk.toml")).unwrap();
    let policy = config.policy.build(Arc::new(parse_range_csv("").unwrap())).unwrap();
    let allowed = policy.rules().nth(1).unwrap().countries().unwrap();
    let codes: Vec<String> = allowed.countries().map(|c| c.to_string()).collect();
    assert_eq!(codes.join(" "), "AC AT AU BE CA CH DE DK ES FI FR GB GG IE IM IS JE LU NL NO PL SE US ZA");
    assert!(!allowed.contains_unknown());
}
