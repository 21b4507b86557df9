//! Building a table holds memory in proportion to its input, and little of it: measured by a
//! global allocator that keeps the peak of the bytes held, over a million disjoint ranges (the
//! shape of every single database) and over the same ranges layered under an overlay.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use geofence_core::db::TableBuilder;

struct Peak;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counts are added.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let held = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(held, Ordering::Relaxed);
        // SAFETY: the caller's layout goes to the system allocator as it came.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `pointer` came from `alloc` above with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

const RANGES: u32 = 1_000_000;

/// The peak bytes held above what was held before, while `work` ran.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = work();
    (result, PEAK.load(Ordering::Relaxed) - before)
}

fn range(n: u32) -> (IpAddr, IpAddr) {
    let first = (1 << 24) + n * 256;
    (IpAddr::V4(Ipv4Addr::from(first)), IpAddr::V4(Ipv4Addr::from(first + 255)))
}

/// A builder holding a million disjoint ranges of seven values.
fn a_million_ranges() -> TableBuilder<u8> {
    let mut builder = TableBuilder::new();
    for n in 0..RANGES {
        let (first, last) = range(n);
        builder.insert(0, first, last, (n % 7) as u8).unwrap();
    }
    builder
}

#[test]
fn a_single_database_is_built_in_little_more_than_its_entries() {
    let (table, peak) = peak_of(|| a_million_ranges().build());
    assert_eq!(table.range_counts(), (RANGES as usize, 0));
    let per_range = peak / RANGES as usize;
    // A pending range takes 16 bytes (twice that while its vector grows), its two entries 16,
    // the table 8: 50 in all. Painting every build through a map of 128-bit starts took 284.
    const BOUND: usize = 64;
    assert!(per_range <= BOUND, "{per_range} bytes a range at the peak");
}

#[test]
fn an_overlay_over_a_database_is_painted_within_bounds() {
    let (table, peak) = peak_of(|| {
        let mut builder = a_million_ranges();
        let (first, _) = range(10);
        let (_, last) = range(20);
        builder.insert(1, first, last, 9).unwrap();
        builder.build()
    });
    assert_eq!(table.get(range(15).0), Some(9));
    let per_range = peak / RANGES as usize;
    // Overlapping ranges are painted through a map of their own width: 84 bytes a range (284
    // before).
    const BOUND: usize = 128;
    assert!(per_range <= BOUND, "{per_range} bytes a range at the peak");
}
