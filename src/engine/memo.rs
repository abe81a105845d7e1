//! The scanner check's answers for recent User-Agents. Phones of one model send one
//! User-Agent thousands of times, and the pattern automaton costs ~15 instructions a byte (a
//! load's latency per byte); a remembered answer costs a hash and a comparison. The whole
//! User-Agent is the key, so a remembered answer is exactly what the automaton would say; a
//! flood of varied User-Agents only evicts entries, which then cost the automaton again.

/// Longest User-Agent remembered (a slot is one cache line).
const MAX: usize = 62;
/// Shortest: under a word the automaton is cheaper than the hash.
const MIN: usize = 8;
const SLOTS: usize = 256;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    /// 0: empty.
    len: u8,
    scanner: bool,
    bytes: [u8; MAX],
}

const EMPTY: Slot = Slot {
    len: 0,
    scanner: false,
    bytes: [0; MAX],
};

/// A direct-mapped table of User-Agents and whether they matched a scanner pattern (16 KiB a
/// worker). Forgotten whole when the patterns may have changed ([`UaMemo::clear`]).
pub struct UaMemo {
    slots: Box<[Slot; SLOTS]>,
}

impl Default for UaMemo {
    fn default() -> Self {
        UaMemo {
            slots: Box::new([EMPTY; SLOTS]),
        }
    }
}

impl UaMemo {
    /// Whether `ua` is a scanner's, from memory or from `check` (then remembered).
    #[inline]
    pub fn is_scanner(&mut self, ua: &[u8], check: impl FnOnce(&[u8]) -> bool) -> bool {
        if !(MIN..=MAX).contains(&ua.len()) {
            return check(ua);
        }
        let slot = &mut self.slots[index(ua)];
        if usize::from(slot.len) == ua.len() && slot.bytes[..ua.len()] == *ua {
            return slot.scanner;
        }
        let scanner = check(ua);
        slot.len = ua.len() as u8;
        slot.scanner = scanner;
        slot.bytes[..ua.len()].copy_from_slice(ua);
        scanner
    }

    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
    }
}

/// The slot of a User-Agent of `MIN..=MAX` bytes: its first and last eight bytes and its
/// length, multiplied (a collision only costs the automaton).
#[inline]
fn index(ua: &[u8]) -> usize {
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("eight bytes"));
    let first = word(&ua[..8]);
    let last = word(&ua[ua.len() - 8..]);
    let h = (first ^ last.rotate_left(29) ^ ua.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 56) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: a case-blind substring search.
    fn naive(ua: &[u8]) -> bool {
        let lower = ua.to_ascii_lowercase();
        [&b"scan"[..], b"vicious"]
            .iter()
            .any(|p| lower.windows(p.len()).any(|w| w == *p))
    }

    #[test]
    fn answers_what_the_check_answers_under_collisions_and_eviction() {
        let mut memo = UaMemo::default();
        // Many more User-Agents than slots, of every length around the bounds, some differing
        // only in a middle byte (same first and last words: the same slot), asked repeatedly.
        let mut uas: Vec<Vec<u8>> = Vec::new();
        for len in 1..80 {
            for k in 0..12u8 {
                let mut ua: Vec<u8> = (0..len)
                    .map(|i| b'a' + ((i * 7 + len) % 26) as u8)
                    .collect();
                if len > 20 {
                    ua[len / 2] = b'0' + k;
                    if k % 3 == 0 {
                        ua[4..8].copy_from_slice(b"SCAN");
                    }
                    if k % 4 == 1 {
                        ua[len / 2 - 3..len / 2 + 4].copy_from_slice(b"ViCiOuS");
                    }
                }
                uas.push(ua);
            }
        }
        let mut checks = 0;
        for round in 0..3 {
            for i in 0..uas.len() {
                let ua = &uas[(i * 37 + round) % uas.len()][..];
                let got = memo.is_scanner(ua, |u| {
                    checks += 1;
                    naive(u)
                });
                assert_eq!(got, naive(ua), "{:?}", String::from_utf8_lossy(ua));
            }
        }
        assert!(checks < 3 * uas.len(), "some answers came from memory");
        // The same User-Agent twice in a row is answered from memory the second time.
        let ua = b"Yealink SIP-T46S 66.85.0.5";
        memo.is_scanner(ua, naive);
        assert!(!memo.is_scanner(ua, |_| panic!("asked again")));
        memo.clear();
        let mut asked = false;
        memo.is_scanner(ua, |u| {
            asked = true;
            naive(u)
        });
        assert!(asked, "a cleared memo forgets");
    }
}
