//! GeoLite2 Country CSV: a Locations file and a Blocks file, both arbitrary.
#![no_main]

use arbitrary::Arbitrary;
use geofence_core::db::{read_as, Format};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Files<'a> {
    locations: &'a [u8],
    blocks: &'a [u8],
}

fuzz_target!(|files: Files| {
    let _ = read_as(Format::GeoLite2Blocks, files.blocks, Some(files.locations));
});
