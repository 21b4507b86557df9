//! The kernel's side of bans: the ipsets that drop banned sources before any queue, and the
//! connection-tracking entries of a source just banned.
//!
//! Messages are written here in safe code, as bytes, and sent through [`NetlinkSocket`]: an
//! ipset request is a handful of attributes, for which libipset (with its own state machine
//! and a session to keep) would be more code to call than to write. Many bans go in one
//! datagram; each message asks for an acknowledgement, so every ban's result is known.
//!
//! The numbers are the kernel's ABI: `linux/netfilter/ipset/ip_set.h`,
//! `linux/netfilter/nfnetlink_conntrack.h` and `linux/netlink.h`.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use geofence_core::ban::Ban;
use geofence_core::IpNetwork;

use crate::message::{attributes, incoming, nested, whole_messages, Incoming};
use crate::socket::{NetlinkSocket, ReceiveBatch};

/// The ipset of banned IPv4 networks that `geofence rules` creates.
pub const SET_V4: &str = "geofence-ban4";
/// The ipset of banned IPv6 networks.
pub const SET_V6: &str = "geofence-ban6";

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
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
const IPSET_ERR_HASH_FULL: i32 = 4352;
/// `IPSET_ERR_EXIST`: with `NLM_F_EXCL`, a deleted entry was not there.
const IPSET_ERR_EXIST: i32 = 4103;
/// The longest timeout an ipset entry takes, in seconds.
const IPSET_MAX_TIMEOUT: u64 = 2_147_483;
const IPCTNL_MSG_CT_DELETE: u8 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
/// The kernel's `CTA_FILTER_FLAG_CTA_IP_SRC`: match the original direction's source only.
const CTA_FILTER_FLAG_IP_SRC: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// The bans one datagram carries: about 90 bytes each.
const BATCH: usize = 64;
/// How long the kernel may take to answer a datagram before the writer gives up.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Why the kernel did not take a change to a ban set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netfilter netlink socket for the ban sets")]
    Socket(#[source] io::Error),
    /// The set does not exist.
    #[error("the ipset {set} does not exist: create it with the `ipset create` lines that `geofence rules` prints")]
    NoSet {
        /// The set's name.
        set: &'static str,
    },
    /// The set holds `maxelem` entries.
    #[error("the ipset {set} is full: raise [bans] max_entries and create the set again, or ban for less long")]
    Full {
        /// The set's name.
        set: &'static str,
    },
    /// A ban to lift was not in the set.
    #[error("{network} is not banned in {set}")]
    NotBanned {
        /// The set's name.
        set: &'static str,
        /// What was to be lifted.
        network: IpNetwork,
    },
    /// The process lacks CAP_NET_ADMIN.
    #[error("changing the ipset {set} needs CAP_NET_ADMIN")]
    PermissionDenied {
        /// The set's name.
        set: &'static str,
    },
    /// The kernel refused the change for another reason (an ipset code is above 4096).
    #[error("the kernel refused a change to {what}: error {code}")]
    Refused {
        /// The set, or "the connection table".
        what: &'static str,
        /// The kernel's error: an errno, or an ipset code.
        code: i32,
    },
    /// Sending or receiving failed.
    #[error("talking to the kernel about the ban sets failed")]
    Io(#[source] io::Error),
    /// The kernel did not answer within a second.
    #[error("the kernel did not acknowledge a change to the ban sets")]
    NoAnswer,
}

/// An entry of a ban set, as the kernel lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The banned network.
    pub network: IpNetwork,
    /// The seconds its ban has left.
    pub seconds_left: u32,
}

/// The two ban sets, written over one netlink socket.
///
/// ```no_run
/// use geofence_core::ban::{Ban, BanSpec};
/// use geofence_nfq::bans::BanSets;
/// let mut sets = BanSets::open()?;
/// let network = BanSpec { duration_ms: 3_600_000, prefix_v4: 32, prefix_v6: 64 }.network_of("192.0.2.9".parse()?);
/// for result in sets.ban(&[Ban { network, duration_ms: 3_600_000, offences: 1 }]) {
///     result?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BanSets {
    socket: NetlinkSocket,
    answers: ReceiveBatch,
    sequence: u32,
}

impl BanSets {
    /// Opens the socket. The sets must exist, created by the lines `geofence rules` prints.
    pub fn open() -> Result<BanSets, SetError> {
        let socket = NetlinkSocket::open().map_err(SetError::Socket)?;
        socket.set_receive_timeout(ANSWER_WAIT).map_err(SetError::Socket)?;
        Ok(BanSets { socket, answers: ReceiveBatch::new(BATCH, 1024), sequence: 0 })
    }

    /// Adds each ban to its family's set (an entry already there gets the new timeout), and
    /// says, ban by ban, whether the kernel took it.
    pub fn ban(&mut self, bans: &[Ban]) -> Vec<Result<(), SetError>> {
        let mut results = Vec::with_capacity(bans.len());
        for chunk in bans.chunks(BATCH) {
            let messages = chunk.iter().map(|ban| {
                let set = set_of(ban.network);
                (set_request(IPSET_CMD_ADD, set, Some((ban.network, Some(ban.duration_ms)))), set)
            });
            results.extend(self.exchange(messages.collect()));
        }
        results
    }

    /// Takes `network`, as it was added, out of its set.
    pub fn unban(&mut self, network: IpNetwork) -> Result<(), SetError> {
        let set = set_of(network);
        let mut message = set_request(IPSET_CMD_DEL, set, Some((network, None)));
        // Exclusive: a network that is not there is an error to report, not a quiet success.
        message[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL).to_ne_bytes());
        match self.exchange(vec![(message, set)]).pop().unwrap_or(Err(SetError::NoAnswer)) {
            Err(SetError::Refused { code: IPSET_ERR_EXIST, .. }) => Err(SetError::NotBanned { set, network }),
            other => other,
        }
    }

    /// Empties both sets.
    pub fn flush(&mut self) -> Result<(), SetError> {
        let messages = [SET_V4, SET_V6].map(|set| (set_request(IPSET_CMD_FLUSH, set, None), set));
        self.exchange(messages.to_vec()).into_iter().collect()
    }

    /// Every entry of both sets, as the kernel holds them now.
    pub fn list(&mut self) -> Result<Vec<Listed>, SetError> {
        // A dump's datagrams are as large as the kernel's netlink buffers (up to 32 KiB), not
        // the acknowledgements' size.
        let mut dump = ReceiveBatch::new(4, 64 * 1024);
        let mut listed = Vec::new();
        for set in [SET_V4, SET_V6] {
            let mut request = set_request(IPSET_CMD_LIST, set, None);
            request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
            self.socket.send(&request).map_err(SetError::Io)?;
            self.read_dump(&mut dump, set, &mut listed)?;
        }
        Ok(listed)
    }

    /// Reads a dump's answers into `listed` until its end.
    fn read_dump(&self, dump: &mut ReceiveBatch, set: &'static str, listed: &mut Vec<Listed>) -> Result<(), SetError> {
        loop {
            let received = match self.socket.receive(dump, true) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Err(SetError::NoAnswer),
                Err(error) => return Err(SetError::Io(error)),
            };
            for index in 0..received {
                for (kind, message) in whole_messages(dump.datagram(index).0) {
                    match kind {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let errno = message.get(16..20).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                            status(errno, set)?;
                        }
                        _ => listed.extend(listed_entries(message)),
                    }
                }
            }
        }
    }

    /// Deletes the connection-tracking entries whose original source is each of `networks`'
    /// address, so a flow accepted before its ban (whose packets the flow mark or an
    /// ESTABLISHED rule would otherwise keep letting through) starts again as NEW, and meets
    /// the ban. Says, network by network, whether the kernel took it.
    pub fn forget_flows(&mut self, networks: &[IpNetwork]) -> Vec<Result<(), SetError>> {
        let mut results = Vec::with_capacity(networks.len());
        for chunk in networks.chunks(BATCH) {
            results.extend(self.exchange(chunk.iter().map(|n| (flow_delete(*n), "the connection table")).collect()));
        }
        results
    }

    /// Sends `messages` (each written with sequence 0) in one datagram and collects each one's
    /// acknowledgement, in order.
    fn exchange(&mut self, mut messages: Vec<(Vec<u8>, &'static str)>) -> Vec<Result<(), SetError>> {
        let first = self.sequence.wrapping_add(1);
        let mut datagram = Vec::new();
        for (offset, (message, _)) in messages.iter_mut().enumerate() {
            message[8..12].copy_from_slice(&first.wrapping_add(offset as u32).to_ne_bytes());
            datagram.extend_from_slice(message);
        }
        self.sequence = first.wrapping_add(messages.len() as u32);
        let mut answers: Vec<Option<i32>> = vec![None; messages.len()];
        let outcome = self.socket.send(&datagram).and_then(|()| self.collect(first, &mut answers));
        messages
            .iter()
            .zip(answers)
            .map(|((_, what), answer)| match (&outcome, answer) {
                (_, Some(errno)) => status(errno, what),
                (Err(error), None) if error.kind() != io::ErrorKind::WouldBlock => {
                    Err(SetError::Io(io::Error::new(error.kind(), error.to_string())))
                }
                _ => Err(SetError::NoAnswer),
            })
            .collect()
    }

    /// Reads acknowledgements until every message from sequence `first` has one, or the
    /// kernel falls silent.
    fn collect(&mut self, first: u32, answers: &mut [Option<i32>]) -> io::Result<()> {
        while answers.iter().any(Option::is_none) {
            let received = self.socket.receive(&mut self.answers, true)?;
            for index in 0..received {
                for message in incoming(self.answers.datagram(index).0) {
                    if let Incoming::Status { sequence, errno } = message {
                        let slot = sequence.wrapping_sub(first) as usize;
                        if let Some(answer) = answers.get_mut(slot) {
                            *answer = Some(errno);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn set_of(network: IpNetwork) -> &'static str {
    match network {
        IpNetwork::V4(_) => SET_V4,
        IpNetwork::V6(_) => SET_V6,
    }
}

/// The entries of one `IPSET_CMD_LIST` answer: its ADT attribute's DATA attributes, each
/// an address, a prefix length and a timeout. A damaged entry is skipped.
fn listed_entries(message: &[u8]) -> Vec<Listed> {
    let adt = attributes(message).map_while(|a| a).find(|(kind, _)| *kind == IPSET_ATTR_ADT);
    let Some((_, adt)) = adt else { return Vec::new() };
    nested(adt)
        .map_while(|a| a)
        .filter(|(kind, _)| *kind == IPSET_ATTR_DATA)
        .filter_map(|(_, data)| {
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

fn address_of(value: &[u8]) -> Option<IpAddr> {
    match value.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
        _ => None,
    }
}

/// The result an acknowledgement carries: 0 for done, else the kernel's negative code.
fn status(errno: i32, what: &'static str) -> Result<(), SetError> {
    match -errno {
        0 => Ok(()),
        libc::ENOENT if what != "the connection table" => Err(SetError::NoSet { set: what }),
        // No flow of the source was tracked: nothing to forget.
        libc::ENOENT => Ok(()),
        libc::EPERM => Err(SetError::PermissionDenied { set: what }),
        IPSET_ERR_HASH_FULL => Err(SetError::Full { set: what }),
        code => Err(SetError::Refused { what, code }),
    }
}

/// An ipset request: `command` on `set`, with an entry (a network and, for an add, its
/// timeout in milliseconds, rounded up to whole seconds).
fn set_request(command: u8, set: &str, entry: Option<(IpNetwork, Option<u64>)>) -> Vec<u8> {
    let family = match entry.map(|(network, _)| network) {
        Some(IpNetwork::V6(_)) => NFPROTO_IPV6,
        _ => NFPROTO_IPV4,
    };
    let mut message = Message::new((NFNL_SUBSYS_IPSET << 8) | u16::from(command), family, 0);
    message.put(IPSET_ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    message.put(IPSET_ATTR_SETNAME, &nul_terminated(set));
    if let Some((network, timeout)) = entry {
        message.nest(IPSET_ATTR_DATA, |data| {
            data.nest(IPSET_ATTR_IP, |ip| {
                put_address(ip, network.network_address(), IPSET_ATTR_IPADDR_IPV4, IPSET_ATTR_IPADDR_IPV6)
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

/// A conntrack flush filtered by original source: version 1 of the message makes it
/// family-specific, and the filter flag makes the tuple's source address the only match.
/// The kernel filters on the whole address; a prefix ban forgets its source's flows.
fn flow_delete(network: IpNetwork) -> Vec<u8> {
    let family = match network {
        IpNetwork::V4(_) => NFPROTO_IPV4,
        IpNetwork::V6(_) => NFPROTO_IPV6,
    };
    let mut message = Message::new((NFNL_SUBSYS_CTNETLINK << 8) | u16::from(IPCTNL_MSG_CT_DELETE), family, 1);
    message.nest(CTA_TUPLE_ORIG, |tuple| {
        tuple.nest(CTA_TUPLE_IP, |ip| put_address(ip, network.network_address(), CTA_IP_V4_SRC, CTA_IP_V6_SRC));
    });
    message.nest(CTA_FILTER, |filter| filter.put(CTA_FILTER_ORIG_FLAGS, &CTA_FILTER_FLAG_IP_SRC.to_ne_bytes()));
    message.finish()
}

fn put_address(message: &mut Message, address: IpAddr, v4: u16, v6: u16) {
    match address {
        IpAddr::V4(address) => message.put(v4 | NLA_F_NET_BYTEORDER, &address.octets()),
        IpAddr::V6(address) => message.put(v6 | NLA_F_NET_BYTEORDER, &address.octets()),
    }
}

fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// One netlink message of the netfilter bus being written: header, `nfgenmsg`, attributes.
struct Message {
    bytes: Vec<u8>,
}

impl Message {
    fn new(kind: u16, family: u8, version: u8) -> Message {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[family, version, 0, 0]);
        Message { bytes }
    }

    /// One attribute, padded to 4 bytes.
    fn put(&mut self, kind: u16, value: &[u8]) {
        let length = 4 + value.len();
        self.bytes.extend_from_slice(&(length as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.pad();
    }

    /// A nested attribute, whose contents `fill` writes.
    fn nest(&mut self, kind: u16, fill: impl FnOnce(&mut Message)) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0, 0]);
        self.bytes.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        fill(self);
        let length = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
    }

    fn finish(mut self) -> Vec<u8> {
        let length = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&length.to_ne_bytes());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipset_add_is_the_attributes_ipset_itself_sends() {
        let network = IpNetwork::new_truncate("198.51.100.7".parse::<IpAddr>().unwrap(), 24).unwrap();
        let message = set_request(IPSET_CMD_ADD, SET_V4, Some((network, Some(3_599_001))));
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
        assert_eq!(message, expected);
    }

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

    #[test]
    fn a_listing_gives_each_entry_and_skips_a_damaged_one() {
        let mut message = Message::new((NFNL_SUBSYS_IPSET << 8) | u16::from(IPSET_CMD_LIST), NFPROTO_IPV4, 0);
        message.put(IPSET_ATTR_SETNAME, &nul_terminated(SET_V4));
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
        let entries = listed_entries(&message.finish());
        let network = |text: &str| text.parse::<IpNetwork>().unwrap();
        assert_eq!(
            entries,
            [
                Listed { network: network("198.51.100.0/24"), seconds_left: 7199 },
                Listed { network: network("192.0.2.9/32"), seconds_left: 0 },
            ]
        );
    }

    #[test]
    fn kernel_answers_become_errors_that_say_what_to_do() {
        assert!(status(0, SET_V4).is_ok());
        assert!(matches!(status(-libc::ENOENT, SET_V4), Err(SetError::NoSet { set: SET_V4 })));
        assert!(status(-libc::ENOENT, "the connection table").is_ok(), "no flow to forget");
        assert!(matches!(status(-IPSET_ERR_HASH_FULL, SET_V6), Err(SetError::Full { set: SET_V6 })));
        assert!(matches!(status(-4097, SET_V6), Err(SetError::Refused { code: 4097, .. })));
    }
}
