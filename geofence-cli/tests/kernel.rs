//! Real packets through the real kernel: `geofence run` serves an NFQUEUE in a throw-away
//! namespace pair, the client namespace sends SIP from documentation-range sources, and the tests
//! assert on what the server actually receives and on the kernel's own counters.
//!
//! They need root, iproute2 and iptables; elsewhere they skip with a message (in CI they fail).

mod support;

use support::{config, kernel_tests_possible, Geofence, NetnsPair, SERVER_V4, SERVER_V6};

const QUEUE_SIP_V4: &str = "-A INPUT -p udp --dport 5060 -j NFQUEUE --queue-num 0";
const QUEUE_SIP_V6: &str = QUEUE_SIP_V4;
const COUNT_SIP: &str = "-t security -A INPUT -p udp --dport 5060";

fn asterisk() -> String {
    include_str!("../data/asterisk.toml").to_owned()
}

#[test]
fn policy_verdicts_are_what_the_server_receives_ipv4_and_ipv6() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let accepted = ["10.9.9.9", "192.0.2.10", "192.0.2.200", "203.0.113.130", "2001:db8:1::10"];
    let dropped = ["198.51.100.23", "203.0.113.5", "203.0.113.200", "2001:db8:2::10", "2001:db8:3::10"];
    pair.add_sources(&accepted);
    pair.add_sources(&dropped);
    pair.iptables(false, &[QUEUE_SIP_V4]);
    pair.iptables(true, &[QUEUE_SIP_V6]);
    let (_dir, path) = config(&asterisk());
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);

    pair.send_sip(&accepted, 3);
    pair.send_sip(&dropped, 3);
    for source in accepted {
        assert_eq!(server.count(source), 3, "{source} is allowed");
    }
    for source in dropped {
        assert_eq!(server.count(source), 0, "{source} is blocked");
    }
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(Geofence::verdicts(&stdout), 30, "{stderr}");
}

#[test]
fn accept_with_mark_sets_the_mark_later_rules_see() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (gb, cn) = ("192.0.2.10", "198.51.100.23");
    pair.add_sources(&[gb, cn]);
    pair.iptables(false, &[QUEUE_SIP_V4, "-t security -A INPUT -m mark --mark 0x10/0x10", COUNT_SIP]);
    let (_dir, path) =
        config("default = \"accept\"\n[[rule]]\nname = \"gb\"\ncountry = [\"GB\"]\naction = \"accept\"\nmark = 0x10\n");
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    pair.send_sip(&[gb, cn], 5);
    assert_eq!((server.count(gb), server.count(cn)), (5, 5));
    assert_eq!(pair.counter(false, "security", "mark match 0x10/0x10"), 5);
    assert_eq!(pair.counter(false, "security", "dpt:5060"), 10, "both pass; only GB's packets carry the mark");
    assert!(geofence.stop().0);
}

/// IPv4 carrying 4 bytes of a UDP header: the kernel queues it, geofence cannot parse it.
fn truncated_udp_v4(source: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0x45, 0, 0, 24, 0, 0, 0, 0, 64, 17, 0, 0];
    packet.extend(source);
    packet.extend([192, 0, 2, 1]);
    packet.extend([0x13, 0xc4, 0x13, 0xc4]);
    packet
}

fn truncated_udp_v6() -> Vec<u8> {
    let mut packet = vec![0x60, 0, 0, 0, 0, 4, 17, 64];
    packet.extend("2001:db8:1::10".parse::<std::net::Ipv6Addr>().unwrap().octets());
    packet.extend(SERVER_V6.parse::<std::net::Ipv6Addr>().unwrap().octets());
    packet.extend([0x13, 0xc4, 0x13, 0xc4]);
    packet
}

#[test]
fn unparsable_packets_get_the_configured_verdict() {
    if !kernel_tests_possible() {
        return;
    }
    for (malformed, default, expected) in [("accept", "drop", 20), ("drop", "accept", 10)] {
        let pair = NetnsPair::new();
        let gb = "192.0.2.10";
        pair.add_sources(&[gb, "2001:db8:1::10"]);
        let queue_udp = "-A INPUT -p udp -j NFQUEUE --queue-num 0";
        let count_udp = "-t security -A INPUT -p udp -m comment --comment passed";
        pair.iptables(false, &[queue_udp, count_udp]);
        pair.iptables(true, &[queue_udp, count_udp]);
        let (_dir, path) = config(&format!("default = \"{default}\"\nmalformed = \"{malformed}\"\n"));
        let geofence = pair.start_geofence(&path, 0);
        let mut damaged = vec![truncated_udp_v4([192, 0, 2, 10]); 10];
        damaged.extend(vec![truncated_udp_v6(); 10]);
        pair.send_raw(damaged);
        pair.send_sip(&[gb], 10);
        let passed = pair.counter(false, "security", "passed") + pair.counter(true, "security", "passed");
        assert_eq!(passed, expected, "malformed {malformed}, default {default}");
        let (ok, stdout, _) = geofence.stop();
        assert!(ok);
        assert_eq!(Geofence::verdicts(&stdout), 30);
    }
}

#[test]
fn queue_bypass_decides_what_happens_while_geofence_is_stopped() {
    if !kernel_tests_possible() {
        return;
    }
    for (bypass, expected) in [(" --queue-bypass", 4), ("", 2)] {
        let pair = NetnsPair::new();
        let gb = "192.0.2.10";
        pair.add_sources(&[gb]);
        pair.iptables(false, &[&format!("{QUEUE_SIP_V4}{bypass}")]);
        let (_dir, path) = config(&asterisk());
        let server = pair.udp_server();
        let geofence = pair.start_geofence(&path, 0);
        pair.send_sip(&[gb], 2);
        assert_eq!(server.count(gb), 2, "running, an allowed source passes");
        assert!(geofence.stop().0);
        pair.send_sip(&[gb], 2);
        assert_eq!(server.count(gb), expected, "stopped, rule{bypass}");
    }
}

/// Floods `count` SIP datagrams from one allowed source into a fail-closed queue of 8 packets.
fn flood_small_queue(count: usize) -> (u64, u64, u64, (u64, u64, u64, u64)) {
    let pair = NetnsPair::new();
    let gb = "192.0.2.10";
    pair.add_sources(&[gb]);
    pair.iptables(false, &[QUEUE_SIP_V4, COUNT_SIP]);
    let (_dir, path) = config(&format!("queue_length = 8\n{}", asterisk()));
    let geofence = pair.start_geofence(&path, 0);
    pair.send_sip(&[gb], count);
    let kernel = pair.queue_stats(0).expect("queue bound");
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    let queued = pair.counter(false, "filter", "NFQUEUE");
    (queued, pair.counter(false, "security", "dpt:5060"), Geofence::verdicts(&stdout), kernel)
}

/// `count` SIP OPTIONS from `source` to the server, each from its own source port: a new flow
/// each, so the printed rules queue every one.
fn sip_flows_v4(source: std::net::Ipv4Addr, count: usize) -> Vec<Vec<u8>> {
    let packet = geofence_core::sample::sip_options(source.into(), SERVER_V4.parse().unwrap());
    (0..count)
        .map(|n| {
            let mut flow = packet.clone();
            flow[20..22].copy_from_slice(&(1024 + (n % 60_000) as u16).to_be_bytes());
            // An IPv4 UDP checksum of 0 means none, so the changed port needs no new sum.
            flow[26..28].copy_from_slice(&[0, 0]);
            flow
        })
        .collect()
}

/// With fail-open, the datagrams a SIP rule's verdict accepts one by one carry no flow mark;
/// the examined mark tells the counting rule that geofence decided them, so nothing is counted
/// as unexamined that was not.
#[test]
fn with_fail_open_what_sip_rules_accept_one_by_one_is_not_counted_as_unexamined() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let gb = "192.0.2.10";
    pair.add_sources(&[gb]);
    let (_dir, path) = config(
        "fail_open = true\nhashlimit_rate = 0\ndefault = \"accept\"\n\
         [[rule]]\nname = \"scanners\"\nprotocol = \"udp\"\nports = [5060]\nuser_agent = [\"@scanners\"]\naction = \"drop\"\n\
         [[rule]]\nname = \"gb\"\nprotocol = \"udp\"\nports = [5060]\ncountry = [\"GB\"]\naction = \"accept\"\n",
    );
    pair.install_rules(&path);
    let geofence = pair.start_geofence(&path, 0);
    pair.send_raw(sip_flows_v4(gb.parse().unwrap(), 10));
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    let unexamined = pair.counter(false, "security", "geofence-unexamined");
    assert_eq!((Geofence::verdicts(&stdout), unexamined), (10, 0), "{stderr}");
    assert!(stderr.contains("gb"), "{stderr}");
}

#[test]
fn fail_open_passes_a_flood_a_small_queue_cannot_hold_and_the_rules_count_it() {
    if !kernel_tests_possible() {
        return;
    }
    let sent = 20_000;
    let pair = NetnsPair::new();
    let gb = "192.0.2.10";
    pair.add_sources(&[gb]);
    let (_dir, path) = config(&format!("fail_open = true\nqueue_length = 8\nhashlimit_rate = 0\n{}", asterisk()));
    pair.install_rules(&path);
    pair.iptables(false, &["-t security -A INPUT -p udp --dport 5060 -m comment --comment passed"]);
    let geofence = pair.start_geofence(&path, 0);
    pair.send_raw(sip_flows_v4(gb.parse().unwrap(), sent));
    let (_, queue_dropped, user_dropped, id_sequence) = pair.queue_stats(0).expect("queue bound");
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    let verdicts = Geofence::verdicts(&stdout);
    let (queued, passed) = (pair.counter(false, "filter", "NFQUEUE"), pair.counter(false, "security", "passed"));
    let unexamined = pair.counter(false, "security", "geofence-unexamined");
    assert_eq!(queued, sent as u64);
    assert!(verdicts < queued, "the queue overflowed: {verdicts} verdicts for {queued} packets");
    assert_eq!(passed, queued, "fail-open let every packet through, decided or not");
    // The queue's own counters say nothing of what fail-open let pass; the printed rule does.
    assert_eq!((queue_dropped, user_dropped, id_sequence), (0, 0, verdicts));
    assert_eq!(unexamined, queued - verdicts, "every packet geofence did not decide is counted");
    assert!(stderr.contains("geofence-unexamined"), "the exit report says where to look: {stderr}");
}

#[test]
fn without_fail_open_a_flood_is_dropped_and_counted() {
    if !kernel_tests_possible() {
        return;
    }
    let sent = 20_000;
    let (queued, passed, verdicts, (waiting, queue_dropped, user_dropped, _)) = flood_small_queue(sent);
    assert_eq!(queued, sent as u64);
    assert_eq!(waiting, 0);
    assert!(queue_dropped > 0, "the queue overflowed");
    assert_eq!(verdicts + queue_dropped + user_dropped, queued, "every packet is decided or counted as lost");
    assert_eq!(passed, verdicts, "the policy accepts this source; what was lost did not pass");
}

/// Deterministic pseudo-random bytes, so a failing flood can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn hostile_packets(count: usize) -> Vec<Vec<u8>> {
    let mut rng = Lcg(0x5eed);
    let source6 = "2001:db8:1::10".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let server6 = SERVER_V6.parse::<std::net::Ipv6Addr>().unwrap().octets();
    (0..count)
        .map(|i| match i % 4 {
            // IPv4, random protocol, random (often truncated) transport bytes.
            0 => {
                let length = usize::from(rng.next() % 24);
                let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, rng.next(), 0, 0, 192, 0, 2, 10, 192, 0, 2, 1];
                p.extend(rng.bytes(length));
                p
            }
            // IPv4 with random options (ihl 6..15) and a truncated transport header.
            1 => {
                let ihl = 6 + rng.next() % 10;
                let mut p = vec![0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, 64, [6, 17, 132, 136][i % 4], 0, 0];
                p.extend([192, 0, 2, 10, 192, 0, 2, 1]);
                p.extend(vec![1u8; usize::from(ihl - 5) * 4]);
                let length = usize::from(rng.next() % 8);
                p.extend(rng.bytes(length));
                p
            }
            // IPv6 with a chain of destination-options/routing headers of random lengths.
            2 => {
                let body = {
                    let mut chain = Vec::new();
                    for _ in 0..(1 + rng.next() % 4) {
                        chain.push([60, 43, 44, 51][usize::from(rng.next() % 4)]);
                        chain.push(rng.next());
                        chain.extend(rng.bytes(6));
                    }
                    chain
                };
                let mut p = vec![0x60, 0, 0, 0];
                p.extend((body.len() as u16).to_be_bytes());
                p.extend([60, 64]);
                p.extend(source6);
                p.extend(server6);
                p.extend(body);
                p
            }
            // IPv6 with random payload under a random next header.
            _ => {
                let length = usize::from(rng.next() % 40);
                let body = rng.bytes(length);
                let mut p = vec![0x60, 0, 0, 0];
                p.extend((body.len() as u16).to_be_bytes());
                p.extend([rng.next(), 64]);
                p.extend(source6);
                p.extend(server6);
                p.extend(body);
                p
            }
        })
        .collect()
}

#[test]
fn a_flood_of_malformed_packets_crashes_nothing_and_each_gets_one_verdict() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let gb = "192.0.2.10";
    pair.add_sources(&[gb, "2001:db8:1::10"]);
    pair.iptables(false, &[&format!("-A INPUT -d {SERVER_V4} -j NFQUEUE --queue-num 0")]);
    pair.iptables(true, &[&format!("-A INPUT -d {SERVER_V6} -j NFQUEUE --queue-num 0")]);
    let (_dir, path) = config(&asterisk());
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    pair.send_raw(hostile_packets(4000));
    pair.send_sip(&[gb], 3);
    assert_eq!(server.count(gb), 3, "still deciding after the flood");
    let (waiting, queue_dropped, user_dropped, _) = pair.queue_stats(0).expect("still bound");
    assert_eq!((waiting, queue_dropped, user_dropped), (0, 0, 0));
    let queued = pair.counter(false, "filter", "NFQUEUE") + pair.counter(true, "filter", "NFQUEUE");
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(queued > 3000, "most hostile packets reached the queue: {queued}");
    assert_eq!(Geofence::verdicts(&stdout), queued);
}

#[test]
fn a_panicking_handler_gets_the_fallback_verdict_for_its_packet() {
    if !kernel_tests_possible() {
        return;
    }
    use geofence_core::{packet, Verdict};
    use geofence_nfq::{from_fn, Queue, QueueConfig, Stop};
    use std::sync::atomic::Ordering;

    let pair = NetnsPair::new();
    let (gb, cn) = ("192.0.2.10", "198.51.100.23");
    pair.add_sources(&[gb, cn]);
    pair.iptables(false, &[QUEUE_SIP_V4]);
    let server = pair.udp_server();
    let stop = Stop::new();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let worker_stop = stop.clone();
    let worker = NetnsPair::within(&pair.server, move || {
        let mut config = QueueConfig::new(0);
        config.fallback = Verdict::Accept;
        let queue = Queue::bind(config).expect("bind");
        let counters = queue.counters();
        bound_tx.send(()).unwrap();
        // Panics on CN's packets, drops everything else. A packet queued on INPUT comes from
        // the LOCAL_IN hook (1) through an interface; were either not read, the assertion would
        // panic for GB's packets too, and their fallback would let them through.
        let cn: std::net::IpAddr = "198.51.100.23".parse().unwrap();
        queue
            .run(
                from_fn(|packet| {
                    assert!(packet.hook == 1 && packet.in_interface.is_some(), "{packet:?}");
                    let meta = packet::parse(packet.payload).unwrap();
                    assert_ne!(meta.source, cn, "deliberate panic");
                    Verdict::Drop
                }),
                &worker_stop,
            )
            .unwrap();
        counters
    });
    bound_rx.recv().unwrap();
    pair.send_sip(&[gb, cn], 4);
    // Each panic prints a symbolised backtrace when RUST_BACKTRACE is set, which on a busy
    // machine outlasts the usual settling time.
    let cn_received = server.count_within(cn, 4);
    assert_eq!((server.count(gb), cn_received), (0, 4), "GB dropped; CN's panics fell back to accept");
    stop.stop();
    let counters = worker.join().unwrap();
    assert_eq!(counters.handler_panics.load(Ordering::Relaxed), 4);
    assert_eq!(counters.packets.load(Ordering::Relaxed), 8);
}

#[test]
fn a_queue_bound_twice_is_refused_with_a_clear_error() {
    if !kernel_tests_possible() {
        return;
    }
    use geofence_nfq::{NfqError, Queue, QueueConfig};
    let pair = NetnsPair::new();
    let outcome = NetnsPair::within(&pair.server, || {
        let _first = Queue::bind(QueueConfig::new(7)).expect("first bind");
        match Queue::bind(QueueConfig::new(7)) {
            Err(error @ NfqError::QueueBusy { queue: 7 }) => error.to_string(),
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => panic!("queue 7 bound twice"),
        }
    })
    .join()
    .unwrap();
    assert_eq!(
        outcome,
        "netfilter queue 7 is already bound by another process: stop it, or choose another queue number"
    );
}

#[test]
fn a_queue_range_is_served_by_one_thread_a_queue() {
    if !kernel_tests_possible() {
        return;
    }
    use geofence_core::Verdict;
    use geofence_nfq::{bind_queues, from_fn, run_queues, QueueConfig, Stop};
    use std::sync::atomic::Ordering;

    let pair = NetnsPair::new();
    let sources: Vec<String> = (10..30).map(|host| format!("192.0.2.{host}")).collect();
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    pair.add_sources(&sources);
    pair.iptables(false, &["-A INPUT -p udp --dport 5060 -j NFQUEUE --queue-balance 0:1"]);
    let server = pair.udp_server();
    let stop = Stop::new();
    let worker_stop = stop.clone();
    let worker = NetnsPair::within(&pair.server, move || {
        let queues = bind_queues(vec![QueueConfig::new(0), QueueConfig::new(1)])?;
        run_queues(queues, |_| from_fn(|_| Verdict::Accept), &worker_stop)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pair.queue_stats(0).is_none() || pair.queue_stats(1).is_none() {
        assert!(std::time::Instant::now() < deadline, "both queues bound");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    pair.send_sip(&sources, 2);
    for source in &sources {
        assert_eq!(server.count(source), 2, "{source}");
    }
    stop.stop();
    let reports = worker.join().unwrap().expect("both queues ran");
    let per_queue: Vec<u64> = reports.iter().map(|r| r.counters.packets.load(Ordering::Relaxed)).collect();
    assert_eq!(per_queue.iter().sum::<u64>(), 40);
    assert!(per_queue.iter().all(|n| *n > 0), "flows spread over both queues: {per_queue:?}");
}

/// The asterisk policy with the rules `geofence rules` prints, and a short summary interval.
fn asterisk_with(extra: &str) -> String {
    format!("{extra}\n{}", asterisk())
}

#[test]
fn the_printed_rules_queue_only_new_flows_and_keep_accepted_flows_in_the_kernel() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (gb, cn, gb6) = ("192.0.2.10", "198.51.100.23", "2001:db8:1::10");
    pair.add_sources(&[gb, cn, gb6]);
    let (_dir, path) = config(&asterisk());
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    pair.send_flow(gb, 5);
    pair.send_flow(gb6, 5);
    pair.send_flow(cn, 4);
    assert_eq!((server.count(gb), server.count(gb6), server.count(cn)), (5, 5, 0));
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    // GB's flows: only the first packet each was queued; CN's flow stays new, so each packet was.
    assert_eq!(Geofence::verdicts(&stdout), 1 + 1 + 4, "{stderr}");
    assert_eq!(pair.counter(false, "filter", "connmark match"), 4);
    assert_eq!(pair.counter(true, "filter", "connmark match"), 4);
}

#[test]
fn the_hashlimit_drops_a_source_s_burst_ahead_of_the_queue() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let cn = "198.51.100.23";
    pair.add_sources(&[cn]);
    let (_dir, path) = config(&asterisk());
    pair.install_rules(&path);
    let geofence = pair.start_geofence(&path, 0);
    pair.send_flow(cn, 30);
    let (ok, stdout, _) = geofence.stop();
    assert!(ok);
    let verdicts = Geofence::verdicts(&stdout);
    // Burst 5, then 2 a second: sent within a moment, 5 pass (6 if a token refilled meanwhile).
    assert!((5..=6).contains(&verdicts), "{verdicts} packets reached the queue");
    assert_eq!(pair.counter(false, "filter", "limit: above"), 30 - verdicts);
}

#[test]
fn sighup_swaps_the_policy_under_traffic_without_losing_a_packet_and_refuses_a_bad_one() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (gb, cn) = ("192.0.2.10", "198.51.100.23");
    pair.add_sources(&[gb, cn]);
    let no_shortcuts = "hashlimit_rate = 0\nflow_mark = 0";
    let (dir, path) = config(&asterisk_with(no_shortcuts));
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);

    // Traffic from both sources all along; three reloads of the same policy in the middle.
    let traffic = pair.steady_sip(&[gb, cn], std::time::Duration::from_micros(200));
    for _ in 0..3 {
        geofence.signal(nix::sys::signal::Signal::SIGHUP);
    }
    let sent = traffic.stop();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.count(cn), 0, "CN stays blocked through the reloads");
    assert_eq!(server.count(gb), sent, "every GB packet got through");

    // Now allow CN: new flows from CN pass.
    let allow_cn = asterisk_with(no_shortcuts).replace("\"GB\", \"US\"", "\"CN\", \"US\"");
    std::fs::write(&path, format!("database = {:?}\n{allow_cn}", support_fixture())).unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    pair.send_sip(&[cn, gb], 2);
    assert_eq!((server.count(cn), server.count(gb) - sent), (2, 0), "the new policy decides");

    // A broken config is refused; the policy in force stays.
    std::fs::write(&path, "default = \"sometimes\"\n").unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    pair.send_sip(&[cn], 2);
    assert_eq!(server.count(cn), 4, "still the reloaded policy");
    drop(dir);

    let queued = pair.counter(false, "filter", "NFQUEUE");
    let kernel = pair.queue_stats(0).unwrap();
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(Geofence::verdicts(&stdout), queued, "every queued packet got its verdict");
    assert_eq!((kernel.1, kernel.2), (0, 0), "the kernel dropped nothing");
    assert_eq!(stderr.matches("reloaded").count(), 4, "{stderr}");
    assert!(stderr.contains("reload refused, the running policy stays"), "{stderr}");
    assert!(stderr.contains("unknown action `sometimes`"), "{stderr}");
}

fn support_fixture() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/countries.csv")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn sigusr1_reports_counters_summaries_name_the_droppers_and_only_cap_net_admin_is_kept() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (gb, cn) = ("192.0.2.10", "198.51.100.23");
    pair.add_sources(&[gb, cn]);
    // A port below 1024 needs CAP_NET_BIND_SERVICE, which geofence drops once the queue is
    // bound: the metrics socket must be bound before.
    let (_dir, path) = config(&asterisk_with("summary_seconds = 1\nmetrics = \"127.0.0.1:999\""));
    pair.iptables(false, &[QUEUE_SIP_V4]);
    let geofence = pair.start_geofence(&path, 0);
    pair.send_sip(&[gb], 2);
    pair.send_sip(&[cn], 3);

    let status = std::fs::read_to_string(format!("/proc/{}/status", geofence.pid())).unwrap();
    let effective = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert_eq!(effective.split_whitespace().nth(1), Some("0000000000001000"), "only CAP_NET_ADMIN");

    let metrics = NetnsPair::within(&pair.server, || {
        let mut stream = std::net::TcpStream::connect("127.0.0.1:999").unwrap();
        std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut stream, &mut body).unwrap();
        body
    })
    .join()
    .unwrap();
    assert!(metrics.contains("geofence_packets_total{verdict=\"drop\"} 3"), "{metrics}");
    assert!(metrics.contains("geofence_country_packets_total{country=\"GB\",verdict=\"accept\"} 2"), "{metrics}");

    geofence.signal(nix::sys::signal::Signal::SIGUSR1);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    let counters: Vec<&str> = stderr.lines().filter(|l| l.contains("counters:")).collect();
    assert_eq!(counters.len(), 2, "one for SIGUSR1, one at exit: {stderr}");
    assert!(
        counters[0].ends_with("counters: 2 accepted, 0 accepted with a mark, 3 dropped, 0 unparsable"),
        "{}",
        counters[0]
    );
    assert!(stderr.contains("per country (accepted/dropped): CN 0/3, GB 2/0"), "{stderr}");
    assert!(stderr.contains("per rule: allowed-countries 2, everyone-else 3"), "{stderr}");
    assert!(
        stderr.contains("dropped 3 packets from 1 sources in CN in the last 1 s; top sources: 198.51.100.23 (CN) 3"),
        "{stderr}"
    );
}

#[test]
fn the_demo_shows_who_got_through_and_leaves_nothing_behind() {
    if !kernel_tests_possible() {
        return;
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_geofence")).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for (source, verdict, got) in [
        ("10.9.9.9", "accept", "the OPTIONS"),
        ("192.0.2.10", "accept", "the OPTIONS"),
        ("198.51.100.23", "drop", "nothing"),
        ("203.0.113.200", "drop", "nothing"),
        ("2001:db8:1::10", "accept", "the OPTIONS"),
        ("2001:db8:2::10", "drop", "nothing"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{source} ")))
            .unwrap_or_else(|| panic!("{source}: {stdout}"));
        assert!(line.contains(&format!(" {verdict} ")) && line.ends_with(got), "{line}");
    }
    assert!(stdout.contains("counters: 6 accepted, 0 accepted with a mark, 6 dropped, 0 unparsable"), "{stdout}");
    let ban = stdout.split("a scanner in an allowed country (192.0.2.150, US)").nth(1).expect("the ban scene");
    let lines: Vec<&str> = ban.lines().skip(1).take(3).collect();
    assert!(lines[0].ends_with("the server got one OPTIONS"), "{ban}");
    assert!(lines[1].contains("banned 192.0.2.150/32 for ") && lines[1].ends_with("rule honeypot)"), "{ban}");
    assert!(lines[2].contains("the server got one OPTIONS in all; the queue saw 0 more"), "{ban}");
    assert!(stdout.contains("bans: 1 written"), "{stdout}");
    let left = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    let remaining = String::from_utf8_lossy(&left.stdout).lines().filter(|l| l.starts_with("geofence-demo-")).count();
    assert_eq!(remaining, 0, "the demo removed its namespaces");
}

/// A policy whose list `big` holds `networks` IPv6 /64s, none adjacent to another (so none
/// merge): slow to build when large.
fn with_big_list(networks: u32) -> String {
    let list: Vec<String> =
        (0..networks).map(|n| format!("\"2001:db8:{:x}:{:x}::/64\"", n >> 15, (n & 0x7fff) * 2)).collect();
    format!(
        "default = \"accept\"\n[lists]\nbig = [{}]\n[[rule]]\nname = \"big\"\nsource = [\"big\"]\naction = \"drop\"\n",
        list.join(", ")
    )
}

#[test]
fn sigterm_is_prompt_while_a_slow_reload_runs() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (_dir, path) = config(&with_big_list(1));
    let geofence = pair.start_geofence(&path, 0);
    // A list this long takes seconds to build (longer in a debug build): the reload is still
    // running when SIGTERM comes.
    std::fs::write(&path, with_big_list(300_000)).unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    let asked = std::time::Instant::now();
    let (ok, stdout, stderr) = geofence.stop();
    let took = asked.elapsed();
    assert!(ok, "{stderr}");
    assert!(took < std::time::Duration::from_secs(2), "SIGTERM waited {took:?} for the reload");
    assert!(!stderr.contains("reloaded"), "the reload was meant to be still running: {stderr}");
    assert_eq!(Geofence::verdicts(&stdout), 0);
}

#[test]
fn a_reload_that_may_not_read_its_file_says_why() {
    if !kernel_tests_possible() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let pair = NetnsPair::new();
    let (_dir, path) = config(&asterisk());
    let geofence = pair.start_geofence(&path, 0);
    // Read at start with every capability; by the reload only CAP_NET_ADMIN is left, which
    // does not pass over another owner's file mode.
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("reload refused, the running policy stays: cannot read"), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains("make root the file's owner, or let others read it"), "{stderr}");
}

#[test]
fn a_reload_whose_database_shrank_by_more_than_half_is_refused_unless_allowed() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let dir = tempfile::tempdir().unwrap();
    let (database, path) = (dir.path().join("countries.csv"), dir.path().join("geofence.toml"));
    std::fs::copy(support_fixture(), &database).unwrap();
    std::fs::write(&path, format!("database = \"countries.csv\"\n{}", asterisk())).unwrap();
    let geofence = pair.start_geofence(&path, 0);
    // The fixture's 8 ranges become 1: a cut or wrong download, as far as geofence can tell.
    std::fs::write(&database, "192.0.2.0,192.0.2.255,GB\n").unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    std::fs::write(&path, format!("database = \"countries.csv\"\ndatabase_may_shrink = true\n{}", asterisk())).unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("reload refused, the running policy stays: the new country database has 1 ranges, less than half of the running one's 8"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("reloaded").count(), 1, "the allowed shrink is applied: {stderr}");
}

#[test]
fn a_reload_whose_asn_database_shrank_by_more_than_half_is_refused() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let dir = tempfile::tempdir().unwrap();
    let (asn, path) = (dir.path().join("asn.csv"), dir.path().join("geofence.toml"));
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/asn.csv");
    std::fs::copy(fixture, &asn).unwrap();
    // The fixture country database, not the embedded one, whose load in a debug build would
    // outlast the wait after SIGHUP.
    let policy = format!(
        "database = {:?}\nasn_database = \"asn.csv\"\ndefault = \"accept\"\n[[rule]]\nname = \"hosting\"\nasn = [64500]\naction = \"drop\"\n",
        support_fixture()
    );
    std::fs::write(&path, policy).unwrap();
    let geofence = pair.start_geofence(&path, 0);
    // The fixture's 6 ranges become 1.
    std::fs::write(&asn, "192.0.2.0,192.0.2.63,64500,Example\n").unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(
            "reload refused, the running policy stays: the new ASN database has 1 ranges, less than half of the \
             running one's 6"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("reloaded").count(), 0, "{stderr}");
}

/// The internet checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let sum: u32 =
        bytes.chunks(2).map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))).sum();
    let folded = (sum & 0xFFFF) + (sum >> 16);
    !((folded & 0xFFFF) + (folded >> 16)) as u16
}

/// Packets conntrack calls INVALID, from 192.0.2.10 and 2001:db8:1::10: an ICMP and an ICMPv6
/// echo reply no request asked for, and a UDP datagram to port 5062 whose length field claims
/// more than it carries.
fn invalid_packets() -> Vec<Vec<u8>> {
    let mut echo_reply = vec![0u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'g', b'e', b'o', b'f'];
    let sum = checksum(&echo_reply);
    echo_reply[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut v4_echo = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 10, 192, 0, 2, 1];
    v4_echo.extend(&echo_reply);
    let mut v4_udp = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 10, 192, 0, 2, 1];
    v4_udp.extend([0x13, 0xc4, 0x13, 0xc6, 0, 200, 0, 0, b'g', b'e', b'o', b'f']);
    let (source, server): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        ("2001:db8:1::10".parse().unwrap(), SERVER_V6.parse().unwrap());
    let mut icmpv6 = vec![129u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'g', b'e', b'o', b'f'];
    let mut pseudo = [source.octets(), server.octets()].concat();
    pseudo.extend((icmpv6.len() as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, 58]);
    pseudo.extend(&icmpv6);
    let sum = checksum(&pseudo);
    icmpv6[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut v6_echo = vec![0x60, 0, 0, 0, 0, icmpv6.len() as u8, 58, 64];
    v6_echo.extend(source.octets());
    v6_echo.extend(server.octets());
    v6_echo.extend(icmpv6);
    [v4_echo, v4_udp, v6_echo].into_iter().flat_map(|packet| vec![packet; 3]).collect()
}

#[test]
fn invalid_packets_get_the_malformed_verdict_in_the_kernel_and_never_reach_the_queue() {
    if !kernel_tests_possible() {
        return;
    }
    let accepting = "default = \"drop\"\n[lists]\nclients = [\"192.0.2.10\", \"2001:db8:1::10\"]\n\
                     [[rule]]\nname = \"clients\"\nsource = [\"clients\"]\naction = \"accept\"\n";
    for (malformed, passed) in [("drop", 0), ("accept", 3)] {
        let pair = NetnsPair::new();
        let gb = "192.0.2.10";
        pair.add_sources(&[gb, "2001:db8:1::10"]);
        let (_dir, path) = config(&format!("malformed = \"{malformed}\"\n{accepting}"));
        pair.install_rules(&path);
        pair.iptables(false, &["-t security -A INPUT -p icmp --icmp-type echo-reply -m comment --comment v4-echo"]);
        pair.iptables(false, &["-t security -A INPUT -p udp --dport 5062 -m comment --comment v4-udp"]);
        pair.iptables(
            true,
            &["-t security -A INPUT -p ipv6-icmp --icmpv6-type echo-reply -m comment --comment v6-echo"],
        );
        let server = pair.udp_server();
        let geofence = pair.start_geofence(&path, 0);
        pair.send_raw(invalid_packets());
        pair.send_flow(gb, 3);
        let counts = ["v4-echo", "v4-udp"].map(|needle| pair.counter(false, "security", needle));
        assert_eq!((counts, pair.counter(true, "security", "v6-echo")), ([passed; 2], passed), "malformed {malformed}");
        assert_eq!(server.count(gb), 3, "the valid flow passes");
        let (ok, stdout, stderr) = geofence.stop();
        assert!(ok, "{stderr}");
        assert_eq!(Geofence::verdicts(&stdout), 1, "only the valid flow's first packet is queued");
    }
}

/// A GET of /metrics on `address` from the server namespace: the status line and the body,
/// or why none came within 10 s.
fn get_metrics(pair: &NetnsPair, address: &'static str) -> Result<String, String> {
    NetnsPair::within(&pair.server, move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).map_err(|e| e.to_string())?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: geofence\r\n\r\n").map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
        Ok(response)
    })
    .join()
    .unwrap()
}

#[test]
fn metrics_answer_while_many_idle_and_garbage_connections_are_open() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let gb = "192.0.2.10";
    pair.add_sources(&[gb]);
    let (_dir, path) = config(&asterisk_with("metrics = \"127.0.0.1:9477\""));
    pair.iptables(false, &[QUEUE_SIP_V4]);
    let geofence = pair.start_geofence(&path, 0);
    // 900 clients that connect and say nothing, more than the server serves at once, and
    // clients that send garbage; they stay open while the scrape comes.
    let idle = NetnsPair::within(&pair.server, || {
        use std::io::Write;
        let mut streams: Vec<std::net::TcpStream> =
            (0..900).filter_map(|_| std::net::TcpStream::connect("127.0.0.1:9477").ok()).collect();
        for stream in streams.iter_mut().take(20) {
            let _ = stream.write_all(b"\x16\x03\x01 not http at all\r\n\r\n");
        }
        streams
    })
    .join()
    .unwrap();
    assert!(idle.len() > 256, "only {} clients connected", idle.len());
    pair.send_sip(&[gb], 2);
    // The scraper retries as Prometheus does; it must get through while the idle clients are
    // still connected (the old endpoint served one connection at a time: 27 s for 2,000).
    let scrape = (0..20).find_map(|_| {
        get_metrics(&pair, "127.0.0.1:9477").ok().filter(|r| r.starts_with("HTTP/1.1 200")).or_else(|| {
            std::thread::sleep(std::time::Duration::from_millis(250));
            None
        })
    });
    let scrape = scrape.expect("no scrape answered within 20 tries");
    assert!(scrape.contains("geofence_packets_total{verdict=\"accept\"} 2"), "{scrape}");
    drop(idle);
    assert!(get_metrics(&pair, "127.0.0.1:9477").unwrap().starts_with("HTTP/1.1 200"));
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(Geofence::verdicts(&stdout), 2);
}

#[test]
fn a_rule_on_one_autonomous_system_drops_it_while_the_same_country_passes() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    // All four are in GB (tests/fixtures/countries.csv); the first of each family is in
    // AS64500, the hosting network (tests/fixtures/asn.csv).
    let hosting = ["192.0.2.10", "2001:db8:1::10"];
    let customers = ["192.0.2.70", "2001:db8:1:1::10"];
    pair.add_sources(&hosting);
    pair.add_sources(&customers);
    pair.iptables(false, &[QUEUE_SIP_V4]);
    pair.iptables(true, &[QUEUE_SIP_V6]);
    let asn =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/asn.csv").canonicalize().unwrap();
    let (_dir, path) = config(&format!(
        "asn_database = {:?}\ndefault = \"drop\"\n[asn_groups]\nhosting = [\"AS64500\"]\n\
         [[rule]]\nname = \"hosting\"\nports = [5060]\nasn = [\"hosting\"]\naction = \"drop\"\n\
         [[rule]]\nname = \"gb\"\nports = [5060]\ncountry = [\"GB\"]\naction = \"accept\"\n",
        asn.display().to_string()
    ));
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    pair.send_sip(&hosting, 3);
    pair.send_sip(&customers, 3);
    for source in hosting {
        assert_eq!(server.count(source), 0, "{source} is in the dropped AS");
    }
    for source in customers {
        assert_eq!(server.count(source), 3, "{source} is in GB, in another AS");
    }
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(Geofence::verdicts(&stdout), 12, "{stderr}");
    assert!(stderr.contains("ASN database: ") && stderr.contains("3 autonomous systems"), "{stderr}");
    assert!(stderr.contains("per rule: gb 6, hosting 6"), "{stderr}");
}

/// A feed file of `extra` followed by three networks none of the tests' sources is in.
fn feed_listing(extra: &str) -> String {
    format!("# a test feed, FireHOL style\n{extra}198.51.100.0/24\n203.0.113.0/25 ; SBL000001\n2001:db8:ffff::/48\n")
}

#[test]
fn a_feed_reloaded_under_traffic_changes_decisions_with_nothing_lost_and_a_shrunken_one_is_refused() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    // Both in GB (tests/fixtures/countries.csv), which the policy accepts unless a feed lists it.
    let (customer, scanner) = ("192.0.2.10", "192.0.2.70");
    pair.add_sources(&[customer, scanner]);
    pair.iptables(false, &[QUEUE_SIP_V4]);
    let dir = tempfile::tempdir().unwrap();
    let (feed, path) = (dir.path().join("voipbl.txt"), dir.path().join("geofence.toml"));
    std::fs::write(&feed, feed_listing("")).unwrap();
    let policy = |may_shrink: bool| {
        format!(
            "database = {:?}\ndefault = \"drop\"\n[feeds]\nvoipbl = {{ files = [\"voipbl.txt\"], may_shrink = {may_shrink} }}\n\
             [[rule]]\nname = \"blocklisted\"\nsource = [\"voipbl\"]\naction = \"drop\"\n\
             [[rule]]\nname = \"gb\"\nports = [5060]\ncountry = [\"GB\"]\naction = \"accept\"\n",
            support_fixture()
        )
    };
    std::fs::write(&path, policy(false)).unwrap();
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);

    // Both send all along; in the middle the feed comes to list the scanner.
    let traffic = pair.steady_sip(&[customer, scanner], std::time::Duration::from_micros(500));
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::write(&feed, feed_listing(&format!("{scanner}\n"))).unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    let sent = traffic.stop();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.count(customer), sent, "every packet of the customer got through");
    let before_the_reload = server.count(scanner);
    assert!(before_the_reload > 0 && before_the_reload < sent, "{before_the_reload} of {sent}: the reload cut in");
    pair.send_sip(&[scanner], 3);
    assert_eq!(server.count(scanner), before_the_reload, "the reloaded feed drops the scanner");

    // A feed of 1 network where 4 ran: refused, so the scanner stays dropped, until allowed.
    std::fs::write(&feed, "192.0.2.200\n").unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    pair.send_sip(&[scanner], 2);
    assert_eq!(server.count(scanner), before_the_reload, "the shrunken feed was refused");
    std::fs::write(&path, policy(true)).unwrap();
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    pair.send_sip(&[scanner], 2);
    assert_eq!(server.count(scanner), before_the_reload + 2, "with may_shrink the short feed is applied");

    let queued = pair.counter(false, "filter", "NFQUEUE");
    let kernel = pair.queue_stats(0).unwrap();
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(Geofence::verdicts(&stdout), queued, "every queued packet got its verdict");
    assert_eq!((kernel.1, kernel.2), (0, 0), "the kernel dropped nothing");
    assert!(stderr.contains("voipbl.txt (one network a line): 3 networks"), "{stderr}");
    assert!(
        stderr.contains(
            "reload refused, the running policy stays: feed `voipbl` now lists 1 networks, less than half of the \
             running list's 4: cut short?"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("reloaded").count(), 2, "{stderr}");
}

#[test]
fn geofence_update_fetches_a_feed_under_traffic_and_the_running_geofence_reloads_it_with_nothing_lost() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (customer, scanner) = ("192.0.2.10", "192.0.2.70");
    pair.add_sources(&[customer, scanner]);
    pair.iptables(false, &[QUEUE_SIP_V4]);
    // The feed's publisher, on this machine's loopback: its new edition lists the scanner.
    let publisher = support::http::HttpServer::start();
    let listing = feed_listing(&format!("{scanner}\n")).into_bytes();
    publisher.serve("/voipbl.txt", support::http::Reply::Body { bytes: listing.clone(), etag: "\"2\"" });
    let dir = tempfile::tempdir().unwrap();
    let (feed, path) = (dir.path().join("voipbl.txt"), dir.path().join("geofence.toml"));
    std::fs::write(&feed, feed_listing("")).unwrap();
    let policy = format!(
        "database = {:?}\ndefault = \"drop\"\n[feeds]\nvoipbl = {{ files = [\"voipbl.txt\"] }}\n\
         [[rule]]\nname = \"blocklisted\"\nsource = [\"voipbl\"]\naction = \"drop\"\n\
         [[rule]]\nname = \"gb\"\nports = [5060]\ncountry = [\"GB\"]\naction = \"accept\"\n\
         [update]\ntimeout = \"5s\"\n[[update.source]]\nurl = \"{}\"\nfile = \"voipbl.txt\"\n",
        support_fixture(),
        publisher.url("/voipbl.txt")
    );
    std::fs::write(&path, policy).unwrap();
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);

    let traffic = pair.steady_sip(&[customer, scanner], std::time::Duration::from_micros(500));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let updated = geofence.ask(&["update", "--config", path.to_str().unwrap()]);
    let sent = traffic.stop();
    let said = String::from_utf8_lossy(&updated.stdout);
    assert!(updated.status.success(), "{said}{}", String::from_utf8_lossy(&updated.stderr));
    assert!(said.contains("replaced: 3 → 4 networks"), "{said}");
    assert!(said.contains("the running geofence reloaded: reloaded "), "{said}");
    assert_eq!(std::fs::read(&feed).unwrap(), listing);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.count(customer), sent, "every packet of the customer got through");
    let before_the_reload = server.count(scanner);
    assert!(before_the_reload > 0 && before_the_reload < sent, "{before_the_reload} of {sent}: the reload cut in");
    pair.send_sip(&[scanner], 3);
    assert_eq!(server.count(scanner), before_the_reload, "the fetched feed drops the scanner");

    let queued = pair.counter(false, "filter", "NFQUEUE");
    let kernel = pair.queue_stats(0).unwrap();
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(Geofence::verdicts(&stdout), queued, "every queued packet got its verdict");
    assert_eq!((kernel.1, kernel.2), (0, 0), "the kernel dropped nothing");
}

/// examples/voip-sip.toml (`config` adds the fixture countries: 192.0.2.0/25 GB,
/// 198.51.100.0/24 CN, 203.0.113.0/25 RU, 2001:db8:1::/48 GB).
fn voip_sip() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/voip-sip.toml")).unwrap()
}

const PHONE_UA: &str = "Yealink SIP-T46S 66.86.0.15";
const DOMAIN: &str = "pbx.example.com";

#[test]
fn from_an_allowed_country_a_scanner_is_dropped_while_a_phone_registers_ipv4_and_ipv6() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (phone, scanner, sdk, phone6, scanner6) =
        ("192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8:1::10", "2001:db8:1::11");
    pair.add_sources(&[phone, scanner, sdk, phone6, scanner6]);
    let (_dir, path) = config(&voip_sip());
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    let register = |source: &str, ua: &str| {
        pair.sipp("register.xml", source, 5062, "1001", &[("host", DOMAIN), ("ua", ua)], 3);
    };
    register(phone, PHONE_UA);
    register(scanner, "friendly-scanner");
    register(sdk, "PortSIP VoIP SDK 11.2.4");
    register(phone6, PHONE_UA);
    register(scanner6, "sipvicious 0.3.4");
    let received = [phone, scanner, sdk, phone6, scanner6].map(|source| server.count(source));
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(received, [3, 0, 0, 3, 0], "phones register, scanners do not: {stderr}");
    // Each datagram was decided, not only each flow's first: 3 a source.
    assert_eq!(Geofence::verdicts(&stdout), 15, "{stdout}");
    assert!(stderr.contains("scanners") && stderr.contains("allowed-countries"), "{stderr}");
}

#[test]
fn a_request_uri_that_names_the_address_is_dropped_while_the_domain_passes() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (phone, sweeper, trunk) = ("192.0.2.20", "192.0.2.21", "203.0.113.10");
    pair.add_sources(&[phone, sweeper, trunk]);
    let (_dir, path) = config(&voip_sip());
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    let invite = |source: &str, host: &str, ua: &str| {
        pair.sipp("invite.xml", source, 5064, "00441234567890", &[("host", host), ("ua", ua)], 2);
    };
    invite(phone, DOMAIN, PHONE_UA);
    invite(sweeper, SERVER_V4, PHONE_UA);
    // A trunk (from a country the policy drops) may name the address and say anything.
    invite(trunk, SERVER_V4, "friendly-scanner");
    let received = [phone, sweeper, trunk].map(|source| server.count(source));
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(received, [2, 0, 2], "{stderr}");
    // The trunk's flow was decided once and then kept in the kernel: 2 + 2 + 1 verdicts.
    assert_eq!(Geofence::verdicts(&stdout), 5, "{stdout}");
    assert_eq!(pair.counter(false, "filter", "connmark match"), 1, "the trunk's second datagram");
}

#[test]
fn a_scanner_that_sends_a_harmless_request_first_on_the_same_port_is_still_caught() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (scanner, scanner6) = ("192.0.2.30", "2001:db8:1::30");
    pair.add_sources(&[scanner, scanner6]);
    let (_dir, path) = config(&voip_sip());
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    for source in [scanner, scanner6] {
        pair.sipp("harmless-then-scan.xml", source, 5070, "100", &[("host", DOMAIN), ("ua", "friendly-scanner")], 1);
    }
    let received = [scanner, scanner6].map(|source| server.count(source));
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(received, [1, 1], "the OPTIONS arrives, the REGISTER from the same flow does not: {stderr}");
    assert_eq!(Geofence::verdicts(&stdout), 4, "{stdout}");
}

#[test]
fn a_source_that_enumerates_extensions_is_stopped_while_another_keeps_registering_and_a_reload_keeps_it_stopped() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (enumerator, phone) = ("192.0.2.40", "192.0.2.41");
    pair.add_sources(&[enumerator, phone]);
    // The hashlimit would stop a fast enumerator ahead of the queue; raised here so that the
    // behaviour threshold (8 users in 10 s) is what stops it.
    let (_dir, path) = config(&format!("hashlimit_rate = 1000\nhashlimit_burst = 1000\n{}", voip_sip()));
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    let keys = [("host", DOMAIN), ("ua", PHONE_UA)];
    pair.sipp("enumerate.xml", enumerator, 5080, "100", &keys, 20);
    pair.sipp("register.xml", phone, 5082, "1001", &keys, 20);
    let after_enumeration = server.count(enumerator);
    geofence.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    pair.sipp("register.xml", enumerator, 5084, "1001", &keys, 2);
    let received = [server.count(enumerator), server.count(phone)];
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    // Eight users pass, and the request that sets a ninth bit of the 64-bit set of hashed users
    // is over. Users that hash alike (a random key each run) push it later: the first 11 users
    // set at most 8 bits in 3.2% of runs, the first 14 in 0.02%.
    assert!((8..=13).contains(&after_enumeration), "{after_enumeration} of 20 enumerating REGISTERs arrived: {stderr}");
    assert_eq!(received, [after_enumeration, 20], "the penalty outlives the reload; the phone is never stopped");
    assert!(stderr.contains("reloaded") && stderr.contains("(behaviour)"), "{stderr}");
}

#[test]
fn a_register_flood_for_one_user_is_stopped_at_the_watched_methods_limit() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (guesser, options) = ("192.0.2.42", "192.0.2.43");
    pair.add_sources(&[guesser, options]);
    let (_dir, path) = config(&format!("hashlimit_rate = 1000\nhashlimit_burst = 1000\n{}", voip_sip()));
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    let keys = [("host", DOMAIN), ("ua", PHONE_UA)];
    // Password guessing: REGISTER after REGISTER for one user (30 REGISTERs allowed in 10 s).
    pair.sipp("register.xml", guesser, 5086, "1001", &keys, 40);
    // The same number of requests of a method not watched (60 requests allowed in 10 s).
    pair.sipp("invite.xml", options, 5088, "1001", &keys, 40);
    let received = [server.count(guesser), server.count(options)];
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(received, [30, 40], "{stderr}");
}

/// A policy that lets SIP from anywhere through (but for scanners) and counts, per source,
/// the server's failure answers: more than 10 in 10 s and the source is dropped for a minute.
const FAILURES: &str = r#"
default = "accept"
hashlimit_rate = 1000
hashlimit_burst = 1000
[lists]
trunks = ["203.0.113.10"]
[[rule]]
name = "trunks"
source = ["trunks"]
protocol = "udp"
ports = [5060]
action = "accept"
[[rule]]
name = "scanners"
protocol = "udp"
ports = [5060]
user_agent = ["@scanners"]
action = "drop"
[behaviour]
window = "10s"
max_failures = 10
penalty = "1m"
"#;

#[test]
fn a_source_that_kamailio_keeps_refusing_is_stopped_after_max_failures_while_the_phone_registers() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    // The registrar (tests/kamailio/refuse-all-but-the-phone.cfg) answers 200 to the phone
    // and 403 to everyone else.
    let (guesser, phone, guesser6, trunk) = ("192.0.2.50", "192.0.2.51", "2001:db8:1::50", "203.0.113.10");
    pair.add_sources(&[guesser, phone, guesser6, trunk]);
    let (_dir, path) = config(FAILURES);
    pair.install_rules(&path);
    let kamailio = pair.kamailio("refuse-all-but-the-phone.cfg");
    let geofence = pair.start_geofence(&path, 0);
    let keys = [("host", DOMAIN), ("ua", PHONE_UA)];
    pair.sipp("register-answered.xml", guesser, 5090, "1001", &keys, 30);
    pair.sipp("register-answered.xml", phone, 5092, "1001", &keys, 30);
    pair.sipp("register-answered.xml", guesser6, 5094, "1001", &keys, 30);
    // Refused too, but a trusted source: its flow has the flow mark, so its 403s stay off the
    // queue and are never counted.
    pair.sipp("register-answered.xml", trunk, 5096, "1001", &keys, 5);
    let received = [guesser, phone, guesser6, trunk].map(|source| kamailio.received("REGISTER", source));
    let answers = [false, true].map(|v6| pair.chain_counter(v6, "filter", "OUTPUT", "SIP/2.0 40")).iter().sum::<u64>();
    let (ok, stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    // Ten refusals are allowed; the eleventh puts the source over, so its next REGISTER is
    // dropped before kamailio sees it.
    assert_eq!(received, [11, 30, 11, 5], "{}\n{stderr}", kamailio.log());
    assert_eq!(answers, 22, "only the untrusted sources' 403s were queued on OUTPUT, not the phone's 200s");
    assert_eq!(
        Geofence::verdicts(&stdout),
        30 * 3 + 22 + 1,
        "every request, every queued answer and the trunk's first datagram: {stdout}"
    );
    assert!(stderr.contains("(answers)") && stderr.contains("(behaviour)"), "{stderr}");
}

/// The nft output chain `geofence rules --backend nft` prints, matching with a counter where
/// it would queue (this kernel has no CONFIG_NFT_QUEUE): it takes kamailio's 403s and leaves
/// its 200s alone.
#[test]
fn with_the_nft_backend_the_output_chain_matches_the_failure_answers_alone() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (guesser, phone, guesser6) = ("192.0.2.52", "192.0.2.51", "2001:db8:1::52");
    pair.add_sources(&[guesser, phone, guesser6]);
    let (_dir, path) = config(FAILURES);
    let printed = pair.install_nft_rules(&path, |line| match line {
        answers if answers.contains("udp sport 5060") => Some(answers.replace("queue num 0 bypass", "counter")),
        queued if queued.contains("queue num") => None,
        other => Some(other.to_owned()),
    });
    let output_chain = printed.lines().filter(|line| line.contains("udp sport 5060")).count();
    let kamailio = pair.kamailio("refuse-all-but-the-phone.cfg");
    let keys = [("host", DOMAIN), ("ua", PHONE_UA)];
    pair.sipp("register-answered.xml", guesser, 5096, "1001", &keys, 5);
    pair.sipp("register-answered.xml", phone, 5098, "1001", &keys, 5);
    pair.sipp("register-answered.xml", guesser6, 5100, "1001", &keys, 5);
    let received = [guesser, phone, guesser6].map(|source| kamailio.received("REGISTER", source));
    assert_eq!(received, [5, 5, 5], "{}", kamailio.log());
    let listed = pair.in_server(&["nft", "list", "chain", "inet", "geofence", "output"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(output_chain, 1, "{printed}");
    assert!(listed.contains("counter packets 10 "), "the 403s, IPv4 and IPv6, not the 200s: {listed}");
}

/// The conntrack entries of `source`'s TCP connections to the SIP port, as `conntrack -L`
/// lists them in the server namespace.
fn sip_connections(pair: &NetnsPair, source: &str) -> Vec<String> {
    let family = if source.contains(':') { "ipv6" } else { "ipv4" };
    let listed =
        pair.in_server(&["conntrack", "-L", "-f", family, "-p", "tcp", "--orig-src", source, "--dport", "5060"]);
    String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect()
}

/// SIP over TCP with examples/voip-sip.toml and kamailio listening on TCP: each segment of a
/// connection is queued until its first whole request; the phone's REGISTER is accepted and
/// gives the connection the flow mark, so its later ones stay in the kernel; the scanner's is
/// dropped, and so is every retransmission of it, so kamailio never reads a word from it.
#[test]
fn over_tcp_a_scanner_is_dropped_while_a_phone_registers_and_its_connection_then_stays_in_the_kernel() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (phone, scanner, phone6, scanner6) = ("192.0.2.51", "192.0.2.54", "2001:db8:1::51", "2001:db8:1::54");
    pair.add_sources(&[phone, scanner, phone6, scanner6]);
    let (_dir, path) = config(&voip_sip());
    pair.install_rules(&path);
    let kamailio = pair.kamailio("refuse-all-but-the-phone.cfg");
    let geofence = pair.start_geofence(&path, 0);
    for (source, ua) in
        [(phone, PHONE_UA), (scanner, "friendly-scanner"), (phone6, PHONE_UA), (scanner6, "sipcli/v1.8")]
    {
        pair.sipp_tcp("register-answered.xml", source, 5090, "1001", &[("host", DOMAIN), ("ua", ua)], 3);
    }
    let received = [phone, scanner, phone6, scanner6].map(|source| kamailio.received("REGISTER", source));
    let connections = [phone, scanner, phone6, scanner6].map(|source| sip_connections(&pair, source));
    let bypassed = [false, true].map(|v6| pair.counter(v6, "filter", "tcp dpt:5060 connmark match"));
    let (ok, _stdout, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert_eq!(received, [3, 0, 3, 0], "{}\n{stderr}", kamailio.log());
    for (source, connections) in [phone, scanner, phone6, scanner6].iter().zip(&connections) {
        let marked = connections.iter().filter(|line| line.contains("mark=1073741824")).count();
        let expected = if source.ends_with("51") { 1 } else { 0 };
        assert_eq!((connections.len(), marked), (1, expected), "{source}'s connection: {connections:?}");
    }
    // The phone's second and third REGISTER, at least, came through the connection's mark.
    assert!(bypassed.iter().all(|count| *count >= 2), "{bypassed:?}");
    assert!(stderr.contains("scanners"), "{stderr}");
}

/// The nft ruleset `geofence rules --backend nft` prints for examples/voip-sip.toml with
/// fail-open, a counter where it would queue (no CONFIG_NFT_QUEUE here): nft takes it whole
/// (its hashlimit on many ports, its TCP lines, its counting line with the examined mark), and
/// the TCP line meets every segment of a connection without the flow mark, not only its SYN.
#[test]
fn with_the_nft_backend_every_segment_of_an_unmarked_sip_connection_reaches_the_queue_line() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let phone = "192.0.2.51";
    pair.add_sources(&[phone]);
    let policy = voip_sip().replace("[bans]\n", "[bans]\nsets = \"nft\"\n");
    let (_dir, path) = config(&format!("fail_open = true\n{policy}"));
    let printed = pair.install_nft_rules(&path, |line| Some(line.replace("queue num 0 bypass", "counter")));
    assert!(printed.contains("meta mark & 0x20000000 != 0x20000000 counter comment"), "{printed}");
    let kamailio = pair.kamailio("refuse-all-but-the-phone.cfg");
    pair.sipp_tcp("register-answered.xml", phone, 5090, "1001", &[("host", DOMAIN), ("ua", PHONE_UA)], 3);
    assert_eq!(kamailio.received("REGISTER", phone), 3, "{}", kamailio.log());
    let listed = pair.in_server(&["nft", "list", "chain", "inet", "geofence", "input"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    let segments: u64 = listed
        .lines()
        .find(|line| line.trim_start().starts_with("tcp dport 5060 counter packets"))
        .and_then(|line| line.split_whitespace().nth(5))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no TCP queue line: {listed}"));
    // The SYN, the handshake's ACK, three REGISTERs, the ACKs of kamailio's answers, the FIN.
    assert!(segments >= 6, "{segments} segments: {listed}");
    // The connection's SYN went through the hashlimit's set, which every rule shares.
    let limited = pair.in_server(&["nft", "list", "set", "inet", "geofence", "geofence4"]);
    assert!(String::from_utf8_lossy(&limited.stdout).contains(phone), "{}", String::from_utf8_lossy(&limited.stdout));
}

const HONEYPOT: &str = r#"
default = "drop"
malformed = "accept"
hashlimit_rate = 0
summary_seconds = 1
[lists]
trunks = ["203.0.113.10"]
[[rule]]
name = "trunks"
source = ["trunks"]
protocol = "udp"
ports = [5060]
action = "accept"
[[rule]]
name = "honeypot"
protocol = "udp"
ports = [5070]
action = "ban"
ban = "2s"
ban_prefix6 = 64
[[rule]]
name = "sip"
protocol = "udp"
ports = [5060]
action = "accept"
"#;

/// Whether `address` is in the server namespace's ipset `set`, as `ipset test` says.
fn in_ban_set(pair: &NetnsPair, set: &str, address: &str) -> bool {
    std::process::Command::new("ip")
        .args(["netns", "exec", &pair.server, "ipset", "-q", "test", set, address])
        .status()
        .unwrap()
        .success()
}

fn flows_from(pair: &NetnsPair, source: &str) -> usize {
    let listing = pair.in_server(&["conntrack", "-L", "-s", source]);
    String::from_utf8_lossy(&listing.stdout).lines().count()
}

#[test]
fn a_honeypot_probe_bans_its_source_in_the_kernel_until_the_ban_ends_and_a_forged_trunk_is_not_banned() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (scanner, trunk, scanner6, neighbour6) = ("192.0.2.66", "203.0.113.10", "2001:db8:7::66", "2001:db8:7::99");
    pair.add_sources(&[scanner, trunk, scanner6, neighbour6]);
    let (_dir, path) = config(HONEYPOT);
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);

    // A flow the scanner opened before it showed itself is accepted, and tracked.
    let flow = pair.steady_sip(&[scanner], std::time::Duration::from_millis(20));
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(server.count(scanner) > 0, "the flow is accepted before the ban");
    assert_eq!(flows_from(&pair, scanner), 1);

    pair.probe(scanner, 5070);
    assert!(in_ban_set(&pair, "geofence-ban4", scanner), "the probe banned its source");
    let (during, queued) = (server.count(scanner), pair.queue_stats(0).unwrap().3);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.count(scanner), during, "the flow accepted before the ban stopped with it");
    assert_eq!(flows_from(&pair, scanner), 0, "and its tracked flow was forgotten");
    pair.send_sip(&[scanner], 5);
    assert_eq!(server.count(scanner), during, "new SIP flows of the banned source are dropped too");
    assert_eq!(pair.queue_stats(0).unwrap().3, queued, "in the kernel: nothing more was queued");
    assert!(pair.counter(false, "filter", "match-set geofence-ban4") >= 5);
    let listed = pair.in_server(&[env!("CARGO_BIN_EXE_geofence"), "bans", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.starts_with("192.0.2.66/32 1s left\n") || listed.starts_with("192.0.2.66/32 2s left\n"), "{listed}");
    flow.stop();

    // A prefix ban: the scanner's /64 neighbour is shut out with it.
    pair.send_sip(&[neighbour6], 1);
    assert_eq!(server.count(neighbour6), 1);
    pair.probe(scanner6, 5070);
    assert!(in_ban_set(&pair, "geofence-ban6", neighbour6));
    pair.send_sip(&[neighbour6], 3);
    assert_eq!(server.count(neighbour6), 1, "banned with its /64");

    // A trunk's address forged to probe the honeypot is dropped, never banned.
    pair.probe(trunk, 5070);
    assert!(!in_ban_set(&pair, "geofence-ban4", trunk));
    pair.send_sip(&[trunk], 3);
    assert_eq!(server.count(trunk), 3, "the trunk still gets through");

    // The ban (2 s, less up to 10%) ends in the kernel on its own.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(!in_ban_set(&pair, "geofence-ban4", scanner));
    pair.send_sip(&[scanner], 2);
    assert_eq!(server.count(scanner), during + 2, "it passes again once the ban has ended");

    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("banned 192.0.2.66/32 for 2s (offence 1, rule honeypot)"), "{stderr}");
    assert!(stderr.contains("banned 2001:db8:7::/64 for 2s (offence 1, rule honeypot)"), "{stderr}");
    assert!(stderr.contains("bans: 2 written, "), "{stderr}");
    assert!(
        stderr.contains(" sources in the last 1 s (0 refused: the set is full)"),
        "the summaries count bans: {stderr}"
    );
}

/// The timeout `ipset` lists for `address` in the server namespace's `set`.
fn ban_seconds_left(pair: &NetnsPair, set: &str, address: &str) -> Option<u64> {
    let listing = pair.in_server(&["ipset", "list", set]);
    String::from_utf8_lossy(&listing.stdout).lines().find_map(|line| {
        let rest = line.strip_prefix(address)?.strip_prefix(" timeout ")?;
        rest.trim().parse().ok()
    })
}

#[test]
fn bans_survive_a_restart_with_the_time_they_have_left() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let scanner = "192.0.2.66";
    pair.add_sources(&[scanner]);
    let policy =
        HONEYPOT.replace("[lists]", "[bans]\nstate = \"bans\"\n[lists]").replace("ban = \"2s\"", "ban = \"60s\"");
    let (dir, path) = config(&policy);
    pair.install_rules(&path);
    let server = pair.udp_server();
    let first = pair.start_geofence(&path, 0);
    pair.probe(scanner, 5070);
    assert!(in_ban_set(&pair, "geofence-ban4", scanner));
    let (ok, _, stderr) = first.stop();
    assert!(ok, "{stderr}");
    let saved = std::fs::read_to_string(dir.path().join("bans")).unwrap();
    assert!(saved.lines().any(|line| line.starts_with("192.0.2.66/32 ")), "{saved}");

    // A reboot empties the kernel's sets; the next start fills them again.
    pair.in_server(&["ipset", "flush", "geofence-ban4"]);
    assert!(!in_ban_set(&pair, "geofence-ban4", scanner));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second = pair.start_geofence(&path, 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = ban_seconds_left(&pair, "geofence-ban4", scanner).expect("restored into the kernel");
    assert!((45..=58).contains(&left), "{left} s left of a ban of 54 to 60 s, 2 s after it was saved");
    pair.send_sip(&[scanner], 3);
    assert_eq!(server.count(scanner), 0, "still banned after the restart");

    // Lifted by hand, through the running geofence: the kernel and its book both forget it,
    // so its next offence is a first one again (60 s, not twice that).
    let lifted = second.ask(&["bans", "del", scanner]);
    assert!(lifted.status.success(), "{}", String::from_utf8_lossy(&lifted.stderr));
    assert_eq!(
        String::from_utf8_lossy(&lifted.stdout),
        "lifted the ban of 192.0.2.66/32, and the running geofence forgot its offences\n"
    );
    assert!(!in_ban_set(&pair, "geofence-ban4", scanner));
    pair.probe(scanner, 5070);
    let left = ban_seconds_left(&pair, "geofence-ban4", scanner).expect("banned again");
    assert!(left <= 60, "a first offence's ban, not a doubled one: {left} s");

    // Every ban lifted through it: the book is emptied too, so the next start restores none.
    let flushed = second.ask(&["bans", "flush"]);
    assert_eq!(
        String::from_utf8_lossy(&flushed.stdout),
        "lifted every ban, and the running geofence forgot 1 offender\n",
        "{}",
        String::from_utf8_lossy(&flushed.stderr)
    );
    assert!(!in_ban_set(&pair, "geofence-ban4", scanner));
    let (ok, _, stderr) = second.stop();
    assert!(ok, "{stderr}");
    let saved = std::fs::read_to_string(dir.path().join("bans")).unwrap();
    assert!(!saved.contains("192.0.2.66"), "a flushed ban is not saved to come back: {saved}");
    assert!(
        stderr.contains("bans: restored 1 running bans (1 written into the kernel) and 0 past offenders"),
        "{stderr}"
    );
}

#[test]
fn with_the_nft_backend_a_ban_goes_into_an_interval_set_that_drops_ahead_of_the_queue() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (scanner, trunk) = ("192.0.2.66", "203.0.113.10");
    pair.add_sources(&[scanner, trunk]);
    let policy = HONEYPOT.replace("[lists]", "[bans]\nsets = \"nft\"\n[lists]");
    let (_dir, path) = config(&policy);
    // The printed ruleset, less its queue statements: this kernel has no CONFIG_NFT_QUEUE, so
    // iptables queues instead, from the security table, which runs after nft's filter chain.
    pair.install_nft_rules(&path, |line| (!line.contains("queue num")).then(|| line.to_owned()));
    pair.iptables(false, &["-t security -A INPUT -p udp -m multiport --dports 5060,5070 -j NFQUEUE --queue-num 0"]);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);

    pair.probe(scanner, 5070);
    let listed = pair.in_server(&[env!("CARGO_BIN_EXE_geofence"), "bans", "--nft", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.starts_with("192.0.2.66/32 ") && listed.ends_with("1 bans\n"), "{listed}");
    let queued = pair.queue_stats(0).unwrap().3;
    pair.send_sip(&[scanner], 4);
    assert_eq!(server.count(scanner), 0, "dropped by the nft set");
    assert_eq!(pair.queue_stats(0).unwrap().3, queued, "ahead of the queue");
    pair.probe(trunk, 5070);
    pair.send_sip(&[trunk], 2);
    assert_eq!(server.count(trunk), 2, "a forged trunk address is not banned");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    pair.send_sip(&[scanner], 2);
    assert_eq!(server.count(scanner), 2, "the element timed out");
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("banned 192.0.2.66/32 for 2s (offence 1, rule honeypot)"), "{stderr}");
}

#[test]
fn with_ban_true_in_the_voip_example_an_enumerator_over_the_threshold_is_banned_in_the_kernel_for_the_penalty() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (enumerator, phone) = ("192.0.2.40", "192.0.2.41");
    pair.add_sources(&[enumerator, phone]);
    let policy = voip_sip();
    assert!(policy.contains("ban = true"), "examples/voip-sip.toml bans over its thresholds");
    let (_dir, path) = config(&format!("hashlimit_rate = 1000\nhashlimit_burst = 1000\n{policy}"));
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    let keys = [("host", DOMAIN), ("ua", PHONE_UA)];
    pair.sipp("enumerate.xml", enumerator, 5080, "100", &keys, 20);
    assert!(in_ban_set(&pair, "geofence-ban4", enumerator), "banned once over the threshold");
    let (received, queued) = (server.count(enumerator), pair.queue_stats(0).unwrap().3);
    pair.send_sip(&[enumerator], 3);
    assert_eq!(server.count(enumerator), received);
    assert_eq!(pair.queue_stats(0).unwrap().3, queued, "its later requests die in the kernel");
    pair.sipp("register.xml", phone, 5082, "1001", &keys, 20);
    assert_eq!(server.count(phone), 20, "the phone is never stopped");
    assert!(!in_ban_set(&pair, "geofence-ban4", phone));
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    // Ten minutes, less up to 10%.
    let line = stderr.lines().find(|line| line.contains("banned 192.0.2.40/32 for ")).expect("the ban is logged");
    assert!(line.ends_with("(offence 1, rule (behaviour))"), "{line}");
    let seconds: u64 = line.split(" for ").nth(1).and_then(|rest| rest.split('s').next()?.parse().ok()).unwrap_or(600);
    assert!((540..=600).contains(&seconds) || line.contains(" for 10m "), "{line}");
}

#[test]
fn ban_ports_drop_a_banned_source_on_those_ports_only() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let scanner = "192.0.2.66";
    pair.add_sources(&[scanner]);
    let (_dir, path) = config(&HONEYPOT.replace("[lists]", "[bans]\nports = [5060]\n[lists]"));
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    pair.probe(scanner, 5070);
    assert!(in_ban_set(&pair, "geofence-ban4", scanner));
    let queued = pair.queue_stats(0).unwrap().3;
    pair.send_sip(&[scanner], 3);
    assert_eq!(server.count(scanner), 0, "dropped on 5060");
    assert_eq!(pair.queue_stats(0).unwrap().3, queued, "in the kernel");
    pair.probe(scanner, 5070);
    assert_eq!(pair.queue_stats(0).unwrap().3, queued + 1, "another port is not covered: the queue sees it");
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1 already banned"), "the second probe asked again: {stderr}");
}

#[test]
fn a_full_ban_set_refuses_new_bans_counts_and_logs_them_and_keeps_deciding() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (first, second) = ("192.0.2.66", "192.0.2.67");
    pair.add_sources(&[first, second]);
    let (_dir, path) = config(&HONEYPOT.replace("[lists]", "[bans]\nmax_entries = 1\n[lists]"));
    pair.install_rules(&path);
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    pair.probe(first, 5070);
    pair.probe(second, 5070);
    assert!(in_ban_set(&pair, "geofence-ban4", first));
    assert!(!in_ban_set(&pair, "geofence-ban4", second), "refused: the set holds one");
    pair.send_sip(&[second], 2);
    assert_eq!(server.count(second), 2, "the unbanned source is still decided, by the queue");
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("the ban set is full (1 entries running): new bans are refused and counted"), "{stderr}");
    assert!(stderr.contains("bans: 1 written, 0 already banned, 1 refused (set full)"), "{stderr}");
}
