//! Databases come from downloads: any bytes read as the Rir format give a table or an error.
#![no_main]

use geofence_core::db::{read_as, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(table) = read_as(Format::Rir, bytes, None) {
        // A table that was built answers every lookup.
        for (first, last, _) in table.ranges().take(64) {
            assert!(table.get(first).is_some() && table.get(last).is_some());
        }
    }
});
