//! Packets are what attackers control: parse and decide arbitrary bytes under the how-to's
//! policy, and check the parser's promises (a parsed packet is consistent with its bytes).
#![no_main]

use std::sync::{Arc, OnceLock};

use geofence_core::{db::parse_range_csv, packet, Config, Policy, Transport};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let config = Config::parse(include_str!("../../examples/asterisk.toml")).expect("example config");
        let db = parse_range_csv(include_str!("../../tests/fixtures/countries.csv")).expect("fixture");
        config.policy.build(Arc::new(db)).expect("policy")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let decided = policy().decide(bytes);
    let explained = policy().explain(bytes);
    assert_eq!(decided, explained.verdict);
    if let Ok(meta) = packet::parse(bytes) {
        assert_eq!(meta.ip_version(), bytes[0] >> 4);
        if let Transport::Ports { .. } = meta.transport {
            assert!(meta.protocol.has_ports());
        }
    }
});
