use proptest::prelude::*;

use super::*;

fn networks(texts: &[&str]) -> Vec<IpNetwork> {
    texts.iter().map(|text| text.parse().unwrap()).collect()
}

#[test]
fn a_firehol_netset_is_read_past_its_comments() {
    let netset = "#\n# voip_blocklist\n#\n# Maintainer      : example\n192.0.2.0/24\n198.51.100.7\n2001:db8:5::/48\n";
    let feed = parse(netset.as_bytes()).unwrap();
    assert_eq!(feed.format, FeedFormat::Lines);
    assert_eq!(feed.networks, networks(&["192.0.2.0/24", "198.51.100.7/32", "2001:db8:5::/48"]));
}

#[test]
fn spamhaus_drop_text_keeps_the_network_before_its_sbl_reference() {
    let drop = "; Spamhaus DROP List 2026/12/01 - (c) 2026 The Spamhaus Project SLU\r\n; Expires: Wed, 02 Dec 2026\r\n\
                192.0.2.0/24 ; SBL000001\r\n203.0.113.0/25 ; SBL000002\r\n";
    assert_eq!(parse(drop.as_bytes()).unwrap().networks, networks(&["192.0.2.0/24", "203.0.113.0/25"]));
}

#[test]
fn a_comment_after_an_entry_and_blank_lines_are_ignored() {
    let text = "\n  192.0.2.1   # the scanner of Tuesday\n\n\t2001:db8::1\n";
    assert_eq!(parse(text.as_bytes()).unwrap().networks, networks(&["192.0.2.1/32", "2001:db8::1/128"]));
}

#[test]
fn an_empty_file_is_an_empty_feed() {
    assert_eq!(parse(b"").unwrap(), Feed { format: FeedFormat::Lines, networks: vec![] });
    assert_eq!(parse(b"# nothing listed today\n").unwrap().networks, Vec::<IpNetwork>::new());
}

#[test]
fn a_bad_line_is_refused_with_its_number_and_the_fix() {
    let error = parse(b"192.0.2.0/24\n\n198.51.100.1/24\n").unwrap_err();
    assert_eq!(
        error,
        FeedError::Line {
            line: 3,
            problem: "`198.51.100.1/24` is not an address or CIDR network (host bits are set; did you mean \
                      `198.51.100.0/24`?)"
                .into()
        }
    );
    let error = parse(b"192.0.2.0/24\n<html><body>Too many requests</body></html>\n").unwrap_err();
    assert!(matches!(error, FeedError::Line { line: 2, .. }), "{error}");
    let error = parse(b"192.0.2.0/33\n").unwrap_err();
    assert!(error.to_string().contains("the prefix length 33 is too long"), "{error}");
}

#[test]
fn a_file_that_is_not_text_names_the_first_bad_byte() {
    assert_eq!(parse(b"192.0.2.0/24\n\xff\xfe").unwrap_err(), FeedError::NotText { offset: 13 });
}

const DROP_JSON: &str = r#"{"cidr":"192.0.2.0/24","sblid":"SBL000001","rir":"arin"}
{"cidr":"2001:db8:400::/40","sblid":"SBL000002","rir":"ripencc"}
{"type":"metadata","timestamp":1796083200,"size":2,"records":2,"copyright":"example","terms":"example"}
"#;

#[test]
fn spamhaus_json_lines_are_read_and_the_metadata_line_read_past() {
    let feed = parse(DROP_JSON.as_bytes()).unwrap();
    assert_eq!(feed.format, FeedFormat::SpamhausJson);
    assert_eq!(feed.networks, networks(&["192.0.2.0/24", "2001:db8:400::/40"]));
}

#[test]
fn a_json_line_cut_short_or_without_a_cidr_is_refused_at_its_line() {
    let cut = &DROP_JSON[..DROP_JSON.find("2001:db8:400").unwrap()];
    let error = parse(cut.as_bytes()).unwrap_err();
    assert!(
        matches!(&error, FeedError::Line { line: 2, problem } if problem.starts_with("not the JSON expected")),
        "{error}"
    );
    let error = parse(b"{\"cidr\":\"192.0.2.0/24\"}\n{\"sblid\":\"SBL1\"}\n").unwrap_err();
    assert_eq!(error, FeedError::Line { line: 2, problem: "a JSON line with no `cidr`".into() });
    let error = parse(b"{\"cidr\":\"192.0.2.9/24\"}\n").unwrap_err();
    assert!(matches!(&error, FeedError::Line { line: 1, problem } if problem.contains("192.0.2.0/24")), "{error}");
}

#[test]
fn an_apiban_answer_gives_its_addresses() {
    let answer = r#"{"ipaddress":["192.0.2.44","2001:db8::7","198.51.100.0/24"],"ID":"1796083200"}"#;
    let feed = parse(answer.as_bytes()).unwrap();
    assert_eq!(feed.format, FeedFormat::Apiban);
    assert_eq!(feed.networks, networks(&["192.0.2.44/32", "2001:db8::7/128", "198.51.100.0/24"]));
    let pretty = "{\n  \"ipaddress\": [\n    \"192.0.2.44\"\n  ],\n  \"ID\": 12\n}\n";
    assert_eq!(parse(pretty.as_bytes()).unwrap().networks, networks(&["192.0.2.44/32"]));
}

#[test]
fn apibans_no_new_bans_answer_holds_no_address() {
    let answer = r#"{"ipaddress":["no new bans"],"ID":"none"}"#;
    assert_eq!(parse(answer.as_bytes()).unwrap(), Feed { format: FeedFormat::Apiban, networks: vec![] });
}

#[test]
fn a_bad_apiban_entry_or_document_is_refused_with_where() {
    let error = parse(br#"{"ipaddress":["192.0.2.44","not an address"],"ID":"5"}"#).unwrap_err();
    assert_eq!(
        error,
        FeedError::Entry { entry: 2, problem: "`not an address` is not an address or CIDR network".into() }
    );
    let error = parse(b"{\n  \"ipaddress\": [\n    \"192.0.2.44\",\n").unwrap_err();
    assert!(matches!(error, FeedError::Line { line: 4, .. }), "{error}");
    let error = parse(b"{\"addresses\": []}").unwrap_err();
    assert!(error.to_string().contains("missing field `ipaddress`"), "{error}");
}

fn any_network() -> impl Strategy<Value = IpNetwork> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNetwork::new_truncate(std::net::Ipv4Addr::from(a), l).unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNetwork::new_truncate(std::net::Ipv6Addr::from(a), l).unwrap()),
    ]
}

proptest! {
    #[test]
    fn networks_written_in_each_format_read_back(written in prop::collection::vec(any_network(), 0..40)) {
        let as_lines: String = written.iter().map(|n| format!("{n} ; listed\n")).collect();
        let as_json_lines: String = written.iter().map(|n| format!("{{\"cidr\":\"{n}\",\"sblid\":\"SBL1\"}}\n")).collect();
        let entries: Vec<String> = written.iter().map(|n| format!("\"{n}\"")).collect();
        let as_apiban = format!("{{\"ipaddress\":[{}],\"ID\":\"9\"}}", entries.join(","));
        prop_assert_eq!(&parse(as_lines.as_bytes()).unwrap().networks, &written);
        prop_assert_eq!(&parse(as_apiban.as_bytes()).unwrap().networks, &written);
        if !written.is_empty() {
            prop_assert_eq!(&parse(as_json_lines.as_bytes()).unwrap().networks, &written);
        }
    }

    #[test]
    fn any_bytes_are_read_or_refused_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
    }
}
