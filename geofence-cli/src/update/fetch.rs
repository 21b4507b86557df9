//! One download: a conditional GET within a timeout and a size cap, decompressed within the
//! same cap.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use ureq::tls::{RootCerts, TlsConfig};

use super::UpdateError;

/// What a server said about a file, to ask next time whether it changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// The URL they belong to: a new month's URL starts afresh.
    pub url: String,
    /// Its `ETag`.
    pub etag: Option<String>,
    /// Its `Last-Modified`.
    pub last_modified: Option<String>,
}

/// What a GET brought.
pub enum Fetched {
    /// The server's copy has not changed since the validators were given (304).
    NotModified,
    /// The body, decompressed, and what the server said about it.
    Body(Vec<u8>, Validators),
}

/// A request: where, with which validators and credentials, how much at most.
pub struct Get<'a> {
    /// The URL.
    pub url: &'a str,
    /// The URL as messages show it: without a key it may hold.
    pub shown: &'a str,
    /// What the server said last time, if the file it gave is still there.
    pub validators: Option<&'a Validators>,
    /// HTTP basic credentials (MaxMind's account ID and licence key).
    pub credentials: Option<(&'a str, &'a str)>,
    /// The most bytes read, of the body and of what it decompresses to.
    pub limit: u64,
}

/// The client every source shares: the system's CA store, proxies from the environment
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`), a connect timeout and `timeout` for
/// each whole request, body included, so a server that stalls costs at most that.
pub fn agent(timeout_ms: u64) -> Agent {
    let timeout = Duration::from_millis(timeout_ms);
    let config = ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build())
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(30))))
        .http_status_as_error(false)
        .user_agent(concat!("geofence/", env!("CARGO_PKG_VERSION")))
        .build();
    Agent { agent: config.new_agent(), timeout_ms }
}

/// The shared client and its timeout, to name it when a server exceeds it.
pub struct Agent {
    agent: ureq::Agent,
    timeout_ms: u64,
}

/// GETs `get.url`, conditionally when validators are given.
pub fn fetch(agent: &Agent, get: &Get) -> Result<Fetched, UpdateError> {
    let response = send(agent, get)?;
    let status = response.status();
    if status == 304 {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(UpdateError::Status {
            url: get.shown.to_owned(),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_owned(),
        });
    }
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let validators =
        Validators { url: get.url.to_owned(), etag: header("etag"), last_modified: header("last-modified") };
    let body = body_of(agent, get, response)?;
    Ok(Fetched::Body(unpacked(body, get)?, validators))
}

/// GETs `get.url` and reads the body whatever the status: an API may answer "nothing new"
/// with an error status and a body that says so.
pub fn fetch_answer(agent: &Agent, get: &Get) -> Result<(u16, Vec<u8>), UpdateError> {
    let response = send(agent, get)?;
    let status = response.status().as_u16();
    Ok((status, body_of(agent, get, response)?))
}

fn send(agent: &Agent, get: &Get) -> Result<ureq::http::Response<ureq::Body>, UpdateError> {
    let mut request = agent.agent.get(get.url);
    if let Some(validators) = get.validators.filter(|validators| validators.url == get.url) {
        if let Some(etag) = &validators.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(modified) = &validators.last_modified {
            request = request.header("If-Modified-Since", modified);
        }
    }
    if let Some((user, password)) = get.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("Authorization", format!("Basic {token}"));
    }
    request.call().map_err(|source| match source {
        ureq::Error::Timeout(_) => timed_out(agent, get),
        source => UpdateError::Transport { url: get.shown.to_owned(), source: Box::new(source) },
    })
}

/// The body, within the limit and the timeout.
fn body_of(agent: &Agent, get: &Get, response: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>, UpdateError> {
    let mut body = Vec::new();
    let read = response.into_body().into_with_config().limit(get.limit).reader().read_to_end(&mut body);
    match read {
        Ok(_) => Ok(body),
        Err(error) => Err(match error.get_ref().and_then(|inner| inner.downcast_ref()) {
            Some(ureq::Error::BodyExceedsLimit(_)) => too_big(get),
            Some(ureq::Error::Timeout(_)) => timed_out(agent, get),
            _ => UpdateError::Body { url: get.shown.to_owned(), source: error },
        }),
    }
}

fn timed_out(agent: &Agent, get: &Get) -> UpdateError {
    UpdateError::Timeout { url: get.shown.to_owned(), timeout_ms: agent.timeout_ms }
}

fn too_big(get: &Get) -> UpdateError {
    UpdateError::TooBig { url: get.shown.to_owned(), limit: get.limit }
}

/// A gzip body decompressed (within the limit); a tar archive's largest file (MaxMind's
/// `.tar.gz` holds the database beside its licence texts); anything else as it came.
fn unpacked(body: Vec<u8>, get: &Get) -> Result<Vec<u8>, UpdateError> {
    let body = if body.starts_with(&[0x1f, 0x8b]) { gunzipped(&body, get)? } else { body };
    if !is_tar(&body) {
        return Ok(body);
    }
    let damaged = |source| UpdateError::Archive { url: get.shown.to_owned(), source };
    let largest = tar::Archive::new(&body[..])
        .entries()
        .map_err(damaged)?
        .filter_map(Result::ok)
        .filter(|entry| entry.header().entry_type().is_file())
        .map(|entry| (entry.size(), entry.path().map(|path| path.into_owned()).ok()))
        .max_by_key(|(size, _)| *size);
    let Some((_, Some(wanted))) = largest else {
        return Err(UpdateError::EmptyArchive { url: get.shown.to_owned() });
    };
    for entry in tar::Archive::new(&body[..]).entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        if entry.path().is_ok_and(|path| path == wanted) {
            let mut file = Vec::new();
            entry.by_ref().take(get.limit.saturating_add(1)).read_to_end(&mut file).map_err(damaged)?;
            return if file.len() as u64 > get.limit { Err(too_big(get)) } else { Ok(file) };
        }
    }
    Err(UpdateError::EmptyArchive { url: get.shown.to_owned() })
}

fn gunzipped(body: &[u8], get: &Get) -> Result<Vec<u8>, UpdateError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(get.limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| UpdateError::Gzip { url: get.shown.to_owned(), source })?;
    if out.len() as u64 > get.limit {
        return Err(too_big(get));
    }
    Ok(out)
}

/// POSIX tar's magic at its place in the first header.
fn is_tar(bytes: &[u8]) -> bool {
    bytes.get(257..262) == Some(b"ustar")
}
