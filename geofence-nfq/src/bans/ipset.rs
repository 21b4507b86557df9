//! ipset requests (`linux/netfilter/ipset/ip_set.h`, protocol 7) and their listings: the sets
//! of the iptables backend, `hash:net` with timeouts.

use geofence_core::IpNetwork;

use super::writer::{address_of, Message, NFPROTO_IPV4, NFPROTO_IPV6, NLA_F_NET_BYTEORDER};
use super::Listed;
use crate::message::nested;

/// The ipset of banned IPv4 networks that `geofence rules` creates.
pub const SET_V4: &str = "geofence-ban4";
/// The ipset of banned IPv6 networks.
pub const SET_V6: &str = "geofence-ban6";

const NFNL_SUBSYS_IPSET: u16 = 6;
const IPSET_PROTOCOL: u8 = 7;
const IPSET_CMD_FLUSH: u8 = 4;
const IPSET_CMD_LIST: u8 = 7;
const IPSET_CMD_ADD: u8 = 9;
const IPSET_CMD_DEL: u8 = 10;
const IPSET_ATTR_PROTOCOL: u16 = 1;
const IPSET_ATTR_SETNAME: u16 = 2;
const IPSET_ATTR_DATA: u16 = 7;
const IPSET_ATTR_ADT: u16 = 8;
const IPSET_ATTR_IP: u16 = 1;
const IPSET_ATTR_CIDR: u16 = 3;
const IPSET_ATTR_TIMEOUT: u16 = 6;
const IPSET_ATTR_IPADDR_IPV4: u16 = 1;
const IPSET_ATTR_IPADDR_IPV6: u16 = 2;
/// `IPSET_ERR_TYPE_SPECIFIC`: for a hash set, "hash is full".
pub(super) const IPSET_ERR_HASH_FULL: i32 = 4352;
/// `IPSET_ERR_EXIST`: with `NLM_F_EXCL`, a deleted entry was not there.
pub(super) const IPSET_ERR_EXIST: i32 = 4103;
/// The longest timeout an ipset entry takes, in seconds.
const IPSET_MAX_TIMEOUT: u64 = 2_147_483;

/// The set a network goes in.
pub(super) fn set_of(network: IpNetwork) -> &'static str {
    match network {
        IpNetwork::V4(_) => SET_V4,
        IpNetwork::V6(_) => SET_V6,
    }
}

/// Adds `network` for `timeout_ms` (rounded up to whole seconds); an entry already there gets
/// the new timeout.
pub(super) fn add(network: IpNetwork, timeout_ms: u64) -> Vec<u8> {
    request(IPSET_CMD_ADD, set_of(network), Some((network, Some(timeout_ms))))
}

/// Deletes `network` as it was added.
pub(super) fn delete(network: IpNetwork) -> Vec<u8> {
    request(IPSET_CMD_DEL, set_of(network), Some((network, None)))
}

/// Empties `set`.
pub(super) fn flush(set: &str) -> Vec<u8> {
    request(IPSET_CMD_FLUSH, set, None)
}

/// Lists `set` (to be sent as a dump).
pub(super) fn list(set: &str) -> Vec<u8> {
    request(IPSET_CMD_LIST, set, None)
}

/// An ipset request: `command` on `set`, with an entry (a network and, for an add, its
/// timeout in milliseconds).
fn request(command: u8, set: &str, entry: Option<(IpNetwork, Option<u64>)>) -> Vec<u8> {
    let family = match entry.map(|(network, _)| network) {
        Some(IpNetwork::V6(_)) => NFPROTO_IPV6,
        _ => NFPROTO_IPV4,
    };
    let mut message = Message::new((NFNL_SUBSYS_IPSET << 8) | u16::from(command), family, 0);
    message.put(IPSET_ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    message.put_name(IPSET_ATTR_SETNAME, set);
    if let Some((network, timeout)) = entry {
        message.nest(IPSET_ATTR_DATA, |data| {
            data.nest(IPSET_ATTR_IP, |ip| {
                ip.put_address(network.network_address(), IPSET_ATTR_IPADDR_IPV4, IPSET_ATTR_IPADDR_IPV6)
            });
            data.put(IPSET_ATTR_CIDR, &[network.netmask()]);
            if let Some(milliseconds) = timeout {
                let seconds = milliseconds.div_ceil(1000).clamp(1, IPSET_MAX_TIMEOUT) as u32;
                data.put(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, &seconds.to_be_bytes());
            }
        });
    }
    message.finish()
}

/// The entries of one `IPSET_CMD_LIST` answer: its ADT attribute's DATA attributes, each
/// an address, a prefix length and a timeout. A damaged entry is skipped.
pub(super) fn entries(message: &[u8]) -> Vec<Listed> {
    super::items(message, IPSET_ATTR_ADT, IPSET_ATTR_DATA)
        .filter_map(|data| {
            let (mut address, mut cidr, mut timeout) = (None, None, 0);
            for (kind, value) in nested(data).map_while(|a| a) {
                match kind {
                    IPSET_ATTR_IP => address = nested(value).map_while(|a| a).find_map(|(_, v)| address_of(v)),
                    IPSET_ATTR_CIDR => cidr = value.first().copied(),
                    IPSET_ATTR_TIMEOUT => {
                        timeout = value.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    }
                    _ => {}
                }
            }
            let address = address?;
            let prefix = cidr.unwrap_or(if address.is_ipv4() { 32 } else { 128 });
            Some(Listed { network: IpNetwork::new(address, prefix).ok()?, seconds_left: timeout })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn an_add_is_the_attributes_ipset_itself_sends() {
        let network = IpNetwork::new_truncate("198.51.100.7".parse::<IpAddr>().unwrap(), 24).unwrap();
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[80, 0, 0, 0][..], &[9, 6], &[5, 0], &[0; 8],        // length, ipset ADD, REQUEST|ACK, seq, pid
            &[2, 0, 0, 0],                                          // nfgenmsg: IPv4, version 0
            &[5, 0, 1, 0, 7, 0, 0, 0],                              // PROTOCOL 7
            &[18, 0, 2, 0], b"geofence-ban4\0", &[0, 0],            // SETNAME
            &[32, 0, 7, 128],                                       // DATA, nested
            &[12, 0, 1, 128], &[8, 0, 1, 64, 198, 51, 100, 0],      //   IP { IPV4 in network order }
            &[5, 0, 3, 0, 24, 0, 0, 0],                             //   CIDR 24
            &[8, 0, 6, 64], &3600u32.to_be_bytes(),                 //   TIMEOUT 3600 s, rounded up
        ]
        .concat();
        assert_eq!(add(network, 3_599_001), expected);
    }

    #[test]
    fn a_listing_gives_each_entry_and_skips_a_damaged_one() {
        let mut message = Message::new((NFNL_SUBSYS_IPSET << 8) | u16::from(IPSET_CMD_LIST), NFPROTO_IPV4, 0);
        message.put_name(IPSET_ATTR_SETNAME, SET_V4);
        message.nest(IPSET_ATTR_ADT, |adt| {
            adt.nest(IPSET_ATTR_DATA, |data| {
                data.nest(IPSET_ATTR_IP, |ip| ip.put(IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, &[198, 51, 100, 0]));
                data.put(IPSET_ATTR_CIDR, &[24]);
                data.put(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, &7199u32.to_be_bytes());
            });
            adt.nest(IPSET_ATTR_DATA, |data| data.put(IPSET_ATTR_CIDR, &[24]));
            adt.nest(IPSET_ATTR_DATA, |data| {
                data.nest(IPSET_ATTR_IP, |ip| ip.put(IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, &[192, 0, 2, 9]));
            });
        });
        let network = |text: &str| text.parse::<IpNetwork>().unwrap();
        assert_eq!(
            entries(&message.finish()),
            [
                Listed { network: network("198.51.100.0/24"), seconds_left: 7199 },
                Listed { network: network("192.0.2.9/32"), seconds_left: 0 },
            ]
        );
    }
}
