//! The command's errors: each names the file or queue involved, and maps to an exit code.

use std::path::PathBuf;

use geofence_core::{db::DbError, feed::FeedError, ConfigError, PolicyError};
use geofence_nfq::NfqError;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// A path named as a file is something else, which geofence does not read.
    #[error("{} is {kind}, not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A file is larger than geofence reads.
    #[error("{} is larger than {} MiB, the most geofence reads of such a file", path.display(), limit >> 20)]
    TooBig {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("{}: {error}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, with the line (shown in the sentence, not as a cause).
        error: ConfigError,
    },
    /// A feed file is invalid.
    #[error("{}: {error}", path.display())]
    Feed {
        /// The feed file.
        path: PathBuf,
        /// What is wrong, with the line (shown in the sentence, not as a cause).
        error: FeedError,
    },
    /// A country database is invalid.
    #[error("{0}")]
    Database(DbError),
    /// No country database was named and none is built in.
    #[cfg(not(feature = "embedded-db"))]
    #[error("no country database: this geofence was built without the embedded one; name one with `database` or --db")]
    NoDatabase,
    /// No ASN database was named and none is built in.
    #[cfg(not(feature = "embedded-asn"))]
    #[error(
        "no ASN database: this geofence was built without the embedded one; name one with `asn_database` or --asn-db"
    )]
    NoAsnDatabase,
    /// The policy could not be built.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The netfilter queue failed.
    #[error(transparent)]
    Queue(#[from] NfqError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// A capture file is not pcap or pcapng, or is damaged.
    #[error("{}: {problem}", path.display())]
    Capture {
        /// The capture file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The metrics address could not be listened on.
    #[error("cannot serve metrics on {address}")]
    Metrics {
        /// The configured address.
        address: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The control socket could not be served or asked.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// `geofence update` could not go on (its `GeoIP.conf`, or writing a file).
    #[error(transparent)]
    Update(crate::update::UpdateError),
    /// The running geofence refused a reload; its policy stays.
    #[error("reload refused, the running policy stays: {0}")]
    ReloadRefused(String),
    /// The demo could not run.
    #[error("demo: {0}")]
    Demo(String),
    /// Writing to standard output failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    /// An argument that clap passed but that means nothing.
    #[error("{0}")]
    Usage(String),
    /// The config's kind of ban set is not the backend's.
    #[error("the config bans into {sets} sets ([bans] sets = \"{sets}\"), which this backend does not have: write sets = \"{wanted}\", or use the other backend")]
    BanSetsBackend {
        /// The config's kind.
        sets: geofence_core::ban::SetKind,
        /// The backend's kind.
        wanted: geofence_core::ban::SetKind,
    },
    /// A ban set could not be changed.
    #[error(transparent)]
    Bans(#[from] geofence_nfq::bans::SetError),
}

impl CliError {
    /// 1: a runtime failure (queue, signals, output, ban sets); 2: a bad argument; 3: a bad
    /// config, database or file.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Queue(_)
            | CliError::Signals(_)
            | CliError::Output(_)
            | CliError::Metrics { .. }
            | CliError::Control(_)
            | CliError::Demo(_)
            | CliError::Bans(_) => 1,
            CliError::Update(crate::update::UpdateError::Write { .. }) => 1,
            CliError::Usage(_) => 2,
            _ => 3,
        }
    }
}

/// The errors beneath `error`, outermost first.
pub fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(error.source(), |cause| cause.source())
}
