//! MaxMind DB files (GeoLite2/GeoIP2 Country and City, DB-IP lite, ip-location-db) read through
//! the `maxminddb` crate: the whole tree is walked once at load time and turned into ranges, so
//! no packet is ever looked up in the mmdb itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};

use serde::Deserialize;

use super::text::{country, Emit};
use super::DbError;
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

fn mmdb_error(error: impl std::fmt::Display) -> DbError {
    DbError::Mmdb(error.to_string())
}

/// Walks every network with data. The `maxminddb` crate asserts on states it believes
/// unreachable; a damaged file that reaches one is refused like any other damage.
pub(crate) fn read(bytes: &[u8], emit: &mut Emit) -> Result<(), DbError> {
    panic::catch_unwind(AssertUnwindSafe(|| walk(bytes, emit)))
        .unwrap_or_else(|_| Err(DbError::Mmdb("the file is damaged (the reader gave up on it)".into())))
}

fn walk(bytes: &[u8], emit: &mut Emit) -> Result<(), DbError> {
    // Not `Reader::verify`: it also demands metadata that real files lack (the ip-location-db
    // DB-IP files have no description) and would refuse them. Damage is caught where it is met:
    // in the metadata, the tree walk (bounded) and the records decoded.
    let reader = maxminddb::Reader::from_source(bytes).map_err(mmdb_error)?;
    let most = most_networks(reader.metadata(), bytes.len());
    let mut known: HashMap<usize, Option<CountryCode>> = HashMap::new();
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
            let code = match known.get(&offset) {
                Some(code) => *code,
                None => {
                    let record: Option<Record> = lookup.decode().map_err(mmdb_error)?;
                    let code = match record.as_ref().and_then(Record::code) {
                        Some(code) => {
                            country(code).map_err(|problem| DbError::Mmdb(format!("network {network}: {problem}")))?
                        }
                        None => None,
                    };
                    known.insert(offset, code);
                    code
                }
            };
            if let Some(code) = code {
                emit(0, first, last, code)?;
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
