//! The `geofence` command as an admin meets it: output, messages and exit codes. No root needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use geofence_core::sample;

fn geofence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_geofence")).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path).display().to_string()
}

#[test]
fn lookup_answers_stdin_line_by_line_and_reports_bad_lines_with_status_1() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_geofence"))
        .args(["lookup", "--db", &repo("tests/fixtures/countries.csv")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"192.0.2.1\n2001:db8:2::9\n\nnonsense\n203.0.113.250\n").unwrap();
    let output = child.wait_with_output().unwrap();
    // The embedded ASN table knows no documentation address.
    assert_eq!(text(&output.stdout), "192.0.2.1 GB -\n2001:db8:2::9 CN -\n203.0.113.250 - -\n");
    assert_eq!(text(&output.stderr), "geofence: line 4: `nonsense` is not an IP address\n");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn lookup_uses_the_embedded_databases_by_default() {
    let output = geofence(&["lookup", "1.1.1.1", "2a00:1450:4001::1"]);
    assert_eq!(text(&output.stdout), "1.1.1.1 AU AS13335 Cloudflare, Inc.\n2a00:1450:4001::1 DE AS15169 Google LLC\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn db_compile_and_info_handle_asn_tables() {
    let dir = tempfile::tempdir().unwrap();
    let compiled = dir.path().join("asn.gfdb");
    let output = geofence(&[
        "db",
        "compile",
        "--asn",
        &repo("tests/fixtures/asn.csv"),
        "-o",
        compiled.to_str().unwrap(),
        "--date",
        "2026-12",
        "--source",
        "geofence fixture",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("4 IPv4 and 2 IPv6 ranges, 3 autonomous systems"),
        "{}",
        text(&output.stdout)
    );
    let info = text(&geofence(&["db", "info", compiled.to_str().unwrap()]).stdout);
    assert!(info.contains("format:    geofence compiled database (ASN)\n"), "{info}");
    assert!(info.contains("source:    geofence fixture\ndate:      2026-12\n"), "{info}");
    assert!(info.contains("systems:   3 (3 with an organisation)\n"), "{info}");
    let csv_info = text(&geofence(&["db", "info", "--asn", &repo("tests/fixtures/asn.csv")]).stdout);
    assert!(csv_info.contains("format:    ASN CSV (start,end,asn,organisation)\n"), "{csv_info}");
    let lookup = geofence(&["lookup", "--asn-db", compiled.to_str().unwrap(), "192.0.2.9"]);
    assert_eq!(text(&lookup.stdout), "192.0.2.9 - AS64500 Example Hosting, Inc.\n");
    let embedded = text(&geofence(&["db", "info", "--asn"]).stdout);
    assert!(embedded.contains("ranges:    411961 IPv4, 103197 IPv6\n"), "{embedded}");
    let country = geofence(&["db", "info", &repo("tests/fixtures/asn.csv")]);
    assert_eq!(country.status.code(), Some(3), "an ASN CSV is not a country database");
    let version = text(&geofence(&["--version"]).stdout);
    assert!(version.contains("Embedded ASN data: RouteViews") && version.contains("CC BY 4.0"), "{version}");
}

#[test]
fn errors_are_one_sentence_with_causes_and_documented_exit_codes() {
    let missing = geofence(&["run", "--config", "/nonexistent/geofence.toml"]);
    assert_eq!(
        text(&missing.stderr),
        "geofence: cannot read /nonexistent/geofence.toml\n  caused by: No such file or directory (os error 2)\n"
    );
    assert_eq!(missing.status.code(), Some(3));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "default = \"drop\"\n[[rule]]\ncountry = [\"UK\"]\naction = \"accept\"\n").unwrap();
    let output = geofence(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(
        text(&output.stderr),
        format!("geofence: {}: line 3, column 12: unknown country `UK` (did you mean `GB`?)\n", bad.display())
    );
    assert_eq!(output.status.code(), Some(3));

    let bad_db = dir.path().join("bad.csv");
    std::fs::write(&bad_db, "192.0.2.0,192.0.2.255,GB\n192.0.2.9,nope,GB\n").unwrap();
    let output = geofence(&["lookup", "--db", bad_db.to_str().unwrap(), "192.0.2.1"]);
    assert_eq!(
        text(&output.stderr),
        format!("geofence: {}: line 2: `nope` is not an IP address or an address number\n", bad_db.display())
    );
    assert_eq!(output.status.code(), Some(3));

    let flag = geofence(&["lookup", "--frobnicate"]);
    assert!(
        text(&flag.stderr).starts_with("error: unexpected argument '--frobnicate' found"),
        "{}",
        text(&flag.stderr)
    );
    assert_eq!(flag.status.code(), Some(2));
}

#[test]
fn config_check_prints_the_policy_as_understood() {
    let output = geofence(&["config", "check", &repo("examples/asterisk.toml")]);
    let expected = format!(
        "{}: valid\nqueue 0, fail-closed, database (embedded)\n\
         1. lan                  accept if protocol udp and port 5060 and source in rfc1918\n\
         2. allowed-countries    accept if protocol udp and port 5060 and country in {{AC AT AU BE CA CH DE DK ES FI FR GB GG IE IM IS JE LU NL NO PL SE US ZA}}\n\
         3. everyone-else        drop if protocol udp and port 5060\n\
         otherwise accept; packets that cannot be parsed: drop\n",
        repo("examples/asterisk.toml")
    );
    assert_eq!(text(&output.stdout), expected);
    let with_flag = geofence(&["config", "check", "--config", &repo("examples/asterisk.toml")]);
    assert_eq!(text(&with_flag.stdout), expected, "--config, as the other subcommands take it");
}

/// The command, killed if it has not ended after 10 s: what a test of a hang must not do itself.
fn geofence_within_10s(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("10")
        .arg(env!("CARGO_BIN_EXE_geofence"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn fifos_devices_and_directories_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("geofence.toml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let fifo = fifo.to_str().unwrap();
    let cases = [
        (vec!["config", "check", "--config", fifo], format!("geofence: {fifo} is a FIFO, not a regular file\n")),
        (
            vec!["lookup", "--db", "/dev/zero", "192.0.2.1"],
            "geofence: /dev/zero is a character device, not a regular file\n".into(),
        ),
        (vec!["lookup", "--db", "/tmp", "192.0.2.1"], "geofence: /tmp is a directory, not a regular file\n".into()),
    ];
    for (args, message) in cases {
        let output = geofence_within_10s(&args);
        assert_eq!((output.status.code(), text(&output.stderr)), (Some(3), message), "{args:?}");
    }
}

#[test]
fn run_help_is_an_admins_reference() {
    let help = text(&geofence(&["run", "--help"]).stdout);
    for needed in [
        "CAP_NET_ADMIN",
        "geofence rules --config FILE",
        "--queue-bypass",
        "SIGHUP",
        "SIGUSR1",
        "SIGTERM",
        "RUST_LOG",
        "Exit codes",
        "repeat it to layer several",
    ] {
        assert!(help.contains(needed), "`{needed}` missing from:\n{help}");
    }
}

#[test]
fn rules_print_for_both_backends() {
    let iptables = text(&geofence(&["rules", "--config", &repo("examples/asterisk.toml")]).stdout);
    assert_eq!(iptables.lines().count(), 10);
    assert!(iptables.starts_with("iptables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate INVALID -j DROP\n"));
    assert!(iptables
        .contains("iptables -w -A INPUT -p udp --dport 5060 -m conntrack --ctstate NEW -j NFQUEUE --queue-num 0\n"));
    let nft = text(&geofence(&["rules", "--config", &repo("examples/asterisk.toml"), "--backend", "nft"]).stdout);
    assert!(nft.starts_with("table inet geofence {"), "{nft}");
}

#[test]
fn completions_are_printed() {
    let output = geofence(&["completions", "bash"]);
    assert!(text(&output.stdout).contains("_geofence()"));
}

/// The packets of the capture fixtures: one each of the how-to's cases, plus an ARP frame.
fn capture_packets() -> Vec<Vec<u8>> {
    let ip = |s: &str| s.parse().unwrap();
    let server4 = ip("192.0.2.1");
    vec![
        sample::sip_options(ip("10.1.2.3"), ip("10.0.0.1")),
        sample::sip_options(ip("192.0.2.10"), server4),
        sample::sip_options(ip("198.51.100.23"), server4),
        sample::sip_options(ip("198.51.100.23"), server4),
        sample::sip_options(ip("203.0.113.5"), server4),
        sample::sip_options(ip("2001:db8:1::10"), ip("2001:db8::1")),
        sample::sip_options(ip("2001:db8:2::10"), ip("2001:db8::1")),
        sample::udp_packet(ip("198.51.100.23"), server4, (4000, 8080), b"x"),
        sample::sip_options(ip("192.0.2.10"), server4)[..24].to_vec(),
    ]
}

fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    frame.extend(if ip[0] >> 4 == 6 { [0x86, 0xdd] } else { [0x08, 0x00] });
    frame.extend(ip);
    frame
}

fn arp() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend([2, 0, 0, 0, 0, 2, 0x08, 0x06]);
    frame.extend([0u8; 28]);
    frame
}

/// A classic pcap file (microsecond, little-endian) of `frames` with link type `link`.
fn pcap(link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut file = Vec::new();
    file.extend(0xa1b2_c3d4u32.to_le_bytes());
    file.extend(2u16.to_le_bytes());
    file.extend(4u16.to_le_bytes());
    file.extend([0u8; 8]);
    file.extend(65535u32.to_le_bytes());
    file.extend(link.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        file.extend((1_700_000_000 + i as u32).to_le_bytes());
        file.extend(0u32.to_le_bytes());
        file.extend((frame.len() as u32).to_le_bytes());
        file.extend((frame.len() as u32).to_le_bytes());
        file.extend(frame);
    }
    file
}

/// A pcapng file: one section, an interface of link type `link`, an enhanced packet a frame.
fn pcapng(link: u16, frames: &[Vec<u8>]) -> Vec<u8> {
    let block = |kind: u32, body: Vec<u8>| {
        let length = 12 + body.len() as u32;
        let mut out = kind.to_le_bytes().to_vec();
        out.extend(length.to_le_bytes());
        out.extend(body);
        out.extend(length.to_le_bytes());
        out
    };
    let mut file =
        block(0x0a0d_0d0a, [0x1a2b_3c4du32.to_le_bytes().to_vec(), vec![1, 0, 0, 0], vec![0xff; 8]].concat());
    file.extend(block(1, [link.to_le_bytes().to_vec(), vec![0, 0], 65535u32.to_le_bytes().to_vec()].concat()));
    for frame in frames {
        let mut body = vec![0u8; 4];
        body.extend([0u8; 8]);
        body.extend((frame.len() as u32).to_le_bytes());
        body.extend((frame.len() as u32).to_le_bytes());
        body.extend(frame);
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        file.extend(block(6, body));
    }
    file
}

fn linux_cooked_v2(ip: &[u8]) -> Vec<u8> {
    let mut frame = if ip[0] >> 4 == 6 { vec![0x86, 0xdd] } else { vec![0x08, 0x00] };
    frame.extend([0u8; 18]);
    frame.extend(ip);
    frame
}

const EXPECTED_REPORT: &str = "10 frames, 9 IP packets decided, 1 not IP

verdict                 packets
accept                        4
accept with mark              0
drop                          5
  unparsable                  1

country                accepted    dropped
CN                            1          3
GB                            2          0
RU                            0          1
unknown                       1          0

rule                    packets
(default)                     1
(malformed)                   1
allowed-countries             2
everyone-else                 4
lan                           1

top dropped sources                         packets
198.51.100.23 (CN)                                2
203.0.113.5 (RU)                                  1
2001:db8:2::10 (CN)                               1
";

fn check(capture: &[u8], name: &str) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join(name);
    std::fs::write(&path, capture).unwrap();
    let output = geofence(&[
        "check",
        "--config",
        &repo("examples/asterisk.toml"),
        "--db",
        &repo("tests/fixtures/countries.csv"),
        "--pcap",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    (text(&output.stdout), path)
}

#[test]
fn check_reports_the_same_table_for_every_capture_format_and_link_type() {
    let packets = capture_packets();
    let mut ethernet_frames: Vec<Vec<u8>> = packets.iter().map(|p| ethernet(p)).collect();
    ethernet_frames.push(arp());
    let mut raw_frames = packets.clone();
    raw_frames.push(vec![0x10, 0x20]);
    let mut cooked_frames: Vec<Vec<u8>> = packets.iter().map(|p| linux_cooked_v2(p)).collect();
    cooked_frames.push(vec![0x08, 0x06, 0, 0]);
    let captures = [
        (pcap(1, &ethernet_frames), "ethernet.pcap"),
        (pcapng(1, &ethernet_frames), "ethernet.pcapng"),
        (pcapng(276, &cooked_frames), "cooked2.pcapng"),
    ];
    for (capture, name) in captures {
        let (report, path) = check(&capture, name);
        assert_eq!(report, format!("{}: {EXPECTED_REPORT}", path.display()), "{name}");
    }
    // Raw IP: the 2-byte junk frame is "IP" by link type and counts as unparsable.
    let (report, _) = check(&pcap(101, &raw_frames), "raw.pcap");
    assert!(report.contains("10 frames, 10 IP packets decided, 0 not IP"), "{report}");
    assert!(report.contains("  unparsable                  2"), "{report}");
}

#[test]
fn check_refuses_what_is_not_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are not packets, just words in a file that is long enough").unwrap();
    let output = geofence(&["check", "--config", &repo("examples/asterisk.toml"), "--pcap", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).starts_with(&format!("geofence: {}: not a pcap or pcapng capture", path.display())),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn config_check_says_what_organisation_patterns_resolve_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geofence.toml");
    let config = format!(
        "default = \"accept\"\nasn_database = {:?}\n[[rule]]\nname = \"hosting\"\nports = [5060]\n\
         as_organisation = [\"example hosting\", \"Nowhere Ltd\"]\naction = \"drop\"\n",
        repo("tests/fixtures/asn.csv")
    );
    std::fs::write(&path, config).unwrap();
    let output = geofence(&["config", "check", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("rule `hosting`: as_organisation \"example hosting\": 1 system: AS64500\n"), "{stdout}");
    assert!(
        stdout.contains(
            "warning: rule `hosting`: as_organisation \"Nowhere Ltd\" names no autonomous system in the ASN database\n"
        ),
        "{stdout}"
    );
}

#[test]
fn lookup_with_asn_data_prints_the_system_and_its_organisation() {
    let output = geofence(&[
        "lookup",
        "--asn-db",
        &repo("tests/fixtures/asn.csv"),
        "192.0.2.9",
        "2001:db8:1:1::5",
        "203.0.113.1",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "192.0.2.9 - AS64500 Example Hosting, Inc.\n2001:db8:1:1::5 - AS64501 Example Broadband\n203.0.113.1 - -\n"
    );
}

#[test]
fn config_check_reads_each_feed_and_names_the_line_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geofence.toml");
    std::fs::write(dir.path().join("drop.txt"), "; DROP\n192.0.2.0/25 ; SBL1\n192.0.2.0/25 ; SBL1 again\n").unwrap();
    std::fs::write(dir.path().join("drop_v6.json"), "{\"cidr\":\"2001:db8:400::/40\",\"sblid\":\"SBL2\"}\n").unwrap();
    std::fs::write(
        &path,
        "default = \"accept\"\n[feeds]\ndrop = { files = [\"drop.txt\", \"drop_v6.json\"] }\n\
         [[rule]]\nname = \"drop\"\nsource = [\"drop\"]\naction = \"drop\"\n",
    )
    .unwrap();
    let output = geofence(&["config", "check", "--config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("1. drop                 drop if source in drop\n"), "{stdout}");
    assert!(
        stdout.contains("feed drop: 3 networks read (1 IPv4 and 1 IPv6 distinct) from drop.txt, drop_v6.json\n"),
        "{stdout}"
    );

    std::fs::write(dir.path().join("drop.txt"), "; DROP\n192.0.2.0/25 ; SBL1\n<!DOCTYPE html>\n").unwrap();
    let output = geofence(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let expected = format!(
        "geofence: {}: line 3: `<!DOCTYPE html>` is not an address or CIDR network\n",
        dir.path().join("drop.txt").display()
    );
    assert_eq!(text(&output.stderr), expected);
}

/// examples/voip-blocklists.toml in a folder of its own, with the files it names made of
/// documentation ranges: AS14061 holds 192.0.2.64/26 and the trunk 203.0.113.10; each feed
/// lists one GB source.
fn voip_blocklists_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo("examples/voip-blocklists.toml"), dir.path().join("geofence.toml")).unwrap();
    let asn = "192.0.2.64,192.0.2.127,14061,\"Example Hosting, LLC\"\n203.0.113.0,203.0.113.255,14061,\"Example Hosting, LLC\"\n";
    std::fs::write(dir.path().join("asn-ipv4.csv"), asn).unwrap();
    std::fs::write(dir.path().join("asn-ipv6.csv"), "2001:db8:9::,2001:db8:9:ffff:ffff:ffff:ffff:ffff,64501,Example\n")
        .unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    std::fs::write(dir.path().join("feeds/voipbl.txt"), "# VoIPBL\n192.0.2.20/32\n").unwrap();
    std::fs::write(dir.path().join("feeds/drop_v4.json"), "{\"cidr\":\"192.0.2.30/32\",\"sblid\":\"SBL1\"}\n").unwrap();
    std::fs::write(dir.path().join("feeds/apiban.json"), "{\"ipaddress\":[\"192.0.2.40\"],\"ID\":\"7\"}").unwrap();
    dir
}

#[test]
fn the_voip_blocklists_example_lets_trunks_and_customers_in_and_keeps_hosting_and_blocklisted_sources_out() {
    let dir = voip_blocklists_example();
    let config = dir.path().join("geofence.toml");
    let server = "192.0.2.1".parse().unwrap();
    let sources = [
        "10.1.2.3",
        "203.0.113.10",
        "192.0.2.10",
        "192.0.2.70",
        "192.0.2.20",
        "192.0.2.30",
        "192.0.2.40",
        "198.51.100.23",
    ];
    let packets: Vec<Vec<u8>> = sources.iter().map(|s| sample::sip_options(s.parse().unwrap(), server)).collect();
    let report = check_capture(dir.path(), config.to_str().unwrap(), &packets);
    let rules = "rule                    packets\nallowed-countries             1\nblocklisted                   3\n\
                 everyone-else                 1\nhosting                       1\ntrunks-and-lan                2\n";
    assert!(report.contains(rules), "{report}");
    assert!(report.contains("accept                        3\n"), "{report}");
}

/// `geofence check`'s report on a raw-IP capture of `packets` (written into `dir`) under
/// `config`, with the fixture countries.
fn check_capture(dir: &Path, config: &str, packets: &[Vec<u8>]) -> String {
    let capture = dir.join("capture.pcap");
    std::fs::write(&capture, pcap(101, packets)).unwrap();
    let output = geofence(&[
        "check",
        "--config",
        config,
        "--db",
        &repo("tests/fixtures/countries.csv"),
        "--pcap",
        capture.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// A SIP request from `source` to 192.0.2.1:5060 with this Request-URI host and User-Agent.
fn sip_request(source: &str, host: &str, agent: &str) -> Vec<u8> {
    let payload = format!(
        "REGISTER sip:{host} SIP/2.0\r\nVia: SIP/2.0/UDP {source}:5062;branch=z9hG4bK1\r\n\
         From: <sip:1001@{host}>;tag=1\r\nTo: <sip:1001@{host}>\r\nCall-ID: 1@{source}\r\nCSeq: 1 REGISTER\r\n\
         User-Agent: {agent}\r\nContent-Length: 0\r\n\r\n"
    );
    sample::udp_packet(source.parse().unwrap(), "192.0.2.1".parse().unwrap(), (5062, 5060), payload.as_bytes())
}

#[test]
fn the_sip_example_drops_scanners_and_address_sweeps_from_allowed_countries_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let packets = [
        // From GB, a phone, then scanners' requests.
        sip_request("192.0.2.10", "pbx.example.com", "Yealink SIP-T46S 66.86.0.15"),
        sip_request("192.0.2.11", "pbx.example.com", "friendly-scanner"),
        sip_request("192.0.2.12", "pbx.example.com", "PortSIP VoIP SDK 11.2"),
        sip_request("192.0.2.13", "192.0.2.1", "Yealink SIP-T46S 66.86.0.15"),
        sample::udp_packet("192.0.2.14".parse().unwrap(), "192.0.2.1".parse().unwrap(), (5062, 5060), b"\x00\x01junk"),
        // A trunk may send anything.
        sip_request("203.0.113.10", "192.0.2.1", "friendly-scanner"),
        // From CN, a phone.
        sip_request("198.51.100.5", "pbx.example.com", "Yealink SIP-T46S 66.86.0.15"),
    ];
    let report = check_capture(dir.path(), &repo("examples/voip-sip.toml"), &packets);
    let rules = "rule                    packets\naddress-literal               1\nallowed-countries             1\n\
                 everyone-else                 1\nnot-sip                       1\nscanners                      2\n\
                 trunks                        1\n";
    assert!(report.contains(rules), "{report}");
    for line in [
        "scanners             REGISTER                     friendly-scanner                                  1\n",
        "scanners             REGISTER                     PortSIP VoIP SDK 11.2                             1\n",
        "address-literal      REGISTER to an address       Yealink SIP-T46S 66.86.0.15                       1\n",
        "not-sip              not SIP (the first line is neither a SIP request line nor a status line) -",
    ] {
        assert!(report.contains(line), "{line:?} in\n{report}");
    }
    assert!(!report.contains("everyone-else        REGISTER"), "only drops by SIP rules are listed:\n{report}");
}

#[test]
fn a_policy_that_bans_gets_its_sets_from_rules_and_bans_refuses_what_it_cannot_read() {
    let voip = repo("examples/voip-sip.toml");
    let iptables = geofence(&["rules", "--config", &voip]);
    assert!(iptables.status.success(), "{}", text(&iptables.stderr));
    let lines: Vec<String> = text(&iptables.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "ipset create geofence-ban4 hash:net family inet timeout 3600 maxelem 65536 -exist");
    assert_eq!(lines[1], "iptables -w -A INPUT -m set --match-set geofence-ban4 src -j DROP");
    let nft = geofence(&["rules", "--config", &voip, "--backend", "nft"]);
    assert_eq!(nft.status.code(), Some(3));
    assert!(text(&nft.stderr).contains("write sets = \"nft\", or use the other backend"), "{}", text(&nft.stderr));
    for (args, says) in [
        (&["bans", "add", "300.1.1.1"][..], "`300.1.1.1` is not an address or network"),
        (&["bans", "add", "192.0.2.9", "--for", "30d"], "`30d` is not a duration of 1ms to 24d"),
        (&["bans", "del", "192.0.2.0/33"], "`192.0.2.0/33` is not an address or network"),
    ] {
        let refused = geofence(args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(text(&refused.stderr).contains(says), "{args:?}: {}", text(&refused.stderr));
    }
}
