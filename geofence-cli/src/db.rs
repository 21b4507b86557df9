//! `geofence db compile` and `geofence db info`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use geofence_core::db::{self, encode_compiled};

use crate::error::CliError;
use crate::files;

/// Subcommands of `geofence db`.
#[derive(clap::Subcommand)]
pub enum DbCommand {
    /// Compile one or more databases (any supported format, later ones overriding earlier ones)
    /// into geofence's own file, which loads in milliseconds.
    Compile {
        /// Inputs: MaxMind DB, range CSV, IP2Location DB1 CSV, GeoLite2 Country CSV (blocks and
        /// locations), RIR delegated statistics, or compiled files. The format is detected.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The compiled file to write (replaced atomically).
        #[arg(long, short)]
        output: PathBuf,
        /// The data's publication date, as its publisher gives it (e.g. 2026-06).
        #[arg(long)]
        date: Option<String>,
        /// Where the data comes from, with the attribution its licence requires.
        #[arg(long)]
        source: Option<String>,
    },
    /// Describe a database: format, source and date, ranges per family, countries. Without a
    /// file, the embedded database.
    Info {
        /// A database file of any supported format.
        file: Option<PathBuf>,
    },
}

/// Runs a `geofence db` subcommand.
pub fn db(command: &DbCommand) -> Result<ExitCode, CliError> {
    match command {
        DbCommand::Compile { inputs, output, date, source } => compile(inputs, output, date.clone(), source.clone()),
        DbCommand::Info { file } => info(file.as_deref()),
    }
}

fn compile(
    inputs: &[PathBuf],
    output: &Path,
    date: Option<String>,
    source: Option<String>,
) -> Result<ExitCode, CliError> {
    let (table, mut provenance) = files::load_database(inputs)?;
    provenance.date = date.unwrap_or(provenance.date);
    provenance.source = source.unwrap_or(provenance.source);
    let bytes = encode_compiled(&table, &provenance);
    let temporary = output.with_extension("partial");
    let write_error = |source| CliError::Write { path: output.to_owned(), source };
    std::fs::write(&temporary, &bytes).map_err(write_error)?;
    std::fs::rename(&temporary, output).map_err(write_error)?;
    crate::output(&format!("{}: {} bytes; {}\n", output.display(), bytes.len(), files::describe(&table, &provenance)))?;
    Ok(ExitCode::SUCCESS)
}

fn info(file: Option<&Path>) -> Result<ExitCode, CliError> {
    let paths: Vec<PathBuf> = file.map(Path::to_owned).into_iter().collect();
    let format = match file {
        Some(path) => {
            db::detect(&files::read(path, files::MAX_DATABASE_BYTES)?).map_err(CliError::Database)?.to_string()
        }
        None => "embedded geofence compiled database".to_owned(),
    };
    let (table, provenance) = files::load_database(&paths)?;
    let (v4, v6) = table.range_counts();
    let mut countries: Vec<String> = table.values().iter().map(|c| c.to_string()).collect();
    countries.sort();
    let mut out = std::io::stdout().lock();
    let name = file.map_or("(embedded)".to_owned(), |p| p.display().to_string());
    let lines = [
        format!("file:      {name}"),
        format!("format:    {format}"),
        format!("source:    {}", if provenance.source.is_empty() { "-" } else { &provenance.source }),
        format!("date:      {}", if provenance.date.is_empty() { "-" } else { &provenance.date }),
        format!("ranges:    {v4} IPv4, {v6} IPv6"),
        format!("memory:    {:.1} MiB", table.memory_bytes() as f64 / (1024.0 * 1024.0)),
        format!("countries: {} ({})", countries.len(), countries.join(" ")),
    ];
    for line in lines {
        writeln!(out, "{line}").map_err(CliError::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}
