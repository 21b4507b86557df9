//! `geofence demo`: the whole path in one command, inside a throw-away pair of network
//! namespaces. The filter runs in one with examples/asterisk.toml (plus a honeypot port that
//! bans) and the embedded database, SIP OPTIONS come from the other, and a table shows what
//! arrived and why; then a scanner from an allowed country probes the honeypot and is banned.
//!
//! The sources are documentation addresses (RFC 5737, RFC 3849): a small overlay maps them to
//! countries on top of the embedded database, so no real address is ever used, and nothing
//! leaves the pair (neither namespace has another interface).

use std::fs::File;
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use geofence_core::db::{self, encode_compiled};
use geofence_core::{sample, Config};
use geofence_nfq::rules;
use nix::sched::{setns, CloneFlags};

use crate::error::CliError;
use crate::files;

const CONFIG: &str = include_str!("../data/asterisk.toml");
/// Documentation ranges as countries, layered over the embedded database for the demo.
const OVERLAY: &str = "192.0.2.0,192.0.2.127,GB\n192.0.2.128,192.0.2.255,US\n198.51.100.0,198.51.100.255,CN\n\
203.0.113.0,203.0.113.127,RU\n203.0.113.128,203.0.113.191,DE\n2001:db8:1::,2001:db8:1:ffff:ffff:ffff:ffff:ffff,GB\n\
2001:db8:2::,2001:db8:2:ffff:ffff:ffff:ffff:ffff,CN\n2001:db8:4::,2001:db8:4:ffff:ffff:ffff:ffff:ffff,NZ\n";
/// Who calls: (source, who they stand for).
const CALLERS: [(&str, &str); 10] = [
    ("10.9.9.9", "phone on the LAN"),
    ("192.0.2.10", "SIP trunk provider"),
    ("192.0.2.200", "roaming salesperson"),
    ("203.0.113.130", "customer"),
    ("198.51.100.23", "toll-fraud scanner"),
    ("203.0.113.5", "toll-fraud scanner"),
    ("203.0.113.200", "address with no country"),
    ("2001:db8:1::10", "IPv6 softphone"),
    ("2001:db8:2::10", "IPv6 scanner"),
    ("2001:db8:4::10", "IPv6 caller abroad"),
];
/// A scanner in an allowed country (US), which the honeypot gives away.
const SCANNER: &str = "192.0.2.150";
/// The honeypot port, and the rule that bans whoever probes it, put after the LAN rule.
const HONEYPOT_PORT: u16 = 5070;
const HONEYPOT_RULE: &str =
    "[[rule]]\nname = \"honeypot\"\nprotocol = \"udp\"\nports = [5070]\naction = \"ban\"\nban = \"1h\"\n\n";
const SERVER_V4: &str = "192.0.2.1";
const SERVER_V6: &str = "2001:db8::1";

/// Everything the demo made, removed on drop (also after an error or Ctrl-C).
struct Stage {
    server: String,
    client: String,
    folder: PathBuf,
    filter: Option<Child>,
}

/// Stops `geofence run` as an admin would, with SIGTERM, and waits for it.
fn stop_filter(stage: &mut Stage) {
    if let Some(mut filter) = stage.filter.take() {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(filter.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = filter.wait();
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        stop_filter(self);
        for name in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Runs the demo and prints its table.
pub fn demo() -> Result<ExitCode, CliError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(CliError::Demo("the demo creates network namespaces and binds a queue: run it as root".into()));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted)).map_err(CliError::Signals)?;
    }
    let id = std::process::id();
    let mut stage = Stage {
        server: format!("geofence-demo-server-{id}"),
        client: format!("geofence-demo-client-{id}"),
        folder: std::env::temp_dir().join(format!("geofence-demo-{id}")),
        filter: None,
    };
    std::fs::create_dir_all(&stage.folder).map_err(|source| CliError::Write { path: stage.folder.clone(), source })?;
    println!("building namespaces {} and {} joined by veth…", stage.server, stage.client);
    build_pair(&stage)?;
    let config_path = write_inputs(&stage.folder)?;
    install_rules(&stage)?;
    println!("starting geofence run in {} (examples/asterisk.toml, embedded DB + demo overlay)…", stage.server);
    stage.filter = Some(start_filter(&stage, &config_path)?);
    wait_for_queue(&stage)?;
    check_interrupted(&interrupted)?;
    println!("sending SIP OPTIONS from {} callers in {}…\n", CALLERS.len(), stage.client);
    send_calls(&stage.client)?;
    std::thread::sleep(Duration::from_millis(300));
    check_interrupted(&interrupted)?;
    print_table(&stage)?;
    check_interrupted(&interrupted)?;
    show_ban(&stage)?;
    stop_filter(&mut stage);
    println!("\ngeofence's own account, on stopping:");
    let log = std::fs::read_to_string(stage.folder.join("geofence.log")).unwrap_or_default();
    let account = ["counters:", "per country", "per rule", "bans:"];
    for line in log.lines().filter(|l| account.iter().any(|k| l.contains(k))) {
        println!("  {}", line.split_once("] ").map_or(line, |(_, message)| message));
    }
    println!("\nremoving the namespaces.");
    Ok(ExitCode::SUCCESS)
}

fn check_interrupted(flag: &AtomicBool) -> Result<(), CliError> {
    if flag.load(Ordering::Relaxed) {
        return Err(CliError::Demo("interrupted; everything the demo made is removed".into()));
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), CliError> {
    let output = Command::new("ip").args(args).output().map_err(|e| CliError::Demo(format!("cannot run ip: {e}")))?;
    if !output.status.success() {
        return Err(CliError::Demo(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

fn build_pair(stage: &Stage) -> Result<(), CliError> {
    let id = std::process::id();
    let (vs, vc) = (format!("gfds{id}"), format!("gfdc{id}"));
    ip(&["netns", "add", &stage.server])?;
    ip(&["netns", "add", &stage.client])?;
    ip(&["link", "add", &vs, "type", "veth", "peer", "name", &vc])?;
    ip(&["link", "set", &vs, "netns", &stage.server])?;
    ip(&["link", "set", &vc, "netns", &stage.client])?;
    for (ns, dev) in [(&stage.server, &vs), (&stage.client, &vc)] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "route", "add", "default", "dev", dev])?;
        ip(&["-n", ns, "-6", "route", "add", "default", "dev", dev])?;
    }
    ip(&["-n", &stage.server, "addr", "add", &format!("{SERVER_V4}/32"), "dev", &vs])?;
    ip(&["-n", &stage.server, "addr", "add", &format!("{SERVER_V6}/128"), "dev", &vs, "nodad"])?;
    for source in CALLERS.map(|(source, _)| source).into_iter().chain([SCANNER]) {
        let prefix = if source.contains(':') { "128" } else { "32" };
        let address = format!("{source}/{prefix}");
        let mut args = vec!["-n", &stage.client, "addr", "add", &address, "dev", &vc];
        if source.contains(':') {
            args.push("nodad");
        }
        ip(&args)?;
    }
    in_server(stage, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])?;
    in_server(stage, &["sysctl", "-qw", &format!("net.ipv4.conf.{vs}.rp_filter=0")])
}

fn in_server(stage: &Stage, args: &[&str]) -> Result<(), CliError> {
    let mut full = vec!["netns", "exec", &stage.server];
    full.extend(args);
    ip(&full)
}

/// The config, the embedded database as a file, and the overlay.
fn write_inputs(folder: &Path) -> Result<PathBuf, CliError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = folder.join(name);
        std::fs::write(&path, bytes).map_err(|source| CliError::Write { path: path.clone(), source })?;
        Ok::<PathBuf, CliError>(path)
    };
    let (table, provenance) = embedded()?;
    write("embedded.gfdb", &encode_compiled(&table, &provenance))?;
    write("overlay.csv", OVERLAY.as_bytes())?;
    write("asterisk.toml", demo_config().as_bytes())
}

/// examples/asterisk.toml with the honeypot rule after the LAN's.
fn demo_config() -> String {
    CONFIG.replacen(
        "[[rule]]\nname = \"allowed-countries\"",
        &format!("{HONEYPOT_RULE}[[rule]]\nname = \"allowed-countries\""),
        1,
    )
}

fn parse_config() -> Result<Config, CliError> {
    Config::parse(&demo_config()).map_err(|error| CliError::Config { path: "examples/asterisk.toml".into(), error })
}

#[cfg(feature = "embedded-db")]
fn embedded() -> Result<(db::CountryTable, db::Provenance), CliError> {
    db::embedded().map_err(|e| CliError::Database(e.into()))
}

#[cfg(not(feature = "embedded-db"))]
fn embedded() -> Result<(db::CountryTable, db::Provenance), CliError> {
    Err(CliError::NoDatabase)
}

fn install_rules(stage: &Stage) -> Result<(), CliError> {
    let (selectors, options) = rules::for_config(&parse_config()?);
    for line in rules::iptables(&selectors, &options).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        in_server(stage, &words)?;
    }
    // What reached the server, per caller: counted after every verdict.
    for source in CALLERS.map(|(source, _)| source).into_iter().chain([SCANNER]) {
        let tool = if source.contains(':') { "ip6tables" } else { "iptables" };
        in_server(stage, &[tool, "-w", "-t", "security", "-A", "INPUT", "-s", source, "-p", "udp", "--dport", "5060"])?;
    }
    Ok(())
}

fn start_filter(stage: &Stage, config: &Path) -> Result<Child, CliError> {
    let me = std::env::current_exe().map_err(|e| CliError::Demo(format!("cannot find the geofence binary: {e}")))?;
    let log = File::create(stage.folder.join("geofence.log"))
        .map_err(|source| CliError::Write { path: stage.folder.join("geofence.log"), source })?;
    Command::new("ip")
        .args(["netns", "exec", &stage.server])
        .arg(me)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--db")
        .arg(stage.folder.join("embedded.gfdb"))
        .arg("--db")
        .arg(stage.folder.join("overlay.csv"))
        .arg("--control")
        .arg(stage.folder.join("control.sock"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| CliError::Demo(format!("cannot start geofence run: {e}")))
}

fn wait_for_queue(stage: &Stage) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = Command::new("ip")
            .args(["netns", "exec", &stage.server, "cat", "/proc/net/netfilter/nfnetlink_queue"])
            .output();
        if output
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.split_whitespace().next() == Some("0")))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(stage.folder.join("geofence.log")).unwrap_or_default();
            return Err(CliError::Demo(format!("geofence did not bind queue 0:\n{log}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One SIP OPTIONS from every caller.
fn send_calls(client: &str) -> Result<(), CliError> {
    send_from(client, CALLERS.map(|(source, _)| (source, 5060)).to_vec())
}

/// One SIP OPTIONS from each source to each port, sent from a thread that has entered the
/// client namespace.
fn send_from(client: &str, sends: Vec<(&'static str, u16)>) -> Result<(), CliError> {
    let namespace =
        File::open(Path::new("/var/run/netns").join(client)).map_err(|e| CliError::Demo(format!("{client}: {e}")))?;
    std::thread::spawn(move || -> Result<(), String> {
        setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(|e| format!("cannot enter the client namespace: {e}"))?;
        for (source, port) in sends {
            let source: IpAddr = source.parse().map_err(|_| "bad demo address".to_owned())?;
            let server: IpAddr =
                if source.is_ipv4() { SERVER_V4 } else { SERVER_V6 }.parse().map_err(|_| "bad address".to_owned())?;
            let packet = sample::sip_options(source, server);
            let header = if source.is_ipv4() { 28 } else { 48 };
            let socket = UdpSocket::bind((source, 0)).map_err(|e| format!("{source}: {e}"))?;
            socket.send_to(&packet[header..], (server, port)).map_err(|e| format!("{source}: {e}"))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| CliError::Demo("the sender panicked".into()))?
    .map_err(CliError::Demo)
}

fn print_table(stage: &Stage) -> Result<(), CliError> {
    // The same files, loaded the way `geofence run` loaded them, say which rule decided.
    let layers = [stage.folder.join("embedded.gfdb"), stage.folder.join("overlay.csv")];
    let (table, _) = files::load_database(&layers)?;
    let policy = parse_config()?.policy.build(Arc::new(table))?;
    println!("{:<16} {:<24} {:<7} {:<18} {:<8} server got", "source", "who", "country", "rule", "verdict");
    for (source, who) in CALLERS {
        let address: IpAddr = source.parse().map_err(|_| CliError::Demo("bad demo address".into()))?;
        let server: IpAddr = if address.is_ipv4() { SERVER_V4 } else { SERVER_V6 }
            .parse()
            .map_err(|_| CliError::Demo("bad address".into()))?;
        let decision = policy.explain(&sample::sip_options(address, server));
        let received = received(stage, source)?;
        println!(
            "{source:<16} {who:<24} {:<7} {:<18} {:<8} {}",
            policy.country_of(address).map_or("-".to_owned(), |c| c.to_string()),
            decision.rule.unwrap_or("(default)"),
            if decision.verdict == geofence_core::Verdict::Drop { "drop" } else { "accept" },
            if received == 1 { "the OPTIONS" } else { "nothing" }
        );
    }
    Ok(())
}

/// A scanner from an allowed country: its OPTIONS passes, its probe of the honeypot port bans
/// it, and its next OPTIONS dies in the kernel without reaching the queue.
fn show_ban(stage: &Stage) -> Result<(), CliError> {
    println!("\na scanner in an allowed country ({SCANNER}, US), and the honeypot port {HONEYPOT_PORT}:");
    send_from(&stage.client, vec![(SCANNER, 5060)])?;
    std::thread::sleep(Duration::from_millis(300));
    println!("  {:<24}the server got {}", "OPTIONS to 5060:", got(received(stage, SCANNER)?));
    send_from(&stage.client, vec![(SCANNER, HONEYPOT_PORT)])?;
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(stage.folder.join("geofence.log")).unwrap_or_default();
    let banned = log.lines().find_map(|l| l.split_once("] ").map(|(_, m)| m).filter(|m| m.starts_with("banned ")));
    println!("  {:<24}{}", format!("a datagram to {HONEYPOT_PORT}:"), banned.unwrap_or("(no ban logged)"));
    let queued = queue_sequence(stage)?;
    send_from(&stage.client, vec![(SCANNER, 5060)])?;
    std::thread::sleep(Duration::from_millis(300));
    let more = queue_sequence(stage)?.saturating_sub(queued);
    println!(
        "  {:<24}the server got {} in all; the queue saw {more} more (the ban set drops it first)",
        "OPTIONS to 5060 again:",
        got(received(stage, SCANNER)?)
    );
    Ok(())
}

fn got(count: u64) -> &'static str {
    match count {
        0 => "nothing",
        1 => "one OPTIONS",
        _ => "more than one OPTIONS",
    }
}

/// How many packets queue 0 has seen: the id sequence in /proc/net/netfilter/nfnetlink_queue.
fn queue_sequence(stage: &Stage) -> Result<u64, CliError> {
    let output = Command::new("ip")
        .args(["netns", "exec", &stage.server, "cat", "/proc/net/netfilter/nfnetlink_queue"])
        .output()
        .map_err(|e| CliError::Demo(format!("cannot read the queue's counters: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.split_whitespace().next() == Some("0"));
    Ok(line.and_then(|l| l.split_whitespace().nth(7)).and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// How many packets from `source` the server's counting rule saw.
fn received(stage: &Stage, source: &str) -> Result<u64, CliError> {
    let tool = if source.contains(':') { "ip6tables" } else { "iptables" };
    let output = Command::new("ip")
        .args(["netns", "exec", &stage.server, tool, "-w", "-t", "security", "-L", "INPUT", "-n", "-v", "-x"])
        .output()
        .map_err(|e| CliError::Demo(format!("cannot read counters: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .any(|word| word == source || word == format!("{source}/128") || word == format!("{source}/32"))
        })
        .find_map(|line| line.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0))
}
