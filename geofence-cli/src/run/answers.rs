//! What a running geofence answers on its control socket: its status, its counters, a reload
//! carried out while the client waits, its bans.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use geofence_core::Looked;

use super::{live_kernel_stats, ReloadAsked, Shared};
use crate::control::protocol::{
    BanCounters, BanEntry, Bans, Command, Counters, DatabaseStatus, DroppedSource, KernelQueue, Lifted, LiftedAll,
    PolicyStatus, QueueStatus, Response, Status,
};
use crate::control::{self, ControlError, Listener, Served, ANSWER_LIMIT, MAX_LISTED_BANS, STALE_DAYS};
use crate::files::DataSource;

/// Sources `status` lists among the top dropped.
const TOP_DROPPED: usize = 10;

/// Serves the control socket bound at `path`; reloads it asks for go to the reload thread
/// through `reloads`.
pub(super) fn serve(
    listener: Listener,
    shared: &Arc<Shared>,
    reloads: mpsc::Sender<ReloadAsked>,
    path: &Path,
) -> Result<Served, ControlError> {
    let shared = Arc::clone(shared);
    let served = control::serve(listener, move |command| answer(&shared, &reloads, command))
        .map_err(|source| ControlError::Bind { path: path.to_owned(), source })?;
    log::info!("control socket on {}", path.display());
    Ok(served)
}

fn answer(shared: &Shared, reloads: &mpsc::Sender<ReloadAsked>, command: Command) -> Response {
    let result = match command {
        Command::Status => value(status(shared)),
        Command::Counters => value(counters(shared)),
        Command::Reload => reload(reloads).and_then(value),
        Command::Bans => value(bans(shared)),
        Command::Unban { network } => unban(shared, &network).and_then(value),
        Command::UnbanAll => unban_all(shared).and_then(value),
    };
    match result {
        Ok(result) => Response::success(result),
        Err(reason) => Response::failure(reason),
    }
}

fn value(result: impl serde::Serialize) -> Result<serde_json::Value, String> {
    serde_json::to_value(result).map_err(|error| format!("internal error (please report it): {error}"))
}

/// Asks the reload thread for a reload and waits for its outcome: the reply says whether the
/// new policy decides, and if not, why.
fn reload(reloads: &mpsc::Sender<ReloadAsked>) -> Result<crate::control::protocol::Reloaded, String> {
    let (reply, outcome) = mpsc::sync_channel(1);
    reloads.send(Some(reply)).map_err(|_| "geofence is stopping".to_owned())?;
    outcome.recv_timeout(ANSWER_LIMIT).map_err(|_| "the reload did not finish in time".to_owned())?
}

fn status(shared: &Shared) -> Status {
    let now = SystemTime::now();
    let policy = shared.policy.load();
    let rules = policy.rules().len();
    let running = shared.running();
    let top_dropped = match shared.totals.lock() {
        Ok(totals) => totals.top_dropped(TOP_DROPPED),
        Err(_) => Vec::new(),
    };
    Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        started: unix(shared.started),
        uptime_seconds: now.duration_since(shared.started).map_or(0, |up| up.as_secs()),
        policy: PolicyStatus {
            config: shared.config.display().to_string(),
            loaded: unix(running.loaded),
            rules,
            default: policy.default_verdict().to_string(),
            reloads_applied: running.applied,
            reloads_refused: running.refused,
            last_refusal: running.last_refusal.clone(),
        },
        queues: shared.queues.iter().map(|(queue, counters)| queue_status(*queue, counters)).collect(),
        databases: running.sources.iter().map(|source| database_status(source, unix(now))).collect(),
        counters: counters(shared),
        top_dropped: top_dropped
            .into_iter()
            .map(|(source, packets, looked)| {
                let country = match looked {
                    Looked::Found(country) => country,
                    _ => policy.country_of(source),
                };
                DroppedSource {
                    source: source.to_string(),
                    country: country.map_or("-".to_owned(), |code| code.to_string()),
                    packets,
                }
            })
            .collect(),
        bans: ban_counters(shared),
    }
}

fn queue_status(queue: u16, counters: &geofence_nfq::QueueCounters) -> QueueStatus {
    QueueStatus {
        queue,
        packets: counters.packets.load(Ordering::Relaxed),
        enobufs: counters.enobufs.load(Ordering::Relaxed),
        handler_panics: counters.handler_panics.load(Ordering::Relaxed),
        kernel: live_kernel_stats(queue).map(|kernel| KernelQueue {
            waiting: kernel.waiting,
            queue_dropped: kernel.queue_dropped,
            user_dropped: kernel.user_dropped,
            queued: kernel.id_sequence,
        }),
    }
}

fn database_status(source: &DataSource, now: u64) -> DatabaseStatus {
    let age_days = crate::calendar::days_since(&source.date, now);
    DatabaseStatus {
        kind: source.kind.clone(),
        source: source.source.clone(),
        date: source.date.clone(),
        age_days,
        stale: age_days.is_some_and(|days| days > STALE_DAYS),
        entries: source.entries,
    }
}

fn counters(shared: &Shared) -> Counters {
    let Ok(totals) = shared.totals.lock() else { return Counters::default() };
    Counters {
        accepted: totals.accepted,
        marked: totals.marked,
        dropped: totals.dropped,
        malformed: totals.malformed,
        per_rule: totals.per_rule.clone(),
        per_country: totals.per_country().collect(),
    }
}

fn ban_counters(shared: &Shared) -> BanCounters {
    let counted = shared.banner.counters();
    BanCounters {
        running: shared.banner.running_count(),
        written: counted.banned.load(Ordering::Relaxed),
        already: counted.already.load(Ordering::Relaxed),
        full: counted.full.load(Ordering::Relaxed),
        failed: counted.failed.load(Ordering::Relaxed),
        lost: counted.lost.load(Ordering::Relaxed),
    }
}

fn bans(shared: &Shared) -> Bans {
    let (running, listed) = shared.banner.running(MAX_LISTED_BANS);
    let listed = listed
        .into_iter()
        .map(|ban| BanEntry {
            network: ban.network.to_string(),
            seconds_left: ban.duration_ms.div_ceil(1000),
            offences: ban.offences,
        })
        .collect();
    Bans { running, listed }
}

fn unban(shared: &Shared, network: &str) -> Result<Lifted, String> {
    let network = crate::bans::parse_network(network).map_err(|error| error.to_string())?;
    shared.banner.unban(network)?;
    log::info!("lifted the ban of {network} (asked on the control socket)");
    Ok(Lifted { network: network.to_string() })
}

fn unban_all(shared: &Shared) -> Result<LiftedAll, String> {
    let forgotten = shared.banner.unban_all()?;
    log::info!("lifted every ban and forgot {forgotten} offenders (asked on the control socket)");
    Ok(LiftedAll { forgotten })
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}
