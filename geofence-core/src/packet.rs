//! The wire view: raw L3 bytes, as NFQUEUE delivers them, become a [`PacketMeta`].
//!
//! Parsing validates every length once and then reads fixed fields through `pnet_packet`'s
//! borrowed views, so it never panics and never allocates, whatever the bytes. The buffer may be
//! shorter than the IP total length (a queue's copy range usually captures only the headers);
//! bytes past it are padding, not packet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use pnet_packet::icmp::IcmpPacket;
use pnet_packet::icmpv6::Icmpv6Packet;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::Ipv6Packet;
use pnet_packet::tcp::TcpPacket;
use pnet_packet::udp::UdpPacket;
use pnet_packet::Packet;

const IPV4_MIN_HEADER: usize = 20;
/// Where the IPv4 source address sits; the destination follows it.
const IPV4_SOURCE: usize = 12;
const IPV6_HEADER: usize = 40;
const SCTP_COMMON_HEADER: usize = 12;
const IPV6_FRAGMENT_HEADER: usize = 8;

/// An IP protocol number (the IPv4 protocol field, or the last IPv6 next-header value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

impl Protocol {
    /// Internet Control Message Protocol (IPv4).
    pub const ICMP: Protocol = Protocol(1);
    /// Transmission Control Protocol.
    pub const TCP: Protocol = Protocol(6);
    /// User Datagram Protocol.
    pub const UDP: Protocol = Protocol(17);
    /// Encapsulating Security Payload: its content is encrypted, so no ports.
    pub const ESP: Protocol = Protocol(50);
    /// ICMP for IPv6.
    pub const ICMPV6: Protocol = Protocol(58);
    /// IPv6 "no next header": nothing follows.
    pub const NO_NEXT_HEADER: Protocol = Protocol(59);
    /// Stream Control Transmission Protocol.
    pub const SCTP: Protocol = Protocol(132);
    /// UDP-Lite (RFC 3828), which shares UDP's port layout.
    pub const UDPLITE: Protocol = Protocol(136);

    /// Whether packets of this protocol carry source and destination ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Self::TCP | Self::UDP | Self::UDPLITE | Self::SCTP)
    }

    /// The conventional lower-case name, if this protocol has one geofence knows.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::ICMP => "icmp",
            Self::TCP => "tcp",
            Self::UDP => "udp",
            Self::ESP => "esp",
            Self::ICMPV6 => "icmpv6",
            Self::SCTP => "sctp",
            Self::UDPLITE => "udplite",
            _ => return None,
        })
    }

    /// The protocol with this conventional name (`tcp`, `udp`, `udplite`, `sctp`, `icmp`,
    /// `icmpv6`, `esp`).
    pub fn from_name(name: &str) -> Option<Protocol> {
        [Self::ICMP, Self::TCP, Self::UDP, Self::ESP, Self::ICMPV6, Self::SCTP, Self::UDPLITE]
            .into_iter()
            .find(|p| p.name() == Some(name))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "protocol {}", self.0),
        }
    }
}

/// What the packet says above the IP layer, as far as a filter needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP, UDP, UDP-Lite or SCTP ports.
    Ports {
        /// The sender's port.
        source: u16,
        /// The port the packet is addressed to.
        destination: u16,
    },
    /// An ICMP or ICMPv6 message.
    Icmp {
        /// The message type (8 is an IPv4 echo request, 128 an IPv6 one).
        kind: u8,
        /// The message code.
        code: u8,
    },
    /// A fragment other than the first: the transport header is in another packet.
    LaterFragment,
    /// A protocol whose header geofence does not read (ESP, GRE, no next header, …).
    Opaque,
}

/// The facts about one packet that a policy decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacketMeta {
    /// The sender's address.
    pub source: IpAddr,
    /// The address the packet is sent to.
    pub destination: IpAddr,
    /// The transport protocol, after any IPv6 extension headers.
    pub protocol: Protocol,
    /// Ports or ICMP type, when the packet carries them.
    pub transport: Transport,
    /// Where the transport payload lies in the parsed bytes (UDP, UDP-Lite and TCP).
    payload: Span,
}

/// A range of the parsed bytes; empty at 0 when there is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// From `start` to `end` of `bytes`, each clamped to them; every empty span is the same.
    fn within(bytes: &[u8], start: usize, end: usize) -> Span {
        let end = end.min(bytes.len());
        if start >= end {
            return Span::default();
        }
        // A packet is at most 64 KiB plus headers (a jumbogram is still a captured buffer).
        Span { start: u32::try_from(start).unwrap_or(u32::MAX), end: u32::try_from(end).unwrap_or(u32::MAX) }
    }
}

impl PacketMeta {
    /// The facts of a packet an embedder has parsed itself, for [`Policy::decide_meta`](crate::Policy::decide_meta).
    pub fn new(source: IpAddr, destination: IpAddr, protocol: Protocol, transport: Transport) -> PacketMeta {
        PacketMeta { source, destination, protocol, transport, payload: Span::default() }
    }

    /// The transport payload (what follows the UDP, UDP-Lite or TCP header) within `packet`,
    /// the bytes this was parsed from, as far as they were captured; empty for other protocols,
    /// for later fragments, and for facts made with [`PacketMeta::new`].
    ///
    /// ```
    /// use geofence_core::sample;
    /// let packet = sample::sip_options("192.0.2.10".parse()?, "192.0.2.1".parse()?);
    /// let meta = geofence_core::packet::parse(&packet)?;
    /// assert!(meta.payload(&packet).starts_with(b"OPTIONS sip:"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet.get(self.payload.start as usize..self.payload.end as usize).unwrap_or_default()
    }

    /// The destination port, for TCP, UDP, UDP-Lite and SCTP (not in later fragments).
    pub fn destination_port(&self) -> Option<u16> {
        match self.transport {
            Transport::Ports { destination, .. } => Some(destination),
            _ => None,
        }
    }

    /// The IP version, 4 or 6.
    pub fn ip_version(&self) -> u8 {
        if self.source.is_ipv4() {
            4
        } else {
            6
        }
    }
}

/// The header a [`PacketError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// The IPv4 header, options included.
    Ipv4,
    /// The fixed IPv6 header.
    Ipv6,
    /// An extension header (IPv6 hop-by-hop, routing, fragment, destination options; AH in
    /// either family).
    IpExtension,
    /// The TCP header.
    Tcp,
    /// The UDP or UDP-Lite header.
    Udp,
    /// The SCTP common header.
    Sctp,
    /// The ICMP or ICMPv6 header.
    Icmp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::IpExtension => "IP extension",
            Layer::Tcp => "TCP",
            Layer::Udp => "UDP",
            Layer::Sctp => "SCTP",
            Layer::Icmp => "ICMP",
        })
    }
}

/// Why bytes are not a packet geofence can decide on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// No bytes at all.
    #[error("empty packet")]
    Empty,
    /// The first nibble names neither IPv4 nor IPv6.
    #[error("IP version {0} is neither 4 nor 6")]
    UnknownVersion(u8),
    /// A header ends past the captured bytes.
    #[error("{layer} header truncated: needs {needed} bytes at offset {offset}, {captured} captured")]
    Truncated {
        /// The header that is cut short.
        layer: Layer,
        /// Where in the packet that header starts.
        offset: usize,
        /// How many bytes the header needs.
        needed: usize,
        /// How many bytes are there from `offset` on.
        captured: usize,
    },
    /// The IPv4 header length field is below the 20-byte minimum.
    #[error("IPv4 header length {0} bytes is below the 20-byte minimum")]
    Ipv4HeaderTooShort(usize),
    /// An authentication header says it is shorter than its fixed fields (next header, length,
    /// reserved, SPI, sequence number: 12 bytes, RFC 4302 section 2).
    #[error("authentication header at offset {offset} is {length} bytes, below the 12-byte minimum")]
    AuthenticationHeaderTooShort {
        /// Where it starts.
        offset: usize,
        /// The length its payload-length field gives, in bytes.
        length: usize,
    },
    /// An IPv6 hop-by-hop options header anywhere but right after the IPv6 header, where RFC
    /// 8200 (section 4.3) allows it alone; a node must discard such a packet.
    #[error("IPv6 hop-by-hop options header at offset {0}, not right after the IPv6 header")]
    MisplacedHopByHop(usize),
    /// The IPv4 total length is smaller than the header it contains.
    #[error("IPv4 total length {total} is smaller than its {header}-byte header")]
    Ipv4TotalLengthTooShort {
        /// The total length field.
        total: usize,
        /// The header length field, in bytes.
        header: usize,
    },
}

/// Reads the facts a policy needs from one raw IPv4 or IPv6 packet.
///
/// ```
/// use geofence_core::packet::{parse, Protocol};
/// // IPv4, 198.51.100.7 → 192.0.2.1, UDP 40000 → 5060.
/// let bytes = [
///     0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 7, 192, 0, 2, 1,
///     0x9c, 0x40, 0x13, 0xc4, 0, 8, 0, 0,
/// ];
/// let meta = parse(&bytes)?;
/// assert_eq!(meta.protocol, Protocol::UDP);
/// assert_eq!(meta.destination_port(), Some(5060));
/// # Ok::<(), geofence_core::packet::PacketError>(())
/// ```
#[inline(always)]
pub fn parse(bytes: &[u8]) -> Result<PacketMeta, PacketError> {
    let first = *bytes.first().ok_or(PacketError::Empty)?;
    match first >> 4 {
        4 => parse_ipv4(bytes),
        6 => parse_ipv6(bytes),
        version => Err(PacketError::UnknownVersion(version)),
    }
}

#[inline(always)]
fn parse_ipv4(bytes: &[u8]) -> Result<PacketMeta, PacketError> {
    let ip = Ipv4Packet::new(bytes).ok_or_else(|| truncated(Layer::Ipv4, bytes, 0, IPV4_MIN_HEADER))?;
    let header = usize::from(ip.get_header_length()) * 4;
    if header < IPV4_MIN_HEADER {
        return Err(PacketError::Ipv4HeaderTooShort(header));
    }
    let total = usize::from(ip.get_total_length());
    if total < header {
        return Err(PacketError::Ipv4TotalLengthTooShort { total, header });
    }
    if bytes.len() < header {
        return Err(truncated(Layer::Ipv4, bytes, 0, header));
    }
    // Bytes past the total length (link padding) are not part of the packet.
    let bytes = &bytes[..bytes.len().min(total)];
    let (protocol, (transport, payload)) = match Protocol(ip.get_next_level_protocol().0) {
        protocol if ip.get_fragment_offset() != 0 => (protocol, (Transport::LaterFragment, Span::default())),
        // The authentication header is IPv4's only extension header.
        Protocol(AUTHENTICATION) => walk_extensions(bytes, header, AUTHENTICATION, false)?,
        protocol => (protocol, read_transport(protocol, bytes, header)?),
    };
    Ok(PacketMeta {
        source: IpAddr::V4(Ipv4Addr::from(field::<4>(bytes, IPV4_SOURCE))),
        destination: IpAddr::V4(Ipv4Addr::from(field::<4>(bytes, IPV4_SOURCE + 4))),
        protocol,
        transport,
        payload,
    })
}

#[inline(always)]
fn parse_ipv6(bytes: &[u8]) -> Result<PacketMeta, PacketError> {
    let ip = Ipv6Packet::new(bytes).ok_or_else(|| truncated(Layer::Ipv6, bytes, 0, IPV6_HEADER))?;
    // Bytes past the payload length (link padding) are not part of the packet. A length of 0
    // is a jumbogram's (RFC 2675): its real length is in a hop-by-hop option; the capture holds.
    let bytes = match usize::from(ip.get_payload_length()) {
        0 => bytes,
        payload => &bytes[..bytes.len().min(IPV6_HEADER + payload)],
    };
    let (protocol, (transport, payload)) = walk_extensions(bytes, IPV6_HEADER, ip.get_next_header().0, true)?;
    Ok(PacketMeta {
        source: IpAddr::V6(ip.get_source()),
        destination: IpAddr::V6(ip.get_destination()),
        protocol,
        transport,
        payload,
    })
}

/// The authentication header (RFC 4302), an extension header of IPv6 and of IPv4.
const AUTHENTICATION: u8 = 51;

/// Follows the extension header chain from `offset` to the transport header: in IPv6 every
/// extension header, in IPv4 the authentication header (RFC 4302), which may carry TCP or UDP.
///
/// Every extension header is at least 8 bytes long, so the walk ends within the captured bytes.
#[inline(always)]
fn walk_extensions(
    bytes: &[u8],
    offset: usize,
    first: u8,
    ipv6: bool,
) -> Result<(Protocol, (Transport, Span)), PacketError> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const DESTINATION_OPTIONS: u8 = 60;

    let mut next = first;
    let mut offset = offset;
    loop {
        let length = match next {
            HOP_BY_HOP if ipv6 && offset != IPV6_HEADER => return Err(PacketError::MisplacedHopByHop(offset)),
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS if ipv6 => (usize::from(ext_byte(bytes, offset, 1)?) + 1) * 8,
            AUTHENTICATION => authentication_length(bytes, offset)?,
            FRAGMENT if ipv6 => IPV6_FRAGMENT_HEADER,
            _ => {
                let protocol = Protocol(next);
                return Ok((protocol, read_transport(protocol, bytes, offset)?));
            }
        };
        let header = window(bytes, offset, length, Layer::IpExtension)?;
        if next == FRAGMENT && fragment_offset(header) != 0 {
            return Ok((Protocol(header[0]), (Transport::LaterFragment, Span::default())));
        }
        next = header[0];
        offset += length;
    }
}

/// An authentication header's length: its payload-length field counts 32-bit words minus 2, and
/// its fixed fields alone take 12 bytes, so a field of 0 (8 bytes) is not an authentication
/// header; read as one, it would put the next header inside its own sequence number.
fn authentication_length(bytes: &[u8], offset: usize) -> Result<usize, PacketError> {
    const MINIMUM: usize = 12;
    let length = (usize::from(ext_byte(bytes, offset, 1)?) + 2) * 4;
    if length < MINIMUM {
        return Err(PacketError::AuthenticationHeaderTooShort { offset, length });
    }
    Ok(length)
}

fn fragment_offset(fragment_header: &[u8]) -> u16 {
    u16::from_be_bytes([fragment_header[2], fragment_header[3]]) >> 3
}

fn ext_byte(bytes: &[u8], offset: usize, index: usize) -> Result<u8, PacketError> {
    Ok(window(bytes, offset, index + 1, Layer::IpExtension)?[index])
}

#[inline(always)]
fn read_transport(protocol: Protocol, bytes: &[u8], offset: usize) -> Result<(Transport, Span), PacketError> {
    let rest = bytes.get(offset..).unwrap_or_default();
    let short = |layer: Layer, needed: usize| truncated(layer, bytes, offset, needed);
    let no_payload = |transport| (transport, Span::default());
    Ok(match protocol {
        Protocol::TCP => {
            let tcp = TcpPacket::new(rest).ok_or_else(|| short(Layer::Tcp, TcpPacket::minimum_packet_size()))?;
            // A data offset below the 5-word minimum is no header length: the payload follows those.
            let data = offset + usize::from(rest[12] >> 4).max(5) * 4;
            (ports_at(tcp.packet()), Span::within(bytes, data, bytes.len()))
        }
        Protocol::UDP | Protocol::UDPLITE => {
            let udp = UdpPacket::new(rest).ok_or_else(|| short(Layer::Udp, UdpPacket::minimum_packet_size()))?;
            // UDP's length covers its header and payload; bytes past it are not the datagram's.
            // UDP-Lite's field is a checksum coverage instead, so its payload runs to the end.
            let length = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
            let end = if protocol == Protocol::UDP && length >= 8 { offset + length } else { bytes.len() };
            (ports_at(udp.packet()), Span::within(bytes, offset + 8, end))
        }
        Protocol::SCTP => no_payload(ports_at(window(bytes, offset, SCTP_COMMON_HEADER, Layer::Sctp)?)),
        Protocol::ICMP => {
            let icmp = IcmpPacket::new(rest).ok_or_else(|| short(Layer::Icmp, IcmpPacket::minimum_packet_size()))?;
            no_payload(Transport::Icmp { kind: icmp.get_icmp_type().0, code: icmp.get_icmp_code().0 })
        }
        Protocol::ICMPV6 => {
            let icmp =
                Icmpv6Packet::new(rest).ok_or_else(|| short(Layer::Icmp, Icmpv6Packet::minimum_packet_size()))?;
            no_payload(Transport::Icmp { kind: icmp.get_icmpv6_type().0, code: icmp.get_icmpv6_code().0 })
        }
        _ => no_payload(Transport::Opaque),
    })
}

/// The source and destination ports that open a TCP, UDP, UDP-Lite or SCTP header.
///
/// Read here rather than through `pnet_packet`'s getters, which the compiler does not inline:
/// on the per-packet path each such call costs as much as the read.
#[inline(always)]
fn ports_at(header: &[u8]) -> Transport {
    let [s0, s1, d0, d1] = field::<4>(header, 0);
    Transport::Ports { source: u16::from_be_bytes([s0, s1]), destination: u16::from_be_bytes([d0, d1]) }
}

/// `N` bytes at `offset` of a header whose length was checked (zeros if it were short).
#[inline(always)]
fn field<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    bytes.get(offset..offset + N).and_then(|field| field.try_into().ok()).unwrap_or([0; N])
}

fn window(bytes: &[u8], offset: usize, needed: usize, layer: Layer) -> Result<&[u8], PacketError> {
    offset
        .checked_add(needed)
        .and_then(|end| bytes.get(offset..end))
        .ok_or_else(|| truncated(layer, bytes, offset, needed))
}

fn truncated(layer: Layer, bytes: &[u8], offset: usize, needed: usize) -> PacketError {
    PacketError::Truncated { layer, offset, needed, captured: bytes.len().saturating_sub(offset) }
}

#[cfg(test)]
mod tests;
