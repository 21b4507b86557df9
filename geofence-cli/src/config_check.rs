//! `geofence config check`: validate a config and print the policy as geofence understands it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::CliError;
use crate::files;

/// Arguments of `geofence config check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The policy file (TOML).
    file: PathBuf,
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
    let config = files::load_config(&args.file)?;
    let (first, last) = config.deployment.queues;
    let queues = if first == last { format!("queue {first}") } else { format!("queues {first}-{last}") };
    let mut text = format!("{}: valid\n", args.file.display());
    let database = config.policy.database.as_deref().unwrap_or("(embedded)");
    let fail = if config.deployment.fail_open { "open" } else { "closed" };
    text.push_str(&format!("{queues}, fail-{fail}, database {database}\n"));
    for (index, rule) in config.policy.builder.rules().iter().enumerate() {
        text.push_str(&format!("{}. {:<20} {} if {}\n", index + 1, rule.name(), rule.verdict(), rule.conditions()));
    }
    text.push_str(&format!(
        "otherwise {}; packets that cannot be parsed: {}\n",
        config.policy.builder.default_verdict(),
        config.policy.builder.malformed_verdict()
    ));
    for warning in &config.policy.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    crate::output(&text)?;
    Ok(ExitCode::SUCCESS)
}
