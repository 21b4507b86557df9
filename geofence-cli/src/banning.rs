//! The bans of a running geofence: workers ask, one thread gives them. It keeps the
//! [`BanBook`] (repeats, jitter, its bound), writes the new bans into the kernel's sets in
//! batches, forgets the banned sources' tracked flows, logs and counts, and saves the book to
//! the `[bans] state` file, from which the next start restores it.
//!
//! A worker never waits: its request goes into a bounded channel with `try_send`, and a
//! request that finds the channel full is counted as lost (the source's next packet asks
//! again). The kernel drops a banned source's packets ahead of the queue, so under a flood of
//! already-banned sources the channel stays quiet.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use geofence_core::ban::{self, Ban, BanBook, BanLimits, BanSpec, Banned, Duration as BanDuration, SetKind};
use geofence_core::IpNetwork;
use geofence_nfq::bans::{BanSets, SetError};

use crate::error::CliError;
use crate::files;

/// Requests the channel holds: a burst of new offenders larger than this loses the rest
/// until the thread catches up.
const CHANNEL: usize = 16_384;
/// Bans written in one round, at most.
const ROUND: usize = 1024;
/// New bans a round logs one by one; a larger round is one line.
const LOGGED_ONE_BY_ONE: usize = 5;
/// How often a changed book is saved: a crash loses at most the bans of this long.
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// How often refused writes are logged at most.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);
/// The largest state file read back: 16M networks of about 60 bytes.
const STATE_LIMIT: u64 = 1 << 30;

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
    duration_ms: u64,
    rule: Arc<str>,
}

/// What the workers, the ban thread and the exit share.
struct State {
    book: Mutex<BanBook>,
    counters: BanCounters,
    started: Instant,
    /// The file the book is saved to, if any.
    file: Option<PathBuf>,
    /// Whether the book changed since it was last saved.
    changed: AtomicBool,
    /// When a refused write was last logged: a set that went missing refuses every round,
    /// and the log says so once every [`REFUSALS_LOGGED_EVERY`], not once a round.
    refusal_logged: Mutex<Option<Instant>>,
}

impl State {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn book(&self) -> MutexGuard<'_, BanBook> {
        self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Saves the book if it changed: a temporary file beside the state file, synced, renamed
    /// over it, so a crash mid-save leaves the old file whole.
    fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.changed.swap(false, Ordering::AcqRel) {
            return;
        }
        let text = ban::write_records(self.book().records(self.now_ms()).collect::<Vec<_>>(), unix_now_ms());
        if let Err(error) = crate::files::replace(file, text.as_bytes()) {
            self.changed.store(true, Ordering::Release);
            log::error!("bans: cannot save them to {}: {error}", file.display());
        }
    }
}

/// The workers' side: asks for bans without waiting.
pub struct Banner {
    requests: SyncSender<Request>,
    state: Arc<State>,
    kind: SetKind,
}

impl Banner {
    /// Restores the bans saved in `file` (if any), writes the running ones back into the
    /// kernel's sets of `kind`, and starts the thread that gives new bans within `limits`.
    pub fn start(limits: BanLimits, kind: SetKind, file: Option<PathBuf>) -> Banner {
        let key = std::collections::hash_map::RandomState::new().hash_one(1u64);
        let state = Arc::new(State {
            book: Mutex::new(BanBook::new(limits, key)),
            counters: BanCounters::default(),
            started: Instant::now(),
            file,
            changed: AtomicBool::new(false),
            refusal_logged: Mutex::new(None),
        });
        let mut sets = open_sets(kind);
        restore(&state, sets.as_mut());
        let (requests, asked) = mpsc::sync_channel(CHANNEL);
        let thread_state = Arc::clone(&state);
        std::thread::spawn(move || give_bans(&asked, &thread_state, kind, sets));
        Banner { requests, state, kind }
    }

    /// Asks for `source` to be banned as `spec` says, by rule `rule`.
    pub fn ask(&self, source: IpAddr, spec: BanSpec, rule: &Arc<str>) {
        let request =
            Request { network: spec.network_of(source), duration_ms: spec.duration_ms, rule: Arc::clone(rule) };
        if let Err(TrySendError::Full(_)) = self.requests.try_send(request) {
            self.state.counters.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters.
    pub fn counters(&self) -> &BanCounters {
        &self.state.counters
    }

    /// The bans running now: how many, and the first `limit` with the most time left.
    pub fn running(&self, limit: usize) -> (usize, Vec<Ban>) {
        let mut running: Vec<Ban> = self.state.book().running(self.state.now_ms()).collect();
        running.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.network.cmp(&b.network)));
        let count = running.len();
        running.truncate(limit);
        (count, running)
    }

    /// How many bans are running now, without listing them.
    pub fn running_count(&self) -> usize {
        self.state.book().running(self.state.now_ms()).count()
    }

    /// Lifts the ban of `network` in the kernel's sets and forgets its offences, so that its
    /// next offence is a first one again. A network the book does not hold is refused.
    pub fn unban(&self, network: IpNetwork) -> Result<(), String> {
        if !self.state.book().unban(network) {
            return Err(format!(
                "{network} is not banned by this geofence (`geofence bans list` shows the kernel's sets)"
            ));
        }
        self.state.changed.store(true, Ordering::Release);
        BanSets::open(self.kind)
            .and_then(|mut sets| sets.unban(network))
            .map_err(|error| format!("{network} is forgotten, but its kernel ban could not be lifted: {error}"))
    }

    /// Lifts every ban in the kernel's sets and forgets every offence; how many networks the
    /// book held.
    pub fn unban_all(&self) -> Result<usize, String> {
        let forgotten = self.state.book().clear();
        self.state.changed.store(true, Ordering::Release);
        BanSets::open(self.kind).and_then(|mut sets| sets.flush()).map(|()| forgotten).map_err(|error| {
            format!("{forgotten} networks are forgotten, but the kernel's sets could not be flushed: {error}")
        })
    }

    /// Saves the book now, if it changed (at exit).
    pub fn save(&self) {
        self.state.save();
    }
}

/// The thread: waits for a request, takes whatever else is waiting (up to a round), books
/// them and writes the new ones; saves the book when it changed, at most every
/// [`SAVE_EVERY`]. It ends when every [`Banner`] is gone.
fn give_bans(asked: &Receiver<Request>, state: &State, kind: SetKind, mut sets: Option<BanSets>) {
    let mut saved_at = Instant::now();
    loop {
        match asked.recv_timeout(SAVE_EVERY) {
            Ok(first) => {
                let round: Vec<Request> = std::iter::once(first).chain(asked.try_iter().take(ROUND - 1)).collect();
                give_round(round, state, kind, &mut sets);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if saved_at.elapsed() >= SAVE_EVERY {
            state.save();
            saved_at = Instant::now();
        }
    }
}

fn give_round(round: Vec<Request>, state: &State, kind: SetKind, sets: &mut Option<BanSets>) {
    let counters = &state.counters;
    let mut new = Vec::new();
    {
        let now_ms = state.now_ms();
        let mut book = state.book();
        for request in round {
            match book.ban(request.network, request.duration_ms, now_ms) {
                Banned::New(ban) => new.push((ban, request.rule)),
                Banned::Already => drop(counters.already.fetch_add(1, Ordering::Relaxed)),
                Banned::Full => full(counters, book.len()),
            }
        }
    }
    if new.is_empty() {
        return;
    }
    state.changed.store(true, Ordering::Release);
    if sets.is_none() {
        *sets = open_sets(kind);
    }
    match sets.as_mut() {
        Some(open) => write(open, state, &new),
        None => drop(counters.failed.fetch_add(new.len() as u64, Ordering::Relaxed)),
    }
}

fn open_sets(kind: SetKind) -> Option<BanSets> {
    BanSets::open(kind).map_err(|error| log::error!("bans: {error}; bans are booked but not written")).ok()
}

/// The book is full: the first refusal is logged, every one is counted.
fn full(counters: &BanCounters, entries: usize) {
    if counters.full.fetch_add(1, Ordering::Relaxed) == 0 {
        log::warn!("bans: the ban set is full ({entries} entries running): new bans are refused and counted");
    }
}

/// Writes one round's new bans, forgets their sources' flows, and logs them. A ban the
/// kernel refused is taken out of the book again, so the source's next packet asks anew.
fn write(sets: &mut BanSets, state: &State, new: &[(Ban, Arc<str>)]) {
    let counters = &state.counters;
    let bans: Vec<Ban> = new.iter().map(|(ban, _)| *ban).collect();
    let mut written = Vec::with_capacity(bans.len());
    let mut first_error: Option<SetError> = None;
    for ((ban, rule), result) in new.iter().zip(sets.ban(&bans)) {
        match result {
            Ok(()) => written.push((ban, rule)),
            Err(error) => {
                state.book().unban(ban.network);
                first_error.get_or_insert(error);
            }
        }
    }
    counters.failed.fetch_add((bans.len() - written.len()) as u64, Ordering::Relaxed);
    counters.banned.fetch_add(written.len() as u64, Ordering::Relaxed);
    if let Some(error) = first_error {
        let mut logged = state.refusal_logged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.is_none_or(|at| at.elapsed() >= REFUSALS_LOGGED_EVERY) {
            log::error!("bans: the kernel took {} of {} bans: {error}", written.len(), bans.len());
            *logged = Some(Instant::now());
        }
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

/// Reads the state file into the book and writes its running bans into the kernel, with the
/// time they have left. A missing file is a first start; a damaged one is logged and left
/// for the admin to look at (the next save replaces it).
fn restore(state: &State, sets: Option<&mut BanSets>) {
    let Some(file) = &state.file else { return };
    // Read as every file geofence reads: a FIFO or a device at that path is refused, not waited on.
    let bytes = match files::read(file, STATE_LIMIT) {
        Err(CliError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            let causes: String = crate::error::causes(&error).map(|cause| format!(": {cause}")).collect();
            return log::error!("bans: not restored: {error}{causes}");
        }
        Ok(bytes) => bytes,
    };
    let records = match ban::read_records(&String::from_utf8_lossy(&bytes), unix_now_ms()) {
        Ok(records) => records,
        Err(error) => return log::error!("bans: cannot restore them from {}: {error}", file.display()),
    };
    let now_ms = state.now_ms();
    let mut book = state.book();
    let kept = records.iter().filter(|record| book.restore(**record, now_ms)).count();
    let running: Vec<Ban> = book.running(now_ms).collect();
    drop(book);
    let written = sets.map_or(0, |sets| sets.ban(&running).iter().filter(|result| result.is_ok()).count());
    state.counters.banned.fetch_add(written as u64, Ordering::Relaxed);
    log::info!(
        "bans: restored {} running bans ({written} written into the kernel) and {} past offenders from {}",
        running.len(),
        kept - running.len(),
        file.display()
    );
}

/// Replaces `file` with `bytes` atomically: written to a temporary file in the same folder,
/// synced, then renamed over it.
fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(file: Option<PathBuf>) -> Arc<State> {
        Arc::new(State {
            book: Mutex::new(BanBook::new(BanLimits::default(), 1)),
            counters: BanCounters::default(),
            started: Instant::now(),
            file,
            changed: AtomicBool::new(false),
            refusal_logged: Mutex::new(None),
        })
    }

    #[test]
    fn requests_beyond_the_channel_are_counted_not_waited_for() {
        let (requests, asked) = mpsc::sync_channel(2);
        let banner = Banner { requests, state: state(None), kind: SetKind::Ipset };
        let spec = BanSpec { duration_ms: 1000, prefix_v4: 32, prefix_v6: 128 };
        let rule: Arc<str> = Arc::from("honeypot");
        for n in 0..5u8 {
            banner.ask(IpAddr::from([192, 0, 2, n]), spec, &rule);
        }
        assert_eq!(banner.counters().lost.load(Ordering::Relaxed), 3);
        assert_eq!(asked.try_iter().count(), 2);
    }

    #[test]
    fn a_changed_book_is_saved_whole_and_restored_and_a_damaged_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bans");
        let saving = state(Some(file.clone()));
        let network: IpNetwork = "198.51.100.0/24".parse().unwrap();
        assert!(matches!(saving.book().ban(network, 3_600_000, 0), Banned::New(_)));
        saving.save();
        assert!(!file.exists(), "unchanged: not saved");
        saving.changed.store(true, Ordering::Release);
        saving.save();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.lines().nth(1).unwrap().starts_with("198.51.100.0/24 "), "{text}");
        let restarted = state(Some(file.clone()));
        restore(&restarted, None);
        assert_eq!(restarted.book().running(restarted.now_ms()).map(|ban| ban.network).collect::<Vec<_>>(), [network]);
        std::fs::write(&file, "198.51.100.0/24 garbage\n").unwrap();
        let damaged = state(Some(file.clone()));
        restore(&damaged, None);
        assert!(damaged.book().is_empty());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "198.51.100.0/24 garbage\n", "left for the admin");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_fifo_where_the_state_file_should_be_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("bans");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let state = state(Some(fifo));
        let (done, finished) = mpsc::channel();
        let restoring = Arc::clone(&state);
        std::thread::spawn(move || {
            restore(&restoring, None);
            let _ = done.send(());
        });
        assert!(finished.recv_timeout(std::time::Duration::from_secs(5)).is_ok(), "restore blocked on the FIFO");
        assert!(state.book().is_empty());
    }
}
