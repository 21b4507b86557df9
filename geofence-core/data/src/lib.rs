//! The data geofence-core embeds behind its `embedded-db` feature, kept in a crate of its own
//! because its licence is not the code's: DB-IP IP to Country Lite, licensed CC BY 4.0.
//!
//! **IP Geolocation by DB-IP** (<https://db-ip.com>): whoever shows results from this data must
//! show that attribution ([`ATTRIBUTION`]).
//!
//! ```
//! assert!(geofence_data::COUNTRY_LITE.starts_with(b"\x89GFDB"));
//! assert!(geofence_data::ATTRIBUTION.contains("DB-IP"));
//! ```
#![no_std]
#![forbid(unsafe_code)]

/// DB-IP IP to Country Lite, compiled into geofence's own table format (see the crate's
/// README for the edition and how it was made); geofence-core's `db::embedded` decodes it.
pub static COUNTRY_LITE: &[u8] = include_bytes!("../dbip-country-lite.gfdb");

/// The attribution that must accompany results from [`COUNTRY_LITE`].
pub const ATTRIBUTION: &str = "IP Geolocation by DB-IP (https://db-ip.com), licensed CC BY 4.0";
