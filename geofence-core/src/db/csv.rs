//! The range CSV format: `start,end,CC` a line, addresses written out.
//!
//! This is the layout of the DB-IP lite and ip-location-db country CSVs and the easiest format
//! for an admin's own overrides. `ZZ` (DB-IP's mark for reserved space) and an empty code mean
//! unknown, so such lines add nothing.

use std::net::IpAddr;

use super::{CountryRange, DbError, RangeDb};
use crate::CountryCode;

const UNKNOWN_MARKERS: [&str; 3] = ["ZZ", "", "-"];

/// Parses range CSV text into a [`RangeDb`]. Blank lines and lines starting with `#` are skipped.
///
/// ```
/// use geofence_core::db::{parse_range_csv, CountryDb};
/// let db = parse_range_csv("192.0.2.0,192.0.2.255,GB\n2001:db8::,2001:db8::ffff,ZZ\n")?;
/// assert_eq!(db.lookup("192.0.2.1".parse()?), Some("GB".parse()?));
/// assert_eq!(db.lookup("2001:db8::1".parse()?), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_range_csv(text: &str) -> Result<RangeDb, DbError> {
    let mut ranges = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at_line = |problem: String| DbError::Line { line: index + 1, problem };
        if let Some(range) = parse_line(line).map_err(at_line)? {
            ranges.push(range);
        }
    }
    RangeDb::new(ranges)
}

fn parse_line(line: &str) -> Result<Option<CountryRange>, String> {
    let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"')).collect();
    let [start, end, code] = fields[..] else {
        return Err(format!("expected 3 fields `start,end,CC`, found {}", fields.len()));
    };
    let start = address(start)?;
    let end = address(end)?;
    if UNKNOWN_MARKERS.contains(&code) {
        return Ok(None);
    }
    let country = code.parse::<CountryCode>().map_err(|e| e.to_string())?;
    Ok(Some(CountryRange { start, end, country }))
}

fn address(field: &str) -> Result<IpAddr, String> {
    field.parse().map_err(|_| format!("`{field}` is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::CountryDb;

    #[test]
    fn reads_both_families_and_skips_comments_and_unknown() {
        let db = parse_range_csv("# test\n\n192.0.2.0,192.0.2.255,GB\n\"2001:db8::\",\"2001:db8::ff\",\"DE\"\n198.51.100.0,198.51.100.255,ZZ\n").unwrap();
        assert_eq!(db.len(), (1, 1));
        assert_eq!(db.lookup("2001:db8::10".parse().unwrap()), Some("DE".parse().unwrap()));
        assert_eq!(db.lookup("198.51.100.1".parse().unwrap()), None);
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases = [
            ("192.0.2.0,192.0.2.255\n", "line 1: expected 3 fields `start,end,CC`, found 2"),
            ("\n192.0.2.0,192.0.2.x,GB\n", "line 2: `192.0.2.x` is not an IP address"),
            (
                "192.0.2.0,192.0.2.255,gb\n",
                "line 1: `gb` is not a country code: expected two upper-case letters such as `GB`",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(parse_range_csv(text).unwrap_err().to_string(), message);
        }
    }
}
