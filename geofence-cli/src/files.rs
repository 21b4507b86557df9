//! Reading the files a command names: configs, country and ASN databases, feeds.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use geofence_core::db::{self, CountryTable, Input, Provenance};
use std::sync::Arc;

use geofence_core::asn::Resolved;
use geofence_core::config::FeedSource;
use geofence_core::{feed, AsnTable, Config, Policy, PolicyBuilder, PrefixList, Verdict};

use crate::error::CliError;

/// The largest config file read: a policy of thousands of rules and lists is far smaller.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// The largest database file read: the biggest free ones (GeoLite2 City, ip-location-db's ASN
/// CSV) are well under a tenth of it.
pub const MAX_DATABASE_BYTES: u64 = 1 << 30;
/// The largest feed file read: a million networks a line each take under 50 MiB.
pub const MAX_FEED_BYTES: u64 = 256 << 20;

/// Reads a whole regular file of at most `limit` bytes, naming it in the error. A FIFO, a
/// device or a directory is refused at once, without blocking (a FIFO's open would otherwise
/// wait for a writer, and /dev/zero would be read until memory ran out).
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, CliError> {
    let error = |source| CliError::Read { path: path.to_owned(), source };
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(error)?;
    let kind = file.metadata().map_err(error)?.file_type();
    if !kind.is_file() {
        return Err(CliError::NotAFile { path: path.to_owned(), kind: file_kind(kind) });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(error)?;
    if bytes.len() as u64 > limit {
        return Err(CliError::TooBig { path: path.to_owned(), limit });
    }
    Ok(bytes)
}

fn file_kind(kind: std::fs::FileType) -> &'static str {
    match kind {
        kind if kind.is_dir() => "a directory",
        kind if kind.is_fifo() => "a FIFO",
        kind if kind.is_char_device() => "a character device",
        kind if kind.is_block_device() => "a block device",
        kind if kind.is_socket() => "a socket",
        _ => "not a regular file",
    }
}

/// Writes `bytes` to `file` whole or not at all: a temporary file in its folder, synced, then
/// renamed over it, so a reader (or a crash) sees the old file or the new one, never half.
pub fn replace(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temporary = tempfile::NamedTempFile::new_in(folder)?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    temporary.persist(file).map_err(|error| error.error)?;
    std::fs::File::open(folder)?.sync_all()
}

/// Reads and checks a config file; warnings are logged.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    let bytes = read(path, MAX_CONFIG_BYTES)?;
    let text = String::from_utf8_lossy(&bytes);
    let config = Config::parse(&text).map_err(|error| CliError::Config { path: path.to_owned(), error })?;
    for warning in &config.policy.warnings {
        log::warn!("{}: {warning}", path.display());
    }
    Ok(config)
}

/// Reads a config and its databases (`overrides` first, else the config's, else the embedded
/// one) and builds the policy: all or nothing. The config's policy part has gone into the
/// policy; its deployment part is returned.
pub fn load_policy(config_path: &Path, overrides: &[PathBuf]) -> Result<Loaded, CliError> {
    let mut config = load_config(config_path)?;
    let country_paths = database_paths(overrides, &config, config_path);
    let (table, provenance) = load_database(&country_paths)?;
    log::info!("country database: {}", describe(&table, &provenance));
    let (v4, v6) = table.range_counts();
    let mut sources = vec![DataSource::new("country", provenance, v4 + v6, &country_paths)];
    let mut builder = std::mem::replace(&mut config.policy.builder, PolicyBuilder::new(Verdict::Drop));
    if !config.policy.asn_database.is_empty() || builder.asks_asn() {
        let paths = asn_paths(&config, config_path);
        if let Some((asn, provenance)) = asn_database_or_embedded(&paths)? {
            log::info!("ASN database: {}", describe_asn(&asn, &provenance));
            let (asn_v4, asn_v6) = asn.range_counts();
            sources.push(DataSource::new("asn", provenance, asn_v4 + asn_v6, &paths));
            builder = builder.asn_database(Arc::new(asn));
        }
    }
    let feeds;
    (builder, feeds) = add_feeds(builder, config_path, &config.policy.feeds)?;
    for (feed, source) in feeds.iter().zip(&config.policy.feeds) {
        let paths: Vec<PathBuf> = source.files.iter().map(|named| beside_config(config_path, named)).collect();
        sources.push(DataSource::new(&format!("feed {}", feed.name), named_files(&paths), feed.networks, &paths));
    }
    let policy = builder.build(Arc::new(table))?;
    log_organisation_patterns(&policy);
    let (asn_v4, asn_v6) = policy.asn_database().range_counts();
    Ok(Loaded { config, policy, sizes: Sizes { ranges: v4 + v6, asn_ranges: asn_v4 + asn_v6, feeds }, sources })
}

/// Reads each feed (named relative to the config) into a list of `builder`, and says how big
/// each was; any bad file refuses the whole.
pub fn add_feeds(
    mut builder: PolicyBuilder,
    config_path: &Path,
    sources: &[FeedSource],
) -> Result<(PolicyBuilder, Vec<FeedSize>), CliError> {
    let mut sizes = Vec::new();
    for source in sources {
        let (list, networks) = load_feed(config_path, source)?;
        sizes.push(FeedSize {
            name: source.name.clone(),
            networks,
            distinct: list.len(),
            may_shrink: source.may_shrink,
        });
        builder = builder.list(source.name.clone(), list);
    }
    Ok((builder, sizes))
}

/// Reads a feed's files (named relative to the config) into one list, and how many networks
/// they held; any bad file refuses the whole feed.
fn load_feed(config_path: &Path, source: &FeedSource) -> Result<(PrefixList, usize), CliError> {
    let mut networks = Vec::new();
    for named in &source.files {
        let path = beside_config(config_path, named);
        let read =
            feed::parse(&read(&path, MAX_FEED_BYTES)?).map_err(|error| CliError::Feed { path: path.clone(), error })?;
        log::info!("feed `{}`: {} ({}): {} networks", source.name, path.display(), read.format, read.networks.len());
        if read.networks.is_empty() {
            log::warn!("feed `{}`: {} lists no network", source.name, path.display());
        }
        networks.extend(read.networks);
    }
    let count = networks.len();
    Ok((networks.into_iter().collect(), count))
}

/// What each `as_organisation` pattern resolved to; a pattern that named no system is a
/// warning, since its rule then asks only the numbers it lists.
pub fn log_organisation_patterns(policy: &Policy) {
    for (named_none, line) in organisation_lines(policy) {
        if named_none {
            log::warn!("{line}");
        } else {
            log::info!("{line}");
        }
    }
}

/// A line for each `as_organisation` pattern, and whether it named no system.
pub fn organisation_lines(policy: &Policy) -> Vec<(bool, String)> {
    let line = |resolved: &Resolved| {
        let (rule, pattern) = (&resolved.rule, &resolved.pattern);
        match resolved.asns.as_slice() {
            [] => (
                true,
                format!("rule `{rule}`: as_organisation {pattern:?} names no autonomous system in the ASN database"),
            ),
            asns => {
                let listed: Vec<String> = asns.iter().map(ToString::to_string).collect();
                let systems = if asns.len() == 1 { "system" } else { "systems" };
                (
                    false,
                    format!(
                        "rule `{rule}`: as_organisation {pattern:?}: {} {systems}: {}",
                        asns.len(),
                        listed.join(" ")
                    ),
                )
            }
        }
    };
    policy.organisation_patterns().iter().map(line).collect()
}

/// The ASN database files a config names, relative to its folder.
pub fn asn_paths(config: &Config, config_path: &Path) -> Vec<PathBuf> {
    config.policy.asn_database.iter().map(|named| beside_config(config_path, named)).collect()
}

/// The ASN table to use, and where it came from: the files named, else the embedded one when
/// it is built in, else none.
pub fn asn_database_or_embedded(paths: &[PathBuf]) -> Result<Option<(AsnTable, Provenance)>, CliError> {
    if !paths.is_empty() {
        return load_asn_database(paths).map(|table| Some((table, named_files(paths))));
    }
    if cfg!(feature = "embedded-asn") {
        let (table, provenance) = embedded_asn()?;
        return Ok(Some((table, Provenance { source: format!("embedded, {}", provenance.source), ..provenance })));
    }
    Ok(None)
}

/// Data from files that carry no provenance of their own: named by their paths, undated.
fn named_files(paths: &[PathBuf]) -> Provenance {
    let names: Vec<String> = paths.iter().map(|path| path.display().to_string()).collect();
    Provenance { date: String::new(), source: names.join(", ") }
}

/// Loads and layers ASN databases (any format `db::load_asn` reads).
pub fn load_asn_database(paths: &[PathBuf]) -> Result<AsnTable, CliError> {
    let (names, contents) = read_databases(paths)?;
    let inputs: Vec<Input> = names.iter().zip(&contents).map(|(name, bytes)| Input { name, bytes }).collect();
    db::load_asn_layers(&inputs).map_err(CliError::Database)
}

/// A one-line description of a loaded ASN table for logs.
pub fn describe_asn(table: &AsnTable, provenance: &Provenance) -> String {
    let (v4, v6) = table.range_counts();
    let date = if provenance.date.is_empty() { String::new() } else { format!(" {}", provenance.date) };
    format!("{}{date}: {v4} IPv4 and {v6} IPv6 ranges, {} autonomous systems", provenance.source, table.asns().len())
}

/// A config with its policy built.
pub struct Loaded {
    /// The config; its policy builder has gone into `policy`.
    pub config: Config,
    /// The policy.
    pub policy: Policy,
    /// How big its data is, to compare a reload's against.
    pub sizes: Sizes,
    /// Its databases and feeds, for `geofence status`.
    pub sources: Vec<DataSource>,
}

/// A database or feed a policy was built from.
#[derive(Clone, Debug)]
pub struct DataSource {
    /// `country`, `asn` or `feed NAME`.
    pub kind: String,
    /// Where it came from.
    pub source: String,
    /// Its publisher's date (2026-06), else the newest of its files' modification dates
    /// (2026-11-28), else empty.
    pub date: String,
    /// Its ranges or networks.
    pub entries: usize,
}

impl DataSource {
    fn new(kind: &str, provenance: Provenance, entries: usize, files: &[PathBuf]) -> DataSource {
        let date = match provenance.date.is_empty() {
            true => newest_modification(files).map(crate::calendar::date_of).unwrap_or_default(),
            false => provenance.date,
        };
        DataSource { kind: kind.to_owned(), source: provenance.source, date, entries }
    }
}

/// The newest modification time of `files`, in seconds since the Unix epoch.
fn newest_modification(files: &[PathBuf]) -> Option<u64> {
    files
        .iter()
        .filter_map(|file| std::fs::metadata(file).and_then(|found| found.modified()).ok())
        .filter_map(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| since.as_secs())
        .max()
}

/// How big a policy's data is: a reload whose data shrank far is more likely cut short than
/// right.
#[derive(Clone, Debug, Default)]
pub struct Sizes {
    /// The ranges of the country database.
    pub ranges: usize,
    /// The ranges of the ASN database (0 when the policy has none).
    pub asn_ranges: usize,
    /// Each feed's networks.
    pub feeds: Vec<FeedSize>,
}

/// How many networks a feed's files held, and whether it may shrink.
#[derive(Clone, Debug)]
pub struct FeedSize {
    /// The feed's name.
    pub name: String,
    /// The networks its files listed.
    pub networks: usize,
    /// The distinct IPv4 and IPv6 networks among them.
    pub distinct: (usize, usize),
    /// Its `may_shrink` setting.
    pub may_shrink: bool,
}

/// The database files to use: `--db` if given, else the config's `database`, taken relative to
/// the config file's folder; none means the embedded database.
pub fn database_paths(override_paths: &[PathBuf], config: &Config, config_path: &Path) -> Vec<PathBuf> {
    if !override_paths.is_empty() {
        return override_paths.to_vec();
    }
    config.policy.database.iter().map(|named| beside_config(config_path, named)).collect()
}

/// A file a config names, taken relative to the config file's folder.
pub fn beside_config(config_path: &Path, named: &str) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join(named)
}

/// The whole of each file (each within the database size cap), named for errors by its path.
fn read_databases(paths: &[PathBuf]) -> Result<(Vec<String>, Vec<Vec<u8>>), CliError> {
    let contents = paths.iter().map(|path| read(path, MAX_DATABASE_BYTES)).collect::<Result<Vec<_>, _>>()?;
    Ok((paths.iter().map(|path| path.display().to_string()).collect(), contents))
}

/// Loads and layers country databases of any supported format; with none, the embedded one.
pub fn load_database(paths: &[PathBuf]) -> Result<(CountryTable, Provenance), CliError> {
    if paths.is_empty() {
        return embedded();
    }
    let (names, contents) = read_databases(paths)?;
    let inputs: Vec<Input> = names.iter().zip(&contents).map(|(name, bytes)| Input { name, bytes }).collect();
    db::load(&inputs).map_err(CliError::Database)
}

/// The embedded ASN table and what it says about itself.
#[cfg(feature = "embedded-asn")]
pub fn embedded_asn() -> Result<(AsnTable, Provenance), CliError> {
    db::embedded_asn().map_err(|source| CliError::Database(source.into()))
}

/// No ASN table is built in: ASN rules need `asn_database`.
#[cfg(not(feature = "embedded-asn"))]
pub fn embedded_asn() -> Result<(AsnTable, Provenance), CliError> {
    Err(CliError::NoAsnDatabase)
}

#[cfg(feature = "embedded-db")]
fn embedded() -> Result<(CountryTable, Provenance), CliError> {
    db::embedded().map_err(|source| CliError::Database(source.into()))
}

#[cfg(not(feature = "embedded-db"))]
fn embedded() -> Result<(CountryTable, Provenance), CliError> {
    Err(CliError::NoDatabase)
}

/// A one-line description of a loaded database for logs.
pub fn describe(table: &CountryTable, provenance: &Provenance) -> String {
    let (v4, v6) = table.range_counts();
    let date = if provenance.date.is_empty() { String::new() } else { format!(", {}", provenance.date) };
    format!("{}{date}: {v4} IPv4 and {v6} IPv6 ranges", provenance.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        std::fs::write(&path, [b'x'; 11]).unwrap();
        assert_eq!(read(&path, 11).unwrap().len(), 11);
        let error = read(&path, 10).unwrap_err();
        assert!(matches!(error, CliError::TooBig { limit: 10, .. }), "{error}");
    }
}
