//! What can go wrong at the kernel edge, each variant saying what to do about it.

use std::io;

/// Why a netfilter queue could not be opened or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NfqError {
    /// The netlink socket could not be created or bound.
    #[error("cannot open a netfilter netlink socket")]
    Socket(#[source] io::Error),
    /// The process lacks CAP_NET_ADMIN.
    #[error("binding netfilter queue {queue} needs CAP_NET_ADMIN: run geofence as root or grant it the capability")]
    PermissionDenied {
        /// The queue number.
        queue: u16,
    },
    /// Another process has the queue.
    #[error("netfilter queue {queue} is already bound by another process: stop it, or choose another queue number")]
    QueueBusy {
        /// The queue number.
        queue: u16,
    },
    /// The kernel refused the queue subsystem.
    #[error("the kernel has no NFQUEUE support (load the nfnetlink_queue module: modprobe nfnetlink_queue)")]
    Unsupported(#[source] io::Error),
    /// A configuration request for the queue was refused.
    #[error("the kernel refused to {what} for netfilter queue {queue}")]
    Configure {
        /// The queue number.
        queue: u16,
        /// What was being set, in words.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Receiving from the queue failed for a reason other than a dropped message.
    #[error("receiving from netfilter queue {queue} failed")]
    Receive {
        /// The queue number.
        queue: u16,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// Sending verdicts failed.
    #[error("sending verdicts to netfilter queue {queue} failed")]
    Send {
        /// The queue number.
        queue: u16,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start the worker thread for netfilter queue {queue}")]
    Thread {
        /// The queue number.
        queue: u16,
        /// The system error.
        #[source]
        source: io::Error,
    },
}
