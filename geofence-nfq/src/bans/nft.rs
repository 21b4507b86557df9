//! nf_tables set elements (`linux/netfilter/nf_tables.h`): the sets of the nft backend, in
//! table `inet geofence`, with `flags interval, timeout`.
//!
//! An interval set holds a network as two elements: its first address, and the address after
//! its last flagged `NFT_SET_ELEM_INTERVAL_END` (none when the network reaches the end of the
//! address space). Changes go in a batch (`NFNL_MSG_BATCH_BEGIN` … `END`), which the kernel
//! applies whole or not at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use geofence_core::IpNetwork;

use super::writer::{address_of, Message, NFPROTO_INET, NLM_F_ACK, NLM_F_CREATE};
use super::Listed;
use crate::message::nested;

/// The nft table of the ban sets, family `inet`.
pub const TABLE: &str = "geofence";
/// The set of banned IPv4 networks in [`TABLE`].
pub const SET_V4: &str = "ban4";
/// The set of banned IPv6 networks in [`TABLE`].
pub const SET_V6: &str = "ban6";

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_GETSETELEM: u8 = 13;
const NFT_MSG_DELSETELEM: u8 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// How the errors name a set.
pub(super) fn name_of(set: &str) -> &'static str {
    if set == SET_V6 {
        "nft set inet geofence ban6"
    } else {
        "nft set inet geofence ban4"
    }
}

/// The set a network goes in.
pub(super) fn set_of(network: IpNetwork) -> &'static str {
    match network {
        IpNetwork::V4(_) => SET_V4,
        IpNetwork::V6(_) => SET_V6,
    }
}

/// The messages that open and close a batch, which ask for no acknowledgement.
pub(super) fn batch_begin() -> Vec<u8> {
    Message::with_flags(NFNL_MSG_BATCH_BEGIN, 0, 0, 0, NFNL_SUBSYS_NFTABLES).finish()
}

/// See [`batch_begin`].
pub(super) fn batch_end() -> Vec<u8> {
    Message::with_flags(NFNL_MSG_BATCH_END, 0, 0, 0, NFNL_SUBSYS_NFTABLES).finish()
}

/// Adds `network` for `timeout_ms`.
pub(super) fn add(network: IpNetwork, timeout_ms: u64) -> Vec<u8> {
    elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, set_of(network), Some((network, Some(timeout_ms))))
}

/// Deletes `network` as it was added.
pub(super) fn delete(network: IpNetwork) -> Vec<u8> {
    elements(NFT_MSG_DELSETELEM, 0, set_of(network), Some((network, None)))
}

/// Empties `set`: a delete that names no element.
pub(super) fn flush(set: &str) -> Vec<u8> {
    elements(NFT_MSG_DELSETELEM, 0, set, None)
}

/// Lists `set` (to be sent as a dump).
pub(super) fn list(set: &str) -> Vec<u8> {
    elements(NFT_MSG_GETSETELEM, 0, set, None)
}

fn elements(command: u8, flags: u16, set: &str, entry: Option<(IpNetwork, Option<u64>)>) -> Vec<u8> {
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | u16::from(command);
    let mut message = Message::with_flags(kind, flags | NLM_F_ACK, NFPROTO_INET, 0, 0);
    message.put_name(NFTA_SET_ELEM_LIST_TABLE, TABLE);
    message.put_name(NFTA_SET_ELEM_LIST_SET, set);
    if let Some((network, timeout)) = entry {
        message.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            list.nest(NFTA_LIST_ELEM, |element| {
                element.nest(NFTA_SET_ELEM_KEY, |key| key.put(NFTA_DATA_VALUE, &octets(network.network_address())));
                if let Some(milliseconds) = timeout {
                    element.put(NFTA_SET_ELEM_TIMEOUT, &milliseconds.max(1).to_be_bytes());
                }
            });
            if let Some(after) = address_after(network) {
                list.nest(NFTA_LIST_ELEM, |element| {
                    element.nest(NFTA_SET_ELEM_KEY, |key| key.put(NFTA_DATA_VALUE, &octets(after)));
                    element.put(NFTA_SET_ELEM_FLAGS, &NFT_SET_ELEM_INTERVAL_END.to_be_bytes());
                });
            }
        });
    }
    message.finish()
}

fn octets(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The first address after `network`, if the address space goes on.
fn address_after(network: IpNetwork) -> Option<IpAddr> {
    match network {
        IpNetwork::V4(v4) => {
            let last = u32::from(v4.network_address()) | (u32::MAX.checked_shr(u32::from(v4.netmask())).unwrap_or(0));
            last.checked_add(1).map(|next| IpAddr::V4(Ipv4Addr::from(next)))
        }
        IpNetwork::V6(v6) => {
            let last = u128::from(v6.network_address()) | (u128::MAX.checked_shr(u32::from(v6.netmask())).unwrap_or(0));
            last.checked_add(1).map(|next| IpAddr::V6(Ipv6Addr::from(next)))
        }
    }
}

/// One element of a listing: its key, whether it ends an interval, and its time left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Element {
    key: u128,
    v6: bool,
    end: bool,
    expires_ms: u64,
}

/// The elements of one `NFT_MSG_NEWSETELEM` answer of a dump. A damaged element is skipped.
pub(super) fn elements_of(message: &[u8]) -> Vec<Element> {
    super::items(message, NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_LIST_ELEM)
        .filter_map(|element| {
            let (mut key, mut end, mut expires_ms) = (None, false, 0);
            for (kind, value) in nested(element).map_while(|a| a) {
                match kind {
                    NFTA_SET_ELEM_KEY => key = nested(value).map_while(|a| a).find_map(|(_, v)| address_of(v)),
                    NFTA_SET_ELEM_FLAGS => end = value.get(..4).is_some_and(|b| b[3] & 1 == 1),
                    NFTA_SET_ELEM_EXPIRATION => {
                        expires_ms = value.get(..8).map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                    }
                    _ => {}
                }
            }
            let (key, v6) = match key? {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
                IpAddr::V6(v6) => (u128::from(v6), true),
            };
            Some(Element { key, v6, end, expires_ms })
        })
        .collect()
}

/// The networks a set's elements make: each start with the end that follows it (or the end
/// of the address space). A range that is no single network (which geofence never writes)
/// is left out.
pub(super) fn networks(mut elements: Vec<Element>) -> Vec<Listed> {
    elements.sort_by_key(|element| (element.v6, element.key, !element.end));
    let mut listed = Vec::new();
    let mut open: Option<Element> = None;
    for element in elements {
        match (open, element.end) {
            (None, false) => open = Some(element),
            (Some(start), true) if start.v6 == element.v6 => {
                listed.extend(network_of(start, Some(element.key)));
                open = None;
            }
            (Some(start), _) => {
                listed.extend(network_of(start, None));
                open = (!element.end).then_some(element);
            }
            (None, true) => {}
        }
    }
    if let Some(start) = open {
        listed.extend(network_of(start, None));
    }
    listed
}

/// The last address of the family.
fn space_last(v6: bool) -> u128 {
    if v6 {
        u128::MAX
    } else {
        u128::from(u32::MAX)
    }
}

/// The network from `start` to the address before `after` (`None`: to the end of the space).
fn network_of(start: Element, after: Option<u128>) -> Option<Listed> {
    let size = match after {
        Some(after) => after.checked_sub(start.key)?,
        None => (space_last(start.v6) - start.key).checked_add(1)?,
    };
    if !size.is_power_of_two() || !start.key.is_multiple_of(size) {
        return None;
    }
    let bits = if start.v6 { 128 } else { 32 };
    let prefix = u8::try_from(bits - size.trailing_zeros()).ok()?;
    let address = if start.v6 {
        IpAddr::V6(Ipv6Addr::from(start.key))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(start.key).ok()?))
    };
    let seconds_left = u32::try_from(start.expires_ms.div_ceil(1000)).unwrap_or(u32::MAX);
    Some(Listed { network: IpNetwork::new(address, prefix).ok()?, seconds_left })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    #[test]
    fn a_network_is_its_first_address_and_the_end_after_its_last() {
        let message = add(network("198.51.100.0/24"), 7_200_000);
        assert_eq!(&message[4..6], &[12, 10], "nf_tables NEWSETELEM");
        assert_eq!(&message[6..8], &(1u16 | 4 | 0x400).to_ne_bytes(), "REQUEST | ACK | CREATE");
        assert_eq!(message[16], NFPROTO_INET);
        let elements = elements_of(&message);
        assert_eq!(
            networks(elements),
            [Listed { network: network("198.51.100.0/24"), seconds_left: 0 }],
            "what is written reads back as the network"
        );
        assert_eq!(address_after(network("255.255.255.0/24")), None, "the end of the space has no end element");
        assert_eq!(address_after(network("2001:db8::/64")), Some("2001:db8:0:1::".parse().unwrap()));
    }

    #[test]
    fn a_listing_pairs_starts_with_their_ends_in_either_order_and_family() {
        let element = |key: u128, v6, end, expires_ms| Element { key, v6, end, expires_ms };
        let v4 = |text: &str| u128::from(u32::from(text.parse::<Ipv4Addr>().unwrap()));
        let v6 = |text: &str| u128::from(text.parse::<Ipv6Addr>().unwrap());
        let listed = networks(vec![
            element(v4("192.0.2.10"), false, true, 0),
            element(v4("198.51.101.0"), false, true, 0),
            element(0, false, true, 0),
            element(v4("192.0.2.9"), false, false, 89_500),
            element(v6("2001:db8::"), true, false, 3_600_000),
            element(v4("198.51.100.0"), false, false, 7_199_000),
            element(v6("2001:db8:0:1::"), true, true, 0),
            element(v4("203.0.113.0"), false, false, 1000),
            element(v4("203.0.113.3"), false, true, 0),
        ]);
        let expected = [
            Listed { network: network("192.0.2.9/32"), seconds_left: 90 },
            Listed { network: network("198.51.100.0/24"), seconds_left: 7199 },
            Listed { network: network("2001:db8::/64"), seconds_left: 3600 },
        ];
        assert_eq!(listed, expected, "203.0.113.0-2 is no single network: left out");
    }
}
