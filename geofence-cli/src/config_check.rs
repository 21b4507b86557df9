//! `geofence config check`: validate a config and print the policy as geofence understands it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use geofence_core::db::CountryTable;
use geofence_core::sip::Method;
use geofence_core::{PolicyBuilder, Verdict};

use crate::error::CliError;
use crate::files;

/// Arguments of `geofence config check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The policy file (TOML), as every other subcommand takes it.
    #[arg(long, short, value_name = "FILE", required_unless_present = "file")]
    config: Option<PathBuf>,
    /// The policy file, given without --config (as earlier versions took it).
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
}

impl CheckArgs {
    fn path(&self) -> &Path {
        self.config.as_deref().or(self.file.as_deref()).unwrap_or(Path::new("-"))
    }
}

/// Subcommands of `geofence config`.
#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a config and print the policy as understood, with warnings.
    Check(CheckArgs),
}

/// Runs a `geofence config` subcommand.
pub fn config(command: &ConfigCommand) -> Result<ExitCode, CliError> {
    let ConfigCommand::Check(args) = command;
    let path = args.path();
    let mut config = files::load_config(path)?;
    let (first, last) = config.deployment.queues;
    let queues = if first == last { format!("queue {first}") } else { format!("queues {first}-{last}") };
    let mut text = format!("{}: valid\n", path.display());
    let database = config.policy.database.as_deref().unwrap_or("(embedded)");
    let fail = if config.deployment.fail_open { "open" } else { "closed" };
    text.push_str(&format!("{queues}, fail-{fail}, database {database}\n"));
    for (index, rule) in config.policy.builder.rules().iter().enumerate() {
        text.push_str(&format!("{}. {:<20} {} if {}\n", index + 1, rule.name(), rule.action(), rule.conditions()));
    }
    text.push_str(&format!(
        "otherwise {}; packets that cannot be parsed: {}\n",
        config.policy.builder.default_verdict(),
        config.policy.builder.malformed_verdict()
    ));
    if let Some(behaviour) = &config.policy.behaviour {
        let limits = behaviour.limits;
        let most = |n: u32| if n == u32::MAX { "any number of".to_owned() } else { n.to_string() };
        let watched = match limits.max_watched {
            u32::MAX => String::new(),
            limit => {
                let methods: Vec<&str> =
                    Method::NAMED.iter().filter(|m| limits.watched.contains(**m)).map(|m| m.name()).collect();
                format!(", more than {limit} {} requests", methods.join("/"))
            }
        };
        let failures = match limits.max_failures {
            u32::MAX => String::new(),
            limit => format!(", answered more than {limit} failures (401/403/404/407)"),
        };
        text.push_str(&format!(
            "behaviour: a source sending more than {} SIP requests{watched}{failures}, or asking more than {} users in \
             the last {} ms is dropped for {} ms; {} sources tracked\n",
            most(limits.max_requests),
            most(limits.max_targets),
            limits.window_ms,
            limits.penalty_ms,
            behaviour.max_sources
        ));
    }
    for warning in &config.policy.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    let builder = std::mem::replace(&mut config.policy.builder, PolicyBuilder::new(Verdict::Drop));
    let feeds;
    (config.policy.builder, feeds) = files::add_feeds(builder, path, &config.policy.feeds)?;
    for (feed, source) in feeds.iter().zip(&config.policy.feeds) {
        let (v4, v6) = feed.distinct;
        text.push_str(&format!(
            "feed {}: {} networks read ({v4} IPv4 and {v6} IPv6 distinct) from {}\n",
            feed.name,
            feed.networks,
            source.files.join(", ")
        ));
    }
    if config.policy.builder.asks_asn() {
        let paths = files::asn_paths(&config, path);
        text.push_str(&organisation_patterns(config, &paths)?);
    }
    crate::output(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// What the rules' `as_organisation` patterns resolve to in the config's ASN database (or the
/// embedded one), a line each, and a warning for a pattern that names no system.
fn organisation_patterns(config: geofence_core::Config, asn_paths: &[PathBuf]) -> Result<String, CliError> {
    let countries = Arc::new(CountryTable::empty());
    let policy = match files::asn_database_or_embedded(asn_paths)? {
        Some((asn, _)) => config.policy.build_with_asn(countries, Arc::new(asn))?,
        // Refused: a rule asks the AS and there is no ASN data.
        None => config.policy.build(countries)?,
    };
    let lines = files::organisation_lines(&policy).into_iter();
    Ok(lines.map(|(named_none, line)| format!("{}{line}\n", if named_none { "warning: " } else { "" })).collect())
}
