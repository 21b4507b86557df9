//! The control socket of a real `geofence run` serving a real queue: `geofence status` and
//! `geofence reload` against the packets the server receives, and clients that misbehave.
//!
//! They need root, iproute2 and iptables; elsewhere they skip with a message (in CI they fail).

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use support::{config, kernel_tests_possible, NetnsPair};

const QUEUE_SIP: &str = "-A INPUT -p udp --dport 5060 -j NFQUEUE --queue-num 0";
const GB: &str = "192.0.2.10";
const CN: &str = "198.51.100.23";

fn only(country: &str) -> String {
    format!("default = \"drop\"\n[[rule]]\nname = \"{country}\"\ncountry = [\"{country}\"]\naction = \"accept\"\n")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn status_reports_what_was_decided_and_reload_applies_a_good_config_and_refuses_a_bad_one() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    pair.add_sources(&[GB, CN]);
    pair.iptables(false, &[QUEUE_SIP]);
    let (_dir, path) = config(&only("GB"));
    let database_line = std::fs::read_to_string(&path).unwrap().lines().next().unwrap().to_owned();
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    pair.send_sip(&[GB], 3);
    pair.send_sip(&[CN], 2);
    assert_eq!((server.count(GB), server.count(CN)), (3, 0));

    let asked = geofence.ask(&["status", "--json"]);
    assert!(asked.status.success(), "{}", text(&asked.stderr));
    let status: serde_json::Value = serde_json::from_slice(&asked.stdout).unwrap();
    assert_eq!(status["pid"], geofence.pid());
    assert_eq!(status["policy"]["config"], path.canonicalize().unwrap().display().to_string());
    assert_eq!((status["policy"]["rules"].as_u64(), status["policy"]["default"].as_str()), (Some(1), Some("drop")));
    assert_eq!(status["counters"]["accepted"], 3);
    assert_eq!(status["counters"]["dropped"], 2);
    assert_eq!(status["counters"]["per_rule"], serde_json::json!({"GB": 3, "(default)": 2}));
    assert_eq!(status["counters"]["per_country"], serde_json::json!({"GB": [3, 0], "CN": [0, 2]}));
    assert_eq!(status["top_dropped"], serde_json::json!([{"source": CN, "country": "CN", "packets": 2}]));
    assert_eq!(status["queues"][0]["packets"], 5);
    assert_eq!(status["queues"][0]["kernel"]["queued"], 5, "the kernel's own count of the queue");
    let country = &status["databases"][0];
    assert_eq!(country["kind"], "country");
    assert!(country["source"].as_str().unwrap().ends_with("countries.csv (range CSV)"), "{country}");
    assert_eq!(country["age_days"].as_u64().map(|days| days < 10_000), Some(true), "dated by its file: {country}");

    let shown = text(&geofence.ask(&["status"]).stdout);
    assert!(shown.contains(&format!("pid {}, up ", geofence.pid())), "{shown}");
    assert!(shown.contains("1 rules, default drop, loaded "), "{shown}");
    assert!(shown.contains("queue 0: 5 decided; kernel: 5 queued, 0 waiting"), "{shown}");
    assert!(shown.contains("per country (accepted/dropped): CN 0/2, GB 3/0"), "{shown}");
    assert!(shown.contains(&format!("top dropped sources since the last summary: {CN} (CN) 2")), "{shown}");

    // A bad config is refused with its line, and the running policy goes on deciding.
    std::fs::write(&path, format!("{database_line}\n{}action = \"maybe\"\n", only("CN"))).unwrap();
    let refused = geofence.ask(&["reload"]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stdout));
    let said = text(&refused.stderr);
    assert!(said.starts_with("geofence: reload refused, the running policy stays: "), "{said}");
    assert!(said.contains("line 7"), "the line of the duplicate key: {said}");
    pair.send_sip(&[GB, CN], 2);
    assert_eq!((server.count(GB), server.count(CN)), (5, 0), "the old policy still decides");

    // A good one is applied before `reload` returns: the very next packets see it.
    std::fs::write(&path, format!("{database_line}\n{}", only("CN"))).unwrap();
    let applied = geofence.ask(&["reload"]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let said = text(&applied.stdout);
    assert!(said.starts_with(&format!("reloaded {}: 1 rules, default drop\n", path.display())), "{said}");
    pair.send_sip(&[GB, CN], 2);
    assert_eq!((server.count(GB), server.count(CN)), (5, 2));

    let status: serde_json::Value = serde_json::from_slice(&geofence.ask(&["status", "--json"]).stdout).unwrap();
    assert_eq!(
        (status["policy"]["reloads_applied"].as_u64(), status["policy"]["reloads_refused"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(status["policy"]["last_refusal"].as_str().unwrap().contains("line 7"), "{status}");
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
}

/// What the daemon wrote before it closed the connection. Closing a connection whose request
/// was not read whole (too slow, too long) resets it: the reply written before is still read.
fn reply_of(client: &mut UnixStream) -> String {
    let mut reply = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match client.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("reading the reply: {error}"),
        }
    }
    text(&reply)
}

#[test]
fn idle_garbage_and_oversized_clients_stall_neither_the_packets_nor_the_socket_for_long() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    pair.add_sources(&[GB]);
    pair.iptables(false, &[QUEUE_SIP]);
    let (_dir, path) = config(&only("GB"));
    let server = pair.udp_server();
    let geofence = pair.start_geofence(&path, 0);
    let socket = geofence.control().to_owned();

    // Clients that connect and say nothing, or half a request, far more than are served.
    let started = Instant::now();
    let mut idle: Vec<UnixStream> = (0..64).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    for client in idle.iter_mut().step_by(2) {
        // Those over the limit may already be closed by the daemon: writing to them fails.
        let _ = client.write_all(br#"{"version":1,"#);
    }
    pair.send_sip(&[GB], 3);
    assert_eq!(server.count(GB), 3, "the packets are decided meanwhile");
    for client in &mut idle {
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(reply_of(client), "", "closed without a reply");
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "every idle client was let go of within the request timeout: {waited:?}");

    let ask = |request: &[u8]| {
        let mut client = UnixStream::connect(&socket).unwrap();
        client.write_all(request).unwrap();
        let _ = client.shutdown(std::net::Shutdown::Write);
        let reply = reply_of(&mut client);
        serde_json::from_str::<serde_json::Value>(&reply).unwrap_or_else(|_| panic!("{reply:?}"))
    };
    let garbage = ask(b"\x16\x03\x01 not json\n");
    assert_eq!(garbage["ok"], false);
    assert!(garbage["error"].as_str().unwrap().starts_with("not a request: "), "{garbage}");
    let oversized = ask(&[b'['; 8192]);
    assert_eq!(oversized["error"], "a request is one line of at most 4096 bytes");
    let other_version = ask(b"{\"version\":7,\"command\":\"status\"}\n");
    assert_eq!(other_version["error"], "this geofence speaks version 1 of the control protocol, not 7");
    let status = ask(b"{\"version\":1,\"command\":\"counters\"}\n");
    assert_eq!((status["ok"].as_bool(), status["result"]["accepted"].as_u64()), (Some(true), Some(3)));

    // The socket is root's: another user cannot even connect.
    let nobody = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_geofence"), "status"])
        .arg("--control")
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    assert!(text(&nobody.stderr).contains("run this as root"), "{}", text(&nobody.stderr));
    let (ok, _, stderr) = geofence.stop();
    assert!(ok, "{stderr}");
}

#[test]
fn a_second_geofence_on_the_same_socket_is_refused_before_it_takes_a_queue() {
    if !kernel_tests_possible() {
        return;
    }
    let pair = NetnsPair::new();
    let (_dir, path) = config(&only("GB"));
    let geofence = pair.start_geofence(&path, 0);
    let second = std::process::Command::new("ip")
        .args(["netns", "exec", &pair.server, env!("CARGO_BIN_EXE_geofence"), "run", "--config"])
        .arg(&path)
        .arg("--control")
        .arg(geofence.control())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let said = text(&second.stderr);
    assert!(said.contains(&format!("another geofence answers on {}", geofence.control().display())), "{said}");
    assert!(!said.contains("serving queue"), "{said}");
    assert!(geofence.ask(&["status"]).status.success(), "the first one still answers");
    assert!(geofence.stop().0);
}
