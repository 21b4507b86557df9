//! geofence's packet parser against an independent one (etherparse): on random well-formed
//! packets they must agree exactly; on the fuzz seeds and corpora, wherever both read a field
//! they must read the same value, and neither may accept what the other finds broken at the IP
//! layer.

use std::net::IpAddr;
use std::path::Path;

use etherparse::{LaxNetSlice, LaxSlicedPacket, PacketBuilder, TransportSlice};
use geofence_core::packet::{parse, PacketError, PacketMeta, Protocol, Transport};
use proptest::prelude::*;

/// What etherparse reads: addresses, the protocol after extension headers, and the ports when
/// it found a whole TCP or UDP header.
#[derive(Debug, PartialEq)]
struct Theirs {
    source: IpAddr,
    destination: IpAddr,
    protocol: u8,
    ports: Option<(u16, u16)>,
}

fn theirs(bytes: &[u8]) -> Option<Theirs> {
    let packet = LaxSlicedPacket::from_ip(bytes).ok()?;
    let (source, destination, payload) = match packet.net? {
        LaxNetSlice::Ipv4(ip) => {
            (IpAddr::V4(ip.header().source_addr()), IpAddr::V4(ip.header().destination_addr()), ip.payload().clone())
        }
        LaxNetSlice::Ipv6(ip) => {
            (IpAddr::V6(ip.header().source_addr()), IpAddr::V6(ip.header().destination_addr()), ip.payload().clone())
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let ports = match packet.transport {
        Some(TransportSlice::Udp(udp)) => Some((udp.source_port(), udp.destination_port())),
        Some(TransportSlice::Tcp(tcp)) => Some((tcp.source_port(), tcp.destination_port())),
        _ => None,
    };
    Some(Theirs { source, destination, protocol: payload.ip_number.0, ports })
}

/// Compares where both parsers read something.
fn agree(bytes: &[u8]) {
    let ours = parse(bytes);
    match (&ours, theirs(bytes)) {
        (Ok(meta), Some(theirs)) => {
            assert_eq!((meta.source, meta.destination), (theirs.source, theirs.destination), "{bytes:02x?}");
            // In a later IPv4 fragment etherparse still reads an authentication header where the
            // bytes are the middle of the datagram; there only the IPv4 protocol field is sure.
            let later_ipv4_fragment = meta.transport == Transport::LaterFragment && meta.source.is_ipv4();
            // In a later IPv6 fragment whose fragment header names another extension header
            // next, etherparse reads that header out of the fragment's data (the middle of the
            // datagram); geofence stops at the fragment header, with the protocol it names.
            let later_ipv6_fragment_of_extension =
                meta.transport == Transport::LaterFragment && matches!(meta.protocol.0, 0 | 43 | 44 | 51 | 60);
            // etherparse reads one authentication header in IPv4 and reports a second as the
            // protocol; geofence walks the chain (see the chained-headers test below).
            let second_ipv4_ah = meta.source.is_ipv4() && theirs.protocol == 51;
            if !later_ipv4_fragment && !later_ipv6_fragment_of_extension && !second_ipv4_ah {
                assert_eq!(meta.protocol, Protocol(theirs.protocol), "{bytes:02x?}");
            }
            if let (Transport::Ports { source, destination }, Some(ports)) = (meta.transport, theirs.ports) {
                assert_eq!((source, destination), ports, "{bytes:02x?}");
            }
            if theirs.ports.is_some() {
                assert!(matches!(meta.transport, Transport::Ports { .. }), "they read ports, we did not: {bytes:02x?}");
            }
        }
        (Err(PacketError::Truncated { .. }), Some(theirs)) => {
            // A header cut short for us must not be one they read whole.
            assert!(theirs.ports.is_none(), "we found a truncated header they read: {bytes:02x?}");
        }
        (Ok(meta), None) => panic!("we accepted what etherparse refuses at the IP layer: {meta:?} {bytes:02x?}"),
        (Err(_), _) => {}
    }
}

fn expected(source: IpAddr, destination: IpAddr, protocol: Protocol, ports: (u16, u16)) -> PacketMeta {
    PacketMeta::new(source, destination, protocol, Transport::Ports { source: ports.0, destination: ports.1 })
}

/// Found by the random-bytes test in CI: a later IPv6 fragment whose fragment header names a
/// fragment header next.
#[test]
fn a_later_ipv6_fragment_naming_an_extension_header_next_is_read_alike() {
    let mut bytes = vec![0u8; 56];
    bytes[0] = 0x60;
    bytes[5] = 16;
    bytes[6] = 44;
    bytes[40] = 44;
    bytes[43] = 8;
    agree(&bytes);
    assert_eq!(parse(&bytes).map(|meta| meta.transport), Ok(Transport::LaterFragment));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_well_formed_packets_parse_the_same(
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        s4 in any::<[u8; 4]>(), d4 in any::<[u8; 4]>(),
        s6 in any::<[u8; 16]>(), d6 in any::<[u8; 16]>(),
        ports in any::<(u16, u16)>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let builder = if v6 { PacketBuilder::ipv6(s6, d6, 64) } else { PacketBuilder::ipv4(s4, d4, 64) };
        let mut bytes = Vec::new();
        let protocol = if tcp {
            builder.tcp(ports.0, ports.1, 1, 1024).write(&mut bytes, &payload).unwrap();
            Protocol::TCP
        } else {
            builder.udp(ports.0, ports.1).write(&mut bytes, &payload).unwrap();
            Protocol::UDP
        };
        let (source, destination) = if v6 { (IpAddr::from(s6), IpAddr::from(d6)) } else { (IpAddr::from(s4), IpAddr::from(d4)) };
        let meta = parse(&bytes).unwrap();
        let wanted = expected(source, destination, protocol, ports);
        prop_assert_eq!((meta.source, meta.destination, meta.protocol, meta.transport), (wanted.source, wanted.destination, wanted.protocol, wanted.transport));
        prop_assert_eq!(meta.payload(&bytes), &payload[..], "the transport payload, as built");
        let theirs = theirs(&bytes).unwrap();
        prop_assert_eq!((theirs.source, theirs.destination, theirs.protocol, theirs.ports), (source, destination, protocol.0, Some(ports)));
    }

    #[test]
    fn arbitrary_bytes_never_make_the_parsers_disagree(bytes in proptest::collection::vec(any::<u8>(), 0..120), version in prop_oneof![Just(0x45u8), Just(0x60), Just(0x46)]) {
        let mut bytes = bytes;
        if let Some(first) = bytes.first_mut() {
            *first = version;
        }
        agree(&bytes);
    }
}

#[test]
fn the_fuzz_seeds_and_corpora_parse_the_same() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut compared = 0;
    for folder in [fuzz.join("seeds/packet"), fuzz.join("corpus/packet"), fuzz.join("regressions/packet")] {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            agree(&std::fs::read(entry.path()).unwrap());
            compared += 1;
        }
    }
    assert!(compared >= 12, "only {compared} packets compared: the seeds are missing");
}

/// IPv4 with two chained authentication headers (12 bytes each), then UDP. RFC 4302 lets AH
/// follow AH (nested security associations); geofence walks both to the UDP ports. etherparse
/// reads one AH in IPv4 and reports the second as the payload's protocol, so `agree` allows that
/// one difference.
#[test]
fn chained_authentication_headers_in_ipv4_are_walked_to_the_transport() {
    let mut payload = vec![51, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]; // AH, next: AH
    payload.extend([17, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1]); // AH, next: UDP
    payload.extend([0x13, 0xc6, 0x13, 0xc4, 0, 8, 0, 0]);
    let bytes = geofence_core::sample::ip_packet(
        "192.0.2.9".parse().unwrap(),
        "192.0.2.1".parse().unwrap(),
        Protocol(51),
        &payload,
    );
    let meta = parse(&bytes).unwrap();
    assert_eq!((meta.protocol, meta.destination_port()), (Protocol::UDP, Some(5060)));
    assert_eq!(theirs(&bytes).map(|t| t.protocol), Some(51), "etherparse stops after one AH");
    agree(&bytes);
}
