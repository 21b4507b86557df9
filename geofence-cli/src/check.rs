//! `geofence check`: what a policy would have done to a capture, before it is turned on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use geofence_core::sip::{self, SipMessage};
use geofence_core::{Decision, Looked, Policy, Verdict};
use pcap_parser::{create_reader, Block, Linktype, PcapBlockOwned, PcapError};

use crate::error::CliError;
use crate::files;
use crate::stats::{thousands, Local, Totals};

/// Arguments of `geofence check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The policy file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// A capture (pcap or pcapng; Ethernet, Linux cooked v1/v2 or raw IP link types).
    #[arg(long)]
    pcap: PathBuf,
    /// Country databases, overriding the config's (default: the config's, else the embedded one).
    #[arg(long = "db")]
    databases: Vec<PathBuf>,
}

/// Frames read from a capture, and what became of them.
#[derive(Default)]
struct Tally {
    frames: u64,
    not_ip: u64,
    unsupported_links: Vec<i32>,
    sip: SipDrops,
}

/// The packets dropped by a rule that reads SIP, by what the payload said.
#[derive(Default)]
struct SipDrops {
    /// By rule, then by method (or the payload's kind) and User-Agent.
    by_reason: BTreeMap<(String, String, String), u64>,
}

impl SipDrops {
    fn record(&mut self, policy: &Policy, decision: &Decision<'_>, packet: &[u8]) {
        let by_sip_rule =
            decision.rule_index.and_then(|index| policy.rules().nth(index)).is_some_and(|r| r.reads_payload());
        if decision.verdict != Verdict::Drop || !by_sip_rule {
            return;
        }
        let Ok(meta) = &decision.packet else { return };
        let (what, agent) = match sip::parse(meta.payload(packet)) {
            Ok(SipMessage::Request(request)) => {
                let agent = request.user_agent.map_or("-".into(), printable);
                let method = match request.uri.host_is_address() {
                    true => format!("{} to an address", request.method),
                    false => request.method.to_string(),
                };
                (method, agent)
            }
            Ok(SipMessage::Response { status }) => (format!("response {status}"), "-".into()),
            Ok(SipMessage::KeepAlive) => ("keep-alive".into(), "-".into()),
            Err(error) => (format!("not SIP ({error})"), "-".into()),
        };
        let rule = decision.rule.unwrap_or_default().to_owned();
        *self.by_reason.entry((rule, what, agent)).or_default() += 1;
    }
}

/// A header value for a terminal: at most 40 characters, control characters escaped.
fn printable(value: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(value).chars().take(40).collect();
    text.escape_debug().to_string()
}

/// Decides every IP packet of the capture and prints what would have been accepted and dropped:
/// per verdict, per country, per rule, and the top dropped sources.
pub fn check(args: &CheckArgs) -> Result<ExitCode, CliError> {
    let policy = files::load_policy(&args.config, &args.databases)?.policy;
    let names: Vec<String> = policy.rules().map(|rule| rule.name().to_owned()).collect();
    let totals = Mutex::new(Totals::default());
    let mut local = Local::new(names.len());
    let mut tally = Tally::default();
    let mut sip_drops = SipDrops::default();
    read_capture(&args.pcap, &mut tally, |packet| {
        let decision = explain_fully(&policy, packet);
        sip_drops.record(&policy, &decision, packet);
        local.record(&decision);
        if local.is_full() {
            local.flush(&totals, &names);
        }
    })?;
    local.flush(&totals, &names);
    tally.sip = sip_drops;
    let mut totals = totals.into_inner().unwrap_or_default();
    print_report(&args.pcap, &tally, &mut totals).map_err(CliError::Output)?;
    Ok(ExitCode::SUCCESS)
}

/// The decision, with the source's country looked up even where the decision did not need it:
/// a report on a capture is read for where traffic comes from, and time is not short here.
fn explain_fully<'a>(policy: &'a Policy, packet: &[u8]) -> Decision<'a> {
    let mut decision = policy.explain(packet);
    if let (Looked::Skipped, Some(source)) = (decision.country, decision.source) {
        decision.country = Looked::Found(policy.country_of(source));
    }
    decision
}

fn capture_error(path: &Path, problem: impl Into<String>) -> CliError {
    CliError::Capture { path: path.to_owned(), problem: problem.into() }
}

/// Feeds the IP packet of every frame to `decide`, whatever the file and link format.
fn read_capture(path: &Path, tally: &mut Tally, mut decide: impl FnMut(&[u8])) -> Result<(), CliError> {
    let file = File::open(path).map_err(|source| CliError::Read { path: path.to_owned(), source })?;
    let mut reader =
        create_reader(1 << 20, file).map_err(|e| capture_error(path, format!("not a pcap or pcapng capture ({e})")))?;
    let mut legacy_link = Linktype::ETHERNET;
    let mut interfaces: Vec<Linktype> = Vec::new();
    loop {
        let position = reader.consumed();
        match reader.next() {
            Ok((consumed, block)) => {
                let frame = match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        legacy_link = header.network;
                        None
                    }
                    PcapBlockOwned::Legacy(packet) => Some((legacy_link, packet.data)),
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(interface)) => {
                        interfaces.push(interface.linktype);
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(packet)) => {
                        let link = interfaces.get(packet.if_id as usize).copied().unwrap_or(Linktype::ETHERNET);
                        let captured = packet.data.get(..packet.caplen as usize).unwrap_or(packet.data);
                        Some((link, captured))
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(packet)) => {
                        Some((interfaces.first().copied().unwrap_or(Linktype::ETHERNET), packet.data))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((link, data)) = frame {
                    tally.frames += 1;
                    match ip_packet(link, data) {
                        Ok(Some(packet)) => decide(packet),
                        Ok(None) => tally.not_ip += 1,
                        Err(link) => {
                            tally.not_ip += 1;
                            if !tally.unsupported_links.contains(&link) {
                                tally.unsupported_links.push(link);
                            }
                        }
                    }
                }
                reader.consume(consumed);
            }
            Err(PcapError::Eof) => return Ok(()),
            Err(PcapError::Incomplete(_)) => {
                reader.refill().map_err(|e| capture_error(path, format!("cannot read on ({e})")))?;
            }
            Err(e) => return Err(capture_error(path, format!("damaged after byte {position} ({e})"))),
        }
    }
}

/// The IP packet inside a frame: `Ok(None)` for frames that carry something else, `Err(link)`
/// for a link type geofence does not read.
fn ip_packet(link: Linktype, frame: &[u8]) -> Result<Option<&[u8]>, i32> {
    const IPV4: u16 = 0x0800;
    const IPV6: u16 = 0x86dd;
    const VLAN: [u16; 2] = [0x8100, 0x88a8];
    let ether_type = |at: usize| frame.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let payload = |kind: Option<u16>, at: usize| match kind {
        Some(IPV4 | IPV6) => Ok(frame.get(at..)),
        _ => Ok(None),
    };
    match link {
        Linktype::ETHERNET => {
            let mut at = 12;
            while ether_type(at).is_some_and(|t| VLAN.contains(&t)) {
                at += 4;
            }
            payload(ether_type(at), at + 2)
        }
        Linktype::LINUX_SLL => payload(ether_type(14), 16),
        Linktype::LINUX_SLL2 => payload(ether_type(0), 20),
        Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => Ok(Some(frame)),
        Linktype(other) => Err(other),
    }
}

fn print_report(path: &Path, tally: &Tally, totals: &mut Totals) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let decided = totals.accepted + totals.marked + totals.dropped;
    writeln!(
        out,
        "{}: {} frames, {} IP packets decided, {} not IP",
        path.display(),
        thousands(tally.frames),
        thousands(decided),
        thousands(tally.not_ip)
    )?;
    for link in &tally.unsupported_links {
        writeln!(out, "  link type {link} is not read (Ethernet, Linux cooked v1/v2 and raw IP are)")?;
    }
    writeln!(out, "\n{:<20} {:>10}", "verdict", "packets")?;
    for (verdict, count) in [("accept", totals.accepted), ("accept with mark", totals.marked), ("drop", totals.dropped)]
    {
        writeln!(out, "{verdict:<20} {:>10}", thousands(count))?;
    }
    writeln!(out, "{:<20} {:>10}", "  unparsable", thousands(totals.malformed))?;
    writeln!(out, "\n{:<20} {:>10} {:>10}", "country", "accepted", "dropped")?;
    let mut countries: Vec<(String, [u64; 2])> = totals.per_country().collect();
    countries.sort_by(|a, b| (b.1[0] + b.1[1]).cmp(&(a.1[0] + a.1[1])).then(a.0.cmp(&b.0)));
    for (country, [accepted, dropped]) in &countries {
        writeln!(out, "{country:<20} {:>10} {:>10}", thousands(*accepted), thousands(*dropped))?;
    }
    writeln!(out, "\n{:<20} {:>10}", "rule", "packets")?;
    for (rule, count) in &totals.per_rule {
        writeln!(out, "{rule:<20} {:>10}", thousands(*count))?;
    }
    if !tally.sip.by_reason.is_empty() {
        writeln!(out, "\n{:<20} {:<28} {:<40} {:>10}", "dropped on SIP", "request", "user agent", "packets")?;
        let mut reasons: Vec<_> = tally.sip.by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for ((rule, what, agent), count) in reasons.iter().take(20) {
            writeln!(out, "{rule:<20} {what:<28} {agent:<40} {:>10}", thousands(**count))?;
        }
    }
    let interval = totals.take_interval();
    let mut sources: Vec<_> = interval.sources.iter().collect();
    sources.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    writeln!(out, "\n{:<40} {:>10}", "top dropped sources", "packets")?;
    for (source, (count, country)) in sources.iter().take(10) {
        let label = format!("{source} ({})", country.known().map_or("-".to_owned(), |c| c.to_string()));
        writeln!(out, "{label:<40} {:>10}", thousands(*count))?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_layers_are_stripped_to_the_ip_packet() {
        let ip = [0x45u8, 0, 0, 20];
        let mut ethernet = vec![0u8; 12];
        ethernet.extend([0x81, 0x00, 0, 5, 0x08, 0x00]);
        ethernet.extend(ip);
        assert_eq!(ip_packet(Linktype::ETHERNET, &ethernet), Ok(Some(&ip[..])));
        let mut arp = vec![0u8; 12];
        arp.extend([0x08, 0x06, 1, 2]);
        assert_eq!(ip_packet(Linktype::ETHERNET, &arp), Ok(None));
        let mut sll = vec![0u8; 14];
        sll.extend([0x86, 0xdd]);
        sll.extend(ip);
        assert_eq!(ip_packet(Linktype::LINUX_SLL, &sll), Ok(Some(&ip[..])));
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend([0u8; 18]);
        sll2.extend(ip);
        assert_eq!(ip_packet(Linktype::LINUX_SLL2, &sll2), Ok(Some(&ip[..])));
        assert_eq!(ip_packet(Linktype::RAW, &ip), Ok(Some(&ip[..])));
        assert_eq!(ip_packet(Linktype(105), &ip), Err(105));
        assert_eq!(ip_packet(Linktype::ETHERNET, &[0; 5]), Ok(None));
    }
}
