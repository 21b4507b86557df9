//! Conformance over a full MaxMind DB file: geofence's compiled table against the `maxminddb`
//! crate on every network's boundaries (first − 1, first, last, last + 1) and on a million random
//! addresses of each family. Exits 1 on the first disagreement.
//!
//!     cargo run --release --example mmdb_conformance -- FILE.mmdb     (scripts/conformance-mmdb)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;

use geofence::db::{load, CountryTable, Input};
use geofence::{CountryCode, CountryDb};

// The peer's reading of a record, written here from the schemas and not shared with geofence's
// loader, so the two readings are independent.
#[derive(serde::Deserialize)]
struct Named<'a> {
    iso_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Named<'a>>,
    #[serde(borrow)]
    registered_country: Option<Named<'a>>,
    country_code: Option<&'a str>,
}

fn theirs(reader: &maxminddb::Reader<&[u8]>, address: IpAddr) -> Option<CountryCode> {
    let result = reader.lookup(address).ok()?;
    let record: Record = result.decode().ok()??;
    let code = record
        .country
        .and_then(|n| n.iso_code)
        .or(record.registered_country.and_then(|n| n.iso_code))
        .or(record.country_code)?;
    if code == "ZZ" {
        return None;
    }
    code.parse().ok()
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: mmdb_conformance FILE.mmdb");
        return ExitCode::from(2);
    };
    let bytes = std::fs::read(&path).expect("readable file");
    let started = std::time::Instant::now();
    let (table, _): (CountryTable, _) = load(&[Input { name: &path, bytes: &bytes }]).expect("geofence loads it");
    println!("{path}: compiled in {:.2} s; {:?} ranges", started.elapsed().as_secs_f64(), table.range_counts());
    let reader = maxminddb::Reader::from_source(&bytes[..]).expect("maxminddb reads it");
    let mut checked = 0u64;
    let mut check = |address: IpAddr| -> bool {
        checked += 1;
        let (ours, theirs) = (table.lookup(address), theirs(&reader, address));
        if ours != theirs {
            eprintln!("disagree at {address}: geofence {ours:?}, maxminddb {theirs:?}");
        }
        ours == theirs
    };
    let mut networks = 0u64;
    let v6 = reader.metadata().ip_version == 6;
    for cidr in ["0.0.0.0/0", "::/0"].into_iter().take(if v6 { 2 } else { 1 }) {
        for item in reader.within(cidr.parse().expect("cidr"), Default::default()).expect("walk") {
            let network = item.expect("network").network().expect("network");
            let (first, last) = (network.network(), network.broadcast());
            if matches!(first, IpAddr::V6(a) if u128::from(a) >> 32 == 0) {
                continue; // the IPv4 subtree, already walked as IPv4
            }
            networks += 1;
            let around = match (first, last) {
                (IpAddr::V4(f), IpAddr::V4(l)) => [u32::from(f).checked_sub(1), u32::from(l).checked_add(1)]
                    .into_iter()
                    .flatten()
                    .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                    .collect::<Vec<_>>(),
                (IpAddr::V6(f), IpAddr::V6(l)) => [u128::from(f).checked_sub(1), u128::from(l).checked_add(1)]
                    .into_iter()
                    .flatten()
                    .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                    .collect(),
                _ => Vec::new(),
            };
            for address in [first, last].into_iter().chain(around) {
                if !check(address) {
                    return ExitCode::from(1);
                }
            }
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..1_000_000 {
        if !check(IpAddr::V4(Ipv4Addr::from(next() as u32))) {
            return ExitCode::from(1);
        }
        if v6 {
            // Within 2000::/4, where nearly all assigned IPv6 space is.
            let address = (0x2u128 << 124) | ((u128::from(next()) << 64 | u128::from(next())) >> 4);
            if !check(IpAddr::V6(Ipv6Addr::from(address))) {
                return ExitCode::from(1);
            }
        }
    }
    println!(
        "agree on {checked} addresses: the boundaries of {networks} networks and 1,000,000 random addresses per family"
    );
    ExitCode::SUCCESS
}
