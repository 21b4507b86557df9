//! The compiled table: every address of both families mapped to a value or to nothing, as sorted
//! range starts.
//!
//! IPv4 goes through a direct index on the top 16 bits. Four /16s in five lie inside one range
//! and keep its value in the index itself; the others point at a short run of entries, halved
//! down to one window of 16 that is compared at once. IPv6 data is far too uneven for that (a
//! single /32 can hold tens of thousands of ranges while most /16s hold none). IPv6 starts are
//! cut to their /48 (the few /48s holding a finer boundary go to a small fine table), split by
//! their top 16 bits, and each /16 gets a static B+ tree over the remaining 32 bits: inner blocks
//! of 32 keys in two adjacent cache lines, counted at once, and leaves that hold their answers.
//! A lookup reads one block a level, with no branch that depends on the data, and ends in one
//! leaf.
//!
//! Both families are built as their entries come, one /16 or /48 at a time, so that loading a
//! compiled file never holds a second copy of its entries.
//!
//! It is generic over the value, so the loaders and the file format serve any range data.
//! Slots are 32 bits (AS numbers alone have about 91,000 distinct values in the ip-location-db
//! data), and both layouts keep a slot beside its key, so the cache line that decides a lookup
//! answers it. Building resolves overlaps:
//! inputs are layered in order, a later layer wins wherever it has data, and within one layer
//! the more specific (smaller) range wins. Adjacent ranges with the same value are merged.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where an entry's value lies in [`RangeTable::values`]: 32 bits, for tables with more
/// distinct values than 16 bits can number (AS numbers).
pub(crate) type Slot = u32;
/// The slot of an address no range covers. Slots stay below bit 31, which an IPv4 index
/// entry uses to say it holds a slot itself.
pub(crate) const NONE: Slot = DIRECT - 1;
/// The slot of an IPv6 /48 that holds a finer range boundary: look in the fine table.
const REFINE: Slot = NONE - 1;
/// Value slots stay below the two markers.
pub(crate) const MAX_VALUES: usize = REFINE as usize;
/// log2 of the number of buckets of a family's direct index.
const INDEX_BITS: u32 = 16;
/// Starts per block of the IPv6 search tree.
const BLOCK: usize = 32;

/// A value a [`RangeTable`] can hold.
pub trait TableValue: Copy + Eq + Hash + Send + Sync + 'static {}
impl<T: Copy + Eq + Hash + Send + Sync + 'static> TableValue for T {}

/// An address as the integer it is, so both families share one implementation.
pub(crate) trait Key: Copy + Ord + Default + std::fmt::Debug {
    const BITS: u32;
    const MAX: Self;
    fn to_u128(self) -> u128;
    /// The next address; only asked of one below `MAX`.
    fn next(self) -> Self;
    /// The address before; only asked of one above 0.
    fn previous(self) -> Self;
}

impl Key for u32 {
    const BITS: u32 = 32;
    const MAX: u32 = u32::MAX;
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn next(self) -> u32 {
        self + 1
    }
    fn previous(self) -> u32 {
        self - 1
    }
}

impl Key for u128 {
    const BITS: u32 = 128;
    const MAX: u128 = u128::MAX;
    fn to_u128(self) -> u128 {
        self
    }
    fn next(self) -> u128 {
        self + 1
    }
    fn previous(self) -> u128 {
        self - 1
    }
}

/// One family's ranges: `starts[i]..starts[i + 1]` maps to `slots[i]`; `starts[0]` is 0, so
/// every address falls in exactly one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Family<K> {
    pub(crate) starts: Vec<K>,
    pub(crate) slots: Vec<Slot>,
    /// `index[b]` is the first entry whose start lies in bucket `b` (the top 16 bits) or later.
    index: Vec<u32>,
}

impl<K: Key> Family<K> {
    /// Builds the index over entries that are sorted, start at 0, and have valid slots.
    pub(crate) fn new(starts: Vec<K>, slots: Vec<Slot>) -> Family<K> {
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
    fn slot(&self, key: K) -> Slot {
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
        self.starts.len() * std::mem::size_of::<K>()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self.index.len() * 4
    }

    /// The entries as (start, slot).
    fn entries(&self) -> impl Iterator<Item = (u128, Slot)> + '_ {
        self.starts.iter().map(|start| start.to_u128()).zip(self.slots.iter().copied())
    }
}

/// The ranges that have a value, as (first, last, slot), from entries of a family whose last
/// address is `max`.
fn ranges_of(entries: Vec<(u128, Slot)>, max: u128) -> impl Iterator<Item = (u128, u128, Slot)> {
    let ends: Vec<u128> = entries.iter().skip(1).map(|(start, _)| start - 1).chain([max]).collect();
    entries
        .into_iter()
        .zip(ends)
        .filter(|((_, slot), _)| *slot != NONE)
        .map(|((start, slot), last)| (start, last, slot))
}

/// IPv4: a direct index on the top 16 bits. Four /16s in five of real data lie within one
/// range, and their index entry holds the slot itself, so a lookup reads one word. Each other
/// /16 points at a run of words `low16 << 16 | code`: first a head word holding how many
/// entries follow and the code of the slot in force at the /16's start, then the entries that
/// start inside it. A word holds its start and its answer, so the line that decides a lookup
/// answers it. The code is the slot itself when it fits 16 bits (every slot of a country
/// table); else it says to read the slot from `wide`, which only tables with that many values
/// have (64-bit words would cost IPv4 lookups 40 %: the baseline x86-64 vector unit has no
/// 64-bit comparison).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ipv4Family {
    index: Vec<u32>,
    /// The runs, then `WINDOW` words of padding, so a window read from any entry stays inside.
    words: Vec<u32>,
    /// The slot of each word, when some slot does not fit its code; else empty.
    wide: Vec<Slot>,
    /// How many ranges have a value.
    ranges: usize,
}

/// An index entry with this bit holds a slot rather than an offset into the words.
const DIRECT: u32 = 1 << 31;
/// The most IPv4 entries a table holds: with a head word for every /16 and the padding, their
/// offsets stay below `DIRECT`. The compiled loader refuses more; text that would make more
/// (two billion ranges) exhausts memory first.
pub(crate) const MAX_IPV4_ENTRIES: usize = (DIRECT as usize) - (1 << INDEX_BITS) - 2 * WINDOW;
/// Entries compared at once (a window of 64 bytes), after halving a long run down to it.
const WINDOW: usize = 16;
/// The code of a word whose slot is [`NONE`].
const CODE_NONE: u32 = 0xFFFF;
/// The code of a word whose slot is in [`Ipv4Family::wide`].
const CODE_WIDE: u32 = 0xFFFE;

/// The 16-bit code of `slot` in a word.
fn code(slot: Slot) -> u32 {
    match slot {
        NONE => CODE_NONE,
        narrow if narrow < CODE_WIDE => narrow,
        _ => CODE_WIDE,
    }
}

/// Builds an [`Ipv4Family`] from its entries as they come (sorted, the first at 0), one /16
/// at a time, so that no copy of the whole list is ever held.
pub(crate) struct Ipv4Builder {
    index: Vec<u32>,
    words: Vec<u32>,
    /// The slot of each word, once some slot has needed it.
    wide: Vec<Slot>,
    /// Whether some slot has not fitted its code, so `wide` is kept.
    keeps_wide: bool,
    /// The /16 whose entries are being gathered.
    bucket: u32,
    /// Its entries after the one at its start, as words, and their slots.
    run: Vec<u32>,
    run_slots: Vec<Slot>,
    /// The slot in force where the bucket begins.
    in_force: Slot,
    ranges: usize,
}

impl Ipv4Builder {
    /// A builder for about `entries` entries.
    pub(crate) fn with_capacity(entries: usize) -> Ipv4Builder {
        Ipv4Builder {
            index: Vec::with_capacity(1 << INDEX_BITS),
            // At most a head word a /16 and a word an entry: reserved at once, so the vector
            // never moves while it grows (pages never written are never touched).
            words: Vec::with_capacity((1 << INDEX_BITS) + entries + WINDOW),
            wide: Vec::new(),
            keeps_wide: false,
            bucket: 0,
            run: Vec::new(),
            run_slots: Vec::new(),
            in_force: NONE,
            ranges: 0,
        }
    }

    /// The next entry: its start is above every start before it.
    pub(crate) fn push(&mut self, start: u32, slot: Slot) {
        while self.bucket < start >> 16 {
            self.close_bucket();
        }
        self.ranges += usize::from(slot != NONE);
        if start & 0xFFFF == 0 {
            self.in_force = slot;
        } else {
            let code = self.encode(slot);
            self.run.push((start & 0xFFFF) << 16 | code);
            self.run_slots.push(slot);
        }
    }

    /// The code of `slot`; the first slot that does not fit one starts `wide`, with the slots
    /// of the words before it.
    fn encode(&mut self, slot: Slot) -> u32 {
        let code = code(slot);
        if code == CODE_WIDE && !self.keeps_wide {
            self.keeps_wide = true;
            self.wide = self.words.iter().map(|word| narrow_slot(word & 0xFFFF)).collect();
        }
        code
    }

    /// Writes the gathered /16 to the index: its slot when one holds throughout, else its run.
    fn close_bucket(&mut self) {
        match self.run_slots.last() {
            None => self.index.push(DIRECT | self.in_force),
            Some(&last) => {
                self.index.push(self.words.len() as u32);
                let head = (self.run.len() as u32) << 16 | self.encode(self.in_force);
                self.words.push(head);
                self.words.extend_from_slice(&self.run);
                if self.keeps_wide {
                    self.wide.push(self.in_force);
                    self.wide.extend_from_slice(&self.run_slots);
                }
                self.in_force = last;
                self.run.clear();
                self.run_slots.clear();
            }
        }
        self.bucket += 1;
    }

    pub(crate) fn finish(mut self) -> Ipv4Family {
        while self.index.len() < 1 << INDEX_BITS {
            self.close_bucket();
        }
        self.words.extend([u32::MAX; WINDOW]);
        Ipv4Family { index: self.index, words: self.words, wide: self.wide, ranges: self.ranges }
    }
}

/// The slot of a code that is not [`CODE_WIDE`].
fn narrow_slot(code: u32) -> Slot {
    if code == CODE_NONE {
        NONE
    } else {
        code
    }
}

impl Ipv4Family {
    /// Builds the index over entries that are sorted, start at 0, and have valid slots; at
    /// most [`MAX_IPV4_ENTRIES`] of them, so that every offset stays below `DIRECT`.
    pub(crate) fn new(starts: &[u32], slots: &[Slot]) -> Ipv4Family {
        let mut builder = Ipv4Builder::with_capacity(starts.len());
        starts.iter().zip(slots).for_each(|(start, slot)| builder.push(*start, *slot));
        builder.finish()
    }

    fn everything_unknown() -> Ipv4Family {
        Ipv4Family::new(&[0], &[NONE])
    }

    /// The slot of `address`. A long run is halved (without branching on the data) down to one
    /// window, whose entries are then compared at once.
    #[inline(always)]
    fn slot(&self, address: u32) -> Slot {
        let Some(&entry) = self.index.get((address >> 16) as usize) else { return NONE };
        if entry & DIRECT != 0 {
            return entry & !DIRECT;
        }
        let head = entry as usize;
        let Some(&head_word) = self.words.get(head) else { return NONE };
        // Entries at or below the address compare at or below this word, whatever their slot.
        let target = address << 16 | 0xFFFF;
        let mut base = head + 1;
        let mut len = (head_word >> 16) as usize;
        while len > WINDOW {
            let half = len / 2;
            let above = self.words.get(base + half).is_none_or(|word| *word > target);
            base = if above { base } else { base + half };
            len -= half;
        }
        let Some(window) = self.words.get(base..base + WINDOW) else { return NONE };
        let len = len as u32;
        let below: u32 = window.iter().zip(0..).map(|(word, i)| u32::from(*word <= target) & u32::from(i < len)).sum();
        // `base - 1` is the head or an entry known to be at or below the address.
        self.slot_of_word(base + below as usize - 1)
    }

    /// The slot of the word at `position`.
    #[inline(always)]
    fn slot_of_word(&self, position: usize) -> Slot {
        match self.words.get(position).map(|word| word & 0xFFFF) {
            Some(CODE_WIDE) => self.wide.get(position).copied().unwrap_or(NONE),
            Some(code) => narrow_slot(code),
            None => NONE,
        }
    }

    /// The entries as (start, slot), merged as they were built.
    pub(crate) fn entries(&self) -> Vec<(u128, Slot)> {
        let mut entries: Entries<u128> = Entries::default();
        for (bucket, &entry) in self.index.iter().enumerate() {
            let start = (bucket as u128) << 16;
            if entry & DIRECT != 0 {
                entries.push_merged(start, entry & !DIRECT);
                continue;
            }
            let head = entry as usize;
            entries.push_merged(start, self.slot_of_word(head));
            let count = (self.words[head] >> 16) as usize;
            for position in head + 1..=head + count {
                entries.push_merged(start | u128::from(self.words[position] >> 16), self.slot_of_word(position));
            }
        }
        entries.starts.into_iter().zip(entries.slots).collect()
    }

    fn bytes(&self) -> usize {
        (self.index.len() + self.words.len() + self.wide.len()) * 4
    }
}

/// IPv6, kept small: a main table on the top 48 bits (real boundaries nearly all fall on a /48
/// or coarser), and a fine table on all 128 bits only for the few /48s that hold a boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ipv6Family {
    main: Forest,
    fine: Family<u128>,
    /// How many ranges have a value: counted before the split, where it is plain.
    ranges: usize,
}

/// How far an IPv6 address is shifted to give its main-table key, the /48 it lies in.
const FINE_SHIFT: u32 = 128 - 48;

/// Builds an [`Ipv6Family`] from its entries as they come (sorted, the first at 0), one /48 at a
/// time, so that no copy of the whole 128-bit list is ever held.
pub(crate) struct Ipv6Builder {
    main: ForestBuilder,
    fine: Entries<u128>,
    /// The entries of the /48 being gathered.
    block: Vec<(u128, Slot)>,
    /// The slot of the last entry before that /48.
    before: Slot,
    ranges: usize,
}

impl Ipv6Builder {
    /// A builder for about `entries` entries.
    pub(crate) fn with_capacity(entries: usize) -> Ipv6Builder {
        let mut fine = Entries::default();
        fine.push_merged(0, NONE);
        // A /48 adds at most two main entries (its own and the one after a refined /48) and
        // holds at least one entry.
        Ipv6Builder {
            main: ForestBuilder::with_capacity(2 * entries + 1),
            fine,
            block: Vec::new(),
            before: NONE,
            ranges: 0,
        }
    }

    /// The next entry: its start is above every start before it.
    pub(crate) fn push(&mut self, start: u128, slot: Slot) {
        if self.block.first().is_some_and(|(first, _)| first >> FINE_SHIFT != start >> FINE_SHIFT) {
            self.close_block();
        }
        self.ranges += usize::from(slot != NONE);
        self.block.push((start, slot));
    }

    /// Adds the gathered /48 to the main table, and when starts fall inside it (not on its
    /// first address), to the fine table as well.
    fn close_block(&mut self) {
        let (Some(&(first, first_slot)), Some(&(_, last_slot))) = (self.block.first(), self.block.last()) else {
            return;
        };
        let within = (1u128 << FINE_SHIFT) - 1;
        let block = first >> FINE_SHIFT;
        // Block numbers are the top 48 bits, so they fit a u64.
        let key = block as u64;
        if self.block.iter().all(|(start, _)| start & within == 0) {
            self.main.push_merged(key, first_slot);
        } else {
            self.main.push_merged(key, REFINE);
            let covering = if first == block << FINE_SHIFT { first_slot } else { self.before };
            self.fine.push_merged(block << FINE_SHIFT, covering);
            for &(start, slot) in &self.block {
                self.fine.push_merged(start, slot);
            }
            let next = key + 1;
            if next < 1 << 48 {
                // The value at the next block's start, unless a later block begins exactly there.
                self.main.push_merged(next, last_slot);
                self.fine.push_merged(u128::from(next) << FINE_SHIFT, NONE);
            }
        }
        self.before = last_slot;
        self.block.clear();
    }

    pub(crate) fn finish(mut self) -> Ipv6Family {
        self.close_block();
        Ipv6Family {
            main: self.main.finish(),
            fine: Family::new(self.fine.starts, self.fine.slots),
            ranges: self.ranges,
        }
    }
}

impl Ipv6Family {
    /// Splits full 128-bit entries (sorted, starting at 0) into the main and fine tables.
    pub(crate) fn new(starts: Vec<u128>, slots: Vec<Slot>) -> Ipv6Family {
        let mut builder = Ipv6Builder::with_capacity(starts.len());
        starts.iter().zip(&slots).for_each(|(start, slot)| builder.push(*start, *slot));
        builder.finish()
    }

    fn everything_unknown() -> Ipv6Family {
        let mut main = ForestBuilder::with_capacity(1);
        main.push_merged(0, NONE);
        Ipv6Family { main: main.finish(), fine: Family::everything_unknown(), ranges: 0 }
    }

    #[inline]
    fn slot(&self, address: u128) -> Slot {
        match self.main.slot((address >> FINE_SHIFT) as u64) {
            REFINE => self.fine.slot(address),
            slot => slot,
        }
    }

    /// The full 128-bit entries, as they were before the split.
    pub(crate) fn entries(&self) -> Vec<(u128, Slot)> {
        let main: Vec<(u128, Slot)> = self.main.entries().map(|(key, slot)| (key << FINE_SHIFT, slot)).collect();
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

/// Thirty-two keys of an inner level: two adjacent cache lines, fetched together and compared
/// at once by the vector unit. Wider blocks spare the largest trees a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Block([u32; BLOCK]);

// The layout the lookup's speed rests on: a block is exactly two cache lines.
const _: () = assert!(std::mem::size_of::<Block>() == 128 && std::mem::align_of::<Block>() == 64);

impl Block {
    /// A block of up to 32 sorted keys; the rest are `u32::MAX`.
    fn padded(keys: &[u32]) -> Block {
        let mut block = [u32::MAX; BLOCK];
        block[..keys.len()].copy_from_slice(keys);
        Block(block)
    }

    /// How many keys are not above `key`. The keys are sorted, so those are a run from the
    /// first, and counting them is one vector comparison and a sum.
    #[inline]
    fn rank(&self, key: u32) -> usize {
        self.0.iter().map(|k| u32::from(*k <= key)).sum::<u32>() as usize
    }
}

/// Entries per leaf.
const LEAF: usize = 8;

/// Up to eight entries of a tree's bottom level, their keys and their slots, in one cache line,
/// so the line that decides a lookup also answers it. The keys are compared as 32-bit numbers,
/// which the vector unit does at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Leaf {
    keys: [u32; LEAF],
    slots: [Slot; LEAF],
}

// A leaf is exactly one cache line: more entries would make it two.
const _: () = assert!(std::mem::size_of::<Leaf>() == 64 && std::mem::align_of::<Leaf>() == 64);

impl Leaf {
    /// A leaf of 1 to 8 sorted entries. The rest are padding: key `u32::MAX` with the last
    /// entry's slot, so counting them (only a key of all ones does) gives the same answer, and
    /// a leaf needs no length.
    fn packed(keys: &[u32], slots: &[Slot]) -> Leaf {
        let last = slots.get(keys.len().min(LEAF).wrapping_sub(1)).copied().unwrap_or(NONE);
        let mut leaf = Leaf { keys: [u32::MAX; LEAF], slots: [last; LEAF] };
        for (index, (key, slot)) in keys.iter().zip(slots).take(LEAF).enumerate() {
            (leaf.keys[index], leaf.slots[index]) = (*key, *slot);
        }
        leaf
    }

    /// The slot of the last entry whose key is not above `key`.
    #[inline]
    fn slot(&self, key: u32) -> Slot {
        let count: u32 = self.keys.iter().map(|k| u32::from(*k <= key)).sum();
        count.checked_sub(1).and_then(|entry| self.slots.get(entry as usize)).map_or(NONE, |slot| *slot)
    }

    /// The entries, padding included: a padding entry repeats the slot before it, so merging
    /// drops it.
    fn entries(&self) -> impl Iterator<Item = (u32, Slot)> + '_ {
        self.keys.iter().copied().zip(self.slots.iter().copied())
    }
}

/// The most inner levels a tree can need: 2^32 keys make 2^29 leaves, 6 levels of 32.
const MAX_HEIGHT: usize = 8;

/// One inner level of a tree: where its blocks begin in [`Forest::inner`], and the last block
/// (counted from its level's start) of the level below, which caps the padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Level {
    base: u32,
    last_below: u32,
}

/// Where one tree lies in the forest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    /// The inner levels, root first.
    levels: [Level; MAX_HEIGHT],
    height: u8,
    first_leaf: u32,
    leaves: u32,
}

/// The main IPv6 table: 48-bit keys (/48s), split by their top 16 bits into a static B+ tree
/// each, whose keys are the remaining 32 bits. Small keys let an inner block of 32 fit two cache
/// lines that the processor compares at once, a leaf holds its answers, and the direct step on
/// the top 16 bits saves the levels that would only sort out /16s.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Forest {
    /// The tree of each /16, by number into `shapes` (runs of empty /16s share one).
    roots: Vec<u32>,
    shapes: Vec<Shape>,
    inner: Vec<Block>,
    leaves: Vec<Leaf>,
}

/// Builds a [`Forest`] from entries as they come, one /16 tree at a time: no list of all the
/// entries is held on the way.
struct ForestBuilder {
    forest: Forest,
    /// The /16 whose entries are being gathered.
    bucket: u64,
    /// Its entries so far: the low 32 bits of their keys, and their slots.
    keys: Vec<u32>,
    slots: Vec<Slot>,
    /// The slot of the last entry before that /16, if there is one.
    before: Option<Slot>,
}

impl ForestBuilder {
    /// A builder for at most about `entries` entries.
    fn with_capacity(entries: usize) -> ForestBuilder {
        // A tree of n keys takes at most n / 8 + 1 leaves, and its inner blocks are a small
        // fraction of those: reserved at once for the usual shapes (virtual memory only until
        // written), the vectors seldom move while they grow, then give back what is left.
        let leaves = entries / LEAF + (1 << 16);
        let forest = Forest {
            roots: Vec::with_capacity(1 << 16),
            shapes: Vec::new(),
            inner: Vec::with_capacity(leaves / 16),
            leaves: Vec::with_capacity(leaves),
        };
        ForestBuilder { forest, bucket: 0, keys: Vec::new(), slots: Vec::new(), before: None }
    }

    /// Appends an entry (a key below 2^48, not below the last) unless it repeats the previous
    /// slot; an entry at the same key replaces the previous one.
    fn push_merged(&mut self, key: u64, slot: Slot) {
        while self.bucket < key >> 32 {
            self.close_bucket();
        }
        let low = key as u32;
        if self.keys.last() == Some(&low) {
            self.keys.pop();
            self.slots.pop();
        }
        if self.slots.last().copied().or(self.before) == Some(slot) {
            return;
        }
        self.keys.push(low);
        self.slots.push(slot);
    }

    /// Plants the tree of the gathered /16 and moves to the next.
    fn close_bucket(&mut self) {
        let before = self.before.unwrap_or(NONE);
        let forest = &mut self.forest;
        let previous = forest.roots.last().copied();
        if self.keys.is_empty() && previous.is_some_and(|root| forest.is_lone_entry(root, before)) {
            forest.roots.extend(previous);
        } else {
            // Every tree answers from its /16's first address: the value carried in from before.
            if self.keys.first() != Some(&0) {
                self.keys.insert(0, 0);
                self.slots.insert(0, before);
            }
            forest.roots.push(forest.shapes.len() as u32);
            let shape = forest.plant(&self.keys, &self.slots);
            forest.shapes.push(shape);
        }
        self.before = self.slots.last().copied().or(self.before);
        self.keys.clear();
        self.slots.clear();
        self.bucket += 1;
    }

    fn finish(mut self) -> Forest {
        while self.bucket < 1 << 16 {
            self.close_bucket();
        }
        self.forest.inner.shrink_to_fit();
        self.forest.leaves.shrink_to_fit();
        self.forest
    }
}

impl Forest {
    /// Whether tree `root` is a lone entry at 0 with `slot`, as an empty /16 after it would be.
    fn is_lone_entry(&self, root: u32, slot: Slot) -> bool {
        let Some(shape) = self.shapes.get(root as usize) else { return false };
        let lone = Leaf::packed(&[0], &[slot]);
        shape.leaves == 1 && self.leaves.get(shape.first_leaf as usize) == Some(&lone)
    }

    /// Adds the tree of one /16: leaves of 8 entries, then levels of their first keys.
    fn plant(&mut self, keys: &[u32], slots: &[Slot]) -> Shape {
        let first_leaf = self.leaves.len() as u32;
        self.leaves.extend(keys.chunks(LEAF).zip(slots.chunks(LEAF)).map(|(keys, slots)| Leaf::packed(keys, slots)));
        let leaves = self.leaves.len() as u32 - first_leaf;
        let mut levels = Vec::new();
        let mut firsts: Vec<u32> = keys.iter().step_by(LEAF).copied().collect();
        let mut below = leaves;
        while below > 1 {
            let base = self.inner.len() as u32;
            self.inner.extend(firsts.chunks(BLOCK).map(Block::padded));
            levels.push(Level { base, last_below: below - 1 });
            below = self.inner.len() as u32 - base;
            firsts = firsts.iter().step_by(BLOCK).copied().collect();
        }
        let mut shape =
            Shape { levels: [Level::default(); MAX_HEIGHT], height: levels.len() as u8, first_leaf, leaves };
        for (slot, level) in shape.levels.iter_mut().zip(levels.into_iter().rev()) {
            *slot = level;
        }
        shape
    }

    /// The slot of a 48-bit key: the /16's tree, one block a level, one leaf.
    #[inline]
    fn slot(&self, key: u64) -> Slot {
        let Some(shape) = self.roots.get((key >> 32) as usize).and_then(|root| self.shapes.get(*root as usize)) else {
            return NONE;
        };
        let low = key as u32;
        let mut local = 0;
        for level in shape.levels.iter().take(usize::from(shape.height)) {
            let Some(block) = self.inner.get(level.base as usize + local) else { return NONE };
            let child = local * BLOCK + block.rank(low).saturating_sub(1);
            local = child.min(level.last_below as usize);
        }
        self.leaves.get(shape.first_leaf as usize + local).map_or(NONE, |leaf| leaf.slot(low))
    }

    /// The entries as (48-bit key, slot), merged.
    fn entries(&self) -> impl Iterator<Item = (u128, Slot)> + '_ {
        let mut merged: Entries<u128> = Entries::default();
        for (bucket, root) in self.roots.iter().enumerate() {
            let shape = &self.shapes[*root as usize];
            let leaves = &self.leaves[shape.first_leaf as usize..(shape.first_leaf + shape.leaves) as usize];
            for (key, slot) in leaves.iter().flat_map(Leaf::entries) {
                merged.push_merged(((bucket as u128) << 32) | u128::from(key), slot);
            }
        }
        merged.starts.into_iter().zip(merged.slots)
    }

    fn bytes(&self) -> usize {
        self.roots.len() * 4
            + self.shapes.len() * std::mem::size_of::<Shape>()
            + self.inner.len() * std::mem::size_of::<Block>()
            + self.leaves.len() * std::mem::size_of::<Leaf>()
    }
}

/// Entries being assembled: starts and their slots, in two vectors.
struct Entries<K> {
    starts: Vec<K>,
    slots: Vec<Slot>,
}

impl<K> Default for Entries<K> {
    fn default() -> Self {
        Entries::with_capacity(0)
    }
}

impl<K> Entries<K> {
    fn with_capacity(capacity: usize) -> Entries<K> {
        Entries { starts: Vec::with_capacity(capacity), slots: Vec::with_capacity(capacity) }
    }
}

impl<K: PartialEq> Entries<K> {
    /// Appends an entry unless it repeats the previous slot; an entry at the same start
    /// replaces the previous one.
    fn push_merged(&mut self, start: K, slot: Slot) {
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
    pub(crate) v4: Ipv4Family,
    pub(crate) v6: Ipv6Family,
}

impl<V: TableValue> RangeTable<V> {
    /// The table that knows no address.
    pub fn empty() -> RangeTable<V> {
        RangeTable { values: Vec::new(), v4: Ipv4Family::everything_unknown(), v6: Ipv6Family::everything_unknown() }
    }

    pub(crate) fn from_parts(values: Vec<V>, v4: Ipv4Family, v6: Ipv6Family) -> RangeTable<V> {
        RangeTable { values, v4, v6 }
    }

    /// The value of `address`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as
    /// the IPv4 address they carry. Allocates nothing and takes no lock.
    #[inline]
    pub fn get(&self, address: IpAddr) -> Option<V> {
        match address {
            IpAddr::V4(v4) => self.get_v4(v4),
            IpAddr::V6(v6) => self.get_v6(v6),
        }
    }

    /// The value of an IPv4 address.
    #[inline(always)]
    pub fn get_v4(&self, address: Ipv4Addr) -> Option<V> {
        self.value(self.v4.slot(u32::from(address)))
    }

    /// The value of an IPv6 address; an IPv4-mapped one is looked up as its IPv4 address.
    #[inline]
    pub fn get_v6(&self, address: Ipv6Addr) -> Option<V> {
        match address.to_ipv4_mapped() {
            Some(v4) => self.get_v4(v4),
            None => self.value(self.v6.slot(u128::from(address))),
        }
    }

    /// The key of an IPv4 address's value: its slot in [`RangeTable::values`], or the number
    /// of values when the address has none.
    #[inline(always)]
    pub(crate) fn key_v4(&self, address: Ipv4Addr) -> usize {
        (self.v4.slot(u32::from(address)) as usize).min(self.values.len())
    }

    /// The key of an IPv6 address's value (see [`RangeTable::key_v4`]).
    #[inline]
    pub(crate) fn key_v6(&self, address: Ipv6Addr) -> usize {
        match address.to_ipv4_mapped() {
            Some(v4) => self.key_v4(v4),
            None => (self.v6.slot(u128::from(address)) as usize).min(self.values.len()),
        }
    }

    #[inline]
    fn value(&self, slot: Slot) -> Option<V> {
        self.values.get(slot as usize).copied()
    }

    /// How many IPv4 and IPv6 ranges have a value (after merging).
    pub fn range_counts(&self) -> (usize, usize) {
        // Entries are merged, so each one with a value is one range.
        (self.v4.ranges, self.v6.ranges)
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
        let v4 = ranges_of(self.v4.entries(), u128::from(u32::MAX)).map(|(first, last, slot)| {
            (IpAddr::V4(Ipv4Addr::from(first as u32)), IpAddr::V4(Ipv4Addr::from(last as u32)), slot)
        });
        let v6 = ranges_of(self.v6.entries(), u128::MAX)
            .map(|(first, last, slot)| (IpAddr::V6(Ipv6Addr::from(first)), IpAddr::V6(Ipv6Addr::from(last)), slot));
        v4.chain(v6).filter_map(|(first, last, slot)| Some((first, last, *self.values.get(slot as usize)?)))
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
    slots_by_value: std::collections::HashMap<V, Slot>,
    v4: Vec<Pending<u32>>,
    v6: Vec<Pending<u128>>,
}

/// A range as inserted, in its family's own width: 16 bytes for IPv4.
#[derive(Clone, Copy, Debug)]
struct Pending<K> {
    layer: u32,
    slot: Slot,
    first: K,
    last: K,
}

impl<K: Key> Pending<K> {
    fn width(&self) -> u128 {
        self.last.to_u128() - self.first.to_u128()
    }
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
        let invalid = RangeError::Invalid { start, end };
        let (start, end) = (unmap(start), unmap(end));
        if !matches!((start, end), (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))) || start > end {
            return Err(invalid);
        }
        let slot = self.slot(value)?;
        match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => self.v4.push(Pending { layer, slot, first: s.into(), last: e.into() }),
            (IpAddr::V6(s), IpAddr::V6(e)) => self.v6.push(Pending { layer, slot, first: s.into(), last: e.into() }),
            _ => return Err(invalid),
        }
        Ok(())
    }

    /// Adds every range of `table` as input number `layer`: an overlay can go above (or
    /// below) a table already built, such as the embedded one, without re-encoding it.
    ///
    /// ```
    /// use geofence_core::db::{parse_range_csv, TableBuilder};
    /// let base = parse_range_csv("192.0.2.0,192.0.2.255,GB\n")?;
    /// let mut builder = TableBuilder::new();
    /// builder.insert_table(0, &base)?;
    /// builder.insert(1, "192.0.2.128".parse()?, "192.0.2.255".parse()?, "NZ".parse()?)?;
    /// let layered = builder.build();
    /// assert_eq!(layered.get("192.0.2.1".parse()?), Some("GB".parse()?));
    /// assert_eq!(layered.get("192.0.2.200".parse()?), Some("NZ".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert_table(&mut self, layer: u32, table: &RangeTable<V>) -> Result<(), RangeError> {
        table.ranges().try_for_each(|(first, last, value)| self.insert(layer, first, last, value))
    }

    fn slot(&mut self, value: V) -> Result<Slot, RangeError> {
        if let Some(slot) = self.slots_by_value.get(&value) {
            return Ok(*slot);
        }
        let slot = Slot::try_from(self.values.len())
            .ok()
            .filter(|s| (*s as usize) < MAX_VALUES)
            .ok_or(RangeError::TooManyValues)?;
        self.values.push(value);
        self.slots_by_value.insert(value, slot);
        Ok(slot)
    }

    /// Resolves overlaps, merges neighbours and builds the table.
    pub fn build(self) -> RangeTable<V> {
        let (v4_starts, v4_slots) = resolve(self.v4);
        let v4 = Ipv4Family::new(&v4_starts, &v4_slots);
        drop((v4_starts, v4_slots));
        let (v6_starts, v6_slots) = resolve(self.v6);
        RangeTable { values: self.values, v4, v6: Ipv6Family::new(v6_starts, v6_slots) }
    }
}

fn unmap(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The entries of a family's ranges: sorted starts from 0 and their slots, neighbours merged.
/// Ranges that do not overlap (one database, as most are) are listed as they are; overlapping
/// ones are painted in priority order first.
fn resolve<K: Key>(mut ranges: Vec<Pending<K>>) -> (Vec<K>, Vec<Slot>) {
    ranges.sort_unstable_by_key(|range| range.first);
    if ranges.windows(2).all(|pair| pair[0].last < pair[1].first) {
        return boundaries(ranges.into_iter().map(|range| (range.first, range.last, range.slot)));
    }
    boundaries(paint(ranges))
}

/// Lays ranges onto the address line in priority order (earlier layers first, and within a
/// layer wider ranges first), each overwriting what it covers: start → (last, slot), disjoint.
fn paint<K: Key>(mut ranges: Vec<Pending<K>>) -> impl Iterator<Item = (K, K, Slot)> {
    ranges.sort_by(|a, b| a.layer.cmp(&b.layer).then(b.width().cmp(&a.width())));
    let mut painted: BTreeMap<K, (K, Slot)> = BTreeMap::new();
    for range in ranges {
        overwrite(&mut painted, range.first, range.last, range.slot);
    }
    painted.into_iter().map(|(start, (last, slot))| (start, last, slot))
}

/// The entries of disjoint ranges given in address order.
fn boundaries<K: Key>(ranges: impl Iterator<Item = (K, K, Slot)>) -> (Vec<K>, Vec<Slot>) {
    let mut starts = vec![K::default()];
    let mut slots = vec![NONE];
    let mut push = |start: K, slot: Slot| {
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
    for (start, last, slot) in ranges {
        push(start, slot);
        if last < K::MAX {
            push(last.next(), NONE);
        }
    }
    (starts, slots)
}

fn overwrite<K: Key>(painted: &mut BTreeMap<K, (K, Slot)>, first: K, last: K, slot: Slot) {
    // A range starting before `first` that reaches into it is cut; its tail past `last` kept.
    if let Some((&start, &(end, old))) = painted.range(..first).next_back() {
        if end >= first {
            painted.insert(start, (first.previous(), old));
            if end > last {
                painted.insert(last.next(), (end, old));
            }
        }
    }
    let covered: Vec<K> = painted.range(first..=last).map(|(start, _)| *start).collect();
    for start in covered {
        if let Some((end, old)) = painted.remove(&start) {
            if end > last {
                painted.insert(last.next(), (end, old));
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

    /// IPv6 ranges around a few /48 boundaries, so some /48s hold finer boundaries (the fine
    /// table) and some do not, some in another /16 and some across whole /16s:
    /// (layer, first, last, value).
    fn ipv6_ranges() -> impl Strategy<Value = Vec<(u32, u128, u128, u8)>> {
        let block = prop_oneof![Just(0u128), Just(1), Just(2), Just(5), Just(u128::from(u32::MAX))];
        let offset = prop_oneof![Just(0u128), any::<u128>().prop_map(|o| o % (1 << 80)), Just((1u128 << 80) - 1)];
        let span =
            prop_oneof![Just(0u128), 1u128..1000, Just(1u128 << 80), Just((1u128 << 81) + 7), Just(1u128 << 112)];
        proptest::collection::vec((0u32..2, block, offset, span, 0u8..3), 0..12).prop_map(|raw| {
            let base = 0x2001_0db8u128 << 96;
            raw.into_iter()
                .map(|(layer, block, offset, span, value)| {
                    let first = base + (block << 80) + offset;
                    (layer, first, first.saturating_add(span), value)
                })
                .collect()
        })
    }

    /// Many /48 ranges in one /32, so its /16's tree has several levels, and a few in other
    /// /16s, with runs of empty /16s between them.
    #[test]
    fn a_deep_ipv6_tree_answers_every_boundary() {
        let mut builder = TableBuilder::new();
        let address = |slash48: u128, offset: u128| {
            IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) + (slash48 << 80) + offset))
        };
        let last = (1u128 << 80) - 1;
        let value = |n: u128| (n % 3) as u8;
        // Every even /48 has a value (neighbours differ, so nothing merges); odd ones have none.
        for n in (0..20_000u128).step_by(2) {
            builder.insert(0, address(n, 0), address(n, last), value(n)).unwrap();
        }
        let far = |text: &str| text.parse::<IpAddr>().unwrap();
        builder.insert(0, far("2400:cb00::"), far("2400:cb00:ffff:ffff:ffff:ffff:ffff:ffff"), 7).unwrap();
        builder.insert(0, far("2c0f:ffff:ffff::"), far("2c0f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 8).unwrap();
        let table = builder.build();
        for n in (0..20_000u128).step_by(2) {
            assert_eq!(table.get(address(n, 0)), Some(value(n)), "{n}");
            assert_eq!(table.get(address(n, last)), Some(value(n)), "{n}");
            assert_eq!(table.get(address(n + 1, 0)), None, "{n}");
        }
        let slash48 = |n: u128| address(n, 0);
        assert_eq!(table.get(slash48(20_000)), None);
        assert_eq!(table.get(far("2400:cb00::1")), Some(7));
        assert_eq!(table.get(far("2400:cb01::")), None);
        assert_eq!(table.get(far("2c0f:ffff:fffe:ffff::")), None);
        assert_eq!(table.get(far("2c0f:ffff:ffff::1")), Some(8));
        assert_eq!(table.get(far("ffff::")), None);
        assert_eq!(table.range_counts().1, 10_002);
        let rebuilt = Ipv6Family::new(
            table.v6.entries().iter().map(|(s, _)| *s).collect(),
            table.v6.entries().iter().map(|(_, v)| *v).collect(),
        );
        assert_eq!(rebuilt, table.v6);
    }

    /// As many distinct values as an ASN table has (about 91,000 in real data), more than 16
    /// bits can number, in both families: every one answered, and given back by `ranges`.
    #[test]
    fn a_table_holds_more_distinct_values_than_sixteen_bits_can_number() {
        const VALUES: u32 = 100_000;
        let mut builder = TableBuilder::new();
        let v4_first = |n: u32| (11 << 24) + (n << 8);
        let v6_first = |n: u32| (0x2001_0db8u128 << 96) + (u128::from(n) << 80);
        let (v4, v6) = (|n| IpAddr::V4(Ipv4Addr::from(v4_first(n))), |n| IpAddr::V6(Ipv6Addr::from(v6_first(n))));
        let v4_last = |n| IpAddr::V4(Ipv4Addr::from(v4_first(n) + 255));
        let v6_last = |n| IpAddr::V6(Ipv6Addr::from(v6_first(n + 1) - 1));
        for n in 0..VALUES {
            builder.insert(0, v4(n), v4_last(n), n).unwrap();
            builder.insert(0, v6(n), v6_last(n), n).unwrap();
        }
        // A whole /16 with a late value: answered by its index entry alone.
        builder.insert(0, ip("100.64.0.0"), ip("100.64.255.255"), VALUES).unwrap();
        let table = builder.build();
        assert_eq!(table.get(ip("100.64.1.2")), Some(VALUES));
        assert_eq!(table.values().len(), VALUES as usize + 1);
        for n in 0..VALUES {
            assert_eq!((table.get(v4(n)), table.get(v4_last(n))), (Some(n), Some(n)), "{}", v4(n));
            assert_eq!((table.get(v6(n)), table.get(v6_last(n))), (Some(n), Some(n)), "{}", v6(n));
        }
        assert_eq!(table.get(v4(VALUES)), None);
        assert_eq!(table.ranges().count(), 2 * VALUES as usize + 1);
        assert!(table.ranges().all(|(first, _, value)| first == v4(value) || first == v6(value) || value == VALUES));
    }

    /// The /16 (10.0.0.0/16) the IPv4 property test crowds ranges into.
    const CROWDED: std::ops::Range<u32> = 0x0A00_0000..0x0A01_0000;

    #[test]
    fn the_last_slash48_of_a_slash16_is_answered_by_its_leaf_not_the_padding() {
        // The /16's tree holds two entries in a leaf of eight; the highest key (all ones) must
        // not count the padding behind them.
        let mut builder = TableBuilder::new();
        builder.insert(0, ip("2001:db8::"), ip("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 'b').unwrap();
        let table = builder.build();
        assert_eq!(table.get(ip("2001:ffff:ffff::")), Some('b'));
        assert_eq!(table.get(ip("2001:ffff:ffff:ffff::1")), Some('b'));
        assert_eq!(table.get(ip("2001:db7:ffff::")), None);
    }

    #[test]
    fn a_crowded_ipv4_slash16_answers_every_boundary() {
        // 2,000 ranges of 16 addresses with gaps between, in one /16, then one range across
        // three /16s that starts and ends inside them.
        let mut builder = TableBuilder::new();
        let base = u32::from(Ipv4Addr::new(198, 51, 0, 0));
        let ranges: Vec<(u32, u32, char)> = (0..2_000u32)
            .map(|n| (base + n * 32, base + n * 32 + 15, ['a', 'b', 'c'][n as usize % 3]))
            .chain([(base + 0x1_8000, base + 0x3_7FFF, 'd')])
            .collect();
        for (first, last, value) in &ranges {
            builder.insert(0, IpAddr::V4(Ipv4Addr::from(*first)), IpAddr::V4(Ipv4Addr::from(*last)), *value).unwrap();
        }
        let table = builder.build();
        for (first, last, value) in &ranges {
            let at = |address: u32| table.get(IpAddr::V4(Ipv4Addr::from(address)));
            assert_eq!((at(*first), at(*last)), (Some(*value), Some(*value)), "{}", Ipv4Addr::from(*first));
            assert_eq!((at(first - 1), at(last + 1)), (None, None), "{}", Ipv4Addr::from(*first));
        }
        let listed: Vec<(IpAddr, IpAddr, char)> = table.ranges().collect();
        assert_eq!(listed.len(), ranges.len());
        assert!(listed.iter().zip(&ranges).all(|(l, r)| l.0 == IpAddr::V4(Ipv4Addr::from(r.0)) && l.2 == r.2));
    }

    proptest! {
        #[test]
        fn ipv6_lookups_agree_with_a_linear_scan(ranges in ipv6_ranges(), probes in proptest::collection::vec(prop_oneof![0u128..(8u128 << 80), 0u128..(1u128 << 113)], 30)) {
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
            // Half the starts crowd into one /16, so its run is longer than a window and gets
            // halved; the others spread over the whole space.
            raw in proptest::collection::vec((0u32..3, prop_oneof![any::<u32>(), CROWDED], 0u32..5000, 0u8..4), 0..60),
            probes in proptest::collection::vec(prop_oneof![any::<u32>(), CROWDED], 50),
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
