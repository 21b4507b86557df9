//! Country and ASN lookups and `Policy::decide` on the full embedded data (DB-IP country,
//! ip-location-db ASN), beside the peers an admin would otherwise use, measured in the same run
//! on the same data:
//! - `maxminddb`: `Reader::lookup` decoding just the country code (or the AS number), from an
//!   mmdb of the same ranges (written here with mmdb-writer);
//! - `ip_network_table`: longest-prefix match over the same ranges as CIDR networks.
//!
//! `scripts/bench-lookup` runs this and prints the ratios.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use geofence::db::{self, CountryTable};
use geofence::{sample, Config, CountryCode, CountryDb};
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;

const ADDRESSES: usize = 1 << 16;

// Every call gets its address as `*black_box(&addresses[i])`: hidden from the optimizer, read
// from the array. `black_box(addresses[i])` would instead copy the 17-byte `IpAddr` to the stack
// in pieces that the callee reads back in other pieces; such a read cannot be served from the
// pending stores and waits until every earlier instruction has finished, which stops one
// lookup from overlapping the next and measures the copy rather than the lookup.
/// IPv4 and UDP headers: what a queue with a small copy range hands over.
const HEADERS: usize = 28;

/// Deterministic pseudo-random numbers, so every run looks up the same addresses.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

/// IPv4: uniform over 1.0.0.0–223.255.255.255, as a scanner flood arrives. IPv6: uniform within
/// ranges the database knows (uniform over the whole space would nearly always miss).
fn addresses(table: &CountryTable) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut rng = Lcg(42);
    let v4 =
        (0..ADDRESSES).map(|_| IpAddr::V4(Ipv4Addr::from(0x0100_0000 + (rng.next() % 0xDF00_0000) as u32))).collect();
    let v6 = v6_within(table.ranges(), &mut rng);
    (v4, v6)
}

/// The same ranges as CIDR networks (a range splits into the largest aligned blocks).
fn networks(table: &CountryTable) -> Vec<(IpNetwork, CountryCode)> {
    let mut out = Vec::new();
    for (first, last, country) in table.ranges() {
        let (bits, mut start, end, v4) = match (first, last) {
            (IpAddr::V4(f), IpAddr::V4(l)) => (32u32, u128::from(u32::from(f)), u128::from(u32::from(l)), true),
            (IpAddr::V6(f), IpAddr::V6(l)) => (128, u128::from(f), u128::from(l), false),
            _ => unreachable!(),
        };
        loop {
            let mut size = if start == 0 { bits } else { start.trailing_zeros().min(bits) };
            while size > 0 && (size >= 128 || start + ((1u128 << size) - 1) > end) {
                size -= 1;
            }
            let prefix = (bits - size) as u8;
            let network = if v4 {
                IpNetwork::new(IpAddr::V4(Ipv4Addr::from(start as u32)), prefix)
            } else {
                IpNetwork::new(IpAddr::V6(Ipv6Addr::from(start)), prefix)
            };
            out.push((network.expect("aligned block"), country));
            let block_end = start + ((1u128 << size.min(127)) - 1);
            if size == 128 || block_end >= end {
                break;
            }
            start = block_end + 1;
        }
    }
    out
}

#[derive(serde::Serialize)]
struct FlatRecord {
    country_code: String,
}

#[derive(serde::Deserialize)]
struct CountryOnly<'a> {
    country_code: &'a str,
}

fn mmdb(networks: &[(IpNetwork, CountryCode)]) -> Vec<u8> {
    let mut writer = mmdb_writer::Writer::builder("DBIP-Country-Lite")
        .description(&[("en", "the embedded DB-IP data, for the benchmark peer")])
        // DB-IP has data of its own in 2001::/32 and 2002::/16, where aliases would go.
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Disabled)
        .build();
    for (network, country) in networks {
        let net: ipnet::IpNet = network.to_string().parse().expect("same network");
        writer.insert(net, &FlatRecord { country_code: country.to_string() }).expect("insert");
    }
    writer.to_bytes().expect("mmdb")
}

#[derive(serde::Deserialize)]
struct AsnOnly {
    autonomous_system_number: u32,
}

/// The ASN table's ranges as a GeoLite2-ASN mmdb, with the organisation names.
fn asn_mmdb(table: &geofence::AsnTable) -> Vec<u8> {
    let mut writer = mmdb_writer::Writer::builder("GeoLite2-ASN")
        .description(&[("en", "the embedded ASN data, for the benchmark peer")])
        // The data has IPv6 networks of its own in 2001::/32 and 2002::/16.
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Disabled)
        .build();
    for (first, last, asn) in table.ranges() {
        let record = mmdb_writer::Value::map([
            ("autonomous_system_number", mmdb_writer::Value::from(asn.0)),
            ("autonomous_system_organization", mmdb_writer::Value::from(table.organisation(asn).unwrap_or(""))),
        ]);
        writer.insert_range(first, last, &record).expect("insert");
    }
    writer.to_bytes().expect("mmdb")
}

/// `ADDRESSES` IPv6 addresses, each uniform within one of the IPv6 `ranges` picked at random
/// (uniform over the whole space would nearly always miss).
fn v6_within<T>(ranges: impl Iterator<Item = (IpAddr, IpAddr, T)>, rng: &mut Lcg) -> Vec<IpAddr> {
    let v6_ranges: Vec<(u128, u128)> = ranges
        .filter_map(|(first, last, _)| match (first, last) {
            (IpAddr::V6(f), IpAddr::V6(l)) => Some((u128::from(f), u128::from(l))),
            _ => None,
        })
        .collect();
    (0..ADDRESSES)
        .map(|_| {
            let (first, last) = v6_ranges[rng.next() as usize % v6_ranges.len()];
            let offset =
                ((u128::from(rng.next()) << 64) | u128::from(rng.next())) % (last - first).saturating_add(1).max(1);
            IpAddr::V6(Ipv6Addr::from(first + offset))
        })
        .collect()
}

/// ASN lookups on the embedded ASN table beside maxminddb on the same data.
fn asn_lookups(c: &mut Criterion) {
    let (table, _) = db::embedded().expect("embedded database");
    let (v4, _) = addresses(&table);
    let (asn, _) = db::embedded_asn().expect("embedded ASN table");
    let v6 = v6_within(asn.ranges(), &mut Lcg(7));
    let mmdb_bytes = asn_mmdb(&asn);
    let reader = maxminddb::Reader::from_source(&mmdb_bytes[..]).expect("mmdb reads");
    eprintln!(
        "asn table: {} IPv4 + {} IPv6 ranges, {:.1} MiB resident; mmdb {:.1} MiB",
        asn.range_counts().0,
        asn.range_counts().1,
        asn.memory_bytes() as f64 / 1048576.0,
        mmdb_bytes.len() as f64 / 1048576.0
    );
    for (family, addresses) in [("ipv4", &v4), ("ipv6", &v6)] {
        let mut group = c.benchmark_group(format!("asn_{family}"));
        group.throughput(Throughput::Elements(1));
        let mut i = 0;
        group.bench_function("geofence", |b| {
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(asn.lookup(*black_box(&addresses[i])))
            })
        });
        group.bench_function("maxminddb", |b| {
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                let result = reader.lookup(*black_box(&addresses[i])).expect("lookup");
                black_box(result.decode::<AsnOnly>().expect("decode").map(|r| r.autonomous_system_number))
            })
        });
        group.finish();
    }
}

fn lookups(c: &mut Criterion) {
    let (table, _) = db::embedded().expect("embedded database");
    let (v4, v6) = addresses(&table);
    let networks = networks(&table);
    let mut prefix_table = IpNetworkTable::new();
    for (network, country) in &networks {
        prefix_table.insert(*network, *country);
    }
    let mmdb_bytes = mmdb(&networks);
    let reader = maxminddb::Reader::from_source(&mmdb_bytes[..]).expect("mmdb reads");
    eprintln!(
        "table: {} IPv4 + {} IPv6 ranges, {:.1} MiB resident; {} CIDR networks; mmdb {:.1} MiB",
        table.range_counts().0,
        table.range_counts().1,
        table.memory_bytes() as f64 / 1048576.0,
        networks.len(),
        mmdb_bytes.len() as f64 / 1048576.0
    );

    for (family, addresses) in [("ipv4", &v4), ("ipv6", &v6)] {
        let mut group = c.benchmark_group(format!("lookup_{family}"));
        group.throughput(Throughput::Elements(1));
        let mut i = 0;
        group.bench_function("geofence", |b| {
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(table.lookup(*black_box(&addresses[i])))
            })
        });
        group.bench_function("maxminddb", |b| {
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                let result = reader.lookup(*black_box(&addresses[i])).expect("lookup");
                black_box(result.decode::<CountryOnly>().expect("decode").map(|r| r.country_code.len()))
            })
        });
        group.bench_function("ip_network_table", |b| {
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(prefix_table.longest_match(*black_box(&addresses[i])).map(|(_, c)| *c))
            })
        });
        group.finish();
    }

    let config = Config::parse(include_str!("../examples/asterisk.toml")).expect("config");
    let policy = config.policy.build(Arc::new(table.clone())).expect("policy");
    // The headers of one SIP packet per address, read in order as a queue's receive buffer is
    // (the prefetcher keeps them coming), each from a random source.
    let server = "192.0.2.1".parse().expect("address");
    let headers: Vec<u8> =
        v4.iter().flat_map(|source| sample::sip_options(*source, server)[..HEADERS].to_vec()).collect();
    let mut group = c.benchmark_group("decide");
    let mut i = 0;
    group.bench_function("bare_lookup", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(table.lookup(*black_box(&v4[i])))
        })
    });
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(geofence::packet::parse(black_box(&headers[i * HEADERS..(i + 1) * HEADERS])).is_ok())
        })
    });
    // The parts of a decision, for reading the total.
    let lan = geofence::prefix::built_in("rfc1918").expect("built in");
    group.bench_function("rfc1918_contains", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(lan.contains(*black_box(&v4[i])))
        })
    });
    // The same two, each waiting for the one before (the next input depends on the last
    // answer): latency rather than throughput, as one packet at a time is decided.
    group.bench_function("bare_lookup_chained", |b| {
        b.iter(|| {
            let found = table.lookup(*black_box(&v4[i]));
            i = (i + 1 + usize::from(found.is_some()) * black_box(0)) & (ADDRESSES - 1);
            found
        })
    });
    group.bench_function("asterisk_policy_chained", |b| {
        b.iter(|| {
            let verdict = policy.decide(&headers[i * HEADERS..(i + 1) * HEADERS]);
            i = (i + 1 + usize::from(verdict == geofence::Verdict::Drop) * black_box(0)) & (ADDRESSES - 1);
            verdict
        })
    });
    group.bench_function("asterisk_policy", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(policy.decide(black_box(&headers[i * HEADERS..(i + 1) * HEADERS])))
        })
    });
    // The same countries behind a rule that drops a hundred autonomous systems: every packet
    // needs both lookups, in the embedded ASN table.
    let asn = Arc::new(db::embedded_asn().expect("embedded ASN table").0);
    let hosting: Vec<String> = (1..=100).map(|n| (n * 37).to_string()).collect();
    let hosting_rule = format!(
        "[[rule]]\nname = \"hosting\"\nprotocol = \"udp\"\nports = [5060]\nasn = [{}]\naction = \"drop\"\n\n[[rule]]",
        hosting.join(", ")
    );
    let text = include_str!("../examples/asterisk.toml").replacen("[[rule]]", &hosting_rule, 1);
    let with_asn = Config::parse(&text)
        .expect("config")
        .policy
        .build_with_asn(Arc::new(table.clone()), Arc::clone(&asn))
        .expect("policy");
    group.bench_function("bare_asn_lookup", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(asn.lookup(*black_box(&v4[i])))
        })
    });
    group.bench_function("country_and_asn_policy", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(with_asn.decide(black_box(&headers[i * HEADERS..(i + 1) * HEADERS])))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("load");
    group.bench_function("embedded_compiled", |b| b.iter(|| black_box(db::embedded().expect("loads"))));
    group.finish();
}

/// A million networks, as a feed brings them: IPv4 /32s or IPv6 /64s, in random order or in
/// address order.
fn million(v6: bool, sequential: bool) -> Vec<IpNetwork> {
    let mut rng = Lcg(7);
    (0..1_000_000u64)
        .map(|n| {
            let x = if sequential { n * 3 } else { rng.next() };
            if v6 {
                let address = (0x2001_0db8u128 << 96) | (u128::from(x & 0xFFFF_FFFF) << 64);
                IpNetwork::new(Ipv6Addr::from(address), 64).expect("a /64")
            } else {
                IpNetwork::from(Ipv4Addr::from(0x0100_0000 + (x % 0xDF00_0000) as u32))
            }
        })
        .collect()
}

/// Building a list of a million networks, and membership in it beside rfc1918's.
fn lists(c: &mut Criterion) {
    let mut group = c.benchmark_group("list");
    group.sample_size(10);
    for (name, v6, sequential) in [
        ("build_1m_v4_random", false, false),
        ("build_1m_v4_sequential", false, true),
        ("build_1m_v6_random", true, false),
        ("build_1m_v6_sequential", true, true),
    ] {
        let networks = million(v6, sequential);
        // Dropping the list is left out: the daemon frees a replaced policy off the packet path.
        group.bench_function(name, |b| {
            b.iter_with_large_drop(|| networks.iter().copied().collect::<geofence::PrefixList>())
        });
    }
    let big: geofence::PrefixList = million(false, false).into_iter().collect();
    let lan = geofence::prefix::built_in("rfc1918").expect("built in");
    let mut rng = Lcg(9);
    let probes: Vec<IpAddr> =
        (0..ADDRESSES).map(|_| IpAddr::V4(Ipv4Addr::from(0x0100_0000 + (rng.next() % 0xDF00_0000) as u32))).collect();
    let mut i = 0;
    group.bench_function("contains_1m", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(big.contains(*black_box(&probes[i])))
        })
    });
    group.bench_function("contains_rfc1918", |b| {
        b.iter(|| {
            i = (i + 1) & (ADDRESSES - 1);
            black_box(lan.contains(*black_box(&probes[i])))
        })
    });
    group.finish();
}

/// SIP requests as the flood of ../shared/bench sends them: OPTIONS, REGISTER or INVITE, a
/// phone's User-Agent or, one in four, a scanner's, and a Request-URI naming the domain or,
/// half the time, the server's address: 440 to 520 bytes with their headers, each in a slot
/// of 576.
fn sip_datagrams(sources: &[IpAddr]) -> (Vec<u8>, usize) {
    const SIZE: usize = 576;
    let phones = ["Asterisk PBX 20.5.2", "Linphone-Desktop/5.2.4 (belle-sip/5.3.0)", "Yealink SIP-T46U 108.86.0.45"];
    let scanners = ["friendly-scanner", "sipvicious", "sipcli/v1.8", "VaxSIPUserAgent/3.1", "PortSIP VoIP SDK 11.2.1"];
    let server: IpAddr = "192.0.2.1".parse().expect("address");
    let mut rng = Lcg(7);
    let mut all = Vec::with_capacity(sources.len() * SIZE);
    let mut total = 0;
    for source in sources {
        let r = rng.next();
        let method = ["OPTIONS", "REGISTER", "INVITE"][(r % 3) as usize];
        let agent =
            if (r >> 4).is_multiple_of(4) { scanners[(r >> 8) as usize % 5] } else { phones[(r >> 8) as usize % 3] };
        let host = if (r >> 12).is_multiple_of(2) { "pbx.example.com" } else { "192.0.2.1" };
        let user = 100 + r % 900;
        let payload = format!(
            "{method} sip:{user}@{host} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK{r:08x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{host}>;tag={r:08x}\r\nTo: <sip:{user}@{host}>\r\n\
             Call-ID: {r:08x}@198.51.100.7\r\nCSeq: 1 {method}\r\nContact: <sip:{user}@198.51.100.7:5060>\r\n\
             User-Agent: {agent}\r\nAllow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n\
             Accept: application/sdp\r\nContent-Length: 0\r\n\r\n"
        );
        let mut packet = sample::udp_packet(*source, server, (5062, 5060), payload.as_bytes());
        assert!(packet.len() <= SIZE, "{} bytes", packet.len());
        total += packet.len();
        packet.resize(SIZE, 0);
        all.extend(packet);
    }
    eprintln!("sip: {} requests, {} bytes on average", sources.len(), total / sources.len().max(1));
    (all, SIZE)
}

/// Parsing and deciding a SIP request under the VoIP policy, beside the geography-only policy
/// on the same packets (which reads their headers alone) and the parser alone.
fn sip_decisions(c: &mut Criterion) {
    const SIP_PACKETS: usize = 4096;
    let (table, _) = db::embedded().expect("embedded database");
    let (v4, _) = addresses(&table);
    // A queue's copy of a burst is in cache when it is decided: 4,096 datagrams (2.3 MiB)
    // stand for that, where 65,536 would measure memory.
    let (packets, size) = sip_datagrams(&v4[..SIP_PACKETS]);
    let packet = |i: usize| &packets[i * size..(i + 1) * size];
    let build =
        |text: &str| Config::parse(text).expect("config").policy.build(Arc::new(table.clone())).expect("policy");
    let sip_policy = build(include_str!("../examples/voip-sip.toml"));
    let geography = build(include_str!("../examples/asterisk.toml"));
    let mut group = c.benchmark_group("sip");
    let mut i = 0;
    group.bench_function("parse_request", |b| {
        b.iter(|| {
            i = (i + 1) & (SIP_PACKETS - 1);
            let bytes = black_box(packet(i));
            black_box(geofence::sip::parse(&bytes[28..]).is_ok())
        })
    });
    group.bench_function("geography_policy", |b| {
        b.iter(|| {
            i = (i + 1) & (SIP_PACKETS - 1);
            black_box(geography.decide(black_box(packet(i))))
        })
    });
    group.bench_function("voip_sip_policy", |b| {
        b.iter(|| {
            i = (i + 1) & (SIP_PACKETS - 1);
            black_box(sip_policy.decide(black_box(packet(i))))
        })
    });
    group.finish();
}

criterion_group!(benches, lookups, asn_lookups, lists, sip_decisions);
criterion_main!(benches);
