//! The SIP view: what a SIP request over UDP says, read from the datagram's payload.
//!
//! [`parse`] reads the start line and the headers a filter decides on (RFC 3261 section 7), in
//! one pass over the bytes, without allocating: every value is a slice of the payload. Header
//! names are matched ignoring case, in full or compact form (`f t v m i l`; `k s c e` are
//! recognised and passed over), lines end in CRLF or a bare LF, and a folded header (a line that
//! starts with a space or tab continues the one before) keeps its continuation in its value.
//! Work is linear in the payload: each byte is looked at a bounded number of times.
//!
//! ```
//! use geofence_core::sip::{parse, Method, SipMessage};
//! let payload = b"REGISTER sip:pbx.example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n\
//!     f: <sip:1001@pbx.example.com>;tag=1\r\n\
//!     t: <sip:1001@pbx.example.com>\r\n\
//!     i: 1@192.0.2.10\r\nCSeq: 1 REGISTER\r\nUser-Agent: friendly-scanner\r\nl: 0\r\n\r\n";
//! let SipMessage::Request(request) = parse(payload)? else { panic!("a request") };
//! assert_eq!(request.method, Method::Register);
//! assert_eq!(request.uri.host, b"pbx.example.com");
//! assert_eq!(request.from().and_then(|from| from.user), Some(&b"1001"[..]));
//! assert_eq!(request.user_agent, Some(&b"friendly-scanner"[..]));
//! # Ok::<(), geofence_core::sip::SipError>(())
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a UDP payload on a SIP port is.
// The request is large beside the others, but boxing it would allocate for every packet; it
// lives on the stack for one decision.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipMessage<'a> {
    /// A request, with the headers a filter reads.
    Request(SipRequest<'a>),
    /// A response (`SIP/2.0 404 Not Found`): its status code.
    Response {
        /// The three-digit status code.
        status: u16,
    },
    /// Only line ends and blanks: a keep-alive (RFC 5626 section 4.4.1), which phones behind
    /// NAT send every few seconds.
    KeepAlive,
}

/// A SIP method (RFC 3261 and its extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `INVITE`: starts a call.
    Invite,
    /// `ACK`
    Ack,
    /// `BYE`
    Bye,
    /// `CANCEL`
    Cancel,
    /// `REGISTER`: binds a user to a contact; what password guessers send.
    Register,
    /// `OPTIONS`: asks capabilities; what scanners probe with.
    Options,
    /// `PRACK` (RFC 3262)
    Prack,
    /// `SUBSCRIBE` (RFC 6665)
    Subscribe,
    /// `NOTIFY` (RFC 6665)
    Notify,
    /// `PUBLISH` (RFC 3903)
    Publish,
    /// `INFO` (RFC 6086)
    Info,
    /// `REFER` (RFC 3515)
    Refer,
    /// `MESSAGE` (RFC 3428)
    Message,
    /// `UPDATE` (RFC 3311)
    Update,
    /// Any other token.
    Other,
}

impl Method {
    /// Every named method, in the order of [`Method::name`].
    pub const NAMED: [Method; 14] = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Register,
        Method::Options,
        Method::Prack,
        Method::Subscribe,
        Method::Notify,
        Method::Publish,
        Method::Info,
        Method::Refer,
        Method::Message,
        Method::Update,
    ];

    /// The method a token names, ignoring case (`Other` for a token that is none of them).
    ///
    /// RFC 3261 makes methods case-sensitive, but servers read them ignoring case (Kamailio's
    /// `parse_method_name` does): were `register` another method here than there, a scanner would
    /// pass a method rule, and the count of watched methods, by writing its REGISTER in lower case.
    pub fn of(token: &[u8]) -> Method {
        Method::NAMED
            .into_iter()
            .find(|method| method.name().as_bytes().eq_ignore_ascii_case(token))
            .unwrap_or(Method::Other)
    }

    /// Its name as written on the wire; `OTHER` for [`Method::Other`].
    pub fn name(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Other => "OTHER",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SIP or tel URI, split where a filter needs it: `sip:alice:secret@host:5060;transport=udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sip`, `sips`, `tel` or another scheme, as written.
    pub scheme: &'a [u8],
    /// The user part, without any password; `None` when there is no `@`.
    pub user: Option<&'a [u8]>,
    /// The host: a domain name, an IPv4 address or a bracketed IPv6 reference (for `tel`, the
    /// number).
    pub host: &'a [u8],
    /// The port, when one is written.
    pub port: Option<u16>,
}

impl SipUri<'_> {
    /// Whether the host is an address literal (`192.0.2.1`, `[2001:db8::1]`) rather than a
    /// name: what scanners that sweep addresses send, where a phone names its server's domain.
    pub fn host_is_address(&self) -> bool {
        is_address(self.host)
    }
}

/// Whether `host` is an IPv4 address or a bracketed IPv6 reference.
pub fn is_address(host: &[u8]) -> bool {
    let text = std::str::from_utf8(host).unwrap_or_default();
    match text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        Some(inner) => inner.parse::<Ipv6Addr>().is_ok(),
        None => text.parse::<Ipv4Addr>().is_ok(),
    }
}

/// A request: its start line and the headers geofence reads, each the first of its name. Values
/// are the bytes after the colon, without surrounding blanks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SipRequest<'a> {
    /// The method.
    pub method: Method,
    /// The method token as written (the name of an [`Method::Other`]).
    pub method_token: &'a [u8],
    /// The Request-URI.
    pub uri: SipUri<'a>,
    /// `From` / `f`.
    pub from: Option<&'a [u8]>,
    /// `To` / `t`.
    pub to: Option<&'a [u8]>,
    /// `Contact` / `m`.
    pub contact: Option<&'a [u8]>,
    /// The first `Via` / `v`.
    pub via: Option<&'a [u8]>,
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// `Call-ID` / `i`.
    pub call_id: Option<&'a [u8]>,
    /// `CSeq`.
    pub cseq: Option<&'a [u8]>,
    /// `Max-Forwards`, when it is a number.
    pub max_forwards: Option<u32>,
    /// `Content-Length` / `l`, when it is a number.
    pub content_length: Option<u32>,
    /// Whether the headers end with an empty line inside the payload (a datagram cut short by
    /// a copy range, say, does not).
    pub complete: bool,
}

impl<'a> SipRequest<'a> {
    /// The `From` header's URI and display name.
    pub fn from(&self) -> Option<SipUri<'a>> {
        self.from.and_then(name_addr)
    }

    /// The `To` header's URI.
    pub fn to(&self) -> Option<SipUri<'a>> {
        self.to.and_then(name_addr)
    }

    /// The first `Contact`'s URI (`None` for `Contact: *`).
    pub fn contact(&self) -> Option<SipUri<'a>> {
        self.contact.and_then(name_addr)
    }

    /// The top `Via`'s sent-by host and port.
    pub fn sent_by(&self) -> Option<(&'a [u8], Option<u16>)> {
        let via = self.via?;
        // `SIP/2.0/UDP host:port;params`: the sent-by follows the protocol, after blanks.
        let after_protocol = via.iter().position(|b| is_blank(*b))?;
        let rest = trim(&via[after_protocol..]);
        let end = rest.iter().position(|b| matches!(b, b';' | b',')).unwrap_or(rest.len());
        host_port(trim(&rest[..end]))
    }

    /// The `CSeq` number and method.
    pub fn cseq(&self) -> Option<(u32, Method)> {
        let cseq = self.cseq?;
        let blank = cseq.iter().position(|b| is_blank(*b))?;
        Some((number(&cseq[..blank])?, Method::of(trim(&cseq[blank..]))))
    }
}

/// Why a payload is not a SIP message geofence can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// No bytes.
    #[error("empty payload")]
    Empty,
    /// The first line is neither `METHOD URI SIP/2.0` nor `SIP/2.0 CODE REASON`.
    #[error("the first line is neither a SIP request line nor a status line")]
    NotSip,
    /// The Request-URI has no scheme, or no host.
    #[error("the Request-URI is not a URI with a host")]
    BadRequestUri,
    /// A status line whose code is not three digits.
    #[error("the status code is not three digits")]
    BadStatus,
    /// A header line without a name and a colon.
    #[error("header line at offset {offset} has no name and colon")]
    BadHeader {
        /// Where the line starts in the payload.
        offset: usize,
    },
}

/// Reads a UDP payload as a SIP message.
pub fn parse(payload: &[u8]) -> Result<SipMessage<'_>, SipError> {
    if payload.is_empty() {
        return Err(SipError::Empty);
    }
    if payload.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t')) {
        return Ok(SipMessage::KeepAlive);
    }
    let (start, offset) = line_at(payload, 0);
    if let Some(status) = start.strip_prefix(b"SIP/2.0 ") {
        return status_code(status).map(|status| SipMessage::Response { status });
    }
    let mut request = request_line(start)?;
    read_headers(&mut request, payload, offset)?;
    Ok(SipMessage::Request(request))
}

/// Reads the header lines from `offset` into `request`: one search for line ends over all of
/// them, then a look at each line's name, which is short.
fn read_headers<'a>(request: &mut SipRequest<'a>, payload: &'a [u8], offset: usize) -> Result<(), SipError> {
    let headers = payload.get(offset..).unwrap_or_default();
    let (mut start, mut seen_header) = (0, false);
    // The field the last header line filled, and where its value starts: a folded line
    // continues it.
    let mut last: Option<(Field, usize)> = None;
    loop {
        let (end, next) = match line_end(headers, start) {
            Some(end) => (end, end + 1),
            // A last line without an end: the payload was cut short, or the sender is sloppy.
            None if start < headers.len() => (headers.len(), headers.len()),
            None => return Ok(()),
        };
        let raw = &headers[start..end];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        match line.first() {
            None => {
                request.complete = next > end;
                return Ok(());
            }
            Some(b' ' | b'\t') if seen_header => {
                if let Some((field, value_start)) = last {
                    *request.field(field) = Some(trim(&headers[value_start..end]));
                }
            }
            Some(_) => {
                last = header(request, line, offset + start)?.map(|(field, value)| (field, start + value));
                seen_header = true;
            }
        }
        start = next;
    }
}

/// The line starting at `offset` without its line end, and where the next line starts (past
/// the payload's end when this line runs to it unterminated).
fn line_at(payload: &[u8], offset: usize) -> (&[u8], usize) {
    let rest = payload.get(offset..).unwrap_or_default();
    match line_end(rest, 0) {
        Some(at) => {
            let line = &rest[..at];
            (line.strip_suffix(b"\r").unwrap_or(line), offset + at + 1)
        }
        // A last line without an end: the payload was cut short, or the sender is sloppy.
        None if rest.is_empty() => (rest, offset),
        None => (rest.strip_suffix(b"\r").unwrap_or(rest), payload.len() + 1),
    }
}

fn status_code(status: &[u8]) -> Result<u16, SipError> {
    match status {
        [a @ b'1'..=b'6', b @ b'0'..=b'9', c @ b'0'..=b'9', rest @ ..] if rest.first().is_none_or(|b| *b == b' ') => {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(SipError::BadStatus),
    }
}

/// `METHOD SP Request-URI SP SIP/2.0`.
fn request_line(line: &[u8]) -> Result<SipRequest<'_>, SipError> {
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::NotSip);
    };
    if version != b"SIP/2.0" || method.is_empty() || !method.iter().all(|b| is_token(*b)) {
        return Err(SipError::NotSip);
    }
    Ok(SipRequest {
        method: Method::of(method),
        method_token: method,
        uri: uri_of(uri).ok_or(SipError::BadRequestUri)?,
        from: None,
        to: None,
        contact: None,
        via: None,
        user_agent: None,
        call_id: None,
        cseq: None,
        max_forwards: None,
        content_length: None,
        complete: false,
    })
}

/// The headers geofence keeps as text.
#[derive(Clone, Copy)]
enum Field {
    From,
    To,
    Contact,
    Via,
    UserAgent,
    CallId,
    Cseq,
}

impl<'a> SipRequest<'a> {
    fn field(&mut self, field: Field) -> &mut Option<&'a [u8]> {
        match field {
            Field::From => &mut self.from,
            Field::To => &mut self.to,
            Field::Contact => &mut self.contact,
            Field::Via => &mut self.via,
            Field::UserAgent => &mut self.user_agent,
            Field::CallId => &mut self.call_id,
            Field::Cseq => &mut self.cseq,
        }
    }
}

/// One header line, starting at `offset` of the payload, kept in `request` when it is one
/// geofence reads and the first of its name: then the field, and where in `line` its value
/// starts.
fn header<'a>(request: &mut SipRequest<'a>, line: &'a [u8], offset: usize) -> Result<Option<(Field, usize)>, SipError> {
    let colon = find_byte(line, 0, b':').ok_or(SipError::BadHeader { offset })?;
    let name = trim(&line[..colon]);
    if name.is_empty() {
        return Err(SipError::BadHeader { offset });
    }
    let mut value_start = colon + 1;
    while line.get(value_start).is_some_and(|b| is_blank(*b)) {
        value_start += 1;
    }
    let value = trim(&line[value_start..]);
    // By length and the folded name first: one comparison for most lines, which are headers
    // geofence does not read; a candidate is then checked byte by byte.
    let (field, spelled): (Field, &[u8]) = match (name.len(), folded(name)) {
        (1, F) => (Field::From, b"f"),
        (1, T) => (Field::To, b"t"),
        (1, V) => (Field::Via, b"v"),
        (1, M) => (Field::Contact, b"m"),
        (1, I) => (Field::CallId, b"i"),
        (1, L) if name.eq_ignore_ascii_case(b"l") => return Ok(keep_number(&mut request.content_length, value)),
        (2, TO) => (Field::To, b"to"),
        (3, VIA) => (Field::Via, b"via"),
        (4, FROM) => (Field::From, b"from"),
        (4, CSEQ) => (Field::Cseq, b"cseq"),
        (7, CONTACT) => (Field::Contact, b"contact"),
        (7, CALL_ID) => (Field::CallId, b"call-id"),
        (10, USER_AGENT) => (Field::UserAgent, b"user-agent"),
        (12, MAX_FORWARDS) if name.eq_ignore_ascii_case(b"max-forwards") => {
            return Ok(keep_number(&mut request.max_forwards, value))
        }
        (14, CONTENT_LENGTH) if name.eq_ignore_ascii_case(b"content-length") => {
            return Ok(keep_number(&mut request.content_length, value))
        }
        _ => return Ok(None),
    };
    if !name.eq_ignore_ascii_case(spelled) {
        return Ok(None);
    }
    let slot = request.field(field);
    if slot.is_some() {
        return Ok(None);
    }
    *slot = Some(value);
    Ok(Some((field, value_start)))
}

/// A header name folded to lower case as one number to compare (its first 8 and next 8 bytes
/// XORed): setting bit 5 of every byte folds letters and keeps `-` and digits, so names that
/// differ only in case fold alike. Other names may fold alike too: a match is a candidate,
/// which the caller checks.
const fn folded(name: &[u8]) -> u64 {
    let mut key = 0u64;
    let mut index = 0;
    while index < name.len() && index < 16 {
        key ^= ((name[index] | 0x20) as u64) << (8 * (index % 8));
        index += 1;
    }
    key
}

const F: u64 = folded(b"f");
const T: u64 = folded(b"t");
const V: u64 = folded(b"v");
const M: u64 = folded(b"m");
const I: u64 = folded(b"i");
const L: u64 = folded(b"l");
const TO: u64 = folded(b"to");
const VIA: u64 = folded(b"via");
const FROM: u64 = folded(b"from");
const CSEQ: u64 = folded(b"cseq");
const CONTACT: u64 = folded(b"contact");
const CALL_ID: u64 = folded(b"call-id");
const USER_AGENT: u64 = folded(b"user-agent");
const MAX_FORWARDS: u64 = folded(b"max-forwards");
const CONTENT_LENGTH: u64 = folded(b"content-length");

/// Keeps a number header's value if it is the first of its name; numbers are not folded.
fn keep_number(slot: &mut Option<u32>, value: &[u8]) -> Option<(Field, usize)> {
    if slot.is_none() {
        *slot = number(value);
    }
    None
}

/// A decimal number of at most ten digits that fits 32 bits.
fn number(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u32, |n, digit| n.checked_mul(10)?.checked_add(u32::from(digit - b'0')))
}

/// A name-addr or addr-spec header value: `"Bob" <sip:bob@host>;tag=1` or `sip:bob@host;tag=1`.
fn name_addr(value: &[u8]) -> Option<SipUri<'_>> {
    let uri = match find(value, b'<') {
        Some(open) => {
            let rest = &value[open + 1..];
            &rest[..find(rest, b'>')?]
        }
        // Without brackets, parameters after `;` belong to the header, not the URI.
        None => value.split(|b| matches!(b, b';' | b',')).next().unwrap_or_default(),
    };
    uri_of(trim(uri))
}

/// `scheme:[user[:password]@]host[:port][;params][?headers]`.
fn uri_of(uri: &[u8]) -> Option<SipUri<'_>> {
    let colon = find(uri, b':')?;
    let (scheme, rest) = (&uri[..colon], &uri[colon + 1..]);
    if scheme.is_empty() || !scheme.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return None;
    }
    // One pass for where the parameters start and the last `@` before them.
    let (mut end, mut at) = (rest.len(), None);
    for (index, byte) in rest.iter().enumerate() {
        match byte {
            b'@' => at = Some(index),
            b';' | b'?' => {
                end = index;
                break;
            }
            _ => {}
        }
    }
    let rest = &rest[..end];
    let (user, host_port_part) = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(|b| *b == b':').next().unwrap_or_default();
            (Some(user), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let (host, port) = host_port(host_port_part)?;
    Some(SipUri { scheme, user, host, port })
}

/// `host[:port]`, the host a name, an IPv4 address or `[IPv6]`.
fn host_port(text: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if text.first() == Some(&b'[') {
        let close = find(text, b']')?;
        (&text[..=close], text[close + 1..].strip_prefix(b":"))
    } else {
        match find(text, b':') {
            Some(colon) => (&text[..colon], Some(&text[colon + 1..])),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(digits) => Some(u16::try_from(number(digits)?).ok()?),
        None => None,
    };
    Some((host, port))
}

/// Where the first `byte` of a short text is: inline, as a call into a vector search costs
/// more than a URI's few bytes.
fn find(text: &[u8], byte: u8) -> Option<usize> {
    text.iter().position(|b| *b == byte)
}

/// The first line feed of `bytes` from `from` on.
fn line_end(bytes: &[u8], from: usize) -> Option<usize> {
    find_byte(bytes, from, b'\n')
}

/// The first `byte` of `bytes` from `from` on, eight bytes at a time: a request's lines are a
/// few dozen bytes, too short for a vector search to pay for its set-up on each.
fn find_byte(bytes: &[u8], from: usize, byte: u8) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let pattern = u64::from_ne_bytes([byte; 8]);
    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = from;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default()) ^ pattern;
        // A byte of `word` is zero where the chunk holds `byte`; this sets its high bit (and
        // may set bits above the first such byte, which the lowest set bit ignores).
        let found = word.wrapping_sub(ONES) & !word & HIGHS;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    find(chunks.remainder(), byte).map(|at| offset + at)
}

fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t')
}

/// A character of an RFC 3261 token (method and header names).
fn is_token(byte: u8) -> bool {
    TOKEN[usize::from(byte)]
}

/// [`is_token`] by byte: one load a character of every header name.
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        byte += 1;
    }
    table
};

/// Without blanks and line ends at either end (a folded value keeps those inside it).
fn trim(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !space(b)).map_or(start, |last| last + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests;
