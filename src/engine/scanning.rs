//! Sources that keep sending what is dropped as a scanner's or by IP (svwar walking
//! extensions, svcrack guessing at the address): their requests never reach the PBX, so no
//! failure of theirs is ever read, and without a ban every packet of a sweep costs a queue
//! round trip. Counted in a table of fixed size: a spoofed flood (a new source a packet)
//! costs no memory and, one slot losing a count at each collision (Misra–Gries), cannot push
//! a source that keeps sending out of its slot.

use super::SourceKey;

/// Slots per worker (24 bytes each). Under a spoofed flood of 20k packets/s a slot is hit
/// about 5 times a second by others: a sweep at more than that keeps its count.
const SLOTS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The source's keyed hash (never 0 in a live slot: 0 hashes to 1).
    tag: u64,
    /// When its current window began.
    start: u64,
    /// Drops in the window; 0 marks a free slot.
    count: u32,
}

pub struct ScanTally {
    slots: Box<[Slot]>,
    /// Keys the hash at random, so that the slots sources fall in cannot be known; a drop's
    /// hash is one folded multiply (a keyed aHash of the 128-bit key cost ~60 instructions
    /// more a scanner's probe).
    seed: u64,
}

impl Default for ScanTally {
    fn default() -> Self {
        ScanTally {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            seed: ahash::RandomState::new().hash_one(0u8) | 1,
        }
    }
}

impl ScanTally {
    #[inline]
    fn slot(&self, key: SourceKey) -> (usize, u64) {
        // An IPv4 source is in the low 32 bits (v4-mapped), an IPv6 prefix in the high 64.
        let x = (key as u64) ^ ((key >> 64) as u64).rotate_left(32) ^ self.seed;
        let m =
            u128::from(x) * u128::from(0x9e37_79b9_7f4a_7c15u64 ^ self.seed.rotate_left(17) | 1);
        let tag = ((m >> 64) as u64 ^ m as u64).max(1);
        ((tag >> 32) as usize & (SLOTS - 1), tag)
    }

    /// Counts one drop from `key`: (drops in its window, when the window began), or `None`
    /// when another source holds the slot and keeps it.
    pub fn note(&mut self, key: SourceKey, now: u64, within_ns: u64) -> Option<(u32, u64)> {
        let (i, tag) = self.slot(key);
        let s = &mut self.slots[i];
        let live = s.count > 0 && now.saturating_sub(s.start) <= within_ns;
        if live && s.tag == tag {
            s.count += 1;
            return Some((s.count, s.start));
        }
        if live {
            s.count -= 1;
            if s.count > 0 {
                return None;
            }
        }
        *s = Slot {
            tag,
            start: now,
            count: 1,
        };
        Some((1, now))
    }

    /// Starts `key` over (it was banned; released, it must earn a ban again).
    pub fn forget(&mut self, key: SourceKey) {
        let (i, tag) = self.slot(key);
        if self.slots[i].tag == tag {
            self.slots[i].count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn counts_within_a_window_and_starts_over_after_it() {
        let mut t = ScanTally::default();
        for k in 1..=5 {
            assert_eq!(t.note(7, k * S, 60 * S), Some((k as u32, S)));
        }
        // 60 s after the window began it is over: counting starts again.
        assert_eq!(t.note(7, 62 * S, 60 * S), Some((1, 62 * S)));
        t.forget(7);
        assert_eq!(t.note(7, 63 * S, 60 * S), Some((1, 63 * S)));
    }

    #[test]
    fn a_flood_of_sources_seen_once_neither_grows_it_nor_displaces_a_sweep() {
        let mut t = ScanTally::default();
        let sweep: SourceKey = 0xdead_beef;
        let mut got = 0;
        // 200k spoofed sources, one packet each, and a sweep of one packet in 20 among them.
        for n in 0..200_000u64 {
            if n % 20 == 0 {
                if let Some((c, _)) = t.note(sweep, n, u64::MAX) {
                    got = c;
                }
            } else {
                t.note(u128::from(n) << 64 | 1, n, u64::MAX);
            }
        }
        assert!(got >= 9_000, "the sweep kept its count: {got}");
        assert_eq!(t.slots.len(), SLOTS);
    }
}
