use super::*;

const HOUR: u64 = 3_600_000;

fn book(max_entries: usize) -> BanBook {
    BanBook::new(BanLimits { max_entries, max_duration_ms: 8 * HOUR }, 11)
}

fn address(text: &str) -> IpNetwork {
    IpNetwork::from(text.parse::<IpAddr>().unwrap())
}

fn new_ban(book: &mut BanBook, network: IpNetwork, now_ms: u64) -> Ban {
    match book.ban(network, HOUR, now_ms) {
        Banned::New(ban) => ban,
        other => panic!("{network} at {now_ms}: {other:?}"),
    }
}

#[test]
fn a_repeat_offender_is_banned_twice_as_long_up_to_the_cap_then_forgiven() {
    let mut book = book(16);
    let source = address("198.51.100.7");
    let mut now = 0;
    let mut lengths = Vec::new();
    for _ in 0..6 {
        let ban = new_ban(&mut book, source, now);
        lengths.push((ban.offences, ban.duration_ms.div_ceil(HOUR / 10)));
        now += ban.duration_ms;
    }
    // In tenths of an hour, rounded up: 9 or 10 (an hour less up to 10%), then 2, 4, 8, 8, 8 hours.
    let expected = [(1, 10), (2, 20), (3, 40), (4, 80), (5, 80), (6, 80)];
    for ((offences, tenths), (want_offences, most)) in lengths.iter().zip(expected) {
        assert_eq!(*offences, want_offences);
        assert!((most * 9 / 10..=most).contains(tenths), "offence {offences}: {tenths} tenths of an hour");
    }
    // A clean spell as long as the cap (8 hours) after the last ban: a first offence again.
    let forgiven = new_ban(&mut book, source, now + 8 * HOUR);
    assert_eq!(forgiven.offences, 1);
    assert!(forgiven.duration_ms <= HOUR);
}

#[test]
fn bans_given_together_end_apart_and_the_key_decides_when() {
    let ends = |key| {
        let mut book = BanBook::new(BanLimits { max_entries: 4096, max_duration_ms: 8 * HOUR }, key);
        (0..1000u32)
            .map(|n| match book.ban(IpNetwork::from(IpAddr::from([203, 0, 113, n as u8])), HOUR, 0) {
                Banned::New(ban) => ban.duration_ms,
                Banned::Already => u64::MAX,
                Banned::Full => panic!("full"),
            })
            .filter(|ms| *ms != u64::MAX)
            .collect::<Vec<_>>()
    };
    let (one, other) = (ends(1), ends(2));
    assert_eq!(one.len(), 256, "the other 744 were banned already");
    assert!(one.iter().all(|ms| (HOUR * 9 / 10..=HOUR).contains(ms)));
    let distinct = one.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct > 200, "{distinct} distinct ends of 256");
    let spread = one.iter().max().unwrap() - one.iter().min().unwrap();
    assert!(spread > HOUR / 20, "ends spread over {spread} ms");
    assert_ne!(one, other, "another key, other ends");
}

#[test]
fn a_full_book_refuses_and_counts_until_bans_end_and_scans_at_most_once_a_second() {
    let mut book = book(4);
    for n in 1..=4 {
        new_ban(&mut book, address(&format!("192.0.2.{n}")), 0);
    }
    let fifth = address("192.0.2.5");
    assert_eq!(book.ban(fifth, HOUR, 10), Banned::Full);
    assert_eq!(book.ban(fifth, HOUR, 20), Banned::Full);
    assert_eq!(book.refused(), 2);
    assert_eq!(book.len(), 4);
    assert_eq!(book.ban(address("192.0.2.1"), HOUR, 30), Banned::Already, "a running ban is no new entry");
    // Every ban has ended at 2 hours, but the last scan was at 10 ms: the next may be a second on.
    let later = 2 * HOUR;
    new_ban(&mut book, fifth, later);
    assert_eq!(book.len(), 1, "the ended bans made room and were forgotten");
    for n in 6..=8 {
        new_ban(&mut book, address(&format!("192.0.2.{n}")), later);
    }
    assert_eq!(book.ban(address("192.0.2.9"), HOUR, later + 999), Banned::Full, "no second scan within a second");
}

#[test]
fn a_spec_bans_the_source_or_its_network_and_a_mapped_source_as_ipv4() {
    let single = BanSpec { duration_ms: HOUR, prefix_v4: 32, prefix_v6: 128 };
    let wide = BanSpec { duration_ms: HOUR, prefix_v4: 24, prefix_v6: 64 };
    let of = |spec: BanSpec, source: &str| spec.network_of(source.parse().unwrap()).to_string();
    assert_eq!(of(single, "198.51.100.77"), "198.51.100.77/32");
    assert_eq!(of(wide, "198.51.100.77"), "198.51.100.0/24");
    assert_eq!(of(wide, "2001:db8:5:6:7::1"), "2001:db8:5:6::/64");
    assert_eq!(of(single, "::ffff:198.51.100.77"), "198.51.100.77/32");
    assert_eq!(single.to_string(), "ban 1h");
    assert_eq!(BanSpec { duration_ms: 90_000, ..wide }.to_string(), "ban 90s /24 /64");
}

#[test]
fn restored_bans_keep_their_time_left_and_their_offences() {
    let mut book = book(16);
    let network = address("2001:db8::66");
    assert!(book.restore(Record { network, remaining_ms: 1000, length_ms: 2 * HOUR, offences: 3 }, 5000));
    assert_eq!(book.running(5400).collect::<Vec<_>>(), [Ban { network, duration_ms: 600, offences: 3 }]);
    assert_eq!(book.ban(network, HOUR, 5500), Banned::Already);
    assert_eq!(book.running(6000).count(), 0, "ended");
    let again = new_ban(&mut book, network, 6000);
    assert_eq!(again.offences, 4, "and remembered");
    assert!(again.duration_ms > 3 * HOUR, "twice the saved length: {} ms", again.duration_ms);
    assert!(book.unban(network));
    assert_eq!(new_ban(&mut book, network, 6001).offences, 1, "unbanned: forgotten");
    new_ban(&mut book, address("198.51.100.7"), 6001);
    assert_eq!(book.clear(), 2);
    assert_eq!((book.running(6002).count(), book.records(6002).count()), (0, 0), "cleared: nothing to restore");
    assert_eq!(new_ban(&mut book, network, 6003).offences, 1);
}

#[test]
fn a_saved_book_reads_back_what_it_remembers_and_a_damaged_one_is_refused_at_its_line() {
    let mut book = book(16);
    new_ban(&mut book, address("2001:db8::1"), 0);
    new_ban(&mut book, address("198.51.100.7"), HOUR);
    // The first ban has ended (it is remembered); the second has 53 to 59 minutes left.
    let now = HOUR + 1000;
    assert_eq!(book.running(now).count(), 1);
    let saved = write_records(book.records(now), 1_000_000_000);
    let records = read_records(&saved, 1_000_000_000).unwrap();
    assert_eq!(records, book.records(now).collect::<Vec<_>>());
    assert_eq!(records.len(), 2);
    // A restart 10 minutes later, into a fresh book: the bans have 10 minutes less left.
    let mut restarted = BanBook::new(BanLimits { max_entries: 16, max_duration_ms: 8 * HOUR }, 3);
    for record in read_records(&saved, 1_000_000_000 + 600_000).unwrap() {
        assert!(restarted.restore(record, 0));
    }
    let left: Vec<u64> = restarted.running(0).map(|ban| ban.duration_ms).collect();
    let before: Vec<u64> = book.running(now).map(|ban| ban.duration_ms.saturating_sub(600_000)).collect();
    assert_eq!(left, before.into_iter().filter(|ms| *ms > 0).collect::<Vec<_>>());
    assert_eq!(left.len(), 1);
    assert_eq!(restarted.records(0).count(), 2, "the ended ban's offence is remembered too");
    for (text, line, problem) in [
        ("# c\n192.0.2.0/24 1 2\n", 2, "expected a network, the ban's end, its length and the offences"),
        ("192.0.2.1/24 1 2 3\n", 1, "not a network"),
        ("\n\n192.0.2.0/24 1 x 3\n", 3, "not a whole number"),
        ("192.0.2.0/24 1 2 99999999999\n", 1, "too many offences"),
    ] {
        assert_eq!(read_records(text, 0), Err(SavedError { line, problem: problem.into() }), "{text:?}");
    }
}
