//! ASN data in the free formats: the ip-location-db / DB-IP ASN lite CSV
//! (`start,end,asn,organisation`, addresses or integers, the organisation quoted when it holds a
//! comma), iptoasn's TSV (`range_start range_end AS_number country_code AS_description`), and
//! the MaxMind DB files of GeoLite2-ASN, GeoIP2-ISP and DB-IP ASN lite
//! (`autonomous_system_number`, `autonomous_system_organization`). AS 0 and iptoasn's `Not
//! routed` mean no AS.

use std::collections::HashMap;

use super::table::TableBuilder;
use super::text::{address, at_line, lines, unquote, unterminated_last_line};
use super::{decode_compiled_asn, is_mmdb, mmdb, DbError, Input, MAGIC};
use crate::asn::{Asn, AsnTable};

/// The ASN formats [`load_asn`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AsnFormat {
    /// `start,end,asn,organisation` (ip-location-db, DB-IP ASN lite).
    Csv,
    /// iptoasn's `ip2asn-combined.tsv`.
    Tsv,
    /// MaxMind DB: GeoLite2-ASN, GeoIP2-ISP, DB-IP ASN lite.
    Mmdb,
    /// geofence's own compiled file, of the ASN kind.
    Compiled,
}

impl std::fmt::Display for AsnFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AsnFormat::Csv => "ASN CSV (start,end,asn,organisation)",
            AsnFormat::Tsv => "iptoasn TSV",
            AsnFormat::Mmdb => "MaxMind DB (ASN)",
            AsnFormat::Compiled => "geofence compiled database (ASN)",
        })
    }
}

/// The format of an ASN file: MaxMind DB by its metadata marker, else the text format its
/// first meaningful line has.
pub fn detect_asn(bytes: &[u8]) -> Result<AsnFormat, DbError> {
    if bytes.starts_with(&MAGIC) {
        return Ok(AsnFormat::Compiled);
    }
    if is_mmdb(bytes) {
        return Ok(AsnFormat::Mmdb);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| DbError::UnknownFormat("binary, and not MaxMind DB: not an ASN database".into()))?;
    match lines(text).next() {
        Some((_, line)) if line.contains('\t') => Ok(AsnFormat::Tsv),
        Some((_, line)) if line.split(',').count() >= 4 => Ok(AsnFormat::Csv),
        Some((line, _)) => Err(DbError::Line {
            line,
            problem: "not an ASN database: expected `start,end,asn,organisation` or iptoasn's tab-separated lines"
                .into(),
        }),
        None => Err(DbError::UnknownFormat("the ASN file holds no ranges".into())),
    }
}

/// Reads an ASN file of either format, detected from its content.
pub fn load_asn(bytes: &[u8]) -> Result<AsnTable, DbError> {
    load_asn_layers(&[Input { name: "ASN data", bytes }]).map_err(|error| match error {
        DbError::Input { source, .. } => *source,
        other => other,
    })
}

/// Reads several ASN files, later ones overriding earlier ones where they overlap; errors name
/// the input.
pub fn load_asn_layers(inputs: &[Input]) -> Result<AsnTable, DbError> {
    if inputs.is_empty() {
        return Err(DbError::NoInput);
    }
    if let [only] = inputs {
        if only.bytes.starts_with(&MAGIC) {
            // A compiled file is already a table: loaded as it is, not rebuilt.
            let in_input = |source: DbError| DbError::Input { name: only.name.to_owned(), source: Box::new(source) };
            return decode_compiled_asn(only.bytes).map(|(table, _)| table).map_err(|e| in_input(e.into()));
        }
    }
    let mut builder = TableBuilder::new();
    let mut names: HashMap<Asn, Box<str>> = HashMap::new();
    for (layer, input) in inputs.iter().enumerate() {
        let in_input = |source: DbError| DbError::Input { name: input.name.to_owned(), source: Box::new(source) };
        let mut add = |line: usize, range: Range<'_>| -> Result<(), DbError> {
            let Some(asn) = range.asn else { return Ok(()) };
            builder
                .insert(layer as u32, range.first, range.last, asn)
                .map_err(|source| DbError::Range { line, source })?;
            if !range.organisation.is_empty() {
                names.entry(asn).or_insert_with(|| range.organisation.into());
            }
            Ok(())
        };
        read_ranges(input.bytes, &mut add).map_err(in_input)?;
    }
    Ok(AsnTable::new(builder.build(), names))
}

/// Gives `add` each range of a file of any ASN format, with its line (0 in an mmdb).
fn read_ranges(bytes: &[u8], add: &mut Add<'_>) -> Result<(), DbError> {
    match detect_asn(bytes)? {
        AsnFormat::Mmdb => mmdb::read_asn(bytes, &mut |first, last, asn, organisation| {
            add(0, Range { first, last, asn: Some(asn), organisation })
        }),
        AsnFormat::Compiled => {
            let (table, _) = decode_compiled_asn(bytes)?;
            for (first, last, asn) in table.ranges() {
                add(
                    0,
                    Range { first, last, asn: Some(asn), organisation: table.organisation(asn).unwrap_or_default() },
                )?;
            }
            Ok(())
        }
        // Detection checked the text formats are UTF-8.
        AsnFormat::Csv => csv(std::str::from_utf8(bytes).unwrap_or_default(), add),
        AsnFormat::Tsv => tsv(std::str::from_utf8(bytes).unwrap_or_default(), add),
    }
}

/// One line's range: `asn` is `None` for AS 0 / not routed.
struct Range<'a> {
    first: std::net::IpAddr,
    last: std::net::IpAddr,
    asn: Option<Asn>,
    organisation: &'a str,
}

type Add<'a> = dyn for<'r> FnMut(usize, Range<'r>) -> Result<(), DbError> + 'a;

/// An AS number field: `0` (or empty) is no AS.
fn asn_field(line: usize, field: &str) -> Result<Option<Asn>, DbError> {
    match field.trim() {
        "0" | "" => Ok(None),
        text => text.parse::<Asn>().map(Some).map_err(|error| at_line(line)(error.to_string())),
    }
}

fn csv(text: &str, add: &mut Add<'_>) -> Result<(), DbError> {
    let cut = unterminated_last_line(text);
    for (line, content) in lines(text) {
        let mut fields = content.splitn(4, ',');
        let (Some(start), Some(end), Some(asn), Some(organisation)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            let why = if Some(line) == cut {
                "the last line has no line break and too few fields: the file looks cut short"
            } else {
                "expected 4 fields `start,end,asn,organisation`"
            };
            return Err(at_line(line)(why.into()));
        };
        let range = Range {
            first: address(start.trim()).map_err(at_line(line))?,
            last: address(end.trim()).map_err(at_line(line))?,
            asn: asn_field(line, asn)?,
            organisation: unquote(organisation),
        };
        add(line, range)?;
    }
    Ok(())
}

fn tsv(text: &str, add: &mut Add<'_>) -> Result<(), DbError> {
    let cut = unterminated_last_line(text);
    for (line, content) in lines(text) {
        let fields: Vec<&str> = content.splitn(5, '\t').collect();
        let [start, end, asn, _country, description] = fields[..] else {
            let why = if Some(line) == cut {
                "the last line has no line break and too few fields: the file looks cut short"
            } else {
                "expected 5 tab-separated fields `range_start range_end AS_number country_code AS_description`"
            };
            return Err(at_line(line)(why.into()));
        };
        let asn = if description == "Not routed" { None } else { asn_field(line, asn)? };
        let range = Range {
            first: address(start.trim()).map_err(at_line(line))?,
            last: address(end.trim()).map_err(at_line(line))?,
            asn,
            organisation: description.trim(),
        };
        add(line, range)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> std::net::IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_ip_location_db_csv_reads_with_quoted_names_and_numbers() {
        let table = load_asn(
            b"1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n16778240,16779263,38803,Gtelecom Pty Ltd\n\
              2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,64500,Example\n203.0.113.0,203.0.113.255,0,\n",
        )
        .unwrap();
        assert_eq!(table.lookup(ip("1.0.0.1")), Some(Asn(13335)));
        assert_eq!(table.organisation(Asn(13335)), Some("Cloudflare, Inc."));
        assert_eq!(table.lookup(ip("1.0.4.9")), Some(Asn(38803)));
        assert_eq!(table.lookup(ip("2001:db8::1")), Some(Asn(64500)));
        assert_eq!(table.lookup(ip("203.0.113.9")), None, "AS 0 is no AS");
        assert_eq!(table.range_counts(), (2, 1));
        assert_eq!(table.matching_organisations("cloudFLARE"), [Asn(13335)]);
    }

    #[test]
    fn iptoasn_tsv_reads_and_not_routed_is_no_as() {
        let table = load_asn(
            b"1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
              192.0.2.0\t192.0.2.255\t64501\tZZ\tExample Transit\n",
        )
        .unwrap();
        assert_eq!(table.lookup(ip("1.0.0.9")), Some(Asn(13335)));
        assert_eq!(table.lookup(ip("1.0.2.9")), None);
        assert_eq!(table.organisation(Asn(64501)), Some("Example Transit"));
    }

    #[test]
    fn damage_is_refused_with_its_line() {
        let cases: [(&[u8], &str); 5] = [
            (b"1.0.0.0,1.0.0.255,13335,A\n1.0.1.0,1.0.1.255,AS-1,B\n", "line 2: `AS-1` is not an AS number"),
            (b"1.0.0.0,1.0.0.255,13335,A\nnot,an,address,B\n", "line 2: `not` is not an IP address"),
            (b"1.0.0.0,1.0.0.255,13335,A\n1.0.1.0,1.0.1", "line 2: the last line has no line break and too few fields"),
            (b"1.0.0.9,1.0.0.1,13335,A\n", "line 1: range 1.0.0.9-1.0.0.1 is backwards"),
            (b"just words\n", "line 1: not an ASN database"),
        ];
        for (bytes, expected) in cases {
            let error = load_asn(bytes).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error} (expected {expected})");
        }
        assert!(load_asn(b"\xff\xfe").is_err());
        assert!(load_asn(b"# only a comment\n").is_err());
    }

    /// GeoLite2-ASN's record (GeoIP2-ISP and DB-IP ASN lite carry the same two fields).
    #[derive(serde::Serialize)]
    struct AsnRecord {
        autonomous_system_number: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        autonomous_system_organization: Option<&'static str>,
    }

    fn asn_mmdb(kind: &str, networks: &[(&str, u32, Option<&'static str>)]) -> Vec<u8> {
        let mut writer = mmdb_writer::Writer::new(kind);
        for (network, number, organisation) in networks {
            let record = AsnRecord { autonomous_system_number: *number, autonomous_system_organization: *organisation };
            writer.insert(network.parse::<ipnet::IpNet>().unwrap(), &record).unwrap();
        }
        writer.to_bytes().unwrap()
    }

    #[test]
    fn a_geolite2_asn_mmdb_reads_with_its_organisations_and_as_0_is_no_as() {
        let bytes = asn_mmdb(
            "GeoLite2-ASN",
            &[
                ("192.0.2.0/25", 64500, Some("Example Hosting, LLC")),
                ("192.0.2.128/25", 0, None),
                ("203.0.113.0/24", 64501, None),
                ("2001:db8:1::/48", 64500, Some("Example Hosting, LLC")),
            ],
        );
        assert_eq!(detect_asn(&bytes).unwrap(), AsnFormat::Mmdb);
        let table = load_asn(&bytes).unwrap();
        assert_eq!(table.lookup(ip("192.0.2.9")), Some(Asn(64500)));
        assert_eq!(table.lookup(ip("192.0.2.200")), None, "AS 0 is no AS");
        assert_eq!(table.lookup(ip("203.0.113.1")), Some(Asn(64501)));
        assert_eq!(table.lookup(ip("2001:db8:1::1")), Some(Asn(64500)));
        assert_eq!(table.lookup(ip("2001:db8:2::1")), None);
        assert_eq!(table.organisation(Asn(64500)), Some("Example Hosting, LLC"));
        assert_eq!(table.organisation(Asn(64501)), None);
        assert_eq!(table.matching_organisations("example HOSTING"), [Asn(64500)]);
    }

    #[test]
    fn a_dbip_asn_mmdb_layers_under_a_csv_fix() {
        let dbip = asn_mmdb("DBIP-ASN-Lite (compat=GeoLite2-ASN)", &[("192.0.2.0/24", 64500, Some("Base"))]);
        let fix = b"192.0.2.128,192.0.2.255,64501,Fix\n";
        let table =
            load_asn_layers(&[Input { name: "dbip.mmdb", bytes: &dbip }, Input { name: "fix.csv", bytes: fix }])
                .unwrap();
        assert_eq!(
            (table.lookup(ip("192.0.2.1")), table.lookup(ip("192.0.2.200"))),
            (Some(Asn(64500)), Some(Asn(64501)))
        );
    }

    #[test]
    fn a_damaged_asn_mmdb_is_refused_naming_the_file() {
        let bytes = asn_mmdb("GeoLite2-ASN", &[("192.0.2.0/24", 64500, Some("Example"))]);
        let marker = bytes.windows(3).rposition(|w| w == b"\xab\xcd\xef").unwrap();
        let mut damaged = bytes.clone();
        damaged[..marker].fill(0xff);
        let error = load_asn_layers(&[Input { name: "asn.mmdb", bytes: &damaged }]).unwrap_err().to_string();
        assert!(error.starts_with("asn.mmdb: MaxMind DB: "), "{error}");
        let mut country = mmdb_writer::Writer::new("GeoLite2-Country");
        #[derive(serde::Serialize)]
        struct Flat {
            country_code: &'static str,
        }
        country.insert("192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(), &Flat { country_code: "GB" }).unwrap();
        assert_eq!(
            load_asn(&country.to_bytes().unwrap()).unwrap_err().to_string(),
            "MaxMind DB: no network has an autonomous_system_number: not an ASN database (its type is \
             `GeoLite2-Country`)"
        );
    }

    #[test]
    fn a_later_input_overrides_an_earlier_one() {
        let base = Input { name: "base.csv", bytes: b"192.0.2.0,192.0.2.255,64500,Base\n" };
        let fix = Input { name: "fix.csv", bytes: b"192.0.2.128,192.0.2.255,64501,Fix\n" };
        let table = load_asn_layers(&[base, fix]).unwrap();
        assert_eq!(
            (table.lookup(ip("192.0.2.1")), table.lookup(ip("192.0.2.200"))),
            (Some(Asn(64500)), Some(Asn(64501)))
        );
        let bad = Input { name: "bad.csv", bytes: b"x\n" };
        assert!(load_asn_layers(&[bad]).unwrap_err().to_string().starts_with("bad.csv: line 1"));
    }
}
