//! `protocol = "udp"` or `["udp", "tcp"]`: the transport protocol, after any IPv6 extension
//! headers, must be one of these.

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{write_joined, Condition, Conditions, Facts};
use crate::config::{ConfigError, Locator};
use crate::packet::Protocol;

/// The protocols a rule admits; empty: any.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProtocolCondition {
    pub(crate) protocols: Vec<Protocol>,
}

/// The config value: one name or a list of names.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Raw {
    One(String),
    Many(Vec<String>),
}

impl ProtocolCondition {
    /// Reads the `protocol` key. Untagged values lose the spans of their parts, so an error
    /// points at the whole value.
    pub(crate) fn from_config(at: &Locator, raw: Option<&Spanned<Raw>>) -> Result<ProtocolCondition, ConfigError> {
        let Some(spec) = raw else { return Ok(ProtocolCondition::default()) };
        let names = match spec.get_ref() {
            Raw::One(name) => std::slice::from_ref(name),
            Raw::Many(names) => names.as_slice(),
        };
        let protocols = names
            .iter()
            .map(|name| {
                Protocol::from_name(name).ok_or_else(|| {
                    at.at(
                        spec,
                        format!("unknown protocol `{name}`"),
                        Some("expected one of tcp, udp, udplite, sctp, icmp, icmpv6, esp".into()),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ProtocolCondition { protocols })
    }
}

impl Condition for ProtocolCondition {
    fn is_any(&self) -> bool {
        self.protocols.is_empty()
    }

    fn holds(&self, facts: &dyn Facts) -> bool {
        self.is_any() || self.protocols.contains(&facts.protocol())
    }

    fn never_holds(&self, _: &Conditions) -> Option<String> {
        None
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("protocol ")?;
        write_joined(f, &self.protocols, "|")
    }
}

/// For a chunk of rules: by protocol number, the rules that admit it.
pub(crate) struct ProtocolMask {
    by_protocol: Box<[u64; 256]>,
}

impl ProtocolMask {
    pub(crate) fn new<'a>(conditions: impl Iterator<Item = (&'a ProtocolCondition, u64)>) -> ProtocolMask {
        let mut by_protocol = Box::new([0; 256]);
        for (condition, bit) in conditions {
            if condition.is_any() {
                by_protocol.iter_mut().for_each(|rules| *rules |= bit);
            }
            for protocol in &condition.protocols {
                by_protocol[usize::from(protocol.0)] |= bit;
            }
        }
        ProtocolMask { by_protocol }
    }

    #[inline(always)]
    pub(crate) fn admitted(&self, protocol: Protocol) -> u64 {
        self.by_protocol[usize::from(protocol.0)]
    }
}
