//! Country databases: where an address is registered.
//!
//! [`CountryDb`] is the one thing a [`Policy`](crate::Policy) asks of a database, so any source
//! can be plugged in. [`load`] reads every common free format (MaxMind DB, range CSV,
//! IP2Location LITE DB1, GeoLite2 Country CSV, RIR delegated statistics, and geofence's own
//! compiled file), detecting the format from the content, and layers several inputs into one
//! [`CountryTable`]. Loaders take bytes the caller has read; nothing here touches a file.

mod asn;
mod compiled;
mod geolite2;
mod mmdb;
mod table;
mod text;

pub use self::asn::{detect_asn, load_asn, load_asn_layers, AsnFormat};
pub use self::compiled::{
    decode as decode_compiled, decode_asn as decode_compiled_asn, encode as encode_compiled,
    encode_asn as encode_compiled_asn, holds_asns, CompiledError, Provenance, MAGIC,
};
pub use self::table::{RangeError, RangeTable, TableBuilder, TableValue};

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::CountryCode;

/// Answers which country an address belongs to.
///
/// Implementations are shared by every packet-deciding thread, so they are `Send + Sync`, and
/// `lookup` must not block: it sits on the per-packet path. They are `Any` so that a policy can
/// recognise a [`CountryTable`] and call it directly, with its lookup inlined.
pub trait CountryDb: Any + Send + Sync {
    /// The country `address` is registered in, or `None` when the database does not know.
    fn lookup(&self, address: IpAddr) -> Option<CountryCode>;

    /// The country of an IPv4 address. The policy calls the per-family lookups: an address
    /// alone travels in a register, where an `IpAddr` handed to a trait object is copied through
    /// memory, and reading that copy back can wait for every earlier instruction to finish.
    fn lookup_v4(&self, address: Ipv4Addr) -> Option<CountryCode> {
        self.lookup(IpAddr::V4(address))
    }

    /// The country of an IPv6 address (see [`CountryDb::lookup_v4`]).
    fn lookup_v6(&self, address: Ipv6Addr) -> Option<CountryCode> {
        self.lookup(IpAddr::V6(address))
    }
}

/// The compiled country table every loader produces.
pub type CountryTable = RangeTable<CountryCode>;

impl CountryDb for CountryTable {
    #[inline]
    fn lookup(&self, address: IpAddr) -> Option<CountryCode> {
        self.get(address)
    }

    #[inline]
    fn lookup_v4(&self, address: Ipv4Addr) -> Option<CountryCode> {
        self.get_v4(address)
    }

    #[inline]
    fn lookup_v6(&self, address: Ipv6Addr) -> Option<CountryCode> {
        self.get_v6(address)
    }
}

/// Why country data could not be loaded. Nothing is half-built: a load that fails returns no
/// table at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A line of a text database is not what its format says.
    #[error("line {line}: {problem}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong, in words.
        problem: String,
    },
    /// A range is backwards, mixes families, or there are too many distinct values.
    #[error("line {line}: {source}")]
    Range {
        /// 1-based line number (0 for binary formats).
        line: usize,
        /// What is wrong.
        source: RangeError,
    },
    /// A compiled file is damaged or foreign.
    #[error(transparent)]
    Compiled(#[from] CompiledError),
    /// A MaxMind DB file is damaged or not of a country schema.
    #[error("MaxMind DB: {0}")]
    Mmdb(String),
    /// The content is none of the formats geofence reads.
    #[error("not a country database geofence reads ({0})")]
    UnknownFormat(String),
    /// A GeoLite2 blocks file came without the Locations file that names its countries.
    #[error("a GeoLite2 Blocks file needs its Locations file (GeoLite2-Country-Locations-en.csv) among the inputs")]
    MissingLocations,
    /// Nothing to load.
    #[error("no input")]
    NoInput,
    /// One of several inputs failed.
    #[error("{name}: {source}")]
    Input {
        /// The input's name, as the caller gave it (usually the file name).
        name: String,
        /// What is wrong with it.
        source: Box<DbError>,
    },
}

/// The formats [`load`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// geofence's compiled file.
    Compiled,
    /// MaxMind DB (.mmdb).
    Mmdb,
    /// `start,end,CC` with addresses or numbers.
    RangeCsv,
    /// IP2Location LITE DB1 CSV.
    Ip2Location,
    /// GeoLite2 Country CSV, a Blocks file.
    GeoLite2Blocks,
    /// GeoLite2 Country CSV, the Locations file.
    GeoLite2Locations,
    /// RIR delegated(-extended) statistics.
    Rir,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Compiled => "geofence compiled database",
            Format::Mmdb => "MaxMind DB",
            Format::RangeCsv => "range CSV",
            Format::Ip2Location => "IP2Location LITE DB1 CSV",
            Format::GeoLite2Blocks => "GeoLite2 Country CSV (blocks)",
            Format::GeoLite2Locations => "GeoLite2 Country CSV (locations)",
            Format::Rir => "RIR delegated statistics",
        })
    }
}

/// The metadata marker every MaxMind DB file carries near its end.
const MMDB_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The MaxMind DB specification caps the metadata section at 128 KiB.
const MMDB_METADATA_MAX: usize = 128 * 1024;

/// Whether the bytes end with a MaxMind DB's metadata section.
pub(crate) fn is_mmdb(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(MMDB_METADATA_MAX)..];
    tail.windows(MMDB_MARKER.len()).any(|window| window == MMDB_MARKER)
}

/// Tells the format from the content, not the file name.
pub fn detect(bytes: &[u8]) -> Result<Format, DbError> {
    if bytes.starts_with(&MAGIC) {
        return Ok(Format::Compiled);
    }
    if is_mmdb(bytes) {
        return Ok(Format::Mmdb);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DbError::UnknownFormat("binary, and not MaxMind DB".into()))?;
    let Some((_, first)) = text::lines(text).next() else {
        return Err(DbError::UnknownFormat("empty".into()));
    };
    Ok(if first.contains('|') {
        Format::Rir
    } else if first.starts_with("network,") {
        Format::GeoLite2Blocks
    } else if first.starts_with("geoname_id,") {
        Format::GeoLite2Locations
    } else if first.starts_with('"') {
        Format::Ip2Location
    } else {
        Format::RangeCsv
    })
}

/// One input to [`load`]: a name for messages and the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// How errors name this input (usually its path).
    pub name: &'a str,
    /// The whole file.
    pub bytes: &'a [u8],
}

/// Loads one or more inputs into one table; later inputs override earlier ones wherever they
/// have data (a local override CSV after a downloaded database). A single compiled file is
/// taken as it is, provenance included.
///
/// ```
/// use geofence_core::db::{load, CountryDb, Input};
/// let downloaded = Input { name: "dbip.csv", bytes: b"192.0.2.0,192.0.2.255,US\n" };
/// let overrides = Input { name: "local.csv", bytes: b"192.0.2.64,192.0.2.127,GB\n" };
/// let (table, _) = load(&[downloaded, overrides])?;
/// assert_eq!(table.lookup("192.0.2.1".parse()?), Some("US".parse()?));
/// assert_eq!(table.lookup("192.0.2.70".parse()?), Some("GB".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load(inputs: &[Input]) -> Result<(CountryTable, Provenance), DbError> {
    let formats = inputs
        .iter()
        .map(|input| detect(input.bytes).map_err(|e| in_input(input, e)))
        .collect::<Result<Vec<_>, _>>()?;
    match (inputs, formats.as_slice()) {
        ([], _) => return Err(DbError::NoInput),
        ([only], [Format::Compiled]) => return decode_compiled(only.bytes).map_err(|e| in_input(only, e.into())),
        _ => {}
    }
    let locations = geolite2_locations(inputs, &formats)?;
    let mut builder = TableBuilder::new();
    for (layer, (input, format)) in inputs.iter().zip(&formats).enumerate() {
        read_input(input, *format, locations.as_ref(), layer as u32, &mut builder).map_err(|e| in_input(input, e))?;
    }
    let source = inputs.iter().zip(&formats).map(|(input, format)| format!("{} ({format})", input.name));
    Ok((builder.build(), Provenance { date: String::new(), source: source.collect::<Vec<_>>().join(", ") }))
}

/// Reads one input as `format`, without detection (for GeoLite2 blocks, `locations` is the
/// Locations file). The loaders [`load`] uses, one at a time: what the fuzz targets call.
pub fn read_as(format: Format, bytes: &[u8], locations: Option<&[u8]>) -> Result<CountryTable, DbError> {
    let countries = match locations {
        Some(text) => {
            let text = std::str::from_utf8(text).map_err(|_| DbError::UnknownFormat("not UTF-8".into()))?;
            Some(geolite2::locations(text)?)
        }
        None => None,
    };
    let mut builder = TableBuilder::new();
    read_input(&Input { name: "input", bytes }, format, countries.as_ref(), 0, &mut builder)?;
    Ok(builder.build())
}

fn in_input(input: &Input, error: DbError) -> DbError {
    DbError::Input { name: input.name.to_owned(), source: Box::new(error) }
}

fn geolite2_locations(
    inputs: &[Input],
    formats: &[Format],
) -> Result<Option<std::collections::HashMap<u64, CountryCode>>, DbError> {
    let mut locations = None;
    for (input, format) in inputs.iter().zip(formats) {
        if *format == Format::GeoLite2Locations {
            let text = std::str::from_utf8(input.bytes)
                .map_err(|_| in_input(input, DbError::UnknownFormat("not UTF-8".into())))?;
            locations = Some(geolite2::locations(text).map_err(|e| in_input(input, e))?);
        }
    }
    if locations.is_none() && formats.contains(&Format::GeoLite2Blocks) {
        return Err(DbError::MissingLocations);
    }
    Ok(locations)
}

fn read_input(
    input: &Input,
    format: Format,
    locations: Option<&std::collections::HashMap<u64, CountryCode>>,
    layer: u32,
    builder: &mut TableBuilder<CountryCode>,
) -> Result<(), DbError> {
    let mut emit = |line: usize, first: IpAddr, last: IpAddr, country: CountryCode| {
        builder.insert(layer, first, last, country).map_err(|source| DbError::Range { line, source })
    };
    let text = || std::str::from_utf8(input.bytes).map_err(|_| DbError::UnknownFormat("not UTF-8".into()));
    match format {
        Format::Compiled => {
            let (table, _) = decode_compiled(input.bytes)?;
            let result = table.ranges().try_for_each(|(first, last, country)| emit(0, first, last, country));
            result
        }
        Format::Mmdb => mmdb::read(input.bytes, &mut emit),
        Format::RangeCsv => text::range_csv(text()?, &mut emit),
        Format::Ip2Location => text::ip2location(text()?, &mut emit),
        Format::Rir => text::rir(text()?, &mut emit),
        Format::GeoLite2Blocks => geolite2::blocks(text()?, locations.ok_or(DbError::MissingLocations)?, &mut emit),
        Format::GeoLite2Locations => Ok(()),
    }
}

/// The compiled DB-IP IP to Country Lite table of the geofence-data crate (feature
/// `embedded-db`, on by default).
///
/// IP Geolocation by DB-IP (<https://db-ip.com>), licensed CC BY 4.0: whoever shows results
/// from it must show that attribution. Its date is in the returned [`Provenance`]. The table
/// is an ordinary [`CountryTable`]: layer overlays over it with [`TableBuilder::layer`].
#[cfg(feature = "embedded-db")]
pub fn embedded() -> Result<(CountryTable, Provenance), CompiledError> {
    decode_compiled(geofence_data::COUNTRY_LITE)
}

/// The embedded ASN table (ip-location-db's RouteViews + DB-IP data, CC BY 4.0: see the
/// geofence-data crate), with its provenance.
#[cfg(feature = "embedded-asn")]
pub fn embedded_asn() -> Result<(crate::AsnTable, Provenance), CompiledError> {
    decode_compiled_asn(geofence_data::ASN_LITE)
}

/// Parses range CSV text (`start,end,CC` a line) into a table: the simplest way to build one.
///
/// ```
/// use geofence_core::db::{parse_range_csv, CountryDb};
/// let db = parse_range_csv("192.0.2.0,192.0.2.255,GB\n2001:db8::,2001:db8::ffff,ZZ\n")?;
/// assert_eq!(db.lookup("192.0.2.1".parse()?), Some("GB".parse()?));
/// assert_eq!(db.lookup("2001:db8::1".parse()?), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_range_csv(text: &str) -> Result<CountryTable, DbError> {
    let mut builder = TableBuilder::new();
    text::range_csv(text, &mut |line, first, last, country| {
        builder.insert(0, first, last, country).map_err(|source| DbError::Range { line, source })
    })?;
    Ok(builder.build())
}

#[cfg(test)]
mod tests;
