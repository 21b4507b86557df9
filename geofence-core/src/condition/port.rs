//! `ports = [5060, "10000-20000"]`: the destination port must be in one of these inclusive
//! ranges. Packets without ports (ICMP, later fragments) never pass a set port condition.

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{write_joined, Condition, Conditions, Facts};
use crate::config::{ConfigError, Locator};

/// An inclusive range of destination ports; a single port is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// The lowest port in the range.
    pub first: u16,
    /// The highest port in the range.
    pub last: u16,
}

impl PortRange {
    /// The range holding just `port`.
    pub fn single(port: u16) -> PortRange {
        PortRange { first: port, last: port }
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// The port ranges a rule admits; empty: any packet, with ports or without.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PortCondition {
    pub(crate) ranges: Vec<PortRange>,
}

/// One entry of the config value: a number or a "first-last" range.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Raw {
    Number(i64),
    Text(String),
}

impl PortCondition {
    /// Reads the `ports` key.
    pub(crate) fn from_config(at: &Locator, raw: &[Spanned<Raw>]) -> Result<PortCondition, ConfigError> {
        let ranges = raw.iter().map(|spec| port_range(at, spec)).collect::<Result<_, _>>()?;
        Ok(PortCondition { ranges })
    }
}

fn port_range(at: &Locator, spec: &Spanned<Raw>) -> Result<PortRange, ConfigError> {
    let bad = |written: String| {
        at.at(spec, format!("`{written}` is not a port or port range"), Some("write 5060 or \"10000-20000\"".into()))
    };
    let port = |text: &str| text.trim().parse::<u16>().map_err(|_| bad(text.to_owned()));
    match spec.get_ref() {
        Raw::Number(n) => u16::try_from(*n).map(PortRange::single).map_err(|_| bad(n.to_string())),
        Raw::Text(text) => {
            let range = match text.split_once('-') {
                Some((first, last)) => PortRange { first: port(first)?, last: port(last)? },
                None => PortRange::single(port(text)?),
            };
            if range.first > range.last {
                return Err(bad(text.clone()));
            }
            Ok(range)
        }
    }
}

impl Condition for PortCondition {
    fn is_any(&self) -> bool {
        self.ranges.is_empty()
    }

    fn holds(&self, facts: &dyn Facts) -> bool {
        self.is_any() || facts.destination_port().is_some_and(|port| self.ranges.iter().any(|r| r.contains(port)))
    }

    fn never_holds(&self, conditions: &Conditions) -> Option<String> {
        let protocols = &conditions.protocol.protocols;
        let no_ports = !protocols.is_empty() && !protocols.iter().any(|p| p.has_ports());
        (!self.is_any() && no_ports).then(|| "it names ports, but none of its protocols carries ports".into())
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("port ")?;
        write_joined(f, &self.ranges, ",")
    }
}

/// Destination ports sorted into classes: ports that no range of any rule tells apart share a
/// class, so one table read settles every port condition of a packet.
pub(crate) struct PortClasses {
    /// The class of each port.
    class: Box<[u16]>,
    /// How many classes there are.
    count: usize,
}

impl PortClasses {
    pub(crate) fn new<'a>(conditions: impl Iterator<Item = &'a PortCondition>) -> PortClasses {
        let mut starts: Vec<u32> = vec![0];
        for range in conditions.flat_map(|condition| &condition.ranges) {
            starts.extend([u32::from(range.first), u32::from(range.last) + 1]);
        }
        starts.sort_unstable();
        starts.dedup();
        starts.retain(|start| *start <= u32::from(u16::MAX));
        let mut class = vec![0u16; 1 << 16].into_boxed_slice();
        let ends = starts.iter().skip(1).copied().chain([1 << 16]);
        // At most 65,536 classes (one a port), so each number fits a u16.
        for ((number, start), end) in starts.iter().enumerate().zip(ends) {
            class[*start as usize..end as usize].fill(number as u16);
        }
        PortClasses { class, count: starts.len() }
    }

    #[inline(always)]
    pub(crate) fn of(&self, port: u16) -> usize {
        self.class.get(usize::from(port)).map_or(0, |class| usize::from(*class))
    }
}

/// For a chunk of rules: the rules a packet without ports passes, and by port class the rules
/// that admit its ports.
pub(crate) struct PortMask {
    any_port: u64,
    by_class: Box<[u64]>,
}

impl PortMask {
    pub(crate) fn new<'a>(
        conditions: impl Iterator<Item = (&'a PortCondition, u64)>,
        classes: &PortClasses,
    ) -> PortMask {
        let mut mask = PortMask { any_port: 0, by_class: vec![0; classes.count].into_boxed_slice() };
        for (condition, bit) in conditions {
            if condition.is_any() {
                mask.any_port |= bit;
                mask.by_class.iter_mut().for_each(|rules| *rules |= bit);
            }
            // A range's ends are class boundaries: it covers whole classes, a run of them.
            for range in &condition.ranges {
                let run = classes.of(range.first)..=classes.of(range.last);
                mask.by_class.get_mut(run).into_iter().flatten().for_each(|rules| *rules |= bit);
            }
        }
        mask
    }

    /// The rules that admit a packet whose destination port is of `class` (`None`: no ports).
    #[inline(always)]
    pub(crate) fn admitted(&self, class: Option<usize>) -> u64 {
        match class {
            Some(class) => self.by_class.get(class).copied().unwrap_or(0),
            None => self.any_port,
        }
    }
}
