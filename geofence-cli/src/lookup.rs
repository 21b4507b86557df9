//! `geofence lookup`: the country (and, given ASN data, the autonomous system) of each
//! address, for people and pipelines.

use std::io::{BufRead, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use geofence_core::db::CountryTable;
use geofence_core::{AsnTable, CountryDb};

use crate::error::CliError;
use crate::files;

/// Arguments of `geofence lookup`.
#[derive(clap::Args)]
pub struct LookupArgs {
    /// Country databases (any supported format; later ones override earlier ones). Default: the
    /// embedded DB-IP database.
    #[arg(long = "db")]
    databases: Vec<PathBuf>,
    /// ASN databases (the ip-location-db or DB-IP ASN CSV, iptoasn's TSV, GeoLite2-ASN or DB-IP
    /// ASN mmdb, compiled; repeat it to layer several). Default: the embedded ASN table.
    /// Each line gives the AS number and its organisation after the country.
    #[arg(long = "asn-db", value_name = "FILE")]
    asn_databases: Vec<PathBuf>,
    /// Addresses to look up; without any, one a line from standard input.
    addresses: Vec<String>,
}

/// Prints `IP CC AS13335 Cloudflare, Inc.` a line (`-` for what is unknown; the AS part only
/// when there is ASN data: `--asn-db` or the embedded table). A bad address is reported on standard error with its line number; the
/// rest are still answered, and the exit status is then 1.
pub fn lookup(args: &LookupArgs) -> Result<ExitCode, CliError> {
    let (table, _) = files::load_database(&args.databases)?;
    let asn = files::asn_database_or_embedded(&args.asn_databases)?.map(|(table, _)| table);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut bad = 0usize;
    let mut answer = |number: usize, text: &str, out: &mut BufWriter<_>| -> Result<(), CliError> {
        let text = text.trim();
        match text.parse::<IpAddr>() {
            Ok(address) => {
                let network = asn.as_ref().map(|asn| format!(" {}", network(asn, address))).unwrap_or_default();
                writeln!(out, "{text} {}{network}", country(&table, address)).map_err(CliError::Output)
            }
            Err(_) => {
                bad += 1;
                eprintln!("geofence: line {number}: `{text}` is not an IP address");
                Ok(())
            }
        }
    };
    if args.addresses.is_empty() {
        for (index, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.map_err(CliError::Output)?;
            if !line.trim().is_empty() {
                answer(index + 1, &line, &mut out)?;
            }
        }
    } else {
        for (index, text) in args.addresses.iter().enumerate() {
            answer(index + 1, text, &mut out)?;
        }
    }
    out.flush().map_err(CliError::Output)?;
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn country(table: &CountryTable, address: IpAddr) -> String {
    table.lookup(address).map_or("-".to_owned(), |code| code.to_string())
}

/// `AS13335 Cloudflare, Inc.`, `AS64500` when the data names no organisation, `-` when no AS.
fn network(table: &AsnTable, address: IpAddr) -> String {
    match table.lookup(address) {
        Some(asn) => match table.organisation(asn) {
            Some(name) => format!("{asn} {name}"),
            None => asn.to_string(),
        },
        None => "-".to_owned(),
    }
}
