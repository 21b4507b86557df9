//! geofence's own compiled file: anything that decodes re-encodes to the same bytes, so no
//! damaged file can load as something else.
#![no_main]

use geofence_core::db::{decode_compiled, encode_compiled};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((table, provenance)) = decode_compiled(bytes) {
        assert_eq!(encode_compiled(&table, &provenance), bytes);
    }
});
