//! `geofence bans`: the admin's hand on the kernel's ban sets.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use geofence_core::ban::{Ban, Duration, SetKind, MAX_DURATION_MS};
use geofence_core::IpNetwork;
use geofence_nfq::bans::BanSets;

use crate::control::protocol::{Command, LiftedAll};
use crate::control::{self, ControlError};
use crate::error::CliError;

/// Arguments of `geofence bans`.
#[derive(clap::Args)]
pub struct BansArgs {
    /// Change the nft backend's sets (table inet geofence) rather than the ipsets.
    #[arg(long, global = true)]
    nft: bool,
    /// The running geofence's control socket: `del` and `flush` ask it first, so that it also
    /// forgets the offences.
    #[arg(long, global = true, value_name = "SOCKET", default_value = control::DEFAULT_SOCKET)]
    control: PathBuf,
    #[command(subcommand)]
    command: BansCommand,
}

/// What to do to the ban sets.
#[derive(clap::Subcommand)]
pub enum BansCommand {
    /// Ban an address or network on every port, and forget its tracked flows.
    Add {
        /// An address (198.51.100.7) or a network (198.51.100.0/24, 2001:db8::/64).
        network: String,
        /// For how long: 90s, 10m, 2h, 7d (at most 24d).
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
    },
    /// Lift the ban of an address or network, as it was added. A running geofence that gave
    /// the ban is asked to lift it, and forgets the offences, so the next one is a first.
    Del {
        /// The address or network.
        network: String,
    },
    /// Lift every ban. A running geofence is asked to, and forgets every offence.
    Flush,
    /// Print every ban in the kernel's sets and the time it has left.
    List,
}

/// Changes the sets that the lines of `geofence rules` create (they must exist).
pub fn bans(args: &BansArgs) -> Result<ExitCode, CliError> {
    if let Some(said) = asked_of_the_daemon(args)? {
        crate::output(&said)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut sets = BanSets::open(if args.nft { SetKind::Nft } else { SetKind::Ipset })?;
    let said = match &args.command {
        BansCommand::Add { network, duration } => {
            let network = parse_network(network)?;
            let duration_ms =
                geofence_core::config::parse_duration(duration).filter(|ms| *ms <= MAX_DURATION_MS).ok_or_else(
                    || CliError::Usage(format!("`{duration}` is not a duration of 1ms to 24d (90s, 10m, 2h, 7d)")),
                )?;
            sets.ban(&[Ban { network, duration_ms, offences: 1 }]).pop().unwrap_or(Ok(()))?;
            sets.forget_flows(&[network]).pop().unwrap_or(Ok(()))?;
            format!("banned {network} for {}\n", Duration(duration_ms))
        }
        BansCommand::Del { network } => {
            let network = parse_network(network)?;
            sets.unban(network)?;
            format!("lifted the ban of {network}\n")
        }
        BansCommand::Flush => {
            sets.flush()?;
            "lifted every ban\n".to_owned()
        }
        BansCommand::List => {
            let listed = sets.list()?;
            let mut text: String = listed
                .iter()
                .map(|entry| format!("{} {} left\n", entry.network, Duration(u64::from(entry.seconds_left) * 1000)))
                .collect();
            text.push_str(&format!("{} bans\n", listed.len()));
            text
        }
    };
    crate::output(&said)?;
    Ok(ExitCode::SUCCESS)
}

/// `del` and `flush` go to a running geofence first, so that its book forgets the offences
/// too and a restart does not restore what was lifted. `None`: no geofence runs, or it did not
/// give the ban (one added by hand), and the kernel's sets are changed directly.
fn asked_of_the_daemon(args: &BansArgs) -> Result<Option<String>, CliError> {
    Ok(match &args.command {
        BansCommand::Del { network } => {
            let network = parse_network(network)?;
            answer_of(&args.control, Command::Unban { network: network.to_string() })?
                .map(|_| format!("lifted the ban of {network}, and the running geofence forgot its offences\n"))
        }
        BansCommand::Flush => answer_of(&args.control, Command::UnbanAll)?.map(|answer| {
            let forgotten = serde_json::from_value::<LiftedAll>(answer).map_or(0, |lifted| lifted.forgotten);
            let plural = if forgotten == 1 { "" } else { "s" };
            format!("lifted every ban, and the running geofence forgot {forgotten} offender{plural}\n")
        }),
        BansCommand::Add { .. } | BansCommand::List => None,
    })
}

/// The daemon's answer, or `None` when none runs or it refused (the ban was not its own).
fn answer_of(socket: &Path, command: Command) -> Result<Option<serde_json::Value>, CliError> {
    match control::ask(socket, command) {
        Ok(answer) => Ok(Some(answer)),
        Err(ControlError::NotRunning { .. } | ControlError::Refused(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// An address or a network; host bits are refused rather than cut, so a typo does not ban
/// the wrong network.
pub fn parse_network(text: &str) -> Result<IpNetwork, CliError> {
    let parsed = match text.parse::<std::net::IpAddr>() {
        Ok(address) => Ok(IpNetwork::from(address.to_canonical())),
        Err(_) => text.parse::<IpNetwork>().map_err(|error| error.to_string()),
    };
    parsed.map_err(|error| CliError::Usage(format!("`{text}` is not an address or network: {error}")))
}
