//! Configs come from hurried admins: any text gives a config or a located error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match geofence_core::Config::parse(text) {
        Ok(config) => {
            let _ = config.policy.build(std::sync::Arc::new(geofence_core::db::CountryTable::empty()));
        }
        Err(error) => assert!(error.line >= 1 && error.column >= 1),
    }
});
