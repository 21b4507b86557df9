//! MaxMind's GeoLite2 Country CSV: Blocks-IPv4 and Blocks-IPv6 files name networks by GeoNames
//! id; the Locations file maps each id to a country code.

use std::collections::HashMap;
use std::net::IpAddr;

use ip_network::IpNetwork;

use super::text::{country, lines, Emit};
use super::DbError;
use crate::CountryCode;

/// The country of each GeoNames id: `geoname_id,locale_code,continent_code,continent_name,
/// country_iso_code,…`. Continent-only rows have no country.
pub(crate) fn locations(text: &str) -> Result<HashMap<u64, CountryCode>, DbError> {
    let mut countries = HashMap::new();
    for (line, content) in lines(text).skip(1) {
        let fields: Vec<&str> = content.splitn(6, ',').collect();
        let (Some(id), Some(code)) = (fields.first(), fields.get(4)) else {
            return Err(DbError::Line {
                line,
                problem: "expected `geoname_id,locale_code,…,country_iso_code,…`".into(),
            });
        };
        let id = id.parse().map_err(|_| DbError::Line { line, problem: format!("`{id}` is not a GeoNames id") })?;
        if let Some(code) = country(code.trim_matches('"')).map_err(|problem| DbError::Line { line, problem })? {
            countries.insert(id, code);
        }
    }
    Ok(countries)
}

/// `network,geoname_id,registered_country_geoname_id,…`: the country of `geoname_id`, falling
/// back to the registered country's when the network has no location of its own.
pub(crate) fn blocks(text: &str, countries: &HashMap<u64, CountryCode>, emit: &mut Emit) -> Result<(), DbError> {
    for (line, content) in lines(text).skip(1) {
        let at = |problem: String| DbError::Line { line, problem };
        let fields: Vec<&str> = content.split(',').collect();
        let (Some(network), Some(located), Some(registered)) = (fields.first(), fields.get(1), fields.get(2)) else {
            return Err(at("expected `network,geoname_id,registered_country_geoname_id,…`".into()));
        };
        let network: IpNetwork = network.parse().map_err(|_| at(format!("`{network}` is not a CIDR network")))?;
        let found = [located, registered]
            .into_iter()
            .filter(|id| !id.is_empty())
            .map(|id| id.parse::<u64>().map_err(|_| at(format!("`{id}` is not a GeoNames id"))))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find_map(|id| countries.get(&id).copied());
        if let Some(country) = found {
            let (first, last) = bounds(network);
            emit(line, first, last, country)?;
        }
    }
    Ok(())
}

/// The first and last address of a network.
pub(crate) fn bounds(network: IpNetwork) -> (IpAddr, IpAddr) {
    match network {
        IpNetwork::V4(n) => (IpAddr::V4(n.network_address()), IpAddr::V4(n.broadcast_address())),
        IpNetwork::V6(n) => {
            let host_bits = 128 - u32::from(n.netmask());
            let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
            let first = u128::from(n.network_address());
            (IpAddr::V6(first.into()), IpAddr::V6((first | mask).into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCATIONS: &str =
        "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union\n\
        2635167,en,EU,Europe,GB,\"United Kingdom\",0\n1814991,en,AS,Asia,CN,China,0\n6255148,en,EU,Europe,,,0\n";

    #[test]
    fn blocks_use_the_location_then_the_registered_country() {
        let countries = locations(LOCATIONS).unwrap();
        assert_eq!(countries.len(), 2);
        let blocks_text = "network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,is_anycast\n\
            192.0.2.0/25,2635167,2635167,,0,0,\n192.0.2.128/25,6255148,1814991,,0,0,\n198.51.100.0/24,,,,1,0,\n2001:db8::/32,1814991,,,0,0,\n";
        let mut out = Vec::new();
        blocks(blocks_text, &countries, &mut |_, first, last, country| {
            out.push(format!("{first}-{last} {country}"));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            out,
            [
                "192.0.2.0-192.0.2.127 GB",
                "192.0.2.128-192.0.2.255 CN",
                "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff CN"
            ]
        );
    }

    #[test]
    fn a_bad_network_names_its_line() {
        let countries = locations(LOCATIONS).unwrap();
        let error = blocks(
            "network,geoname_id,registered_country_geoname_id\n192.0.2.1/24,2635167,\n",
            &countries,
            &mut |_, _, _, _| Ok(()),
        );
        assert_eq!(error.unwrap_err().to_string(), "line 2: `192.0.2.1/24` is not a CIDR network");
    }
}
