//! Feed files come from downloads: any bytes read as a feed give networks or an error, and the
//! networks make a list that holds each of them.
#![no_main]

use geofence_core::{feed, PrefixList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(read) = feed::parse(bytes) {
        let list: PrefixList = read.networks.iter().copied().collect();
        for network in read.networks.iter().take(64) {
            assert!(list.contains(network.network_address()));
        }
    }
});
