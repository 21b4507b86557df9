//! The control socket: a running geofence answers `geofence status`, `geofence reload` and
//! the bans commands on a Unix socket that only root may open.
//!
//! The server runs on a current-thread tokio runtime of its own thread, apart from the queue
//! workers, and is bounded whatever its clients do: at most [`MAX_CONNECTIONS`] at once (more
//! are closed as they come), a request of at most [`MAX_REQUEST`] bytes that must arrive
//! within [`REQUEST_TIMEOUT`], and an answer given within [`ANSWER_LIMIT`]. Commands are
//! answered on a small pool of blocking threads, so a reload that takes seconds keeps no
//! other client waiting.

mod client;
pub mod protocol;
mod server;

pub use client::{ask, ask_reload};
pub use server::{bind, serve, Listener, Served};

use std::path::PathBuf;
use std::time::Duration;

/// Where `geofence run` listens, and `geofence status` asks, unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/geofence/control.sock";
/// Connections served at once: enough for admins and scripts, few enough that idle clients
/// cannot starve the daemon of file descriptors.
pub const MAX_CONNECTIONS: usize = 16;
/// The longest request read, in bytes.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may take to be answered: a reload of large feeds takes seconds.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(120);
/// Bans a `bans` answer lists at most; it says how many run in all.
pub const MAX_LISTED_BANS: usize = 1000;
/// Data older than this many days is marked stale: the free databases are published monthly.
pub const STALE_DAYS: u64 = 62;

/// Why the control socket could not be served or asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket's folder could not be made.
    #[error("cannot make the control socket's folder {}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// Another process answers on the socket.
    #[error("another geofence answers on {}: stop it, or give this one a socket of its own with --control", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something that is not a socket is at the socket's path.
    #[error("{} is not a socket: geofence will not remove it to listen there", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket could not be bound, or made root-only.
    #[error("cannot listen on {}", path.display())]
    Bind {
        /// The socket.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// No daemon answers on the socket.
    #[error("no geofence answers on {}: is `geofence run` running? (--control names another socket)", path.display())]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The socket is root's.
    #[error("{} is root's: run this as root", path.display())]
    NotAllowed {
        /// The socket.
        path: PathBuf,
    },
    /// The daemon took longer than [`ANSWER_LIMIT`], or the exchange failed midway.
    #[error("no answer from the geofence on {}", path.display())]
    NoAnswer {
        /// The socket.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's reply is not one this geofence reads.
    #[error("the geofence on {} answered what this one cannot read: {problem}", path.display())]
    BadAnswer {
        /// The socket.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The daemon refused the command.
    #[error("{0}")]
    Refused(String),
}
