//! Per-flow reassembly of a SIP byte stream, bounded per flow, in total, and in age.
//!
//! The reassembler only orders bytes; the engine frames and judges messages in them. A flow
//! that carried a forbidden request is `blocked`: every later segment of it is dropped, so the
//! PBX never sees a forbidden request completed by a later segment.

use super::TcpMeta;
use ahash::AHashMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Largest message (and so the most unconsumed bytes) one flow may hold.
    pub max_flow_bytes: usize,
    pub max_total_bytes: usize,
    pub max_flows: usize,
    /// Out-of-order segments kept per flow.
    pub max_out_of_order: usize,
    pub idle_ns: u64,
}

#[derive(Debug, Default)]
struct Flow {
    /// Unconsumed in-order bytes; `buf[0]` has sequence number `next_seq - buf.len()`.
    buf: Vec<u8>,
    next_seq: u32,
    synced: bool,
    /// Picked up mid-stream (no SYN seen): bytes before the first start line are skipped.
    resync: bool,
    blocked: bool,
    /// Judged and let through for good (an accepted TLS connection): nothing more is buffered.
    passed: bool,
    ooo: Vec<(u32, Vec<u8>)>,
    last_seen: u64,
}

/// What a segment did to its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// No payload (SYN, ACK, FIN, RST).
    Control,
    /// All its bytes were seen before.
    Retransmission,
    /// Ahead of a gap: held until the gap fills.
    OutOfOrder,
    /// New in-order bytes: frame messages with [`TcpStreams::take`].
    Data,
    /// The flow is blocked.
    Blocked,
    /// The flow was let through for good.
    Passed,
    /// The flow holds more than one message may take: it is blocked from now on.
    TooLarge,
    /// A shared bound was hit (total bytes, flow count): the segment is refused and the
    /// sender's retransmission tried again later.
    Overflow,
}

#[inline]
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

pub struct TcpStreams {
    flows: AHashMap<FlowKey, Flow>,
    limits: TcpLimits,
    total_bytes: usize,
}

/// A flow's unconsumed bytes, lent out while the engine frames messages in them.
pub struct Lent {
    pub buf: Vec<u8>,
    /// Skip bytes before the first start line (flow picked up mid-stream).
    pub resync: bool,
}

impl TcpStreams {
    pub fn new(limits: TcpLimits) -> Self {
        TcpStreams {
            flows: AHashMap::new(),
            limits,
            total_bytes: 0,
        }
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }
    pub fn is_blocked(&self, key: &FlowKey) -> bool {
        self.flows.get(key).is_some_and(|f| f.blocked)
    }

    pub fn push(&mut self, key: FlowKey, meta: TcpMeta, payload: &[u8], now: u64) -> Push {
        if !self.flows.contains_key(&key) {
            if meta.rst || (payload.is_empty() && !meta.syn) {
                return Push::Control;
            }
            if self.flows.len() >= self.limits.max_flows {
                self.expire(now);
                if self.flows.len() >= self.limits.max_flows {
                    return Push::Overflow;
                }
            }
            self.flows.insert(key, Flow::default());
        }
        let limits = self.limits;
        let flow = self.flows.get_mut(&key).expect("inserted above");
        flow.last_seen = now;
        if flow.blocked {
            return Push::Blocked;
        }
        if flow.passed && !meta.rst {
            return Push::Passed;
        }
        if meta.rst {
            let f = self.flows.remove(&key).expect("present");
            self.total_bytes -= f.buf.len() + f.ooo.iter().map(|o| o.1.len()).sum::<usize>();
            return Push::Control;
        }
        if meta.syn {
            self.total_bytes -= flow.buf.len();
            flow.buf.clear();
            flow.next_seq = meta.seq.wrapping_add(1);
            flow.synced = true;
            flow.resync = false;
        }
        if payload.is_empty() {
            return Push::Control;
        }
        let seq = if meta.syn {
            meta.seq.wrapping_add(1)
        } else {
            meta.seq
        };
        if !flow.synced {
            flow.synced = true;
            flow.resync = true;
            flow.next_seq = seq;
        }
        let end = seq.wrapping_add(payload.len() as u32);
        if !seq_lt(flow.next_seq, end) {
            return Push::Retransmission;
        }
        if seq_lt(flow.next_seq, seq) {
            let bytes: usize = flow.ooo.iter().map(|o| o.1.len()).sum();
            if flow.ooo.len() >= limits.max_out_of_order
                || self.total_bytes + payload.len() > limits.max_total_bytes
            {
                return Push::Overflow;
            }
            if flow.buf.len() + bytes + payload.len() > limits.max_flow_bytes {
                self.block(&key);
                return Push::TooLarge;
            }
            flow.ooo.push((seq, payload.to_vec()));
            self.total_bytes += payload.len();
            return Push::OutOfOrder;
        }
        // In order, possibly overlapping what we have: append the new part.
        let skip = flow.next_seq.wrapping_sub(seq) as usize;
        let fresh = &payload[skip..];
        if self.total_bytes + fresh.len() > limits.max_total_bytes {
            return Push::Overflow;
        }
        if flow.buf.len() + fresh.len() > limits.max_flow_bytes {
            self.block(&key);
            return Push::TooLarge;
        }
        flow.buf.extend_from_slice(fresh);
        self.total_bytes += fresh.len();
        flow.next_seq = end;
        // Pull in held segments the new bytes reach.
        while let Some(i) = flow
            .ooo
            .iter()
            .position(|(s, _)| !seq_lt(flow.next_seq, *s))
        {
            let (s, data) = flow.ooo.swap_remove(i);
            self.total_bytes -= data.len();
            let e = s.wrapping_add(data.len() as u32);
            if seq_lt(flow.next_seq, e) && flow.buf.len() < limits.max_flow_bytes {
                let part = &data[flow.next_seq.wrapping_sub(s) as usize..];
                flow.buf.extend_from_slice(part);
                self.total_bytes += part.len();
                flow.next_seq = e;
            }
        }
        Push::Data
    }

    /// Lends out the flow's unconsumed bytes; give them back with [`TcpStreams::give_back`].
    pub fn take(&mut self, key: &FlowKey) -> Lent {
        match self.flows.get_mut(key) {
            Some(f) => Lent {
                buf: std::mem::take(&mut f.buf),
                resync: f.resync,
            },
            None => Lent {
                buf: Vec::new(),
                resync: false,
            },
        }
    }

    /// Returns lent bytes after `consumed` of them were framed; `block` ends the flow for good.
    pub fn give_back(&mut self, key: &FlowKey, mut lent: Lent, consumed: usize, block: bool) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        let consumed = consumed.min(lent.buf.len());
        self.total_bytes -= consumed;
        lent.buf.drain(..consumed);
        f.resync = lent.resync;
        f.buf = lent.buf;
        if block {
            self.block(key);
        }
    }

    /// Lets a flow through for good: its bytes are freed and every later segment is `Passed`.
    pub fn pass(&mut self, key: &FlowKey) {
        if let Some(f) = self.flows.get_mut(key) {
            f.passed = true;
            self.total_bytes -= f.buf.len() + f.ooo.iter().map(|o| o.1.len()).sum::<usize>();
            f.buf = Vec::new();
            f.ooo = Vec::new();
        }
    }

    /// Ends a flow for good: its bytes are freed and every later segment is `Blocked`.
    fn block(&mut self, key: &FlowKey) {
        if let Some(f) = self.flows.get_mut(key) {
            f.blocked = true;
            self.total_bytes -= f.buf.len() + f.ooo.iter().map(|o| o.1.len()).sum::<usize>();
            f.buf = Vec::new();
            f.ooo = Vec::new();
        }
    }

    /// Forgets flows idle for longer than the limit.
    pub fn expire(&mut self, now: u64) {
        let idle = self.limits.idle_ns;
        let mut freed = 0;
        self.flows.retain(|_, f| {
            let keep = now.saturating_sub(f.last_seen) <= idle;
            if !keep {
                freed += f.buf.len() + f.ooo.iter().map(|o| o.1.len()).sum::<usize>();
            }
            keep
        });
        self.total_bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey {
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "198.18.0.2:5060".parse().unwrap(),
        }
    }
    fn limits() -> TcpLimits {
        TcpLimits {
            max_flow_bytes: 1000,
            max_total_bytes: 1500,
            max_flows: 2,
            max_out_of_order: 4,
            idle_ns: 10,
        }
    }
    fn seg(seq: u32) -> TcpMeta {
        TcpMeta {
            seq,
            ..Default::default()
        }
    }
    fn bytes(t: &mut TcpStreams) -> Vec<u8> {
        let l = t.take(&key());
        let v = l.buf.clone();
        t.give_back(&key(), l, 0, false);
        v
    }

    #[test]
    fn in_order_retransmit_and_out_of_order() {
        let mut t = TcpStreams::new(limits());
        assert_eq!(
            t.push(
                key(),
                TcpMeta {
                    seq: 99,
                    syn: true,
                    ..Default::default()
                },
                b"",
                0
            ),
            Push::Control
        );
        assert_eq!(t.push(key(), seg(100), b"abc", 1), Push::Data);
        assert_eq!(t.push(key(), seg(100), b"abc", 1), Push::Retransmission);
        assert_eq!(t.push(key(), seg(106), b"ghi", 1), Push::OutOfOrder);
        // overlapping retransmission that also brings new bytes, then fills the gap
        assert_eq!(t.push(key(), seg(101), b"bcdef", 1), Push::Data);
        assert_eq!(bytes(&mut t), b"abcdefghi");
        assert_eq!(t.total_bytes(), 9);
    }

    #[test]
    fn consume_block_and_bounds() {
        let mut t = TcpStreams::new(limits());
        t.push(key(), seg(1), b"hello", 0);
        let l = t.take(&key());
        assert!(l.resync, "no SYN seen: picked up mid-stream");
        t.give_back(&key(), l, 2, false);
        assert_eq!(bytes(&mut t), b"llo");
        let l = t.take(&key());
        t.give_back(&key(), l, 0, true);
        assert_eq!(t.push(key(), seg(6), b"more", 0), Push::Blocked);
        assert_eq!(t.total_bytes(), 0);
        let big = vec![b'x'; 1001];
        let k2 = FlowKey {
            src: "198.18.0.9:1".parse().unwrap(),
            ..key()
        };
        assert_eq!(t.push(k2, seg(1), &big, 0), Push::TooLarge);
        assert_eq!(t.push(k2, seg(1002), b"x", 0), Push::Blocked);
        let k3 = FlowKey {
            src: "198.18.0.9:2".parse().unwrap(),
            ..key()
        };
        assert_eq!(
            t.push(k3, seg(1), b"x", 0),
            Push::Overflow,
            "flow table full"
        );
        t.expire(100);
        assert_eq!(t.flow_count(), 0);
        assert_eq!(t.push(k3, seg(1), b"x", 100), Push::Data);
    }

    #[test]
    fn sequence_wraps() {
        let mut t = TcpStreams::new(limits());
        t.push(
            key(),
            TcpMeta {
                seq: u32::MAX - 1,
                syn: true,
                ..Default::default()
            },
            b"",
            0,
        );
        assert_eq!(t.push(key(), seg(u32::MAX), b"ab", 0), Push::Data);
        assert_eq!(t.push(key(), seg(1), b"c", 0), Push::Data);
        assert_eq!(bytes(&mut t), b"abc");
    }
}
