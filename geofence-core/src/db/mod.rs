//! Country databases: where an address is registered.
//!
//! [`CountryDb`] is the one thing a [`Policy`](crate::Policy) asks of a database, so any source
//! (the range table here, a compiled table, an embedder's own service) can be plugged in.
//! Loaders take text or bytes the caller has read; nothing here touches a file.

mod csv;
mod ranges;

pub use self::csv::parse_range_csv;
pub use self::ranges::{CountryRange, RangeDb};

use std::net::IpAddr;

/// Answers which country an address belongs to.
///
/// Implementations are shared by every packet-deciding thread, so they are `Send + Sync`, and
/// `lookup` must not block: it sits on the per-packet path.
pub trait CountryDb: Send + Sync {
    /// The country `address` is registered in, or `None` when the database does not know.
    fn lookup(&self, address: IpAddr) -> Option<crate::CountryCode>;
}

/// Why country data could not be loaded. Nothing is half-built: a loader that fails returns no
/// database at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// A line of a text database is not what its format says.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong, in words.
        problem: String,
    },
    /// A range whose start is after its end, or whose ends are of different families.
    #[error("range {0} is empty or mixes IPv4 and IPv6")]
    BadRange(String),
    /// Two ranges cover the same address with different countries.
    #[error("range {second} overlaps {first}")]
    Overlap {
        /// The earlier range, as `start-end CC`.
        first: String,
        /// The range that overlaps it.
        second: String,
    },
}
