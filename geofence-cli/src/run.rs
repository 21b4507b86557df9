//! `geofence run`: bind the config's queue, decide every packet with its policy, stop cleanly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use geofence_core::Verdict;
use geofence_nfq::{Queue, QueueConfig};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::CliError;
use crate::files;

/// Arguments of `geofence run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The policy file (TOML), e.g. examples/asterisk.toml.
    #[arg(long, short)]
    config: PathBuf,
    /// Country databases, overriding the config's `database` (any supported format; later ones
    /// override earlier ones). Default: the config's, else the embedded DB-IP database.
    #[arg(long = "db")]
    databases: Vec<PathBuf>,
}

/// Serves the queue until SIGTERM or SIGINT; then every packet still queued gets the fallback
/// verdict, the queue is unbound and the counters are printed.
pub fn run(args: &RunArgs) -> Result<ExitCode, CliError> {
    let config = files::load_config(&args.config)?;
    let (table, provenance) = files::load_database(&files::database_paths(&args.databases, &config, &args.config))?;
    log::info!("country database: {}", files::describe(&table, &provenance));
    let db = Arc::new(table);
    let mut queue_config = QueueConfig::new(config.queue);
    queue_config.fail_open = config.fail_open;
    queue_config.fallback = if config.fail_open { Verdict::Accept } else { Verdict::Drop };
    if let Some(length) = config.queue_length {
        queue_config.max_len = length;
    }
    let policy = Arc::new(config.policy.build(db)?);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(CliError::Signals)?;
    }
    let queue = Queue::bind(queue_config.clone())?;
    let counters = queue.counters();
    log::info!(
        "queue {} bound: {} rules, default {}, fail-open {}",
        queue_config.queue,
        policy.rules().len(),
        policy.default_verdict(),
        queue_config.fail_open
    );
    let kernel = queue.run(|packet| policy.decide(packet), &stop)?;

    let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    log::info!(
        "stopped: {} packets, {} accepted, {} dropped, {} handler panics, {} ENOBUFS, {} receive calls, {} verdict messages",
        read(&counters.packets),
        read(&counters.accepted),
        read(&counters.dropped),
        read(&counters.handler_panics),
        read(&counters.enobufs),
        read(&counters.receive_calls),
        read(&counters.verdict_messages),
    );
    match kernel {
        Some(k) if k.queue_dropped + k.user_dropped > 0 => log::warn!(
            "the kernel lost {} packets of queue {} ({} queue full, {} reader behind){}",
            k.queue_dropped + k.user_dropped,
            k.queue,
            k.queue_dropped,
            k.user_dropped,
            if queue_config.fail_open { ": fail-open let them through" } else { ": dropped" }
        ),
        Some(k) => log::info!("the kernel lost no packets of queue {} ({} queued in all)", k.queue, k.id_sequence),
        None => log::warn!("cannot read the kernel's counters for queue {}", queue_config.queue),
    }
    println!("verdicts={}", read(&counters.packets));
    Ok(ExitCode::SUCCESS)
}
