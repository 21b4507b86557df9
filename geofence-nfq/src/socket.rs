//! The netlink socket to the kernel's queue subsystem: the one place that makes system calls.
//!
//! libmnl opens, binds and closes it; receiving uses `recvmmsg(2)` directly, so one system call
//! brings a whole burst of queued packets.

use std::io;
use std::os::raw::{c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use crate::sys;

/// A netlink socket on the netfilter bus, closed on drop.
pub(crate) struct NetlinkSocket {
    raw: NonNull<sys::mnl_socket>,
}

// SAFETY: the socket handle is owned by this value alone; libmnl keeps no thread-local state, so
// moving it to another thread is sound. It is not Sync: one thread at a time uses it.
unsafe impl Send for NetlinkSocket {}

impl NetlinkSocket {
    /// Opens and binds a socket with a kernel-assigned port id.
    pub(crate) fn open() -> io::Result<NetlinkSocket> {
        // SAFETY: a plain constructor; it returns NULL and sets errno on failure.
        let raw = unsafe { sys::mnl_socket_open2(sys::NETLINK_NETFILTER as c_int, libc::SOCK_CLOEXEC) };
        let socket = NetlinkSocket { raw: NonNull::new(raw).ok_or_else(io::Error::last_os_error)? };
        // SAFETY: `raw` is a live socket that `socket` owns (and closes if binding fails).
        let bound = unsafe { sys::mnl_socket_bind(socket.raw.as_ptr(), 0, sys::MNL_SOCKET_AUTOPID as libc::pid_t) };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn fd(&self) -> c_int {
        // SAFETY: the socket is live for as long as `self`.
        unsafe { sys::mnl_socket_get_fd(self.raw.as_ptr()) }
    }

    /// Sets the receive buffer, beyond `rmem_max` where the process may (CAP_NET_ADMIN).
    pub(crate) fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let size = c_int::try_from(bytes).unwrap_or(c_int::MAX);
        self.set_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size)
            .or_else(|_| self.set_option(libc::SOL_SOCKET, libc::SO_RCVBUF, &size))
    }

    /// Makes a blocking receive return `WouldBlock` after `timeout`, so a stop request is seen.
    pub(crate) fn set_receive_timeout(&self, timeout: Duration) -> io::Result<()> {
        let value = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        self.set_option(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &value)
    }

    /// Asks the kernel to report, rather than hide, messages it could not deliver (ENOBUFS).
    pub(crate) fn report_lost_messages(&self) -> io::Result<()> {
        self.set_option(libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, &0 as &c_int)
    }

    fn set_option<T>(&self, level: c_int, name: c_int, value: &T) -> io::Result<()> {
        // SAFETY: `value` points to a live `T` of the size passed; the kernel copies it.
        let status = unsafe {
            libc::setsockopt(
                self.fd(),
                level,
                name,
                (value as *const T).cast::<c_void>(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if status < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one datagram holding one or more netlink messages to the kernel.
    pub(crate) fn send(&self, messages: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `messages`, which outlives the call.
        let sent = unsafe { sys::mnl_socket_sendto(self.raw.as_ptr(), messages.as_ptr().cast(), messages.len()) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives into every slot of `batch` that has a datagram waiting; blocks (up to the
    /// receive timeout) for the first unless `wait` is false. Returns how many slots were filled.
    pub(crate) fn receive(&self, batch: &mut ReceiveBatch, wait: bool) -> io::Result<usize> {
        let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        batch.reset_headers();
        // SAFETY: every header points at an iovec of `batch`, which points at a slot of
        // `batch.storage` of the length it states; all of it lives in `batch`, borrowed
        // mutably for the call, and none of the vectors is resized while the pointers exist.
        let count = unsafe {
            libc::recvmmsg(
                self.fd(),
                batch.headers.as_mut_ptr(),
                batch.headers.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(count as usize)
    }
}

impl Drop for NetlinkSocket {
    fn drop(&mut self) {
        // SAFETY: the socket is live and owned by `self`; it is not used after this.
        unsafe { sys::mnl_socket_close(self.raw.as_ptr()) };
    }
}

/// Buffers for one `recvmmsg` call: `slots` datagrams of `slot_len` bytes each, 8-byte aligned
/// so that netlink headers and attributes can be read in place.
pub(crate) struct ReceiveBatch {
    storage: Vec<u64>,
    slot_words: usize,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point into the heap buffers of `storage`
// and `iovecs`, owned by this value alone; moving the value to another thread moves the
// owning vectors, not their buffers, so the pointers stay valid and no other thread holds them.
unsafe impl Send for ReceiveBatch {}

impl ReceiveBatch {
    pub(crate) fn new(slots: usize, slot_len: usize) -> ReceiveBatch {
        let slot_words = slot_len.div_ceil(8);
        let mut storage = vec![0u64; slots * slot_words];
        let iovecs: Vec<libc::iovec> = storage
            .chunks_exact_mut(slot_words)
            .map(|slot| libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: slot_words * 8 })
            .collect();
        // SAFETY: mmsghdr is plain C data for which all-zero bytes are a valid value.
        let headers = vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; slots];
        let mut batch = ReceiveBatch { storage, slot_words, iovecs, headers };
        batch.reset_headers();
        batch
    }

    fn reset_headers(&mut self) {
        for (header, iovec) in self.headers.iter_mut().zip(self.iovecs.iter_mut()) {
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_len = 0;
        }
    }

    /// The bytes received into slot `index` by the last call, and whether the datagram was cut.
    pub(crate) fn datagram(&self, index: usize) -> (&[u8], bool) {
        let Some(header) = self.headers.get(index) else { return (&[], false) };
        let slot = &self.storage[index * self.slot_words..(index + 1) * self.slot_words];
        let bytes: &[u8] = bytemuck::cast_slice(slot);
        let length = (header.msg_len as usize).min(bytes.len());
        (&bytes[..length], header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0)
    }
}
