//! The compiled table: every address of both families mapped to a value or to nothing, as sorted
//! range starts.
//!
//! IPv4 starts are found through a direct index on the top 16 bits, which leaves a binary
//! search of a few entries. IPv6 data is far too uneven for that (a single /32 can hold tens of
//! thousands of ranges while most /16s hold none), so IPv6 starts, cut to their top 64 bits, are
//! searched through a static B+ tree: blocks of 16 starts with their values beside them, and
//! above them levels of block-first starts, small enough to stay in cache. A lookup counts, in
//! one block a level, the starts not above the address (16 comparisons and no unpredictable
//! branch), and ends in one bottom block: about one cache miss whatever the shape of the data.
//!
//! It is generic over the value (a country code now; an AS number or a list tag later), so the
//! loaders and the file format serve every kind of range data. Building resolves overlaps:
//! inputs are layered in order, a later layer wins wherever it has data, and within one layer
//! the more specific (smaller) range wins. Adjacent ranges with the same value are merged.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The slot of an address no range covers.
pub(crate) const NONE: u16 = u16::MAX;
/// The slot of an IPv6 /64 that holds a range boundary: look in the fine table.
const REFINE: u16 = u16::MAX - 1;
/// Value slots stay below the two markers.
pub(crate) const MAX_VALUES: usize = REFINE as usize;
/// log2 of the number of buckets of a family's direct index.
const INDEX_BITS: u32 = 16;
/// Starts per block of the IPv6 search tree.
const BLOCK: usize = 16;

/// A value a [`RangeTable`] can hold.
pub trait TableValue: Copy + Eq + Hash + Send + Sync + 'static {}
impl<T: Copy + Eq + Hash + Send + Sync + 'static> TableValue for T {}

/// An address as the integer it is, so both families share one implementation.
pub(crate) trait Key: Copy + Ord + Default + std::fmt::Debug {
    const BITS: u32;
    fn to_u128(self) -> u128;
}

impl Key for u32 {
    const BITS: u32 = 32;
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
}

impl Key for u64 {
    const BITS: u32 = 64;
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
}

impl Key for u128 {
    const BITS: u32 = 128;
    fn to_u128(self) -> u128 {
        self
    }
}

/// One family's ranges: `starts[i]..starts[i + 1]` maps to `slots[i]`; `starts[0]` is 0, so
/// every address falls in exactly one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Family<K> {
    pub(crate) starts: Vec<K>,
    pub(crate) slots: Vec<u16>,
    /// `index[b]` is the first entry whose start lies in bucket `b` (the top 16 bits) or later.
    index: Vec<u32>,
}

impl<K: Key> Family<K> {
    /// Builds the index over entries that are sorted, start at 0, and have valid slots.
    pub(crate) fn new(starts: Vec<K>, slots: Vec<u16>) -> Family<K> {
        let shift = K::BITS - INDEX_BITS;
        let mut index = Vec::with_capacity((1 << INDEX_BITS) + 1);
        let mut entry = 0;
        for bucket in 0..1u128 << INDEX_BITS {
            while entry < starts.len() && starts[entry].to_u128() >> shift < bucket {
                entry += 1;
            }
            index.push(entry as u32);
        }
        index.push(starts.len() as u32);
        Family { starts, slots, index }
    }

    fn everything_unknown() -> Family<K> {
        Family::new(vec![K::default()], vec![NONE])
    }

    /// The slot of `key`: the bucket of its top 16 bits, then a binary search within it. No
    /// allocation, no lock.
    #[inline]
    fn slot(&self, key: K) -> u16 {
        let bucket = (key.to_u128() >> (K::BITS - INDEX_BITS)) as usize;
        let (Some(&low), Some(&high)) = (self.index.get(bucket), self.index.get(bucket + 1)) else {
            return NONE;
        };
        let (low, high) = (low as usize, high as usize);
        let within = self.starts.get(low..high).map_or(0, |starts| starts.partition_point(|start| *start <= key));
        // The entry holding `key` is the last whose start is not above it: before the bucket's
        // first entry when no start inside the bucket is.
        (low + within).checked_sub(1).and_then(|entry| self.slots.get(entry)).copied().unwrap_or(NONE)
    }

    fn bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>() + self.slots.len() * 2 + self.index.len() * 4
    }

    /// The entries as (start, slot).
    fn entries(&self) -> impl Iterator<Item = (u128, u16)> + '_ {
        self.starts.iter().map(|start| start.to_u128()).zip(self.slots.iter().copied())
    }
}

/// The ranges that have a value, as (first, last, slot), from entries of a family whose last
/// address is `max`.
fn ranges_of(entries: Vec<(u128, u16)>, max: u128) -> impl Iterator<Item = (u128, u128, u16)> {
    let ends: Vec<u128> = entries.iter().skip(1).map(|(start, _)| start - 1).chain([max]).collect();
    entries
        .into_iter()
        .zip(ends)
        .filter(|((_, slot), _)| *slot != NONE)
        .map(|((start, slot), last)| (start, last, slot))
}

/// IPv6, kept small: a table on the top 64 bits (real boundaries nearly all fall on /64 or
/// coarser), and a fine table on all 128 bits only for the few /64s that hold a boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ipv6Family {
    main: Tree,
    fine: Family<u128>,
    /// How many ranges have a value: counted before the split, where it is plain.
    ranges: usize,
}

impl Ipv6Family {
    /// Splits full 128-bit entries (sorted, starting at 0) into the main and fine tables, in
    /// one pass over the /64 blocks that hold starts.
    pub(crate) fn new(starts: Vec<u128>, slots: Vec<u16>) -> Ipv6Family {
        let ranges = slots.iter().filter(|slot| **slot != NONE).count();
        let mut main: Entries<u64> = Entries::default();
        let mut fine: Entries<u128> = Entries::default();
        fine.push_merged(0, NONE);
        let mut entry = 0;
        while entry < starts.len() {
            let block = starts[entry] >> 64;
            let end = entry + starts[entry..].iter().take_while(|start| **start >> 64 == block).count();
            let refined = starts[entry..end].iter().any(|start| *start as u64 != 0);
            // Block numbers are the top 64 bits, so they fit a u64.
            let key = block as u64;
            if !refined {
                main.push_merged(key, slots[entry]);
                entry = end;
                continue;
            }
            main.push_merged(key, REFINE);
            let covering = if starts[entry] == block << 64 { slots[entry] } else { slot_before(&slots, entry) };
            fine.push_merged(block << 64, covering);
            for index in entry..end {
                fine.push_merged(starts[index], slots[index]);
            }
            if let Some(next) = key.checked_add(1) {
                // The value at the next block's start, unless a later block begins exactly there.
                main.push_merged(next, slots[end - 1]);
                fine.push_merged(u128::from(next) << 64, NONE);
            }
            entry = end;
        }
        drop((starts, slots));
        Ipv6Family { main: Tree::new(main.starts, main.slots), fine: Family::new(fine.starts, fine.slots), ranges }
    }

    fn everything_unknown() -> Ipv6Family {
        Ipv6Family { main: Tree::new(vec![0], vec![NONE]), fine: Family::everything_unknown(), ranges: 0 }
    }

    #[inline]
    fn slot(&self, address: u128) -> u16 {
        match self.main.slot((address >> 64) as u64) {
            REFINE => self.fine.slot(address),
            slot => slot,
        }
    }

    /// The full 128-bit entries, as they were before the split.
    pub(crate) fn entries(&self) -> Vec<(u128, u16)> {
        let main: Vec<(u128, u16)> = self.main.entries().map(|(key, slot)| (key << 64, slot)).collect();
        let mut full: Entries<u128> = Entries::default();
        for (index, &(start, slot)) in main.iter().enumerate() {
            if slot != REFINE {
                full.push_merged(start, slot);
                continue;
            }
            let next = main.get(index + 1).map_or(u128::MAX, |(next, _)| *next);
            full.push_merged(start, self.fine.slot(start));
            for (fine_start, fine_slot) in self.fine.entries().filter(|(s, _)| *s > start && *s < next) {
                full.push_merged(fine_start, fine_slot);
            }
        }
        full.starts.into_iter().zip(full.slots).collect()
    }

    fn bytes(&self) -> usize {
        self.main.bytes() + self.fine.bytes()
    }
}

/// A bottom block of the IPv6 tree: 16 starts and their slots side by side, so the block that
/// decides a lookup is also the one that answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(32))]
struct Leaf {
    starts: [u64; BLOCK],
    slots: [u16; BLOCK],
}

/// The static B+ tree over the top 64 bits of IPv6 range starts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tree {
    leaves: Vec<Leaf>,
    /// How many entries the leaves hold (the last leaf is padded).
    count: usize,
    /// `levels[0][b]` is the first start of leaf `b`, `levels[1][b]` the first of block `b` of
    /// `levels[0]`, and so on up to a level of at most one block.
    levels: Vec<Vec<u64>>,
}

impl Tree {
    /// Builds the tree over entries that are sorted, start at 0, and have valid slots.
    fn new(starts: Vec<u64>, slots: Vec<u16>) -> Tree {
        let leaves = starts
            .chunks(BLOCK)
            .zip(slots.chunks(BLOCK))
            .map(|(keys, values)| {
                let mut leaf = Leaf { starts: [u64::MAX; BLOCK], slots: [NONE; BLOCK] };
                leaf.starts[..keys.len()].copy_from_slice(keys);
                leaf.slots[..values.len()].copy_from_slice(values);
                leaf
            })
            .collect();
        let mut levels: Vec<Vec<u64>> = vec![starts.iter().step_by(BLOCK).copied().collect()];
        while levels.last().is_some_and(|level| level.len() > BLOCK) {
            let above = levels.last().map(|level| level.iter().step_by(BLOCK).copied().collect()).unwrap_or_default();
            levels.push(above);
        }
        Tree { leaves, count: starts.len(), levels }
    }

    #[inline]
    fn slot(&self, key: u64) -> u16 {
        let mut block = 0;
        for level in self.levels.iter().rev() {
            block = block * BLOCK + count_not_above(block_of(level, block), key).saturating_sub(1);
        }
        let Some(leaf) = self.leaves.get(block) else { return NONE };
        // Padding (u64::MAX) counts only for the last address of all; the entry count caps it.
        let real = self.count.saturating_sub(block * BLOCK).min(BLOCK);
        let within = count_not_above(&leaf.starts, key).min(real);
        within.checked_sub(1).map_or(NONE, |entry| leaf.slots[entry])
    }

    fn entries(&self) -> impl Iterator<Item = (u128, u16)> + '_ {
        self.leaves
            .iter()
            .flat_map(|leaf| leaf.starts.iter().zip(&leaf.slots))
            .take(self.count)
            .map(|(start, slot)| (u128::from(*start), *slot))
    }

    fn bytes(&self) -> usize {
        self.leaves.len() * std::mem::size_of::<Leaf>() + self.levels.iter().map(Vec::len).sum::<usize>() * 8
    }
}

/// The slot of the entry before `entry`: the one covering the start of its block.
fn slot_before(slots: &[u16], entry: usize) -> u16 {
    entry.checked_sub(1).map_or(NONE, |previous| slots[previous])
}

/// Entries being assembled: starts and their slots, in two vectors.
struct Entries<K> {
    starts: Vec<K>,
    slots: Vec<u16>,
}

impl<K> Default for Entries<K> {
    fn default() -> Self {
        Entries { starts: Vec::new(), slots: Vec::new() }
    }
}

impl<K: PartialEq> Entries<K> {
    /// Appends an entry unless it repeats the previous slot; an entry at the same start
    /// replaces the previous one.
    fn push_merged(&mut self, start: K, slot: u16) {
        if self.starts.last() == Some(&start) {
            self.starts.pop();
            self.slots.pop();
        }
        if self.slots.last() == Some(&slot) {
            return;
        }
        self.starts.push(start);
        self.slots.push(slot);
    }
}

/// An immutable map from every IPv4 and IPv6 address to a value, or to nothing.
///
/// ```
/// use geofence_core::db::{RangeTable, TableBuilder};
/// let mut builder = TableBuilder::new();
/// builder.insert(0, "192.0.2.0".parse()?, "192.0.2.255".parse()?, 'a')?;
/// builder.insert(0, "192.0.2.128".parse()?, "192.0.2.191".parse()?, 'b')?; // more specific
/// let table: RangeTable<char> = builder.build();
/// assert_eq!(table.get("192.0.2.1".parse()?), Some('a'));
/// assert_eq!(table.get("192.0.2.130".parse()?), Some('b'));
/// assert_eq!(table.get("192.0.3.1".parse()?), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeTable<V> {
    pub(crate) values: Vec<V>,
    pub(crate) v4: Family<u32>,
    pub(crate) v6: Ipv6Family,
}

impl<V: TableValue> RangeTable<V> {
    /// The table that knows no address.
    pub fn empty() -> RangeTable<V> {
        RangeTable { values: Vec::new(), v4: Family::everything_unknown(), v6: Ipv6Family::everything_unknown() }
    }

    pub(crate) fn from_parts(values: Vec<V>, v4: Family<u32>, v6: Ipv6Family) -> RangeTable<V> {
        RangeTable { values, v4, v6 }
    }

    /// The value of `address`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as
    /// the IPv4 address they carry. Allocates nothing and takes no lock.
    #[inline]
    pub fn get(&self, address: IpAddr) -> Option<V> {
        let slot = match address {
            IpAddr::V4(v4) => self.v4.slot(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4.slot(u32::from(v4)),
                None => self.v6.slot(u128::from(v6)),
            },
        };
        self.values.get(usize::from(slot)).copied()
    }

    /// How many IPv4 and IPv6 ranges have a value (after merging).
    pub fn range_counts(&self) -> (usize, usize) {
        // Entries are merged, so each one with a value is one range.
        (self.v4.slots.iter().filter(|slot| **slot != NONE).count(), self.v6.ranges)
    }

    /// The distinct values, in the order first met.
    pub fn values(&self) -> &[V] {
        &self.values
    }

    /// The memory the table holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.v4.bytes() + self.v6.bytes() + self.values.len() * std::mem::size_of::<V>()
    }

    /// Every range that has a value, IPv4 first, in address order.
    pub fn ranges(&self) -> impl Iterator<Item = (IpAddr, IpAddr, V)> + '_ {
        let v4 = ranges_of(self.v4.entries().collect(), u128::from(u32::MAX)).map(|(first, last, slot)| {
            (IpAddr::V4(Ipv4Addr::from(first as u32)), IpAddr::V4(Ipv4Addr::from(last as u32)), slot)
        });
        let v6 = ranges_of(self.v6.entries(), u128::MAX)
            .map(|(first, last, slot)| (IpAddr::V6(Ipv6Addr::from(first)), IpAddr::V6(Ipv6Addr::from(last)), slot));
        v4.chain(v6).filter_map(|(first, last, slot)| Some((first, last, *self.values.get(usize::from(slot))?)))
    }
}

/// Why a range cannot go into a table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The start is after the end, or the two are of different families.
    #[error("range {start}-{end} is backwards or mixes IPv4 and IPv6")]
    Invalid {
        /// The first address.
        start: IpAddr,
        /// The last address.
        end: IpAddr,
    },
    /// More distinct values than a table can index.
    #[error("more than {} distinct values", MAX_VALUES)]
    TooManyValues,
}

/// Collects ranges from any number of layered inputs, then builds a [`RangeTable`].
#[derive(Debug)]
pub struct TableBuilder<V> {
    values: Vec<V>,
    slots_by_value: std::collections::HashMap<V, u16>,
    v4: Vec<Pending>,
    v6: Vec<Pending>,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    layer: u32,
    first: u128,
    last: u128,
    slot: u16,
}

impl<V: TableValue> Default for TableBuilder<V> {
    fn default() -> Self {
        TableBuilder::new()
    }
}

impl<V: TableValue> TableBuilder<V> {
    /// An empty builder.
    pub fn new() -> TableBuilder<V> {
        TableBuilder { values: Vec::new(), slots_by_value: Default::default(), v4: Vec::new(), v6: Vec::new() }
    }

    /// Adds `start..=end` with `value` from input number `layer` (later layers win).
    /// IPv4-mapped IPv6 ranges are stored as the IPv4 ranges they describe.
    pub fn insert(&mut self, layer: u32, start: IpAddr, end: IpAddr, value: V) -> Result<(), RangeError> {
        let invalid = || RangeError::Invalid { start, end };
        let slot = self.slot(value)?;
        let (family, first, last) = match (unmap(start), unmap(end)) {
            (IpAddr::V4(s), IpAddr::V4(e)) => (&mut self.v4, u128::from(u32::from(s)), u128::from(u32::from(e))),
            (IpAddr::V6(s), IpAddr::V6(e)) => (&mut self.v6, u128::from(s), u128::from(e)),
            _ => return Err(invalid()),
        };
        if first > last {
            return Err(invalid());
        }
        family.push(Pending { layer, first, last, slot });
        Ok(())
    }

    fn slot(&mut self, value: V) -> Result<u16, RangeError> {
        if let Some(slot) = self.slots_by_value.get(&value) {
            return Ok(*slot);
        }
        let slot = u16::try_from(self.values.len())
            .ok()
            .filter(|s| usize::from(*s) < MAX_VALUES)
            .ok_or(RangeError::TooManyValues)?;
        self.values.push(value);
        self.slots_by_value.insert(value, slot);
        Ok(slot)
    }

    /// Resolves overlaps, merges neighbours and builds the table.
    pub fn build(self) -> RangeTable<V> {
        let (v4_starts, v4_slots) = paint(self.v4, u128::from(u32::MAX));
        let (v6_starts, v6_slots) = paint(self.v6, u128::MAX);
        RangeTable {
            values: self.values,
            v4: Family::new(v4_starts.into_iter().map(|s| s as u32).collect(), v4_slots),
            v6: Ipv6Family::new(v6_starts, v6_slots),
        }
    }
}

/// Block `index` of a level (the last block may be short).
#[inline]
fn block_of<K>(level: &[K], index: usize) -> &[K] {
    let start = (index * BLOCK).min(level.len());
    &level[start..(start + BLOCK).min(level.len())]
}

/// How many of `keys` are not above `key`: a sum of comparisons, which compiles to branch-free
/// code that the processor need not predict.
#[inline]
fn count_not_above<K: Key>(keys: &[K], key: K) -> usize {
    keys.iter().map(|k| usize::from(*k <= key)).sum()
}

fn unmap(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Lays ranges onto the address line in priority order (earlier layers first, and within a
/// layer wider ranges first), each overwriting what it covers; then lists the boundaries.
fn paint(mut ranges: Vec<Pending>, max: u128) -> (Vec<u128>, Vec<u16>) {
    ranges.sort_by(|a, b| a.layer.cmp(&b.layer).then((b.last - b.first).cmp(&(a.last - a.first))));
    // start → (last, slot), disjoint.
    let mut painted: BTreeMap<u128, (u128, u16)> = BTreeMap::new();
    for range in ranges {
        overwrite(&mut painted, range.first, range.last, range.slot);
    }
    let mut starts = vec![0u128];
    let mut slots = vec![NONE];
    let mut push = |start: u128, slot: u16| {
        if slots.last() == Some(&slot) {
            return;
        }
        if starts.last() == Some(&start) {
            slots.pop();
            starts.pop();
            if slots.last() == Some(&slot) {
                return;
            }
        }
        starts.push(start);
        slots.push(slot);
    };
    for (start, (last, slot)) in painted {
        push(start, slot);
        if last < max {
            push(last + 1, NONE);
        }
    }
    (starts, slots)
}

fn overwrite(painted: &mut BTreeMap<u128, (u128, u16)>, first: u128, last: u128, slot: u16) {
    // A range starting before `first` that reaches into it is cut; its tail past `last` kept.
    if let Some((&start, &(end, old))) = painted.range(..first).next_back() {
        if end >= first {
            painted.insert(start, (first - 1, old));
            if end > last {
                painted.insert(last + 1, (end, old));
            }
        }
    }
    let covered: Vec<u128> = painted.range(first..=last).map(|(start, _)| *start).collect();
    for start in covered {
        if let Some((end, old)) = painted.remove(&start) {
            if end > last {
                painted.insert(last + 1, (end, old));
            }
        }
    }
    painted.insert(first, (last, slot));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn table(ranges: &[(u32, &str, &str, char)]) -> RangeTable<char> {
        let mut builder = TableBuilder::new();
        for (layer, start, end, value) in ranges {
            builder.insert(*layer, ip(start), ip(end), *value).unwrap();
        }
        builder.build()
    }

    #[test]
    fn boundaries_of_each_range_are_exact() {
        let t = table(&[(0, "1.0.0.0", "1.0.0.255", 'a'), (0, "1.0.2.0", "1.0.3.255", 'b')]);
        let cases = [("0.255.255.255", None), ("1.0.0.0", Some('a')), ("1.0.0.255", Some('a')), ("1.0.1.0", None)];
        for (address, expected) in cases.into_iter().chain([("1.0.2.0", Some('b')), ("1.0.4.0", None)]) {
            assert_eq!(t.get(ip(address)), expected, "{address}");
        }
        assert_eq!(t.get(ip("255.255.255.255")), None);
        assert_eq!(t.get(ip("::")), None);
    }

    #[test]
    fn ranges_at_the_very_ends_of_the_address_space() {
        let t = table(&[(0, "0.0.0.0", "0.0.0.0", 'a'), (0, "255.255.255.255", "255.255.255.255", 'b')]);
        assert_eq!(t.get(ip("0.0.0.0")), Some('a'));
        assert_eq!(t.get(ip("0.0.0.1")), None);
        assert_eq!(t.get(ip("255.255.255.255")), Some('b'));
        let t = table(&[(0, "ffff::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 'c'), (0, "::", "::", 'd')]);
        assert_eq!(t.get(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), Some('c'));
        assert_eq!(t.get(ip("::")), Some('d'));
        assert_eq!(t.get(ip("::1")), None);
    }

    #[test]
    fn the_more_specific_range_wins_within_a_layer() {
        let t = table(&[(0, "10.0.0.10", "10.0.0.20", 'b'), (0, "10.0.0.0", "10.0.0.255", 'a')]);
        assert_eq!(t.get(ip("10.0.0.9")), Some('a'));
        assert_eq!(t.get(ip("10.0.0.10")), Some('b'));
        assert_eq!(t.get(ip("10.0.0.20")), Some('b'));
        assert_eq!(t.get(ip("10.0.0.21")), Some('a'));
        assert_eq!(t.range_counts(), (3, 0));
    }

    #[test]
    fn a_later_layer_wins_even_with_a_wider_range() {
        let t = table(&[(0, "10.0.0.10", "10.0.0.20", 'b'), (1, "10.0.0.0", "10.0.0.255", 'c')]);
        assert_eq!(t.get(ip("10.0.0.15")), Some('c'));
        assert_eq!(t.range_counts(), (1, 0));
    }

    #[test]
    fn adjacent_and_overlapping_ranges_of_one_value_merge() {
        let t = table(&[
            (0, "10.0.0.0", "10.0.0.127", 'a'),
            (0, "10.0.0.128", "10.0.0.255", 'a'),
            (0, "10.0.0.200", "10.0.1.9", 'a'),
        ]);
        assert_eq!(t.ranges().collect::<Vec<_>>(), [(ip("10.0.0.0"), ip("10.0.1.9"), 'a')]);
    }

    #[test]
    fn ipv4_mapped_ranges_and_lookups_use_the_ipv4_table() {
        let t = table(&[(0, "::ffff:192.0.2.0", "::ffff:192.0.2.255", 'm')]);
        assert_eq!(t.get(ip("192.0.2.9")), Some('m'));
        assert_eq!(t.get(ip("::ffff:192.0.2.9")), Some('m'));
        assert_eq!(t.range_counts(), (1, 0));
    }

    #[test]
    fn backwards_and_mixed_ranges_are_refused() {
        let mut builder = TableBuilder::new();
        assert!(builder.insert(0, ip("10.0.0.9"), ip("10.0.0.1"), 'x').is_err());
        assert!(builder.insert(0, ip("10.0.0.1"), ip("2001:db8::"), 'x').is_err());
    }

    #[test]
    fn empty_table_knows_nothing() {
        let t: RangeTable<char> = RangeTable::empty();
        assert_eq!(t.get(ip("1.2.3.4")), None);
        assert_eq!(t.get(ip("2001:db8::1")), None);
        assert_eq!(TableBuilder::<char>::new().build().get(ip("1.2.3.4")), None);
    }

    /// The reference: a linear scan applying the documented priority rule.
    fn reference(ranges: &[(u32, u32, u32, u8)], address: u32) -> Option<u8> {
        ranges
            .iter()
            .filter(|(_, first, last, _)| (*first..=*last).contains(&address))
            .max_by(|a, b| a.0.cmp(&b.0).then((b.2 - b.1).cmp(&(a.2 - a.1))))
            .map(|r| r.3)
    }

    /// IPv6 ranges around a few /64 boundaries, so some /64s hold boundaries (the fine table)
    /// and some do not: (layer, first, last, value).
    fn ipv6_ranges() -> impl Strategy<Value = Vec<(u32, u128, u128, u8)>> {
        let block = prop_oneof![Just(0u128), Just(1), Just(2), Just(5)];
        let offset = prop_oneof![Just(0u128), any::<u64>().prop_map(u128::from), Just(u128::from(u64::MAX))];
        let span = prop_oneof![Just(0u128), 1u128..1000, Just(1u128 << 64), Just((1u128 << 65) + 7)];
        proptest::collection::vec((0u32..2, block, offset, span, 0u8..3), 0..12).prop_map(|raw| {
            let base = 0x2001_0db8u128 << 96;
            raw.into_iter()
                .map(|(layer, block, offset, span, value)| {
                    let first = base + (block << 64) + offset;
                    (layer, first, first.saturating_add(span), value)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn ipv6_lookups_agree_with_a_linear_scan(ranges in ipv6_ranges(), probes in proptest::collection::vec(0u128..(8u128 << 64), 30)) {
            let mut unique: Vec<(u32, u128, u128, u8)> = Vec::new();
            for range in ranges {
                if unique.iter().any(|r| r.0 == range.0 && r.2 - r.1 == range.2 - range.1) { continue; }
                unique.push(range);
            }
            let mut builder = TableBuilder::new();
            for (layer, first, last, value) in &unique {
                builder.insert(*layer, IpAddr::V6(Ipv6Addr::from(*first)), IpAddr::V6(Ipv6Addr::from(*last)), *value).unwrap();
            }
            let table = builder.build();
            let reference = |address: u128| unique
                .iter()
                .filter(|(_, first, last, _)| (*first..=*last).contains(&address))
                .max_by(|a, b| a.0.cmp(&b.0).then((b.2 - b.1).cmp(&(a.2 - a.1))))
                .map(|r| r.3);
            let base = 0x2001_0db8u128 << 96;
            let boundaries = unique.iter().flat_map(|r| [r.1.saturating_sub(1), r.1, r.2, r.2.saturating_add(1)]);
            for address in probes.into_iter().map(|p| base + p).chain(boundaries) {
                prop_assert_eq!(table.get(IpAddr::V6(Ipv6Addr::from(address))), reference(address), "{:x}", address);
            }
            // The split into main and fine tables gives back the entries it was built from.
            let rebuilt = Ipv6Family::new(
                table.v6.entries().iter().map(|(s, _)| *s).collect(),
                table.v6.entries().iter().map(|(_, v)| *v).collect(),
            );
            prop_assert_eq!(&rebuilt, &table.v6);
        }

        #[test]
        fn lookups_agree_with_a_linear_scan(
            raw in proptest::collection::vec((0u32..3, any::<u32>(), 0u32..5000, 0u8..4), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 50),
        ) {
            // Distinct sizes within a layer keep the priority rule unambiguous.
            let mut ranges: Vec<(u32, u32, u32, u8)> = Vec::new();
            for (layer, start, length, value) in raw {
                let last = start.saturating_add(length);
                if ranges.iter().any(|r| r.0 == layer && r.2 - r.1 == last - start) { continue; }
                ranges.push((layer, start, last, value));
            }
            let mut builder = TableBuilder::new();
            for (layer, first, last, value) in &ranges {
                builder.insert(*layer, IpAddr::V4(Ipv4Addr::from(*first)), IpAddr::V4(Ipv4Addr::from(*last)), *value).unwrap();
            }
            let table = builder.build();
            let boundaries = ranges.iter().flat_map(|r| [r.1.saturating_sub(1), r.1, r.2, r.2.saturating_add(1)]);
            for address in probes.into_iter().chain(boundaries) {
                prop_assert_eq!(table.get(IpAddr::V4(Ipv4Addr::from(address))), reference(&ranges, address), "{}", address);
            }
        }
    }
}
