//! MaxMind DB files read through the `maxminddb` crate: country (GeoLite2/GeoIP2 Country and
//! City, DB-IP lite, ip-location-db) and ASN (GeoLite2-ASN, GeoIP2-ISP, DB-IP ASN lite). The
//! whole tree is walked once at load time and turned into ranges, so no packet is ever looked
//! up in the mmdb itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};

use serde::Deserialize;

use maxminddb::LookupResult;

use super::text::{country, Emit};
use super::DbError;
use crate::asn::Asn;
use crate::CountryCode;

/// Networks a walk may meet for each node the file's tree can hold. A tree of n nodes has at
/// most n + 1 leaves; the IPv4 part of an IPv6 tree is walked twice (as IPv4, then skipped in
/// the IPv6 walk), and the slack covers aliases. A damaged tree whose nodes share children
/// yields twice as many networks a level, so it is stopped here, after work its size bounds.
const NETWORKS_PER_NODE: usize = 4;

/// The country fields of every schema geofence reads: GeoIP2 `country.iso_code` (falling back
/// to `registered_country.iso_code`), and the flat `country_code` of DB-IP and ip-location-db.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Named<'a>>,
    #[serde(borrow)]
    registered_country: Option<Named<'a>>,
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Named<'a> {
    iso_code: Option<&'a str>,
}

impl<'a> Record<'a> {
    fn code(&self) -> Option<&'a str> {
        let iso = |named: &Option<Named<'a>>| named.as_ref().and_then(|n| n.iso_code);
        iso(&self.country).or(iso(&self.registered_country)).or(self.country_code)
    }
}

/// The ASN fields of GeoLite2-ASN, GeoIP2-ISP and DB-IP's ASN lite.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<&'a str>,
}

fn mmdb_error(error: impl std::fmt::Display) -> DbError {
    DbError::Mmdb(error.to_string())
}

/// Reads a country mmdb: every network with a country.
pub(crate) fn read(bytes: &[u8], emit: &mut Emit) -> Result<(), DbError> {
    let mut value = |lookup: &Lookup, network: &str| -> Result<Option<CountryCode>, DbError> {
        let record: Option<Record> = lookup.decode().map_err(mmdb_error)?;
        match record.as_ref().and_then(Record::code) {
            Some(code) => country(code).map_err(|problem| DbError::Mmdb(format!("network {network}: {problem}"))),
            None => Ok(None),
        }
    };
    guarded(|| walk(bytes, &mut value, &mut |first, last, code| emit(0, first, last, code)))
}

/// An ASN range read: first, last, the system and its organisation (empty: not given).
pub(crate) type EmitAsn<'a> = dyn FnMut(IpAddr, IpAddr, Asn, &str) -> Result<(), DbError> + 'a;

/// Reads an ASN mmdb: every network with an AS other than 0, and each system's organisation.
pub(crate) fn read_asn(bytes: &[u8], emit: &mut EmitAsn) -> Result<(), DbError> {
    let mut names: HashMap<Asn, Box<str>> = HashMap::new();
    let mut value = |lookup: &Lookup, _: &str| -> Result<Option<Asn>, DbError> {
        let record: Option<AsnRecord> = lookup.decode().map_err(mmdb_error)?;
        let Some(record) = record else { return Ok(None) };
        let asn = record.autonomous_system_number.filter(|number| *number != 0).map(Asn);
        if let (Some(asn), Some(organisation)) = (asn, record.autonomous_system_organization) {
            names.entry(asn).or_insert_with(|| organisation.into());
        }
        Ok(asn)
    };
    let mut ranges = Vec::new();
    let mut keep = |first, last, asn| {
        ranges.push((first, last, asn));
        Ok(())
    };
    guarded(|| walk(bytes, &mut value, &mut keep))?;
    if ranges.is_empty() {
        let kind =
            maxminddb::Reader::from_source(bytes).map(|r| r.metadata().database_type.clone()).unwrap_or_default();
        return Err(DbError::Mmdb(format!(
            "no network has an autonomous_system_number: not an ASN database (its type is `{kind}`)"
        )));
    }
    for (first, last, asn) in ranges {
        emit(first, last, asn, names.get(&asn).map_or("", |name| name))?;
    }
    Ok(())
}

type Lookup<'a, 'b> = LookupResult<'a, &'b [u8]>;
/// The value of a record, asked once for each record the walk meets (with its first network,
/// for errors).
type Value<'a, T> = dyn FnMut(&Lookup, &str) -> Result<Option<T>, DbError> + 'a;

/// The `maxminddb` crate asserts on states it believes unreachable; a damaged file that reaches
/// one is refused like any other damage.
fn guarded(work: impl FnOnce() -> Result<(), DbError>) -> Result<(), DbError> {
    panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(DbError::Mmdb("the file is damaged (the reader gave up on it)".into())))
}

/// Walks every network with data, asking `value` once for each record (networks share them)
/// and giving `emit` the ranges whose record has a value.
fn walk<T: Copy>(
    bytes: &[u8],
    value: &mut Value<T>,
    emit: &mut dyn FnMut(IpAddr, IpAddr, T) -> Result<(), DbError>,
) -> Result<(), DbError> {
    // Not `Reader::verify`: it also demands metadata that real files lack (the ip-location-db
    // DB-IP files have no description) and would refuse them. Damage is caught where it is met:
    // in the metadata, the tree walk (bounded) and the records decoded.
    let reader = maxminddb::Reader::from_source(bytes).map_err(mmdb_error)?;
    let most = most_networks(reader.metadata(), bytes.len());
    let mut known: HashMap<usize, Option<T>> = HashMap::new();
    let mut seen = 0usize;
    let mut visit = |cidr: &str, skip_ipv4_subtree: bool| -> Result<(), DbError> {
        let networks = reader.within(cidr.parse().map_err(mmdb_error)?, Default::default()).map_err(mmdb_error)?;
        for item in networks {
            seen += 1;
            if seen > most {
                return Err(DbError::Mmdb(format!(
                    "the search tree yields more than {most} networks, more than its {} nodes can hold: it is \
                     damaged (nodes share their children)",
                    reader.metadata().node_count
                )));
            }
            let lookup = item.map_err(mmdb_error)?;
            let network = lookup.network().map_err(mmdb_error)?;
            let Some(offset) = lookup.offset() else { continue };
            let (first, last) = (network.network(), network.broadcast());
            if skip_ipv4_subtree && in_ipv4_subtree(first) {
                continue;
            }
            let found = match known.get(&offset) {
                Some(found) => *found,
                None => {
                    let found = value(&lookup, &network.to_string())?;
                    known.insert(offset, found);
                    found
                }
            };
            if let Some(found) = found {
                emit(first, last, found)?;
            }
        }
        Ok(())
    };
    visit("0.0.0.0/0", false)?;
    if reader.metadata().ip_version == 6 {
        visit("::/0", true)?;
    }
    Ok(())
}

/// The most networks a walk of the tree may yield: bounded by its node count, which is bounded
/// by the bytes the tree can take (a node is two records of `record_size` bits).
fn most_networks(metadata: &maxminddb::Metadata, file_bytes: usize) -> usize {
    let node_bytes = (usize::from(metadata.record_size) / 4).max(1);
    let nodes = (metadata.node_count as usize).min(file_bytes / node_bytes);
    NETWORKS_PER_NODE.saturating_mul(nodes.saturating_add(1))
}

/// `::/96`, where IPv6 trees keep their IPv4 data: already read as IPv4.
fn in_ipv4_subtree(address: IpAddr) -> bool {
    matches!(address, IpAddr::V6(v6) if u128::from(v6) >> 32 == 0)
}
