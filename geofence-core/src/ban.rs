//! Bans: a rule with `action = "ban"` drops the packet and shuts its source (or the source's
//! network) out for a while, on every port, in the kernel.
//!
//! This module is the pure part: what a ban rule asks for ([`BanSpec`]) and the book of bans
//! given ([`BanBook`]), which decides each ban's length and remembers repeat offenders. The
//! caller writes the bans it returns into the kernel's sets and hands it the time; nothing here
//! reads a clock.
//!
//! - **Repeat offenders**: a network banned again while its last offence is remembered gets
//!   twice the last ban's length, up to the book's cap ([`BanLimits::max_duration_ms`]). An
//!   offence is remembered until its ban has ended and then for as long as the cap.
//! - **Jitter**: each ban is 0 to 10% shorter than that, by a keyed hash of the network and
//!   its offence count, so bans given in one flood do not all end in the same second.
//! - **Bounded**: the book holds at most [`BanLimits::max_entries`] networks (the kernel set's
//!   `maxelem` too). When it is full, networks whose ban has ended are forgotten (at most once
//!   a second); if every entry is still banned, the new ban is refused and counted.
//!
//! ```
//! use geofence_core::ban::{BanBook, BanLimits, BanSpec, Banned};
//! let limits = BanLimits { max_entries: 1024, max_duration_ms: 86_400_000 };
//! let mut book = BanBook::new(limits, 7);
//! let spec = BanSpec { duration_ms: 3_600_000, prefix_v4: 32, prefix_v6: 128 };
//! let network = spec.network_of("192.0.2.9".parse()?);
//! let Banned::New(first) = book.ban(network, spec.duration_ms, 0) else { panic!() };
//! assert!((3_240_000..=3_600_000).contains(&first.duration_ms), "an hour, less up to 10%");
//! assert_eq!(book.ban(network, spec.duration_ms, 60_000), Banned::Already, "still banned");
//! // Back after its ban: two hours this time.
//! let Banned::New(second) = book.ban(network, spec.duration_ms, first.duration_ms) else { panic!() };
//! assert!((6_480_000..=7_200_000).contains(&second.duration_ms));
//! assert_eq!(second.offences, 2);
//! # Ok::<(), std::net::AddrParseError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::behaviour::mix;
use crate::IpNetwork;

/// The longest ban the kernel's sets take: an ipset timeout is at most 2,147,483 seconds.
pub const MAX_DURATION_MS: u64 = 2_147_483_000;

/// Which kind of kernel set holds the bans (`[bans] sets`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetKind {
    /// ipsets `geofence-ban4` and `geofence-ban6`, for the iptables backend.
    #[default]
    Ipset,
    /// nf_tables sets `ban4` and `ban6` in table `inet geofence`, for the nft backend.
    Nft,
}

impl fmt::Display for SetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetKind::Ipset => "ipset",
            SetKind::Nft => "nft",
        })
    }
}

/// What a ban rule asks for: how long, and how wide a network around the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanSpec {
    /// A first offence's ban, in milliseconds.
    pub duration_ms: u64,
    /// The prefix length an IPv4 source is banned with (32: the address alone).
    pub prefix_v4: u8,
    /// The prefix length an IPv6 source is banned with (128: the address alone; 64: its subnet).
    pub prefix_v6: u8,
}

impl BanSpec {
    /// The network a ban of `source` shuts out: the source's own, cut to the spec's prefix. An
    /// IPv4-mapped IPv6 source is banned as the IPv4 address it is.
    pub fn network_of(&self, source: IpAddr) -> IpNetwork {
        let (source, prefix) = match source.to_canonical() {
            v4 @ IpAddr::V4(_) => (v4, self.prefix_v4.min(32)),
            v6 => (v6, self.prefix_v6.min(128)),
        };
        // In range by the `min` above, so this cannot fail; the address alone if it did.
        IpNetwork::new_truncate(source, prefix).unwrap_or_else(|_| IpNetwork::from(source))
    }
}

impl fmt::Display for BanSpec {
    /// `ban 1h`, with the prefixes when they are not single addresses: `ban 1h /24 /64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ban {}", Duration(self.duration_ms))?;
        if (self.prefix_v4, self.prefix_v6) != (32, 128) {
            write!(f, " /{} /{}", self.prefix_v4, self.prefix_v6)?;
        }
        Ok(())
    }
}

/// Milliseconds written in the largest unit that divides them, as the config reads them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duration(pub u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
        match units.iter().find(|(size, _)| self.0 != 0 && self.0.is_multiple_of(*size)) {
            Some((size, unit)) => write!(f, "{}{unit}", self.0 / size),
            None => write!(f, "{}ms", self.0),
        }
    }
}

/// The book's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanLimits {
    /// Networks the book (and the kernel set) holds at most.
    pub max_entries: usize,
    /// The longest ban a repeat offender gets, in milliseconds (at most [`MAX_DURATION_MS`]).
    pub max_duration_ms: u64,
}

impl Default for BanLimits {
    /// 65,536 networks, bans of up to a week.
    fn default() -> BanLimits {
        BanLimits { max_entries: 65_536, max_duration_ms: 7 * 86_400_000 }
    }
}

/// One ban to write into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    /// What is shut out.
    pub network: IpNetwork,
    /// For how long from now, in milliseconds.
    pub duration_ms: u64,
    /// How many times the network has been banned while remembered, this one included.
    pub offences: u32,
}

/// A network in the book, as a restart carries it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The network.
    pub network: IpNetwork,
    /// The time its ban has left, in milliseconds (0: not banned now, but remembered).
    pub remaining_ms: u64,
    /// Its last ban's length before jitter, which a repeat doubles.
    pub length_ms: u64,
    /// Its offences while remembered.
    pub offences: u32,
}

/// Why a saved book could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct SavedError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// The first line of a saved book.
const SAVED_HEADER: &str = "# geofence bans: network, end of ban (Unix ms), last ban's length (ms), offences";

/// The records as a text to save: a line each, with when each ban ends on the wall clock
/// (`unix_now_ms` is the time of saving), so the time a restart took counts against it.
///
/// ```
/// use geofence_core::ban::{read_records, write_records, Record};
/// let record = Record { network: "192.0.2.9/32".parse()?, remaining_ms: 5000, length_ms: 3_600_000, offences: 2 };
/// let saved = write_records([record], 1_000_000);
/// assert!(saved.ends_with("192.0.2.9/32 1005000 3600000 2\n"));
/// // Read back 2 s later: 3 s left.
/// assert_eq!(read_records(&saved, 1_002_000)?, [Record { remaining_ms: 3000, ..record }]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_records(records: impl IntoIterator<Item = Record>, unix_now_ms: u64) -> String {
    let mut text = format!("{SAVED_HEADER}\n");
    for record in records {
        let ends = unix_now_ms.saturating_add(record.remaining_ms);
        text.push_str(&format!("{} {ends} {} {}\n", record.network, record.length_ms, record.offences));
    }
    text
}

/// Reads what [`write_records`] wrote, at `unix_now_ms`. Comment and blank lines are skipped;
/// any other line that is not four fields of the right kinds refuses the whole text, with its
/// line: a file half read would restore half the bans without saying so.
pub fn read_records(text: &str, unix_now_ms: u64) -> Result<Vec<Record>, SavedError> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = |what: &str| SavedError { line: index + 1, problem: what.to_owned() };
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [network, ends, length, offences] = fields[..] else {
            return Err(problem("expected a network, the ban's end, its length and the offences"));
        };
        let network: IpNetwork = network.parse().map_err(|_| problem("not a network"))?;
        let number = |field: &str| field.parse::<u64>().map_err(|_| problem("not a whole number"));
        let (ends, length) = (number(ends)?, number(length)?);
        let offences = u32::try_from(number(offences)?).map_err(|_| problem("too many offences"))?;
        let remaining_ms = ends.saturating_sub(unix_now_ms).min(MAX_DURATION_MS);
        records.push(Record { network, remaining_ms, length_ms: length.min(MAX_DURATION_MS), offences });
    }
    Ok(records)
}

/// What [`BanBook::ban`] made of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Banned {
    /// A new ban: write it into the kernel.
    New(Ban),
    /// The network is banned already (a packet that was queued before its ban took effect).
    Already,
    /// The book is full of bans still running: refused, and counted.
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    until_ms: u64,
    /// The last ban's length, before jitter: what a repeat doubles.
    last_ms: u64,
    offences: u32,
}

impl Entry {
    /// Whether its offence is still remembered at `now_ms`: until its ban has ended and then
    /// for as long as the cap.
    fn remembered_at(&self, now_ms: u64, cap: u64) -> bool {
        now_ms < self.until_ms.saturating_add(cap)
    }
}

/// The bans given: their ends and the offenders' history, of a bounded size.
#[derive(Debug)]
pub struct BanBook {
    entries: BTreeMap<IpNetwork, Entry>,
    limits: BanLimits,
    key: u64,
    refused: u64,
    last_purge_ms: Option<u64>,
}

impl BanBook {
    /// An empty book whose jitter is keyed by `key` (take it from a random source, so a
    /// sender cannot tell when its ban ends to the second).
    pub fn new(limits: BanLimits, key: u64) -> BanBook {
        BanBook { entries: BTreeMap::new(), limits, key, refused: 0, last_purge_ms: None }
    }

    /// Bans `network` for `base_ms` (a first offence) at `now_ms`, or longer for a repeat.
    pub fn ban(&mut self, network: IpNetwork, base_ms: u64, now_ms: u64) -> Banned {
        let cap = self.cap();
        let remembered = self.entries.get(&network).filter(|entry| entry.remembered_at(now_ms, cap)).copied();
        if remembered.is_some_and(|entry| entry.until_ms > now_ms) {
            return Banned::Already;
        }
        if !self.entries.contains_key(&network) && !self.make_room(now_ms) {
            self.refused += 1;
            return Banned::Full;
        }
        let (last_ms, offences) = match remembered {
            Some(entry) => (entry.last_ms.saturating_mul(2), entry.offences.saturating_add(1)),
            None => (base_ms, 1),
        };
        let last_ms = last_ms.clamp(1, cap.max(1));
        let duration_ms = last_ms - jitter(last_ms, hash(network, offences, self.key));
        self.entries.insert(network, Entry { until_ms: now_ms.saturating_add(duration_ms), last_ms, offences });
        Banned::New(Ban { network, duration_ms, offences })
    }

    /// Puts back a network saved before a restart: its ban, if any time is left, and its
    /// offences. Refused (false) when the book is full of running bans.
    pub fn restore(&mut self, record: Record, now_ms: u64) -> bool {
        if !self.entries.contains_key(&record.network) && !self.make_room(now_ms) {
            self.refused += 1;
            return false;
        }
        let entry = Entry {
            until_ms: now_ms.saturating_add(record.remaining_ms),
            last_ms: record.length_ms.max(1),
            offences: record.offences,
        };
        self.entries.insert(record.network, entry);
        true
    }

    /// Every network the book remembers at `now_ms`, banned now or not, in address order: what
    /// a restart needs to carry on.
    pub fn records(&self, now_ms: u64) -> impl Iterator<Item = Record> + '_ {
        let cap = self.cap();
        self.entries.iter().filter(move |(_, entry)| entry.remembered_at(now_ms, cap)).map(move |(network, entry)| {
            Record {
                network: *network,
                remaining_ms: entry.until_ms.saturating_sub(now_ms),
                length_ms: entry.last_ms,
                offences: entry.offences,
            }
        })
    }

    /// Lifts the ban of `network` and forgets its offences; whether it was in the book.
    pub fn unban(&mut self, network: IpNetwork) -> bool {
        self.entries.remove(&network).is_some()
    }

    /// Lifts every ban and forgets every offence; how many networks the book held.
    pub fn clear(&mut self) -> usize {
        let held = self.entries.len();
        self.entries.clear();
        held
    }

    /// The bans still running at `now_ms`, in address order, each with the time it has left.
    pub fn running(&self, now_ms: u64) -> impl Iterator<Item = Ban> + '_ {
        self.entries.iter().filter(move |(_, entry)| entry.until_ms > now_ms).map(move |(network, entry)| Ban {
            network: *network,
            duration_ms: entry.until_ms - now_ms,
            offences: entry.offences,
        })
    }

    /// Networks in the book, banned now or remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bans refused because the book was full, since it was made.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The longest ban: the book's cap, within what the kernel's sets take.
    fn cap(&self) -> u64 {
        self.limits.max_duration_ms.min(MAX_DURATION_MS)
    }

    /// Whether there is room for one more network, forgetting the ended bans to make it.
    fn make_room(&mut self, now_ms: u64) -> bool {
        if self.entries.len() < self.limits.max_entries {
            return true;
        }
        // A full book is scanned at most once a second: a flood of new offenders against a
        // book of running bans costs a comparison each, not a scan each.
        if self.last_purge_ms.is_some_and(|last| now_ms < last.saturating_add(1000)) {
            return false;
        }
        self.last_purge_ms = Some(now_ms);
        self.entries.retain(|_, entry| entry.until_ms > now_ms);
        self.entries.len() < self.limits.max_entries
    }
}

/// 0 to 10% of `length`, by `hash`.
fn jitter(length: u64, hash: u64) -> u64 {
    ((u128::from(length) * u128::from(hash % 1001)) / 10_000) as u64
}

fn hash(network: IpNetwork, offences: u32, key: u64) -> u64 {
    let address = match network.network_address() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let seed = key ^ (u64::from(network.netmask()) << 32) ^ u64::from(offences);
    mix(mix(seed ^ address as u64) ^ (address >> 64) as u64)
}

#[cfg(test)]
mod tests;
