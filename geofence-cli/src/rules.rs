//! `geofence rules`: the firewall rules that feed the config's queue.

use std::path::PathBuf;
use std::process::ExitCode;

use geofence_core::ban::SetKind;
use geofence_nfq::rules;

use crate::error::CliError;
use crate::files;

/// Which firewall front end to write for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Backend {
    /// iptables and ip6tables commands, one a line.
    Iptables,
    /// An nft ruleset for `nft -f` (needs a kernel with CONFIG_NFT_QUEUE).
    Nft,
}

/// Arguments of `geofence rules`.
#[derive(clap::Args)]
pub struct RulesArgs {
    /// The policy file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// The firewall front end.
    #[arg(long, value_enum, default_value = "iptables")]
    backend: Backend,
}

/// Prints the rules: only new flows reach the queue, behind a per-source hashlimit, and a flow
/// whose first packet was accepted stays in the kernel.
pub fn print(args: &RulesArgs) -> Result<ExitCode, CliError> {
    let config = files::load_config(&args.config)?;
    let (selectors, options) = rules::for_config(&config);
    let wanted = match args.backend {
        Backend::Iptables => SetKind::Ipset,
        Backend::Nft => SetKind::Nft,
    };
    if let Some(bans) = options.bans.as_ref().filter(|bans| bans.kind != wanted) {
        return Err(CliError::BanSetsBackend { sets: bans.kind, wanted });
    }
    let text = match args.backend {
        Backend::Iptables => rules::iptables(&selectors, &options),
        Backend::Nft => rules::nft(&selectors, &options),
    };
    crate::output(&text)?;
    Ok(ExitCode::SUCCESS)
}
