//! `geofence update`: fetches the databases and feeds a config's `[update]` table names, reads
//! each as the daemon would, replaces it whole (keeping the previous copy) and has the running
//! geofence reload. A source that fails leaves its file as it was; the others still update.

mod apiban;
mod fetch;
mod maxmind;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use geofence_core::ban::Duration;
use geofence_core::config::{Api, UpdateSource};
use geofence_core::db::{self, encode_compiled, encode_compiled_asn, Input, Provenance};
use geofence_core::{feed, Config};

use crate::control::{self, ControlError};
use crate::error::CliError;
use crate::files::{self, beside_config};
use crate::stats::thousands;
use fetch::{Fetched, Get, Validators};
use maxmind::GeoipConf;

/// Arguments of `geofence update`.
#[derive(clap::Args)]
pub struct UpdateArgs {
    /// The config whose `[update]` table names the sources.
    #[arg(long, short, default_value = "/etc/geofence/geofence.toml")]
    config: PathBuf,
    /// Fetch and read each source, say what would change, and change nothing.
    #[arg(long)]
    check: bool,
    /// Replace a file even when the new one holds less than half the entries of the old.
    #[arg(long)]
    force: bool,
    /// The running geofence's control socket, asked to reload once a file was replaced.
    #[arg(long, value_name = "SOCKET", default_value = control::DEFAULT_SOCKET)]
    control: PathBuf,
}

/// What went wrong with one source (or with the `GeoIP.conf` that names some).
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The request failed: no connection, TLS, a timeout, a proxy.
    #[error("cannot fetch {url}")]
    Transport {
        /// The URL.
        url: String,
        /// ureq's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status} {reason}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The server did not answer, or did not finish, within the timeout.
    #[error("{url}: no answer within the [update] timeout of {}", Duration(*timeout_ms))]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The body could not be read whole: the connection closed early, or stalled past the timeout.
    #[error("{url}: the download was cut short")]
    Body {
        /// The URL.
        url: String,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// The body, or what it decompressed to, was larger than the cap.
    #[error("{url}: larger than {} MiB, the most read of it (max_size_mib)", limit >> 20)]
    TooBig {
        /// The URL.
        url: String,
        /// The cap, in bytes.
        limit: u64,
    },
    /// A gzip body that does not decompress: cut short or not gzip.
    #[error("{url}: not a whole gzip file")]
    Gzip {
        /// The URL.
        url: String,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// A tar archive that cannot be read.
    #[error("{url}: a damaged tar archive")]
    Archive {
        /// The URL.
        url: String,
        /// tar's error.
        #[source]
        source: std::io::Error,
    },
    /// A tar archive holding no file.
    #[error("{url}: the archive holds no file")]
    EmptyArchive {
        /// The URL.
        url: String,
    },
    /// The server refused to answer more now (HTTP 429).
    #[error("{url}: rate limited (HTTP 429); the file stays, and the next update asks again")]
    RateLimited {
        /// The URL, without a key.
        url: String,
    },
    /// An API answer (MaxMind's metadata) that is not what it should be.
    #[error("{url}: an answer geofence cannot read: {problem}")]
    Answer {
        /// The URL.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The new data is not what the file holds: the wrong format, or damaged.
    #[error("not a {data}: {problem}")]
    Invalid {
        /// What the file must hold.
        data: String,
        /// Why the reader refused it, with where.
        problem: String,
    },
    /// The new data holds less than half the entries of the file it would replace.
    #[error(
        "{}: the new {data} holds {new} {unit}, less than half the {old} of the file it would replace: cut short? \
         ({accepted_by} accepts it)",
        file.display()
    )]
    Shrank {
        /// The file.
        file: PathBuf,
        /// What it holds.
        data: String,
        /// Entries of the running file.
        old: usize,
        /// Entries of the new data.
        new: usize,
        /// `ranges` or `networks`.
        unit: &'static str,
        /// What would accept it.
        accepted_by: &'static str,
    },
    /// A source names a file the config does not read.
    #[error("{} is not a file this config reads (its database, asn_database or a feed's files)", file.display())]
    NotRead {
        /// The file.
        file: PathBuf,
    },
    /// A `GeoIP.conf` that is missing something geofence needs.
    #[error("{}", at_line(path, *line, problem))]
    GeoipConf {
        /// The file.
        path: PathBuf,
        /// The line, from 1; 0: the file as a whole.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The new file, its previous copy or its validators could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

fn at_line(path: &Path, line: usize, problem: &str) -> String {
    match line {
        0 => format!("{}: {problem}", path.display()),
        line => format!("{}, line {line}: {problem}", path.display()),
    }
}

/// What a file holds, as the config reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Data {
    Country,
    Asn,
    Feed { name: String, may_shrink: bool },
}

impl Data {
    fn name(&self) -> String {
        match self {
            Data::Country => "country database".into(),
            Data::Asn => "ASN database".into(),
            Data::Feed { name, .. } => format!("feed `{name}`"),
        }
    }

    fn unit(&self) -> &'static str {
        match self {
            Data::Feed { .. } => "networks",
            Data::Country | Data::Asn => "ranges",
        }
    }

    /// The largest file of this kind the daemon reads.
    fn cap(&self) -> u64 {
        match self {
            Data::Feed { .. } => files::MAX_FEED_BYTES,
            Data::Country | Data::Asn => files::MAX_DATABASE_BYTES,
        }
    }
}

/// Where a file's new data comes from.
enum Origin {
    Url(UpdateSource),
    MaxMind(GeoipConf, String),
}

/// One file to bring up to date.
struct Target {
    file: PathBuf,
    data: Option<Data>,
    origin: Origin,
    limit: Option<u64>,
    /// Whether the config lets this file's data shrink below half: `database_may_shrink` for a
    /// database, a feed's own `may_shrink`, as the daemon's reload reads them.
    may_shrink: bool,
}

/// New data, read as the daemon reads it: how many entries, a line about it, and the bytes to
/// write (compiled, when the file is a `.gfdb`).
struct Checked {
    entries: usize,
    summary: String,
    bytes: Vec<u8>,
}

/// What became of one source.
enum Outcome {
    Unchanged(String),
    Replaced { old: Option<usize>, new: Checked, from: String, validators: Option<Validators> },
}

/// Fetches every source of the config's `[update]` table; see the module's documentation.
pub fn update(args: &UpdateArgs) -> Result<ExitCode, CliError> {
    let config = files::load_config(&args.config)?;
    let settings = &config.deployment.update;
    if settings.is_empty() {
        crate::output(&format!(
            "{} has no [update] table: nothing is fetched, and the files it names serve as they are\n",
            args.config.display()
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let agent = fetch::agent(settings.timeout_ms);
    let (mut replaced, mut failed) = (0, 0);
    for target in targets(&config, &args.config)? {
        let mut text = format!("{} {}\n", target.data.as_ref().map_or("?".into(), Data::name), target.file.display());
        match bring_up_to_date(&agent, &target, args) {
            Ok(Outcome::Unchanged(why)) => {
                let _ = writeln!(text, "  {why}");
            }
            Ok(Outcome::Replaced { old, new, from, validators }) => {
                let count = |entries: usize| thousands(entries as u64);
                let counts = match old {
                    Some(old) => format!("{} → {}", count(old), count(new.entries)),
                    None => count(new.entries),
                };
                let unit = target.data.as_ref().map_or("entries", Data::unit);
                let _ = writeln!(text, "  from {from}");
                if args.check {
                    let _ = writeln!(text, "  would be replaced: {counts} {unit} ({})", new.summary);
                } else {
                    match install(&target.file, &new.bytes) {
                        Ok(()) => {
                            let _ = writeln!(
                                text,
                                "  replaced: {counts} {unit} ({}); the previous copy is kept as {}",
                                new.summary,
                                beside(&target.file, PREVIOUS).display()
                            );
                            replaced += 1;
                            let kept =
                                validators.map_or(Ok(()), |validators| keep_validators(&target.file, &validators));
                            if let Err(error) = kept {
                                let _ = writeln!(
                                    text,
                                    "  warning: {}: the next update fetches the file whole",
                                    with_causes(&error)
                                );
                            }
                        }
                        Err(error) => {
                            failed += 1;
                            let _ = writeln!(text, "  failed, the file stays as it was: {}", with_causes(&error));
                        }
                    }
                }
            }
            Err(error) => {
                failed += 1;
                let _ = writeln!(text, "  failed, the file stays as it was: {}", with_causes(&error));
            }
        }
        crate::output(&text)?;
    }
    if replaced > 0 {
        reload(&args.control)?;
    }
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The sources of `[update]` and the `GeoIP.conf` editions, each with what the config reads
/// its file as.
fn targets(config: &Config, config_path: &Path) -> Result<Vec<Target>, CliError> {
    let settings = &config.deployment.update;
    let mut targets: Vec<Target> = settings
        .sources
        .iter()
        .map(|source| {
            let file = beside_config(config_path, &source.file);
            target(config, config_path, file, Origin::Url(source.clone()), source.max_size)
        })
        .collect();
    if let Some(named) = &settings.geoip_conf {
        let path = beside_config(config_path, named);
        let text = files::read(&path, files::MAX_CONFIG_BYTES)?;
        let conf = GeoipConf::parse(&path, &String::from_utf8_lossy(&text)).map_err(CliError::Update)?;
        for edition in &conf.editions {
            let origin = Origin::MaxMind(conf.clone(), edition.clone());
            targets.push(target(config, config_path, conf.file_of(edition), origin, None));
        }
    }
    Ok(targets)
}

fn target(config: &Config, config_path: &Path, file: PathBuf, origin: Origin, limit: Option<u64>) -> Target {
    let data = data_of(config, config_path, &file);
    let may_shrink = match &data {
        Some(Data::Feed { may_shrink, .. }) => *may_shrink,
        Some(Data::Country | Data::Asn) => config.policy.database_may_shrink,
        None => false,
    };
    Target { file, data, origin, limit, may_shrink }
}

/// What the config reads `file` as: its country database, one of its ASN databases, or a
/// feed's file.
fn data_of(config: &Config, config_path: &Path, file: &Path) -> Option<Data> {
    let same = |named: &str| absolute(&beside_config(config_path, named)) == absolute(file);
    let policy = &config.policy;
    if policy.database.as_deref().is_some_and(same) {
        return Some(Data::Country);
    }
    if policy.asn_database.iter().any(|named| same(named)) {
        return Some(Data::Asn);
    }
    policy
        .feeds
        .iter()
        .find(|feed| feed.files.iter().any(|named| same(named)))
        .map(|feed| Data::Feed { name: feed.name.clone(), may_shrink: feed.may_shrink })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn bring_up_to_date(agent: &fetch::Agent, target: &Target, args: &UpdateArgs) -> Result<Outcome, UpdateError> {
    let data = target.data.as_ref().ok_or_else(|| UpdateError::NotRead { file: target.file.clone() })?;
    let limit = target.limit.unwrap_or(data.cap());
    let current = files::read(&target.file, data.cap()).ok();
    let (bytes, from, validators) = match &target.origin {
        Origin::Url(source) if source.api == Api::Apiban => {
            let age =
                std::fs::metadata(&target.file).and_then(|meta| meta.modified()).ok().and_then(|at| at.elapsed().ok());
            match apiban::fetch(agent, &source.url, current.as_deref(), age.map(|age| age.as_secs()), limit)? {
                None => return Ok(Outcome::Unchanged("APIBAN has no newer bans".into())),
                Some((bytes, from)) => (bytes, from, None),
            }
        }
        Origin::Url(source) => {
            let stored = current.as_ref().and_then(|_| stored_validators(&target.file));
            match fetch_source(agent, source, stored.as_ref(), limit)? {
                (Fetched::NotModified, url) => {
                    return Ok(Outcome::Unchanged(format!("not modified since the last fetch (HTTP 304 from {url})")))
                }
                (Fetched::Body(bytes, validators), url) => (bytes, url, Some(validators)),
            }
        }
        Origin::MaxMind(conf, edition) => {
            match maxmind::fetch_edition(agent, conf, edition, current.as_deref(), limit)? {
                None => {
                    return Ok(Outcome::Unchanged(format!("{edition} is up to date (its MD5 is MaxMind's latest)")))
                }
                Some((bytes, date)) => (bytes, format!("MaxMind {edition} of {date} ({})", conf.host), None),
            }
        }
    };
    let new = check(data, bytes, &from, is_gfdb(&target.file))?;
    let old = current.and_then(|bytes| check(data, bytes, "", false).ok()).map(|checked| checked.entries);
    if let Some(old) = old.filter(|old| new.entries < old.div_ceil(2)) {
        if !(args.force || target.may_shrink) {
            return Err(UpdateError::Shrank {
                file: target.file.clone(),
                data: data.name(),
                old,
                new: new.entries,
                unit: data.unit(),
                accepted_by: if matches!(data, Data::Feed { .. }) {
                    "--force, or may_shrink = true in its [feeds] entry,"
                } else {
                    "--force, or database_may_shrink = true in [policy],"
                },
            });
        }
    }
    Ok(Outcome::Replaced { old, new, from, validators })
}

/// A source's URL for this month; a monthly file not yet published (404) falls back to last
/// month's, as DB-IP publishes on the first days of a month.
fn fetch_source(
    agent: &fetch::Agent,
    source: &UpdateSource,
    validators: Option<&Validators>,
    limit: u64,
) -> Result<(Fetched, String), UpdateError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let (year, month) = crate::calendar::month_of(now);
    let url = source.url_for(year, month);
    let get = |url: &str| fetch::fetch(agent, &Get { url, shown: url, validators, credentials: None, limit });
    match get(&url) {
        Err(UpdateError::Status { status: 404, .. }) if source.is_monthly() => {
            let (year, month) = if month == 1 { (year - 1, 12) } else { (year, month - 1) };
            let earlier = source.url_for(year, month);
            get(&earlier).map(|fetched| (fetched, earlier))
        }
        fetched => fetched.map(|fetched| (fetched, url)),
    }
}

/// Whether a file holds a compiled table, which the downloaded text is compiled into.
fn is_gfdb(file: &Path) -> bool {
    file.extension().is_some_and(|extension| extension == "gfdb")
}

/// Reads data as the daemon would read the file; with `compile`, the checked bytes are the
/// compiled table instead of the text.
fn check(data: &Data, bytes: Vec<u8>, from: &str, compile: bool) -> Result<Checked, UpdateError> {
    let invalid = |problem: String| UpdateError::Invalid { data: data.name(), problem };
    let input = [Input { name: from, bytes: &bytes }];
    match data {
        Data::Country => {
            let (table, provenance) = db::load(&input).map_err(|error| invalid(error.to_string()))?;
            let (v4, v6) = table.range_counts();
            let date = if provenance.date.is_empty() { String::new() } else { format!(" of {}", provenance.date) };
            let summary = format!("{v4} IPv4 and {v6} IPv6{date}");
            let bytes = if compile { encode_compiled(&table, &provenance) } else { bytes };
            Ok(Checked { entries: v4 + v6, summary, bytes })
        }
        Data::Asn => {
            let table = db::load_asn_layers(&input).map_err(|error| invalid(error.to_string()))?;
            let (v4, v6) = table.range_counts();
            let provenance = Provenance { date: String::new(), source: from.to_owned() };
            let summary = format!("{} autonomous systems", table.asns().len());
            let bytes = if compile { encode_compiled_asn(&table, &provenance) } else { bytes };
            Ok(Checked { entries: v4 + v6, summary, bytes })
        }
        Data::Feed { .. } => {
            let read = feed::parse(&bytes).map_err(|error| invalid(format!("{from}: {error}")))?;
            let (entries, summary) = (read.networks.len(), read.format.to_string());
            Ok(Checked { entries, summary, bytes })
        }
    }
}

/// The copy of a file as it was before the last update.
const PREVIOUS: &str = ".previous";
/// The server's validators for a file.
const VALIDATORS: &str = ".etag";

/// The file kept beside `file`, named by a suffix to its name.
fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn stored_validators(file: &Path) -> Option<Validators> {
    serde_json::from_slice(&files::read(&beside(file, VALIDATORS), 1 << 16).ok()?).ok()
}

/// The old file becomes the previous copy (a hard link, so the file itself is never missing),
/// then the new one replaces it whole; on an error the file is as it was.
fn install(file: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| UpdateError::Write { path, source }
    };
    if let Some(folder) = file.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(write_error(folder))?;
    }
    let previous = beside(file, PREVIOUS);
    if file.exists() {
        match std::fs::remove_file(&previous) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(write_error(&previous)(error)),
            _ => {}
        }
        std::fs::hard_link(file, &previous).map_err(write_error(&previous))?;
    }
    files::replace(file, bytes).map_err(write_error(file))
}

/// Keeps the validators that describe the file just installed, for the next conditional GET.
fn keep_validators(file: &Path, validators: &Validators) -> Result<(), UpdateError> {
    let path = beside(file, VALIDATORS);
    let text = serde_json::to_vec(validators).unwrap_or_default();
    files::replace(&path, &text).map_err(|source| UpdateError::Write { path, source })
}

/// Asks the running geofence to reload and says how it went; none running is no failure.
fn reload(socket: &Path) -> Result<(), CliError> {
    match control::ask_reload(socket) {
        Ok(reloaded) => crate::output(&format!("the running geofence reloaded: {}\n", reloaded.summary)),
        Err(ControlError::NotRunning { .. }) => crate::output(&format!(
            "no geofence answers on {}: it reads the new files when it starts\n",
            socket.display()
        )),
        Err(ControlError::Refused(reason)) => Err(CliError::ReloadRefused(reason)),
        Err(error) => Err(error.into()),
    }
}

/// An error and its causes on one line.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let _ = write!(text, ": {inner}");
        cause = inner.source();
    }
    text
}
