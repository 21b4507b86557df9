//! The bans of a running geofence: workers ask, one thread gives them. It keeps the
//! [`BanBook`] (repeats, jitter, its bound), writes the new bans into the kernel's sets in
//! batches, forgets the banned sources' tracked flows, logs and counts.
//!
//! A worker never waits: its request goes into a bounded channel with `try_send`, and a
//! request that finds the channel full is counted as lost (the source's next packet asks
//! again). The kernel drops a banned source's packets ahead of the queue, so under a flood of
//! already-banned sources the channel stays quiet.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use geofence_core::ban::{Ban, BanBook, BanLimits, BanSpec, Banned, Duration as BanDuration};
use geofence_core::IpNetwork;
use geofence_nfq::bans::{BanSets, SetError};

/// Requests the channel holds: a burst of new offenders larger than this loses the rest
/// until the thread catches up.
const CHANNEL: usize = 16_384;
/// Bans written in one round, at most.
const ROUND: usize = 1024;
/// New bans a round logs one by one; a larger round is one line.
const LOGGED_ONE_BY_ONE: usize = 5;

/// The counters of bans, for SIGUSR1 and the metrics.
#[derive(Default)]
pub struct BanCounters {
    /// Bans written into the kernel.
    pub banned: AtomicU64,
    /// Requests for a network already banned (packets queued before the ban took).
    pub already: AtomicU64,
    /// Bans refused because the book (the set's size) was full.
    pub full: AtomicU64,
    /// Bans the kernel did not take.
    pub failed: AtomicU64,
    /// Requests lost to a full channel.
    pub lost: AtomicU64,
}

/// A request: the network, the first offence's length, and the rule, for the log.
struct Request {
    network: IpNetwork,
    spec: BanSpec,
    rule: Arc<str>,
}

/// The workers' side: asks for bans without waiting.
pub struct Banner {
    requests: SyncSender<Request>,
    counters: Arc<BanCounters>,
}

impl Banner {
    /// Starts the thread that gives bans within `limits`.
    pub fn start(limits: BanLimits) -> Banner {
        let (requests, asked) = mpsc::sync_channel(CHANNEL);
        let counters = Arc::new(BanCounters::default());
        let key = std::collections::hash_map::RandomState::new().hash_one(1u64);
        let book = BanBook::new(limits, key);
        let thread_counters = Arc::clone(&counters);
        std::thread::spawn(move || give_bans(&asked, book, &thread_counters));
        Banner { requests, counters }
    }

    /// Asks for `source` to be banned as `spec` says, by rule `rule`.
    pub fn ask(&self, source: IpAddr, spec: BanSpec, rule: &Arc<str>) {
        let request = Request { network: spec.network_of(source), spec, rule: Arc::clone(rule) };
        if let Err(TrySendError::Full(_)) = self.requests.try_send(request) {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters.
    pub fn counters(&self) -> &BanCounters {
        &self.counters
    }
}

/// The thread: waits for a request, takes whatever else is waiting (up to a round), books
/// them and writes the new ones. It ends when every [`Banner`] is gone.
fn give_bans(asked: &Receiver<Request>, mut book: BanBook, counters: &BanCounters) {
    let started = Instant::now();
    let mut sets = open_sets();
    while let Ok(first) = asked.recv() {
        let round: Vec<Request> = std::iter::once(first).chain(asked.try_iter().take(ROUND - 1)).collect();
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut new = Vec::new();
        for request in round {
            match book.ban(request.network, request.spec.duration_ms, now_ms) {
                Banned::New(ban) => new.push((ban, request.rule)),
                Banned::Already => drop(counters.already.fetch_add(1, Ordering::Relaxed)),
                Banned::Full => full(counters, book.len()),
            }
        }
        if new.is_empty() {
            continue;
        }
        if sets.is_none() {
            sets = open_sets();
        }
        let Some(open) = sets.as_mut() else {
            counters.failed.fetch_add(new.len() as u64, Ordering::Relaxed);
            continue;
        };
        write(open, &mut book, &new, counters);
    }
}

fn open_sets() -> Option<BanSets> {
    BanSets::open().map_err(|error| log::error!("bans: {error}; bans are booked but not written")).ok()
}

/// The book is full: the first refusal of each run of them is logged.
fn full(counters: &BanCounters, entries: usize) {
    if counters.full.fetch_add(1, Ordering::Relaxed) == 0 {
        log::warn!("bans: the ban set is full ({entries} entries running): new bans are refused and counted");
    }
}

/// Writes one round's new bans, forgets their sources' flows, and logs them. A ban the
/// kernel refused is taken out of the book again, so the source's next packet asks anew.
fn write(sets: &mut BanSets, book: &mut BanBook, new: &[(Ban, Arc<str>)], counters: &BanCounters) {
    let bans: Vec<Ban> = new.iter().map(|(ban, _)| *ban).collect();
    let mut written = Vec::with_capacity(bans.len());
    let mut first_error: Option<SetError> = None;
    for ((ban, rule), result) in new.iter().zip(sets.ban(&bans)) {
        match result {
            Ok(()) => written.push((ban, rule)),
            Err(error) => {
                book.unban(ban.network);
                first_error.get_or_insert(error);
            }
        }
    }
    let failed = (bans.len() - written.len()) as u64;
    counters.failed.fetch_add(failed, Ordering::Relaxed);
    counters.banned.fetch_add(written.len() as u64, Ordering::Relaxed);
    if let Some(error) = first_error {
        log::error!("bans: the kernel took {} of {} bans: {error}", written.len(), bans.len());
    }
    let networks: Vec<IpNetwork> = written.iter().map(|(ban, _)| ban.network).collect();
    if let Some(Err(error)) = sets.forget_flows(&networks).into_iter().find(Result::is_err) {
        log::warn!("bans: cannot forget the banned sources' tracked flows: {error}");
    }
    if written.len() <= LOGGED_ONE_BY_ONE {
        for (ban, rule) in &written {
            log::info!(
                "banned {} for {} (offence {}, rule {rule})",
                ban.network,
                BanDuration(ban.duration_ms.div_ceil(1000) * 1000),
                ban.offences
            );
        }
    } else if let Some((first, _)) = written.first() {
        log::info!("banned {} networks, {} first", written.len(), first.network);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_channel_are_counted_not_waited_for() {
        let (requests, asked) = mpsc::sync_channel(2);
        let banner = Banner { requests, counters: Arc::new(BanCounters::default()) };
        let spec = BanSpec { duration_ms: 1000, prefix_v4: 32, prefix_v6: 128 };
        let rule: Arc<str> = Arc::from("honeypot");
        for n in 0..5u8 {
            banner.ask(IpAddr::from([192, 0, 2, n]), spec, &rule);
        }
        assert_eq!(banner.counters().lost.load(Ordering::Relaxed), 3);
        assert_eq!(asked.try_iter().count(), 2);
    }
}
