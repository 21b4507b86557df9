//! The simple range table: sorted, non-overlapping address ranges, searched by bisection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{CountryDb, DbError};
use crate::CountryCode;

/// One database entry: every address from `start` to `end` (inclusive) is in `country`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountryRange {
    /// The first address of the range.
    pub start: IpAddr,
    /// The last address of the range, of the same family as `start`.
    pub end: IpAddr,
    /// The country of every address in the range.
    pub country: CountryCode,
}

/// A country database held as sorted ranges, one table per address family.
///
/// ```
/// use geofence_core::db::{CountryDb, CountryRange, RangeDb};
/// let gb = CountryRange {
///     start: "192.0.2.0".parse()?,
///     end: "192.0.2.255".parse()?,
///     country: "GB".parse()?,
/// };
/// let db = RangeDb::new(vec![gb])?;
/// assert_eq!(db.lookup("192.0.2.77".parse()?), Some("GB".parse()?));
/// assert_eq!(db.lookup("198.51.100.1".parse()?), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct RangeDb {
    v4: Vec<(u32, u32, CountryCode)>,
    v6: Vec<(u128, u128, CountryCode)>,
}

impl RangeDb {
    /// Builds the table. Ranges may come in any order; a range whose start is after its end or
    /// whose ends are of different families is refused, and so are overlapping ranges, which
    /// would make the answer depend on input order. Adjacent ranges of one country are merged.
    pub fn new(ranges: impl IntoIterator<Item = CountryRange>) -> Result<RangeDb, DbError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for range in ranges {
            match (range.start, range.end) {
                (IpAddr::V4(start), IpAddr::V4(end)) if start <= end => {
                    v4.push((u32::from(start), u32::from(end), range.country))
                }
                (IpAddr::V6(start), IpAddr::V6(end)) if start <= end => {
                    v6.push((u128::from(start), u128::from(end), range.country))
                }
                _ => return Err(DbError::BadRange(describe(range.start, range.end, range.country))),
            }
        }
        Ok(RangeDb { v4: sorted_disjoint(v4)?, v6: sorted_disjoint(v6)? })
    }

    /// How many IPv4 and IPv6 ranges the table holds, after merging.
    pub fn len(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Whether the table holds no range at all.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

impl CountryDb for RangeDb {
    fn lookup(&self, address: IpAddr) -> Option<CountryCode> {
        match address {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }
}

fn find<A: Address>(table: &[(A, A, CountryCode)], address: A) -> Option<CountryCode> {
    let after = table.partition_point(|(start, _, _)| *start <= address);
    let (_, end, country) = table.get(after.checked_sub(1)?)?;
    (address <= *end).then_some(*country)
}

/// An address as the integer it is, so ranges of either family share one algorithm.
trait Address: Ord + Copy {
    fn successor(self) -> Option<Self>;
    fn to_ip(self) -> IpAddr;
}

impl Address for u32 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
}

impl Address for u128 {
    fn successor(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
}

fn sorted_disjoint<A: Address>(mut ranges: Vec<(A, A, CountryCode)>) -> Result<Vec<(A, A, CountryCode)>, DbError> {
    ranges.sort_unstable_by_key(|(start, _, _)| *start);
    let mut merged: Vec<(A, A, CountryCode)> = Vec::with_capacity(ranges.len());
    for (start, end, country) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => {
                return Err(DbError::Overlap {
                    first: describe(last.0.to_ip(), last.1.to_ip(), last.2),
                    second: describe(start.to_ip(), end.to_ip(), country),
                })
            }
            Some(last) if last.2 == country && last.1.successor() == Some(start) => last.1 = end,
            _ => merged.push((start, end, country)),
        }
    }
    Ok(merged)
}

fn describe(start: IpAddr, end: IpAddr, country: CountryCode) -> String {
    format!("{start}-{end} {country}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str, country: &str) -> CountryRange {
        CountryRange { start: start.parse().unwrap(), end: end.parse().unwrap(), country: country.parse().unwrap() }
    }

    fn db() -> RangeDb {
        RangeDb::new([
            range("198.51.100.0", "198.51.100.255", "CN"),
            range("192.0.2.0", "192.0.2.127", "GB"),
            range("192.0.2.128", "192.0.2.255", "US"),
            range("2001:db8:1::", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "DE"),
        ])
        .unwrap()
    }

    #[test]
    fn finds_the_range_at_both_ends_and_nothing_outside() {
        let db = db();
        let at = |a: &str| db.lookup(a.parse().unwrap()).map(|c| c.to_string());
        assert_eq!(at("192.0.2.0").as_deref(), Some("GB"));
        assert_eq!(at("192.0.2.127").as_deref(), Some("GB"));
        assert_eq!(at("192.0.2.128").as_deref(), Some("US"));
        assert_eq!(at("192.0.1.255"), None);
        assert_eq!(at("192.0.3.0"), None);
        assert_eq!(at("198.51.100.255").as_deref(), Some("CN"));
        assert_eq!(at("2001:db8:1::").as_deref(), Some("DE"));
        assert_eq!(at("2001:db8:2::"), None);
        assert_eq!(at("0.0.0.0"), None);
        assert_eq!(at("255.255.255.255"), None);
        assert_eq!(at("::"), None);
    }

    #[test]
    fn merges_adjacent_ranges_of_one_country() {
        let db = RangeDb::new([range("10.0.0.0", "10.0.0.255", "FR"), range("10.0.1.0", "10.0.1.255", "FR")]).unwrap();
        assert_eq!(db.len(), (1, 0));
    }

    #[test]
    fn refuses_overlaps_naming_both_ranges() {
        let err =
            RangeDb::new([range("10.0.0.0", "10.0.0.255", "FR"), range("10.0.0.128", "10.0.1.0", "DE")]).unwrap_err();
        assert_eq!(err.to_string(), "range 10.0.0.128-10.0.1.0 DE overlaps 10.0.0.0-10.0.0.255 FR");
    }

    #[test]
    fn refuses_reversed_and_mixed_family_ranges() {
        assert!(RangeDb::new([range("10.0.0.9", "10.0.0.1", "FR")]).is_err());
        assert!(RangeDb::new([range("10.0.0.1", "::1", "FR")]).is_err());
    }
}
