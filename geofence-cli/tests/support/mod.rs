//! A throw-away pair of network namespaces joined by a veth link, for tests that send real packets
//! through the real kernel. Nothing leaves the pair: neither namespace has another interface.
//!
//! The server namespace has 192.0.2.1 and 2001:db8::1; the client namespace holds whatever
//! documentation-range source addresses a test gives it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub mod http;

pub const SERVER_V4: &str = "192.0.2.1";
pub const SERVER_V6: &str = "2001:db8::1";
pub const SIP: u16 = 5060;
/// Long enough for packets sent inside the pair to be queued, decided and delivered.
const SETTLE: Duration = Duration::from_millis(300);

/// Whether this machine can run the real-kernel tests; prints why not. In CI they must run.
pub fn kernel_tests_possible() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let tools = ["ip", "iptables", "ip6tables"]
        .iter()
        .all(|tool| Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok());
    if root && tools {
        return true;
    }
    let why = if root { "iproute2 or iptables is missing" } else { "they need root" };
    assert!(std::env::var_os("CI").is_none(), "real-kernel tests cannot run in CI: {why}");
    eprintln!("skipping real-kernel test: {why} (scripts/test runs them as root)");
    false
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The pair; deleted, with everything in it, on drop.
pub struct NetnsPair {
    pub server: String,
    pub client: String,
    client_device: String,
}

impl NetnsPair {
    pub fn new() -> NetnsPair {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id() % 100_000);
        let (vs, vc) = (format!("gvs{id}"), format!("gvc{id}"));
        let pair = NetnsPair { server: format!("gfs-{id}"), client: format!("gfc-{id}"), client_device: vc.clone() };
        sh(&["ip", "netns", "add", &pair.server]);
        sh(&["ip", "netns", "add", &pair.client]);
        sh(&["ip", "link", "add", &vs, "type", "veth", "peer", "name", &vc]);
        sh(&["ip", "link", "set", &vs, "netns", &pair.server]);
        sh(&["ip", "link", "set", &vc, "netns", &pair.client]);
        for (ns, dev) in [(&pair.server, &vs), (&pair.client, &vc)] {
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "route", "add", "default", "dev", dev]);
            sh(&["ip", "-n", ns, "-6", "route", "add", "default", "dev", dev]);
        }
        sh(&["ip", "-n", &pair.server, "addr", "add", &format!("{SERVER_V4}/32"), "dev", &vs]);
        sh(&["ip", "-n", &pair.server, "addr", "add", &format!("{SERVER_V6}/128"), "dev", &vs, "nodad"]);
        pair.in_server(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
        pair.in_server(&["sysctl", "-qw", &format!("net.ipv4.conf.{vs}.rp_filter=0")]);
        pair
    }

    /// Gives the client namespace these source addresses.
    pub fn add_sources(&self, sources: &[&str]) {
        for source in sources {
            let ip: IpAddr = source.parse().unwrap();
            let (prefix, extra) = if ip.is_ipv4() { ("32", None) } else { ("128", Some("nodad")) };
            let address = format!("{source}/{prefix}");
            let mut args = vec!["ip", "-n", &self.client, "addr", "add", &address, "dev", &self.client_device];
            args.extend(extra);
            sh(&args);
        }
    }

    pub fn in_server(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.server];
        full.extend(args);
        sh(&full)
    }

    /// Installs what `geofence rules --config CONFIG` prints, line by line, in the server
    /// namespace: the rules geofence tells admins to use are the ones tested.
    pub fn install_rules(&self, config: &Path) {
        let output =
            Command::new(env!("CARGO_BIN_EXE_geofence")).arg("rules").arg("--config").arg(config).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        // Each line as a shell reads it, as `geofence rules | sh` would (a string match
        // quotes a blank).
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            self.in_server(&["sh", "-c", line]);
        }
    }

    /// Loads what `geofence rules --backend nft --config CONFIG` prints into the server
    /// namespace, each line through `edit` (`None` leaves it out): this kernel has no
    /// CONFIG_NFT_QUEUE, so a test takes out or replaces the queue statements. Returns the
    /// printed ruleset.
    pub fn install_nft_rules(&self, config: &Path, edit: impl Fn(&str) -> Option<String>) -> String {
        let printed = Command::new(env!("CARGO_BIN_EXE_geofence"))
            .args(["rules", "--backend", "nft", "--config"])
            .arg(config)
            .output()
            .unwrap();
        assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
        let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
        let ruleset: String = printed.lines().filter_map(&edit).map(|line| format!("{line}\n")).collect();
        let file = config.with_file_name("ruleset.nft");
        std::fs::write(&file, &ruleset).unwrap();
        let loaded = self.in_server(&["nft", "-f", file.to_str().unwrap()]);
        assert!(loaded.status.success(), "{ruleset}{}", String::from_utf8_lossy(&loaded.stderr));
        printed
    }

    /// Adds iptables (or ip6tables, for `v6`) rules in the server namespace, one a string.
    pub fn iptables(&self, v6: bool, rules: &[&str]) {
        let tool = if v6 { "ip6tables" } else { "iptables" };
        for rule in rules {
            let mut args = vec![tool, "-w"];
            args.extend(rule.split_whitespace());
            self.in_server(&args);
        }
    }

    /// The packet counter of the first rule in `table`'s INPUT chain whose listing contains `needle`.
    pub fn counter(&self, v6: bool, table: &str, needle: &str) -> u64 {
        self.chain_counter(v6, table, "INPUT", needle)
    }

    /// The packet counter of the first rule of `chain` in `table` whose listing contains
    /// `needle`.
    pub fn chain_counter(&self, v6: bool, table: &str, chain: &str, needle: &str) -> u64 {
        let tool = if v6 { "ip6tables" } else { "iptables" };
        let listing = self.in_server(&[tool, "-w", "-t", table, "-L", chain, "-n", "-v", "-x"]);
        let text = String::from_utf8_lossy(&listing.stdout);
        text.lines()
            .skip(2)
            .find(|line| line.contains(needle))
            .and_then(|line| line.split_whitespace().next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no rule with {needle:?} in {table}:\n{text}"))
    }

    /// The kernel's line for `queue` in /proc/net/netfilter/nfnetlink_queue of the server namespace:
    /// (waiting, queue dropped, user dropped, id sequence).
    pub fn queue_stats(&self, queue: u16) -> Option<(u64, u64, u64, u64)> {
        let output = self.in_server(&["cat", "/proc/net/netfilter/nfnetlink_queue"]);
        String::from_utf8_lossy(&output.stdout).lines().find_map(|line| {
            let f: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (f.len() >= 8 && f[0] == u64::from(queue)).then(|| (f[2], f[5], f[6], f[7]))
        })
    }

    /// Starts `geofence run` in the server namespace and waits until its queue is bound.
    /// Its control socket is its own, in a folder of its own.
    pub fn start_geofence(&self, config: &Path, queue: u16) -> Geofence {
        let folder = tempfile::tempdir().unwrap();
        let control = folder.path().join("control.sock");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server, env!("CARGO_BIN_EXE_geofence"), "run", "--config"])
            .arg(config)
            .arg("--control")
            .arg(&control)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("geofence starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.queue_stats(queue).is_none() {
            assert!(Instant::now() < deadline, "geofence did not bind queue {queue}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Geofence { child: Some(child), control, _folder: folder }
    }

    /// Runs `work` on a thread that has entered the namespace `name` (only that thread moves).
    pub fn within<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let file = File::open(Path::new("/var/run/netns").join(name)).expect("namespace file");
        std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            work()
        })
    }

    /// A UDP server on port 5060 (IPv4 and IPv6) that records who sent what, until dropped.
    pub fn udp_server(&self) -> UdpServer {
        let received = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (log, halt) = (Arc::clone(&received), Arc::clone(&stop));
        let thread = NetnsPair::within(&self.server, move || {
            let v4 = UdpSocket::bind((SERVER_V4, SIP)).unwrap();
            let v6 = UdpSocket::bind((SERVER_V6, SIP)).unwrap();
            for socket in [&v4, &v6] {
                socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            }
            ready_tx.send(()).unwrap();
            let mut buffer = [0u8; 2048];
            while !halt.load(Ordering::Relaxed) {
                for socket in [&v4, &v6] {
                    while let Ok((_, from)) = socket.recv_from(&mut buffer) {
                        *log.lock().unwrap().entry(from.ip()).or_default() += 1;
                    }
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).expect("server ready");
        UdpServer { received, stop, thread: Some(thread) }
    }

    /// Kamailio (Debian's `kamailio`, which scripts/install-deps installs) on the server's
    /// port 5060, IPv4 and IPv6, with the config `tests/kamailio/NAME`, until dropped.
    pub fn kamailio(&self, name: &str) -> Kamailio {
        let folder = tempfile::tempdir().unwrap();
        let log = folder.path().join("kamailio.log");
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio").join(name);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server, "kamailio", "-DD", "-E", "-f"])
            .arg(&config)
            .arg("-Y")
            .arg(folder.path())
            .arg("-w")
            .arg(folder.path())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("kamailio starts (scripts/install-deps installs it)");
        let kamailio = Kamailio { child, log, _folder: folder };
        let sockets =
            std::fs::read_to_string(&config).unwrap().lines().filter(|line| line.starts_with("listen=")).count();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = self.in_server(&["ss", "-lnut", "sport", "= :5060"]);
            if String::from_utf8_lossy(&listening.stdout).matches(":5060").count() >= sockets {
                return kamailio;
            }
            assert!(Instant::now() < deadline, "kamailio did not listen: {}", kamailio.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `count` SIP OPTIONS datagrams from each source (given with `add_sources`) to the
    /// server, from the client namespace, and gives them time to arrive.
    pub fn send_sip(&self, sources: &[&str], count: usize) {
        let sources: Vec<IpAddr> = sources.iter().map(|s| s.parse().unwrap()).collect();
        NetnsPair::within(&self.client, move || {
            for source in sources {
                let server: IpAddr = if source.is_ipv4() { SERVER_V4 } else { SERVER_V6 }.parse().unwrap();
                let socket = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
                let packet = geofence_core::sample::sip_options(source, server);
                let header = if source.is_ipv4() { 28 } else { 48 };
                for _ in 0..count {
                    socket.send_to(&packet[header..], (server, SIP)).unwrap();
                }
            }
        })
        .join()
        .unwrap();
        std::thread::sleep(SETTLE);
    }

    /// Sends `count` datagrams from one socket of `source` (one flow), 20 ms apart as
    /// retransmissions are (the kernel queues every packet that arrives before the first one's
    /// verdict), then lets them arrive.
    pub fn send_flow(&self, source: &str, count: usize) {
        let source: IpAddr = source.parse().unwrap();
        NetnsPair::within(&self.client, move || {
            let server: IpAddr = if source.is_ipv4() { SERVER_V4 } else { SERVER_V6 }.parse().unwrap();
            let socket = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
            for _ in 0..count {
                socket.send_to(b"OPTIONS sip:100@geofence SIP/2.0\r\n\r\n", (server, SIP)).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .join()
        .unwrap();
        std::thread::sleep(SETTLE);
    }

    /// Sends one datagram from `source` to the server's `port`, then lets it arrive.
    pub fn probe(&self, source: &str, port: u16) {
        let source: IpAddr = source.parse().unwrap();
        NetnsPair::within(&self.client, move || {
            let server: IpAddr = if source.is_ipv4() { SERVER_V4 } else { SERVER_V6 }.parse().unwrap();
            UdpSocket::bind(SocketAddr::new(source, 0)).unwrap().send_to(b"probe", (server, port)).unwrap();
        })
        .join()
        .unwrap();
        std::thread::sleep(SETTLE);
    }

    /// Starts sending a SIP OPTIONS datagram from each source (one socket each: one flow a
    /// source) to the server, round after round with `pause` between, until stopped.
    pub fn steady_sip(&self, sources: &[&str], pause: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        let thread = {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
            NetnsPair::within(&self.client, move || {
                let sockets: Vec<UdpSocket> =
                    sources.iter().map(|s| UdpSocket::bind((s.as_str(), 0)).unwrap()).collect();
                while !stop.load(Ordering::Relaxed) {
                    for socket in &sockets {
                        socket.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", (SERVER_V4, SIP)).unwrap();
                    }
                    rounds.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(pause);
                }
            })
        };
        Traffic { stop, rounds, thread }
    }

    /// Runs sipp in the client namespace: `calls` of scenario `scenario` (a file of
    /// tests/sipp/) from `source`, port `port`, to the server's port 5060, with `keys` for the
    /// scenario's fields and `user` as the extension; waits for sipp to finish, then lets the
    /// datagrams arrive.
    pub fn sipp(&self, scenario: &str, source: &str, port: u16, user: &str, keys: &[(&str, &str)], calls: u32) {
        self.sipp_over("u1", scenario, source, port, user, keys, calls);
    }

    /// [`NetnsPair::sipp`] over TCP, every call on one connection.
    pub fn sipp_tcp(&self, scenario: &str, source: &str, port: u16, user: &str, keys: &[(&str, &str)], calls: u32) {
        self.sipp_over("t1", scenario, source, port, user, keys, calls);
    }

    /// sipp with transport mode `transport` (its `-t`).
    #[allow(clippy::too_many_arguments)]
    fn sipp_over(
        &self,
        transport: &str,
        scenario: &str,
        source: &str,
        port: u16,
        user: &str,
        keys: &[(&str, &str)],
        calls: u32,
    ) {
        let ip: IpAddr = source.parse().unwrap();
        let server = if ip.is_ipv4() { format!("{SERVER_V4}:{SIP}") } else { format!("[{SERVER_V6}]:{SIP}") };
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(scenario);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.client, "sipp", &server, "-sf"])
            .arg(&file)
            .args(["-t", transport, "-i", source, "-p", &port.to_string(), "-s", user, "-m", &calls.to_string()])
            .args(["-r", "20", "-nostdin", "-timeout", "20s", "-timeout_error", "-trace_err"])
            .current_dir(std::env::temp_dir());
        for (key, value) in keys {
            command.args(["-key", key, value]);
        }
        let output = command.output().expect("sipp runs (scripts/install-deps installs sip-tester)");
        assert!(
            output.status.success(),
            "sipp {scenario} from {source} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(SETTLE);
    }

    /// Sends raw IP packets (header included) from the client namespace.
    pub fn send_raw(&self, packets: Vec<Vec<u8>>) {
        NetnsPair::within(&self.client, move || {
            use socket2::{Domain, Protocol, Socket, Type};
            // IPPROTO_RAW: the packet carries its own IP header.
            let v4 = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW))).unwrap();
            let v6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(IPPROTO_RAW))).unwrap();
            for packet in packets {
                let (socket, to): (&Socket, SocketAddr) = match packet.first().map(|b| b >> 4) {
                    Some(6) => (&v6, (SERVER_V6.parse::<IpAddr>().unwrap(), 0).into()),
                    _ => (&v4, (SERVER_V4.parse::<IpAddr>().unwrap(), 0).into()),
                };
                // The kernel refuses some damaged headers outright; those never reach the queue.
                let _ = socket.send_to(&packet, &to.into());
            }
        })
        .join()
        .unwrap();
        std::thread::sleep(SETTLE);
    }
}

const IPPROTO_RAW: i32 = 255;

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A running `geofence run`.
pub struct Geofence {
    child: Option<Child>,
    control: PathBuf,
    _folder: tempfile::TempDir,
}

impl Geofence {
    /// Its control socket.
    pub fn control(&self) -> &Path {
        &self.control
    }

    /// Runs `geofence ARGS --control SOCKET` against it, from outside its namespace (a Unix
    /// socket is a file, not a network address).
    pub fn ask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_geofence")).args(args).arg("--control").arg(&self.control).output().unwrap()
    }

    /// The process id (of geofence itself: `ip netns exec` replaces itself with it).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |child| child.id() as i32)
    }

    /// Sends a signal and gives geofence a moment to act on it.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Stops it with SIGTERM and returns (exit success, stdout, stderr).
    pub fn stop(mut self) -> (bool, String, String) {
        let child = self.child.take().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The `verdicts=N` line it prints on exit.
    pub fn verdicts(stdout: &str) -> u64 {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("verdicts="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no verdicts= line in {stdout:?}"))
    }
}

impl Drop for Geofence {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running kamailio, stopped on drop.
pub struct Kamailio {
    child: Child,
    log: PathBuf,
    _folder: tempfile::TempDir,
}

impl Kamailio {
    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The requests of `method` from `source` it received, as its config logs them
    /// (`geofence-test: METHOD from SOURCE`).
    pub fn received(&self, method: &str, source: &str) -> usize {
        let line = format!("geofence-test: {method} from {source}\n");
        self.log().matches(&line).count()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The UDP server; stops its thread on drop.
/// SIP traffic that `steady_sip` keeps sending.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl Traffic {
    /// Stops the traffic and says how many rounds were sent: each source sent that many.
    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.rounds.load(Ordering::Relaxed)
    }
}

pub struct UdpServer {
    received: Arc<Mutex<HashMap<IpAddr, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    /// How many datagrams came from `source` so far.
    pub fn count(&self, source: &str) -> usize {
        self.received.lock().unwrap().get(&source.parse::<IpAddr>().unwrap()).copied().unwrap_or(0)
    }

    /// How many datagrams came from `source` once `expected` have, or after 5 s: for verdicts
    /// that take long to give (a panic's backtrace is symbolised first).
    pub fn count_within(&self, source: &str, expected: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.count(source) < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.count(source)
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes a config file using the fixture country database; returns it with its folder.
pub fn config(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geofence.toml");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/countries.csv");
    let mut file = File::create(&path).unwrap();
    writeln!(file, "database = {:?}", fixture.canonicalize().unwrap().display().to_string()).unwrap();
    file.write_all(body.as_bytes()).unwrap();
    (dir, path)
}
