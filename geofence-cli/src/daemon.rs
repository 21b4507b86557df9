//! The commands that ask a running geofence over its control socket: `geofence status` and
//! `geofence reload`.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::calendar::time_of;
use crate::control::protocol::{Command, Status};
use crate::control::{self, ControlError, STALE_DAYS};
use crate::error::CliError;
use crate::stats::thousands;

/// Arguments of `geofence status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// The running geofence's control socket.
    #[arg(long, value_name = "SOCKET", default_value = control::DEFAULT_SOCKET)]
    control: PathBuf,
    /// Print the status as JSON (the control protocol's `status` result), for scripts.
    #[arg(long)]
    json: bool,
}

/// Arguments of `geofence reload`.
#[derive(clap::Args)]
pub struct ReloadArgs {
    /// The running geofence's control socket.
    #[arg(long, value_name = "SOCKET", default_value = control::DEFAULT_SOCKET)]
    control: PathBuf,
}

/// Prints what the running geofence is doing.
pub fn status(args: &StatusArgs) -> Result<ExitCode, CliError> {
    let result = control::ask(&args.control, Command::Status)?;
    if args.json {
        crate::output(&format!("{result}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let status: Status = serde_json::from_value(result)
        .map_err(|error| ControlError::BadAnswer { path: args.control.clone(), problem: error.to_string() })?;
    crate::output(&render(&status))?;
    Ok(ExitCode::SUCCESS)
}

/// Reloads the running geofence and prints the outcome; a refused reload is an error.
pub fn reload(args: &ReloadArgs) -> Result<ExitCode, CliError> {
    let reloaded = control::ask_reload(&args.control).map_err(|error| match error {
        ControlError::Refused(reason) => CliError::ReloadRefused(reason),
        other => other.into(),
    })?;
    let mut text = format!("{}\n", reloaded.summary);
    for warning in &reloaded.warnings {
        let _ = writeln!(text, "warning: {warning}");
    }
    crate::output(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The status as an admin reads it.
fn render(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "geofence {}, pid {}, up {} (since {})",
        status.version,
        status.pid,
        span(status.uptime_seconds),
        time_of(status.started)
    );
    let policy = &status.policy;
    let _ = writeln!(
        out,
        "policy:  {}, {} rules, default {}, loaded {}; reloads: {} applied, {} refused",
        policy.config,
        policy.rules,
        policy.default,
        time_of(policy.loaded),
        policy.reloads_applied,
        policy.reloads_refused
    );
    if let Some(refusal) = &policy.last_refusal {
        let _ = writeln!(out, "  last refused reload: {refusal}");
    }
    for queue in &status.queues {
        let kernel = queue.kernel.map_or("kernel counters unreadable".to_owned(), |k| {
            format!(
                "kernel: {} queued, {} waiting, {} dropped (queue full), {} dropped (reader behind)",
                thousands(k.queued),
                k.waiting,
                thousands(k.queue_dropped),
                thousands(k.user_dropped)
            )
        });
        let _ = writeln!(
            out,
            "queue {}: {} decided; {kernel}; {} ENOBUFS, {} handler panics",
            queue.queue,
            thousands(queue.packets),
            queue.enobufs,
            queue.handler_panics
        );
    }
    out.push_str("data:\n");
    for data in &status.databases {
        let age = data.age_days.map_or(String::new(), |days| format!(", {days} days old"));
        let date = if data.date.is_empty() { "undated".to_owned() } else { data.date.clone() };
        let unit = if data.kind.starts_with("feed") { "networks" } else { "ranges" };
        let _ =
            writeln!(out, "  {:<8} {date}{age}, {} {unit}: {}", data.kind, thousands(data.entries as u64), data.source);
    }
    let counters = &status.counters;
    let _ = writeln!(
        out,
        "decisions: {} accepted, {} accepted with a mark, {} dropped, {} unparsable",
        thousands(counters.accepted),
        thousands(counters.marked),
        thousands(counters.dropped),
        thousands(counters.malformed)
    );
    let rules: Vec<String> =
        counters.per_rule.iter().map(|(rule, count)| format!("{rule} {}", thousands(*count))).collect();
    let _ = writeln!(out, "  per rule: {}", or_none(&rules));
    let countries: Vec<String> = counters
        .per_country
        .iter()
        .map(|(country, [accepted, dropped])| format!("{country} {}/{}", thousands(*accepted), thousands(*dropped)))
        .collect();
    let _ = writeln!(out, "  per country (accepted/dropped): {}", or_none(&countries));
    let top: Vec<String> = status
        .top_dropped
        .iter()
        .map(|dropped| format!("{} ({}) {}", dropped.source, dropped.country, thousands(dropped.packets)))
        .collect();
    let _ = writeln!(out, "top dropped sources since the last summary: {}", or_none(&top));
    let bans = &status.bans;
    let _ = writeln!(
        out,
        "bans: {} running; {} written, {} already banned, {} refused (set full), {} not taken by the kernel, {} lost \
         (channel full)",
        thousands(bans.running as u64),
        thousands(bans.written),
        thousands(bans.already),
        thousands(bans.full),
        thousands(bans.failed),
        thousands(bans.lost)
    );
    for data in status.databases.iter().filter(|data| data.stale) {
        let _ = writeln!(
            out,
            "warning: the {} data is {} days old ({}), and the free databases are published monthly (stale after \
             {STALE_DAYS} days): update it",
            data.kind,
            data.age_days.unwrap_or_default(),
            data.date
        );
    }
    out
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// 93784 → "1d 2h 3m"; under a minute, seconds.
fn span(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h {minutes}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_days_hours_and_minutes() {
        assert_eq!(
            (span(42), span(125), span(3 * 3600 + 60), span(93_784)),
            ("42s".to_owned(), "2m".to_owned(), "3h 1m".to_owned(), "1d 2h 3m".to_owned())
        );
    }
}
