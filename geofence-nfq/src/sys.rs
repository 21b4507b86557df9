//! The raw bindings bindgen generates from wrapper.h: no opinions, no safety.
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, missing_docs)]
#![allow(clippy::all)]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

#[cfg(test)]
mod tests {
    /// docs.rs builds from this copy (see build.rs); regenerate it with
    /// `cp target/debug/build/geofence-nfq-*/out/bindings.rs geofence-nfq/docs-rs-bindings.rs`.
    #[test]
    fn the_docs_rs_copy_of_the_bindings_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/bindings.rs"));
        assert!(generated == include_str!("../docs-rs-bindings.rs"), "docs-rs-bindings.rs is stale");
    }
}
