//! Prefix lists: named sets of IPv4 and IPv6 networks, such as an operator's SIP trunk providers,
//! and the built-in lists of special-purpose address space.
//!
//! The networks are kept as given (which also says which network an address falls in, for
//! logs): in an `ip_network_table` tree, or, for a list built in bulk with more than
//! [`INDEXED_FROM`] networks (a feed), in sorted arrays, which take a fraction of the tree's
//! memory and build time. Membership, asked per packet, is a scan or binary search over the
//! same networks merged into sorted address intervals, which neither allocates nor locks. A
//! list built in bulk with more than [`INDEXED_FROM`] intervals also gets the country table's
//! index over them: one or two cache lines a lookup instead of twenty steps of a binary search
//! over megabytes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ip_network::IpNetwork;
use ip_network::{IpNetworkError, Ipv4Network, Ipv6Network};
use ip_network_table::IpNetworkTable;

use crate::db::{RangeTable, TableBuilder};

/// A set of networks; an address is a member when any network contains it.
#[derive(Default)]
pub struct PrefixList {
    given: Given,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// Each family's intervals as a range table, when it has many: built by `extend`, dropped
    /// by `insert` (which would otherwise rebuild them for every network).
    indexed_v4: Option<RangeTable<()>>,
    indexed_v6: Option<RangeTable<()>>,
}

/// How many intervals a family of a list holds before membership goes through an index (and
/// how many networks a list built in bulk holds before they are kept in sorted arrays).
pub const INDEXED_FROM: usize = 4096;

/// The networks as they were given: what `matching_network`, `networks` and `len` read.
enum Given {
    /// A tree, for a list built a network at a time.
    Tree(Box<IpNetworkTable<()>>),
    /// Sorted, without repeats, for a list built in bulk (and the empty list, which allocates
    /// nothing).
    Sorted { v4: Vec<Ipv4Network>, v6: Vec<Ipv6Network> },
}

impl Default for Given {
    fn default() -> Given {
        Given::Sorted { v4: Vec::new(), v6: Vec::new() }
    }
}

impl Given {
    fn networks(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        let (tree, sorted) = match self {
            Given::Tree(table) => (Some(table.iter().map(|(network, _)| network)), None),
            Given::Sorted { v4, v6 } => {
                (None, Some(v4.iter().copied().map(IpNetwork::V4).chain(v6.iter().copied().map(IpNetwork::V6))))
            }
        };
        tree.into_iter().flatten().chain(sorted.into_iter().flatten())
    }

    /// The networks as a tree, made from the sorted arrays if the list was built in bulk.
    fn into_tree(self) -> Box<IpNetworkTable<()>> {
        match self {
            Given::Tree(table) => table,
            sorted => {
                let mut table = Box::new(IpNetworkTable::new());
                for network in sorted.networks() {
                    table.insert(network, ());
                }
                table
            }
        }
    }

    /// The most specific network containing `address`: in the sorted arrays, the one of each
    /// prefix length that could, longest first.
    fn longest_match(&self, address: IpAddr) -> Option<IpNetwork> {
        match (self, address) {
            (Given::Tree(table), _) => table.longest_match(address).map(|(network, _)| network),
            (Given::Sorted { v4, .. }, IpAddr::V4(a)) => (0..=32u8)
                .rev()
                .filter_map(|length| Ipv4Network::new_truncate(a, length).ok())
                .find(|network| v4.binary_search(network).is_ok())
                .map(IpNetwork::V4),
            (Given::Sorted { v6, .. }, IpAddr::V6(a)) => (0..=128u8)
                .rev()
                .filter_map(|length| Ipv6Network::new_truncate(a, length).ok())
                .find(|network| v6.binary_search(network).is_ok())
                .map(IpNetwork::V6),
        }
    }
}

impl PrefixList {
    /// An empty list.
    pub fn new() -> PrefixList {
        PrefixList::default()
    }

    /// Adds a network. To add many, `extend` the list (or `collect` one): that sorts once,
    /// where inserting one at a time in random order moves half the list each time.
    pub fn insert(&mut self, network: IpNetwork) {
        (self.indexed_v4, self.indexed_v6) = (None, None);
        let mut table = std::mem::take(&mut self.given).into_tree();
        table.insert(network, ());
        self.given = Given::Tree(table);
        match interval(network) {
            Interval::V4(first, last) => add_interval(&mut self.v4, first, last),
            Interval::V6(first, last) => add_interval(&mut self.v6, first, last),
        }
    }

    /// Whether some network of the list contains `address`.
    #[inline]
    pub fn contains(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => self.contains_v4(a),
            IpAddr::V6(a) => self.contains_v6(a),
        }
    }

    /// Whether some network of the list contains the IPv4 address.
    #[inline]
    pub fn contains_v4(&self, address: Ipv4Addr) -> bool {
        match &self.indexed_v4 {
            Some(table) => table.get_v4(address).is_some(),
            None => within(&self.v4, u32::from(address)),
        }
    }

    /// Whether some network of the list contains the IPv6 address (an IPv4-mapped one is not
    /// in the list's IPv4 networks).
    #[inline]
    pub fn contains_v6(&self, address: Ipv6Addr) -> bool {
        match &self.indexed_v6 {
            // The table would answer an IPv4-mapped address as IPv4; none is in the index.
            Some(_) if address.to_ipv4_mapped().is_some() => false,
            Some(table) => table.get_v6(address).is_some(),
            None => within(&self.v6, u128::from(address)),
        }
    }

    /// How the list covers the IPv4 addresses whose first byte is `first`: a /8.
    pub(crate) fn coverage_v4(&self, first: u8) -> Coverage {
        let low = u32::from(first) << 24;
        coverage(&self.v4, low, low | 0x00FF_FFFF)
    }

    /// How the list covers the IPv6 addresses whose first byte is `first`: a /8.
    pub(crate) fn coverage_v6(&self, first: u8) -> Coverage {
        let low = u128::from(first) << 120;
        coverage(&self.v6, low, low | (u128::MAX >> 8))
    }

    /// The most specific network of the list that contains `address`, for logs.
    pub fn matching_network(&self, address: IpAddr) -> Option<IpNetwork> {
        self.given.longest_match(address)
    }

    /// How many distinct IPv4 and IPv6 networks the list holds.
    pub fn len(&self) -> (usize, usize) {
        match &self.given {
            Given::Tree(table) => table.len(),
            Given::Sorted { v4, v6 } => (v4.len(), v6.len()),
        }
    }

    /// Whether the list holds no network.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// The networks, IPv4 first.
    pub fn networks(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        self.given.networks()
    }
}

impl Extend<IpNetwork> for PrefixList {
    /// Adds every network, then sorts and merges the intervals once: a million networks in
    /// a fraction of a second, in any order.
    fn extend<I: IntoIterator<Item = IpNetwork>>(&mut self, networks: I) {
        let added: Vec<IpNetwork> = networks.into_iter().collect();
        for network in &added {
            match interval(*network) {
                Interval::V4(first, last) => self.v4.push((first, last)),
                Interval::V6(first, last) => self.v6.push((first, last)),
            }
        }
        self.keep_given(added);
        merge(&mut self.v4);
        merge(&mut self.v6);
        self.indexed_v4 = (self.v4.len() > INDEXED_FROM).then(|| {
            index(self.v4.iter().map(|(first, last)| (IpAddr::V4((*first).into()), IpAddr::V4((*last).into()))))
        });
        // A table answers IPv4-mapped addresses as IPv4; a list does not, so IPv6 intervals
        // that reach into ::ffff:0:0/96 keep the binary search.
        let indexable = self.v6.iter().all(|(first, last)| *last < MAPPED.0 || *first > MAPPED.1);
        self.indexed_v6 = (self.v6.len() > INDEXED_FROM && indexable).then(|| {
            index(self.v6.iter().map(|(first, last)| (IpAddr::V6((*first).into()), IpAddr::V6((*last).into()))))
        });
    }
}

impl PrefixList {
    /// Adds `added` to the networks as given: to the tree while the list is small, else (once
    /// it holds more than [`INDEXED_FROM`]) to the sorted arrays.
    fn keep_given(&mut self, added: Vec<IpNetwork>) {
        let (v4, v6) = self.len();
        let given = std::mem::take(&mut self.given);
        if v4 + v6 + added.len() <= INDEXED_FROM {
            let mut table = given.into_tree();
            for network in added {
                table.insert(network, ());
            }
            self.given = Given::Tree(table);
            return;
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for network in given.networks().chain(added) {
            match network {
                IpNetwork::V4(network) => v4.push(network),
                IpNetwork::V6(network) => v6.push(network),
            }
        }
        v4.sort_unstable();
        v4.dedup();
        v6.sort_unstable();
        v6.dedup();
        self.given = Given::Sorted { v4, v6 };
    }
}

/// The IPv4-mapped IPv6 block, ::ffff:0:0/96.
const MAPPED: (u128, u128) = (0xFFFF_0000_0000, 0xFFFF_FFFF_FFFF);

/// Ordered intervals of one family as a range table whose one value, `()`, means member.
fn index(intervals: impl Iterator<Item = (IpAddr, IpAddr)>) -> RangeTable<()> {
    let mut builder = TableBuilder::new();
    for (first, last) in intervals {
        // Each interval is ordered and of one family, and `()` is one value: none is refused.
        let _ = builder.insert(0, first, last, ());
    }
    builder.build()
}

impl FromIterator<IpNetwork> for PrefixList {
    fn from_iter<I: IntoIterator<Item = IpNetwork>>(networks: I) -> Self {
        let mut list = PrefixList::new();
        list.extend(networks);
        list
    }
}

/// Why a text is not an address or a CIDR network, with the fix when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadNetwork {
    /// The text, trimmed.
    pub(crate) written: String,
    /// The likely fix.
    pub(crate) help: Option<String>,
}

impl fmt::Display for BadNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not an address or CIDR network", self.written)?;
        match &self.help {
            Some(help) => write!(f, " ({help})"),
            None => Ok(()),
        }
    }
}

/// An address (a network of one) or a CIDR network, as configs and feeds write them. Host bits
/// set are refused, with the network probably meant: `10.0.0.1/8` more likely holds a typo
/// than means `10.0.0.0/8`.
pub(crate) fn parse_network(text: &str) -> Result<IpNetwork, BadNetwork> {
    let written = text.trim();
    if let Ok(address) = written.parse::<IpAddr>() {
        return Ok(IpNetwork::from(address));
    }
    let bad = |help: Option<String>| BadNetwork { written: written.to_owned(), help };
    let (address, length) = written.split_once('/').ok_or_else(|| bad(None))?;
    let address: IpAddr = address.parse().map_err(|_| bad(None))?;
    let length: u8 = length.parse().map_err(|_| bad(Some("the prefix length is a number after `/`".into())))?;
    match IpNetwork::new(address, length) {
        Ok(network) => Ok(network),
        Err(IpNetworkError::HostBitsSet) => {
            let fixed = IpNetwork::new_truncate(address, length).map_err(|_| bad(None))?;
            Err(bad(Some(format!("host bits are set; did you mean `{fixed}`?"))))
        }
        Err(_) => Err(bad(Some(format!("the prefix length {length} is too long for {address}")))),
    }
}

/// A network's addresses, first to last.
enum Interval {
    V4(u32, u32),
    V6(u128, u128),
}

fn interval(network: IpNetwork) -> Interval {
    match network {
        IpNetwork::V4(n) => Interval::V4(u32::from(n.network_address()), u32::from(n.broadcast_address())),
        IpNetwork::V6(n) => {
            let first = u128::from(n.network_address());
            let host_bits = 128 - u32::from(n.netmask());
            Interval::V6(first, first | if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 })
        }
    }
}

impl fmt::Debug for PrefixList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.networks().map(|n| n.to_string())).finish()
    }
}

/// How much of a block of addresses a list holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coverage {
    /// Every address of the block.
    All,
    /// None of them.
    Nothing,
    /// Some but not all: membership depends on the rest of the address.
    Part,
}

/// How the sorted, disjoint, merged `intervals` cover `low..=high`: touching intervals are
/// merged, so a block is covered whole only by one of them, the first that ends in it or after.
fn coverage<A: Copy + Ord>(intervals: &[(A, A)], low: A, high: A) -> Coverage {
    let first = intervals.partition_point(|(_, end)| *end < low);
    match intervals.get(first) {
        Some((start, end)) if *start <= low && high <= *end => Coverage::All,
        Some((start, _)) if *start <= high => Coverage::Part,
        _ => Coverage::Nothing,
    }
}

/// Adds `first..=last` to sorted, disjoint intervals, merging it with those it touches.
fn add_interval<A: Copy + Ord + TryFrom<u128> + Into<u128>>(intervals: &mut Vec<(A, A)>, first: A, last: A) {
    let touches = |(start, end): &(A, A)| {
        let (start, end, first, last) = ((*start).into(), (*end).into(), first.into(), last.into());
        start <= last.saturating_add(1) && first <= end.saturating_add(1)
    };
    let at = intervals.partition_point(|(start, _)| *start < first);
    let from = if at > 0 && touches(&intervals[at - 1]) { at - 1 } else { at };
    let to = from + intervals[from..].iter().take_while(|interval| touches(interval)).count();
    let merged = intervals[from..to].iter().fold((first, last), |(a, b), (s, e)| (a.min(*s), b.max(*e)));
    intervals.splice(from..to, [merged]);
}

/// Sorts intervals and merges those that overlap or touch, in place.
fn merge<A: Copy + Ord + Into<u128>>(intervals: &mut Vec<(A, A)>) {
    intervals.sort_unstable();
    let mut kept: usize = 0;
    for index in 0..intervals.len() {
        let (start, end) = intervals[index];
        match kept.checked_sub(1).map(|last| &mut intervals[last]) {
            Some(previous) if start.into() <= previous.1.into().saturating_add(1) => previous.1 = previous.1.max(end),
            _ => {
                intervals[kept] = (start, end);
                kept += 1;
            }
        }
    }
    intervals.truncate(kept);
}

/// Up to this many intervals are scanned one by one: quicker than a binary search's branches.
const SCAN: usize = 8;

#[inline]
fn within<A: Copy + Ord>(intervals: &[(A, A)], address: A) -> bool {
    if intervals.len() <= SCAN {
        return intervals.iter().fold(false, |found, (start, end)| found | (*start <= address && address <= *end));
    }
    let after = intervals.partition_point(|(start, _)| *start <= address);
    after.checked_sub(1).is_some_and(|i| intervals[i].1 >= address)
}

/// The special-purpose address blocks geofence knows by name (IANA's registries, RFC 6890).
///
/// Rules name them like the lists a config defines: `source = ["rfc1918"]`.
const BUILT_IN: &[(&str, &str, &[&str])] = &[
    ("rfc1918", "private IPv4 networks (RFC 1918)", &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
    ("loopback", "loopback (RFC 1122, RFC 4291)", &["127.0.0.0/8", "::1/128"]),
    ("link-local", "link-local (RFC 3927, RFC 4291)", &["169.254.0.0/16", "fe80::/10"]),
    ("cgnat", "shared address space for carrier-grade NAT (RFC 6598)", &["100.64.0.0/10"]),
    ("ula", "IPv6 unique local addresses (RFC 4193)", &["fc00::/7"]),
    ("multicast", "multicast (RFC 5771, RFC 4291)", &["224.0.0.0/4", "ff00::/8"]),
    (
        "documentation",
        "documentation and example ranges (RFC 5737, RFC 3849, RFC 9637)",
        &["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"],
    ),
    (
        "private",
        "every non-routed source: rfc1918, loopback, link-local, cgnat and ula together",
        &[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
            "::1/128",
            "169.254.0.0/16",
            "fe80::/10",
            "100.64.0.0/10",
            "fc00::/7",
        ],
    ),
];

/// The built-in lists: each name and what it holds.
pub fn built_ins() -> impl Iterator<Item = (&'static str, &'static str)> {
    BUILT_IN.iter().map(|(name, description, _)| (*name, *description))
}

/// The names of the built-in lists.
pub(crate) fn built_in_names() -> impl Iterator<Item = &'static str> {
    built_ins().map(|(name, _)| name)
}

/// Whether `name` is a built-in list's, without building the list.
pub(crate) fn is_built_in(name: &str) -> bool {
    built_in_names().any(|built_in| built_in == name)
}

/// The built-in list called `name`, if there is one.
pub fn built_in(name: &str) -> Option<PrefixList> {
    BUILT_IN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, networks)| networks.iter().filter_map(|network| network.parse::<IpNetwork>().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(list: &PrefixList, address: &str) -> bool {
        list.contains(address.parse().unwrap())
    }

    #[test]
    fn every_built_in_network_is_valid() {
        for (name, _, networks) in BUILT_IN.iter().copied() {
            for network in networks {
                assert!(network.parse::<IpNetwork>().is_ok(), "{name}: {network}");
            }
            let list = built_in(name).unwrap();
            assert_eq!(list.len().0 + list.len().1, networks.len(), "{name}");
        }
    }

    #[test]
    fn rfc1918_holds_exactly_the_three_private_blocks() {
        let list = built_in("rfc1918").unwrap();
        for inside in ["10.0.0.0", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.1.1"] {
            assert!(member(&list, inside), "{inside}");
        }
        for outside in ["9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0", "192.169.0.0", "::ffff:10.0.0.1"] {
            assert!(!member(&list, outside), "{outside}");
        }
    }

    #[test]
    fn ipv6_built_ins_match_their_blocks() {
        assert!(member(&built_in("ula").unwrap(), "fd12:3456::1"));
        assert!(!member(&built_in("ula").unwrap(), "fe00::1"));
        assert!(member(&built_in("link-local").unwrap(), "fe80::1"));
        assert!(member(&built_in("documentation").unwrap(), "2001:db8:ffff::1"));
        assert!(member(&built_in("multicast").unwrap(), "ff02::1"));
        assert!(member(&built_in("cgnat").unwrap(), "100.127.255.255"));
        assert!(!member(&built_in("cgnat").unwrap(), "100.128.0.0"));
    }

    #[test]
    fn overlapping_and_adjacent_networks_merge_and_membership_holds() {
        let list: PrefixList = ["10.0.0.0/25", "10.0.0.128/25", "10.0.0.64/26", "10.0.2.0/24", "0.0.0.0/32", "::/0"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(list.v4, [(0, 0), (0x0a00_0000, 0x0a00_00ff), (0x0a00_0200, 0x0a00_02ff)]);
        assert_eq!(list.v6, [(0, u128::MAX)]);
        for (address, expected) in [
            ("10.0.0.0", true),
            ("10.0.0.255", true),
            ("10.0.1.0", false),
            ("10.0.2.9", true),
            ("0.0.0.0", true),
            ("0.0.0.1", false),
        ] {
            assert_eq!(member(&list, address), expected, "{address}");
        }
        assert!(member(&list, "2001:db8::1"));
        assert_eq!(list.matching_network("10.0.0.70".parse().unwrap()), Some("10.0.0.64/26".parse().unwrap()));
    }

    proptest::proptest! {
        #[test]
        fn membership_agrees_with_the_prefix_table(
            networks in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32), 0..20),
            probes in proptest::collection::vec(proptest::prelude::any::<u32>(), 40),
        ) {
            let list: PrefixList = networks
                .iter()
                .map(|(a, p)| IpNetwork::new_truncate(std::net::Ipv4Addr::from(*a), *p).unwrap())
                .collect();
            let edges = networks.iter().flat_map(|(a, _)| [a.wrapping_sub(1), *a, a.wrapping_add(1)]);
            for probe in probes.into_iter().chain(edges) {
                let address = IpAddr::V4(probe.into());
                proptest::prop_assert_eq!(list.contains(address), list.matching_network(address).is_some(), "{}", address);
            }
        }
    }

    /// Networks of both families, in numbers an index is built from (and, with `mapped`, a
    /// few in ::ffff:0:0/96).
    fn many_networks(seed: u64, mapped: bool) -> Vec<IpNetwork> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..4 * INDEXED_FROM)
            .map(|n| {
                let r = next();
                let length = (r % 9) as u8;
                match n % 2 {
                    0 => IpNetwork::new_truncate(Ipv4Addr::from((r >> 32) as u32), 24 + length).unwrap(),
                    1 if mapped && n % 301 == 1 => {
                        IpNetwork::new_truncate(Ipv6Addr::from(MAPPED.0 | u128::from(r as u32)), 120).unwrap()
                    }
                    _ => {
                        let address = (0x2001_0db8u128 << 96) | (u128::from(r >> 44) << 76);
                        IpNetwork::new_truncate(Ipv6Addr::from(address), 44 + length * 2).unwrap()
                    }
                }
            })
            .collect()
    }

    #[test]
    fn an_indexed_list_answers_as_its_intervals_do() {
        for (seed, mapped) in [(7, false), (8, true)] {
            let networks = many_networks(seed, mapped);
            let indexed: PrefixList = networks.iter().copied().collect();
            let mut plain = PrefixList::new();
            networks.iter().for_each(|network| plain.insert(*network));
            assert!(indexed.indexed_v4.is_some() && plain.indexed_v4.is_none());
            assert_eq!(indexed.indexed_v6.is_some(), !mapped, "no IPv6 index over mapped networks");
            let probes = networks.iter().flat_map(|network| {
                let (first, last) = match interval(*network) {
                    Interval::V4(f, l) => (IpAddr::V4(f.into()), IpAddr::V4(l.into())),
                    Interval::V6(f, l) => (IpAddr::V6(f.into()), IpAddr::V6(l.into())),
                };
                let step = |address: IpAddr, up: bool| match address {
                    IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(if up {
                        u32::from(a).wrapping_add(1)
                    } else {
                        u32::from(a).wrapping_sub(1)
                    })),
                    IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(if up {
                        u128::from(a).wrapping_add(1)
                    } else {
                        u128::from(a).wrapping_sub(1)
                    })),
                };
                [step(first, false), first, last, step(last, true)]
            });
            let mut checked = 0;
            for probe in probes.chain(["::ffff:192.0.0.1".parse().unwrap(), "192.0.0.1".parse().unwrap()]) {
                assert_eq!(indexed.contains(probe), plain.contains(probe), "{probe}");
                assert_eq!(indexed.matching_network(probe), plain.matching_network(probe), "{probe}");
                checked += 1;
            }
            assert!(checked > 4 * 4 * INDEXED_FROM);
            // The bulk-built list keeps its networks in sorted arrays, the other in a tree.
            assert!(matches!(indexed.given, Given::Sorted { .. }) && matches!(plain.given, Given::Tree(_)));
            assert_eq!(indexed.len(), plain.len());
            let sorted = |list: &PrefixList| {
                let mut networks: Vec<String> = list.networks().map(|n| n.to_string()).collect();
                networks.sort();
                networks
            };
            assert_eq!(sorted(&indexed), sorted(&plain));
        }
    }

    #[test]
    fn a_network_inserted_into_a_bulk_built_list_is_kept_with_the_others() {
        let mut list: PrefixList = many_networks(9, false).into_iter().collect();
        let before = list.len();
        list.insert("198.51.100.0/24".parse().unwrap());
        assert_eq!(list.len(), (before.0 + 1, before.1));
        assert_eq!(list.matching_network("198.51.100.7".parse().unwrap()), Some("198.51.100.0/24".parse().unwrap()));
        let mut small = PrefixList::new();
        small.extend(["192.0.2.0/24".parse().unwrap(), "192.0.2.0/24".parse().unwrap()]);
        assert_eq!(small.len(), (1, 0), "repeats are one network");
        small.extend(many_networks(10, false));
        assert!(matches!(small.given, Given::Sorted { .. }));
        assert_eq!(small.matching_network("192.0.2.1".parse().unwrap()), Some("192.0.2.0/24".parse().unwrap()));
    }

    #[test]
    fn coverage_of_a_slash_8_is_all_nothing_or_part() {
        let list = built_in("private").unwrap();
        assert_eq!(list.coverage_v4(10), Coverage::All);
        assert_eq!(list.coverage_v4(172), Coverage::Part);
        assert_eq!(list.coverage_v4(11), Coverage::Nothing);
        assert_eq!(list.coverage_v6(0xfc), Coverage::All);
        assert_eq!(list.coverage_v6(0xfe), Coverage::Part);
        assert_eq!(list.coverage_v6(0x20), Coverage::Nothing);
        let everything: PrefixList = ["0.0.0.0/0".parse().unwrap()].into_iter().collect();
        assert_eq!(everything.coverage_v4(255), Coverage::All);
        // A single address at either end of a /8 covers it in part.
        let edges: PrefixList =
            ["10.255.255.255/32".parse().unwrap(), "12.0.0.0/32".parse().unwrap()].into_iter().collect();
        assert_eq!(edges.coverage_v4(10), Coverage::Part);
        assert_eq!(edges.coverage_v4(11), Coverage::Nothing);
        assert_eq!(edges.coverage_v4(12), Coverage::Part);
    }

    #[test]
    fn unknown_built_in_is_none() {
        assert!(built_in("rfc1819").is_none());
    }
}
