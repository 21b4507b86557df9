//! The kernel's side of bans: the sets that drop banned sources before any queue (ipsets for
//! the iptables backend, nf_tables sets for the nft backend), and the connection-tracking
//! entries of a source just banned.
//!
//! Messages are written in safe code, as bytes, and sent through [`NetlinkSocket`]: an ipset
//! or set-element request is a handful of attributes, for which libipset or libnftnl (each
//! with its own state to keep) would be more code to call than to write. Many bans go in one
//! datagram; each asks for an acknowledgement, so every ban's result is known.
//!
//! The numbers are the kernel's ABI: `linux/netfilter/ipset/ip_set.h`,
//! `linux/netfilter/nf_tables.h`, `linux/netfilter/nfnetlink_conntrack.h`, `linux/netlink.h`.

mod conntrack;
pub mod ipset;
pub mod nft;
mod writer;

use std::io;
use std::time::Duration;

use geofence_core::ban::{Ban, SetKind};
use geofence_core::IpNetwork;

use crate::message::{attributes, error_code, incoming, nested, whole_messages, Incoming};
use crate::socket::{NetlinkSocket, ReceiveBatch};
use writer::{set_flags, NLM_F_ACK, NLM_F_DUMP, NLM_F_EXCL};

/// The requests one datagram carries.
const BATCH: usize = 64;
/// The bans one nf_tables batch carries: each batch is a transaction whose commit walks the
/// whole set, so they are amortised over many (about 100 KiB a datagram).
const NFT_BATCH: usize = 1024;
/// Room for a whole batch's acknowledgements, which the kernel sends before the writer reads
/// any: each takes a socket buffer of its own, about 1 KiB of the receive buffer.
const ANSWER_BUFFER: usize = 4 << 20;
/// How long the kernel may take to answer a datagram before the writer gives up.
const ANSWER_WAIT: Duration = Duration::from_secs(1);
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// How the errors name the connection table.
const CONNECTION_TABLE: &str = "the connection table";

/// Why the kernel did not take a change to a ban set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netfilter netlink socket for the ban sets")]
    Socket(#[source] io::Error),
    /// The set does not exist.
    #[error("the ban set {set} does not exist: create it with what `geofence rules` prints")]
    NoSet {
        /// The set's name.
        set: &'static str,
    },
    /// The set holds as many entries as it may.
    #[error("the ban set {set} is full: raise [bans] max_entries and create the set again, or ban for less long")]
    Full {
        /// The set's name.
        set: &'static str,
    },
    /// A ban to lift was not in the set.
    #[error("{network} is not banned in {set}")]
    NotBanned {
        /// The set's name.
        set: &'static str,
        /// What was to be lifted.
        network: IpNetwork,
    },
    /// The process lacks CAP_NET_ADMIN.
    #[error("changing the ban set {set} needs CAP_NET_ADMIN")]
    PermissionDenied {
        /// The set's name.
        set: &'static str,
    },
    /// The kernel refused the change for another reason (an ipset code is above 4096).
    #[error("the kernel refused a change to {what}: error {code}")]
    Refused {
        /// The set, or the connection table.
        what: &'static str,
        /// The kernel's error: an errno, or an ipset code.
        code: i32,
    },
    /// Sending or receiving failed.
    #[error("talking to the kernel about the ban sets failed")]
    Io(#[source] io::Error),
    /// The kernel did not answer within a second.
    #[error("the kernel did not acknowledge a change to the ban sets")]
    NoAnswer,
}

/// An entry of a ban set, as the kernel lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The banned network.
    pub network: IpNetwork,
    /// The seconds its ban has left.
    pub seconds_left: u32,
}

/// What a change is to: how its errors read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A set, by its name, of this kind.
    Set(&'static str, SetKind),
    /// A network to lift from a set.
    Lift(&'static str, SetKind, IpNetwork),
    /// The connection table.
    Flows,
}

/// One message of a datagram: its bytes and, if it is acknowledged, what it changes.
struct Part {
    bytes: Vec<u8>,
    acked: Option<Target>,
}

/// The two ban sets of one kind, written over one netlink socket.
///
/// ```no_run
/// use geofence_core::ban::{Ban, BanSpec, SetKind};
/// use geofence_nfq::bans::BanSets;
/// let mut sets = BanSets::open(SetKind::Ipset)?;
/// let network = BanSpec { duration_ms: 3_600_000, prefix_v4: 32, prefix_v6: 64 }.network_of("192.0.2.9".parse()?);
/// for result in sets.ban(&[Ban { network, duration_ms: 3_600_000, offences: 1 }]) {
///     result?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BanSets {
    socket: NetlinkSocket,
    answers: ReceiveBatch,
    sequence: u32,
    kind: SetKind,
}

impl BanSets {
    /// Opens the socket. The sets must exist, created by what `geofence rules` prints.
    pub fn open(kind: SetKind) -> Result<BanSets, SetError> {
        let socket = NetlinkSocket::open().map_err(SetError::Socket)?;
        socket.set_receive_timeout(ANSWER_WAIT).map_err(SetError::Socket)?;
        socket.set_receive_buffer(ANSWER_BUFFER).map_err(SetError::Socket)?;
        Ok(BanSets { socket, answers: ReceiveBatch::new(BATCH, 1024), sequence: 0, kind })
    }

    /// Adds each ban to its family's set and says, ban by ban, whether the kernel took it. An
    /// ipset entry already there gets the new timeout; in an nft set, a network that an entry
    /// already covers counts as taken.
    pub fn ban(&mut self, bans: &[Ban]) -> Vec<Result<(), SetError>> {
        let mut results = Vec::with_capacity(bans.len());
        let chunk_size = if self.kind == SetKind::Nft { NFT_BATCH } else { BATCH };
        for chunk in bans.chunks(chunk_size) {
            let parts = chunk.iter().map(|ban| self.add_part(ban)).collect();
            let mut answers = self.exchange(self.batched(parts));
            if self.kind == SetKind::Nft && answers.iter().any(Result::is_err) {
                // A batch is applied whole or not at all: one refused ban undid the others,
                // so each is tried again alone.
                answers = chunk.iter().map(|ban| self.one(self.add_part(ban))).collect();
            }
            results.extend(answers);
        }
        results
    }

    /// Takes `network`, as it was added, out of its set.
    pub fn unban(&mut self, network: IpNetwork) -> Result<(), SetError> {
        let (bytes, set) = match self.kind {
            SetKind::Ipset => {
                let mut bytes = ipset::delete(network);
                // Exclusive: a network that is not there is an error to report, not a quiet success.
                set_flags(&mut bytes, NLM_F_ACK | NLM_F_EXCL);
                (bytes, ipset::set_of(network))
            }
            SetKind::Nft => (nft::delete(network), nft::name_of(nft::set_of(network))),
        };
        self.one(Part { bytes, acked: Some(Target::Lift(set, self.kind, network)) })
    }

    /// Empties both sets.
    pub fn flush(&mut self) -> Result<(), SetError> {
        let parts = match self.kind {
            SetKind::Ipset => [ipset::SET_V4, ipset::SET_V6]
                .map(|set| Part { bytes: ipset::flush(set), acked: Some(Target::Set(set, SetKind::Ipset)) }),
            SetKind::Nft => [nft::SET_V4, nft::SET_V6]
                .map(|set| Part { bytes: nft::flush(set), acked: Some(Target::Set(nft::name_of(set), SetKind::Nft)) }),
        };
        self.exchange(self.batched(parts.into())).into_iter().collect()
    }

    /// Every entry of both sets, as the kernel holds them now.
    pub fn list(&mut self) -> Result<Vec<Listed>, SetError> {
        // A dump's datagrams are as large as the kernel's netlink buffers (up to 32 KiB), not
        // the acknowledgements' size.
        let mut dump = ReceiveBatch::new(4, 64 * 1024);
        let mut listed = Vec::new();
        match self.kind {
            SetKind::Ipset => {
                for set in [ipset::SET_V4, ipset::SET_V6] {
                    let messages = self.dump(&mut dump, ipset::list(set), Target::Set(set, SetKind::Ipset))?;
                    listed.extend(messages.iter().flat_map(|message| ipset::entries(message)));
                }
            }
            SetKind::Nft => {
                for set in [nft::SET_V4, nft::SET_V6] {
                    let messages =
                        self.dump(&mut dump, nft::list(set), Target::Set(nft::name_of(set), SetKind::Nft))?;
                    listed
                        .extend(nft::networks(messages.iter().flat_map(|message| nft::elements_of(message)).collect()));
                }
            }
        }
        Ok(listed)
    }

    /// Deletes the connection-tracking entries whose original source is each of `networks`'
    /// address, so a flow accepted before its ban (whose packets the flow mark or an
    /// ESTABLISHED rule would otherwise keep letting through) starts again as NEW, and meets
    /// the ban. Says, network by network, whether the kernel took it.
    pub fn forget_flows(&mut self, networks: &[IpNetwork]) -> Vec<Result<(), SetError>> {
        let mut results = Vec::with_capacity(networks.len());
        for chunk in networks.chunks(BATCH) {
            let parts = chunk.iter().map(|n| Part { bytes: conntrack::flow_delete(*n), acked: Some(Target::Flows) });
            results.extend(self.exchange(parts.collect()));
        }
        results
    }

    fn add_part(&self, ban: &Ban) -> Part {
        match self.kind {
            SetKind::Ipset => Part {
                bytes: ipset::add(ban.network, ban.duration_ms),
                acked: Some(Target::Set(ipset::set_of(ban.network), SetKind::Ipset)),
            },
            SetKind::Nft => Part {
                bytes: nft::add(ban.network, ban.duration_ms),
                acked: Some(Target::Set(nft::name_of(nft::set_of(ban.network)), SetKind::Nft)),
            },
        }
    }

    /// The parts, inside a batch for nf_tables.
    fn batched(&self, mut parts: Vec<Part>) -> Vec<Part> {
        if self.kind == SetKind::Nft {
            parts.insert(0, Part { bytes: nft::batch_begin(), acked: None });
            parts.push(Part { bytes: nft::batch_end(), acked: None });
        }
        parts
    }

    /// Sends one change (in a batch of its own, for nf_tables) and says whether it was taken.
    fn one(&mut self, part: Part) -> Result<(), SetError> {
        self.exchange(self.batched(vec![part])).pop().unwrap_or(Err(SetError::NoAnswer))
    }

    /// Sends `parts` (each written with sequence 0) in one datagram and collects the
    /// acknowledgement of each acknowledged one, in order.
    fn exchange(&mut self, mut parts: Vec<Part>) -> Vec<Result<(), SetError>> {
        let first = self.sequence.wrapping_add(1);
        let mut datagram = Vec::new();
        for (offset, part) in parts.iter_mut().enumerate() {
            part.bytes[8..12].copy_from_slice(&first.wrapping_add(offset as u32).to_ne_bytes());
            datagram.extend_from_slice(&part.bytes);
        }
        self.sequence = first.wrapping_add(parts.len() as u32);
        let mut answers: Vec<Option<i32>> = parts.iter().map(|part| part.acked.map_or(Some(0), |_| None)).collect();
        let outcome = self.socket.send(&datagram).and_then(|()| self.collect(first, &mut answers));
        parts
            .iter()
            .zip(answers)
            .filter_map(|(part, answer)| Some((part.acked?, answer)))
            .map(|(target, answer)| match (&outcome, answer) {
                (_, Some(errno)) => status(errno, target),
                (Err(error), None) if error.kind() != io::ErrorKind::WouldBlock => {
                    Err(SetError::Io(io::Error::new(error.kind(), error.to_string())))
                }
                _ => Err(SetError::NoAnswer),
            })
            .collect()
    }

    /// Reads acknowledgements until every message from sequence `first` has one, or the
    /// kernel falls silent.
    fn collect(&mut self, first: u32, answers: &mut [Option<i32>]) -> io::Result<()> {
        while answers.iter().any(Option::is_none) {
            let received = self.socket.receive(&mut self.answers, true)?;
            for index in 0..received {
                for message in incoming(self.answers.datagram(index).0) {
                    if let Incoming::Status { sequence, errno } = message {
                        let slot = sequence.wrapping_sub(first) as usize;
                        if let Some(answer) = answers.get_mut(slot) {
                            *answer = Some(errno);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends `request` as a dump and returns its answers' messages, up to its end.
    fn dump(
        &mut self,
        into: &mut ReceiveBatch,
        mut request: Vec<u8>,
        target: Target,
    ) -> Result<Vec<Vec<u8>>, SetError> {
        set_flags(&mut request, NLM_F_DUMP);
        self.socket.send(&request).map_err(SetError::Io)?;
        let mut messages = Vec::new();
        loop {
            let received = match self.socket.receive(into, true) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Err(SetError::NoAnswer),
                Err(error) => return Err(SetError::Io(error)),
            };
            for index in 0..received {
                for (kind, message) in whole_messages(into.datagram(index).0) {
                    match kind {
                        NLMSG_DONE => return Ok(messages),
                        NLMSG_ERROR => status(error_code(message), target)?,
                        _ => messages.push(message.to_vec()),
                    }
                }
            }
        }
    }
}

/// The attributes of kind `item` nested in a message's attribute of kind `list`: the entries
/// of a listing. Damage ends the walk.
fn items(message: &[u8], list: u16, item: u16) -> impl Iterator<Item = &[u8]> {
    let list = attributes(message).map_while(|a| a).find(|(kind, _)| *kind == list).map(|(_, value)| value);
    list.into_iter()
        .flat_map(|list| nested(list).map_while(|a| a))
        .filter(move |(kind, _)| *kind == item)
        .map(|(_, value)| value)
}

/// The result an acknowledgement carries: 0 for done, else the kernel's negative code.
fn status(errno: i32, target: Target) -> Result<(), SetError> {
    let code = -errno;
    match (target, code) {
        (_, 0) => Ok(()),
        // No flow of the source was tracked: nothing to forget.
        (Target::Flows, libc::ENOENT) => Ok(()),
        (Target::Flows, code) => Err(SetError::Refused { what: CONNECTION_TABLE, code }),
        (Target::Lift(set, SetKind::Ipset, network), ipset::IPSET_ERR_EXIST)
        | (Target::Lift(set, SetKind::Nft, network), libc::ENOENT) => Err(SetError::NotBanned { set, network }),
        (Target::Set(set, _) | Target::Lift(set, ..), libc::ENOENT) => Err(SetError::NoSet { set }),
        (Target::Set(set, _) | Target::Lift(set, ..), libc::EPERM) => Err(SetError::PermissionDenied { set }),
        (Target::Set(set, SetKind::Ipset), ipset::IPSET_ERR_HASH_FULL)
        | (Target::Set(set, SetKind::Nft), libc::ENFILE) => Err(SetError::Full { set }),
        // An nft interval set refuses a network that overlaps one it holds: already banned.
        (Target::Set(_, SetKind::Nft), libc::EEXIST | libc::ENOTEMPTY) => Ok(()),
        (Target::Set(what, _) | Target::Lift(what, ..), code) => Err(SetError::Refused { what, code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_answers_become_errors_that_say_what_to_do() {
        let ipset = Target::Set(ipset::SET_V4, SetKind::Ipset);
        let nft = Target::Set("nft set inet geofence ban4", SetKind::Nft);
        assert!(status(0, ipset).is_ok());
        assert!(matches!(status(-libc::ENOENT, ipset), Err(SetError::NoSet { set: ipset::SET_V4 })));
        assert!(status(-libc::ENOENT, Target::Flows).is_ok(), "no flow to forget");
        assert!(matches!(status(-ipset::IPSET_ERR_HASH_FULL, ipset), Err(SetError::Full { .. })));
        assert!(matches!(status(-libc::ENFILE, nft), Err(SetError::Full { .. })));
        assert!(status(-libc::ENOTEMPTY, nft).is_ok(), "covered by a wider ban");
        assert!(matches!(status(-4097, ipset), Err(SetError::Refused { code: 4097, .. })));
        let network: IpNetwork = "192.0.2.9/32".parse().unwrap();
        let lift = Target::Lift(ipset::SET_V4, SetKind::Ipset, network);
        assert!(matches!(status(-ipset::IPSET_ERR_EXIST, lift), Err(SetError::NotBanned { .. })));
    }
}
