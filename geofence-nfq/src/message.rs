//! Netlink messages of the queue subsystem: queued packets read out of a received datagram, and
//! verdicts and configuration requests written into one outgoing datagram.
//!
//! Incoming messages are read here, in safe code: a packet message needs only its packet header
//! and payload attributes. libnetfilter_queue builds the outgoing ones.

use std::os::raw::c_int;

use geofence_core::Verdict;

use crate::sys;

const NLMSG_HEADER: usize = 16;
const NFGENMSG: usize = 4;
/// The largest message this module writes (a configuration request with every attribute),
/// rounded up: libnetfilter_queue's builders do not check the buffer, so each write has this
/// much room.
const MESSAGE_ROOM: usize = 128;
const NFNL_SUBSYS_QUEUE: u16 = 3;

/// One queued packet, as the kernel describes it: what a [`Handler`](crate::Handler) decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuedPacket<'a> {
    /// The kernel's id for the packet in its queue.
    pub id: u32,
    /// The packet's bytes, from its IP header, as far as the copy range reaches.
    pub payload: &'a [u8],
    /// The packet's netfilter mark as it was queued (0 when it has none).
    pub mark: u32,
    /// The netfilter hook that queued it (`NF_INET_PRE_ROUTING` 0, `LOCAL_IN` 1, `FORWARD` 2,
    /// `LOCAL_OUT` 3, `POST_ROUTING` 4).
    pub hook: u8,
    /// The interface index it came in on, for hooks that have one.
    pub in_interface: Option<u32>,
    /// The interface index it is leaving by, for hooks that have one.
    pub out_interface: Option<u32>,
}

/// The hook of packets the host itself sends (`NF_INET_LOCAL_OUT`): a [`QueuedPacket::hook`]
/// of OUTPUT rules.
pub const HOOK_LOCAL_OUT: u8 = 3;

impl QueuedPacket<'_> {
    /// The mark to give with [`Verdict::AcceptWithMark`] so that only the bits of `mask` change
    /// to those of `value`: the kernel sets a verdict's mark whole, so the packet's other bits
    /// are carried over from the mark it was queued with.
    ///
    /// ```
    /// # use geofence_nfq::QueuedPacket;
    /// # fn example(packet: &QueuedPacket) -> geofence_core::Verdict {
    /// geofence_core::Verdict::AcceptWithMark(packet.mark_under_mask(0x10, 0xf0))
    /// # }
    /// ```
    pub fn mark_under_mask(&self, value: u32, mask: u32) -> u32 {
        (self.mark & !mask) | (value & mask)
    }

    /// A packet with just an id and bytes, as a test or a replay would hand it to a handler.
    pub fn new(id: u32, payload: &[u8]) -> QueuedPacket<'_> {
        QueuedPacket { id, payload, mark: 0, hook: 0, in_interface: None, out_interface: None }
    }
}

/// One message out of a datagram the kernel sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// A queued packet and the bytes of it the copy range let through.
    Packet(QueuedPacket<'a>),
    /// A queued packet whose message was cut short: its id is known, its bytes are not.
    Unreadable { id: u32 },
    /// The kernel's answer to a request: 0 is an acknowledgement, else a negative errno.
    Status { sequence: u32, errno: i32 },
    /// Anything else, or a message too damaged to say.
    Other,
}

/// Walks the messages of one received datagram.
pub(crate) fn incoming(datagram: &[u8]) -> impl Iterator<Item = Incoming<'_>> {
    pieces(datagram).map(|(kind, piece)| match piece {
        Piece::Cut(partial) => cut_short(partial, kind),
        Piece::Whole(message) if kind == sys::NLMSG_ERROR as u16 => {
            Incoming::Status { sequence: read_u32(message, 8), errno: error_code(message) }
        }
        Piece::Whole(message) if kind == packet_message_type() => packet(message),
        Piece::Whole(_) => Incoming::Other,
    })
}

/// The whole messages of a datagram, as (type, bytes); a message cut short ends the walk.
pub(crate) fn whole_messages(datagram: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    pieces(datagram).map_while(|(kind, piece)| match piece {
        Piece::Whole(message) => Some((kind, message)),
        Piece::Cut(_) => None,
    })
}

/// The code an `NLMSG_ERROR` message carries: 0 for an acknowledgement, else a negative errno.
pub(crate) fn error_code(message: &[u8]) -> i32 {
    message.get(NLMSG_HEADER..NLMSG_HEADER + 4).map_or(0, |b| read_i32(b, 0))
}

/// A message of a datagram, as its header declares it.
enum Piece<'a> {
    /// All its bytes are there.
    Whole(&'a [u8]),
    /// The datagram ends inside it (or its header declares less than a header): the walk ends.
    Cut(&'a [u8]),
}

/// The messages of a datagram, each with its type.
fn pieces(datagram: &[u8]) -> impl Iterator<Item = (u16, Piece<'_>)> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let header = datagram.get(offset..offset + NLMSG_HEADER)?;
        let declared = read_u32(header, 0) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        if declared < NLMSG_HEADER {
            offset = datagram.len();
            return Some((kind, Piece::Cut(&[])));
        }
        let start = offset;
        offset = offset.saturating_add(align(declared));
        Some(match datagram.get(start..start + declared) {
            Some(message) => (kind, Piece::Whole(message)),
            None => (kind, Piece::Cut(&datagram[start..])),
        })
    })
}

fn packet_message_type() -> u16 {
    (NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET as u16
}

/// Reads a queued packet from its attributes: the packet header (id, hook), the payload, the
/// mark and the interfaces. A packet whose attributes are damaged after its header still yields
/// its id, so that it gets a verdict.
fn packet(message: &[u8]) -> Incoming<'_> {
    let (mut header, mut damaged) = (None, false);
    let mut packet = QueuedPacket::new(0, &[]);
    for attribute in attributes(message) {
        match attribute {
            // struct nfqnl_msg_packet_hdr: __be32 packet_id, __be16 hw_protocol, __u8 hook.
            Some((kind, value)) if kind == sys::NFQA_PACKET_HDR as u16 && header.is_none() => {
                header = value.get(..4).map(|b| (be_u32(b), value.get(6).copied().unwrap_or(0)));
            }
            Some((kind, value)) if kind == sys::NFQA_PAYLOAD as u16 => packet.payload = value,
            Some((kind, value)) if kind == sys::NFQA_MARK as u16 => packet.mark = value.get(..4).map_or(0, be_u32),
            Some((kind, value)) if kind == sys::NFQA_IFINDEX_INDEV as u16 => {
                packet.in_interface = value.get(..4).map(be_u32);
            }
            Some((kind, value)) if kind == sys::NFQA_IFINDEX_OUTDEV as u16 => {
                packet.out_interface = value.get(..4).map(be_u32);
            }
            Some(_) => {}
            None => damaged = true,
        }
    }
    match (header, damaged) {
        (Some((id, hook)), false) => Incoming::Packet(QueuedPacket { id, hook, ..packet }),
        (Some((id, _)), true) => Incoming::Unreadable { id },
        (None, _) => Incoming::Other,
    }
}

/// The first four bytes of a big-endian attribute value (callers pass at least four).
fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The attributes of a netfilter message, as (type, value); `None` for an attribute whose
/// length does not fit the message, which ends the walk.
pub(crate) fn attributes(message: &[u8]) -> impl Iterator<Item = Option<(u16, &[u8])>> {
    attributes_from(message, NLMSG_HEADER + NFGENMSG)
}

/// The attributes nested in an attribute's value.
pub(crate) fn nested(value: &[u8]) -> impl Iterator<Item = Option<(u16, &[u8])>> {
    attributes_from(value, 0)
}

fn attributes_from(message: &[u8], start: usize) -> impl Iterator<Item = Option<(u16, &[u8])>> {
    const ATTRIBUTE_HEADER: usize = 4;
    const TYPE_MASK: u16 = 0x3fff; // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
    let mut offset = start;
    std::iter::from_fn(move || {
        let header = message.get(offset..offset + ATTRIBUTE_HEADER)?;
        let length = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & TYPE_MASK;
        let value =
            (length >= ATTRIBUTE_HEADER).then(|| message.get(offset + ATTRIBUTE_HEADER..offset + length)).flatten();
        offset = if value.is_some() { offset + align(length) } else { message.len() };
        Some(value.map(|value| (kind, value)))
    })
}

/// A packet message the receive buffer could not hold whole: its first attribute is the packet
/// header, so the id can still be read and the packet still be given a verdict.
fn cut_short(partial: &[u8], kind: u16) -> Incoming<'_> {
    const ATTRIBUTE_HEADER: usize = 4;
    let id_at = NLMSG_HEADER + NFGENMSG + ATTRIBUTE_HEADER;
    let attribute_type = partial.get(NLMSG_HEADER + NFGENMSG + 2..id_at).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match (kind == packet_message_type(), attribute_type, partial.get(id_at..id_at + 4)) {
        (true, Some(t), Some(id)) if t == sys::NFQA_PACKET_HDR as u16 => Incoming::Unreadable { id: be_u32(id) },
        _ => Incoming::Other,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn align(length: usize) -> usize {
    length.saturating_add(3) & !3
}

/// What the queue should be told to do with its instance.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ConfigRequest {
    Bind,
    Unbind,
    /// Copy mode "packet" with this many bytes, queue length, and the flags (with their mask).
    Params {
        copy_range: u32,
        max_len: u32,
        flags: u32,
    },
}

/// One outgoing datagram of netlink messages, built in place.
pub(crate) struct Outbox {
    storage: Vec<u64>,
    used: usize,
}

impl Outbox {
    pub(crate) fn with_room_for(messages: usize) -> Outbox {
        Outbox { storage: vec![0; messages.max(1) * MESSAGE_ROOM / 8], used: 0 }
    }

    pub(crate) fn clear(&mut self) {
        self.used = 0;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.used == 0
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.storage)[..self.used]
    }

    /// Appends a verdict for packet `id`; with `up_to`, for every queued packet up to `id`
    /// (`NFQNL_MSG_VERDICT_BATCH`).
    pub(crate) fn verdict(&mut self, queue: u16, id: u32, verdict: Verdict, up_to: bool) {
        let kind = if up_to { sys::NFQNL_MSG_VERDICT_BATCH } else { sys::NFQNL_MSG_VERDICT };
        let (code, mark) = match verdict {
            Verdict::Accept => (sys::NF_ACCEPT, None),
            Verdict::Drop => (sys::NF_DROP, None),
            Verdict::AcceptWithMark(mark) => (sys::NF_ACCEPT, Some(mark)),
        };
        self.append(queue, kind, |message| {
            // SAFETY: `message` is a fresh header with MESSAGE_ROOM bytes behind it, more than
            // a verdict and a mark attribute take. The id is passed bit for bit, as C does.
            unsafe {
                sys::nfq_nlmsg_verdict_put(message, id as c_int, code as c_int);
                if let Some(mark) = mark {
                    sys::nfq_nlmsg_verdict_put_mark(message, mark);
                }
            }
        });
    }

    /// Appends a configuration request that asks for an acknowledgement with `sequence`.
    pub(crate) fn config(&mut self, queue: u16, sequence: u32, request: ConfigRequest) {
        self.append(queue, sys::NFQNL_MSG_CONFIG, |message| {
            // SAFETY: `message` is a fresh header with MESSAGE_ROOM bytes behind it, more than
            // the largest request (command or parameters, length, flags and mask) takes.
            unsafe {
                (*message).nlmsg_flags |= sys::NLM_F_ACK as u16;
                (*message).nlmsg_seq = sequence;
                match request {
                    ConfigRequest::Bind => {
                        sys::nfq_nlmsg_cfg_put_cmd(message, libc::AF_UNSPEC as u16, sys::NFQNL_CFG_CMD_BIND as u8)
                    }
                    ConfigRequest::Unbind => {
                        sys::nfq_nlmsg_cfg_put_cmd(message, libc::AF_UNSPEC as u16, sys::NFQNL_CFG_CMD_UNBIND as u8)
                    }
                    ConfigRequest::Params { copy_range, max_len, flags } => {
                        sys::nfq_nlmsg_cfg_put_params(message, sys::NFQNL_COPY_PACKET as u8, copy_range as c_int);
                        sys::nfq_nlmsg_cfg_put_qmaxlen(message, max_len);
                        let known = sys::NFQA_CFG_F_FAIL_OPEN | sys::NFQA_CFG_F_GSO;
                        sys::mnl_attr_put_u32(message, sys::NFQA_CFG_FLAGS as u16, flags.to_be());
                        sys::mnl_attr_put_u32(message, sys::NFQA_CFG_MASK as u16, known.to_be());
                    }
                }
            }
        });
    }

    fn append(&mut self, queue: u16, kind: u32, fill: impl FnOnce(*mut sys::nlmsghdr)) {
        let needed_words = (self.used + MESSAGE_ROOM).div_ceil(8);
        if self.storage.len() < needed_words {
            self.storage.resize(needed_words * 2, 0);
        }
        let start = self.used;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.storage);
        let at = bytes[start..].as_mut_ptr();
        // SAFETY: `at` is 4-byte aligned (messages are padded to 4 bytes in an 8-byte aligned
        // buffer) with at least MESSAGE_ROOM bytes behind it; the builder writes the header there.
        let message = unsafe { sys::nfq_nlmsg_put(at.cast(), kind as c_int, u32::from(queue)) };
        fill(message);
        let written = read_u32(&bytemuck::cast_slice(&self.storage)[start..], 0) as usize;
        self.used = start + align(written.min(MESSAGE_ROOM));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as the kernel sends it: header, nfgenmsg, packet header and payload.
    fn packet_message(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend(11u16.to_ne_bytes()); // 4 + packet_id, hw_protocol, hook
        attrs.extend((sys::NFQA_PACKET_HDR as u16).to_ne_bytes());
        attrs.extend(id.to_be_bytes());
        attrs.extend([0x08, 0x00, 1, 0]); // hw protocol, hook, padding
        attrs.extend((4 + payload.len() as u16).to_ne_bytes());
        attrs.extend((sys::NFQA_PAYLOAD as u16).to_ne_bytes());
        attrs.extend(payload);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let length = (NLMSG_HEADER + NFGENMSG + attrs.len()) as u32;
        let mut message = Vec::new();
        message.extend(length.to_ne_bytes());
        message.extend(packet_message_type().to_ne_bytes());
        message.extend(0u16.to_ne_bytes());
        message.extend([0; 8]);
        message.extend([0, 0, 0, 0]);
        message.extend(attrs);
        message
    }

    /// The same bytes in 8-byte aligned storage, as the receive buffers hold them.
    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        words
    }

    #[test]
    fn reads_every_packet_of_a_datagram() {
        let mut datagram = packet_message(7, b"abcde");
        datagram.extend(packet_message(8, b"xyz"));
        let words = aligned(&datagram);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..datagram.len()];
        let messages: Vec<Incoming> = incoming(bytes).collect();
        let queued = |id, payload| Incoming::Packet(QueuedPacket { hook: 1, ..QueuedPacket::new(id, payload) });
        assert_eq!(messages, [queued(7, b"abcde"), queued(8, b"xyz")]);
    }

    #[test]
    fn reads_the_mark_and_the_interfaces() {
        let mut datagram = packet_message(9, b"ip");
        let mut extra = Vec::new();
        for (kind, value) in
            [(sys::NFQA_MARK, 0x4000_0010u32), (sys::NFQA_IFINDEX_INDEV, 3), (sys::NFQA_IFINDEX_OUTDEV, 5)]
        {
            extra.extend(8u16.to_ne_bytes());
            extra.extend((kind as u16).to_ne_bytes());
            extra.extend(value.to_be_bytes());
        }
        datagram.extend(&extra);
        let length = datagram.len() as u32;
        datagram[..4].copy_from_slice(&length.to_ne_bytes());
        let words = aligned(&datagram);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..datagram.len()];
        let Some(Incoming::Packet(packet)) = incoming(bytes).next() else { panic!("no packet read") };
        assert_eq!(
            (packet.id, packet.payload, packet.mark, packet.hook, packet.in_interface, packet.out_interface),
            (9, &b"ip"[..], 0x4000_0010, 1, Some(3), Some(5))
        );
        assert_eq!(packet.mark_under_mask(0x20, 0xf0), 0x4000_0020);
    }

    #[test]
    fn a_cut_message_still_yields_its_id() {
        let datagram = packet_message(42, &[0x45; 100]);
        let words = aligned(&datagram);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..60];
        assert_eq!(incoming(bytes).collect::<Vec<_>>(), [Incoming::Unreadable { id: 42 }]);
    }

    #[test]
    fn damaged_lengths_end_the_walk_without_panicking() {
        let mut datagram = packet_message(1, b"ab");
        datagram[0..4].copy_from_slice(&3u32.to_ne_bytes());
        let words = aligned(&datagram);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..datagram.len()];
        assert_eq!(incoming(bytes).collect::<Vec<_>>(), [Incoming::Other]);
        assert_eq!(incoming(&[]).count(), 0);
    }

    #[test]
    fn a_damaged_attribute_after_the_header_still_yields_the_id() {
        let mut datagram = packet_message(9, b"abcd");
        let payload_length_at = NLMSG_HEADER + NFGENMSG + 12;
        datagram[payload_length_at..payload_length_at + 2].copy_from_slice(&200u16.to_ne_bytes());
        let words = aligned(&datagram);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..datagram.len()];
        assert_eq!(incoming(bytes).collect::<Vec<_>>(), [Incoming::Unreadable { id: 9 }]);
    }

    proptest::proptest! {
        /// Whatever follows a packet's header, the walk ends without panicking and the packet
        /// keeps its id; an intact message yields its payload.
        #[test]
        fn every_packet_message_yields_its_id(
            id in proptest::prelude::any::<u32>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            damage in proptest::collection::vec((0usize..96, proptest::prelude::any::<u8>()), 0..4),
        ) {
            let mut datagram = packet_message(id, &payload);
            let header_end = NLMSG_HEADER + NFGENMSG + 12;
            for (at, byte) in &damage {
                let at = header_end + at;
                if at < datagram.len() {
                    datagram[at] = *byte;
                }
            }
            let words = aligned(&datagram);
            let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..datagram.len()];
            let messages: Vec<Incoming> = incoming(bytes).collect();
            proptest::prop_assert_eq!(messages.len(), 1);
            match &messages[0] {
                Incoming::Packet(read) => {
                    proptest::prop_assert_eq!(read.id, id);
                    if damage.is_empty() {
                        proptest::prop_assert_eq!(read.payload, payload.as_slice());
                    }
                }
                Incoming::Unreadable { id: read } => proptest::prop_assert_eq!(*read, id),
                other => proptest::prop_assert!(false, "packet {} read as {:?}", id, other),
            }
        }
    }

    #[test]
    fn verdicts_are_packed_back_to_back() {
        let mut outbox = Outbox::with_room_for(1);
        outbox.verdict(3, 10, Verdict::Accept, false);
        outbox.verdict(3, 20, Verdict::AcceptWithMark(0x10), true);
        outbox.verdict(3, 21, Verdict::Drop, false);
        let bytes = outbox.bytes();
        let lengths: Vec<u32> = incoming_lengths(bytes);
        assert_eq!(lengths, [32, 40, 32]);
        // The batch message carries its type, the queue number and the id.
        let second = &bytes[32..72];
        assert_eq!(u16::from_ne_bytes([second[4], second[5]]), (3 << 8) | sys::NFQNL_MSG_VERDICT_BATCH as u16);
        assert_eq!(u16::from_be_bytes([second[18], second[19]]), 3);
        assert_eq!(&second[28..32], &20u32.to_be_bytes());
        outbox.clear();
        assert!(outbox.is_empty());
    }

    fn incoming_lengths(bytes: &[u8]) -> Vec<u32> {
        let mut lengths = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let length = read_u32(bytes, offset);
            lengths.push(length);
            offset += align(length as usize);
        }
        lengths
    }
}
