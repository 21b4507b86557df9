//! The control socket's protocol: one request a connection, one JSON object on one line, and
//! one JSON object in reply. Every message carries [`VERSION`]; a daemon refuses a request of
//! another version rather than guess at it, and says which it speaks.
//!
//! ```text
//! → {"version":1,"command":"status"}
//! ← {"version":1,"ok":true,"result":{…}}
//! → {"version":1,"command":"unban","network":"198.51.100.0/24"}
//! ← {"version":1,"ok":false,"error":"198.51.100.0/24 is not banned"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol's version.
pub const VERSION: u32 = 1;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Everything `geofence status` shows: a [`Status`].
    Status,
    /// Reload the config and databases now, and say how it went: a [`Reloaded`].
    Reload,
    /// The decision counters: a [`Counters`].
    Counters,
    /// The running bans, as the daemon booked them: a [`Bans`].
    Bans,
    /// Lift a ban, in the kernel and in the daemon's book, so the source counts as a first
    /// offender again: a [`Lifted`].
    Unban {
        /// The banned network, as `geofence bans list` prints it (an address is its /32 or /128).
        network: String,
    },
    /// Lift every ban, in the kernel and in the daemon's book, and forget every offence: a
    /// [`LiftedAll`].
    UnbanAll,
}

/// A request: the version and the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's [`VERSION`].
    pub version: u32,
    /// What it asks.
    #[serde(flatten)]
    pub command: Command,
}

/// A reply: the command's result, or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The daemon's [`VERSION`].
    pub version: u32,
    /// Whether the command was carried out.
    pub ok: bool,
    /// The result, when `ok`: the type its command names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why not, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A carried-out command's reply.
    pub fn success(result: serde_json::Value) -> Response {
        Response { version: VERSION, ok: true, result: Some(result), error: None }
    }

    /// A refused command's reply.
    pub fn failure(error: impl Into<String>) -> Response {
        Response { version: VERSION, ok: false, result: None, error: Some(error.into()) }
    }
}

/// What a running geofence is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// geofence's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// When it started, in seconds since the Unix epoch.
    pub started: u64,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// The running policy.
    pub policy: PolicyStatus,
    /// Each queue it serves.
    pub queues: Vec<QueueStatus>,
    /// The running policy's databases and feeds.
    pub databases: Vec<DatabaseStatus>,
    /// Its decisions since start.
    pub counters: Counters,
    /// The sources dropped most since the last drop summary, most first (at most 10).
    pub top_dropped: Vec<DroppedSource>,
    /// Its bans.
    pub bans: BanCounters,
}

/// The running policy and its reloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// The config file.
    pub config: String,
    /// When the running policy was loaded, in seconds since the Unix epoch.
    pub loaded: u64,
    /// Its rules.
    pub rules: usize,
    /// Its default verdict.
    pub default: String,
    /// Reloads applied since start.
    pub reloads_applied: u64,
    /// Reloads refused since start.
    pub reloads_refused: u64,
    /// Why the last refused reload was refused, if one was.
    pub last_refusal: Option<String>,
}

/// One queue: geofence's own counters and the kernel's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The queue number.
    pub queue: u16,
    /// Packets decided.
    pub packets: u64,
    /// Receive calls that found the socket's buffer overrun.
    pub enobufs: u64,
    /// Packets whose handler panicked (they got the fallback verdict).
    pub handler_panics: u64,
    /// The kernel's counters, when readable.
    pub kernel: Option<KernelQueue>,
}

/// A queue's counters as the kernel keeps them (/proc/net/netfilter/nfnetlink_queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelQueue {
    /// Packets waiting for a verdict now.
    pub waiting: u64,
    /// Packets dropped because the queue was full.
    pub queue_dropped: u64,
    /// Packets dropped because the reader was behind.
    pub user_dropped: u64,
    /// Packets the queue has taken in all.
    pub queued: u64,
}

/// A database or feed of the running policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    /// `country`, `asn`, or `feed NAME`.
    pub kind: String,
    /// Where it came from: the files, or the embedded data and its attribution.
    pub source: String,
    /// Its publication date as its publisher gives it, else its file's modification date
    /// (YYYY-MM-DD), else empty.
    pub date: String,
    /// Days since that date, when it is known.
    pub age_days: Option<u64>,
    /// Whether it is older than its kind is refreshed (see [`super::STALE_DAYS`]).
    pub stale: bool,
    /// Ranges (databases) or networks (feeds).
    pub entries: usize,
}

/// Decisions since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets accepted without a mark.
    pub accepted: u64,
    /// Packets accepted with a rule's mark.
    pub marked: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Packets that could not be parsed.
    pub malformed: u64,
    /// Per rule name (and `(default)`, `(malformed)`, `(behaviour)`): packets it decided.
    pub per_rule: BTreeMap<String, u64>,
    /// Per country (and `unknown`, `not looked up`): packets accepted and dropped.
    pub per_country: BTreeMap<String, [u64; 2]>,
}

/// A dropped source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedSource {
    /// Its address.
    pub source: String,
    /// Its country, or `-`.
    pub country: String,
    /// Packets dropped.
    pub packets: u64,
}

/// The counters of bans, and how many are running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanCounters {
    /// Bans running now, by the daemon's book.
    pub running: usize,
    /// Bans written into the kernel since start.
    pub written: u64,
    /// Requests for a network already banned.
    pub already: u64,
    /// Bans refused because the set was full.
    pub full: u64,
    /// Bans the kernel did not take.
    pub failed: u64,
    /// Requests lost to a full channel.
    pub lost: u64,
}

/// The running bans, by the daemon's book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bans {
    /// How many are running.
    pub running: usize,
    /// The first [`super::MAX_LISTED_BANS`] of them, longest left first.
    pub listed: Vec<BanEntry>,
}

/// A running ban.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    /// The network.
    pub network: String,
    /// Seconds it has left.
    pub seconds_left: u64,
    /// Its offence count: 1 for a first ban, doubling its length each time.
    pub offences: u32,
}

/// How a reload went, when it was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// One line about the new policy, as the log has it.
    pub summary: String,
    /// What the new policy asks that only a restart gives (a warning each).
    pub warnings: Vec<String>,
}

/// A lifted ban.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifted {
    /// The network.
    pub network: String,
}

/// Every ban lifted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiftedAll {
    /// How many networks the daemon's book forgot, banned or only remembered as offenders.
    pub forgotten: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_flat_object_and_read_back() {
        let request = Request { version: VERSION, command: Command::Unban { network: "192.0.2.7/32".into() } };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(text, r#"{"version":1,"command":"unban","network":"192.0.2.7/32"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), request);
        let status: Request = serde_json::from_str(r#"{"version":1,"command":"status"}"#).unwrap();
        assert_eq!(status.command, Command::Status);
    }

    #[test]
    fn unknown_commands_and_missing_fields_are_refused() {
        for text in [
            r#"{"version":1,"command":"shutdown"}"#,
            r#"{"version":1,"command":"unban"}"#,
            r#"{"command":"status"}"#,
            r#"{"version":1}"#,
            "[]",
        ] {
            assert!(serde_json::from_str::<Request>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn replies_leave_out_what_they_do_not_carry() {
        assert_eq!(
            serde_json::to_string(&Response::failure("no")).unwrap(),
            r#"{"version":1,"ok":false,"error":"no"}"#
        );
        let ok = Response::success(serde_json::json!({"network": "x"}));
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"version":1,"ok":true,"result":{"network":"x"}}"#);
    }
}
