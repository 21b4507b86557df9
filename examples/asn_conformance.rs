//! Conformance of geofence's ASN answers over real ASN data, three ways from the same CSV files
//! (ip-location-db's `start,end,asn,organisation`):
//!
//! - the CSV written as a GeoLite2-ASN mmdb (`mmdb-writer`), read by geofence and by the
//!   `maxminddb` crate;
//! - the CSV read by geofence;
//! - the CSV read naively here: ranges sorted, a binary search an address.
//!
//! All four answers (and the organisation names of the two mmdb readings) must agree on every
//! range's boundaries (first − 1, first, last, last + 1) and on a million random addresses a
//! family. Exits 1 on the first disagreement.
//!
//!     cargo run --release --example asn_conformance -- asn-ipv4.csv asn-ipv6.csv  (scripts/conformance-asn)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Instant;

use geofence::db::{load_asn_layers, Input};
use geofence::{Asn, AsnTable};

/// One CSV range, as read here (independently of geofence's loader).
struct Naive {
    first: u128,
    last: u128,
    asn: u32,
    organisation: String,
}

/// The CSV read with no cleverness: a line, three commas, an optionally quoted name.
fn read_naively(text: &str) -> (Vec<Naive>, Vec<Naive>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.splitn(4, ',');
        let (first, last, asn, organisation) =
            (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap_or(""));
        let asn: u32 = asn.parse().expect("an AS number");
        if asn == 0 {
            continue;
        }
        let organisation = organisation.trim_matches('"').to_owned();
        match (first.parse::<IpAddr>().unwrap(), last.parse::<IpAddr>().unwrap()) {
            (IpAddr::V4(f), IpAddr::V4(l)) => {
                v4.push(Naive { first: u32::from(f).into(), last: u32::from(l).into(), asn, organisation })
            }
            (IpAddr::V6(f), IpAddr::V6(l)) => v6.push(Naive { first: f.into(), last: l.into(), asn, organisation }),
            _ => panic!("a range across families: {line}"),
        }
    }
    v4.sort_by_key(|range| range.first);
    v6.sort_by_key(|range| range.first);
    (v4, v6)
}

fn naive_lookup(ranges: &[Naive], address: u128) -> Option<u32> {
    let after = ranges.partition_point(|range| range.first <= address);
    let range = &ranges[after.checked_sub(1)?];
    (address <= range.last).then_some(range.asn)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AsnRecord {
    autonomous_system_number: u32,
    autonomous_system_organization: String,
}

/// The ranges as a GeoLite2-ASN mmdb, each range split into the CIDR networks it covers.
fn write_mmdb(v4: &[Naive], v6: &[Naive]) -> Vec<u8> {
    // Without the IPv4 aliases, which would claim 2001::/32 and 2002::/16, where the data has
    // IPv6 networks of its own.
    let mut writer =
        mmdb_writer::Writer::builder("GeoLite2-ASN").ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Disabled).build();
    for range in v4 {
        let (first, last) = (Ipv4Addr::from(range.first as u32), Ipv4Addr::from(range.last as u32));
        let record = AsnRecord {
            autonomous_system_number: range.asn,
            autonomous_system_organization: range.organisation.clone(),
        };
        for network in ipnet::Ipv4Subnets::new(first, last, 0) {
            writer.insert(ipnet::IpNet::V4(network), &record).expect("insert");
        }
    }
    for range in v6 {
        let (first, last) = (Ipv6Addr::from(range.first), Ipv6Addr::from(range.last));
        let record = AsnRecord {
            autonomous_system_number: range.asn,
            autonomous_system_organization: range.organisation.clone(),
        };
        for network in ipnet::Ipv6Subnets::new(first, last, 0) {
            writer.insert(ipnet::IpNet::V6(network), &record).expect("insert");
        }
    }
    writer.to_bytes().expect("an mmdb")
}

fn theirs(reader: &maxminddb::Reader<&[u8]>, address: IpAddr) -> Option<(u32, String)> {
    let record: AsnRecord = reader.lookup(address).ok()?.decode().ok()??;
    Some((record.autonomous_system_number, record.autonomous_system_organization))
}

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: asn_conformance ASN.csv…");
        return ExitCode::from(2);
    }
    let contents: Vec<Vec<u8>> = paths.iter().map(|path| std::fs::read(path).expect("readable file")).collect();
    let text: String = contents.iter().map(|bytes| String::from_utf8_lossy(bytes).into_owned() + "\n").collect();
    let (v4, v6) = read_naively(&text);
    let mmdb = write_mmdb(&v4, &v6);
    println!("{} IPv4 and {} IPv6 ranges; as a GeoLite2-ASN mmdb: {} bytes", v4.len(), v6.len(), mmdb.len());

    let started = Instant::now();
    let inputs: Vec<Input> = paths.iter().zip(&contents).map(|(name, bytes)| Input { name, bytes }).collect();
    let from_csv: AsnTable = load_asn_layers(&inputs).expect("geofence loads the CSV");
    let csv_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let from_mmdb: AsnTable =
        load_asn_layers(&[Input { name: "asn.mmdb", bytes: &mmdb }]).expect("geofence loads the mmdb");
    println!("geofence loaded the CSV in {csv_seconds:.2} s and the mmdb in {:.2} s", started.elapsed().as_secs_f64());
    let reader = maxminddb::Reader::from_source(&mmdb[..]).expect("maxminddb reads it");

    let mut checked = 0u64;
    let mut check = |address: IpAddr| -> bool {
        checked += 1;
        let naive = match address {
            IpAddr::V4(a) => naive_lookup(&v4, u32::from(a).into()),
            IpAddr::V6(a) => naive_lookup(&v6, a.into()),
        };
        let peer = theirs(&reader, address);
        let (csv, mmdb) = (from_csv.lookup(address).map(|a| a.0), from_mmdb.lookup(address));
        let names_agree = match (&peer, mmdb) {
            (Some((_, theirs)), Some(asn)) => theirs.is_empty() || from_mmdb.organisation(asn) == Some(theirs.as_str()),
            _ => true,
        };
        let agree = csv == naive && mmdb.map(|a| a.0) == naive && peer.as_ref().map(|p| p.0) == naive && names_agree;
        if !agree {
            eprintln!(
                "disagree at {address}: naive {naive:?}, geofence CSV {csv:?}, geofence mmdb {mmdb:?} ({:?}), maxminddb {peer:?}",
                mmdb.and_then(|asn: Asn| from_mmdb.organisation(asn))
            );
        }
        agree
    };
    let mut boundaries = 0u64;
    for range in &v4 {
        boundaries += 1;
        let around = [range.first.checked_sub(1), Some(range.first), Some(range.last), range.last.checked_add(1)];
        for address in around.into_iter().flatten().filter(|a| *a <= u128::from(u32::MAX)) {
            if !check(IpAddr::V4(Ipv4Addr::from(address as u32))) {
                return ExitCode::from(1);
            }
        }
    }
    for range in &v6 {
        boundaries += 1;
        let around = [range.first.checked_sub(1), Some(range.first), Some(range.last), range.last.checked_add(1)];
        for address in around.into_iter().flatten() {
            if !check(IpAddr::V6(Ipv6Addr::from(address))) {
                return ExitCode::from(1);
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
        // Within 2000::/4, where nearly all assigned IPv6 space is.
        let address = (0x2u128 << 124) | ((u128::from(next()) << 64 | u128::from(next())) >> 4);
        if !check(IpAddr::V6(Ipv6Addr::from(address))) {
            return ExitCode::from(1);
        }
    }
    println!(
        "agree on {checked} addresses: the boundaries of {boundaries} ranges and 1,000,000 random addresses per family"
    );
    ExitCode::SUCCESS
}
