//! IP fragment reassembly for replay (inline, conntrack does this before the queue).
//! etherparse's pool does the reassembly; this wrapper bounds it in count and age.

use etherparse::defrag::{IpDefragPayloadVec, IpDefragPool};
use etherparse::SlicedPacket;

pub struct Defragmenter {
    pool: IpDefragPool<u64, ()>,
    /// Fragments accepted since the pool was last emptied: an upper bound on what it holds.
    held: usize,
    max_held: usize,
    timeout_ns: u64,
    last_sweep: u64,
    /// Datagrams given up on (pool overflow or reassembly error).
    pub dropped: u64,
}

impl Defragmenter {
    pub fn new(max_fragments: usize, timeout_ns: u64) -> Self {
        Defragmenter {
            pool: IpDefragPool::new(),
            held: 0,
            max_held: max_fragments,
            timeout_ns,
            last_sweep: 0,
            dropped: 0,
        }
    }

    /// Feeds one fragment; returns the whole transport payload once the datagram is complete.
    pub fn push(&mut self, slice: &SlicedPacket, now: u64) -> Option<IpDefragPayloadVec> {
        if now.saturating_sub(self.last_sweep) > self.timeout_ns {
            let limit = now.saturating_sub(self.timeout_ns);
            self.pool.retain(|t| *t >= limit);
            self.last_sweep = now;
        }
        if self.held >= self.max_held {
            // Bound memory: forget everything in flight rather than grow.
            self.pool = IpDefragPool::new();
            self.dropped += self.held as u64;
            self.held = 0;
        }
        self.held += 1;
        match self.pool.process_sliced_packet(slice, now, ()) {
            Ok(Some(done)) => {
                self.held = self.held.saturating_sub(2);
                Some(done)
            }
            Ok(None) => None,
            Err(_) => {
                self.dropped += 1;
                None
            }
        }
    }

    pub fn recycle(&mut self, v: IpDefragPayloadVec) {
        self.pool.return_buf(v);
    }
}
