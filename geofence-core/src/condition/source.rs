//! `source = ["trunks", "rfc1918"]`: the source must be in at least one of these prefix lists,
//! defined under `[lists]` or `[feeds]`, or built in.

use std::collections::BTreeMap;
use std::fmt;

use toml::Spanned;

use super::{write_joined, Condition, Conditions, Facts};
use crate::config::{ConfigError, Locator};
use crate::policy::PolicyError;
use crate::prefix::{self, Coverage, PrefixList};

/// The lists a rule's source must be in one of; empty: any source.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SourceCondition {
    pub(crate) lists: Vec<String>,
}

impl SourceCondition {
    /// Reads the `source` key; `defined` names the config's own lists and feeds.
    pub(crate) fn from_config(
        at: &Locator,
        raw: &[Spanned<String>],
        defined: &BTreeMap<&str, ()>,
    ) -> Result<SourceCondition, ConfigError> {
        for name in raw {
            check_list_name(at, name, defined)?;
        }
        Ok(SourceCondition { lists: raw.iter().map(|name| name.get_ref().clone()).collect() })
    }

    /// The lists named, as indices into `lists`, adding a built-in list the first time a rule
    /// uses it.
    pub(crate) fn resolve(&self, lists: &mut Vec<(String, PrefixList)>, rule: &str) -> Result<Vec<usize>, PolicyError> {
        self.lists.iter().map(|name| resolve_list(lists, name, rule)).collect()
    }

    /// Whether every list named is defined in `lists` and empty: then no source passes.
    pub(crate) fn names_only_empty_lists(&self, lists: &[(String, PrefixList)]) -> bool {
        !self.is_any() && self.lists.iter().all(|name| lists.iter().any(|(n, list)| n == name && list.is_empty()))
    }
}

fn check_list_name(at: &Locator, name: &Spanned<String>, defined: &BTreeMap<&str, ()>) -> Result<(), ConfigError> {
    let wanted = name.get_ref().as_str();
    if defined.contains_key(wanted) || prefix::is_built_in(wanted) {
        return Ok(());
    }
    let built_in: Vec<&str> = prefix::built_in_names().collect();
    let known = defined.keys().copied().chain(built_in.iter().copied());
    let closest = known
        .map(|candidate| (strsim::levenshtein(wanted, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    let help = match closest {
        Some((_, candidate)) => format!("did you mean `{candidate}`?"),
        None => "define it under [lists] or [feeds], or use a built-in list: ".to_owned() + &built_in.join(", "),
    };
    Err(at.at(name, format!("unknown list `{wanted}`"), Some(help)))
}

/// The index of list `name`, adding a built-in list the first time a rule uses it.
fn resolve_list(lists: &mut Vec<(String, PrefixList)>, name: &str, rule: &str) -> Result<usize, PolicyError> {
    if let Some(index) = lists.iter().position(|(n, _)| n == name) {
        return Ok(index);
    }
    let list = prefix::built_in(name)
        .ok_or_else(|| PolicyError::UnknownList { rule: rule.to_owned(), list: name.to_owned() })?;
    lists.push((name.to_owned(), list));
    Ok(lists.len() - 1)
}

impl Condition for SourceCondition {
    fn is_any(&self) -> bool {
        self.lists.is_empty()
    }

    fn holds(&self, facts: &dyn Facts) -> bool {
        self.is_any() || self.lists.iter().any(|name| facts.in_list(name))
    }

    fn never_holds(&self, _: &Conditions) -> Option<String> {
        None
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("source in ")?;
        write_joined(f, &self.lists, "|")
    }
}

/// For a chunk of rules: the rules that name no list, each list named with the rules naming it,
/// and per family the index that settles most sources by their first byte.
#[derive(Default)]
pub(crate) struct SourceMask {
    any_source: u64,
    /// Each list named (an index into the policy's lists), with the rules naming it.
    named: Box<[(usize, u64)]>,
    pub(crate) v4: SourceIndex,
    pub(crate) v6: SourceIndex,
}

impl SourceMask {
    /// The mask of rules whose lists are resolved to indices into `lists`.
    pub(crate) fn new<'a>(
        resolved: impl Iterator<Item = (&'a [usize], u64)>,
        lists: &[(String, PrefixList)],
    ) -> SourceMask {
        let mut any_source = 0;
        let mut named: Vec<(usize, u64)> = Vec::new();
        for (indices, bit) in resolved {
            if indices.is_empty() {
                any_source |= bit;
            }
            for &list in indices {
                match named.iter_mut().find(|(index, _)| *index == list) {
                    Some((_, rules)) => *rules |= bit,
                    None => named.push((list, bit)),
                }
            }
        }
        let list = |index: usize| &lists[index].1;
        SourceMask {
            any_source,
            v4: SourceIndex::new(any_source, &named, |index, first| list(index).coverage_v4(first)),
            v6: SourceIndex::new(any_source, &named, |index, first| list(index).coverage_v6(first)),
            named: named.into_boxed_slice(),
        }
    }

    /// Of the `candidates`, those whose source condition holds. Most sources are settled by
    /// their first byte in `index`; for the others `in_list` says whether the source is in a
    /// list, and a list is only searched when a candidate names it.
    #[inline(always)]
    pub(crate) fn admitted(
        &self,
        candidates: u64,
        index: &SourceIndex,
        first: u8,
        in_list: impl Fn(usize) -> bool,
    ) -> u64 {
        match index.settled(first, candidates) {
            Some(admitted) => candidates & admitted,
            None => self.by_lists(candidates, in_list),
        }
    }

    /// The few sources whose first byte leaves a list undecided.
    #[cold]
    #[inline(never)]
    fn by_lists(&self, candidates: u64, in_list: impl Fn(usize) -> bool) -> u64 {
        let mut admitted = self.any_source;
        for &(list, rules) in self.named.iter() {
            if candidates & rules != 0 && in_list(list) {
                admitted |= rules;
            }
        }
        candidates & admitted
    }
}

/// For each first byte of a source address, the rules whose source condition holds for every
/// address of that /8, unless some list a rule names covers the /8 only in part: then the
/// address itself must be looked up in the lists.
pub(crate) struct SourceIndex {
    /// Per first byte: the rules the /8 admits whole, and the rules whose lists cover it in
    /// part (for which the lists must be searched).
    by_first_byte: Box<[(u64, u64); 256]>,
}

impl Default for SourceIndex {
    fn default() -> SourceIndex {
        SourceIndex { by_first_byte: Box::new([(0, 0); 256]) }
    }
}

impl SourceIndex {
    /// The index for rules `any_source` (that name no list) and `named` (each list, by index,
    /// with the rules naming it), where `coverage(list, first)` says how a list covers a /8.
    fn new(any_source: u64, named: &[(usize, u64)], coverage: impl Fn(usize, u8) -> Coverage) -> SourceIndex {
        let mut index = SourceIndex::default();
        for first in 0..=u8::MAX {
            let (settled, unsettled) = &mut index.by_first_byte[usize::from(first)];
            *settled = any_source;
            for &(list, rules) in named {
                match coverage(list, first) {
                    Coverage::All => *settled |= rules,
                    Coverage::Nothing => {}
                    Coverage::Part => *unsettled |= rules,
                }
            }
        }
        index
    }

    /// Of the `candidates`, the rules admitted by the source conditions for any address that
    /// starts with `first`, or `None` when a candidate's lists must be searched.
    #[inline(always)]
    fn settled(&self, first: u8, candidates: u64) -> Option<u64> {
        let (settled, unsettled) = self.by_first_byte[usize::from(first)];
        (unsettled & candidates == 0).then_some(settled)
    }
}
