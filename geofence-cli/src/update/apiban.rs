//! APIBAN's paged `banned` call: `banned` gives the first page of addresses and an ID,
//! `banned/<ID>` the next ones, until an answer's ID is `none`. The file keeps every address
//! and the last ID, so the next update asks only for what is newer.

use std::collections::BTreeSet;
use std::time::Duration;

use geofence_core::feed::{self, ApibanPage};
use geofence_core::IpNetwork;

use super::fetch::{self, Agent, Get};
use super::UpdateError;

/// The most pages one update asks for (250 addresses each); the rest waits for the next one.
const MAX_PAGES: usize = 400;
/// APIBAN asks its clients not to hammer it: one call a second.
const PAUSE: Duration = Duration::from_secs(1);
/// Once the file is this old, it is fetched afresh from the first page rather than carried on:
/// APIBAN keeps a ban for a week, so an address it let go of leaves the file too.
const AFRESH_AFTER_SECONDS: u64 = 7 * 86_400;

/// The new file: the addresses of `current` (unless it is to be fetched afresh) and of the new
/// pages, with the last page's ID; `None` when there is nothing newer.
pub fn fetch(
    agent: &Agent,
    url: &str,
    current: Option<&[u8]>,
    current_age_seconds: Option<u64>,
    limit: u64,
) -> Result<Option<(Vec<u8>, String)>, UpdateError> {
    let shown = without_key(url);
    let carried = current
        .filter(|_| current_age_seconds.is_some_and(|age| age < AFRESH_AFTER_SECONDS))
        .and_then(|bytes| feed::apiban_page(bytes).ok())
        .filter(|page| page.next.is_some());
    let (mut networks, mut id): (BTreeSet<IpNetwork>, Option<String>) = match carried {
        Some(ApibanPage { networks, next, .. }) => (networks.into_iter().collect(), next),
        None => (BTreeSet::new(), None),
    };
    let started_from = id.clone();
    let (mut pages, mut added) = (0, 0);
    while pages < MAX_PAGES {
        if pages > 0 {
            std::thread::sleep(PAUSE);
        }
        let page_url = id.as_ref().map_or_else(|| url.to_owned(), |id| format!("{url}/{id}"));
        let page_shown = id.as_ref().map_or_else(|| shown.clone(), |id| format!("{shown}/{id}"));
        let get = Get { url: &page_url, shown: &page_shown, validators: None, credentials: None, limit };
        let (status, body) = fetch::fetch_answer(agent, &get)?;
        pages += 1;
        let page = feed::apiban_page(&body);
        match (status, page) {
            (200, Ok(ApibanPage { networks: new, next: Some(next), .. })) => {
                added += new.len();
                networks.extend(new);
                id = Some(next);
            }
            // "no new bans", which APIBAN says with a 400 as well as a 200.
            (200 | 400 | 404, Ok(ApibanPage { next: None, .. })) => break,
            (429, _) if pages > 1 => break,
            (429, _) => return Err(UpdateError::RateLimited { url: page_shown }),
            (200, Err(error)) => {
                return Err(UpdateError::Invalid {
                    data: "APIBAN answer".into(),
                    problem: format!("{page_shown}: {error}"),
                })
            }
            (status, _) => {
                let reason = ureq::http::StatusCode::from_u16(status).ok().and_then(|code| code.canonical_reason());
                return Err(UpdateError::Status { url: page_shown, status, reason: reason.unwrap_or("").to_owned() });
            }
        }
    }
    if id == started_from {
        return Ok(None);
    }
    let addresses: Vec<String> = networks.iter().map(ToString::to_string).collect();
    let file = serde_json::json!({ "ipaddress": addresses, "ID": id });
    let how = if started_from.is_some() { "on from the file's ID" } else { "afresh" };
    Ok(Some((file.to_string().into_bytes(), format!("{shown}, {how}: {pages} pages, {added} addresses"))))
}

/// APIBAN's URL with its key, `/api/<key>/…`, hidden: messages and the journal do not show it.
fn without_key(url: &str) -> String {
    match url.split_once("/api/") {
        Some((base, rest)) => {
            let after_key = rest.find('/').map_or("", |slash| &rest[slash..]);
            format!("{base}/api/…{after_key}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_not_shown() {
        assert_eq!(without_key("https://apiban.org/api/0123abcd/banned"), "https://apiban.org/api/…/banned");
        assert_eq!(without_key("http://127.0.0.1:9/banned"), "http://127.0.0.1:9/banned");
    }
}
