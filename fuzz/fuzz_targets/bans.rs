//! The bans' state file is read back after a crash, a full disk or an admin's edit: any text
//! reads as records or as an error at its line, the records write back to a text that reads as
//! themselves, and a book restores them within its bound.
#![no_main]

use geofence_core::ban::{read_records, write_records, BanBook, BanLimits};
use libfuzzer_sys::fuzz_target;

const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let Ok(records) = read_records(&text, NOW_MS) else { return };
    let again = read_records(&write_records(records.iter().copied(), NOW_MS), NOW_MS);
    assert_eq!(again.as_ref(), Ok(&records));
    let mut book = BanBook::new(BanLimits { max_entries: 16, max_duration_ms: 86_400_000 }, 1);
    for record in records {
        book.restore(record, 0);
    }
    assert!(book.len() <= 16);
});
