//! Forgetting a banned source's tracked flows: a conntrack delete filtered by original source
//! (`linux/netfilter/nfnetlink_conntrack.h`).

use geofence_core::IpNetwork;

use super::writer::{Message, NFPROTO_IPV4, NFPROTO_IPV6};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
/// The kernel's `CTA_FILTER_FLAG_CTA_IP_SRC`: match the original direction's source only.
const CTA_FILTER_FLAG_IP_SRC: u32 = 1;

/// A conntrack flush filtered by original source: version 1 of the message makes it
/// family-specific, and the filter flag makes the tuple's source address the only match.
/// The kernel filters on the whole address; a prefix ban forgets its source's flows.
pub(super) fn flow_delete(network: IpNetwork) -> Vec<u8> {
    let family = match network {
        IpNetwork::V4(_) => NFPROTO_IPV4,
        IpNetwork::V6(_) => NFPROTO_IPV6,
    };
    let mut message = Message::new((NFNL_SUBSYS_CTNETLINK << 8) | u16::from(IPCTNL_MSG_CT_DELETE), family, 1);
    message.nest(CTA_TUPLE_ORIG, |tuple| {
        tuple.nest(CTA_TUPLE_IP, |ip| ip.put_address(network.network_address(), CTA_IP_V4_SRC, CTA_IP_V6_SRC));
    });
    message.nest(CTA_FILTER, |filter| filter.put(CTA_FILTER_ORIG_FLAGS, &CTA_FILTER_FLAG_IP_SRC.to_ne_bytes()));
    message.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn a_flow_delete_filters_on_the_original_source_of_its_family() {
        let network = IpNetwork::from("2001:db8::9".parse::<IpAddr>().unwrap());
        let message = flow_delete(network);
        assert_eq!(u32::from_ne_bytes(message[..4].try_into().unwrap()) as usize, message.len());
        assert_eq!(&message[4..6], &[2, 1], "conntrack DELETE");
        assert_eq!(&message[16..18], &[NFPROTO_IPV6, 1], "IPv6, version 1: this family only");
        let mut address = vec![20, 0, 3, 64];
        address.extend_from_slice(&"2001:db8::9".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(&message[20..48], [&[28, 0, 1, 128, 24, 0, 1, 128][..], &address].concat());
        assert_eq!(&message[48..], [&[12, 0, 25, 128, 8, 0, 1, 0][..], &1u32.to_ne_bytes()].concat());
    }
}
