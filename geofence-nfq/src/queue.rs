//! The safe API: bind a queue, hand each packet to a handler, send its verdict.
//!
//! The loop receives a burst of packets with one `recvmmsg`, decides each, and answers the whole
//! burst with one `send`: each packet whose verdict differs from the burst's most common one gets
//! a verdict message of its own, then one `NFQNL_MSG_VERDICT_BATCH` message gives the common
//! verdict to all the rest. Every packet received gets exactly one verdict, also when the handler
//! panics (the fallback verdict) and at shutdown.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use geofence_core::Verdict;
use log::{debug, warn};

use crate::message::{self, ConfigRequest, Incoming, Outbox, QueuedPacket};
use crate::socket::{NetlinkSocket, ReceiveBatch};
use crate::stats::{kernel_queue_stats, KernelQueueStats};
use crate::sys;
use crate::NfqError;

/// How far ahead of the last id seen a shutdown verdict reaches: the kernel compares ids with
/// wrap-around, so this covers every packet queued after it and none before.
const SHUTDOWN_REACH: u32 = 1 << 30;
/// How long a blocking receive waits before the loop looks at the stop flag again.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Room in each receive slot beyond the copied packet bytes, for the netlink headers and
/// attributes the kernel adds (packet header, interfaces, hardware address, timestamps, …).
const MESSAGE_OVERHEAD: usize = 512;

/// Decides packets for a queue. [`from_fn`] makes one of a closure.
pub trait Handler {
    /// The verdict for one packet: its bytes (as far as the copy range reaches), id, mark,
    /// hook and interfaces.
    fn decide(&mut self, packet: &QueuedPacket<'_>) -> Verdict;

    /// Called after each burst of packets has been decided: a place to publish counters or pick
    /// up a new policy without touching shared state per packet.
    fn burst_done(&mut self) {}

    /// Called when no packet came for a while (about a tenth of a second): a place to let go
    /// of what an idle queue need not hold, such as a policy a reload has replaced.
    fn idle(&mut self) {}
}

/// A handler made of a closure, by [`from_fn`].
#[derive(Clone, Debug)]
pub struct FnHandler<F>(F);

/// The closure as a [`Handler`]. Passing it through this function is what lets a plain
/// `|packet| …` closure be written without a type annotation.
///
/// ```
/// use geofence_core::Verdict;
/// use geofence_nfq::{from_fn, Handler, QueuedPacket};
/// let mut handler = from_fn(|packet| if packet.payload.len() > 20 { Verdict::Accept } else { Verdict::Drop });
/// assert_eq!(handler.decide(&QueuedPacket::new(1, &[0x45; 28])), Verdict::Accept);
/// ```
pub fn from_fn<F: FnMut(&QueuedPacket<'_>) -> Verdict>(decide: F) -> FnHandler<F> {
    FnHandler(decide)
}

impl<F: FnMut(&QueuedPacket<'_>) -> Verdict> Handler for FnHandler<F> {
    fn decide(&mut self, packet: &QueuedPacket<'_>) -> Verdict {
        (self.0)(packet)
    }
}

/// Tells running queues to stop: cheap to clone, shared by every worker, settable from a
/// signal-handling thread. One type for [`Queue::run`] and [`run_queues`].
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag not yet set.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks every queue sharing this flag to finish its packets in flight and return.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Stop::stop`] has been called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a queue is set up. `QueueConfig::new(n)` gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueConfig {
    /// The queue number, as in `iptables -j NFQUEUE --queue-num N`.
    pub queue: u16,
    /// How many bytes of each packet the kernel copies to us. The default, 256, covers an IPv6
    /// header with several extension headers and the transport ports.
    pub copy_range: u16,
    /// How many packets may wait in the kernel for a verdict before the queue is full.
    pub max_len: u32,
    /// The socket receive buffer, in bytes.
    pub receive_buffer: usize,
    /// `NFQA_CFG_F_FAIL_OPEN`: when the queue is full, the kernel accepts packets instead of
    /// dropping them.
    pub fail_open: bool,
    /// `NFQA_CFG_F_GSO`: take GSO packets whole rather than have the kernel segment them.
    pub gso: bool,
    /// The verdict for packets the handler could not decide (it panicked), and for packets still
    /// queued at shutdown.
    pub fallback: Verdict,
    /// How many packets one receive call takes at most.
    pub burst: usize,
    /// After a burst smaller than `burst` and than half of `max_len`, how long to let packets gather before receiving
    /// again: interrupt coalescing for the queue. Under a flood it turns many small receive and
    /// send calls into few full ones; it delays a packet by at most this much, and an idle
    /// queue not at all (the first packet wakes the blocked receive at once).
    pub coalesce: Duration,
}

impl QueueConfig {
    /// The defaults for queue `queue`: 256 copied bytes, 8192 queued packets, an 8 MiB receive
    /// buffer, fail-closed, no GSO, fallback drop, bursts of up to 256 packets gathered for up to
    /// 500 µs.
    pub fn new(queue: u16) -> QueueConfig {
        QueueConfig {
            queue,
            copy_range: 256,
            max_len: 8192,
            receive_buffer: 8 << 20,
            fail_open: false,
            gso: false,
            fallback: Verdict::Drop,
            burst: 256,
            coalesce: Duration::from_micros(500),
        }
    }
}

/// What a queue has done so far; read at any time from any thread.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Packets received and given a verdict.
    pub packets: AtomicU64,
    /// Of those, accepted (with or without a mark).
    pub accepted: AtomicU64,
    /// Of those, dropped.
    pub dropped: AtomicU64,
    /// Packets the handler panicked on, which got the fallback verdict.
    pub handler_panics: AtomicU64,
    /// Packet messages too long for the receive buffer, which got the fallback verdict.
    pub unreadable: AtomicU64,
    /// Times the kernel reported (ENOBUFS) that it dropped messages because we fell behind.
    pub enobufs: AtomicU64,
    /// Receive system calls that returned packets.
    pub receive_calls: AtomicU64,
    /// Verdict messages sent (a batch verdict counts once).
    pub verdict_messages: AtomicU64,
}

impl QueueCounters {
    fn add(counter: &AtomicU64, amount: u64) {
        if amount > 0 {
            counter.fetch_add(amount, Ordering::Relaxed);
        }
    }
}

/// A bound netfilter queue. Unbound when dropped.
pub struct Queue {
    socket: NetlinkSocket,
    config: QueueConfig,
    counters: Arc<QueueCounters>,
    sequence: u32,
    last_id: Option<u32>,
}

impl Queue {
    /// Binds the queue and configures it. Needs CAP_NET_ADMIN.
    pub fn bind(config: QueueConfig) -> Result<Queue, NfqError> {
        let socket = NetlinkSocket::open().map_err(NfqError::Socket)?;
        let queue = config.queue;
        let configure = |what| move |source| NfqError::Configure { queue, what, source };
        socket.set_receive_buffer(config.receive_buffer).map_err(configure("set the receive buffer"))?;
        socket.set_receive_timeout(STOP_POLL).map_err(configure("set the receive timeout"))?;
        socket.report_lost_messages().map_err(configure("report lost messages"))?;
        let mut bound = Queue { socket, config, counters: Arc::default(), sequence: 0, last_id: None };
        bound.request(ConfigRequest::Bind).map_err(|error| bind_error(queue, error))?;
        let flags = if bound.config.fail_open { sys::NFQA_CFG_F_FAIL_OPEN } else { 0 }
            | if bound.config.gso { sys::NFQA_CFG_F_GSO } else { 0 };
        let params = ConfigRequest::Params {
            copy_range: u32::from(bound.config.copy_range),
            max_len: bound.config.max_len,
            flags,
        };
        bound.request(params).map_err(configure("set copy range, queue length and flags"))?;
        Ok(bound)
    }

    /// The queue's counters, shared: they keep counting while the queue runs.
    pub fn counters(&self) -> Arc<QueueCounters> {
        Arc::clone(&self.counters)
    }

    /// The queue number.
    pub fn number(&self) -> u16 {
        self.config.queue
    }

    /// Decides packets with `handler` until `stop` is set, then gives every packet still queued
    /// the fallback verdict and unbinds. Returns the kernel's counters for the queue as they
    /// were just before unbinding (`None` if they could not be read).
    pub fn run<H: Handler>(mut self, mut handler: H, stop: &Stop) -> Result<Option<KernelQueueStats>, NfqError> {
        let slot = usize::from(self.config.copy_range) + MESSAGE_OVERHEAD;
        let mut batch = ReceiveBatch::new(self.config.burst.max(1), slot);
        let mut decided: Vec<(u32, Verdict)> = Vec::with_capacity(self.config.burst.max(1));
        let mut outbox = Outbox::with_room_for(self.config.burst.max(1) + 1);
        while !stop.is_stopped() {
            let received = match self.socket.receive(&mut batch, true) {
                Ok(received) => received,
                Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => {
                    handler.idle();
                    continue;
                }
                Err(error) => {
                    self.survive(error)?;
                    continue;
                }
            };
            self.decide_burst(&batch, received, &mut handler, &mut decided);
            self.send_verdicts(&decided, &mut outbox)?;
            handler.burst_done();
            if should_gather(&self.config, received) {
                std::thread::sleep(self.config.coalesce);
            }
        }
        self.drain(&mut batch, &mut handler, &mut decided, &mut outbox)?;
        self.release_queued(&mut outbox)?;
        let kernel = kernel_queue_stats(self.config.queue).ok().flatten();
        self.request(ConfigRequest::Unbind).map_err(|source| NfqError::Configure {
            queue: self.config.queue,
            what: "unbind",
            source,
        })?;
        Ok(kernel)
    }

    /// Which receive errors the loop lives through: timeouts, interruptions, and lost messages,
    /// which are counted and logged because each is a packet the kernel dropped or let through.
    fn survive(&self, error: io::Error) -> Result<(), NfqError> {
        match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(()),
            Some(libc::ENOBUFS) => {
                QueueCounters::add(&self.counters.enobufs, 1);
                warn!(
                    "queue {}: the kernel dropped queue messages (ENOBUFS): the reader fell behind; \
                     consider a larger receive buffer or fail-open",
                    self.config.queue
                );
                Ok(())
            }
            _ => Err(NfqError::Receive { queue: self.config.queue, source: error }),
        }
    }

    fn decide_burst<H: Handler>(
        &self,
        batch: &ReceiveBatch,
        received: usize,
        handler: &mut H,
        decided: &mut Vec<(u32, Verdict)>,
    ) {
        decided.clear();
        let (mut panics, mut unreadable) = (0, 0);
        for index in 0..received {
            let (datagram, _) = batch.datagram(index);
            for item in message::incoming(datagram) {
                match item {
                    Incoming::Packet(packet) => {
                        let verdict =
                            panic::catch_unwind(AssertUnwindSafe(|| handler.decide(&packet))).unwrap_or_else(|_| {
                                panics += 1;
                                self.config.fallback
                            });
                        decided.push((packet.id, verdict));
                    }
                    Incoming::Unreadable { id } => {
                        unreadable += 1;
                        decided.push((id, self.config.fallback));
                    }
                    Incoming::Status { errno, .. } if errno != 0 => {
                        warn!(
                            "queue {}: the kernel refused a verdict: {}",
                            self.config.queue,
                            io::Error::from_raw_os_error(-errno)
                        );
                    }
                    Incoming::Status { .. } | Incoming::Other => {}
                }
            }
        }
        let counters = &self.counters;
        QueueCounters::add(&counters.receive_calls, u64::from(received > 0));
        QueueCounters::add(&counters.packets, decided.len() as u64);
        let dropped = decided.iter().filter(|(_, verdict)| *verdict == Verdict::Drop).count() as u64;
        QueueCounters::add(&counters.dropped, dropped);
        QueueCounters::add(&counters.accepted, decided.len() as u64 - dropped);
        QueueCounters::add(&counters.handler_panics, panics);
        QueueCounters::add(&counters.unreadable, unreadable);
    }

    /// Sends the verdicts of one burst in one datagram: each packet whose verdict differs from
    /// the burst's most common one gets its own message, then one `NFQNL_MSG_VERDICT_BATCH`
    /// gives every remaining packet up to the last id the common verdict. The kernel applies
    /// the messages in order, and every id up to the last has been read (ids are handed out,
    /// and delivered, in order), so the batch reaches exactly the packets of the common verdict.
    fn send_verdicts(&mut self, decided: &[(u32, Verdict)], outbox: &mut Outbox) -> Result<(), NfqError> {
        let Some(&(last, _)) = decided.last() else { return Ok(()) };
        let common = most_common(decided);
        outbox.clear();
        let mut messages = 1;
        for &(id, verdict) in decided.iter().filter(|(_, verdict)| *verdict != common) {
            outbox.verdict(self.config.queue, id, verdict, false);
            messages += 1;
        }
        outbox.verdict(self.config.queue, last, common, true);
        self.last_id = Some(last);
        QueueCounters::add(&self.counters.verdict_messages, messages);
        self.socket.send(outbox.bytes()).map_err(|source| NfqError::Send { queue: self.config.queue, source })
    }

    /// Decides what is already waiting in the socket, without blocking.
    fn drain<H: Handler>(
        &mut self,
        batch: &mut ReceiveBatch,
        handler: &mut H,
        decided: &mut Vec<(u32, Verdict)>,
        outbox: &mut Outbox,
    ) -> Result<(), NfqError> {
        loop {
            match self.socket.receive(batch, false) {
                Ok(0) => return Ok(()),
                Ok(received) => {
                    self.decide_burst(batch, received, handler, decided);
                    self.send_verdicts(decided, outbox)?;
                    handler.burst_done();
                }
                Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => return Ok(()),
                Err(error) => self.survive(error)?,
            }
        }
    }

    /// Gives the fallback verdict to every packet queued after the last one decided, so that
    /// unbinding (which drops whatever is still queued) drops nothing the fallback would accept.
    fn release_queued(&mut self, outbox: &mut Outbox) -> Result<(), NfqError> {
        let reach = self.last_id.unwrap_or(0).wrapping_add(SHUTDOWN_REACH);
        outbox.clear();
        outbox.verdict(self.config.queue, reach, self.config.fallback, true);
        self.socket.send(outbox.bytes()).map_err(|source| NfqError::Send { queue: self.config.queue, source })
    }

    /// Sends a configuration request and waits for the kernel's answer. Packets that arrive
    /// meanwhile (a queue can receive as soon as it is bound) get the fallback verdict.
    fn request(&mut self, request: ConfigRequest) -> io::Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut outbox = Outbox::with_room_for(1);
        outbox.config(self.config.queue, sequence, request);
        self.socket.send(outbox.bytes())?;
        let mut batch = ReceiveBatch::new(1, usize::from(self.config.copy_range) + MESSAGE_OVERHEAD);
        let mut early = Outbox::with_room_for(4);
        for _ in 0..1000 {
            if self.socket.receive(&mut batch, true)? == 0 {
                continue;
            }
            let (datagram, _) = batch.datagram(0);
            early.clear();
            let mut answer = None;
            for item in message::incoming(datagram) {
                match item {
                    Incoming::Status { sequence: s, errno } if s == sequence => answer = Some(errno),
                    Incoming::Packet(QueuedPacket { id, .. }) | Incoming::Unreadable { id } => {
                        debug!("queue {}: packet {id} arrived during set-up: fallback verdict", self.config.queue);
                        early.verdict(self.config.queue, id, self.config.fallback, false);
                    }
                    _ => {}
                }
            }
            if !early.is_empty() {
                self.socket.send(early.bytes())?;
            }
            match answer {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(-errno)),
                None => {}
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "the kernel did not answer the configuration request"))
    }
}

/// Whether to let packets gather after a burst of `received`: only when the burst was short of
/// both the burst size and half the kernel's queue. A burst that took half the queue says the
/// queue was filling: waiting then would let it overflow (a queue of 16 packets, waited on after
/// every burst, lost 85% of a flood; 78% without the wait), so the loop reads on at once.
fn should_gather(config: &QueueConfig, received: usize) -> bool {
    let half_queue = usize::try_from(config.max_len / 2).unwrap_or(usize::MAX);
    !config.coalesce.is_zero() && received < config.burst.min(half_queue)
}

/// The majority verdict when there is one (Boyer–Moore vote: one pass, no allocation), else
/// one of the most frequent.
fn most_common(decided: &[(u32, Verdict)]) -> Verdict {
    let mut candidate = decided.first().map_or(Verdict::Drop, |(_, verdict)| *verdict);
    let mut lead = 0usize;
    for &(_, verdict) in decided {
        if lead == 0 {
            candidate = verdict;
        }
        lead = if verdict == candidate { lead + 1 } else { lead - 1 };
    }
    candidate
}

/// The kernel answers EPERM both to a process without CAP_NET_ADMIN and to one binding a queue
/// another socket holds; the queue's line in /proc tells the two apart.
fn bind_error(queue: u16, error: io::Error) -> NfqError {
    match error.raw_os_error() {
        Some(libc::EPERM) if matches!(kernel_queue_stats(queue), Ok(Some(_))) => NfqError::QueueBusy { queue },
        Some(libc::EPERM) => NfqError::PermissionDenied { queue },
        Some(libc::EBUSY) => NfqError::QueueBusy { queue },
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOENT | libc::EPROTONOSUPPORT) => NfqError::Unsupported(error),
        _ => NfqError::Configure { queue, what: "bind", source: error },
    }
}

/// How one queue of [`run_queues`] ended.
#[derive(Debug)]
pub struct QueueReport {
    /// What the worker counted.
    pub counters: Arc<QueueCounters>,
    /// The kernel's counters just before the queue was unbound.
    pub kernel: Option<KernelQueueStats>,
}

/// Binds every queue of `configs` (as for `iptables --queue-balance FIRST:LAST`), failing the
/// whole call if one cannot be bound.
pub fn bind_queues(configs: Vec<QueueConfig>) -> Result<Vec<Queue>, NfqError> {
    configs.into_iter().map(Queue::bind).collect()
}

/// Runs one thread per bound queue, each deciding with its own handler from `make_handler`,
/// until `stop` is set (or a worker fails, which sets it for the others).
pub fn run_queues<F, H>(queues: Vec<Queue>, mut make_handler: F, stop: &Stop) -> Result<Vec<QueueReport>, NfqError>
where
    F: FnMut(u16) -> H,
    H: Handler + Send + 'static,
{
    let counters: Vec<Arc<QueueCounters>> = queues.iter().map(Queue::counters).collect();
    let mut workers = Vec::new();
    for queue in queues {
        let number = queue.number();
        let handler = make_handler(number);
        let worker_stop = stop.clone();
        let worker = std::thread::Builder::new()
            .name(format!("nfq-{number}"))
            .spawn(move || {
                let result = queue.run(handler, &worker_stop);
                if result.is_err() {
                    worker_stop.stop();
                }
                result
            })
            .map_err(|source| {
                stop.stop();
                NfqError::Thread { queue: number, source }
            });
        workers.push(worker?);
    }
    let mut kernel = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(result) => kernel.push(result?),
            Err(payload) => panic::resume_unwind(payload),
        }
    }
    Ok(counters.into_iter().zip(kernel).map(|(counters, kernel)| QueueReport { counters, kernel }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_burst_gathers_unless_it_took_half_the_queue() {
        let mut config = QueueConfig::new(0);
        assert!(should_gather(&config, 100), "default queue: 100 of 8192 is a quiet moment");
        assert!(!should_gather(&config, 256), "a full burst reads on");
        config.max_len = 16;
        assert!(should_gather(&config, 7));
        assert!(!should_gather(&config, 8), "half of a 16-packet queue: it is filling");
        config.coalesce = Duration::ZERO;
        assert!(!should_gather(&config, 1));
    }
}
