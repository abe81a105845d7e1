//! IP fragment reassembly for replay (inline, conntrack does this before the queue).
//! etherparse's pool does the reassembly; this wrapper bounds it in datagrams held and age.

use etherparse::defrag::{IpDefragPayloadVec, IpDefragPool};
use etherparse::{Ipv6ExtensionSlice, NetSlice, SlicedPacket};
use std::collections::HashMap;
use std::net::IpAddr;

/// What identifies one fragmented datagram (RFC 791 / RFC 8200).
type FragId = (IpAddr, IpAddr, u32, u8);

fn frag_id(s: &SlicedPacket) -> Option<FragId> {
    match &s.net {
        Some(NetSlice::Ipv4(v4)) => Some((
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            u32::from(v4.header().identification()),
            v4.payload().ip_number.0,
        )),
        Some(NetSlice::Ipv6(v6)) => {
            let ident = v6.extensions().clone().into_iter().find_map(|e| match e {
                Ipv6ExtensionSlice::Fragment(f) => Some(f.identification()),
                _ => None,
            })?;
            Some((
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
                ident,
                v6.payload().ip_number.0,
            ))
        }
        _ => None,
    }
}

pub struct Defragmenter {
    pool: IpDefragPool<u64, ()>,
    /// Datagrams being reassembled, with the time of their latest fragment (mirrors the pool).
    held: HashMap<FragId, u64>,
    max_held: usize,
    timeout_ns: u64,
    last_sweep: u64,
    /// Datagrams given up on (too many held, too old, or a reassembly error).
    pub dropped: u64,
}

impl Defragmenter {
    pub fn new(max_datagrams: usize, timeout_ns: u64) -> Self {
        Defragmenter {
            pool: IpDefragPool::new(),
            held: HashMap::new(),
            max_held: max_datagrams,
            timeout_ns,
            last_sweep: 0,
            dropped: 0,
        }
    }

    /// Feeds one fragment; returns the whole transport payload once the datagram is complete.
    pub fn push(&mut self, slice: &SlicedPacket, now: u64) -> Option<IpDefragPayloadVec> {
        if now.saturating_sub(self.last_sweep) > self.timeout_ns {
            self.expire(now.saturating_sub(self.timeout_ns));
            self.last_sweep = now;
        }
        let id = frag_id(slice)?;
        if !self.held.contains_key(&id) && self.held.len() >= self.max_held {
            // Bound memory: the oldest half goes rather than the table growing.
            let mut times: Vec<u64> = self.held.values().copied().collect();
            times.sort_unstable();
            self.expire(times[times.len() / 2] + 1);
        }
        self.held.insert(id, now);
        match self.pool.process_sliced_packet(slice, now, ()) {
            Ok(Some(done)) => {
                self.held.remove(&id);
                Some(done)
            }
            Ok(None) => None,
            Err(_) => {
                self.dropped += 1;
                None
            }
        }
    }

    /// Forgets datagrams whose latest fragment is older than `limit`.
    fn expire(&mut self, limit: u64) {
        let before = self.held.len();
        self.pool.retain(|t| *t >= limit);
        self.held.retain(|_, t| *t >= limit);
        self.dropped += (before - self.held.len()) as u64;
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn recycle(&mut self, v: IpDefragPayloadVec) {
        self.pool.return_buf(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header};

    fn fragment(id: u16, offset_units: u16, more: bool, data: &[u8]) -> Vec<u8> {
        let mut h = Ipv4Header::new(
            data.len() as u16,
            64,
            IpNumber::UDP,
            [198, 18, 0, 1],
            [198, 18, 0, 2],
        )
        .unwrap();
        h.identification = id;
        h.more_fragments = more;
        h.fragment_offset = offset_units.try_into().unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reassembles_and_bounds_what_it_holds() {
        let mut d = Defragmenter::new(2, 1_000);
        let udp = [
            0x13, 0xc4, 0x13, 0xc4, 0, 24, 0, 0, b'h', b'e', b'l', b'l', b'o', b' ', b'w', b'o',
        ];
        let first = fragment(7, 0, true, &udp);
        let last = fragment(7, 2, false, b"rld!xxxx");
        assert!(d
            .push(&SlicedPacket::from_ip(&first).unwrap(), 10)
            .is_none());
        assert_eq!(d.held(), 1);
        let whole = d
            .push(&SlicedPacket::from_ip(&last).unwrap(), 11)
            .expect("complete");
        assert_eq!(&whole.payload[8..], b"hello world!xxxx");
        assert_eq!(d.held(), 0);
        // three datagrams started, room for two: the oldest is given up
        for (i, t) in [(1u16, 20u64), (2, 21), (3, 22)] {
            d.push(
                &SlicedPacket::from_ip(&fragment(i, 0, true, &udp)).unwrap(),
                t,
            );
        }
        assert!(d.held() <= 2);
        assert!(d.dropped >= 1);
        // and old ones expire
        d.push(
            &SlicedPacket::from_ip(&fragment(9, 0, true, &udp)).unwrap(),
            5_000,
        );
        assert_eq!(d.held(), 1);
    }
}
