//! What a source does over time: per-source counters of SIP requests, with thresholds that
//! give a source that crosses them a penalty (its requests are dropped) for a while.
//!
//! A [`Tracker`] is the state, kept outside the pure [`Policy`](crate::Policy): the caller
//! owns it (across reloads too), hands it each request a policy accepted from an untrusted
//! source, with the time, and drops what it says to drop. Nothing here reads a clock.
//!
//! - **Counted**: requests in a window (`max_requests`), requests of the methods `watched`
//!   (`max_watched`: REGISTER floods of password guessing, OPTIONS sweeps), the distinct
//!   target users (the To user) in it (`max_targets`), the sign of extension enumeration, and
//!   the server's failure answers to the source (`max_failures`: 401, 403, 404 and 407, see
//!   [`is_failure`]), handed over with [`Tracker::answered`]. Targets are counted in a 64-bit
//!   set of hashed users, so `max_targets` is at most 32, where that count is still close.
//! - **Sliding windows**: each count is kept for the current window and the one before it (the
//!   windows of a source follow each other from its first request), and the count over the
//!   last `window` is the current one plus the previous one's in proportion to how much of it
//!   is still inside: a source cannot send twice its limit across the boundary of two windows,
//!   as it could with windows that start afresh. A source idle for two windows starts afresh.
//! - **Bounded**: the table has a fixed number of slots, chosen when it is made; a source
//!   hashes (with a per-table key, so a flood cannot aim at one bucket) to a bucket of
//!   [`BUCKET`] slots. A new source takes an empty slot of its bucket, else the slot of the
//!   one seen longest ago that is not penalised, else the one seen longest ago: under a flood
//!   of spoofed sources the state stays the same size, and a penalised source is the last to
//!   be forgotten.
//!
//! ```
//! use geofence_core::behaviour::{Limits, Methods, Tracker, Seen};
//! use geofence_core::sip::Method::Register;
//! let limits = Limits { window_ms: 10_000, max_requests: 100, max_targets: 3, penalty_ms: 60_000, ..Limits::default() };
//! let mut tracker = Tracker::new(limits, 1024, 7);
//! let source = "192.0.2.9".parse()?;
//! for (user, now) in [(&b"100"[..], 0), (b"101", 10), (b"102", 20)] {
//!     assert_eq!(tracker.observe(source, Register, Some(user), now), Seen::Fine);
//! }
//! assert_eq!(tracker.observe(source, Register, Some(b"103"), 30), Seen::Penalised);
//! assert_eq!(tracker.observe(source, Register, Some(b"100"), 60_029), Seen::Penalised, "for the penalty");
//! assert_eq!(tracker.observe(source, Register, Some(b"100"), 60_031), Seen::Fine, "then it starts again");
//!
//! // At most 2 REGISTERs a window, whatever they ask.
//! let limits = Limits { watched: Methods::of([Register]), max_watched: 2, ..limits };
//! let mut tracker = Tracker::new(limits, 1024, 7);
//! assert_eq!(tracker.observe(source, Register, Some(b"100"), 0), Seen::Fine);
//! assert_eq!(tracker.observe(source, Register, Some(b"100"), 1), Seen::Fine);
//! assert_eq!(tracker.observe(source, Register, Some(b"100"), 2), Seen::Penalised);
//! # Ok::<(), std::net::AddrParseError>(())
//! ```

use std::net::IpAddr;

use crate::sip::Method;

/// Slots a source may take: its bucket.
pub const BUCKET: usize = 4;

/// The thresholds: a source that sends more requests, asks more distinct users, or is
/// answered with more failures than these within the last window (sliding) is penalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The window, in milliseconds.
    pub window_ms: u64,
    /// Requests a source may send in a window.
    pub max_requests: u32,
    /// Distinct target users a source may ask in a window (at most 32).
    pub max_targets: u32,
    /// How long a penalised source's requests are dropped, in milliseconds.
    pub penalty_ms: u64,
    /// The methods whose requests `max_watched` limits.
    pub watched: Methods,
    /// Requests of the `watched` methods a source may send in a window (at most 65,535).
    pub max_watched: u32,
    /// Failure answers ([`is_failure`]) the server may send a source in a window (at most
    /// 65,535).
    pub max_failures: u32,
}

/// No limit at all, and a window of a second: a base to set some limits on.
impl Default for Limits {
    fn default() -> Limits {
        Limits {
            window_ms: 1000,
            max_requests: u32::MAX,
            max_targets: u32::MAX,
            penalty_ms: 1000,
            watched: Methods::default(),
            max_watched: u32::MAX,
            max_failures: u32::MAX,
        }
    }
}

/// A set of SIP methods, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Methods(u16);

impl Methods {
    /// The set of these methods.
    pub fn of(methods: impl IntoIterator<Item = Method>) -> Methods {
        Methods(methods.into_iter().fold(0, |bits, method| bits | Methods::bit(method)))
    }

    /// Whether `method` is in the set.
    pub fn contains(self, method: Method) -> bool {
        self.0 & Methods::bit(method) != 0
    }

    fn bit(method: Method) -> u16 {
        let index = Method::NAMED.iter().position(|named| *named == method).unwrap_or(Method::NAMED.len());
        1 << index
    }
}

/// What a request makes of its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Under the thresholds.
    Fine,
    /// Penalised, now or by this request: drop it.
    Penalised,
}

/// Whether a SIP status code answers a failed attempt: 401 and 407 (the password asked for, or
/// a wrong one: what a guesser is answered), 403 (refused) and 404 (no such user: what an
/// enumerator is answered). A phone is challenged once a registration or call, so a limit of
/// a few dozen a window leaves it alone.
pub fn is_failure(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 407)
}

/// One window's counts (saturating: the limits that matter are far below).
#[derive(Clone, Copy, Default)]
struct Counts {
    requests: u16,
    watched: u16,
    failures: u16,
}

/// 64 bytes, one cache line: a million sources fit 64 MiB.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// The source as a 128-bit number (an IPv4 address mapped), in two halves so that a slot
    /// is 8-byte aligned with no padding.
    source: [u64; 2],
    /// Where the current window starts, in milliseconds.
    window_start: u64,
    penalty_until: u64,
    /// One bit a hashed target user, in the current window and the one before.
    targets: u64,
    previous_targets: u64,
    counts: Counts,
    previous: Counts,
    /// When the source was last seen, in whole seconds plus one: 0 is a slot no source uses.
    /// Seconds are enough to pick the one seen longest ago.
    seen: u32,
}

impl Slot {
    fn is_used(&self) -> bool {
        self.seen != 0
    }

    /// Whether this is `source`'s slot.
    fn holds(&self, source: [u64; 2]) -> bool {
        self.is_used() && self.source == source
    }

    /// Moves the windows on to the one `now_ms` is in.
    fn roll(&mut self, now_ms: u64, window_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.window_start);
        if elapsed >= window_ms.saturating_mul(2) {
            (self.window_start, self.previous, self.previous_targets) = (now_ms, Counts::default(), 0);
        } else if elapsed >= window_ms {
            (self.window_start, self.previous, self.previous_targets) =
                (self.window_start.saturating_add(window_ms), self.counts, self.targets);
        } else {
            return;
        }
        (self.counts, self.targets) = (Counts::default(), 0);
    }

    /// Whether a count over the sliding window is above `limit`: the current window's count
    /// plus the previous one's share that the last `window_ms` still covers.
    fn over(&self, current: u32, previous: u32, limit: u32, now_ms: u64, window_ms: u64) -> bool {
        let still_inside = window_ms.saturating_sub(now_ms.saturating_sub(self.window_start));
        let weighted = u128::from(current) * u128::from(window_ms) + u128::from(previous) * u128::from(still_inside);
        weighted > u128::from(limit) * u128::from(window_ms)
    }

    fn over_limits(&self, limits: &Limits, now_ms: u64) -> bool {
        let (counts, previous) = (self.counts, self.previous);
        let targets = self.targets.count_ones();
        let earlier_targets = (self.previous_targets & !self.targets).count_ones();
        let over = |current: u16, earlier: u16, limit: u32| {
            self.over(u32::from(current), u32::from(earlier), limit, now_ms, limits.window_ms)
        };
        over(counts.requests, previous.requests, limits.max_requests)
            || over(counts.watched, previous.watched, limits.max_watched)
            || over(counts.failures, previous.failures, limits.max_failures)
            || self.over(targets, earlier_targets, limits.max_targets, now_ms, limits.window_ms)
    }

    fn penalise_if_over(&mut self, limits: &Limits, now_ms: u64) -> Seen {
        if self.over_limits(limits, now_ms) {
            self.penalty_until = now_ms.saturating_add(limits.penalty_ms);
            return Seen::Penalised;
        }
        Seen::Fine
    }
}

/// A time in whole seconds plus one, for [`Slot::seen`].
fn seen_at(now_ms: u64) -> u32 {
    u32::try_from(now_ms / 1000).unwrap_or(u32::MAX - 1) + 1
}

/// The per-source state, of a fixed size.
pub struct Tracker {
    slots: Box<[Slot]>,
    limits: Limits,
    key: u64,
}

impl Tracker {
    /// A tracker of at least `capacity` sources (rounded up to a power of two buckets), whose
    /// bucket hash is keyed by `key` (take it from a random source).
    pub fn new(limits: Limits, capacity: usize, key: u64) -> Tracker {
        let buckets = capacity.div_ceil(BUCKET).max(1).next_power_of_two();
        Tracker { slots: vec![Slot::default(); buckets * BUCKET].into_boxed_slice(), limits, key }
    }

    /// The thresholds, changed by a reload; the counts so far stay.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The thresholds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many sources it can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The bytes its table takes.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Counts one request of `method` from `source` asking `target` (the To user), at
    /// `now_ms` (any clock that does not go back, in milliseconds), and says whether to drop it.
    pub fn observe(&mut self, source: IpAddr, method: Method, target: Option<&[u8]>, now_ms: u64) -> Seen {
        let limits = self.limits;
        let target_bit = target.map(|user| 1u64 << (hash_bytes(user, self.key) & 63));
        let slot = self.slot_for(number(source), now_ms);
        slot.seen = seen_at(now_ms);
        if slot.penalty_until > now_ms {
            return Seen::Penalised;
        }
        slot.roll(now_ms, limits.window_ms);
        slot.counts.requests = slot.counts.requests.saturating_add(1);
        slot.counts.watched = slot.counts.watched.saturating_add(u16::from(limits.watched.contains(method)));
        slot.targets |= target_bit.unwrap_or(0);
        slot.penalise_if_over(&limits, now_ms)
    }

    /// Counts the server's answer with `status` to `destination` at `now_ms`, if it is a
    /// failure ([`is_failure`]) and the destination is a source the tracker counts: an answer
    /// never makes a slot, so trusted sources (never observed) and spoofed answers take no
    /// room. `None` when nothing was counted; else whether the source is now penalised.
    pub fn answered(&mut self, destination: IpAddr, status: u16, now_ms: u64) -> Option<Seen> {
        if !is_failure(status) {
            return None;
        }
        let limits = self.limits;
        let source = number(destination);
        let slot = self.bucket_mut(source).iter_mut().find(|slot| slot.holds(source))?;
        if slot.penalty_until > now_ms {
            return Some(Seen::Penalised);
        }
        slot.roll(now_ms, limits.window_ms);
        slot.counts.failures = slot.counts.failures.saturating_add(1);
        Some(slot.penalise_if_over(&limits, now_ms))
    }

    /// Whether `source` is penalised at `now_ms` (without counting anything).
    pub fn is_penalised(&self, source: IpAddr, now_ms: u64) -> bool {
        let source = number(source);
        self.bucket(source).iter().any(|slot| slot.holds(source) && slot.penalty_until > now_ms)
    }

    fn bucket(&self, source: [u64; 2]) -> &[Slot] {
        let start = self.bucket_start(source);
        &self.slots[start..start + BUCKET]
    }

    fn bucket_mut(&mut self, source: [u64; 2]) -> &mut [Slot] {
        let start = self.bucket_start(source);
        &mut self.slots[start..start + BUCKET]
    }

    fn bucket_start(&self, source: [u64; 2]) -> usize {
        let buckets = self.slots.len() / BUCKET;
        (hash_source(source, self.key) as usize & (buckets - 1)) * BUCKET
    }

    /// The source's slot: its own, else an empty one, else the one seen longest ago (not
    /// penalised, if there is one), reset for it.
    fn slot_for(&mut self, source: [u64; 2], now_ms: u64) -> &mut Slot {
        let bucket = self.bucket_mut(source);
        let index = match bucket.iter().position(|slot| slot.holds(source)) {
            Some(own) => own,
            None => {
                let victim = bucket.iter().position(|slot| !slot.is_used()).unwrap_or_else(|| {
                    let oldest = |penalised: bool| {
                        (0..BUCKET)
                            .filter(|i| (bucket[*i].penalty_until > now_ms) == penalised)
                            .min_by_key(|i| bucket[*i].seen)
                    };
                    oldest(false).or_else(|| oldest(true)).unwrap_or(0)
                });
                bucket[victim] = Slot { source, seen: seen_at(now_ms), window_start: now_ms, ..Slot::default() };
                victim
            }
        };
        &mut bucket[index]
    }
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker").field("limits", &self.limits).field("capacity", &self.capacity()).finish()
    }
}

/// An address as one number: IPv4 as its IPv4-mapped IPv6 form, so both families share a
/// table and a mapped source is the IPv4 one.
fn number(source: IpAddr) -> [u64; 2] {
    let value = match source.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [(value >> 64) as u64, value as u64]
}

/// A keyed mix of a 128-bit number (the key keeps the buckets unknown to a sender).
fn hash_source([high, low]: [u64; 2], key: u64) -> u64 {
    mix(mix(low ^ key) ^ high)
}

fn hash_bytes(bytes: &[u8], key: u64) -> u64 {
    bytes.iter().fold(key ^ 0x9e37_79b9_7f4a_7c15, |h, b| mix(h ^ u64::from(*b)))
}

/// A 64-bit finaliser (splitmix64's).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { window_ms: 1000, max_requests: 5, max_targets: 32, penalty_ms: 5000, ..Limits::default() }
    }

    #[test]
    fn too_many_requests_in_a_sliding_window_penalise() {
        let mut tracker = Tracker::new(limits(), 64, 1);
        let source: IpAddr = "198.51.100.4".parse().unwrap();
        for now in 0..5 {
            assert_eq!(tracker.observe(source, Method::Options, None, now * 100), Seen::Fine);
        }
        // Half-way through the next window, half of the first one's 5 still counts: 2.5 + 2
        // is under the limit of 5, 2.5 + 3 is over.
        for now in 0..2 {
            assert_eq!(tracker.observe(source, Method::Options, None, 1500 + now), Seen::Fine);
        }
        assert_eq!(tracker.observe(source, Method::Options, None, 1502), Seen::Penalised);
        assert!(tracker.is_penalised(source, 6501) && !tracker.is_penalised(source, 6502));
        assert!(!tracker.is_penalised("198.51.100.5".parse().unwrap(), 1005), "another source is not");
        assert!(tracker.is_penalised("::ffff:198.51.100.4".parse().unwrap(), 1005), "its mapped form is");
    }

    #[test]
    fn a_burst_across_the_boundary_of_two_windows_is_caught() {
        // The window starts at 0; the burst is 4 at its end and 6 at the start of the next.
        // Windows that start afresh would let 4 + 5 through within 20 ms.
        let mut tracker = Tracker::new(limits(), 64, 1);
        let source: IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(tracker.observe(source, Method::Options, None, 0), Seen::Fine);
        let burst: Vec<Seen> = (0..10).map(|n| tracker.observe(source, Method::Options, None, 992 + 2 * n)).collect();
        assert_eq!(burst.iter().filter(|seen| **seen == Seen::Fine).count(), 4, "{burst:?}");
    }

    #[test]
    fn a_source_idle_for_two_windows_starts_afresh() {
        let mut tracker = Tracker::new(limits(), 64, 1);
        let source: IpAddr = "198.51.100.4".parse().unwrap();
        for now in 0..5 {
            assert_eq!(tracker.observe(source, Method::Options, None, 900 + now), Seen::Fine);
        }
        // Two windows after the first request's, nothing of the first window counts.
        for now in 0..5 {
            assert_eq!(tracker.observe(source, Method::Options, None, 2900 + now), Seen::Fine);
        }
    }

    #[test]
    fn failure_answers_count_against_a_counted_source_only() {
        let limits = Limits { max_failures: 3, ..limits() };
        let mut tracker = Tracker::new(limits, 64, 4);
        let (guesser, stranger): (IpAddr, IpAddr) = ("203.0.113.5".parse().unwrap(), "203.0.113.6".parse().unwrap());
        assert_eq!(tracker.answered(stranger, 403, 0), None, "an answer to a source never seen makes no slot");
        assert_eq!(tracker.observe(guesser, Method::Register, Some(b"100"), 0), Seen::Fine);
        assert_eq!(tracker.answered(guesser, 200, 1), None, "a success is no failure");
        assert_eq!(tracker.answered(guesser, 100, 1), None);
        for (status, now) in [(401, 2), (403, 3), (404, 4)] {
            assert_eq!(tracker.answered(guesser, status, now), Some(Seen::Fine));
        }
        assert_eq!(tracker.answered(guesser, 407, 5), Some(Seen::Penalised));
        assert_eq!(tracker.observe(guesser, Method::Register, Some(b"100"), 6), Seen::Penalised);
        assert!(!tracker.is_penalised(stranger, 6));
    }

    #[test]
    fn a_flood_of_new_sources_keeps_the_size_and_forgets_the_penalised_last() {
        let mut tracker = Tracker::new(Limits { max_requests: 0, ..limits() }, 1024, 2);
        let size = tracker.memory_bytes();
        let offender: IpAddr = "192.0.2.66".parse().unwrap();
        assert_eq!(tracker.observe(offender, Method::Options, None, 0), Seen::Penalised);
        for n in 0..200_000u32 {
            let spoofed = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            tracker.observe(spoofed, Method::Options, None, 1);
        }
        assert_eq!(tracker.memory_bytes(), size);
        // The flood's sources are penalised too (max_requests 0), so the offender competes
        // only by age; with penalties the same, it may be forgotten. With a flood that is not
        // penalised, it is kept:
        let mut tracker = Tracker::new(limits(), 1024, 2);
        for _ in 0..6 {
            tracker.observe(offender, Method::Options, None, 0);
        }
        for n in 0..200_000u32 {
            tracker.observe(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)), Method::Options, None, 1);
        }
        assert!(tracker.is_penalised(offender, 2), "penalised sources are the last to be forgotten");
    }

    #[test]
    fn the_table_rounds_up_to_whole_buckets_and_a_million_sources_fit_64_mib() {
        assert_eq!(Tracker::new(limits(), 1, 0).capacity(), BUCKET);
        let million = Tracker::new(limits(), 1_000_000, 0);
        assert_eq!(million.capacity(), 1 << 20);
        assert_eq!(million.memory_bytes(), 64 << 20);
    }

    #[test]
    fn enumerating_users_penalises_where_calling_one_does_not() {
        let limits =
            Limits { window_ms: 10_000, max_requests: 1000, max_targets: 10, penalty_ms: 60_000, ..Limits::default() };
        let mut tracker = Tracker::new(limits, 64, 3);
        let (scanner, phone): (IpAddr, IpAddr) = ("192.0.2.7".parse().unwrap(), "192.0.2.8".parse().unwrap());
        let mut seen = Vec::new();
        for n in 0..40u32 {
            seen.push(tracker.observe(scanner, Method::Options, Some(format!("{}", 100 + n).as_bytes()), u64::from(n)));
            assert_eq!(tracker.observe(phone, Method::Options, Some(b"1001"), u64::from(n)), Seen::Fine);
        }
        let first = seen.iter().position(|s| *s == Seen::Penalised).expect("penalised");
        // Hashed into 64 bits, 11 distinct users set 10 to 11 bits.
        assert!((10..=16).contains(&first), "penalised at the {first}th user");
        assert!(seen[first..].iter().all(|s| *s == Seen::Penalised));
    }
}
