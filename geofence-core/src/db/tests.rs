use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cc(text: &str) -> Option<CountryCode> {
    Some(text.parse().unwrap())
}

fn one(name: &str, bytes: &[u8]) -> CountryTable {
    load(&[Input { name, bytes }]).unwrap().0
}

#[test]
fn formats_are_told_apart_by_content() {
    let cases: [(&[u8], Format); 6] = [
        (b"1.0.0.0,1.0.0.255,AU\n", Format::RangeCsv),
        (b"# comment\n16777216,16777471,AU\n", Format::RangeCsv),
        (b"\"16777216\",\"16777471\",\"AU\",\"Australia\"\n", Format::Ip2Location),
        (b"2|apnic|20260601|3|19830613|20260531|+1000\n", Format::Rir),
        (b"network,geoname_id,registered_country_geoname_id\n", Format::GeoLite2Blocks),
        (b"geoname_id,locale_code,continent_code\n", Format::GeoLite2Locations),
    ];
    for (bytes, format) in cases {
        assert_eq!(detect(bytes), Ok(format), "{}", String::from_utf8_lossy(bytes));
    }
    assert_eq!(detect(&encode_compiled(&CountryTable::empty(), &Provenance::default())), Ok(Format::Compiled));
    assert_eq!(detect(&mmdb_fixture(&[("192.0.2.0/24", Schema::Flat("GB"))])), Ok(Format::Mmdb));
    assert!(matches!(detect(b"\xff\xfe\x00garbage"), Err(DbError::UnknownFormat(_))));
    assert!(matches!(detect(b"\n# only a comment\n"), Err(DbError::UnknownFormat(_))));
}

#[test]
fn every_text_format_loads_the_same_ranges() {
    let csv = one("a.csv", b"192.0.2.0,192.0.2.255,GB\n2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,CN\n");
    let numbers = one(
        "b.csv",
        b"3221225984,3221226239,GB\n42540766411282592856903984951653826560,42540766490510755371168322545197776895,CN\n",
    );
    let ip2location = one("c.csv", b"\"3221225984\",\"3221226239\",\"GB\",\"United Kingdom\"\n\"42540766411282592856903984951653826560\",\"42540766490510755371168322545197776895\",\"CN\",\"China\"\n");
    let rir = one("d.txt", b"2|ripencc|20260601|2|19830705|20260531|+0100\nripencc|GB|ipv4|192.0.2.0|256|20000101|allocated\napnic|CN|ipv6|2001:db8::|32|20000101|allocated\n");
    let geolite2 = load(&[
        Input { name: "blocks.csv", bytes: b"network,geoname_id,registered_country_geoname_id\n192.0.2.0/24,2635167,\n2001:db8::/32,,1814991\n" },
        Input { name: "locations.csv", bytes: b"geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union\n2635167,en,EU,Europe,GB,\"United Kingdom\",0\n1814991,en,AS,Asia,CN,China,0\n" },
    ])
    .unwrap()
    .0;
    let mmdb = one(
        "e.mmdb",
        &mmdb_fixture(&[("192.0.2.0/24", Schema::GeoIp2("GB")), ("2001:db8::/32", Schema::Registered("CN"))]),
    );
    for (name, table) in
        [("numbers", &numbers), ("ip2location", &ip2location), ("rir", &rir), ("geolite2", &geolite2), ("mmdb", &mmdb)]
    {
        assert_eq!(table.ranges().collect::<Vec<_>>(), csv.ranges().collect::<Vec<_>>(), "{name}");
    }
    assert_eq!(csv.lookup(ip("192.0.2.7")), cc("GB"));
    assert_eq!(csv.lookup(ip("2001:db8:1::")), cc("CN"));
}

#[test]
fn geolite2_blocks_without_locations_are_refused() {
    let result = load(&[Input {
        name: "blocks.csv",
        bytes: b"network,geoname_id,registered_country_geoname_id\n192.0.2.0/24,1,\n",
    }]);
    assert_eq!(result.unwrap_err(), DbError::MissingLocations);
}

#[test]
fn a_later_input_overrides_an_earlier_one_and_errors_name_the_input() {
    let base = encode_compiled(&one("base.csv", b"192.0.2.0,192.0.2.255,US\n"), &Provenance::default());
    let (table, provenance) = load(&[
        Input { name: "base.gfdb", bytes: &base },
        Input { name: "local.csv", bytes: b"192.0.2.128,192.0.2.255,GB\n" },
    ])
    .unwrap();
    assert_eq!((table.lookup(ip("192.0.2.1")), table.lookup(ip("192.0.2.200"))), (cc("US"), cc("GB")));
    assert_eq!(provenance.source, "base.gfdb (geofence compiled database), local.csv (range CSV)");
    let error = load(&[Input { name: "local.csv", bytes: b"192.0.2.128,192.0.2.1,GB\n" }]).unwrap_err();
    assert_eq!(error.to_string(), "local.csv: line 1: range 192.0.2.128-192.0.2.1 is backwards or mixes IPv4 and IPv6");
}

#[test]
fn a_single_compiled_file_keeps_its_provenance() {
    let provenance = Provenance { date: "2026-06".into(), source: "IP Geolocation by DB-IP".into() };
    let file = encode_compiled(&one("x.csv", b"192.0.2.0,192.0.2.255,GB\n"), &provenance);
    assert_eq!(load(&[Input { name: "x.gfdb", bytes: &file }]).unwrap().1, provenance);
}

/// The record shapes of the mmdb schemas geofence reads.
enum Schema {
    GeoIp2(&'static str),
    Registered(&'static str),
    Flat(&'static str),
}

#[derive(Serialize)]
struct Iso {
    iso_code: &'static str,
}

#[derive(Serialize)]
struct GeoIp2Record {
    country: Option<Iso>,
    registered_country: Option<Iso>,
}

#[derive(Serialize)]
struct FlatRecord {
    country_code: &'static str,
}

/// A writer whose metadata is complete enough for `maxminddb`'s verification.
fn writer(kind: &str) -> mmdb_writer::Writer {
    mmdb_writer::Writer::builder(kind).description(&[("en", "geofence test fixture")]).build()
}

fn mmdb_fixture(networks: &[(&str, Schema)]) -> Vec<u8> {
    let mut writer = writer("GeoLite2-Country");
    for (network, schema) in networks {
        let network: IpNet = network.parse().unwrap();
        match schema {
            Schema::GeoIp2(code) => writer
                .insert(network, &GeoIp2Record { country: Some(Iso { iso_code: code }), registered_country: None }),
            Schema::Registered(code) => writer
                .insert(network, &GeoIp2Record { country: None, registered_country: Some(Iso { iso_code: code }) }),
            Schema::Flat(code) => writer.insert(network, &FlatRecord { country_code: code }),
        }
        .unwrap();
    }
    writer.to_bytes().unwrap()
}

/// Deterministic pseudo-random numbers for the conformance run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0
    }

    fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

fn random_fixture(rng: &mut Lcg) -> (Vec<(IpNet, usize)>, Vec<u8>) {
    const CODES: [&str; 6] = ["GB", "US", "CN", "DE", "NZ", "BR"];
    let mut networks = Vec::new();
    for i in 0..3000 {
        let net: IpNet = if i % 2 == 0 {
            let prefix = 8 + (rng.next() % 25) as u8;
            ipnet::Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), prefix).unwrap().trunc().into()
        } else {
            // Up to /112, so some networks split a /64.
            let prefix = 16 + (rng.next() % 97) as u8;
            // 2400::/6: clear of 2002::/16, which IPv6 trees alias to IPv4.
            let address = (0x2400u128 << 112) | (rng.u128() >> 6);
            ipnet::Ipv6Net::new(Ipv6Addr::from(address), prefix).unwrap().trunc().into()
        };
        networks.push((net, (rng.next() % 18) as usize));
    }
    let schemas: Vec<(String, Schema)> = networks
        .iter()
        .map(|(net, pick)| {
            let code = CODES[pick % 6];
            let schema = match pick / 6 {
                0 => Schema::GeoIp2(code),
                1 => Schema::Registered(code),
                _ => Schema::Flat(code),
            };
            (net.to_string(), schema)
        })
        .collect();
    let borrowed: Vec<(&str, Schema)> =
        schemas.into_iter().map(|(n, s)| (&*Box::leak(n.into_boxed_str()), s)).collect();
    (networks, mmdb_fixture(&borrowed))
}

fn maxminddb_country(reader: &maxminddb::Reader<&[u8]>, address: IpAddr) -> Option<CountryCode> {
    #[derive(serde::Deserialize)]
    struct Named {
        iso_code: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Record {
        country: Option<Named>,
        registered_country: Option<Named>,
        country_code: Option<String>,
    }
    let record: Record = reader.lookup(address).unwrap().decode().unwrap()?;
    let code = record
        .country
        .and_then(|n| n.iso_code)
        .or(record.registered_country.and_then(|n| n.iso_code))
        .or(record.country_code)?;
    code.parse().ok()
}

/// The compiled table and the `maxminddb` crate agree on the same mmdb: at every network's
/// boundaries and on a million random addresses of both families.
#[test]
fn mmdb_conformance_at_boundaries_and_a_million_random_addresses() {
    let mut rng = Lcg(0x6e0f_e2ce);
    let (networks, bytes) = random_fixture(&mut rng);
    let table = one("fixture.mmdb", &bytes);
    let reader = maxminddb::Reader::from_source(&bytes[..]).unwrap();
    let mut checked = 0;
    let mut check = |address: IpAddr| {
        assert_eq!(table.lookup(address), maxminddb_country(&reader, address), "{address}");
        checked += 1;
    };
    for (net, _) in &networks {
        let (first, last) = (net.network(), net.broadcast());
        for address in [first, last] {
            check(address);
        }
        match (first, last) {
            (IpAddr::V4(f), IpAddr::V4(l)) => [u32::from(f).checked_sub(1), u32::from(l).checked_add(1)]
                .into_iter()
                .flatten()
                .for_each(|a| check(IpAddr::V4(a.into()))),
            (IpAddr::V6(f), IpAddr::V6(l)) => [u128::from(f).checked_sub(1), u128::from(l).checked_add(1)]
                .into_iter()
                .flatten()
                .for_each(|a| check(IpAddr::V6(a.into()))),
            _ => unreachable!(),
        }
    }
    for i in 0..1_000_000u32 {
        let address = if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
        } else {
            // Inside 2400::/6, where the fixture's IPv6 networks are.
            IpAddr::V6(Ipv6Addr::from((0x2400u128 << 112) | (rng.u128() >> 6)))
        };
        check(address);
    }
    assert!(checked > 1_010_000);
}

#[test]
fn damaged_mmdb_files_are_refused_or_read_but_never_panic() {
    let bytes = mmdb_fixture(&[("192.0.2.0/24", Schema::GeoIp2("GB")), ("2001:db8::/32", Schema::Flat("CN"))]);
    for length in 0..bytes.len() {
        assert!(load(&[Input { name: "cut.mmdb", bytes: &bytes[..length] }]).is_err(), "accepted {length} bytes");
    }
    let mut rng = Lcg(7);
    let mut refused = 0;
    for _ in 0..2000 {
        let mut damaged = bytes.clone();
        let bit = rng.next() as usize % (bytes.len() * 8);
        damaged[bit / 8] ^= 1 << (bit % 8);
        refused += usize::from(load(&[Input { name: "flip.mmdb", bytes: &damaged }]).is_err());
    }
    // A flip inside a country code or an unused tree record can still read as valid data.
    assert!(refused > 1000, "only {refused} of 2000 bit flips refused");
}

#[test]
fn an_mmdb_without_a_country_schema_loads_as_unknown_everywhere() {
    #[derive(Serialize)]
    struct Asn {
        autonomous_system_number: u32,
    }
    let mut writer = writer("ASN");
    writer.insert("192.0.2.0/24".parse::<IpNet>().unwrap(), &Asn { autonomous_system_number: 64512 }).unwrap();
    let table = one("asn.mmdb", &writer.to_bytes().unwrap());
    assert_eq!(table.range_counts(), (0, 0));
}

/// The ip-location-db DB-IP files carry no description in their metadata; they must load.
#[test]
fn an_mmdb_without_a_description_loads() {
    let mut writer = mmdb_writer::Writer::new("DBIP-Country-Lite");
    writer.insert("192.0.2.0/24".parse::<IpNet>().unwrap(), &FlatRecord { country_code: "GB" }).unwrap();
    let table = one("dbip.mmdb", &writer.to_bytes().unwrap());
    assert_eq!(table.lookup(ip("192.0.2.9")), cc("GB"));
}

/// An IPv4 mmdb of `levels` nodes in which both records of each node point at the next one,
/// and the last node's at a record of GB: a few hundred bytes whose tree yields 2^levels
/// networks to a walk.
fn fanning_out_mmdb(levels: u32) -> Vec<u8> {
    let record = |value: u32| value.to_be_bytes()[1..].to_vec();
    let data = levels + 16;
    let mut file: Vec<u8> = (1..=levels)
        .flat_map(|next| {
            let value = if next == levels { data } else { next };
            [record(value), record(value)].concat()
        })
        .collect();
    file.extend([0; 16]);
    file.extend([0xE1, 0x4C]);
    file.extend(b"country_code");
    file.extend([0x42, b'G', b'B']);
    file.extend(b"\xAB\xCD\xEFMaxMind.com");
    let key = |name: &str| [vec![0x40 | name.len() as u8], name.as_bytes().to_vec()].concat();
    let entries: [(&str, Vec<u8>); 9] = [
        ("node_count", vec![0xC1, levels as u8]),
        ("record_size", vec![0xA1, 24]),
        ("ip_version", vec![0xA1, 4]),
        ("database_type", [vec![0x44], b"test".to_vec()].concat()),
        ("languages", vec![0x00, 0x04]),
        ("binary_format_major_version", vec![0xA1, 2]),
        ("binary_format_minor_version", vec![0xA0]),
        ("build_epoch", vec![0x00, 0x02]),
        ("description", vec![0xE0]),
    ];
    file.push(0xE0 | entries.len() as u8);
    for (name, value) in entries {
        file.extend(key(name));
        file.extend(value);
    }
    file
}

#[test]
fn an_mmdb_whose_tree_fans_out_is_refused_after_work_its_size_bounds() {
    // A proper tree reads: 4 levels make 16 networks that cover everything.
    let table = one("small.mmdb", &fanning_out_mmdb(4));
    assert_eq!(table.lookup(ip("203.0.113.9")), cc("GB"));
    // 28 levels would make 268 million networks from under 400 bytes.
    let bytes = fanning_out_mmdb(28);
    assert!(bytes.len() < 400, "{} bytes", bytes.len());
    let error = load(&[Input { name: "fan.mmdb", bytes: &bytes }]).unwrap_err().to_string();
    assert!(error.contains("yields more than 116 networks, more than its 28 nodes can hold"), "{error}");
}
