//! geofence-core: decides each packet by the country and network it comes from.
//!
//! Bytes in, verdict out: [`Policy::decide`] takes a raw IPv4 or IPv6 packet as a netfilter queue
//! delivers it and returns a [`Verdict`]. It does no I/O, allocates nothing and takes no lock, so
//! any firewall can call it per packet from as many threads as it likes.
//!
//! ```
//! use std::sync::Arc;
//! use geofence_core::{db::parse_range_csv, sample, Config, Protocol, Verdict};
//!
//! // The country database and the config are text the caller has read from files.
//! let db = parse_range_csv("192.0.2.0,192.0.2.255,GB\n198.51.100.0,198.51.100.255,CN\n")?;
//! let config = Config::parse(r#"
//!     default = "accept"
//!     [[rule]]
//!     name = "sip-allowed"
//!     protocol = "udp"
//!     ports = [5060]
//!     country = ["GB", "US"]
//!     action = "accept"
//!     [[rule]]
//!     name = "sip-others"
//!     protocol = "udp"
//!     ports = [5060]
//!     action = "drop"
//! "#)?;
//! let policy = config.policy.build(Arc::new(db))?;
//!
//! let server = "192.0.2.1".parse()?;
//! let from_gb = sample::sip_options("192.0.2.10".parse()?, server);
//! let from_cn = sample::sip_options("198.51.100.10".parse()?, server);
//! assert_eq!(policy.decide(&from_gb), Verdict::Accept);
//! assert_eq!(policy.decide(&from_cn), Verdict::Drop);
//!
//! // The reasons: rule `sip-allowed` asked the country, so the decision looked it up.
//! let why = policy.explain(&from_cn);
//! assert_eq!((why.rule, why.country.to_string()), (Some("sip-others"), "CN".into()));
//!
//! // An embedder with no packet at hand decides on the flow alone.
//! assert_eq!(policy.decide_flow("192.0.2.10".parse()?, Protocol::UDP, Some(5060)), Verdict::Accept);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The flow is one way: `&[u8]` → [`packet::parse`] → [`PacketMeta`] → [`Policy`] (with a
//! [`CountryDb`] and [`PrefixList`]s) → [`Verdict`].
#![forbid(unsafe_code)]

pub mod asn;
pub mod ban;
pub mod behaviour;
mod condition;
pub mod config;
pub mod country;
pub mod db;
pub mod feed;
pub mod packet;
pub mod policy;
pub mod prefix;
mod rule;
pub mod sample;
pub mod sip;

pub use asn::{Asn, AsnTable};
pub use condition::port::PortRange;
pub use condition::sip::{built_in_scanners, Kind as SipKind};
pub use condition::Facts;
pub use config::{Config, ConfigError, ConfigWarning};
pub use country::{Continent, CountryCode, CountrySet};
pub use db::CountryDb;
pub use packet::{PacketError, PacketMeta, Protocol, Transport};
pub use policy::{Decision, Looked, Policy, PolicyBuilder, PolicyError};
pub use prefix::{IpNetwork, PrefixList};
pub use rule::{Rule, Verdict};

/// The crate README's example, run as a doc test so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
