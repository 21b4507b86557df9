//! Feeds: named lists read from the blocklist files operators already download, in their own
//! formats, detected from the content.
//!
//! - **Lines**: an address or CIDR network a line, comments after `#` or `;`: FireHOL's
//!   netsets, VoIPBL, Spamhaus DROP's text form (`1.10.16.0/20 ; SBL256894`), a hand-kept file.
//! - **Spamhaus JSON lines**: `{"cidr": "1.10.16.0/20", "sblid": "SBL256894", …}` a line; the
//!   `{"type": "metadata", …}` line is read past.
//! - **APIBAN**: the answer of its `banned` call, `{"ipaddress": ["…", …], "ID": "…"}`; an answer
//!   whose ID is `none` ("no new bans") holds no address.
//!
//! A feed is refused whole at its first bad entry, with the line (or the entry) and the fix
//! when there is one: a file half read would be a list half applied. The work is linear in the
//! size of the file, which the caller bounds.
//!
//! ```
//! use geofence_core::feed::{self, FeedFormat};
//!
//! let drop = feed::parse(b"; Spamhaus DROP List\n192.0.2.0/24 ; SBL000001\n198.51.100.7\n")?;
//! assert_eq!(drop.format, FeedFormat::Lines);
//! assert_eq!(drop.networks.len(), 2);
//!
//! let damaged = feed::parse(b"192.0.2.0/24\n198.51.100.7/16\n").unwrap_err();
//! assert_eq!(
//!     damaged.to_string(),
//!     "line 2: `198.51.100.7/16` is not an address or CIDR network (host bits are set; did you mean `198.51.0.0/16`?)"
//! );
//! # Ok::<(), geofence_core::feed::FeedError>(())
//! ```

use std::fmt;

use serde::Deserialize;

use crate::prefix::{parse_network, IpNetwork};

/// The formats [`parse`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedFormat {
    /// An address or network a line, with `#` and `;` comments.
    Lines,
    /// Spamhaus DROP's JSON lines.
    SpamhausJson,
    /// APIBAN's `banned` answer.
    Apiban,
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FeedFormat::Lines => "one network a line",
            FeedFormat::SpamhausJson => "Spamhaus JSON lines",
            FeedFormat::Apiban => "APIBAN JSON",
        })
    }
}

/// A feed read: its format and its networks, in the file's order (repeats kept: a list
/// merges them).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Feed {
    /// The format detected.
    pub format: FeedFormat,
    /// The networks (an address is a network of one).
    pub networks: Vec<IpNetwork>,
}

/// Why a feed was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The file is not UTF-8 text.
    #[error("not a feed: byte {offset} is not UTF-8 text")]
    NotText {
        /// The offset of the first byte that is not.
        offset: usize,
    },
    /// A line of a line-oriented format is wrong.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// An entry of APIBAN's `ipaddress` array is not an address or network.
    #[error("entry {entry} of `ipaddress`: {problem}")]
    Entry {
        /// 1-based position in the array.
        entry: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Reads a feed of any format [`detect`] knows.
pub fn parse(bytes: &[u8]) -> Result<Feed, FeedError> {
    let text = std::str::from_utf8(bytes).map_err(|error| FeedError::NotText { offset: error.valid_up_to() })?;
    let format = detect(text);
    let networks = match format {
        FeedFormat::Lines => lines(text)?,
        FeedFormat::SpamhausJson => spamhaus_json(text)?,
        FeedFormat::Apiban => apiban(text)?,
    };
    Ok(Feed { format, networks })
}

/// The format of a feed's text: Spamhaus JSON lines when its first line is a whole JSON object
/// with a `cidr` or a `type`, APIBAN when it is other JSON, else an address a line.
pub fn detect(text: &str) -> FeedFormat {
    let first = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
    if !first.starts_with('{') {
        FeedFormat::Lines
    } else if serde_json::from_str::<DropLine>(first).is_ok_and(|row| row.cidr.is_some() || row.kind.is_some()) {
        FeedFormat::SpamhausJson
    } else {
        FeedFormat::Apiban
    }
}

/// Each line's text before a `#` or `;` comment, numbered from 1, blank ones left out.
fn meaningful_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.split(['#', ';']).next().unwrap_or_default().trim()))
        .filter(|(_, line)| !line.is_empty())
}

fn lines(text: &str) -> Result<Vec<IpNetwork>, FeedError> {
    meaningful_lines(text)
        .map(|(line, entry)| parse_network(entry).map_err(|bad| FeedError::Line { line, problem: bad.to_string() }))
        .collect()
}

/// One line of Spamhaus DROP's JSON form; fields other than these are read past.
#[derive(Deserialize)]
struct DropLine {
    cidr: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn spamhaus_json(text: &str) -> Result<Vec<IpNetwork>, FeedError> {
    let mut networks = Vec::new();
    for (index, content) in text.lines().enumerate() {
        let (line, content) = (index + 1, content.trim());
        if content.is_empty() {
            continue;
        }
        let problem = |problem: String| FeedError::Line { line, problem };
        let row: DropLine = serde_json::from_str(content).map_err(|error| problem(json_problem(&error)))?;
        match (row.cidr, row.kind.as_deref()) {
            (_, Some("metadata")) => {}
            (Some(cidr), _) => networks.push(parse_network(&cidr).map_err(|bad| problem(bad.to_string()))?),
            (None, _) => return Err(problem("a JSON line with no `cidr`".into())),
        }
    }
    Ok(networks)
}

/// APIBAN's answer; its `ID` is the mark to ask for newer bans with, or `none`.
#[derive(Deserialize)]
struct ApibanAnswer {
    ipaddress: Vec<String>,
    #[serde(rename = "ID")]
    id: Option<serde_json::Value>,
}

fn apiban(text: &str) -> Result<Vec<IpNetwork>, FeedError> {
    let answer: ApibanAnswer = serde_json::from_str(text)
        .map_err(|error| FeedError::Line { line: error.line(), problem: json_problem(&error) })?;
    if answer.id.as_ref().and_then(serde_json::Value::as_str) == Some("none") {
        return Ok(Vec::new());
    }
    answer
        .ipaddress
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            parse_network(entry).map_err(|bad| FeedError::Entry { entry: index + 1, problem: bad.to_string() })
        })
        .collect()
}

/// One page of APIBAN's paged `banned` call: its networks, and the ID to ask for the next page
/// with (`None`: its `ID` was `none`, nothing newer).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApibanPage {
    /// The page's networks.
    pub networks: Vec<IpNetwork>,
    /// The mark to ask for newer bans with: `banned/<ID>`.
    pub next: Option<String>,
}

/// Reads one page of APIBAN's answer (a number or a string `ID`).
///
/// ```
/// let page = geofence_core::feed::apiban_page(br#"{"ipaddress": ["192.0.2.7"], "ID": 1001}"#)?;
/// assert_eq!((page.networks.len(), page.next.as_deref()), (1, Some("1001")));
/// let last = geofence_core::feed::apiban_page(br#"{"ipaddress": ["no new bans"], "ID": "none"}"#)?;
/// assert_eq!((last.networks.len(), last.next), (0, None));
/// # Ok::<(), geofence_core::feed::FeedError>(())
/// ```
pub fn apiban_page(bytes: &[u8]) -> Result<ApibanPage, FeedError> {
    let text = std::str::from_utf8(bytes).map_err(|_| FeedError::Line { line: 1, problem: "not UTF-8 text".into() })?;
    let answer: ApibanAnswer = serde_json::from_str(text)
        .map_err(|error| FeedError::Line { line: error.line(), problem: json_problem(&error) })?;
    let next = match &answer.id {
        Some(serde_json::Value::String(id)) if id == "none" => None,
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        Some(serde_json::Value::Number(id)) => Some(id.to_string()),
        _ => None,
    };
    Ok(ApibanPage { networks: if next.is_some() { apiban(text)? } else { Vec::new() }, next })
}

/// serde_json's message without its own "at line … column …", which the error gives apart.
fn json_problem(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let cut = message.rfind(" at line ").unwrap_or(message.len());
    format!("not the JSON expected: {}", &message[..cut])
}

#[cfg(test)]
mod tests;
