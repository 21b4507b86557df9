//! The `[behaviour]` state of a running geofence: one per-source tracker, shared by the
//! workers, kept across reloads (a reload changes its thresholds, not its counts).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use geofence_core::ban::BanSpec;
use geofence_core::behaviour::{Seen, Tracker};
use geofence_core::config::Behaviour;
use geofence_core::sip::{self, Method, SipError, SipMessage};
use geofence_core::{Decision, Policy, Verdict};

/// The name drops by a behaviour threshold are counted and logged under.
pub const RULE: &str = "(behaviour)";

/// The tracker, if the config has a `[behaviour]` table, and the clock it is handed.
pub struct SharedTracker {
    started: Instant,
    tracker: Mutex<Option<Tracker>>,
    /// Whether there is a tracker: read without the lock, so that a policy without
    /// `[behaviour]` never takes it.
    active: AtomicBool,
    /// The penalty's length when `ban = true`, else 0: a penalised source is banned for it.
    ban_ms: AtomicU64,
}

impl SharedTracker {
    pub fn new(behaviour: Option<Behaviour>) -> SharedTracker {
        let shared = SharedTracker {
            started: Instant::now(),
            tracker: Mutex::new(None),
            active: AtomicBool::new(false),
            ban_ms: AtomicU64::new(0),
        };
        shared.apply(behaviour);
        shared
    }

    /// Takes a (re)loaded config's `[behaviour]`: new thresholds keep the counts; a larger
    /// `max_sources` than the table has starts a new table; none drops the state.
    pub fn apply(&self, behaviour: Option<Behaviour>) {
        let ban_ms = behaviour.filter(|wanted| wanted.ban).map_or(0, |wanted| wanted.limits.penalty_ms);
        self.ban_ms.store(ban_ms, Ordering::Release);
        let mut tracker = self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *tracker = match (tracker.take(), behaviour) {
            (_, None) => None,
            (Some(mut running), Some(wanted)) if running.capacity() >= wanted.max_sources => {
                running.set_limits(wanted.limits);
                Some(running)
            }
            (_, Some(wanted)) => {
                // The bucket hash's key: unknown to senders, so they cannot aim at one bucket.
                let key = std::collections::hash_map::RandomState::new().hash_one(0u64);
                let fresh = Tracker::new(wanted.limits, wanted.max_sources, key);
                log::info!(
                    "behaviour: {} sources tracked in {:.1} MiB",
                    fresh.capacity(),
                    fresh.memory_bytes() as f64 / 1048576.0
                );
                Some(fresh)
            }
        };
        self.active.store(tracker.is_some(), Ordering::Release);
    }

    /// The decision with the thresholds applied: a SIP request that `policy` let through from
    /// an untrusted source (a rule at or after its first SIP rule) is counted, and dropped when
    /// its source is over a threshold. Trusted sources are never counted. `message` is what
    /// the decision read of the payload ([`Policy::explain_sip`]), so nothing is parsed twice.
    pub fn judge<'a>(
        &self,
        policy: &Policy,
        decision: Decision<'a>,
        message: Option<Result<SipMessage<'_>, SipError>>,
    ) -> Decision<'a> {
        let counted = self.active.load(Ordering::Acquire)
            && decision.verdict != Verdict::Drop
            && !policy.settles_flow(decision.rule_index);
        let (Some(source), true) = (decision.source, counted) else { return decision };
        let Some(Ok(SipMessage::Request(request))) = message else { return decision };
        let target = request.to().and_then(|to| to.user);
        let mut judged = decision;
        if self.observe(source, request.method, target) == Some(Seen::Penalised) {
            (judged.verdict, judged.rule, judged.rule_index) = (Verdict::Drop, Some(RULE), None);
        }
        judged
    }

    /// Counts the server's answer in `packet` (queued on OUTPUT, see `geofence rules`) against
    /// the source it answers, when it is a failure and the source is one the tracker counts.
    pub fn answered(&self, packet: &[u8]) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let Ok(meta) = geofence_core::packet::parse(packet) else { return };
        let Ok(SipMessage::Response { status }) = sip::parse(meta.payload(packet)) else { return };
        let now = self.now_ms();
        let mut tracker = self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let seen = tracker.as_mut().and_then(|tracker| tracker.answered(meta.destination, status, now));
        if seen == Some(Seen::Penalised) {
            log::debug!("behaviour: {} answered {status}, over max_failures", meta.destination);
        }
    }

    /// The ban a source gets when a threshold drops its request (`ban = true`), if any: the
    /// source alone, for the penalty.
    pub fn ban(&self) -> Option<BanSpec> {
        let duration_ms = self.ban_ms.load(Ordering::Acquire);
        (duration_ms > 0).then_some(BanSpec { duration_ms, prefix_v4: 32, prefix_v6: 128 })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn observe(&self, source: IpAddr, method: Method, target: Option<&[u8]>) -> Option<Seen> {
        let now = self.now_ms();
        let mut tracker = self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tracker.as_mut().map(|tracker| tracker.observe(source, method, target, now))
    }
}
