use proptest::prelude::*;

use super::*;

fn request(payload: &[u8]) -> SipRequest<'_> {
    match parse(payload) {
        Ok(SipMessage::Request(request)) => request,
        other => panic!("not a request: {other:?}"),
    }
}

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../fuzz/seeds/sip/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn a_scanners_options_reads_in_full() {
    let payload = seed("options-scanner");
    let request = request(&payload);
    assert_eq!((request.method, request.method_token), (Method::Options, &b"OPTIONS"[..]));
    assert_eq!(request.uri, SipUri { scheme: b"sip", user: Some(b"100"), host: b"198.51.100.1", port: None });
    assert!(request.uri.host_is_address());
    assert_eq!(request.user_agent, Some(&b"friendly-scanner"[..]));
    let from = request.from().unwrap();
    assert_eq!((from.user, from.host), (Some(&b"100"[..]), &b"1.1.1.1"[..]));
    assert_eq!(request.to().unwrap().host, b"1.1.1.1");
    assert_eq!(request.contact().unwrap().port, Some(5060));
    assert_eq!(request.sent_by(), Some((&b"203.0.113.5"[..], Some(5060))));
    assert_eq!(request.cseq(), Some((1, Method::Options)));
    assert_eq!(request.call_id, Some(&b"123456789"[..]));
    assert_eq!((request.max_forwards, request.content_length, request.complete), (Some(70), Some(0), true));
}

#[test]
fn compact_header_names_are_the_long_ones() {
    let payload = seed("register-compact");
    let request = request(&payload);
    assert_eq!(request.method, Method::Register);
    assert!(!request.uri.host_is_address());
    assert_eq!(request.from().unwrap().user, Some(&b"1001"[..]));
    assert_eq!(request.to().unwrap().host, b"pbx.example.com");
    assert_eq!(request.contact().unwrap().host, b"192.0.2.10");
    assert_eq!(request.call_id, Some(&b"1@192.0.2.10"[..]));
    assert_eq!(request.sent_by(), Some((&b"192.0.2.10"[..], Some(5060))));
    assert_eq!(request.content_length, Some(0));
}

#[test]
fn bare_line_feeds_folded_lines_passwords_and_ipv6_references() {
    let payload = seed("invite-lf-folded");
    let request = request(&payload);
    assert_eq!(request.uri.user, Some(&b"+441234567890"[..]));
    assert_eq!(request.from().unwrap().user, Some(&b"alice"[..]), "the password is not the user");
    assert_eq!(request.user_agent, Some(&b"Linphone\n  Desktop/5.2"[..]), "a folded value keeps its continuation");
    assert_eq!(request.sent_by(), Some((&b"[2001:db8::10]"[..], Some(5060))));
    let contact = request.contact().unwrap();
    assert!(contact.host_is_address());
    assert_eq!((request.content_length, request.complete), (Some(4), true));
}

#[test]
fn responses_keep_alives_and_other_protocols() {
    assert_eq!(parse(&seed("response-401")), Ok(SipMessage::Response { status: 401 }));
    assert_eq!(parse(&seed("keepalive")), Ok(SipMessage::KeepAlive));
    assert_eq!(parse(&seed("not-sip-http")), Err(SipError::NotSip));
    assert_eq!(parse(b""), Err(SipError::Empty));
    assert_eq!(parse(b"SIP/2.0 4O4 Not Found\r\n\r\n"), Err(SipError::BadStatus));
    assert_eq!(parse(b"SIP/2.0 200OK\r\n\r\n"), Err(SipError::BadStatus));
    assert_eq!(parse(b"\x00\x00\x00\x00"), Err(SipError::NotSip));
    assert_eq!(parse(b"INVITE nothing SIP/2.0\r\n\r\n"), Err(SipError::BadRequestUri));
    assert_eq!(parse(b"INVITE sip:@ SIP/2.0\r\n\r\n"), Err(SipError::BadRequestUri));
    assert_eq!(parse(b"INVITE sip:a@b SIP/1.0\r\n\r\n"), Err(SipError::NotSip));
    assert_eq!(parse(b"INVITE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n"), Err(SipError::BadHeader { offset: 24 }));
}

#[test]
fn a_request_cut_short_is_read_as_far_as_it_goes() {
    let payload = seed("register-cut-short");
    let request = request(&payload);
    assert!(!request.complete);
    assert!(request.uri.host_is_address());
    assert_eq!(request.call_id, Some(&b"cut"[..]));
    assert!(!self::request(b"OPTIONS sip:a SIP/2.0\r\nVia: x y\r\n").complete);
}

#[test]
fn the_first_header_of_a_name_counts_and_case_is_ignored() {
    let request =
        request(b"BYE sip:a@b SIP/2.0\r\nUSER-AGENT: first\r\nuser-agent: second\r\nCONTENT-length: 12\r\n\r\n");
    assert_eq!(request.user_agent, Some(&b"first"[..]));
    assert_eq!(request.content_length, Some(12));
    assert_eq!(request.method, Method::Bye);
    let lower = self::request(b"bye sip:a@b SIP/2.0\r\n\r\n");
    assert_eq!((lower.method, lower.method_token), (Method::Bye, &b"bye"[..]), "read as servers read it");
    assert_eq!(self::request(b"BYEE sip:a@b SIP/2.0\r\n\r\n").method, Method::Other);
}

#[test]
fn numbers_that_overflow_are_not_read() {
    let request = request(b"ACK sip:a@b SIP/2.0\r\nMax-Forwards: 99999999999\r\nl: 4294967296\r\n\r\n");
    assert_eq!((request.max_forwards, request.content_length), (None, None));
    assert_eq!(parse(b"ACK sip:a@b:99999 SIP/2.0\r\n\r\n"), Err(SipError::BadRequestUri), "a port past 65535");
}

/// A request as a phone or scanner writes it, from its parts.
#[derive(Clone, Debug)]
struct Built {
    method: Method,
    user: Option<String>,
    host: String,
    port: Option<u16>,
    from_user: String,
    to_user: String,
    user_agent: Option<String>,
    call_id: String,
    cseq: u32,
    max_forwards: u32,
    compact: bool,
    line_end: &'static str,
}

impl Built {
    fn text(&self) -> String {
        let (from, to, via, call_id, length) =
            if self.compact { ("f", "t", "v", "i", "l") } else { ("From", "To", "Via", "Call-ID", "Content-Length") };
        let end = self.line_end;
        let mut uri = "sip:".to_owned();
        if let Some(user) = &self.user {
            uri.push_str(&format!("{user}@"));
        }
        uri.push_str(&self.host);
        if let Some(port) = self.port {
            uri.push_str(&format!(":{port}"));
        }
        let mut text = format!("{} {uri};transport=udp SIP/2.0{end}", self.method);
        text.push_str(&format!("{via}: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK9{end}"));
        text.push_str(&format!("{from}: \"Caller\" <sip:{}@{}>;tag=1{end}", self.from_user, self.host));
        text.push_str(&format!("{to}: sip:{}@{};x=y{end}", self.to_user, self.host));
        text.push_str(&format!("{call_id}: {}{end}", self.call_id));
        text.push_str(&format!("CSeq: {} {}{end}", self.cseq, self.method));
        text.push_str(&format!("Max-Forwards: {}{end}", self.max_forwards));
        if let Some(agent) = &self.user_agent {
            text.push_str(&format!("User-Agent: {agent}{end}"));
        }
        text.push_str(&format!("X-Other: whatever{end}{length}: 0{end}{end}"));
        text
    }
}

fn built() -> impl Strategy<Value = Built> {
    let host = prop_oneof![
        "[a-z]{1,10}(\\.[a-z]{2,6}){1,2}",
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ];
    (
        (proptest::sample::select(&Method::NAMED[..]), proptest::option::of("[a-z0-9+]{1,12}"), host),
        (proptest::option::of(any::<u16>()), "[0-9]{1,6}", "[a-z0-9]{1,8}"),
        (proptest::option::of("[A-Za-z][A-Za-z0-9 ./-]{0,30}[A-Za-z0-9]"), "[a-z0-9@.-]{1,20}"),
        (any::<u32>(), 0u32..100, any::<bool>(), proptest::sample::select(&["\r\n", "\n"][..])),
    )
        .prop_map(
            |(
                (method, user, host),
                (port, from_user, to_user),
                (user_agent, call_id),
                (cseq, max_forwards, compact, line_end),
            )| Built {
                method,
                user,
                host,
                port,
                from_user,
                to_user,
                user_agent,
                call_id,
                cseq,
                max_forwards,
                compact,
                line_end,
            },
        )
}

proptest! {
    /// Every part of a built request reads back as it was written.
    #[test]
    fn built_requests_parse_back(built in built()) {
        let text = built.text();
        let request = request(text.as_bytes());
        prop_assert_eq!(request.method, built.method);
        prop_assert_eq!(request.uri.user, built.user.as_deref().map(str::as_bytes));
        prop_assert_eq!(request.uri.host, built.host.as_bytes());
        prop_assert_eq!(request.uri.port, built.port);
        prop_assert_eq!(request.uri.host_is_address(), !built.host.chars().next().unwrap().is_ascii_lowercase()
            || built.host.parse::<std::net::Ipv4Addr>().is_ok());
        prop_assert_eq!(request.from().unwrap().user, Some(built.from_user.as_bytes()));
        prop_assert_eq!(request.to().unwrap().user, Some(built.to_user.as_bytes()));
        prop_assert_eq!(request.user_agent, built.user_agent.as_deref().map(str::as_bytes));
        prop_assert_eq!(request.call_id, Some(built.call_id.as_bytes()));
        prop_assert_eq!(request.cseq(), Some((built.cseq, built.method)));
        prop_assert_eq!(request.max_forwards, Some(built.max_forwards));
        prop_assert_eq!(request.sent_by(), Some((&b"192.0.2.7"[..], Some(5060))));
        prop_assert_eq!((request.content_length, request.complete), (Some(0), true));
    }

    /// Any bytes: an answer, never a panic, and a request's slices lie inside the payload.
    #[test]
    fn any_bytes_give_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(SipMessage::Request(request)) = parse(&bytes) {
            let inside = |slice: &[u8]| bytes.as_ptr_range().contains(&slice.as_ptr()) || slice.is_empty();
            prop_assert!(inside(request.uri.host));
            prop_assert!(request.user_agent.is_none_or(inside));
        }
    }
}
