//! The data geofence-core embeds behind its `embedded-db` and `embedded-asn` features, kept in
//! a crate of its own because its licence is not the code's: DB-IP IP to Country Lite, and
//! ip-location-db's IP to ASN data (RouteViews, NRO, DB-IP), each licensed CC BY 4.0.
//!
//! **IP Geolocation by DB-IP** (<https://db-ip.com>): whoever shows results from the country
//! data must show that attribution ([`ATTRIBUTION`]); results from the ASN data carry
//! [`ASN_ATTRIBUTION`].
//!
//! ```
//! assert!(geofence_data::COUNTRY_LITE.starts_with(b"\x89GFDB"));
//! assert!(geofence_data::ATTRIBUTION.contains("DB-IP"));
//! assert!(geofence_data::ASN_LITE.starts_with(b"\x89GFDB"));
//! assert!(geofence_data::ASN_ATTRIBUTION.contains("RouteViews"));
//! ```
#![no_std]
#![forbid(unsafe_code)]

/// DB-IP IP to Country Lite, compiled into geofence's own table format (see the crate's
/// README for the edition and how it was made); geofence-core's `db::embedded` decodes it.
pub static COUNTRY_LITE: &[u8] = include_bytes!("../dbip-country-lite.gfdb");

/// The attribution that must accompany results from [`COUNTRY_LITE`].
pub const ATTRIBUTION: &str = "IP Geolocation by DB-IP (https://db-ip.com), licensed CC BY 4.0";

/// ip-location-db's IP to ASN data (RouteViews, the five RIRs' statistics via the NRO, and DB-IP
/// IP to ASN Lite), with the organisation names, compiled into geofence's table format of the
/// ASN kind; geofence-core's `db::embedded_asn` decodes it.
pub static ASN_LITE: &[u8] = include_bytes!("../ip-location-db-asn.gfdb");

/// The attribution that must accompany results from [`ASN_LITE`].
pub const ASN_ATTRIBUTION: &str = "IP to ASN data by RouteViews (https://www.routeviews.org), the NRO \
     (https://www.nro.net) and DB-IP (https://db-ip.com), via ip-location-db, licensed CC BY 4.0";
