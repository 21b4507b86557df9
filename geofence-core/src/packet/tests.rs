use super::*;
use proptest::prelude::*;

use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::MutableIpv4Packet;
use pnet_packet::ipv6::MutableIpv6Packet;

/// IPv4 with one 4-byte option (router alert), UDP 203.0.113.9:5062 → 192.0.2.1:5060, 4 bytes of
/// SIP ("OPTI").
const IPV4_WITH_OPTIONS: [u8; 36] = [
    0x46, 0x00, 0x00, 0x24, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, // ihl 6, UDP
    203, 0, 113, 9, 192, 0, 2, 1, // addresses
    0x94, 0x04, 0x00, 0x00, // router alert option
    0x13, 0xc6, 0x13, 0xc4, 0x00, 0x0c, 0x00, 0x00, // UDP 5062 → 5060
    b'O', b'P', b'T', b'I',
];

/// IPv6 2001:db8:1::7 → 2001:db8::1 with hop-by-hop (8 bytes), destination options (16 bytes)
/// and a first-fragment header before UDP 5062 → 5060.
fn ipv6_chain(fragment_offset: u16) -> Vec<u8> {
    let mut bytes = vec![
        0x60, 0, 0, 0, 0, 40, 0, 64, // payload length 40, next header hop-by-hop
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, // source
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // destination
        60, 0, 1, 4, 0, 0, 0, 0, // hop-by-hop → destination options, PadN
        44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // destination options (16) → fragment
        17, 0, 0, 0, 0, 0, 0, 1, // fragment → UDP, offset patched below, M flag
        0x13, 0xc6, 0x13, 0xc4, 0x00, 0x08, 0x00, 0x00, // UDP 5062 → 5060
    ];
    let field = (fragment_offset << 3) | 1;
    bytes[66..68].copy_from_slice(&field.to_be_bytes());
    bytes
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn ipv4_options_are_skipped_to_reach_the_udp_ports() {
    let meta = parse(&IPV4_WITH_OPTIONS).unwrap();
    assert_eq!(
        meta,
        PacketMeta {
            source: addr("203.0.113.9"),
            destination: addr("192.0.2.1"),
            protocol: Protocol::UDP,
            transport: Transport::Ports { source: 5062, destination: 5060 },
            payload: Span { start: 32, end: 36 },
        }
    );
    assert_eq!(meta.ip_version(), 4);
}

#[test]
fn ipv6_extension_chain_is_walked_to_the_udp_ports() {
    let meta = parse(&ipv6_chain(0)).unwrap();
    assert_eq!(meta.source, addr("2001:db8:1::7"));
    assert_eq!(meta.protocol, Protocol::UDP);
    assert_eq!(meta.transport, Transport::Ports { source: 5062, destination: 5060 });
    assert_eq!(meta.ip_version(), 6);
}

#[test]
fn ipv6_later_fragment_has_no_ports() {
    let meta = parse(&ipv6_chain(185)).unwrap();
    assert_eq!((meta.protocol, meta.transport), (Protocol::UDP, Transport::LaterFragment));
}

#[test]
fn ipv4_later_fragment_has_no_ports() {
    let mut bytes = IPV4_WITH_OPTIONS;
    bytes[6] = 0x00;
    bytes[7] = 0xb9; // fragment offset 185
    let meta = parse(&bytes[..24]).unwrap();
    assert_eq!(meta.transport, Transport::LaterFragment);
    assert_eq!(meta.destination_port(), None);
}

#[test]
fn capture_shorter_than_total_length_still_parses() {
    // The queue's copy range cut the SIP payload off; the headers are all there.
    let meta = parse(&IPV4_WITH_OPTIONS[..32]).unwrap();
    assert_eq!(meta.destination_port(), Some(5060));
}

#[test]
fn truncated_udp_header_is_malformed() {
    assert_eq!(
        parse(&IPV4_WITH_OPTIONS[..30]),
        Err(PacketError::Truncated { layer: Layer::Udp, offset: 24, needed: 8, captured: 6 })
    );
}

#[test]
fn truncated_ipv4_options_are_malformed() {
    assert_eq!(
        parse(&IPV4_WITH_OPTIONS[..22]),
        Err(PacketError::Truncated { layer: Layer::Ipv4, offset: 0, needed: 24, captured: 22 })
    );
}

#[test]
fn ipv4_header_length_below_minimum_is_malformed() {
    let mut bytes = IPV4_WITH_OPTIONS;
    bytes[0] = 0x44;
    assert_eq!(parse(&bytes), Err(PacketError::Ipv4HeaderTooShort(16)));
}

#[test]
fn ipv4_total_length_below_header_is_malformed() {
    let mut bytes = IPV4_WITH_OPTIONS;
    bytes[3] = 20;
    assert_eq!(parse(&bytes), Err(PacketError::Ipv4TotalLengthTooShort { total: 20, header: 24 }));
}

#[test]
fn truncated_extension_header_is_malformed() {
    let bytes = ipv6_chain(0);
    assert_eq!(
        parse(&bytes[..60]),
        Err(PacketError::Truncated { layer: Layer::IpExtension, offset: 48, needed: 16, captured: 12 })
    );
}

#[test]
fn empty_and_unknown_versions_are_refused() {
    assert_eq!(parse(&[]), Err(PacketError::Empty));
    assert_eq!(parse(&[0x55; 40]), Err(PacketError::UnknownVersion(5)));
}

#[test]
fn short_ipv6_header_is_malformed() {
    assert_eq!(
        parse(&ipv6_chain(0)[..39]),
        Err(PacketError::Truncated { layer: Layer::Ipv6, offset: 0, needed: 40, captured: 39 })
    );
}

#[test]
fn esp_and_no_next_header_stop_the_walk_without_ports() {
    for (next, protocol) in [(50, Protocol::ESP), (59, Protocol::NO_NEXT_HEADER)] {
        let mut bytes = ipv6_chain(0);
        bytes[40] = next;
        let meta = parse(&bytes).unwrap();
        assert_eq!((meta.protocol, meta.transport), (protocol, Transport::Opaque));
    }
}

#[test]
fn authentication_header_length_counts_in_four_byte_words() {
    // AH with payload length 4: (4 + 2) * 4 = 24 bytes, then TCP.
    let mut transport = vec![6, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    transport.extend([0; 12]);
    transport.extend([0x9c, 0x40, 0x13, 0xc4]);
    transport.extend([0; 16]);
    let bytes = crate::sample::ip_packet(addr("2001:db8::2"), addr("2001:db8::1"), Protocol(51), &transport);
    let meta = parse(&bytes).unwrap();
    assert_eq!((meta.protocol, meta.destination_port()), (Protocol::TCP, Some(5060)));
}

#[test]
fn an_ipv4_authentication_header_is_walked_to_the_transport() {
    let mut transport = vec![17, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    transport.extend([0; 12]);
    transport.extend([0x13, 0xc6, 0x13, 0xc4, 0, 8, 0, 0]);
    let bytes = crate::sample::ip_packet(addr("192.0.2.9"), addr("192.0.2.1"), Protocol(51), &transport);
    let meta = parse(&bytes).unwrap();
    assert_eq!((meta.protocol, meta.destination_port()), (Protocol::UDP, Some(5060)));
    assert!(matches!(parse(&bytes[..40]), Err(PacketError::Truncated { layer: Layer::IpExtension, .. })));
}

/// Found by the differential test over a fuzz corpus: an IPv4 packet (with one option word)
/// whose authentication header gives payload length 0, 8 bytes, shorter than its own SPI and
/// sequence number. etherparse does not read it as an AH, and neither do we now; before, we
/// walked past it and reported the protocol in its SPI's first byte (4).
const AH_SHORTER_THAN_ITS_FIXED_FIELDS: [u8; 32] = [
    0x46, 0x5d, 0xcb, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x33, 0x00, 0x00, 0x00, 0x07, 0x20, 0x01, //
    0x0d, 0xb8, 0x00, 0x00, 0x71, 0x00, 0x94, 0xba, 0x04, 0x00, 0x00, 0x13, 0xc6, 0x13, 0x00, 0x0c,
];

#[test]
fn an_authentication_header_shorter_than_twelve_bytes_is_malformed() {
    assert_eq!(
        parse(&AH_SHORTER_THAN_ITS_FIXED_FIELDS),
        Err(PacketError::AuthenticationHeaderTooShort { offset: 24, length: 8 })
    );
    // The smallest real one (payload length 1: 12 bytes, no ICV) is walked as before.
    let mut transport = vec![17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    transport.extend([0x13, 0xc6, 0x13, 0xc4, 0, 8, 0, 0]);
    let bytes = crate::sample::ip_packet(addr("192.0.2.9"), addr("192.0.2.1"), Protocol(51), &transport);
    assert_eq!(parse(&bytes).unwrap().destination_port(), Some(5060));
}

#[test]
fn a_hop_by_hop_header_after_another_extension_header_is_malformed() {
    // Hop-by-hop (next: hop-by-hop again), 8 bytes each, then UDP: RFC 8200 allows the first.
    let mut transport = vec![0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0];
    transport.extend([0x13, 0xc6, 0x13, 0xc4, 0, 8, 0, 0]);
    let twice = crate::sample::ip_packet(addr("2001:db8::2"), addr("2001:db8::1"), Protocol(0), &transport);
    assert_eq!(parse(&twice), Err(PacketError::MisplacedHopByHop(48)));
    let once = crate::sample::ip_packet(addr("2001:db8::2"), addr("2001:db8::1"), Protocol(0), &transport[8..]);
    assert_eq!(parse(&once).unwrap().destination_port(), Some(5060));
}

#[test]
fn icmp_and_icmpv6_report_type_and_code() {
    let echo = crate::sample::ip_packet(addr("192.0.2.1"), addr("192.0.2.2"), Protocol::ICMP, &[8, 0, 0, 0]);
    assert_eq!(parse(&echo).unwrap().transport, Transport::Icmp { kind: 8, code: 0 });
    let echo6 = crate::sample::ip_packet(addr("2001:db8::1"), addr("2001:db8::2"), Protocol::ICMPV6, &[128, 0, 0, 0]);
    assert_eq!(parse(&echo6).unwrap().transport, Transport::Icmp { kind: 128, code: 0 });
}

#[test]
fn sctp_and_udplite_ports_are_read() {
    let mut sctp = vec![0x13, 0xc6, 0x13, 0xc4];
    sctp.extend([0; 8]);
    let packet = crate::sample::ip_packet(addr("192.0.2.1"), addr("192.0.2.2"), Protocol::SCTP, &sctp);
    assert_eq!(parse(&packet).unwrap().destination_port(), Some(5060));
    let short = crate::sample::ip_packet(addr("192.0.2.1"), addr("192.0.2.2"), Protocol::SCTP, &sctp[..11]);
    assert!(matches!(parse(&short), Err(PacketError::Truncated { layer: Layer::Sctp, .. })));
    let lite =
        crate::sample::ip_packet(addr("192.0.2.1"), addr("192.0.2.2"), Protocol::UDPLITE, &[0, 1, 0, 2, 0, 8, 0, 0]);
    assert_eq!(parse(&lite).unwrap().destination_port(), Some(2));
}

#[test]
fn protocol_names_round_trip() {
    for name in ["tcp", "udp", "udplite", "sctp", "icmp", "icmpv6", "esp"] {
        assert_eq!(Protocol::from_name(name).and_then(Protocol::name), Some(name));
    }
    assert_eq!(Protocol(47).to_string(), "protocol 47");
    assert_eq!(Protocol::from_name("gre"), None);
}

/// What a generated packet should parse back to.
#[derive(Debug, Clone)]
struct Built {
    source: IpAddr,
    destination: IpAddr,
    protocol: u8,
    ports: (u16, u16),
    /// IPv4 option words, or IPv6 extension headers as (kind, 8-byte units beyond the first).
    extensions: Vec<(u8, u8)>,
    later_fragment: bool,
}

fn transport_protocol() -> impl Strategy<Value = u8> {
    prop_oneof![Just(6u8), Just(17), Just(132), Just(136)]
}

fn ipv4_case() -> impl Strategy<Value = Built> {
    (any::<[u8; 4]>(), any::<[u8; 4]>(), transport_protocol(), any::<(u16, u16)>(), 0u8..=10, any::<bool>()).prop_map(
        |(s, d, protocol, ports, option_words, later_fragment)| Built {
            source: IpAddr::from(s),
            destination: IpAddr::from(d),
            protocol,
            ports,
            extensions: vec![(0, option_words)],
            later_fragment,
        },
    )
}

/// A well-formed IPv6 chain: an optional hop-by-hop header first (RFC 8200 allows it nowhere
/// else), then routing, destination options and fragment headers in any order.
fn ipv6_case() -> impl Strategy<Value = Built> {
    let extension = (prop_oneof![Just(43u8), Just(60), Just(44)], 0u8..4);
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        transport_protocol(),
        any::<(u16, u16)>(),
        (proptest::option::of(0u8..4), proptest::collection::vec(extension, 0..5)),
        any::<bool>(),
    )
        .prop_map(|(s, d, protocol, ports, (hop_by_hop, rest), later_fragment)| Built {
            source: IpAddr::from(s),
            destination: IpAddr::from(d),
            protocol,
            ports,
            extensions: hop_by_hop.map(|length| (0, length)).into_iter().chain(rest).collect(),
            later_fragment,
        })
}

fn l4_header(built: &Built) -> Vec<u8> {
    let length = match built.protocol {
        6 => 20,
        132 => 12,
        _ => 8,
    };
    let mut header = vec![0u8; length];
    header[..2].copy_from_slice(&built.ports.0.to_be_bytes());
    header[2..4].copy_from_slice(&built.ports.1.to_be_bytes());
    header
}

fn build_ipv4(built: &Built) -> Vec<u8> {
    let option_words = usize::from(built.extensions[0].1);
    let header = 20 + option_words * 4;
    let l4 = l4_header(built);
    let mut bytes = vec![0u8; header + l4.len()];
    let mut ip = MutableIpv4Packet::new(&mut bytes).unwrap();
    ip.set_version(4);
    ip.set_header_length(5 + built.extensions[0].1);
    ip.set_total_length(u16::try_from(header + l4.len()).unwrap());
    ip.set_next_level_protocol(IpNextHeaderProtocol(built.protocol));
    ip.set_fragment_offset(if built.later_fragment { 100 } else { 0 });
    let (IpAddr::V4(s), IpAddr::V4(d)) = (built.source, built.destination) else { unreachable!() };
    ip.set_source(s);
    ip.set_destination(d);
    bytes[20..header].fill(1); // NOP options
    bytes[header..].copy_from_slice(&l4);
    bytes
}

fn build_ipv6(built: &Built) -> Vec<u8> {
    let mut payload = Vec::new();
    let kinds: Vec<u8> = built.extensions.iter().map(|(kind, _)| *kind).chain([44]).collect();
    for (index, (kind, extra)) in built.extensions.iter().enumerate() {
        let next = kinds[index + 1];
        let mut header = if *kind == 44 {
            vec![next, 0, 0, 0, 0, 0, 0, 0]
        } else {
            let mut h = vec![0u8; 8 * (1 + usize::from(*extra))];
            h[0] = next;
            h[1] = *extra;
            h
        };
        header[0] = next;
        payload.extend(header);
    }
    let offset: u16 = if built.later_fragment { 64 } else { 0 };
    payload.extend([built.protocol, 0]);
    payload.extend((offset << 3).to_be_bytes());
    payload.extend([0, 0, 0, 9]);
    payload.extend(l4_header(built));
    let mut bytes = vec![0u8; 40 + payload.len()];
    let mut ip = MutableIpv6Packet::new(&mut bytes).unwrap();
    ip.set_version(6);
    ip.set_payload_length(u16::try_from(payload.len()).unwrap());
    ip.set_next_header(IpNextHeaderProtocol(kinds[0]));
    let (IpAddr::V6(s), IpAddr::V6(d)) = (built.source, built.destination) else { unreachable!() };
    ip.set_source(s);
    ip.set_destination(d);
    ip.set_payload(&payload);
    bytes
}

fn expected(built: &Built) -> PacketMeta {
    PacketMeta {
        source: built.source,
        destination: built.destination,
        protocol: Protocol(built.protocol),
        transport: if built.later_fragment {
            Transport::LaterFragment
        } else {
            Transport::Ports { source: built.ports.0, destination: built.ports.1 }
        },
        payload: Span::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_version_nibble_never_panic(
        version in prop_oneof![Just(0x45u8), Just(0x4f), Just(0x60)],
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![version];
        bytes.extend(rest);
        let _ = parse(&bytes);
    }

    #[test]
    fn built_ipv4_packets_parse_back(built in ipv4_case()) {
        prop_assert_eq!(parse(&build_ipv4(&built)), Ok(expected(&built)));
    }

    #[test]
    fn built_ipv6_packets_with_extension_chains_parse_back(built in ipv6_case()) {
        prop_assert_eq!(parse(&build_ipv6(&built)), Ok(expected(&built)));
    }

    #[test]
    fn every_truncation_of_a_built_packet_is_an_error_or_the_same_meta(built in ipv6_case(), cut in 0usize..200) {
        let bytes = build_ipv6(&built);
        let cut = cut.min(bytes.len());
        match parse(&bytes[..cut]) {
            Ok(meta) => prop_assert_eq!(meta, expected(&built)),
            Err(PacketError::Truncated { .. }) => {}
            Err(PacketError::Empty) => prop_assert_eq!(cut, 0),
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}

/// The payload is what follows the transport header, up to the UDP length: link padding and
/// extension headers move neither end.
#[test]
fn the_payload_is_the_datagram_after_its_header() {
    let sip = crate::sample::sip_options(addr("192.0.2.10"), addr("192.0.2.1"));
    let meta = parse(&sip).unwrap();
    let payload = meta.payload(&sip);
    assert!(payload.starts_with(b"OPTIONS sip:") && payload.ends_with(b"\r\n\r\n"));
    assert_eq!(payload.len(), sip.len() - 28);
    let mut padded = sip.clone();
    padded.extend([0u8; 6]);
    assert_eq!(parse(&padded).unwrap().payload(&padded), payload, "padding past the IP length");
    // A UDP length shorter than the IP payload ends the datagram there.
    let mut short = sip.clone();
    short[24..26].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(parse(&short).unwrap().payload(&short), &payload[..12]);
    // Captured only in part: the payload is what was captured.
    assert_eq!(parse(&sip[..40]).unwrap().payload(&sip[..40]), &payload[..12]);
    let v6 = crate::sample::sip_options(addr("2001:db8::10"), addr("2001:db8::1"));
    let meta = parse(&v6).unwrap();
    assert!(meta.payload(&v6).starts_with(b"OPTIONS sip:"));
    assert!(PacketMeta::new(meta.source, meta.destination, meta.protocol, meta.transport).payload(&v6).is_empty());
}
