//! `Policy::decide` and `explain` allocate nothing: counted by an instrumented global allocator,
//! over packets that take every path (lists, lookups, SIP conditions, defaults, malformed).

use std::alloc::System;
use std::sync::Arc;

use geofence_core::{db::parse_range_csv, sample, Config, Protocol};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const POLICY: &str = r#"
default = "drop"
[lists]
trunks = ["203.0.113.10", "2001:db8:5::/48"]
[[rule]]
name = "trunks"
source = ["trunks", "rfc1918"]
action = "accept"
[[rule]]
name = "scanners"
protocol = "udp"
ports = [5060]
user_agent = ["@scanners", "evil*"]
action = "drop"
[[rule]]
name = "address-literal"
ports = [5060]
request_host = ["address", "*.example.net"]
to_user = ["100?"]
action = "drop"
[[rule]]
name = "allowed"
protocol = "udp"
ports = [5060]
country = ["GB", "unknown"]
action = "accept"
mark = 16
[[rule]]
name = "others"
protocol = "udp"
ports = [5060]
not_country = ["CN"]
action = "drop"
"#;

#[test]
fn deciding_and_explaining_allocate_nothing() {
    let db = parse_range_csv("192.0.2.0,192.0.2.255,GB\n198.51.100.0,198.51.100.255,CN\n").unwrap();
    let policy = Arc::new(Config::parse(POLICY).unwrap().policy.build(Arc::new(db)).unwrap());
    let server4 = "192.0.2.1".parse().unwrap();
    let server6 = "2001:db8::1".parse().unwrap();
    let mut packets: Vec<Vec<u8>> = ["192.0.2.9", "198.51.100.9", "203.0.113.10", "10.1.2.3", "203.0.113.99"]
        .iter()
        .map(|source| sample::sip_options(source.parse().unwrap(), server4))
        .collect();
    packets.extend(["2001:db8:5::1", "2001:db8:9::1", "::ffff:192.0.2.9"].iter().map(|source| {
        let source: std::net::IpAddr = source.parse().unwrap();
        sample::sip_options(source, server6)
    }));
    packets.push(sample::ip_packet(server4, server4, Protocol::ICMP, &[8, 0, 0, 0]));
    let scanner =
        b"REGISTER sip:1001@192.0.2.1 SIP/2.0\r\nTo: <sip:1001@192.0.2.1>\r\nUser-Agent: friendly-scanner\r\n\r\n";
    packets.push(sample::udp_packet("192.0.2.9".parse().unwrap(), server4, (5062, 5060), scanner));
    packets.push(sample::udp_packet("192.0.2.9".parse().unwrap(), server4, (5062, 5060), b"not sip at all"));
    packets.push(packets[0][..25].to_vec());

    let region = Region::new(GLOBAL);
    let mut decided = 0;
    for packet in &packets {
        decided += usize::from(policy.decide(packet) == policy.explain(packet).verdict);
    }
    let flow = policy.decide_flow("192.0.2.9".parse().unwrap(), Protocol::UDP, Some(5060));
    let change = region.change();

    assert_eq!(decided, packets.len());
    assert_eq!(flow, geofence_core::Verdict::AcceptWithMark(16));
    assert_eq!((change.allocations, change.reallocations), (0, 0), "{change:?}");
}
