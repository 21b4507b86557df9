//! `geofence run`: bind the config's queues, decide every packet, reload on SIGHUP or when the
//! control socket asks, report on SIGUSR1 and to the control socket, stop cleanly on SIGTERM
//! or SIGINT.

mod answers;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use geofence_core::ban::BanSpec;
use geofence_core::config::Deployment;
use geofence_core::{Decision, Policy, Verdict};
use geofence_nfq::{
    bind_queues, deployment, kernel_queue_stats, run_queues, Handler, KernelQueueStats, QueueCounters, QueuedPacket,
    Stop,
};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::banning::Banner;
use crate::behaviour::SharedTracker;
use crate::control::{self, protocol::Reloaded};
use crate::error::CliError;
use crate::files::{self, DataSource, Sizes};
use crate::privileges;
use crate::stats::{self, Local, Totals};

/// Arguments of `geofence run`.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// The policy file (TOML), e.g. examples/asterisk.toml.
    #[arg(long, short)]
    config: PathBuf,
    /// A country database, overriding the config's `database`; repeat it to layer several
    /// (any supported format; later ones override earlier ones). Default: the config's, else
    /// the embedded DB-IP database.
    #[arg(long = "db", value_name = "FILE")]
    databases: Vec<PathBuf>,
    /// The control socket, which `geofence status` and `geofence reload` ask (root-only).
    #[arg(long, value_name = "SOCKET", default_value = control::DEFAULT_SOCKET)]
    control: PathBuf,
    /// Serve no control socket.
    #[arg(long)]
    no_control: bool,
}

/// What the workers, the signal handler and the reporters share.
struct Shared {
    policy: ArcSwap<Policy>,
    /// Bumped by every reload, so a worker notices a new policy with one atomic load.
    generation: AtomicU64,
    totals: Mutex<Totals>,
    flow_mark: u32,
    /// What an accept that holds for its packet alone carries instead of the flow mark.
    examined_mark: u32,
    queues: Vec<(u16, Arc<QueueCounters>)>,
    behaviour: SharedTracker,
    banner: Banner,
    started: SystemTime,
    config: PathBuf,
    running: Mutex<Running>,
}

/// The running policy's data and the reloads so far, for `geofence status`.
struct Running {
    loaded: SystemTime,
    sources: Vec<DataSource>,
    applied: u64,
    refused: u64,
    last_refusal: Option<String>,
}

impl Running {
    fn new(sources: Vec<DataSource>) -> Running {
        Running { loaded: SystemTime::now(), sources, applied: 0, refused: 0, last_refusal: None }
    }
}

impl Shared {
    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new policy built from `sources` is about to be swapped in.
    fn loaded(&self, sources: Vec<DataSource>) {
        let mut running = self.running();
        (running.loaded, running.sources) = (SystemTime::now(), sources);
    }

    fn record_reload<T>(&self, outcome: &Result<T, String>) {
        let mut running = self.running();
        match outcome {
            Ok(_) => running.applied += 1,
            Err(reason) => {
                running.refused += 1;
                running.last_refusal = Some(reason.clone());
            }
        }
    }
}

/// Serves the queues until SIGTERM or SIGINT; then every packet still queued gets the fallback
/// verdict, the queues are unbound and the counters are printed.
pub fn run(args: &RunArgs) -> Result<ExitCode, CliError> {
    let files::Loaded { config, policy, sizes, sources } = load(args)?;
    let deployment = &config.deployment;
    let (fail_open, flow_mark) = (deployment.fail_open, deployment.flow_mark);
    let queue_configs = deployment::queue_configs(deployment, policy.reads_payload());
    let copy_range = queue_configs.first().map_or(0, |queue| queue.copy_range);
    // Restored before the queues are bound: by the first queued packet, the kernel already
    // drops the sources banned before a restart.
    let banner = Banner::start(
        deployment.bans.limits,
        deployment.bans.sets,
        deployment.bans.state.as_deref().map(|state| files::beside_config(&args.config, state)),
    );
    // Bound before the queues: a second geofence on the same socket is refused before it
    // takes a queue.
    let control_socket = (!args.no_control).then(|| control::bind(&args.control)).transpose()?;
    let queues = bind_queues(queue_configs)?;
    // Bound before the capabilities go: a port below 1024 needs CAP_NET_BIND_SERVICE.
    let metrics = deployment.metrics.map(bind_metrics).transpose()?;
    privileges::keep_only_net_admin();
    let (first, last) = deployment.queues;
    log::info!(
        "serving queue{} {first}{}: {} rules, default {}, malformed {}, fail-{}, flow mark {:#x}",
        if first == last { "" } else { "s" },
        if first == last { String::new() } else { format!("-{last}") },
        policy.rules().len(),
        policy.default_verdict(),
        policy.malformed_verdict(),
        if deployment.fail_open { "open" } else { "closed" },
        deployment.flow_mark,
    );
    if policy.reads_payload() && copy_range != deployment::WHOLE_DATAGRAM {
        log::warn!(
            "rules read SIP payloads, but copy_range = {copy_range} cuts longer datagrams short: leave it out to copy \
             whole datagrams"
        );
    }
    let shared = Arc::new(Shared {
        policy: ArcSwap::from(Arc::new(policy)),
        generation: AtomicU64::new(0),
        totals: Mutex::new(Totals::default()),
        flow_mark: deployment.flow_mark,
        examined_mark: deployment.examined_mark,
        queues: queues.iter().map(|queue| (queue.number(), queue.counters())).collect(),
        behaviour: SharedTracker::new(config.policy.behaviour),
        banner,
        started: SystemTime::now(),
        config: std::fs::canonicalize(&args.config).unwrap_or_else(|_| args.config.clone()),
        running: Mutex::new(Running::new(sources)),
    });
    let fixed = deployment.clone();
    let summary_seconds = deployment.summary_seconds.max(1);
    let stop = Stop::new();
    let mut signals = Signals::new([SIGHUP, SIGUSR1, SIGTERM, SIGINT]).map_err(CliError::Signals)?;
    let handle = signals.handle();
    let reloads = spawn_reloader(args, fixed, sizes, &shared);
    let served = match control_socket {
        Some(listener) => Some(answers::serve(listener, &shared, reloads.clone(), &args.control)?),
        None => None,
    };
    let signal_thread = {
        let (shared, stop) = (Arc::clone(&shared), stop.clone());
        std::thread::spawn(move || {
            for signal in signals.forever() {
                match signal {
                    // Handed to the reload thread, so that a slow reload never keeps SIGTERM
                    // waiting; a send fails only once that thread has gone, which it does not.
                    SIGHUP => drop(reloads.send(None)),
                    SIGUSR1 => report(&shared, live_kernel_stats),
                    _ => {
                        log::info!("stopping: finishing the packets in flight");
                        stop.stop();
                    }
                }
            }
        })
    };
    spawn_summaries(&shared, &stop, summary_seconds);
    if let Some(listener) = metrics {
        let address = listener.local_addr().map_or_else(|_| "the metrics address".into(), |a| a.to_string());
        let shared = Arc::clone(&shared);
        crate::metrics::spawn(listener, move || prometheus(&shared))
            .map_err(|source| CliError::Metrics { address, source })?;
    }
    let worker_shared = Arc::clone(&shared);
    let reports = run_queues(queues, move |_| Worker::new(Arc::clone(&worker_shared)), &stop)?;
    handle.close();
    let _ = signal_thread.join();

    drop(served);
    shared.banner.save();
    // The queues are unbound now: their kernel counters are the ones read just before.
    report(&shared, |queue| reports.iter().filter_map(|r| r.kernel).find(|k| k.queue == queue));
    for report in &reports {
        match report.kernel {
            Some(k) if k.queue_dropped + k.user_dropped > 0 => log::warn!(
                "the kernel lost {} packets of queue {} ({} queue full, {} reader behind)",
                k.queue_dropped + k.user_dropped,
                k.queue,
                k.queue_dropped,
                k.user_dropped
            ),
            Some(k) => log::info!("the kernel lost no packets of queue {} ({} queued in all)", k.queue, k.id_sequence),
            None => log::warn!("cannot read the kernel's counters for a queue"),
        }
    }
    if fail_open {
        log::warn!("{}", unexamined_note(flow_mark));
    }
    let verdicts: u64 = reports.iter().map(|r| r.counters.packets.load(Ordering::Relaxed)).sum();
    crate::output(&format!("verdicts={verdicts}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// What an exit report under fail-open must add: the queue's kernel counters never count the
/// packets fail-open let pass, so "lost no packets" would hide them.
fn unexamined_note(flow_mark: u32) -> String {
    let counted = if flow_mark == 0 {
        "with flow_mark = 0 no rule can tell them from decided ones".to_owned()
    } else {
        format!(
            "the rules `geofence rules` prints count them: `iptables -t security -vnL INPUT` and `ip6tables -t \
             security -vnL INPUT`, comment {}",
            geofence_nfq::rules::UNEXAMINED_COMMENT
        )
    };
    format!(
        "fail_open: packets that found a queue full passed unexamined, and the kernel's queue counters above do \
         not count them; {counted}"
    )
}

fn load(args: &RunArgs) -> Result<files::Loaded, CliError> {
    files::load_policy(&args.config, &args.databases)
}

/// A reload asked for: by SIGHUP (no one waits for its outcome) or over the control socket
/// (the outcome is sent back).
type ReloadAsked = Option<mpsc::SyncSender<Result<Reloaded, String>>>;

/// The thread that carries out the reloads one after another, as they are asked for. It is
/// never waited for: stopping while it builds a policy discards the unfinished one.
/// `sizes` are the running data's, which each accepted reload updates.
fn spawn_reloader(
    args: &RunArgs,
    running: Deployment,
    mut sizes: Sizes,
    shared: &Arc<Shared>,
) -> mpsc::Sender<ReloadAsked> {
    let (requests, asked) = mpsc::channel::<ReloadAsked>();
    let (args, shared) = (args.clone(), Arc::clone(shared));
    std::thread::spawn(move || {
        for reply in asked {
            let outcome = reload(&args, &running, &mut sizes, &shared);
            shared.record_reload(&outcome);
            let (answer, replaced) = match outcome {
                Ok((reloaded, replaced)) => (Ok(reloaded), Some(replaced)),
                Err(reason) => (Err(reason), None),
            };
            if let Some(reply) = reply {
                let _ = reply.try_send(answer);
            }
            if let Some(replaced) = replaced {
                dispose_here(replaced, DISPOSE_WAIT);
            }
        }
    });
    requests
}

/// A new config, database and feeds, swapped in whole; a bad one, or one whose data shrank
/// too far, is refused and the running policy stays. Returns what the log says of the new
/// policy and the policy it replaced, or why it was refused.
/// The deployment settings stay as they were at start: the kernel holds the queues and rules
/// made from them.
fn reload(
    args: &RunArgs,
    running: &Deployment,
    running_sizes: &mut Sizes,
    shared: &Shared,
) -> Result<(Reloaded, Arc<Policy>), String> {
    let refused = |reason: String| {
        log::error!("reload refused, the running policy stays: {reason}");
        reason
    };
    let loaded = load(args).map_err(|error| {
        let causes: String = crate::error::causes(&error).map(|cause| format!(": {cause}")).collect();
        refused(format!("{error}{causes}{}", reload_hint(&error)))
    })?;
    if let Some(reason) = shrinkage(&loaded, running_sizes) {
        return Err(refused(reason));
    }
    let files::Loaded { config, policy, sizes, sources } = loaded;
    *running_sizes = sizes;
    let mut warnings = Vec::new();
    if policy.reads_payload() && !shared.policy.load().reads_payload() && running.copy_range.is_none() {
        warnings.push(
            "the new rules read SIP payloads, but the queues were bound to copy only headers: restart geofence to \
             copy whole datagrams (until then they read only the bytes the queue copies)"
                .to_owned(),
        );
    }
    if config.deployment != *running {
        warnings.push(
            "the deployment settings (queue, fail_open, queue_length, copy_range, hashlimit, flow_mark, metrics, \
             summary_seconds, bans) take effect only on restart"
                .to_owned(),
        );
    }
    for warning in &warnings {
        log::warn!("reload: {warning}");
    }
    let summary = format!(
        "reloaded {}: {} rules, default {}",
        args.config.display(),
        policy.rules().len(),
        policy.default_verdict()
    );
    log::info!("{summary}");
    shared.behaviour.apply(config.policy.behaviour);
    shared.loaded(sources);
    let old = shared.policy.swap(Arc::new(policy));
    shared.generation.fetch_add(1, Ordering::Release);
    Ok((Reloaded { summary, warnings }, old))
}

/// Why a reload's data looks cut short: a database or a feed with less than half of what the
/// running one holds, unless the config lets it shrink.
fn shrinkage(loaded: &files::Loaded, running: &Sizes) -> Option<String> {
    let may_shrink = loaded.config.policy.database_may_shrink;
    let databases =
        [("country", loaded.sizes.ranges, running.ranges), ("ASN", loaded.sizes.asn_ranges, running.asn_ranges)];
    for (kind, ranges, before) in databases {
        if shrank_too_far(ranges, before) && !may_shrink {
            return Some(format!(
                "the new {kind} database has {ranges} ranges, less than half of the running one's {before}: cut \
                 short or the wrong file? (database_may_shrink = true accepts it)"
            ));
        }
    }
    loaded.sizes.feeds.iter().find_map(|feed| {
        let before = running.feeds.iter().find(|old| old.name == feed.name)?.networks;
        (shrank_too_far(feed.networks, before) && !feed.may_shrink).then(|| {
            format!(
                "feed `{}` now lists {} networks, less than half of the running list's {before}: cut short? \
                 (may_shrink = true in its [feeds] entry accepts it)",
                feed.name, feed.networks
            )
        })
    })
}

/// How long a reload waits for the workers to let go of the policy it replaced: they do at
/// their next packet, or within a receive timeout when idle.
const DISPOSE_WAIT: Duration = Duration::from_secs(2);

/// Drops `old` on this thread once every other holder has let go (or after `wait`): freeing a
/// large policy takes time (a million IPv6 networks in a list: 1.5 s), which a queue worker,
/// the last to hold it, would otherwise spend with packets waiting.
fn dispose_here<T>(old: Arc<T>, wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(old);
}

/// Whether data of `size` entries has less than half of the running data's `running`.
fn shrank_too_far(size: usize, running: usize) -> bool {
    size.saturating_mul(2) < running
}

/// What to do about a file the reload may not read: at start geofence read it with every
/// capability, on reload it has only CAP_NET_ADMIN left.
fn reload_hint(error: &CliError) -> &'static str {
    match error {
        CliError::Read { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            " (after start geofence keeps only CAP_NET_ADMIN, so it reads files as an ordinary root process: \
             make root the file's owner, or let others read it)"
        }
        _ => "",
    }
}

/// SIGUSR1 (and exit): every counter, in the log. `kernel` gives a queue's kernel counters:
/// read live while bound, or as they were just before unbinding at exit.
fn report(shared: &Shared, kernel: impl Fn(u16) -> Option<KernelQueueStats>) {
    let Ok(totals) = shared.totals.lock() else { return };
    log::info!(
        "counters: {} accepted, {} accepted with a mark, {} dropped, {} unparsable",
        totals.accepted,
        totals.marked,
        totals.dropped,
        totals.malformed
    );
    let countries: Vec<String> =
        totals.per_country().map(|(country, [accepted, dropped])| format!("{country} {accepted}/{dropped}")).collect();
    log::info!("per country (accepted/dropped): {}", countries.join(", "));
    let rules: Vec<String> = totals.per_rule.iter().map(|(rule, count)| format!("{rule} {count}")).collect();
    log::info!("per rule: {}", rules.join(", "));
    let bans = shared.banner.counters();
    log::info!(
        "bans: {} written, {} already banned, {} refused (set full), {} not taken by the kernel, {} lost (channel \
         full)",
        bans.banned.load(Ordering::Relaxed),
        bans.already.load(Ordering::Relaxed),
        bans.full.load(Ordering::Relaxed),
        bans.failed.load(Ordering::Relaxed),
        bans.lost.load(Ordering::Relaxed),
    );
    for (queue, counters) in &shared.queues {
        let dropped = kernel(*queue).map_or("kernel counters unreadable".to_owned(), |k| {
            format!("kernel dropped {} (queue full) + {} (reader behind)", k.queue_dropped, k.user_dropped)
        });
        log::info!(
            "queue {queue}: {} packets in {} receive calls and {} verdict messages, {} ENOBUFS, {} handler \
             panics, {dropped}",
            counters.packets.load(Ordering::Relaxed),
            counters.receive_calls.load(Ordering::Relaxed),
            counters.verdict_messages.load(Ordering::Relaxed),
            counters.enobufs.load(Ordering::Relaxed),
            counters.handler_panics.load(Ordering::Relaxed),
        );
    }
}

fn live_kernel_stats(queue: u16) -> Option<KernelQueueStats> {
    kernel_queue_stats(queue).ok().flatten()
}

/// Every `seconds`, one info line about what was dropped: an attack cannot flood the log.
fn spawn_summaries(shared: &Arc<Shared>, stop: &Stop, seconds: u64) {
    let (shared, stop) = (Arc::clone(shared), stop.clone());
    std::thread::spawn(move || {
        let tick = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        let counted = shared.banner.counters();
        let mut bans_before = [counted.banned.load(Ordering::Relaxed), counted.full.load(Ordering::Relaxed)];
        while !stop.is_stopped() {
            std::thread::sleep(tick);
            waited += tick;
            if waited < Duration::from_secs(seconds) {
                continue;
            }
            waited = Duration::ZERO;
            let interval = match shared.totals.lock() {
                Ok(mut totals) => totals.take_interval(),
                Err(_) => return,
            };
            let policy = shared.policy.load();
            if let Some(line) = stats::summary(&interval, seconds, |source| policy.country_of(source)) {
                log::info!("{line}");
            }
            let counted = shared.banner.counters();
            let now = [counted.banned.load(Ordering::Relaxed), counted.full.load(Ordering::Relaxed)];
            if now != bans_before {
                let ([banned, full], [banned_before, full_before]) = (now, bans_before);
                log::info!(
                    "banned {} sources in the last {seconds} s ({} refused: the set is full)",
                    banned - banned_before,
                    full - full_before
                );
                bans_before = now;
            }
        }
    });
}

/// The metrics socket, bound at start while geofence still holds its capabilities.
fn bind_metrics(address: SocketAddr) -> Result<TcpListener, CliError> {
    let listener =
        TcpListener::bind(address).map_err(|source| CliError::Metrics { address: address.to_string(), source })?;
    log::info!("metrics on http://{address}/metrics");
    Ok(listener)
}

/// A label value as the Prometheus text format writes it: backslash, double quote and line feed
/// escaped, so no name can end the label or start a line of its own.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn prometheus(shared: &Shared) -> String {
    let Ok(totals) = shared.totals.lock() else { return String::new() };
    let mut out = String::from("# TYPE geofence_packets_total counter\n");
    for (verdict, count) in [("accept", totals.accepted), ("accept_marked", totals.marked), ("drop", totals.dropped)] {
        out.push_str(&format!("geofence_packets_total{{verdict=\"{verdict}\"}} {count}\n"));
    }
    out.push_str(&format!(
        "# TYPE geofence_unparsable_total counter\ngeofence_unparsable_total {}\n",
        totals.malformed
    ));
    out.push_str("# TYPE geofence_country_packets_total counter\n");
    for (country, [accepted, dropped]) in totals.per_country() {
        let country = label_value(&country);
        out.push_str(&format!(
            "geofence_country_packets_total{{country=\"{country}\",verdict=\"accept\"}} {accepted}\n"
        ));
        out.push_str(&format!("geofence_country_packets_total{{country=\"{country}\",verdict=\"drop\"}} {dropped}\n"));
    }
    out.push_str("# TYPE geofence_rule_packets_total counter\n");
    for (rule, count) in &totals.per_rule {
        out.push_str(&format!("geofence_rule_packets_total{{rule=\"{}\"}} {count}\n", label_value(rule)));
    }
    out.push_str("# TYPE geofence_bans_total counter\n");
    let bans = shared.banner.counters();
    for (outcome, counter) in [
        ("written", &bans.banned),
        ("already", &bans.already),
        ("full", &bans.full),
        ("failed", &bans.failed),
        ("lost", &bans.lost),
    ] {
        out.push_str(&format!("geofence_bans_total{{outcome=\"{outcome}\"}} {}\n", counter.load(Ordering::Relaxed)));
    }
    out.push_str("# TYPE geofence_queue_enobufs_total counter\n");
    for (queue, counters) in &shared.queues {
        out.push_str(&format!(
            "geofence_queue_enobufs_total{{queue=\"{queue}\"}} {}\n",
            counters.enobufs.load(Ordering::Relaxed)
        ));
        if let Ok(Some(kernel)) = kernel_queue_stats(*queue) {
            out.push_str(&format!(
                "geofence_kernel_queue_dropped_total{{queue=\"{queue}\"}} {}\n",
                kernel.queue_dropped
            ));
            out.push_str(&format!("geofence_kernel_user_dropped_total{{queue=\"{queue}\"}} {}\n", kernel.user_dropped));
        }
    }
    out
}

/// One queue's handler: decides with the current policy (a reload applies from the next
/// packet), counts, and at the end of each burst publishes its counts.
struct Worker {
    shared: Arc<Shared>,
    generation: u64,
    policy: Arc<Policy>,
    /// The rules' names, for the counters and shared with the ban thread's log lines.
    names: Vec<Arc<str>>,
    /// The name the behaviour thresholds' bans are logged under.
    behaviour_rule: Arc<str>,
    local: Local,
    debug: bool,
}

impl Worker {
    fn new(shared: Arc<Shared>) -> Worker {
        let generation = shared.generation.load(Ordering::Acquire);
        let policy = shared.policy.load_full();
        let names = rule_names(&policy);
        let local = Local::new(policy.rules().len());
        Worker {
            shared,
            generation,
            policy,
            names,
            behaviour_rule: Arc::from(crate::behaviour::RULE),
            local,
            debug: log::log_enabled!(log::Level::Debug),
        }
    }

    /// The ban a dropped packet's source gets, and the rule that gives it: a ban rule's (unless
    /// the source is trusted), or the behaviour thresholds' when they ban.
    fn ban_of(&self, decision: &Decision<'_>) -> Option<(IpAddr, BanSpec, &Arc<str>)> {
        let source = decision.source.filter(|_| decision.verdict == Verdict::Drop)?;
        match decision.rule_index {
            Some(index) => Some((source, self.policy.ban_for(index, source)?, self.names.get(index)?)),
            None if decision.rule == Some(crate::behaviour::RULE) => {
                Some((source, self.shared.behaviour.ban()?, &self.behaviour_rule))
            }
            None => None,
        }
    }

    /// Publishes the counts made under the old policy, then takes the new one.
    fn take_new_policy(&mut self) {
        self.local.flush(&self.shared.totals, &self.names);
        self.generation = self.shared.generation.load(Ordering::Acquire);
        self.policy = self.shared.policy.load_full();
        self.names = rule_names(&self.policy);
        self.local = Local::new(self.policy.rules().len());
    }
}

fn rule_names(policy: &Policy) -> Vec<Arc<str>> {
    policy.rules().map(|rule| Arc::from(rule.name())).collect()
}

impl Handler for Worker {
    fn decide(&mut self, packet: &QueuedPacket<'_>) -> Verdict {
        if self.shared.generation.load(Ordering::Acquire) != self.generation {
            self.take_new_policy();
        }
        if packet.hook == geofence_nfq::HOOK_LOCAL_OUT {
            // One of the server's failure answers, queued for `[behaviour]` to count: the policy
            // decides what arrives, not what the server sends.
            self.shared.behaviour.answered(packet.payload);
            self.local.record_answer();
            return Verdict::Accept;
        }
        let (decision, message) = self.policy.explain_sip(packet.payload);
        let settles = self.policy.settles(&decision, message.as_ref());
        let decision = self.shared.behaviour.judge(&self.policy, decision, message);
        self.local.record(&decision);
        if let Some((source, spec, rule)) = self.ban_of(&decision) {
            self.shared.banner.ask(source, spec, rule);
        }
        if self.debug {
            log::debug!(
                "{} {} {} rule {} -> {}",
                decision.source.map_or("-".to_owned(), |s| s.to_string()),
                decision.country,
                decision
                    .packet
                    .as_ref()
                    .map_or_else(|e| e.to_string(), |m| format!("{}/{:?}", m.protocol, m.destination_port())),
                decision.rule.unwrap_or("(default)"),
                decision.verdict
            );
        }
        // A verdict a later datagram's payload could change is not given to the flow, only
        // marked as decided (the behaviour step only ever turns it into a drop, which carries
        // no mark).
        let mark = if settles { self.shared.flow_mark } else { self.shared.examined_mark };
        deployment::with_mark(decision.verdict, mark)
    }

    fn burst_done(&mut self) {
        self.local.flush(&self.shared.totals, &self.names);
        self.debug = log::log_enabled!(log::Level::Debug);
    }

    /// An idle queue lets go of a replaced policy at once rather than at its next packet, so a
    /// reload's old table is freed.
    fn idle(&mut self) {
        if self.shared.generation.load(Ordering::Acquire) != self.generation {
            self.take_new_policy();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_policy_is_freed_by_the_thread_that_replaced_it() {
        struct Recorder(Arc<Mutex<Option<std::thread::ThreadId>>>);
        impl Drop for Recorder {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(std::thread::current().id());
            }
        }
        let dropped_on = Arc::new(Mutex::new(None));
        let old = Arc::new(Recorder(Arc::clone(&dropped_on)));
        let worker = {
            let held = Arc::clone(&old);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                drop(held);
            })
        };
        dispose_here(old, Duration::from_secs(5));
        worker.join().unwrap();
        assert_eq!(*dropped_on.lock().unwrap(), Some(std::thread::current().id()));
    }

    #[test]
    fn an_idle_worker_lets_go_of_a_replaced_policy() {
        let db: Arc<dyn geofence_core::db::CountryDb> =
            Arc::new(geofence_core::db::parse_range_csv("192.0.2.0,192.0.2.255,GB\n").unwrap());
        let policy =
            |text: &str| Arc::new(geofence_core::Config::parse(text).unwrap().policy.build(Arc::clone(&db)).unwrap());
        let old = policy("default = \"drop\"\n");
        let shared = Arc::new(Shared {
            policy: ArcSwap::from(Arc::clone(&old)),
            generation: AtomicU64::new(0),
            totals: Mutex::new(Totals::default()),
            flow_mark: 0,
            examined_mark: 0,
            queues: Vec::new(),
            behaviour: SharedTracker::new(None),
            banner: Banner::start(Default::default(), Default::default(), None),
            started: SystemTime::now(),
            config: PathBuf::new(),
            running: Mutex::new(Running::new(Vec::new())),
        });
        let mut worker = Worker::new(Arc::clone(&shared));
        shared.policy.store(policy("default = \"accept\"\n"));
        shared.generation.fetch_add(1, Ordering::Release);
        assert_eq!(Arc::strong_count(&old), 2, "the worker still holds the old policy");
        worker.idle();
        assert_eq!(Arc::strong_count(&old), 1, "and lets go of it when idle");
    }

    #[test]
    fn label_values_cannot_break_out_of_their_label() {
        let injected = "x\"} 1\ngeofence_packets_total{verdict=\"accept\"} 999999";
        assert_eq!(label_value(injected), r#"x\"} 1\ngeofence_packets_total{verdict=\"accept\"} 999999"#);
        assert_eq!(label_value(r"back\slash"), r"back\\slash");
        assert_eq!(label_value("not looked up"), "not looked up");
    }
}
