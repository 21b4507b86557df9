//! Reading the files a config names: the config itself and the country database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use geofence_core::db::parse_range_csv;
use geofence_core::{Config, CountryDb};

use crate::error::CliError;

/// Reads a whole text file, naming it in the error.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.to_owned(), source })
}

/// Reads and checks a config file; warnings are logged.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    let config =
        Config::parse(&read_text(path)?).map_err(|source| CliError::Config { path: path.to_owned(), source })?;
    for warning in &config.warnings {
        log::warn!("{}: {warning}", path.display());
    }
    Ok(config)
}

/// The database file to use: `--db` if given, else the config's `database`, taken relative to
/// the config file's folder.
pub fn database_path(override_path: Option<&Path>, config: &Config, config_path: &Path) -> Result<PathBuf, CliError> {
    if let Some(path) = override_path {
        return Ok(path.to_owned());
    }
    let named = config.database.as_deref().ok_or_else(|| CliError::NoDatabase { config: config_path.to_owned() })?;
    Ok(config_path.parent().unwrap_or(Path::new(".")).join(named))
}

/// Loads a range CSV country database.
pub fn load_database(path: &Path) -> Result<Arc<dyn CountryDb>, CliError> {
    let db =
        parse_range_csv(&read_text(path)?).map_err(|source| CliError::Database { path: path.to_owned(), source })?;
    let (v4, v6) = db.len();
    log::info!("country database {}: {v4} IPv4 and {v6} IPv6 ranges", path.display());
    Ok(Arc::new(db))
}
