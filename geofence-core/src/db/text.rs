//! The text formats: range CSV (addresses written out or as integers), IP2Location LITE DB1, and
//! the registries' delegated statistics. Each yields (first, last, country) ranges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::DbError;
use crate::CountryCode;

/// A range a loader read, with the 1-based line it came from.
pub(crate) type Emit<'a> = dyn FnMut(usize, IpAddr, IpAddr, CountryCode) -> Result<(), DbError> + 'a;

/// The meaningful lines of a text file, numbered from 1: no blank lines, no `#` comments.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// A country code, or `None` for the markers databases use for "unknown".
pub(crate) fn country(field: &str) -> Result<Option<CountryCode>, String> {
    match field {
        "" | "-" | "ZZ" | "--" => Ok(None),
        code => code.parse::<CountryCode>().map(Some).map_err(|e| e.to_string()),
    }
}

pub(crate) fn unquote(field: &str) -> &str {
    let field = field.trim();
    field.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(field)
}

/// An address written out, or as a decimal integer: up to 2³²−1 an IPv4 address, above that an
/// IPv6 one (IPv4-mapped IPv6 integers then stand for IPv4, as IP2Location writes them).
pub(crate) fn address(field: &str) -> Result<IpAddr, String> {
    if let Ok(address) = field.parse::<IpAddr>() {
        return Ok(address);
    }
    let number: u128 = field.parse().map_err(|_| format!("`{field}` is not an IP address or an address number"))?;
    Ok(match u32::try_from(number) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(number)),
    })
}

pub(crate) fn at_line(line: usize) -> impl Fn(String) -> DbError {
    move |problem| DbError::Line { line, problem }
}

/// The number of the last line when the text does not end with a line break: the line a
/// download cut short would be.
pub(crate) fn unterminated_last_line(text: &str) -> Option<usize> {
    (!text.is_empty() && !text.ends_with('\n')).then(|| text.lines().count())
}

/// `start,end,CC`: DB-IP lite, ip-location-db (addresses or numbers), an admin's overrides.
pub(crate) fn range_csv(text: &str, emit: &mut Emit) -> Result<(), DbError> {
    let cut = unterminated_last_line(text);
    for (line, content) in lines(text) {
        let fields: Vec<&str> = content.split(',').map(unquote).collect();
        let [start, end, code] = fields[..] else {
            return Err(at_line(line)(format!("expected 3 fields `start,end,CC`, found {}", fields.len())));
        };
        emit_range(line, [start, end, code], Some(line) == cut, emit)?;
    }
    Ok(())
}

/// Reads `start`, `end` (addresses or numbers) and a country code, and emits the range unless
/// the code means unknown. An empty code on a last line without a line break is where a cut
/// download ends, not a deliberate "unknown" (databases write `ZZ` or `-`): an error.
fn emit_range(line: usize, [start, end, code]: [&str; 3], cut: bool, emit: &mut Emit) -> Result<(), DbError> {
    if cut && code.is_empty() {
        return Err(at_line(line)(
            "the file ends after the last comma, with no country and no line break: it looks cut short".into(),
        ));
    }
    let (start, end) = (address(start).map_err(at_line(line))?, address(end).map_err(at_line(line))?);
    match country(code).map_err(at_line(line))? {
        Some(country) => emit(line, start, end, country),
        None => Ok(()),
    }
}

/// IP2Location LITE DB1: `"from","to","CC","Country name"`, numbers, `-` for unknown.
pub(crate) fn ip2location(text: &str, emit: &mut Emit) -> Result<(), DbError> {
    let cut = unterminated_last_line(text);
    for (line, content) in lines(text) {
        let mut fields = content.splitn(4, ',').map(unquote);
        let (Some(start), Some(end), Some(code)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(at_line(line)("expected `\"from\",\"to\",\"CC\",\"name\"`".into()));
        };
        emit_range(line, [start, end, code], Some(line) == cut, emit)?;
    }
    Ok(())
}

/// RIR delegated(-extended) statistics: `registry|cc|type|start|value|date|status[|…]`. IPv4
/// records count addresses, IPv6 records give a prefix length; the version and summary lines,
/// ASN records and unassigned space are passed over.
pub(crate) fn rir(text: &str, emit: &mut Emit) -> Result<(), DbError> {
    for (line, content) in lines(text) {
        let fields: Vec<&str> = content.split('|').collect();
        if fields.len() < 7 || fields[1] == "*" || !matches!(fields[2], "ipv4" | "ipv6") {
            continue;
        }
        let (code, kind, start, value, status) = (fields[1], fields[2], fields[3], fields[4], fields[6]);
        if matches!(status, "available" | "reserved") {
            continue;
        }
        let Some(country) = country(&code.to_ascii_uppercase()).map_err(at_line(line))? else { continue };
        let start: IpAddr = start.parse().map_err(|_| at_line(line)(format!("`{start}` is not an IP address")))?;
        let value: u64 = value.parse().map_err(|_| at_line(line)(format!("`{value}` is not a number")))?;
        let end = match (start, kind) {
            (IpAddr::V4(first), "ipv4") if value >= 1 => u64::from(u32::from(first))
                .checked_add(value - 1)
                .and_then(|last| u32::try_from(last).ok())
                .map(|last| IpAddr::V4(Ipv4Addr::from(last))),
            (IpAddr::V6(first), "ipv6") if (1..=128).contains(&value) => {
                let host_bits = 128 - value as u32;
                let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
                Some(IpAddr::V6(Ipv6Addr::from(u128::from(first) | mask)))
            }
            _ => None,
        };
        let end = end.ok_or_else(|| at_line(line)(format!("`{kind}` record `{start}|{value}` is out of range")))?;
        emit(line, start, end, country)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(parser: fn(&str, &mut Emit) -> Result<(), DbError>, text: &str) -> Result<Vec<String>, DbError> {
        let mut out = Vec::new();
        parser(text, &mut |_, start, end, country| {
            out.push(format!("{start}-{end} {country}"));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn range_csv_reads_addresses_numbers_quotes_and_unknown_markers() {
        let text = "# c\n1.0.0.0,1.0.0.255,AU\n\"2001:db8::\",\"2001:db8::ff\",\"DE\"\n16777472,16778239,CN\n\
                    42540766411282592856903984951653826560,42540766411282592875350729025363378175,JP\n5.0.0.0,5.0.0.9,ZZ\n";
        assert_eq!(
            collect(range_csv, text).unwrap(),
            [
                "1.0.0.0-1.0.0.255 AU",
                "2001:db8::-2001:db8::ff DE",
                "1.0.1.0-1.0.3.255 CN",
                "2001:db8::-2001:db8::ffff:ffff:ffff:ffff JP"
            ]
        );
    }

    #[test]
    fn range_csv_errors_name_the_line() {
        let cases = [
            ("1.0.0.0,1.0.0.255\n", "line 1: expected 3 fields `start,end,CC`, found 2"),
            ("\n1.0.0.0,1.0.0.x,AU\n", "line 2: `1.0.0.x` is not an IP address or an address number"),
            (
                "1.0.0.0,1.0.0.255,au\n",
                "line 1: `au` is not a country code: expected two upper-case letters such as `GB`",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(collect(range_csv, text).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn a_file_cut_after_a_comma_is_an_error_and_an_unknown_marker_is_not() {
        let cut = "1.0.0.0,1.0.0.255,AU\n2001:db8::,2001:db8::ffff,";
        assert_eq!(
            collect(range_csv, cut).unwrap_err().to_string(),
            "line 2: the file ends after the last comma, with no country and no line break: it looks cut short"
        );
        assert_eq!(collect(range_csv, &format!("{cut}\n")).unwrap(), ["1.0.0.0-1.0.0.255 AU"]);
        assert_eq!(
            collect(range_csv, "1.0.0.0,1.0.0.255,AU\n2001:db8::,2001:db8::ffff,ZZ").unwrap(),
            ["1.0.0.0-1.0.0.255 AU"]
        );
        let lite = "\"16777216\",\"16777471\",\"US\",\"United States of America\"\n\"16777472\",\"16777727\",";
        assert!(collect(ip2location, lite).unwrap_err().to_string().starts_with("line 2: the file ends after"));
    }

    #[test]
    fn ip2location_maps_ipv4_mapped_numbers_and_skips_dashes() {
        let text = "\"0\",\"16777215\",\"-\",\"-\"\n\"16777216\",\"16777471\",\"US\",\"United States of America\"\n\
                    \"281470698520576\",\"281470698520831\",\"AU\",\"Australia, Commonwealth of\"\n";
        assert_eq!(collect(ip2location, text).unwrap(), ["1.0.0.0-1.0.0.255 US", "::ffff:1.0.0.0-::ffff:1.0.0.255 AU"]);
    }

    #[test]
    fn rir_reads_counts_and_prefixes_and_skips_the_rest() {
        let text = "2|apnic|20260601|3|19830613|20260531|+1000\napnic|*|ipv4|*|2|summary\n\
                    apnic|AU|ipv4|1.0.0.0|256|20110811|assigned\napnic|CN|ipv4|1.0.1.0|768|20110414|allocated\n\
                    apnic|JP|ipv6|2001:200::|35|19990813|allocated\napnic|JP|asn|173|1|20020801|allocated\n\
                    apnic||ipv4|1.0.4.0|1024||available\n";
        assert_eq!(
            collect(rir, text).unwrap(),
            ["1.0.0.0-1.0.0.255 AU", "1.0.1.0-1.0.3.255 CN", "2001:200::-2001:200:1fff:ffff:ffff:ffff:ffff:ffff JP"]
        );
        assert!(collect(rir, "arin|US|ipv4|255.255.255.0|512|20200101|allocated\n").is_err());
        assert!(collect(rir, "arin|US|ipv6|2001:db8::|129|20200101|allocated\n").is_err());
    }
}
