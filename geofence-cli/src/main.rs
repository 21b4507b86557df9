//! The `geofence` command: arguments, files, signals and wiring. The deciding is done by
//! geofence-core and the queue handling by geofence-nfq.
#![forbid(unsafe_code)]

mod banning;
mod bans;
mod behaviour;
mod calendar;
mod check;
mod config_check;
mod control;
mod daemon;
mod db;
mod demo;
mod error;
mod files;
mod lookup;
mod metrics;
mod privileges;
mod rules;
mod run;
mod stats;
mod update;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nEmbedded country data: IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0 (see `geofence db info`)",
    "\nEmbedded ASN data: RouteViews (https://www.routeviews.org), NRO (https://www.nro.net) and DB-IP \
     (https://db-ip.com) via ip-location-db, CC BY 4.0 (see `geofence db info --asn`)"
);

/// The admin's reference for `geofence run`, after its options in `--help`.
const RUN_HELP: &str = "\
Needs:
  root, or CAP_NET_ADMIN, to bind the queues; once they are bound, geofence keeps only
  CAP_NET_ADMIN. Nothing reaches the queue until firewall rules send packets to it: install
  the ones `geofence rules --config FILE` prints (or `--backend nft`) after starting, or before
  with `fail_open = true`, whose --queue-bypass lets packets pass while no geofence runs.

Signals:
  SIGHUP   reload the config and databases; a bad one is refused and the running policy
           stays (the log says which). Deployment settings (queue, fail_open, queue_length,
           copy_range, hashlimit, flow_mark, metrics, summary_seconds) apply only on restart.
  SIGUSR1  log every counter: verdicts, countries, rules, the kernel's queue drops.
  SIGTERM, SIGINT
           finish the packets in flight, unbind the queues, print `verdicts=N`, exit 0.

Logging:
  to standard error; RUST_LOG sets the level (default info; RUST_LOG=debug logs every
  decision). Drops are summarised every summary_seconds, never a line per packet.

Exit codes:
  0 stopped by a signal; 1 a runtime failure (binding a queue, signals, the metrics
  address); 2 bad arguments; 3 a bad config or database.";

/// GeoIP filtering of netfilter queues: decide each new inbound flow by the country and network
/// it comes from.
const UPDATE_HELP: &str = "\
Safety:
  each source is fetched with a conditional GET (ETag, If-Modified-Since), within the
  [update] timeout and its size cap, decompressed within the same cap, and read as geofence
  reads it. A file with less than half the entries of the one it replaces is refused unless
  --force (or a feed's may_shrink). The old file is kept as FILE.previous and the new one
  renamed over it; a failed source leaves its file as it was, the others still update.
Exit codes:
  0 every source is up to date; 1 a source failed; 3 a bad config or GeoIP.conf, or the
  running geofence refused the reload (its policy stays).";

#[derive(Parser)]
#[command(name = "geofence", version, long_version = LONG_VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the config's netfilter queue: decide every queued packet until SIGTERM or SIGINT.
    #[command(after_long_help = RUN_HELP)]
    Run(run::RunArgs),
    /// Print the country of each address, from the arguments or one a line on standard input.
    Lookup(lookup::LookupArgs),
    /// Compile and inspect country databases.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Show the whole path in throw-away network namespaces: a filtered SIP port, callers from
    /// allowed and blocked countries, and what reached the server (needs root).
    Demo,
    /// Dry-run a policy over a capture: what would have been accepted and dropped.
    Check(check::CheckArgs),
    /// Ban an address or network in the kernel, lift a ban, or lift them all (needs root).
    Bans(bans::BansArgs),
    /// Ask the running geofence what it is doing: its policy, queues, data, counters, bans.
    Status(daemon::StatusArgs),
    /// Reload the running geofence's config and databases, and say whether it took them.
    Reload(daemon::ReloadArgs),
    /// Fetch the databases and feeds the config's [update] table names, check each, replace
    /// it whole and have the running geofence reload.
    #[command(after_long_help = UPDATE_HELP)]
    Update(update::UpdateArgs),
    /// Print the iptables (or nft) rules that feed the config's queue.
    Rules(rules::RulesArgs),
    /// Check a config file.
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages, geofence(1) and one a subcommand, into a folder (for packagers).
    #[command(hide = true)]
    ManPages {
        /// The folder, made if missing.
        folder: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // A panic is a bug: one line saying so, never a backtrace for an admin to wade through.
    std::panic::set_hook(Box::new(|info| log::error!("internal error (please report it): {info}")));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Lookup(args) => lookup::lookup(&args),
        Command::Db(command) => db::db(&command),
        Command::Check(args) => check::check(&args),
        Command::Demo => demo::demo(),
        Command::Rules(args) => rules::print(&args),
        Command::Bans(args) => bans::bans(&args),
        Command::Status(args) => daemon::status(&args),
        Command::Reload(args) => daemon::reload(&args),
        Command::Update(args) => update::update(&args),
        Command::Config(command) => config_check::config(&command),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "geofence",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ManPages { folder } => man_pages(&folder),
    };
    match result {
        Ok(code) => code,
        Err(error) => report(&error),
    }
}

/// geofence.1, geofence-run.1 and the rest, from the definition --help shows.
fn man_pages(folder: &std::path::Path) -> Result<ExitCode, CliError> {
    let write_error = |source| CliError::Write { path: folder.to_owned(), source };
    std::fs::create_dir_all(folder).map_err(write_error)?;
    let command = <Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(command, folder).map_err(write_error)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to standard output; a reader that went away (`| head`) ends the output quietly.
fn output(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(CliError::Output)
}

/// Prints the error as one sentence and its causes, never a backtrace.
fn report(error: &CliError) -> ExitCode {
    if let CliError::Output(cause) = error {
        if cause.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
    }
    eprintln!("geofence: {error}");
    for cause in error::causes(error) {
        eprintln!("  caused by: {cause}");
    }
    ExitCode::from(error.exit_code())
}
