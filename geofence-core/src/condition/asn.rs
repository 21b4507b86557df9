//! `asn = [14061, "AS16276", "hosting", "unknown"]` admits, `not_asn` excludes: the source's
//! autonomous system (or "unknown", when the ASN database has none for it) must be in the first
//! set and not in the second. A name that is not a number is a group of `[asn_groups]`.
//! `as_organisation = ["DigitalOcean"]` admits the systems whose organisation contains a pattern
//! (ignoring case): resolved to AS numbers when the policy is built with its ASN database, never
//! matched per packet. A lookup condition: the AS is looked up only when a rule that asks it
//! could decide the packet.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{write_joined, Condition, Conditions, Facts, LookupCondition};
use crate::asn::{Asn, AsnError};
use crate::config::{ConfigError, Locator};

/// A set of AS numbers, and whether "unknown" is in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsnSet {
    /// Sorted, without repeats.
    asns: Vec<Asn>,
    unknown: bool,
}

impl AsnSet {
    /// The set of these numbers, with "unknown" when `unknown`.
    pub fn new(asns: impl IntoIterator<Item = Asn>, unknown: bool) -> AsnSet {
        let mut asns: Vec<Asn> = asns.into_iter().collect();
        asns.sort_unstable();
        asns.dedup();
        AsnSet { asns, unknown }
    }

    /// Whether the answer of a lookup (`None`: unknown) is in the set.
    pub fn contains(&self, asn: Option<Asn>) -> bool {
        match asn {
            Some(asn) => self.asns.binary_search(&asn).is_ok(),
            None => self.unknown,
        }
    }

    fn is_empty(&self) -> bool {
        self.asns.is_empty() && !self.unknown
    }

    fn is_subset(&self, other: &AsnSet) -> bool {
        (!self.unknown || other.unknown) && self.asns.iter().all(|asn| other.contains(Some(*asn)))
    }
}

/// A rule's AS sets; both `None`: any AS.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct AsnCondition {
    /// The AS (or "unknown") must be in this set.
    pub(crate) inside: Option<AsnSet>,
    /// The AS (or "unknown") must not be in this set.
    pub(crate) outside: Option<AsnSet>,
    /// Organisation patterns whose systems join `inside` when the policy is built.
    pub(crate) organisations: Vec<String>,
}

/// What an `as_organisation` pattern of a rule resolved to in the ASN database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The rule's name.
    pub rule: String,
    /// The pattern, as written.
    pub pattern: String,
    /// The AS numbers whose organisation contains it; empty: none does.
    pub asns: Vec<Asn>,
}

/// One entry of an `asn`, `not_asn` or `[asn_groups]` list as written: a number, or a text
/// (`AS14061`, a group's name, `unknown`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Raw {
    Number(i64),
    Text(String),
}

/// The `[asn_groups]` table: name → entries.
pub(crate) type Groups = BTreeMap<String, Spanned<Vec<Spanned<Raw>>>>;

impl AsnCondition {
    /// Reads the `asn` and `not_asn` keys, with the groups they may name.
    pub(crate) fn from_config(
        at: &Locator,
        asn: Option<&[Spanned<Raw>]>,
        not_asn: Option<&[Spanned<Raw>]>,
        organisations: Option<&[Spanned<String>]>,
        groups: &Groups,
    ) -> Result<AsnCondition, ConfigError> {
        let set = |entries: Option<&[Spanned<Raw>]>| entries.map(|entries| asn_set(at, entries, groups)).transpose();
        let mut inside = set(asn)?;
        let mut patterns = Vec::new();
        for pattern in organisations.unwrap_or_default() {
            if pattern.get_ref().trim().is_empty() {
                return Err(at.at(pattern, "an empty organisation pattern would match every system".into(), None));
            }
            patterns.push(pattern.get_ref().trim().to_owned());
        }
        if !patterns.is_empty() {
            // Until the patterns are resolved, the rule admits only the numbers it lists.
            inside.get_or_insert_with(AsnSet::default);
        }
        Ok(AsnCondition { inside, outside: set(not_asn)?, organisations: patterns })
    }

    /// Adds the systems each organisation pattern names in `table` to the admitted set, and
    /// says what each resolved to.
    pub(crate) fn resolve(&mut self, rule: &str, table: &crate::AsnTable) -> Vec<Resolved> {
        let resolved: Vec<Resolved> = self
            .organisations
            .iter()
            .map(|pattern| Resolved {
                rule: rule.to_owned(),
                pattern: pattern.clone(),
                asns: table.matching_organisations(pattern),
            })
            .collect();
        if let Some(inside) = &mut self.inside {
            let found = resolved.iter().flat_map(|r| r.asns.iter().copied());
            *inside = AsnSet::new(inside.asns.iter().copied().chain(found), inside.unknown);
        }
        resolved
    }
}

fn asn_set(at: &Locator, entries: &[Spanned<Raw>], groups: &Groups) -> Result<AsnSet, ConfigError> {
    let mut asns = Vec::new();
    let mut unknown = false;
    for entry in entries {
        match entry.get_ref() {
            Raw::Text(text) if text == "unknown" => unknown = true,
            Raw::Text(name) if groups.contains_key(name) => {
                for member in groups[name].get_ref() {
                    asns.push(number(at, member, None)?);
                }
            }
            _ => asns.push(number(at, entry, Some(groups))?),
        }
    }
    Ok(AsnSet::new(asns, unknown))
}

/// One AS number; `groups`, when a group could have been meant, for the error's help.
fn number(at: &Locator, entry: &Spanned<Raw>, groups: Option<&Groups>) -> Result<Asn, ConfigError> {
    let parsed = match entry.get_ref() {
        Raw::Number(0) => Err(AsnError::Zero.to_string()),
        Raw::Number(n) => u32::try_from(*n).map(Asn).map_err(|_| format!("{n} is not an AS number (1 to 4294967295)")),
        Raw::Text(text) => text.parse::<Asn>().map_err(|e| e.to_string()),
    };
    parsed.map_err(|problem| {
        let help = match (entry.get_ref(), groups) {
            (Raw::Text(name), Some(groups)) if !name.starts_with(|c: char| c.is_ascii_digit()) => {
                Some(if groups.is_empty() {
                    format!("no `[asn_groups]` table defines `{name}`")
                } else {
                    format!("the groups are {}", groups.keys().map(String::as_str).collect::<Vec<_>>().join(", "))
                })
            }
            _ => None,
        };
        at.at(entry, problem, help)
    })
}

impl Condition for AsnCondition {
    fn is_any(&self) -> bool {
        self.inside.is_none() && self.outside.is_none()
    }

    /// Organisation patterns count once resolved into `inside` (see [`AsnCondition::resolve`]).
    fn holds(&self, facts: &dyn Facts) -> bool {
        if self.is_any() {
            return true;
        }
        let asn = facts.asn();
        self.inside.as_ref().is_none_or(|set| set.contains(asn))
            && !self.outside.as_ref().is_some_and(|set| set.contains(asn))
    }

    fn never_holds(&self, _: &Conditions) -> Option<String> {
        if self.organisations.is_empty() && self.inside.as_ref().is_some_and(AsnSet::is_empty) {
            return Some("its AS set is empty".into());
        }
        match (&self.inside, &self.outside) {
            (Some(inside), Some(outside)) if inside.is_subset(outside) => {
                Some("every AS it requires is also one it excludes".into())
            }
            _ => None,
        }
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(set) = &self.inside {
            write!(f, "AS in {}", Members(set))?;
            if !self.organisations.is_empty() {
                let quoted: Vec<String> = self.organisations.iter().map(|p| format!("{p:?}")).collect();
                write!(f, " or of organisation {}", quoted.join(", "))?;
            }
        }
        if let Some(set) = &self.outside {
            let and = if self.inside.is_some() { " and " } else { "" };
            write!(f, "{and}AS not in {}", Members(set))?;
        }
        Ok(())
    }
}

impl LookupCondition for AsnCondition {
    type Answer = Option<Asn>;

    fn admits(&self, answer: Option<Asn>) -> bool {
        self.inside.as_ref().is_none_or(|set| set.contains(answer))
            && !self.outside.as_ref().is_some_and(|set| set.contains(answer))
    }
}

/// A set as `config check` prints it: `{AS14061 AS16276 unknown}`.
struct Members<'a>(&'a AsnSet);

impl fmt::Display for Members<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        write_joined(f, &self.0.asns, " ")?;
        if self.0.unknown {
            f.write_str(if self.0.asns.is_empty() { "unknown" } else { " unknown" })?;
        }
        f.write_str("}")
    }
}
