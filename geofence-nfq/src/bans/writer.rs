//! Netlink messages of the netfilter bus written as bytes: a header, `nfgenmsg`, attributes.

use std::net::IpAddr;

const NLM_F_REQUEST: u16 = 1;
pub(super) const NLM_F_ACK: u16 = 4;
/// With `NLM_F_REQUEST`, the flags of a dump request.
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_EXCL: u16 = 0x200;
pub(super) const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 1 << 15;
pub(super) const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
pub(super) const NFPROTO_INET: u8 = 1;
pub(super) const NFPROTO_IPV4: u8 = 2;
pub(super) const NFPROTO_IPV6: u8 = 10;

/// One message being written.
pub(super) struct Message {
    bytes: Vec<u8>,
}

impl Message {
    /// A request of type `kind` that asks for an acknowledgement.
    pub(super) fn new(kind: u16, family: u8, version: u8) -> Message {
        Message::with_flags(kind, NLM_F_ACK, family, version, 0)
    }

    /// A request with `flags` besides `NLM_F_REQUEST`, and the `nfgenmsg` resource id
    /// (network order, as the kernel reads it).
    pub(super) fn with_flags(kind: u16, flags: u16, family: u8, version: u8, resource: u16) -> Message {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[family, version]);
        bytes.extend_from_slice(&resource.to_be_bytes());
        Message { bytes }
    }

    /// One attribute, padded to 4 bytes.
    pub(super) fn put(&mut self, kind: u16, value: &[u8]) {
        let length = 4 + value.len();
        self.bytes.extend_from_slice(&(length as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
    }

    /// A string attribute, with its terminating NUL.
    pub(super) fn put_name(&mut self, kind: u16, name: &str) {
        let mut bytes = name.as_bytes().to_vec();
        bytes.push(0);
        self.put(kind, &bytes);
    }

    /// An address attribute in network order: `v4` or `v6` by its family.
    pub(super) fn put_address(&mut self, address: IpAddr, v4: u16, v6: u16) {
        match address {
            IpAddr::V4(address) => self.put(v4 | NLA_F_NET_BYTEORDER, &address.octets()),
            IpAddr::V6(address) => self.put(v6 | NLA_F_NET_BYTEORDER, &address.octets()),
        }
    }

    /// A nested attribute, whose contents `fill` writes.
    pub(super) fn nest(&mut self, kind: u16, fill: impl FnOnce(&mut Message)) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0, 0]);
        self.bytes.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        fill(self);
        let length = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    /// The message, its length written in.
    pub(super) fn finish(mut self) -> Vec<u8> {
        let length = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&length.to_ne_bytes());
        self.bytes
    }
}

/// Sets a finished message's flags (besides `NLM_F_REQUEST`).
pub(super) fn set_flags(message: &mut [u8], flags: u16) {
    message[6..8].copy_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
}

/// Reads an address attribute's value.
pub(super) fn address_of(value: &[u8]) -> Option<IpAddr> {
    match value.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
        _ => None,
    }
}
