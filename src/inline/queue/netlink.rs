//! sipwall's own NFQUEUE netlink layer: what the `nfq` crate lacks for the inline goal.
//!
//! - Packets are received in batches: one `recvmmsg` blocks for the first and takes what else
//!   is waiting (up to [`BATCH`]), so a backlog costs one system call per batch, not per packet.
//! - Verdicts go out batched: a run of consecutive packet ids with the same verdict becomes
//!   one `NFQNL_MSG_VERDICT_BATCH`, and all of a batch's verdict messages leave in one `send`.
//! - The socket is ours: a receive buffer sized for bursts (`SO_RCVBUFFORCE`), and `ENOBUFS`
//!   (the kernel could not deliver: the buffer overflowed) reported to be counted, not hidden.
//!
//! Message layouts are those of linux/netfilter/nfnetlink_queue.h; attribute payloads are in
//! network byte order, netlink headers in host order.

use super::{Received, Verdict};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQNL_MSG_VERDICT_BATCH: u16 = 3;

const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_PACKET: u8 = 2;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;

/// Packets taken per receive call.
pub const BATCH: usize = 64;
/// Room for a packet of `copy_range` bytes and its netlink attributes.
const BUF: usize = 0x10000 + 512;

pub struct NetlinkQueue {
    fd: OwnedFd,
    queue: u16,
    seq: u32,
    bufs: Vec<Vec<u8>>,
    /// `recvmmsg`'s headers, built once: they point into `iov`, which points into `bufs`;
    /// none of the three is resized after `open`, so the pointers stay valid.
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// (buffer, id, hook, payload start, payload end) of the packets of the last batch.
    got: Vec<(usize, u32, u8, usize, usize)>,
    verdicts: Vec<Verdict>,
    out: Vec<u8>,
    enobufs: u64,
}

impl NetlinkQueue {
    /// Binds `queue`: whole packets, `max_len` queued at most, fail-open when full, a receive
    /// buffer of `rcvbuf` bytes, and a receive timeout (so the caller can look up now and then).
    pub fn open(queue: u16, max_len: u32, rcvbuf: usize, timeout_ms: u64) -> io::Result<Self> {
        // SAFETY: plain socket calls; the fd is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let size = rcvbuf as libc::c_int;
        // FORCE goes past rmem_max (we hold CAP_NET_ADMIN); plain RCVBUF as a fallback.
        if setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
        let tv = libc::timeval {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_usec: ((timeout_ms % 1000) * 1000) as libc::suseconds_t,
        };
        if unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut q = NetlinkQueue {
            fd,
            queue,
            seq: 0,
            bufs: (0..BATCH).map(|_| vec![0u8; BUF]).collect(),
            iov: Vec::new(),
            msgs: Vec::new(),
            got: Vec::with_capacity(BATCH),
            verdicts: Vec::with_capacity(BATCH),
            out: Vec::with_capacity(BATCH * 32),
            enobufs: 0,
        };
        // Whatever bound the queue before (a killed sipwall) is gone with its socket; a
        // failed unbind only means nobody was bound.
        let _ = q.config(&[(NFQA_CFG_CMD, &cmd(NFQNL_CFG_CMD_UNBIND))]);
        q.config(&[(NFQA_CFG_CMD, &cmd(NFQNL_CFG_CMD_BIND))])?;
        let mut params = 0xffffu32.to_be_bytes().to_vec();
        params.push(NFQNL_COPY_PACKET);
        q.config(&[
            (NFQA_CFG_PARAMS, &params),
            (NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes()),
            (NFQA_CFG_FLAGS, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes()),
            (NFQA_CFG_MASK, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes()),
        ])?;
        Ok(q)
    }

    fn header(&mut self, out_start: usize, msg: u16, flags: u16) {
        self.seq = self.seq.wrapping_add(1);
        let o = &mut self.out;
        o.truncate(out_start);
        o.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        o.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
        o.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        o.extend_from_slice(&self.seq.to_ne_bytes());
        o.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: AF_UNSPEC, version 0, the queue number (big-endian).
        o.extend_from_slice(&[0, 0]);
        o.extend_from_slice(&self.queue.to_be_bytes());
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let o = &mut self.out;
        o.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        o.extend_from_slice(&ty.to_ne_bytes());
        o.extend_from_slice(data);
        while o.len() % 4 != 0 {
            o.push(0);
        }
    }

    fn finish(&mut self, start: usize) {
        let len = (self.out.len() - start) as u32;
        self.out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sends one config message and waits for its acknowledgement.
    fn config(&mut self, attrs: &[(u16, &[u8])]) -> io::Result<()> {
        self.out.clear();
        self.header(0, NFQNL_MSG_CONFIG, NLM_F_ACK);
        for (t, d) in attrs {
            self.attr(*t, d);
        }
        self.finish(0);
        self.send_out()?;
        let want = self.seq;
        loop {
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.bufs[0].as_mut_ptr().cast(),
                    BUF,
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let b = &self.bufs[0][..n as usize];
            for (ty, seq, body) in messages(b) {
                if ty == NLMSG_ERROR && seq == want {
                    let err = body
                        .get(..4)
                        .map_or(0, |e| i32::from_ne_bytes(e.try_into().expect("4 bytes")));
                    return if err == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-err))
                    };
                }
            }
        }
    }

    fn send_out(&mut self) -> io::Result<()> {
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                self.out.as_ptr().cast(),
                self.out.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits (up to the timeout) for packets and takes what is queued, up to [`BATCH`].
    /// Returns how many; 0 on timeout. ENOBUFS is counted and returns 0.
    pub fn recv(&mut self) -> io::Result<usize> {
        self.got.clear();
        self.verdicts.clear();
        if self.msgs.is_empty() {
            self.iov = super::iovecs(self.bufs.iter_mut());
            self.msgs = super::mmsghdrs(&mut self.iov, None);
        }
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                Some(libc::ENOBUFS) => {
                    self.enobufs += 1;
                    Ok(0)
                }
                _ => Err(e),
            };
        }
        for (i, m) in self.msgs.iter().enumerate().take(n as usize) {
            let len = m.msg_len as usize;
            let b = &self.bufs[i][..len];
            for (ty, _, body) in messages(b) {
                if ty != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                    continue;
                }
                // Offsets into the buffer, so the payload can be lent out later.
                let at = body.as_ptr() as usize - b.as_ptr() as usize;
                if let Some((id, hook, s, e)) = packet(body) {
                    self.got.push((i, id, hook, at + s, at + e));
                    self.verdicts.push(Verdict::Accept);
                }
            }
        }
        Ok(self.got.len())
    }

    pub fn packet(&self, i: usize) -> Received<'_> {
        let (b, id, hook, s, e) = self.got[i];
        Received {
            id,
            hook,
            payload: &self.bufs[b][s..e],
        }
    }

    pub fn set_verdict(&mut self, i: usize, v: Verdict) {
        self.verdicts[i] = v;
    }

    /// Sends the batch's verdicts: a run of consecutive ids with one verdict as one batch
    /// verdict, everything in one send.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.got.is_empty() {
            return Ok(());
        }
        self.out.clear();
        let got = std::mem::take(&mut self.got);
        let verdicts = std::mem::take(&mut self.verdicts);
        plan(
            got.len(),
            |k| got[k].1,
            &verdicts,
            |v, id, batch| {
                let start = self.out.len();
                let msg = if batch {
                    NFQNL_MSG_VERDICT_BATCH
                } else {
                    NFQNL_MSG_VERDICT
                };
                self.header(start, msg, 0);
                let mut vh = [0u8; 8];
                vh[..4].copy_from_slice(&(v as u32).to_be_bytes());
                vh[4..].copy_from_slice(&id.to_be_bytes());
                self.attr(NFQA_VERDICT_HDR, &vh);
                self.finish(start);
            },
        );
        (self.got, self.verdicts) = (got, verdicts);
        let r = self.send_out();
        self.got.clear();
        r
    }

    /// Times the kernel could not deliver a packet to this socket.
    pub fn enobufs(&self) -> u64 {
        self.enobufs
    }
}

impl Drop for NetlinkQueue {
    fn drop(&mut self) {
        let _ = self.config(&[(NFQA_CFG_CMD, &cmd(NFQNL_CFG_CMD_UNBIND))]);
    }
}

fn cmd(c: u8) -> [u8; 4] {
    // nfqnl_msg_config_cmd: command, pad, pf (unused since Linux 3.8).
    [c, 0, 0, 0]
}

/// An integer socket option.
pub(super) fn setsockopt(fd: RawFd, level: i32, opt: i32, v: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int that outlives the call; a bad fd fails cleanly.
    if unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The netlink messages in a buffer: (type, sequence, body after the netlink header).
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        let ty = u16::from_ne_bytes(b[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(b[8..12].try_into().ok()?);
        let body = &b[NLMSG_HDRLEN..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, seq, body))
    })
}

/// The fewest verdict messages for a batch. When its ids are consecutive, the minority
/// verdict goes packet by packet and one batch verdict then settles all the rest (a batch
/// verdict applies to every packet up to its id not yet given one): a mostly accepted batch
/// costs its drops plus one message, a flood batch its accepts plus one. Otherwise, or when
/// the runs are fewer, it is [`runs`]. Each verdict message costs the kernel a lookup and a
/// lock round, whatever it covers.
fn plan(
    n: usize,
    id: impl Fn(usize) -> u32,
    verdicts: &[Verdict],
    mut emit: impl FnMut(Verdict, u32, bool),
) {
    if n == 0 {
        return;
    }
    let consecutive = (1..n).all(|k| id(k) == id(k - 1).wrapping_add(1));
    let drops = verdicts[..n]
        .iter()
        .filter(|&&v| v == Verdict::Drop)
        .count();
    let (minority, majority, few) = if drops * 2 <= n {
        (Verdict::Drop, Verdict::Accept, drops)
    } else {
        (Verdict::Accept, Verdict::Drop, n - drops)
    };
    let run_count = 1 + (1..n).filter(|&k| verdicts[k] != verdicts[k - 1]).count();
    if !consecutive || run_count <= few + 1 {
        return runs(n, id, verdicts, emit);
    }
    for k in (0..n).filter(|&k| verdicts[k] == minority) {
        emit(minority, id(k), false);
    }
    emit(majority, id(n - 1), true);
}

/// Groups a batch's verdicts: each run of consecutive packet ids with one verdict is told to
/// `emit` as (verdict, last id, whether it is a batch verdict). A batch verdict applies to every
/// packet up to its id not yet given one, which is exactly the run: earlier packets already had
/// theirs, and ids grow in the order packets are received.
fn runs(
    n: usize,
    id: impl Fn(usize) -> u32,
    verdicts: &[Verdict],
    mut emit: impl FnMut(Verdict, u32, bool),
) {
    let mut i = 0;
    while i < n {
        let v = verdicts[i];
        let mut j = i;
        while j + 1 < n && verdicts[j + 1] == v && id(j + 1) == id(j).wrapping_add(1) {
            j += 1;
        }
        emit(v, id(j), j > i);
        i = j + 1;
    }
}

/// The queued packets in a buffer as the kernel sends it: (id, hook, payload). Malformed
/// messages end the walk or are skipped; nothing here panics (fuzzed: `fuzz/netlink`).
pub fn packets(b: &[u8]) -> impl Iterator<Item = (u32, u8, &[u8])> {
    messages(b)
        .filter(|(ty, _, _)| *ty == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)
        .filter_map(|(_, _, body)| packet(body).map(|(id, hook, s, e)| (id, hook, &body[s..e])))
}

/// A packet message's id, hook and payload range (relative to `body`).
fn packet(body: &[u8]) -> Option<(u32, u8, usize, usize)> {
    let mut off = NFGEN_HDRLEN;
    let (mut hdr, mut payload) = (None, None);
    // An attribute header (length, type) read as one word: a packet carries ten or so
    // attributes, and each header's four byte reads cost a bounds check apiece.
    while let Some(&h) = body
        .get(off..off + 4)
        .and_then(|h| <&[u8; 4]>::try_from(h).ok())
    {
        let len = u16::from_ne_bytes([h[0], h[1]]) as usize;
        let ty = u16::from_ne_bytes([h[2], h[3]]) & 0x3fff;
        if len < 4 || off + len > body.len() {
            break;
        }
        let data = &body[off + 4..off + len];
        match ty {
            NFQA_PACKET_HDR if data.len() >= 7 => {
                hdr = Some((u32::from_be_bytes(data[..4].try_into().ok()?), data[6]));
            }
            NFQA_PAYLOAD => payload = Some((off + 4, off + len)),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    let (id, hook) = hdr?;
    // No payload attribute: an empty payload (the walk's offset may be past the end).
    let (s, e) = payload.unwrap_or((0, 0));
    Some((id, hook, s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as the kernel lays it out: header attribute, then payload.
    fn packet_msg(id: u32, hook: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 0]; // nfgenmsg
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(hook);
        for (t, d) in [(NFQA_PACKET_HDR, &hdr[..]), (NFQA_PAYLOAD, payload)] {
            body.extend_from_slice(&((4 + d.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(d);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    /// Replays verdict messages the way the kernel applies them to a queue of `ids`: a single
    /// verdict takes its packet, a batch verdict every packet up to its id still queued.
    fn apply(ids: &[u32], msgs: &[(Verdict, u32, bool)]) -> Vec<Option<Verdict>> {
        let mut got = vec![None; ids.len()];
        for &(v, id, batch) in msgs {
            let upto = ids.iter().position(|&i| i == id).expect("a queued id");
            if batch {
                for g in got[..=upto].iter_mut().filter(|g| g.is_none()) {
                    *g = Some(v);
                }
            } else {
                assert!(got[upto].is_none(), "a packet was given two verdicts");
                got[upto] = Some(v);
            }
        }
        got
    }

    #[test]
    fn planned_verdicts_give_every_packet_its_own_with_few_messages() {
        use Verdict::{Accept as A, Drop as D};
        let mut x = 99u32;
        for round in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let n = 1 + (x >> 20) as usize % 64;
            // Start near the wrap point now and then; a gap in the ids now and then.
            let start = if round % 7 == 0 { u32::MAX - 5 } else { x };
            let gap = round % 5 == 0 && n > 2;
            let ids: Vec<u32> = (0..n as u32)
                .map(|k| start.wrapping_add(k + u32::from(gap && k >= 2)))
                .collect();
            let drop_share = (x >> 8) % 100;
            let vs: Vec<Verdict> = (0..n)
                .map(|k| {
                    let h = (x ^ (k as u32).wrapping_mul(2_654_435_761)) >> 7;
                    if h % 100 < drop_share {
                        D
                    } else {
                        A
                    }
                })
                .collect();
            let mut msgs = Vec::new();
            plan(n, |k| ids[k], &vs, |v, id, b| msgs.push((v, id, b)));
            let got = apply(&ids, &msgs);
            assert_eq!(
                got,
                vs.iter().map(|&v| Some(v)).collect::<Vec<_>>(),
                "{ids:?}"
            );
            let mut by_runs = 0;
            runs(n, |k| ids[k], &vs, |_, _, _| by_runs += 1);
            assert!(msgs.len() <= by_runs);
        }
        // A batch of 64 with 3 drops: 4 messages, not 7 runs.
        let ids: Vec<u32> = (100..164).collect();
        let mut vs = vec![A; 64];
        for k in [5, 20, 40] {
            vs[k] = D;
        }
        let mut msgs = Vec::new();
        plan(64, |k| ids[k], &vs, |v, id, b| msgs.push((v, id, b)));
        assert_eq!(
            msgs,
            vec![
                (D, 105, false),
                (D, 120, false),
                (D, 140, false),
                (A, 163, true)
            ]
        );
    }

    #[test]
    fn verdicts_group_into_runs_of_consecutive_ids() {
        use Verdict::{Accept as A, Drop as D};
        let ids = [10u32, 11, 12, 13, 15, 16, 17];
        let vs = [A, A, D, A, A, A, D];
        let mut out = Vec::new();
        runs(ids.len(), |k| ids[k], &vs, |v, id, b| out.push((v, id, b)));
        // 10-11 accept (batch), 12 drop, 13 accept alone (15 does not follow it), 15-16 accept
        // (batch), 17 drop.
        assert_eq!(
            out,
            vec![
                (A, 11, true),
                (D, 12, false),
                (A, 13, false),
                (A, 16, true),
                (D, 17, false)
            ]
        );
        // Every packet is covered exactly once: the runs' sizes add up.
        let mut out = Vec::new();
        let ids: Vec<u32> = (u32::MAX - 2..=u32::MAX).chain(0..3).collect();
        runs(
            ids.len(),
            |k| ids[k],
            &[A; 6],
            |v, id, b| out.push((v, id, b)),
        );
        assert_eq!(out, vec![(A, 2, true)], "ids wrap around");
    }

    #[test]
    fn reads_packet_messages_and_survives_garbage() {
        let mut b = packet_msg(7, 1, b"abcde");
        b.extend(packet_msg(8, 3, b""));
        let got: Vec<_> = packets(&b)
            .map(|(id, hook, p)| (id, hook, p.to_vec()))
            .collect();
        assert_eq!(got, vec![(7, 1, b"abcde".to_vec()), (8, 3, vec![])]);
        // Truncated, zero-length and oversized headers end the walk without a panic.
        for cut in 0..b.len() {
            for (_, _, body) in messages(&b[..cut]) {
                let _ = packet(body);
            }
        }
        let mut bad = b.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(messages(&bad).count(), 0);
        let mut bad = packet_msg(1, 1, b"x");
        bad[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 6].copy_from_slice(&0xffffu16.to_ne_bytes());
        assert!(messages(&bad).all(|(_, _, body)| packet(body).is_none()));
    }
}
