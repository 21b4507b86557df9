//! Prefix lists: named sets of IPv4 and IPv6 networks, such as an operator's SIP trunk providers,
//! and the built-in lists of special-purpose address space.
//!
//! Membership is a longest-prefix match in an `ip_network_table`, which neither allocates nor
//! locks, so a list can be consulted per packet.

use std::fmt;
use std::net::IpAddr;

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;

/// A set of networks; an address is a member when any network contains it.
#[derive(Default)]
pub struct PrefixList {
    table: IpNetworkTable<()>,
}

impl PrefixList {
    /// An empty list.
    pub fn new() -> PrefixList {
        PrefixList::default()
    }

    /// Adds a network.
    pub fn insert(&mut self, network: IpNetwork) {
        self.table.insert(network, ());
    }

    /// Whether some network of the list contains `address`.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.table.longest_match(address).is_some()
    }

    /// How many IPv4 and IPv6 networks the list holds.
    pub fn len(&self) -> (usize, usize) {
        self.table.len()
    }

    /// Whether the list holds no network.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The networks, IPv4 first.
    pub fn networks(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        self.table.iter().map(|(network, _)| network)
    }
}

impl FromIterator<IpNetwork> for PrefixList {
    fn from_iter<I: IntoIterator<Item = IpNetwork>>(networks: I) -> Self {
        let mut list = PrefixList::new();
        networks.into_iter().for_each(|network| list.insert(network));
        list
    }
}

impl fmt::Debug for PrefixList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.networks().map(|n| n.to_string())).finish()
    }
}

/// The special-purpose address blocks geofence knows by name (IANA's registries, RFC 6890).
///
/// Rules name them like the lists a config defines: `source = ["rfc1918"]`.
pub const BUILT_IN: [(&str, &str, &[&str]); 8] = [
    ("rfc1918", "private IPv4 networks (RFC 1918)", &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
    ("loopback", "loopback (RFC 1122, RFC 4291)", &["127.0.0.0/8", "::1/128"]),
    ("link-local", "link-local (RFC 3927, RFC 4291)", &["169.254.0.0/16", "fe80::/10"]),
    ("cgnat", "shared address space for carrier-grade NAT (RFC 6598)", &["100.64.0.0/10"]),
    ("ula", "IPv6 unique local addresses (RFC 4193)", &["fc00::/7"]),
    ("multicast", "multicast (RFC 5771, RFC 4291)", &["224.0.0.0/4", "ff00::/8"]),
    (
        "documentation",
        "documentation and example ranges (RFC 5737, RFC 3849, RFC 9637)",
        &["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"],
    ),
    (
        "private",
        "every non-routed source: rfc1918, loopback, link-local, cgnat and ula together",
        &[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
            "::1/128",
            "169.254.0.0/16",
            "fe80::/10",
            "100.64.0.0/10",
            "fc00::/7",
        ],
    ),
];

/// The built-in list called `name`, if there is one.
pub fn built_in(name: &str) -> Option<PrefixList> {
    BUILT_IN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, networks)| networks.iter().filter_map(|network| network.parse::<IpNetwork>().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(list: &PrefixList, address: &str) -> bool {
        list.contains(address.parse().unwrap())
    }

    #[test]
    fn every_built_in_network_is_valid() {
        for (name, _, networks) in BUILT_IN {
            for network in networks {
                assert!(network.parse::<IpNetwork>().is_ok(), "{name}: {network}");
            }
            let list = built_in(name).unwrap();
            assert_eq!(list.len().0 + list.len().1, networks.len(), "{name}");
        }
    }

    #[test]
    fn rfc1918_holds_exactly_the_three_private_blocks() {
        let list = built_in("rfc1918").unwrap();
        for inside in ["10.0.0.0", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.1.1"] {
            assert!(member(&list, inside), "{inside}");
        }
        for outside in ["9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0", "192.169.0.0", "::ffff:10.0.0.1"] {
            assert!(!member(&list, outside), "{outside}");
        }
    }

    #[test]
    fn ipv6_built_ins_match_their_blocks() {
        assert!(member(&built_in("ula").unwrap(), "fd12:3456::1"));
        assert!(!member(&built_in("ula").unwrap(), "fe00::1"));
        assert!(member(&built_in("link-local").unwrap(), "fe80::1"));
        assert!(member(&built_in("documentation").unwrap(), "2001:db8:ffff::1"));
        assert!(member(&built_in("multicast").unwrap(), "ff02::1"));
        assert!(member(&built_in("cgnat").unwrap(), "100.127.255.255"));
        assert!(!member(&built_in("cgnat").unwrap(), "100.128.0.0"));
    }

    #[test]
    fn unknown_built_in_is_none() {
        assert!(built_in("rfc1819").is_none());
    }
}
