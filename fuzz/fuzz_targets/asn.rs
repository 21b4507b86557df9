//! ASN files come from downloads: any bytes read as ASN data give a table or an error.
#![no_main]

use geofence_core::db::load_asn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(table) = load_asn(bytes) {
        // A table that was built answers every range it lists, with a known AS.
        for (first, last, asn) in table.ranges().take(64) {
            assert_eq!((table.lookup(first), table.lookup(last)), (Some(asn), Some(asn)));
        }
    }
});
