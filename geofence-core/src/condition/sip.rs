//! What the SIP request says (`geofence_core::sip` reads it from the datagram's payload):
//!
//! - `sip = "not-sip"` (or a list of `request`, `response`, `keep-alive`, `empty`, `not-sip`):
//!   what the payload is; `not-sip` is a payload that is none of the others.
//! - `sip_method = ["REGISTER", "OPTIONS"]`: the request's method.
//! - `user_agent = ["friendly-scanner", "@scanners", "PortSIP*"]` admits, `not_user_agent`
//!   excludes: the User-Agent header, by patterns (below); a request without one is in no set.
//! - `request_host = ["pbx.example.com", "*.example.com", "address"]` admits, `not_request_host`
//!   excludes: the Request-URI's host, by name (`*` and `?` wildcards) or, with the word
//!   `address`, any address literal (scanners sweeping addresses write the server's address
//!   where a phone writes its domain).
//! - `request_user`, `from_user`, `to_user = ["100?", "*"]`: the user part of the Request-URI,
//!   From or To, by wildcard pattern.
//!
//! Every key but `sip` holds only for a request. Patterns ignore case. A User-Agent pattern
//! without `*` or `?` is a substring; any other pattern, and every host and user pattern,
//! must match the whole value. `@name` stands for the patterns of `[sip_patterns]` entry
//! `name`, or of the built-in `scanners` list (`signatures/sip-scanners.txt`), which a
//! `[sip_patterns]` entry of that name replaces. A wildcard pattern is matched against the
//! first [`MATCHED_BYTES`] bytes of a value, so that a hostile header cannot make the match
//! quadratic.
//!
//! A lookup condition: the payload is parsed only when a rule that reads it could decide the
//! packet, and then once. The policy gives each distinct SIP condition a bit; the packet's
//! answer is the set of those that hold.

use std::collections::BTreeMap;
use std::fmt;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use serde::Deserialize;
use toml::Spanned;

use super::{Condition, Conditions, Facts};
use crate::config::{ConfigError, Locator};
use crate::packet::Protocol;
use crate::sip::{self, Method, SipError, SipMessage, SipRequest};

/// How many bytes of a value a wildcard pattern reads.
pub const MATCHED_BYTES: usize = 1024;

/// The longest pattern a config may write: a pattern is a signature, not a document.
const LONGEST_PATTERN: usize = 256;

/// The built-in `scanners` list: the User-Agents of SIP scanning and attack tools.
const SCANNERS: &str = include_str!("../../signatures/sip-scanners.txt");

/// What a payload is, as `sip = […]` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A SIP request.
    Request,
    /// A SIP response.
    Response,
    /// Blank lines only: a keep-alive.
    KeepAlive,
    /// No payload at all.
    Empty,
    /// A payload that is none of those.
    NotSip,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [Kind::Request, Kind::Response, Kind::KeepAlive, Kind::Empty, Kind::NotSip];

    /// Its name in the config (`not-sip`, …).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::KeepAlive => "keep-alive",
            Kind::Empty => "empty",
            Kind::NotSip => "not-sip",
        }
    }

    /// The kind of a parsed payload.
    pub fn of(message: &Result<SipMessage<'_>, SipError>) -> Kind {
        match message {
            Ok(SipMessage::Request(_)) => Kind::Request,
            Ok(SipMessage::Response { .. }) => Kind::Response,
            Ok(SipMessage::KeepAlive) => Kind::KeepAlive,
            Err(SipError::Empty) => Kind::Empty,
            Err(_) => Kind::NotSip,
        }
    }
}

/// Patterns over one header value, as written and as compiled.
#[derive(Clone, Debug)]
pub(crate) struct Patterns {
    /// As the config wrote them (`@scanners` included), for `config check`.
    written: Vec<String>,
    /// Every literal, expanded: the substrings (when `substrings`) found by one automaton.
    literals: Option<AhoCorasick>,
    /// Patterns with wildcards, lower-cased, matched against the whole value.
    wildcards: Vec<Vec<u8>>,
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Patterns) -> bool {
        self.written == other.written
    }
}

/// How a pattern without wildcards matches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Literal {
    /// Anywhere in the value (User-Agent).
    Substring,
    /// The whole value (hosts, users).
    Whole,
}

impl Patterns {
    fn new(written: Vec<String>, expanded: &[String], literal: Literal) -> Patterns {
        let (wild, plain): (Vec<&String>, Vec<&String>) =
            expanded.iter().partition(|p| literal == Literal::Whole || p.contains(['*', '?']));
        let literals = (!plain.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                // A few dozen short patterns make a small DFA: one table step a byte.
                .kind(Some(AhoCorasickKind::DFA))
                .build(plain.iter().map(|p| p.as_bytes()))
                .expect("patterns are short and few: the automaton fits")
        });
        let wildcards = wild.iter().map(|p| p.to_ascii_lowercase().into_bytes()).collect();
        Patterns { written, literals, wildcards }
    }

    /// Whether a value matches any pattern (`None`, no such header: none does).
    fn matches(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value else { return false };
        self.literals.as_ref().is_some_and(|automaton| automaton.is_match(value))
            || self.wildcards.iter().any(|pattern| wildcard(pattern, &value[..value.len().min(MATCHED_BYTES)]))
    }
}

/// Whether `value` matches `pattern` (lower case; `*` any run, `?` any one byte), ignoring
/// case. Backtracks only to the last `*`, so the work is at most pattern × value.
fn wildcard(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, v));
                p += 1;
            }
            Some(&c) if c == b'?' || c == value[v].to_ascii_lowercase() => {
                p += 1;
                v += 1;
            }
            _ => match star {
                Some((star_p, star_v)) => {
                    p = star_p + 1;
                    v = star_v + 1;
                    star = Some((star_p, star_v + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

/// The hosts a `request_host` admits: names by pattern, and address literals.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hosts {
    names: Patterns,
    address: bool,
}

impl Hosts {
    fn matches(&self, host: &[u8]) -> bool {
        (self.address && sip::is_address(host)) || self.names.matches(Some(host))
    }
}

/// A rule's SIP conditions; all unset: any payload.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SipCondition {
    kinds: Vec<Kind>,
    methods: Vec<Method>,
    user_agent: Option<Patterns>,
    not_user_agent: Option<Patterns>,
    request_host: Option<Hosts>,
    not_request_host: Option<Hosts>,
    request_user: Option<Patterns>,
    from_user: Option<Patterns>,
    to_user: Option<Patterns>,
}

/// The `sip` key: one kind or a list.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawKinds {
    One(String),
    Many(Vec<String>),
}

/// The config keys this unit reads.
pub(crate) struct Raw<'a> {
    pub(crate) sip: Option<&'a Spanned<RawKinds>>,
    pub(crate) sip_method: Option<&'a [Spanned<String>]>,
    pub(crate) user_agent: Option<&'a [Spanned<String>]>,
    pub(crate) not_user_agent: Option<&'a [Spanned<String>]>,
    pub(crate) request_host: Option<&'a [Spanned<String>]>,
    pub(crate) not_request_host: Option<&'a [Spanned<String>]>,
    pub(crate) request_user: Option<&'a [Spanned<String>]>,
    pub(crate) from_user: Option<&'a [Spanned<String>]>,
    pub(crate) to_user: Option<&'a [Spanned<String>]>,
}

/// The `[sip_patterns]` table: name → patterns.
pub(crate) type PatternLists = BTreeMap<String, Spanned<Vec<Spanned<String>>>>;

impl SipCondition {
    /// Admits only payloads of these kinds.
    pub(crate) fn set_kinds(&mut self, kinds: impl IntoIterator<Item = Kind>) {
        self.kinds = kinds.into_iter().collect();
        self.kinds.sort_unstable();
        self.kinds.dedup();
    }

    /// Admits only requests of these methods.
    pub(crate) fn set_methods(&mut self, methods: impl IntoIterator<Item = Method>) {
        self.methods = methods.into_iter().collect();
    }

    /// Admits only requests whose User-Agent matches a pattern (`not`: none does).
    pub(crate) fn set_user_agents(&mut self, patterns: &[&str], not: bool) {
        let owned: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        let patterns = Some(Patterns::new(owned.clone(), &owned, Literal::Substring));
        if not {
            self.not_user_agent = patterns;
        } else {
            self.user_agent = patterns;
        }
    }

    /// Admits only requests whose Request-URI host matches a name pattern or, with `address`,
    /// is an address literal (`not`: excludes those instead).
    pub(crate) fn set_request_hosts(&mut self, names: &[&str], address: bool, not: bool) {
        let owned: Vec<String> = names.iter().map(|p| (*p).to_owned()).collect();
        let written = owned.iter().cloned().chain(address.then(|| "address".to_owned())).collect();
        let hosts = Some(Hosts { names: Patterns::new(written, &owned, Literal::Whole), address });
        if not {
            self.not_request_host = hosts;
        } else {
            self.request_host = hosts;
        }
    }

    /// Admits only requests whose To user matches a pattern.
    pub(crate) fn set_to_users(&mut self, patterns: &[&str]) {
        let owned: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        self.to_user = Some(Patterns::new(owned.clone(), &owned, Literal::Whole));
    }

    /// Reads the SIP keys of a rule, with the pattern lists they may name.
    pub(crate) fn from_config(at: &Locator, raw: Raw, lists: &PatternLists) -> Result<SipCondition, ConfigError> {
        let patterns = |entries: Option<&[Spanned<String>]>, literal| {
            entries.map(|entries| patterns(at, entries, lists, literal)).transpose()
        };
        let hosts = |entries: Option<&[Spanned<String>]>| entries.map(|entries| hosts(at, entries, lists)).transpose();
        Ok(SipCondition {
            kinds: raw.sip.map(|spec| kinds(at, spec)).transpose()?.unwrap_or_default(),
            methods: raw
                .sip_method
                .unwrap_or_default()
                .iter()
                .map(|name| method(at, name))
                .collect::<Result<_, _>>()?,
            user_agent: patterns(raw.user_agent, Literal::Substring)?,
            not_user_agent: patterns(raw.not_user_agent, Literal::Substring)?,
            request_host: hosts(raw.request_host)?,
            not_request_host: hosts(raw.not_request_host)?,
            request_user: patterns(raw.request_user, Literal::Whole)?,
            from_user: patterns(raw.from_user, Literal::Whole)?,
            to_user: patterns(raw.to_user, Literal::Whole)?,
        })
    }

    /// Whether a payload read as `message` passes.
    pub(crate) fn admits(&self, message: &Result<SipMessage<'_>, SipError>) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&Kind::of(message)) {
            return false;
        }
        if !self.reads_request() {
            return true;
        }
        let Ok(SipMessage::Request(request)) = message else { return false };
        self.admits_request(request)
    }

    fn admits_request(&self, request: &SipRequest<'_>) -> bool {
        let user = |patterns: &Option<Patterns>, user: Option<&[u8]>| {
            patterns.as_ref().is_none_or(|patterns| patterns.matches(user))
        };
        (self.methods.is_empty() || self.methods.contains(&request.method))
            && self.user_agent.as_ref().is_none_or(|p| p.matches(request.user_agent))
            && !self.not_user_agent.as_ref().is_some_and(|p| p.matches(request.user_agent))
            && self.request_host.as_ref().is_none_or(|hosts| hosts.matches(request.uri.host))
            && !self.not_request_host.as_ref().is_some_and(|hosts| hosts.matches(request.uri.host))
            && user(&self.request_user, request.uri.user)
            && user(&self.from_user, request.from().and_then(|from| from.user))
            && user(&self.to_user, request.to().and_then(|to| to.user))
    }

    /// Whether a key other than `sip` is set: then only a request can pass.
    fn reads_request(&self) -> bool {
        let SipCondition {
            kinds: _,
            methods,
            user_agent,
            not_user_agent,
            request_host,
            not_request_host,
            request_user,
            from_user,
            to_user,
        } = self;
        !methods.is_empty()
            || [user_agent, not_user_agent, request_user, from_user, to_user].iter().any(|p| p.is_some())
            || request_host.is_some()
            || not_request_host.is_some()
    }
}

fn kinds(at: &Locator, spec: &Spanned<RawKinds>) -> Result<Vec<Kind>, ConfigError> {
    let names = match spec.get_ref() {
        RawKinds::One(name) => std::slice::from_ref(name),
        RawKinds::Many(names) => names.as_slice(),
    };
    let mut kinds = names
        .iter()
        .map(|name| {
            Kind::ALL.into_iter().find(|kind| kind.name() == name).ok_or_else(|| {
                at.at(
                    spec,
                    format!("`{name}` is not a kind of SIP payload"),
                    Some("expected request, response, keep-alive, empty or not-sip".into()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    kinds.sort_unstable();
    kinds.dedup();
    Ok(kinds)
}

/// A method named in the config, upper case as on the wire.
pub(crate) fn method(at: &Locator, name: &Spanned<String>) -> Result<Method, ConfigError> {
    let written = name.get_ref();
    let method = Method::of(written.as_bytes());
    if method != Method::Other && method.name() == written {
        return Ok(method);
    }
    let help = match method {
        Method::Other => {
            let known: Vec<&str> = Method::NAMED.iter().map(|m| m.name()).collect();
            format!("expected one of {}", known.join(", "))
        }
        method => format!("SIP methods are upper case: `{method}`"),
    };
    Err(at.at(name, format!("`{written}` is not a SIP method geofence knows"), Some(help)))
}

/// The patterns of a key, `@name` entries expanded.
fn patterns(
    at: &Locator,
    entries: &[Spanned<String>],
    lists: &PatternLists,
    literal: Literal,
) -> Result<Patterns, ConfigError> {
    let mut expanded = Vec::new();
    for entry in entries {
        expand(at, entry, lists, &mut expanded)?;
    }
    Ok(Patterns::new(written(entries), &expanded, literal))
}

/// The hosts of a `request_host` key: the word `address`, and name patterns.
fn hosts(at: &Locator, entries: &[Spanned<String>], lists: &PatternLists) -> Result<Hosts, ConfigError> {
    let mut names = Vec::new();
    for entry in entries.iter().filter(|entry| entry.get_ref() != "address") {
        expand(at, entry, lists, &mut names)?;
    }
    let address = entries.iter().any(|entry| entry.get_ref() == "address");
    Ok(Hosts { names: Patterns::new(written(entries), &names, Literal::Whole), address })
}

/// The entries as written, for `config check`.
fn written(entries: &[Spanned<String>]) -> Vec<String> {
    entries.iter().map(|entry| entry.get_ref().clone()).collect()
}

fn expand(
    at: &Locator,
    entry: &Spanned<String>,
    lists: &PatternLists,
    out: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let written = entry.get_ref();
    let Some(name) = written.strip_prefix('@') else {
        out.push(checked_pattern(at, entry, written)?);
        return Ok(());
    };
    match lists.get(name) {
        Some(list) => {
            for pattern in list.get_ref() {
                out.push(checked_pattern(at, pattern, pattern.get_ref())?);
            }
            Ok(())
        }
        None if name == "scanners" => {
            out.extend(built_in_scanners().map(str::to_owned));
            Ok(())
        }
        None => Err(at.at(
            entry,
            format!("`{written}` names no pattern list"),
            Some("define it under [sip_patterns], or use the built-in @scanners".into()),
        )),
    }
}

fn checked_pattern(at: &Locator, entry: &Spanned<String>, pattern: &str) -> Result<String, ConfigError> {
    // `*` stays legal: it matches a header that is there, whatever it says.
    let problem = if pattern.trim().is_empty() {
        "an empty pattern would match every value"
    } else if pattern.len() > LONGEST_PATTERN {
        "a pattern longer than 256 bytes"
    } else if pattern.chars().any(char::is_control) {
        "a pattern with a control character can never match a header value"
    } else {
        return Ok(pattern.trim().to_owned());
    };
    Err(at.at(entry, format!("{problem}: `{}`", pattern.escape_debug()), None))
}

/// The patterns of the built-in `scanners` list: one a line, `#` comments.
pub fn built_in_scanners() -> impl Iterator<Item = &'static str> {
    SCANNERS.lines().map(|line| line.split('#').next().unwrap_or_default().trim()).filter(|line| !line.is_empty())
}

impl Condition for SipCondition {
    fn is_any(&self) -> bool {
        self.kinds.is_empty() && !self.reads_request()
    }

    fn holds(&self, facts: &dyn Facts) -> bool {
        self.is_any() || self.admits(&sip::parse(facts.payload()))
    }

    fn never_holds(&self, conditions: &Conditions) -> Option<String> {
        let protocols = &conditions.protocol.protocols;
        let carried = protocols.is_empty() || protocols.contains(&Protocol::UDP) || protocols.contains(&Protocol::TCP);
        if !self.is_any() && !carried {
            return Some("it reads SIP, but none of its protocols carries it".into());
        }
        let only_other_kinds = !self.kinds.is_empty() && !self.kinds.contains(&Kind::Request);
        (self.reads_request() && only_other_kinds)
            .then(|| "it reads the SIP request, but its `sip` kinds admit no request".into())
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if !self.kinds.is_empty() {
            parts.push(format!("sip {}", self.kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")));
        }
        if !self.methods.is_empty() {
            parts.push(format!("method {}", self.methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(",")));
        }
        let mut add = |label: &str, patterns: Option<&Patterns>| {
            if let Some(patterns) = patterns {
                parts.push(format!("{label} {}", patterns.written.join(",")));
            }
        };
        add("user agent", self.user_agent.as_ref());
        add("user agent not", self.not_user_agent.as_ref());
        add("request host", self.request_host.as_ref().map(|h| &h.names));
        add("request host not", self.not_request_host.as_ref().map(|h| &h.names));
        add("request user", self.request_user.as_ref());
        add("from user", self.from_user.as_ref());
        add("to user", self.to_user.as_ref());
        f.write_str(&parts.join(" and "))
    }
}

/// The distinct SIP conditions of a policy, one bit each: a packet's answer is the set of
/// those its payload passes.
#[derive(Debug, Default)]
pub(crate) struct SipTests {
    conditions: Vec<SipCondition>,
}

impl SipTests {
    /// The most distinct SIP conditions a policy may hold: one bit each in a key.
    pub(crate) const MOST: usize = usize::BITS as usize;

    /// The bit of `condition`, adding it when it is new; `None` for an unset condition, or
    /// when there are already [`SipTests::MOST`].
    pub(crate) fn bit_of(&mut self, condition: &SipCondition) -> Result<Option<usize>, ()> {
        if condition.is_any() {
            return Ok(None);
        }
        if let Some(index) = self.conditions.iter().position(|c| c == condition) {
            return Ok(Some(index));
        }
        if self.conditions.len() == SipTests::MOST {
            return Err(());
        }
        self.conditions.push(condition.clone());
        Ok(Some(self.conditions.len() - 1))
    }

    /// The set of conditions a payload's message passes, as bits: the packet's answer.
    pub(crate) fn key(&self, message: &Result<SipMessage<'_>, SipError>) -> usize {
        self.conditions.iter().enumerate().fold(0, |key, (bit, c)| key | (usize::from(c.admits(message)) << bit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_values_ignoring_case() {
        for (pattern, value, expected) in [
            ("friendly-scanner", "friendly-scanner", true),
            ("portsip*", "PortSIP VoIP SDK 11.2", true),
            ("*scanner", "friendly-scanner", true),
            ("100?", "1001", true),
            ("100?", "10011", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*", "", true),
            ("?", "", false),
        ] {
            assert_eq!(wildcard(pattern.as_bytes(), value.as_bytes()), expected, "{pattern} ~ {value}");
        }
    }

    #[test]
    fn the_scanner_list_is_patterns_without_comments() {
        let patterns: Vec<&str> = built_in_scanners().collect();
        assert!(patterns.contains(&"friendly-scanner") && patterns.contains(&"sipvicious"));
        assert!(patterns.iter().all(|p| !p.contains('#') && p.len() <= LONGEST_PATTERN && p.trim() == *p));
    }
}
