//! Every fuzz seed and every input that once crashed a fuzz target (fuzz/regressions/TARGET/),
//! through the same checks as the targets, in the normal test suite: a fixed crash stays fixed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use geofence_core::db::{decode_compiled, encode_compiled, parse_range_csv, read_as, CountryTable, Format};
use geofence_core::{packet, sip, Config, Transport};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut found = Vec::new();
    for folder in [fuzz.join("seeds").join(target), fuzz.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            found.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
    assert!(!found.is_empty(), "no seeds for the {target} target");
    found
}

#[test]
fn packet_inputs_decide_consistently() {
    let config = Config::parse(include_str!("data/asterisk.toml")).unwrap();
    let policy = config.policy.build(Arc::new(parse_range_csv(include_str!("data/countries.csv")).unwrap())).unwrap();
    for (path, bytes) in inputs("packet") {
        assert_eq!(policy.decide(&bytes), policy.explain(&bytes).verdict, "{}", path.display());
        if let Ok(meta) = packet::parse(&bytes) {
            assert_eq!(meta.ip_version(), bytes[0] >> 4, "{}", path.display());
            if let Transport::Ports { .. } = meta.transport {
                assert!(meta.protocol.has_ports(), "{}", path.display());
            }
        }
    }
}

#[test]
fn config_inputs_give_a_policy_or_a_located_error() {
    for (path, bytes) in inputs("config") {
        match Config::parse(&String::from_utf8_lossy(&bytes)) {
            Ok(config) => assert!(config.policy.build(Arc::new(CountryTable::empty())).is_ok(), "{}", path.display()),
            Err(error) => assert!(error.line >= 1 && error.column >= 1, "{}", path.display()),
        }
    }
}

#[test]
fn database_inputs_give_a_table_that_answers_or_an_error() {
    for (target, format) in [
        ("range_csv", Format::RangeCsv),
        ("ip2location", Format::Ip2Location),
        ("rir", Format::Rir),
        ("mmdb", Format::Mmdb),
    ] {
        for (path, bytes) in inputs(target) {
            if let Ok(table) = read_as(format, &bytes, None) {
                for (first, last, _) in table.ranges().take(64) {
                    assert!(table.get(first).is_some() && table.get(last).is_some(), "{}", path.display());
                }
            }
        }
    }
    for (path, bytes) in inputs("geolite2") {
        // A Locations file followed by a Blocks file: split where the blocks' header starts.
        let split = bytes.windows(8).position(|w| w == b"network,").unwrap_or(bytes.len());
        let result = read_as(Format::GeoLite2Blocks, &bytes[split..], Some(&bytes[..split]));
        if path.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")) {
            assert_eq!(result.map(|table| table.range_counts()), Ok((1, 1)), "{}", path.display());
        }
    }
}

#[test]
fn compiled_inputs_that_load_re_encode_to_themselves() {
    let mut loaded = 0;
    for (path, bytes) in inputs("compiled") {
        if let Ok((table, provenance)) = decode_compiled(&bytes) {
            assert_eq!(encode_compiled(&table, &provenance), bytes, "{}", path.display());
            loaded += 1;
        }
    }
    assert!(loaded >= 2, "the compiled seeds load");
}

#[test]
fn asn_inputs_give_a_table_that_answers_or_an_error() {
    let mut loaded = 0;
    for (path, bytes) in inputs("asn") {
        if let Ok(table) = geofence_core::db::load_asn(&bytes) {
            for (first, last, asn) in table.ranges().take(64) {
                assert_eq!((table.lookup(first), table.lookup(last)), (Some(asn), Some(asn)), "{}", path.display());
            }
            loaded += 1;
        }
    }
    assert!(loaded >= 3, "the seeds load");
}

#[test]
fn feed_inputs_give_networks_a_list_holds_or_an_error() {
    let mut read = 0;
    for (path, bytes) in inputs("feed") {
        if let Ok(feed) = geofence_core::feed::parse(&bytes) {
            let list: geofence_core::PrefixList = feed.networks.iter().copied().collect();
            for network in &feed.networks {
                assert!(list.contains(network.network_address()), "{}: {network}", path.display());
            }
            read += 1;
        }
    }
    assert!(read >= 4, "the seeds read");
}

#[test]
fn sip_inputs_parse_to_an_answer_that_the_conditions_read() {
    let config = Config::parse(include_str!("data/sip.toml")).unwrap();
    let policy = config.policy.build(Arc::new(CountryTable::empty())).unwrap();
    let server: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    for (path, bytes) in inputs("sip") {
        let _ = sip::parse(&bytes);
        let datagram = geofence_core::sample::udp_packet("198.51.100.7".parse().unwrap(), server, (5062, 5060), &bytes);
        assert_eq!(policy.decide(&datagram), policy.explain(&datagram).verdict, "{}", path.display());
    }
}

#[test]
fn ban_inputs_read_back_as_themselves_or_an_error_at_a_line() {
    use geofence_core::ban::{read_records, write_records, BanBook, BanLimits};
    const NOW_MS: u64 = 1_800_000_000_000;
    let (mut read, mut refused) = (0, 0);
    for (path, bytes) in inputs("bans") {
        let text = String::from_utf8_lossy(&bytes);
        let Ok(records) = read_records(&text, NOW_MS) else {
            refused += 1;
            continue;
        };
        let again = read_records(&write_records(records.iter().copied(), NOW_MS), NOW_MS);
        assert_eq!(again.as_ref(), Ok(&records), "{}", path.display());
        let mut book = BanBook::new(BanLimits { max_entries: 16, max_duration_ms: 86_400_000 }, 1);
        for record in records {
            book.restore(record, 0);
        }
        assert!(book.len() <= 16);
        read += 1;
    }
    assert!(read >= 1 && refused >= 1, "the seeds read ({read}) and refused ({refused})");
}
