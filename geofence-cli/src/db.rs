//! `geofence db compile` and `geofence db info`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use geofence_core::db::{self, encode_compiled, encode_compiled_asn, Input, Provenance};
use geofence_core::AsnTable;

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
        /// The inputs are ASN data (ip-location-db or DB-IP CSV, iptoasn TSV, GeoLite2-ASN or
        /// DB-IP ASN mmdb, compiled ASN files), compiled into an ASN file.
        #[arg(long)]
        asn: bool,
    },
    /// Describe a database: format, source and date, ranges per family, countries or
    /// autonomous systems. Without a file, the embedded database.
    Info {
        /// A database file of any supported format.
        file: Option<PathBuf>,
        /// The file is ASN data (a compiled ASN file says so itself); without a file, the
        /// embedded ASN table.
        #[arg(long)]
        asn: bool,
    },
}

/// Runs a `geofence db` subcommand.
pub fn db(command: &DbCommand) -> Result<ExitCode, CliError> {
    match command {
        DbCommand::Compile { inputs, output, date, source, asn: false } => {
            compile(inputs, output, date.clone(), source.clone())
        }
        DbCommand::Compile { inputs, output, date, source, asn: true } => compile_asn(
            inputs,
            output,
            Provenance { date: date.clone().unwrap_or_default(), source: source.clone().unwrap_or_default() },
        ),
        DbCommand::Info { file, asn } => {
            let read = file.as_deref().map(|path| files::read(path, files::MAX_DATABASE_BYTES)).transpose()?;
            let file = file.as_deref().zip(read.as_deref());
            if *asn || file.is_some_and(|(_, bytes)| db::holds_asns(bytes)) {
                info_asn(file)
            } else {
                info(file)
            }
        }
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
    replace(output, &bytes)?;
    crate::output(&format!("{}: {} bytes; {}\n", output.display(), bytes.len(), files::describe(&table, &provenance)))?;
    Ok(ExitCode::SUCCESS)
}

fn compile_asn(inputs: &[PathBuf], output: &Path, provenance: Provenance) -> Result<ExitCode, CliError> {
    let table = files::load_asn_database(inputs)?;
    let bytes = encode_compiled_asn(&table, &provenance);
    replace(output, &bytes)?;
    let (v4, v6) = table.range_counts();
    crate::output(&format!(
        "{}: {} bytes; {v4} IPv4 and {v6} IPv6 ranges, {} autonomous systems\n",
        output.display(),
        bytes.len(),
        table.asns().len()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn replace(output: &Path, bytes: &[u8]) -> Result<(), CliError> {
    files::replace(output, bytes).map_err(|source| CliError::Write { path: output.to_owned(), source })
}

/// `db info` of a country database: a file read (its name and bytes), or the embedded one.
fn info(file: Option<(&Path, &[u8])>) -> Result<ExitCode, CliError> {
    let (table, format, provenance) = match file {
        Some((path, bytes)) => {
            let format = db::detect(bytes).map_err(CliError::Database)?.to_string();
            let name = path.display().to_string();
            let (table, provenance) = db::load(&[Input { name: &name, bytes }]).map_err(CliError::Database)?;
            (table, format, provenance)
        }
        None => {
            let (table, provenance) = files::load_database(&[])?;
            (table, "embedded geofence compiled database".to_owned(), provenance)
        }
    };
    let mut countries: Vec<String> = table.values().iter().map(|c| c.to_string()).collect();
    countries.sort();
    let description = Description { format, provenance, ranges: table.range_counts(), memory: table.memory_bytes() };
    print_description(file, &description, &format!("countries: {} ({})", countries.len(), countries.join(" ")))
}

/// `db info` of an ASN database: a file read (its name and bytes), or the embedded one.
fn info_asn(file: Option<(&Path, &[u8])>) -> Result<ExitCode, CliError> {
    let (table, format, provenance): (AsnTable, String, Provenance) = match file {
        Some((path, bytes)) => {
            let format = db::detect_asn(bytes).map_err(CliError::Database)?;
            let (table, provenance) = match format {
                // Decoded once, for its table and the provenance it carries.
                db::AsnFormat::Compiled => db::decode_compiled_asn(bytes).map_err(|e| CliError::Database(e.into()))?,
                _ => {
                    let name = path.display().to_string();
                    let table = db::load_asn_layers(&[Input { name: &name, bytes }]).map_err(CliError::Database)?;
                    (table, Provenance::default())
                }
            };
            (table, format.to_string(), provenance)
        }
        None => {
            let (table, provenance) = files::embedded_asn()?;
            (table, "embedded geofence compiled ASN database".to_owned(), provenance)
        }
    };
    let named = table.asns().iter().filter(|asn| table.organisation(**asn).is_some()).count();
    let description = Description { format, provenance, ranges: table.range_counts(), memory: table.memory_bytes() };
    print_description(file, &description, &format!("systems:   {} ({named} with an organisation)", table.asns().len()))
}

/// What `db info` says of any database before the line of its own kind.
struct Description {
    format: String,
    provenance: Provenance,
    ranges: (usize, usize),
    memory: usize,
}

fn print_description(
    file: Option<(&Path, &[u8])>,
    description: &Description,
    last_line: &str,
) -> Result<ExitCode, CliError> {
    let Description { format, provenance, ranges: (v4, v6), memory } = description;
    let name = file.map_or("(embedded)".to_owned(), |(path, _)| path.display().to_string());
    let lines = [
        format!("file:      {name}"),
        format!("format:    {format}"),
        format!("source:    {}", if provenance.source.is_empty() { "-" } else { &provenance.source }),
        format!("date:      {}", if provenance.date.is_empty() { "-" } else { &provenance.date }),
        format!("ranges:    {v4} IPv4, {v6} IPv6"),
        format!("memory:    {:.1} MiB", *memory as f64 / (1024.0 * 1024.0)),
        last_line.to_owned(),
    ];
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").map_err(CliError::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}
