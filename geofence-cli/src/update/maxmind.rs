//! MaxMind's databases, as geoipupdate fetches them: its `GeoIP.conf`, the update API's
//! metadata (each edition's date and MD5), then the edition's `.tar.gz` of that date.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::Deserialize;

use super::fetch::{self, Fetched, Get};
use super::UpdateError;

/// The parts of a `GeoIP.conf` geofence uses; geoipupdate's other settings are left to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeoipConf {
    /// `AccountID`.
    pub account_id: String,
    /// `LicenseKey`.
    pub license_key: String,
    /// `EditionIDs`, e.g. GeoLite2-Country GeoLite2-ASN.
    pub editions: Vec<String>,
    /// `DatabaseDirectory`, where each edition is `<EditionID>.mmdb`.
    pub directory: PathBuf,
    /// `Host`, with its scheme (https:// unless the file names one).
    pub host: String,
}

impl GeoipConf {
    /// geoipupdate's defaults on Debian.
    const DEFAULT_DIRECTORY: &str = "/var/lib/GeoIP";
    const DEFAULT_HOST: &str = "updates.maxmind.com";

    /// Reads a `GeoIP.conf`: `Key value` lines, `#` comments. A missing account, key or edition
    /// is an error at the file; a line without a value, at its line.
    pub fn parse(path: &Path, text: &str) -> Result<GeoipConf, UpdateError> {
        let error = |line: usize, problem: String| UpdateError::GeoipConf { path: path.to_owned(), line, problem };
        let (mut account_id, mut license_key, mut editions) = (None, None, Vec::new());
        let (mut directory, mut host) = (PathBuf::from(Self::DEFAULT_DIRECTORY), Self::DEFAULT_HOST.to_owned());
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once(char::is_whitespace).map_or((line, ""), |(k, v)| (k, v.trim()));
            if value.is_empty() {
                return Err(error(number + 1, format!("`{key}` has no value")));
            }
            match key {
                "AccountID" | "UserId" => account_id = Some(value.to_owned()),
                "LicenseKey" => license_key = Some(value.to_owned()),
                "EditionIDs" | "ProductIds" => editions = value.split_whitespace().map(str::to_owned).collect(),
                "DatabaseDirectory" => directory = PathBuf::from(value),
                "Host" => host = value.to_owned(),
                _ => {}
            }
        }
        let missing = |key: &str| error(0, format!("it names no {key}"));
        let host = if host.contains("://") { host } else { format!("https://{host}") };
        Ok(GeoipConf {
            account_id: account_id.ok_or_else(|| missing("AccountID"))?,
            license_key: license_key.ok_or_else(|| missing("LicenseKey"))?,
            editions: Some(editions).filter(|editions| !editions.is_empty()).ok_or_else(|| missing("EditionIDs"))?,
            directory,
            host: host.trim_end_matches('/').to_owned(),
        })
    }

    /// Where geoipupdate keeps an edition.
    pub fn file_of(&self, edition: &str) -> PathBuf {
        self.directory.join(format!("{edition}.mmdb"))
    }
}

#[derive(Deserialize)]
struct Metadata {
    databases: Vec<Edition>,
}

#[derive(Deserialize)]
struct Edition {
    edition_id: String,
    date: String,
    md5: String,
}

/// An edition's latest build, or `None` when `current` (the file it would replace) is it.
pub fn fetch_edition(
    agent: &fetch::Agent,
    conf: &GeoipConf,
    edition: &str,
    current: Option<&[u8]>,
    limit: u64,
) -> Result<Option<(Vec<u8>, String)>, UpdateError> {
    let credentials = Some((conf.account_id.as_str(), conf.license_key.as_str()));
    let url = format!("{}/geoip/updates/metadata?edition_id={edition}", conf.host);
    let Fetched::Body(answer, _) =
        fetch::fetch(agent, &Get { url: &url, shown: &url, validators: None, credentials, limit: 1 << 16 })?
    else {
        return Err(UpdateError::Answer { url, problem: "304 to a request that asked no validator".into() });
    };
    let metadata: Metadata = serde_json::from_slice(&answer)
        .map_err(|error| UpdateError::Answer { url: url.clone(), problem: error.to_string() })?;
    let latest =
        metadata.databases.into_iter().find(|listed| listed.edition_id == edition).ok_or_else(|| {
            UpdateError::Answer { url: url.clone(), problem: format!("it lists no edition {edition}") }
        })?;
    if current.is_some_and(|bytes| format!("{:x}", Md5::digest(bytes)) == latest.md5) {
        return Ok(None);
    }
    let date = latest.date.replace('-', "");
    let url = format!("{}/geoip/databases/{edition}/download?date={date}&suffix=tar.gz", conf.host);
    match fetch::fetch(agent, &Get { url: &url, shown: &url, validators: None, credentials, limit })? {
        Fetched::Body(bytes, _) => Ok(Some((bytes, latest.date))),
        Fetched::NotModified => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_geoip_conf_is_read_as_geoipupdate_reads_it() {
        let text = "# GeoIP.conf\nAccountID 123456\nLicenseKey abcDEF  # the key\n\
                    EditionIDs GeoLite2-Country GeoLite2-ASN\nDatabaseDirectory /srv/geoip\nHost 127.0.0.1:8080/\n";
        let conf = GeoipConf::parse(Path::new("GeoIP.conf"), text).unwrap();
        assert_eq!((conf.account_id.as_str(), conf.license_key.as_str()), ("123456", "abcDEF"));
        assert_eq!(conf.editions, ["GeoLite2-Country", "GeoLite2-ASN"]);
        assert_eq!(conf.file_of("GeoLite2-ASN"), Path::new("/srv/geoip/GeoLite2-ASN.mmdb"));
        assert_eq!(conf.host, "https://127.0.0.1:8080");
        let defaults =
            GeoipConf::parse(Path::new("c"), "AccountID 1\nLicenseKey k\nEditionIDs GeoLite2-Country\n").unwrap();
        assert_eq!(
            (defaults.host.as_str(), defaults.directory.as_path()),
            ("https://updates.maxmind.com", Path::new("/var/lib/GeoIP"))
        );

        let problem = |text: &str| GeoipConf::parse(Path::new("/etc/GeoIP.conf"), text).unwrap_err().to_string();
        assert_eq!(problem("AccountID 1\nLicenseKey\n"), "/etc/GeoIP.conf, line 2: `LicenseKey` has no value");
        assert_eq!(problem("AccountID 1\nLicenseKey k\n"), "/etc/GeoIP.conf: it names no EditionIDs");
    }
}
