//! Where queued packets come from and their verdicts go: sipwall's own netlink layer (batched
//! receive and verdicts, the default) or the `nfq` crate (one packet, one verdict: where the
//! design started). Both serve the same worker loop, so one benchmark measures both.

pub mod netlink;

use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Verdict {
    Drop = 0,
    Accept = 1,
}

/// One queued packet, borrowed from the backend until the next `recv`.
pub struct Received<'a> {
    pub id: u32,
    /// The netfilter hook it was queued from (LOCAL_IN: to this host).
    pub hook: u8,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// sipwall's netlink layer: batched receive and verdicts, sized buffer, ENOBUFS counted.
    Netlink,
    /// The `nfq` crate: one receive and one verdict per packet.
    Nfq,
}

/// One `mmsghdr` per buffer for `recvmmsg`/`sendmmsg`, each with one iovec; `name`, when
/// given, is every message's address. The headers point into `iov` and `name`: keep both alive
/// and unmoved while the headers are in use.
pub fn mmsghdrs(iov: &mut [libc::iovec], name: Option<&socket2::SockAddr>) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            if let Some(a) = name {
                h.msg_name = a.as_ptr() as *mut libc::c_void;
                h.msg_namelen = a.len();
            }
            h.msg_iov = v;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect()
}

/// An iovec over each buffer's whole length.
pub fn iovecs<'a>(bufs: impl Iterator<Item = &'a mut Vec<u8>>) -> Vec<libc::iovec> {
    bufs.map(|b| libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: b.len(),
    })
    .collect()
}

/// Queue settings shared by both backends.
pub const MAX_LEN: u32 = 8192;
pub const RCVBUF: usize = 8 << 20;
/// How long a receive waits before the worker looks at stop and reload flags.
pub const WAIT_MS: u64 = 100;

pub enum Queue {
    Netlink(netlink::NetlinkQueue),
    Nfq(NfqCrate),
}

impl Queue {
    pub fn open(backend: Backend, queue: u16) -> io::Result<Queue> {
        Ok(match backend {
            Backend::Netlink => Queue::Netlink(netlink::NetlinkQueue::open(
                queue, MAX_LEN, RCVBUF, WAIT_MS,
            )?),
            Backend::Nfq => Queue::Nfq(NfqCrate::open(queue)?),
        })
    }

    /// Waits up to [`WAIT_MS`] for packets; returns how many are ready (0: none yet).
    #[inline]
    pub fn recv(&mut self) -> io::Result<usize> {
        match self {
            Queue::Netlink(q) => q.recv(),
            Queue::Nfq(q) => q.recv(),
        }
    }

    #[inline]
    pub fn packet(&self, i: usize) -> Received<'_> {
        match self {
            Queue::Netlink(q) => q.packet(i),
            Queue::Nfq(q) => q.packet(),
        }
    }

    /// Sets packet `i`'s verdict (the nfq crate sends it at once).
    #[inline]
    pub fn set_verdict(&mut self, i: usize, v: Verdict) -> io::Result<()> {
        match self {
            Queue::Netlink(q) => {
                q.set_verdict(i, v);
                Ok(())
            }
            Queue::Nfq(q) => q.verdict(v),
        }
    }

    /// Sends the verdicts not yet sent.
    #[inline]
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Queue::Netlink(q) => q.flush(),
            Queue::Nfq(_) => Ok(()),
        }
    }

    /// ENOBUFS the backend absorbed itself (the nfq crate returns its errors instead, and the
    /// caller counts those).
    pub fn enobufs(&self) -> u64 {
        match self {
            Queue::Netlink(q) => q.enobufs(),
            Queue::Nfq(_) => 0,
        }
    }
}

/// Gives every NETLINK_NETFILTER socket of this process a receive buffer of `size` bytes.
/// The `nfq` crate does not lend out its socket, and its default buffer (rmem_default, about
/// 166 queued packets) would make it fail open under any burst: found by scanning our own
/// descriptors, so the backends differ in their verdict paths, not in their buffers.
fn widen_netfilter_sockets(size: usize) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let opt = |fd: i32, level: i32, name: i32| -> Option<i32> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`; a non-socket fails cleanly.
        let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
        (r == 0).then_some(v)
    };
    for fd in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if opt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
            && opt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
        {
            // Best effort: without it the crate keeps its small buffer.
            let _ = netlink::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size as i32);
        }
    }
}

/// The `nfq` crate, as the design card named it: non-blocking with a short sleep when idle
/// (it offers no receive timeout), one verdict message per packet.
pub struct NfqCrate {
    q: nfq::Queue,
    msg: Option<nfq::Message>,
    idle: u32,
}

impl NfqCrate {
    fn open(queue: u16) -> io::Result<Self> {
        let mut q = nfq::Queue::open()?;
        q.bind(queue)?;
        q.set_fail_open(queue, true)?;
        q.set_copy_range(queue, 0xffff)?;
        q.set_queue_max_len(queue, MAX_LEN)?;
        q.set_nonblocking(true);
        widen_netfilter_sockets(RCVBUF);
        Ok(NfqCrate {
            q,
            msg: None,
            idle: 0,
        })
    }

    fn recv(&mut self) -> io::Result<usize> {
        let waited = std::time::Instant::now();
        loop {
            match self.q.recv() {
                Ok(m) => {
                    self.idle = 0;
                    self.msg = Some(m);
                    return Ok(1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if waited.elapsed().as_millis() as u64 >= WAIT_MS {
                        return Ok(0);
                    }
                    self.idle = (self.idle + 1).min(20);
                    if self.idle > 4 {
                        std::thread::sleep(std::time::Duration::from_micros(
                            50 * u64::from(self.idle),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn packet(&self) -> Received<'_> {
        let m = self.msg.as_ref().expect("a packet was received");
        Received {
            id: m.get_packet_id(),
            hook: m.get_hook(),
            payload: m.get_payload(),
        }
    }

    fn verdict(&mut self, v: Verdict) -> io::Result<()> {
        let mut m = self.msg.take().expect("a packet was received");
        m.set_verdict(match v {
            Verdict::Accept => nfq::Verdict::Accept,
            Verdict::Drop => nfq::Verdict::Drop,
        });
        self.q.verdict(m)
    }
}
