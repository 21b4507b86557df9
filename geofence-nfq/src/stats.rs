//! The kernel's own per-queue counters, from `/proc/net/netfilter/nfnetlink_queue`, so that loss
//! is never hidden: packets dropped because the queue was full, or because the reader fell behind.

use std::io;

/// One line of `/proc/net/netfilter/nfnetlink_queue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelQueueStats {
    /// The queue number.
    pub queue: u16,
    /// Packets waiting for a verdict now.
    pub waiting: u64,
    /// Packets dropped because the queue was full. With fail-open the kernel accepts them
    /// instead and counts them nowhere here (see [`crate::rules::UNEXAMINED_COMMENT`]).
    pub queue_dropped: u64,
    /// Packets dropped because their message could not be delivered to the reader (ENOBUFS);
    /// with fail-open, accepted uncounted likewise.
    pub user_dropped: u64,
    /// The id of the last packet queued: how many packets the queue has taken in all.
    pub id_sequence: u64,
}

/// `/proc/net` is the main thread's view; `thread-self` is the calling thread's, which matters
/// when a thread has entered another network namespace.
const PATH: &str = "/proc/thread-self/net/netfilter/nfnetlink_queue";

/// The counters of queue `queue` in the calling thread's network namespace; `None` when it is
/// not bound.
pub fn kernel_queue_stats(queue: u16) -> io::Result<Option<KernelQueueStats>> {
    let text = std::fs::read_to_string(PATH)?;
    Ok(text.lines().filter_map(parse_line).find(|stats| stats.queue == queue))
}

/// Fields: queue number, peer port id, waiting, copy mode, copy range, queue dropped, user
/// dropped, id sequence, 1.
fn parse_line(line: &str) -> Option<KernelQueueStats> {
    let fields: Vec<u64> = line.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let [queue, _, waiting, _, _, queue_dropped, user_dropped, id_sequence, ..] = fields[..] else { return None };
    Some(KernelQueueStats { queue: u16::try_from(queue).ok()?, waiting, queue_dropped, user_dropped, id_sequence })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_line() {
        assert_eq!(
            parse_line("    0  12345     3 2   256     7     9     2001  1"),
            Some(KernelQueueStats { queue: 0, waiting: 3, queue_dropped: 7, user_dropped: 9, id_sequence: 2001 })
        );
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("1 2 3"), None);
    }
}
