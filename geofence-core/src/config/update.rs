//! The `[update]` table: where `geofence update` fetches the databases and feeds the policy
//! reads. Only the settings are here; fetching them is the command's.

use serde::Deserialize;
use toml::Spanned;

use super::{duration_ms, ConfigError, Locator};

/// The `[update]` table, checked.
///
/// ```toml
/// [update]
/// timeout = "5m"                     # the most one source may take, download and all
/// geoip_conf = "/etc/GeoIP.conf"     # MaxMind's EditionIDs, fetched as geoipupdate would
///
/// [[update.source]]
/// url = "https://download.db-ip.com/free/dbip-country-lite-{year}-{month}.csv.gz"
/// file = "/var/lib/geofence/dbip-country-lite.csv"   # a file the policy reads
/// max_size_mib = 256                 # the most read of it, compressed or not (default: the reader's)
///
/// [[update.source]]
/// url = "https://apiban.org/api/MYKEY/banned"
/// file = "/var/lib/geofence/apiban.json"
/// api = "apiban"                     # page by page, and on from the last ID next time
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateSettings {
    /// The sources, in the order they are fetched.
    pub sources: Vec<UpdateSource>,
    /// A MaxMind `GeoIP.conf` whose EditionIDs are fetched too, as written (relative: to the config).
    pub geoip_conf: Option<String>,
    /// The most one source may take, in milliseconds.
    pub timeout_ms: u64,
}

impl UpdateSettings {
    /// Without a `timeout`, five minutes: the free databases are tens of MiB.
    pub const DEFAULT_TIMEOUT_MS: u64 = 5 * 60 * 1000;

    /// Whether the table asks anything to be fetched.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.geoip_conf.is_none()
    }
}

/// One source: a URL and the file it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateSource {
    /// The URL, which may hold `{year}` and `{month}` (see [`UpdateSource::url_for`]).
    pub url: String,
    /// The file it replaces, as written (relative: to the config); the policy must read it, as
    /// its `database`, one of its `asn_database` files or a feed's file.
    pub file: String,
    /// The most bytes read of it, compressed or not; `None`: the reader's own cap.
    pub max_size: Option<u64>,
    /// How the URL is asked.
    pub api: Api,
}

/// How a source's URL is asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Api {
    /// One GET for the whole file.
    #[default]
    Whole,
    /// APIBAN's paged `banned` call (`api = "apiban"`): page after page, `banned/<ID>` with the
    /// last page's ID, until there is nothing newer; the next update goes on from the file's ID.
    Apiban,
}

impl UpdateSource {
    /// The URL for a month: DB-IP's monthly files are named by it (`2026-12`).
    ///
    /// ```
    /// let config = geofence_core::Config::parse(
    ///     "default = \"accept\"\n[[update.source]]\nurl = \"https://example.org/c-{year}-{month}.csv.gz\"\nfile = \"c.csv\"\n",
    /// )?;
    /// assert_eq!(config.deployment.update.sources[0].url_for(2026, 3), "https://example.org/c-2026-03.csv.gz");
    /// # Ok::<(), geofence_core::config::ConfigError>(())
    /// ```
    pub fn url_for(&self, year: i32, month: u8) -> String {
        self.url.replace("{year}", &format!("{year:04}")).replace("{month}", &format!("{month:02}"))
    }

    /// Whether the URL names a month, so that a month not yet published can fall back to the one before.
    pub fn is_monthly(&self) -> bool {
        self.url.contains("{month}")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdate {
    timeout: Option<Spanned<String>>,
    geoip_conf: Option<String>,
    #[serde(default, rename = "source")]
    sources: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Spanned<String>,
    file: Spanned<String>,
    max_size_mib: Option<Spanned<u32>>,
    api: Option<Spanned<String>>,
}

/// The most `max_size_mib` may say: the largest file geofence reads is 1 GiB.
const MAX_SIZE_MIB: u32 = 1024;

pub(super) fn settings(at: &Locator, raw: Option<&RawUpdate>) -> Result<UpdateSettings, ConfigError> {
    let Some(raw) = raw else { return Ok(UpdateSettings::default()) };
    let timeout_ms = match &raw.timeout {
        Some(text) => duration_ms(at, text)?,
        None => UpdateSettings::DEFAULT_TIMEOUT_MS,
    };
    let sources = raw.sources.iter().map(|source| self::source(at, source)).collect::<Result<_, _>>()?;
    Ok(UpdateSettings { sources, geoip_conf: raw.geoip_conf.clone(), timeout_ms })
}

fn source(at: &Locator, raw: &RawSource) -> Result<UpdateSource, ConfigError> {
    let url = raw.url.get_ref();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(at.at(&raw.url, format!("`{url}` is not an http:// or https:// URL"), None));
    }
    let unknown = url.replace("{year}", "").replace("{month}", "");
    if let Some(at_brace) = unknown.find(['{', '}']) {
        let rest = &unknown[at_brace..];
        return Err(at.at(
            &raw.url,
            format!("`{url}` holds a placeholder other than {{year}} and {{month}}: `{rest}`"),
            None,
        ));
    }
    if raw.file.get_ref().is_empty() {
        return Err(at.at(&raw.file, "an empty file name".into(), None));
    }
    let max_size = match &raw.max_size_mib {
        Some(mib) if !(1..=MAX_SIZE_MIB).contains(mib.get_ref()) => {
            return Err(at.at(mib, format!("max_size_mib = {} is not 1 to {MAX_SIZE_MIB}", mib.get_ref()), None))
        }
        Some(mib) => Some(u64::from(*mib.get_ref()) << 20),
        None => None,
    };
    let api = match raw.api.as_ref().map(|api| (api, api.get_ref().as_str())) {
        None => Api::Whole,
        Some((_, "apiban")) => Api::Apiban,
        Some((api, other)) => {
            return Err(at.at(api, format!("unknown api `{other}`"), Some("the one known is `apiban`".into())))
        }
    };
    Ok(UpdateSource { url: url.clone(), file: raw.file.get_ref().clone(), max_size, api })
}
