//! Rule conditions, one unit a kind: what a rule can ask about a packet.
//!
//! Each kind lives in one submodule, which holds everything about it: the config key(s) it reads
//! and their validation, how `config check` shows it, why it could never hold, its reference
//! meaning ([`Condition::holds`], over the plain [`Facts`] of a packet) and the masks the fast
//! path tests it with. [`Rule::matches`](crate::Rule::matches) is the conjunction of the kinds'
//! `holds`, written as an exhaustive destructuring of the rule's conditions, so a new kind does
//! not compile until it has a meaning; the property test in `policy/tests.rs` checks
//! [`Policy::decide`](crate::Policy::decide) against that meaning for random policies.
//!
//! Kinds come in three shapes, by what the fast path needs to test them:
//! - **header** conditions (`protocol`, `ports`) read the parsed header only: one mask load each;
//! - the **source** condition (`source` lists) is settled by the source's first byte for most
//!   addresses and searches the lists only for the rest;
//! - **lookup** conditions (`country`, `asn`, the SIP request) need work per
//!   packet. They implement [`LookupCondition`]: the packet's answer is found at most once, only
//!   when a rule that asks it is still a candidate for the first match, and a mask of the rules
//!   that admit each possible answer is built with the policy.
//!
//! To add a lookup kind: a submodule with its condition type (config parsing, [`Condition`],
//! [`LookupCondition`]), a field in [`Conditions`], a variant of [`Lookup`] with the way the
//! policy finds its answer, and its line in `Rule::matches`; the compiler points at each place.

use std::fmt;
use std::net::IpAddr;

use crate::asn::Asn;
use crate::country::CountryCode;
use crate::packet::{PacketMeta, Protocol};

pub(crate) mod asn;
pub(crate) mod country;
pub(crate) mod port;
pub(crate) mod protocol;
pub(crate) mod sip;
pub(crate) mod source;

/// The plain facts about a packet that rule conditions are read against: the reference meaning
/// of a rule, without masks or indexes. [`Rule::matches`](crate::Rule::matches) takes them.
pub trait Facts {
    /// The packet's header view.
    fn packet(&self) -> &PacketMeta;
    /// Whether the source is in the list of that name (defined by the policy or built in).
    fn in_list(&self, name: &str) -> bool;
    /// The source's country; `None` when the database does not know it.
    fn country(&self) -> Option<CountryCode>;
    /// The source's autonomous system; `None` when the ASN database does not know it.
    fn asn(&self) -> Option<Asn>;
    /// The transport payload, which SIP conditions read; none by default (a decision on the
    /// flow alone).
    fn payload(&self) -> &[u8] {
        &[]
    }
}

impl dyn Facts + '_ {
    /// The source as rules see it: an IPv4-mapped IPv6 source is the IPv4 address it maps.
    pub fn source(&self) -> IpAddr {
        self.packet().source.to_canonical()
    }

    /// The transport protocol.
    pub fn protocol(&self) -> Protocol {
        self.packet().protocol
    }

    /// The destination port, when the packet carries one.
    pub fn destination_port(&self) -> Option<u16> {
        self.packet().destination_port()
    }
}

/// What every kind of condition provides: its meaning and how a person reads it.
pub(crate) trait Condition {
    /// Whether the condition is unset: every packet passes it.
    fn is_any(&self) -> bool;

    /// Whether the packet passes, by the plain facts: the meaning the fast path is checked
    /// against. An unset condition holds for every packet.
    fn holds(&self, facts: &dyn Facts) -> bool;

    /// Why no packet of a rule with these `conditions` can pass this one, if none can.
    fn never_holds(&self, conditions: &Conditions) -> Option<String>;

    /// How `config check` shows the condition ("port 5060,5061-5062"); called only when set.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// A condition whose answer needs work per packet (a database lookup, a parse). The policy finds
/// the answer only when a candidate rule asks it, and at most once a packet.
pub(crate) trait LookupCondition: Condition {
    /// What the work gives for one packet.
    type Answer: Copy;

    /// Whether a packet whose answer is `answer` passes the condition (only called when set).
    fn admits(&self, answer: Self::Answer) -> bool;
}

/// The lookups a packet may need, in the order the fast path keeps their answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The source's country, in the policy's country database.
    Country,
    /// The source's autonomous system, in the policy's ASN database.
    Asn,
    /// What the payload says: the set of the policy's SIP conditions it passes.
    Sip,
}

impl Lookup {
    /// How many kinds of lookup there are.
    pub(crate) const COUNT: usize = 3;

    /// Every kind, in order.
    pub(crate) const ALL: [Lookup; Lookup::COUNT] = [Lookup::Country, Lookup::Asn, Lookup::Sip];

    /// Its position in per-packet caches and per-chunk masks.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Every condition a rule can set: one field a kind. Unset fields ask nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Conditions {
    pub(crate) protocol: protocol::ProtocolCondition,
    pub(crate) port: port::PortCondition,
    pub(crate) source: source::SourceCondition,
    pub(crate) country: country::CountryCondition,
    pub(crate) asn: asn::AsnCondition,
    pub(crate) sip: sip::SipCondition,
}

impl Conditions {
    /// Each condition as the trait sees it, in the order `config check` shows them.
    pub(crate) fn each(&self) -> [&dyn Condition; 6] {
        let Conditions { protocol, port, source, country, asn, sip } = self;
        [protocol, port, source, country, asn, sip]
    }

    /// Whether a packet passes them all, by the plain facts.
    pub(crate) fn hold(&self, facts: &dyn Facts) -> bool {
        // Destructured so that a new kind does not compile until it has a meaning here.
        let Conditions { protocol, port, source, country, asn, sip } = self;
        protocol.holds(facts)
            && port.holds(facts)
            && source.holds(facts)
            && country.holds(facts)
            && asn.holds(facts)
            && sip.holds(facts)
    }
}

impl fmt::Display for Conditions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = self.each().into_iter().filter(|condition| !condition.is_any()).peekable();
        if set.peek().is_none() {
            return f.write_str("any packet");
        }
        for (n, condition) in set.enumerate() {
            if n > 0 {
                f.write_str(" and ")?;
            }
            condition.describe(f)?;
        }
        Ok(())
    }
}

/// Writes `items` with `separator` between them: how conditions list their values.
pub(crate) fn write_joined<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T], separator: &str) -> fmt::Result {
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// One lookup kind's conditions over a chunk of up to 64 rules (one bit each): the rules that
/// ask nothing of it, and for each possible answer (by key) the rules that admit it.
#[derive(Default)]
pub(crate) struct LookupMask {
    /// The rules whose condition of this kind is unset.
    pub(crate) any: u64,
    /// By answer key: the rules that admit that answer (including those in `any`).
    by_key: ByKey,
}

/// The rules admitting each answer. A few hundred answers (countries) are a dense table; an
/// answer space of tens of thousands (AS numbers) would make that table hundreds of kilobytes,
/// a cache miss a packet, while rules name only a few of its answers: then it is the rules of
/// the answers no rule names, and a short sorted list of the others.
///
/// An answer that is a set of conditions passed (the SIP lookup's: one bit a distinct
/// condition of the policy) admits the rules of each condition in it.
enum ByKey {
    Dense(Box<[u64]>),
    Sparse { len: usize, others: u64, keys: Box<[u32]>, rules: Box<[u64]> },
    Bits(Box<[(usize, u64)]>),
}

impl Default for ByKey {
    fn default() -> ByKey {
        ByKey::Dense(Box::default())
    }
}

/// From how many answers the table may be sparse.
const SPARSE_FROM: usize = 4096;

impl LookupMask {
    /// The mask of `conditions` (each with its rule's bit), where `answers` are the possible
    /// answers by key.
    pub(crate) fn new<'a, C: LookupCondition + 'a>(
        conditions: impl Iterator<Item = (&'a C, u64)>,
        answers: &[C::Answer],
    ) -> LookupMask {
        let mut any = 0;
        let mut by_key = vec![0; answers.len()];
        for (condition, bit) in conditions {
            if condition.is_any() {
                any |= bit;
                by_key.iter_mut().for_each(|rules| *rules |= bit);
                continue;
            }
            for (rules, answer) in by_key.iter_mut().zip(answers) {
                if condition.admits(*answer) {
                    *rules |= bit;
                }
            }
        }
        LookupMask { any, by_key: ByKey::of(by_key) }
    }

    /// The mask of rules whose condition is one of a set: `conditions` gives each rule's bit
    /// and the index of its condition in that set (`None`: unset), and an answer is the set of
    /// the conditions that hold, as bits.
    pub(crate) fn of_bits(conditions: impl Iterator<Item = (Option<usize>, u64)>) -> LookupMask {
        let mut any = 0;
        let mut rules: Vec<(usize, u64)> = Vec::new();
        for (condition, bit) in conditions {
            match condition {
                None => any |= bit,
                Some(index) => match rules.iter_mut().find(|(i, _)| *i == index) {
                    Some((_, rules)) => *rules |= bit,
                    None => rules.push((index, bit)),
                },
            }
        }
        LookupMask { any, by_key: ByKey::Bits(rules.into_boxed_slice()) }
    }

    /// The rules that admit the answer of `key` (none for a key out of range).
    #[inline(always)]
    pub(crate) fn admitted(&self, key: usize) -> u64 {
        match &self.by_key {
            ByKey::Bits(conditions) => {
                conditions.iter().fold(
                    self.any,
                    |admitted, (index, rules)| if key >> index & 1 != 0 { admitted | rules } else { admitted },
                )
            }
            ByKey::Dense(rules) => rules.get(key).copied().unwrap_or(0),
            ByKey::Sparse { len, .. } if key >= *len => 0,
            ByKey::Sparse { others, keys, rules, .. } => match keys.binary_search(&(key as u32)) {
                Ok(index) => rules.get(index).copied().unwrap_or(0),
                Err(_) => *others,
            },
        }
    }
}

impl ByKey {
    /// `dense` as it is, or sparse when it is large and most answers share one set of rules.
    fn of(dense: Vec<u64>) -> ByKey {
        if dense.len() < SPARSE_FROM || u32::try_from(dense.len()).is_err() {
            return ByKey::Dense(dense.into_boxed_slice());
        }
        // The answers no rule names share one set of rules, and they are nearly all of them:
        // the most common set.
        let mut counts: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        dense.iter().for_each(|rules| *counts.entry(*rules).or_default() += 1);
        let others = counts.into_iter().max_by_key(|(_, count)| *count).map_or(0, |(rules, _)| rules);
        let exceptions: Vec<(u32, u64)> = dense
            .iter()
            .enumerate()
            .filter(|(_, rules)| **rules != others)
            .map(|(key, rules)| (key as u32, *rules))
            .collect();
        if exceptions.len() > dense.len() / 8 {
            return ByKey::Dense(dense.into_boxed_slice());
        }
        let (keys, rules) = exceptions.into_iter().unzip::<_, _, Vec<u32>, Vec<u64>>();
        ByKey::Sparse { len: dense.len(), others, keys: keys.into_boxed_slice(), rules: rules.into_boxed_slice() }
    }
}

#[cfg(test)]
mod tests {
    use super::asn::{AsnCondition, AsnSet};
    use super::*;

    /// Over ten thousand answers the table is sparse, and answers as the dense one would.
    #[test]
    fn a_sparse_mask_admits_what_a_dense_one_does() {
        let answers: Vec<Option<Asn>> = (1..=10_000).map(|n| Some(Asn(n))).chain([None]).collect();
        let set = |numbers: &[u32], unknown: bool| AsnSet::new(numbers.iter().map(|n| Asn(*n)), unknown);
        let conditions = [
            AsnCondition { inside: Some(set(&[7, 70, 700], false)), ..Default::default() },
            AsnCondition { outside: Some(set(&[70, 9_999], true)), ..Default::default() },
            AsnCondition::default(),
            AsnCondition {
                inside: Some(set(&[700, 701], true)),
                outside: Some(set(&[701], false)),
                ..Default::default()
            },
        ];
        let mask = LookupMask::new(conditions.iter().zip([1, 2, 4, 8]), &answers);
        assert!(matches!(mask.by_key, ByKey::Sparse { .. }));
        for (key, answer) in answers.iter().enumerate() {
            let expected: u64 = conditions
                .iter()
                .zip([1, 2, 4, 8])
                .filter(|(condition, _)| condition.is_any() || condition.admits(*answer))
                .map(|(_, bit)| bit)
                .sum();
            assert_eq!(mask.admitted(key), expected, "key {key}");
        }
        assert_eq!(mask.admitted(answers.len()), 0, "a key past the answers admits nothing");
        assert_eq!(mask.any, 4);
    }
}
