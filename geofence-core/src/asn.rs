//! Autonomous systems: the networks sources come from (a hosting provider, a carrier), as rules
//! name them (`asn = [14061, "AS16276"]`) and ASN databases answer.
//!
//! An [`AsnTable`] maps every address to the AS that announces it, or to nothing, with the
//! organisation names the data carries; it is a [`RangeTable`] like the country table, so a
//! lookup costs the same.
//!
//! ```
//! use geofence_core::asn::{Asn, AsnTable};
//! let table = AsnTable::from_csv("192.0.2.0,192.0.2.127,64500,\"Example Hosting, Inc.\"\n")?;
//! let asn = table.lookup("192.0.2.9".parse()?);
//! assert_eq!(asn, Some(Asn(64500)));
//! assert_eq!(table.organisation(Asn(64500)), Some("Example Hosting, Inc."));
//! assert_eq!(table.lookup("192.0.2.200".parse()?), None);
//! assert_eq!("AS64500".parse::<Asn>()?, Asn(64500));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

pub use crate::condition::asn::{AsnSet, Resolved};
use crate::db::{DbError, RangeTable};

/// An autonomous system number. 0 is reserved (RFC 7607): databases use it for "not routed",
/// and geofence reads it as no AS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asn(pub u32);

/// As written in logs and `config check`: `AS14061`.
impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AS{}", self.0)
    }
}

/// Why a text is not an AS number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AsnError {
    /// Not a number, with or without `AS` in front.
    #[error("`{0}` is not an AS number: expected a number such as 14061 or AS14061")]
    NotANumber(String),
    /// AS 0, which means "no AS".
    #[error("AS0 is reserved (RFC 7607): it names no network")]
    Zero,
}

/// `14061`, `AS14061` or `as14061`.
impl FromStr for Asn {
    type Err = AsnError;

    fn from_str(text: &str) -> Result<Asn, AsnError> {
        let digits = text.strip_prefix("AS").or_else(|| text.strip_prefix("as")).unwrap_or(text);
        match digits.parse::<u32>() {
            Ok(0) => Err(AsnError::Zero),
            Ok(number) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok(Asn(number)),
            _ => Err(AsnError::NotANumber(text.to_owned())),
        }
    }
}

/// Every address mapped to the AS that announces it, or to nothing, and each AS's organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsnTable {
    pub(crate) table: RangeTable<Asn>,
    names: HashMap<Asn, Box<str>>,
}

impl Default for AsnTable {
    fn default() -> AsnTable {
        AsnTable::empty()
    }
}

impl AsnTable {
    /// The table that knows no address.
    pub fn empty() -> AsnTable {
        AsnTable { table: RangeTable::empty(), names: HashMap::new() }
    }

    pub(crate) fn new(table: RangeTable<Asn>, names: HashMap<Asn, Box<str>>) -> AsnTable {
        AsnTable { table, names }
    }

    /// Reads an ASN CSV or TSV (see [`crate::db::load_asn`]), detected from its content.
    pub fn from_csv(text: &str) -> Result<AsnTable, DbError> {
        crate::db::load_asn(text.as_bytes())
    }

    /// The AS of `address`; an IPv4-mapped IPv6 address is looked up as the IPv4 address it
    /// carries. Allocates nothing and takes no lock.
    #[inline]
    pub fn lookup(&self, address: IpAddr) -> Option<Asn> {
        self.table.get(address)
    }

    /// The organisation the data names for `asn`, if any.
    pub fn organisation(&self, asn: Asn) -> Option<&str> {
        self.names.get(&asn).map(|name| &**name)
    }

    /// The AS numbers whose organisation contains `pattern`, ignoring case, in number order.
    pub fn matching_organisations(&self, pattern: &str) -> Vec<Asn> {
        let pattern = pattern.to_lowercase();
        let mut found: Vec<Asn> =
            self.names.iter().filter(|(_, name)| name.to_lowercase().contains(&pattern)).map(|(asn, _)| *asn).collect();
        found.sort_unstable();
        found
    }

    /// How many IPv4 and IPv6 ranges have an AS.
    pub fn range_counts(&self) -> (usize, usize) {
        self.table.range_counts()
    }

    /// Every range that has an AS, IPv4 first, in address order.
    pub fn ranges(&self) -> impl Iterator<Item = (IpAddr, IpAddr, Asn)> + '_ {
        self.table.ranges()
    }

    /// The distinct AS numbers the table answers with.
    pub fn asns(&self) -> &[Asn] {
        self.table.values()
    }

    /// The memory the table and its names hold, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.names.values().map(|name| name.len() + 24).sum::<usize>()
    }

    #[inline(always)]
    pub(crate) fn key_v4(&self, address: Ipv4Addr) -> usize {
        self.table.key_v4(address)
    }

    #[inline]
    pub(crate) fn key_v6(&self, address: Ipv6Addr) -> usize {
        self.table.key_v6(address)
    }

    /// The answer of a key (see [`RangeTable::key_v4`]): `None` for the key past the values.
    pub(crate) fn answer(&self, key: usize) -> Option<Asn> {
        self.table.values().get(key).copied()
    }

    /// Every answer, by key, unknown last.
    pub(crate) fn answers(&self) -> Vec<Option<Asn>> {
        self.table.values().iter().copied().map(Some).chain([None]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_with_or_without_as() {
        assert_eq!("14061".parse(), Ok(Asn(14061)));
        assert_eq!("AS16276".parse(), Ok(Asn(16276)));
        assert_eq!("as4294967295".parse(), Ok(Asn(u32::MAX)));
        assert_eq!("AS0".parse::<Asn>(), Err(AsnError::Zero));
        for bad in ["", "AS", "ASN14061", "14061x", "+14061", "4294967296", "AS-1"] {
            assert_eq!(bad.parse::<Asn>(), Err(AsnError::NotANumber(bad.into())), "{bad}");
        }
        assert_eq!(Asn(14061).to_string(), "AS14061");
    }
}
