//! Reading the files a command names: configs and country databases.

use std::path::{Path, PathBuf};

use geofence_core::db::{self, CountryTable, Input, Provenance};
use std::sync::Arc;

use geofence_core::{Config, Policy, PolicyBuilder, Verdict};

use crate::error::CliError;

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read { path: path.to_owned(), source })
}

/// Reads and checks a config file; warnings are logged.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    let bytes = read(path)?;
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
pub fn load_policy(config_path: &Path, overrides: &[PathBuf]) -> Result<(Config, Policy), CliError> {
    let mut config = load_config(config_path)?;
    let (table, provenance) = load_database(&database_paths(overrides, &config, config_path))?;
    log::info!("country database: {}", describe(&table, &provenance));
    let builder = std::mem::replace(&mut config.policy.builder, PolicyBuilder::new(Verdict::Drop));
    let policy = builder.build(Arc::new(table))?;
    Ok((config, policy))
}

/// The database files to use: `--db` if given, else the config's `database`, taken relative to
/// the config file's folder; none means the embedded database.
pub fn database_paths(override_paths: &[PathBuf], config: &Config, config_path: &Path) -> Vec<PathBuf> {
    if !override_paths.is_empty() {
        return override_paths.to_vec();
    }
    let folder = config_path.parent().unwrap_or(Path::new("."));
    config.policy.database.iter().map(|named| folder.join(named)).collect()
}

/// Loads and layers country databases of any supported format; with none, the embedded one.
pub fn load_database(paths: &[PathBuf]) -> Result<(CountryTable, Provenance), CliError> {
    if paths.is_empty() {
        return embedded();
    }
    let contents = paths.iter().map(|path| read(path)).collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = paths.iter().map(|path| path.display().to_string()).collect();
    let inputs: Vec<Input> = names.iter().zip(&contents).map(|(name, bytes)| Input { name, bytes }).collect();
    db::load(&inputs).map_err(CliError::Database)
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
