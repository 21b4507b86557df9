//! geofence: GeoIP packet filtering for Linux netfilter queues.
//!
//! This facade re-exports [`geofence_core`], the pure decision engine, so that examples and
//! benchmarks live at the top of the repository. Embedders may depend on `geofence-core` directly.
//!
//! ```
//! use std::sync::Arc;
//! use geofence::{db::parse_range_csv, sample, Config, Verdict};
//! let config = Config::parse("default = \"drop\"\n[[rule]]\ncountry = [\"GB\"]\naction = \"accept\"\n")?;
//! let policy = config.policy.build(Arc::new(parse_range_csv("192.0.2.0,192.0.2.255,GB\n")?))?;
//! let packet = sample::sip_options("192.0.2.7".parse()?, "198.51.100.1".parse()?);
//! assert_eq!(policy.decide(&packet), Verdict::Accept);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub use geofence_core::*;

/// The README's Rust examples, run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
