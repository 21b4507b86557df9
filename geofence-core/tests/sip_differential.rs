//! geofence's SIP parser against an independent one (sipmsg, nom-based): wherever sipmsg reads
//! a request, geofence must read it as a request too, with the same method, Request-URI (user,
//! host, port), User-Agent, Call-ID, Max-Forwards and From/To users and hosts. Run on the fuzz
//! seeds, the corpus fuzzing grew and regressions, and on requests built at random.
//!
//! sipmsg is stricter in places (CRLF only, known methods, no user of one character, no port
//! below 1000, one header of a name for its single-header getter), so only what it accepts is
//! compared; where it panics, the input counts as one it does not read.

use std::path::Path;

use geofence_core::sip::{parse, SipMessage, SipUri};
use proptest::prelude::*;
use sipmsg::{NomParser, SipHeader, SipRFCHeader, SipRequest};

/// sipmsg's header of a name, when there is exactly one.
fn single<'a>(request: &'a SipRequest<'a>, name: SipRFCHeader) -> Option<&'a SipHeader<'a>> {
    request.headers.get_rfc_s(name)
}

/// geofence's bytes as text; bytes that are not UTF-8 (which sipmsg stops before, in a host)
/// become U+FFFD, so they compare unequal to anything sipmsg read rather than panic.
fn text(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

/// Compares what both read; returns whether sipmsg read a request at all.
fn agree(bytes: &[u8]) -> bool {
    // sipmsg indexes out of bounds on some inputs fuzzing finds (in its name-addr parser): a
    // panic of the peer is its bug, and such an input is one it does not read.
    let Ok(Ok((_, theirs))) = std::panic::catch_unwind(|| SipRequest::parse(bytes)) else { return false };
    let ours = match parse(bytes) {
        Ok(SipMessage::Request(request)) => request,
        other => panic!("sipmsg reads a request, geofence {other:?}: {:?}", String::from_utf8_lossy(bytes)),
    };
    let show = || String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(ours.method.name(), theirs.rl.method.as_str(), "{}", show());
    let uri = &theirs.rl.uri;
    // sipmsg ends a host at the first character RFC 3261 does not allow in one (`~`, say) and
    // reads the request on; geofence keeps the whole host, which then matches no domain. Both
    // agree up to that character.
    let host = text(Some(ours.uri.host)).unwrap_or_default();
    match host.find(|c: char| !(c.is_ascii_alphanumeric() || "-.[]:".contains(c))) {
        Some(end) => assert_eq!(&host[..end], uri.hostport.host, "{}", show()),
        None => assert_eq!(host, uri.hostport.host, "{}", show()),
    }
    assert_eq!(ours.uri.port, uri.hostport.port, "{}", show());
    assert_eq!(text(ours.uri.user).as_deref(), uri.user_info().map(|user| user.value), "{}", show());
    for (header, mine) in [
        (SipRFCHeader::UserAgent, ours.user_agent),
        (SipRFCHeader::CallID, ours.call_id),
        (SipRFCHeader::MaxForwards, ours.max_forwards.map(|_| &b""[..])),
    ] {
        if let Some(their) = single(&theirs, header) {
            if header == SipRFCHeader::MaxForwards {
                assert_eq!(ours.max_forwards.map(|n| n.to_string()).as_deref(), Some(their.value.vstr), "{}", show());
            } else {
                assert_eq!(text(mine).as_deref(), Some(their.value.vstr), "{header:?}: {}", show());
            }
        }
    }
    let users = [(SipRFCHeader::From, ours.from()), (SipRFCHeader::To, ours.to())];
    for (header, mine) in users {
        let Some(their) = single(&theirs, header).and_then(|h| h.value.sip_uri()) else { continue };
        let mine: SipUri = mine.unwrap_or_else(|| panic!("{header:?} has a URI for sipmsg: {}", show()));
        assert_eq!(text(Some(mine.host)).as_deref(), Some(their.hostport.host), "{header:?}: {}", show());
        assert_eq!(text(mine.user).as_deref(), their.user_info().map(|user| user.value), "{header:?}: {}", show());
    }
    true
}

#[test]
fn both_parsers_read_the_fuzz_inputs_alike() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut read = 0;
    for folder in [fuzz.join("seeds/sip"), fuzz.join("corpus/sip"), fuzz.join("regressions/sip")] {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            read += usize::from(agree(&std::fs::read(entry.path()).unwrap()));
        }
    }
    assert!(read >= 3, "sipmsg read only {read} of the inputs as requests: the comparison would be empty");
}

proptest! {
    /// Requests as phones and scanners write them, with CRLF (what sipmsg reads).
    #[test]
    fn both_parsers_read_built_requests_alike(
        method in proptest::sample::select(&["INVITE", "REGISTER", "OPTIONS", "BYE", "ACK", "CANCEL"][..]),
        // sipmsg refuses a user of one character, which SIP allows: two or more here.
        user in proptest::option::of("[a-z0-9]{2,10}"),
        host in prop_oneof!["[a-z]{1,8}\\.[a-z]{2,4}", any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string())],
        // sipmsg reads no port of fewer than four digits (`:72` is no port to it).
        port in proptest::option::of(1000u16..),
        // RFC 3261's server-val: products (`name/version`) and words.
        agent in "[A-Za-z][A-Za-z0-9.-]{0,12}(/[0-9][0-9.]{0,5})?( [A-Za-z0-9]{1,8}){0,2}",
        from_user in "[a-z0-9]{2,8}",
        max_forwards in 0u32..100,
    ) {
        let user_part = user.map(|u| format!("{u}@")).unwrap_or_default();
        let port_part = port.map(|p| format!(":{p}")).unwrap_or_default();
        let text = format!(
            "{method} sip:{user_part}{host}{port_part} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n\
             From: \"Caller\" <sip:{from_user}@{host}>;tag=1\r\nTo: <sip:{from_user}@{host}>\r\nCall-ID: 77@{host}\r\n\
             CSeq: 1 {method}\r\nMax-Forwards: {max_forwards}\r\nUser-Agent: {agent}\r\nContent-Length: 0\r\n\r\n"
        );
        prop_assert!(agree(text.as_bytes()), "sipmsg refused {text:?}");
    }
}
