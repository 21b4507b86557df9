//! Real packets for tests, examples, benchmarks and demos, built with `pnet_packet`'s mutable
//! views: what a SIP client would put on the wire, minus the link header NFQUEUE strips.

use std::net::IpAddr;

use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags};
use pnet_packet::udp::{self, MutableUdpPacket};

use crate::packet::Protocol;

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const TCP_HEADER: usize = 20;

/// An IP packet from `source` to `destination` whose payload is `transport` (a transport header
/// and its data, or IPv6 extension headers followed by them, with `protocol` naming the first).
///
/// # Panics
/// When the two addresses are of different families, or the payload exceeds 65,515 bytes.
pub fn ip_packet(source: IpAddr, destination: IpAddr, protocol: Protocol, transport: &[u8]) -> Vec<u8> {
    let next = IpNextHeaderProtocol(protocol.0);
    match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            let mut bytes = vec![0; IPV4_HEADER + transport.len()];
            let total = u16::try_from(bytes.len()).expect("IPv4 packet over 65,535 bytes");
            let mut ip = MutableIpv4Packet::new(&mut bytes).expect("buffer holds the header");
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(total);
            ip.set_ttl(64);
            ip.set_next_level_protocol(next);
            ip.set_source(source);
            ip.set_destination(destination);
            ip.set_payload(transport);
            let checksum = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(checksum);
            bytes
        }
        (IpAddr::V6(source), IpAddr::V6(destination)) => {
            let mut bytes = vec![0; IPV6_HEADER + transport.len()];
            let length = u16::try_from(transport.len()).expect("IPv6 payload over 65,535 bytes");
            let mut ip = MutableIpv6Packet::new(&mut bytes).expect("buffer holds the header");
            ip.set_version(6);
            ip.set_payload_length(length);
            ip.set_next_header(next);
            ip.set_hop_limit(64);
            ip.set_source(source);
            ip.set_destination(destination);
            ip.set_payload(transport);
            bytes
        }
        _ => panic!("source {source} and destination {destination} are of different address families"),
    }
}

/// A UDP datagram with a correct checksum, inside an IP packet.
///
/// # Panics
/// As [`ip_packet`].
pub fn udp_packet(source: IpAddr, destination: IpAddr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0; UDP_HEADER + payload.len()];
    let length = u16::try_from(datagram.len()).expect("UDP datagram over 65,535 bytes");
    let mut udp = MutableUdpPacket::new(&mut datagram).expect("buffer holds the header");
    udp.set_source(ports.0);
    udp.set_destination(ports.1);
    udp.set_length(length);
    udp.set_payload(payload);
    let checksum = match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => udp::ipv4_checksum(&udp.to_immutable(), &s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => udp::ipv6_checksum(&udp.to_immutable(), &s, &d),
        _ => 0,
    };
    udp.set_checksum(checksum);
    ip_packet(source, destination, Protocol::UDP, &datagram)
}

/// A TCP segment from `source` port 5062 to `destination` port `port` of an established
/// connection (ACK and PSH set, or ACK alone without a payload), with a correct checksum,
/// inside an IP packet.
///
/// # Panics
/// As [`ip_packet`].
pub fn tcp_segment(source: IpAddr, destination: IpAddr, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut segment = vec![0; TCP_HEADER + payload.len()];
    let mut tcp = MutableTcpPacket::new(&mut segment).expect("buffer holds the header");
    tcp.set_source(5062);
    tcp.set_destination(port);
    tcp.set_sequence(1);
    tcp.set_acknowledgement(1);
    tcp.set_data_offset(5);
    tcp.set_flags(if payload.is_empty() { TcpFlags::ACK } else { TcpFlags::ACK | TcpFlags::PSH });
    tcp.set_window(64240);
    tcp.set_payload(payload);
    let checksum = match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&tcp.to_immutable(), &s, &d),
        (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&tcp.to_immutable(), &s, &d),
        _ => 0,
    };
    tcp.set_checksum(checksum);
    ip_packet(source, destination, Protocol::TCP, &segment)
}

/// A SIP OPTIONS request, the probe toll-fraud scanners send first, from `source` port 5062 to
/// `destination` port 5060.
///
/// # Panics
/// As [`ip_packet`].
pub fn sip_options(source: IpAddr, destination: IpAddr) -> Vec<u8> {
    udp_packet(source, destination, (5062, 5060), &sip_options_payload(source, destination))
}

/// The payload of [`sip_options`]: the request alone, for any transport.
pub fn sip_options_payload(source: IpAddr, destination: IpAddr) -> Vec<u8> {
    let host = |address: IpAddr| match address {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    format!(
        "OPTIONS sip:100@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from}:5062;branch=z9hG4bK-geofence\r\n\
         From: <sip:probe@{from}>;tag=1\r\n\
         To: <sip:100@{to}>\r\n\
         Call-ID: geofence-sample@{from}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        from = host(source),
        to = host(destination),
    )
    .into_bytes()
}
