//! Loads examples/asterisk.toml with the test fixture's country data and prints the decision for
//! a handful of sample packets: the how-to's cases, IPv4 and IPv6.
//!
//!     cargo run --example asterisk

use std::error::Error;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use geofence::{db::parse_range_csv, sample, Config, Protocol};

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::parse(&std::fs::read_to_string(root.join("examples/asterisk.toml"))?)?;
    let db = parse_range_csv(&std::fs::read_to_string(root.join("tests/fixtures/countries.csv"))?)?;
    let policy = config.policy.build(Arc::new(db))?;

    let server4: IpAddr = "192.0.2.1".parse()?;
    let server6: IpAddr = "2001:db8::1".parse()?;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("LAN phone (RFC 1918)", sample::sip_options("192.168.1.20".parse()?, "192.168.1.1".parse()?)),
        ("trunk in GB", sample::sip_options("192.0.2.10".parse()?, server4)),
        ("roaming user in US", sample::sip_options("192.0.2.200".parse()?, server4)),
        ("scanner in CN", sample::sip_options("198.51.100.23".parse()?, server4)),
        ("scanner in RU", sample::sip_options("203.0.113.5".parse()?, server4)),
        ("address with no country", sample::sip_options("203.0.113.200".parse()?, server4)),
        ("IPv6 client in GB", sample::sip_options("2001:db8:1::10".parse()?, server6)),
        ("IPv6 scanner in CN", sample::sip_options("2001:db8:2::10".parse()?, server6)),
        ("CN to another port", sample::udp_packet("198.51.100.23".parse()?, server4, (40000, 8080), b"GET")),
        ("ICMP echo from CN", sample::ip_packet("198.51.100.23".parse()?, server4, Protocol::ICMP, &[8, 0, 0, 0])),
        ("truncated packet", sample::sip_options("198.51.100.23".parse()?, server4)[..24].to_vec()),
    ];

    println!("{:<26} {:<16} {:<9} {:<7} {:<18} verdict", "case", "source", "to", "country", "rule");
    for (case, packet) in &cases {
        let decision = policy.explain(packet);
        let source = decision.source.map_or("-".into(), |s| s.to_string());
        let to = match decision.packet {
            Ok(meta) => meta.destination_port().map_or(meta.protocol.to_string(), |p| format!("{}/{p}", meta.protocol)),
            Err(_) => "malformed".into(),
        };
        // "-": the decision did not need the country, so it was not looked up.
        let country = decision.country.to_string();
        let rule = decision.rule.unwrap_or("(default)");
        println!("{case:<26} {source:<16} {to:<9} {country:<7} {rule:<18} {}", decision.verdict);
    }
    Ok(())
}
