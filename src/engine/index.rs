//! A hash index from 64-bit keys that are already hashes to small values: open addressing,
//! linear probing, deletion by backward shift (no tombstones).
//!
//! Why not hashbrown, which the engine uses elsewhere: its control bytes and its entries are
//! two arrays, so a new key costs two cache misses (the probe, then the entry written), and
//! where the entry lands cannot be known before the probe, so a driver cannot prefetch it.
//! Here a key's home cell is `key & mask` and the cells it probes follow it in the same cache
//! line or the next: [`Index::prefetch`] brings both the lookup and the insert in ahead.
//! Measured on the inline bench's backlog: the transaction note's two misses were ~5 % of
//! sipwall's samples, most of its user time outside the parser.

/// Keys are hashes; 0 marks an empty cell, so a key of 0 is stored as 1 (one more collision
/// in 2^64, as for any two keys).
const EMPTY: u64 = 0;

#[derive(Clone, Copy, Default)]
struct Cell<V> {
    key: u64,
    val: V,
}

pub struct Index<V> {
    cells: Vec<Cell<V>>,
    len: usize,
}

#[inline]
fn stored(key: u64) -> u64 {
    key.max(1)
}

impl<V: Copy + Default> Default for Index<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Copy + Default> Index<V> {
    pub fn new() -> Self {
        Index {
            cells: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.cells.len().wrapping_sub(1)
    }

    /// The cell holding `key`, or the empty cell where it would go.
    #[inline]
    fn slot(&self, key: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut i = key as usize & mask;
        loop {
            let c = self.cells[i].key;
            if c == key {
                return (i, true);
            }
            if c == EMPTY {
                return (i, false);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<V> {
        if self.len == 0 {
            return None;
        }
        match self.slot(stored(key)) {
            (i, true) => Some(self.cells[i].val),
            _ => None,
        }
    }

    #[inline]
    pub fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`'s value; the old one if it had one.
    #[inline(always)]
    pub fn insert(&mut self, key: u64, val: V) -> Option<V> {
        // At most 3/4 full: a probe then rarely leaves the key's cache line or the next.
        if (self.len + 1) * 4 > self.cells.len() * 3 {
            self.grow();
        }
        let key = stored(key);
        let (i, found) = self.slot(key);
        let c = &mut self.cells[i];
        let old = found.then_some(c.val);
        *c = Cell { key, val };
        if !found {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: u64) -> Option<V> {
        if self.len == 0 {
            return None;
        }
        let (i, found) = self.slot(stored(key));
        if !found {
            return None;
        }
        let v = self.cells[i].val;
        self.delete_at(i);
        Some(v)
    }

    /// Empties cell `i` and moves later cells of its cluster back into the gap when their home
    /// allows, so every key stays reachable from its home without tombstones. Returns whether
    /// a cell was moved into `i` (which the caller, walking the table, must then read again).
    fn delete_at(&mut self, mut i: usize) -> bool {
        let mask = self.mask();
        let first = i;
        let mut moved_into_first = false;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let c = self.cells[j];
            if c.key == EMPTY {
                break;
            }
            let home = c.key as usize & mask;
            // c may fill the gap at i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.cells[i] = c;
                moved_into_first |= i == first;
                i = j;
            }
        }
        self.cells[i] = Cell::default();
        self.len -= 1;
        moved_into_first
    }

    /// Every entry, in cell order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.cells
            .iter()
            .filter(|c| c.key != EMPTY)
            .map(|c| (c.key, c.val))
    }

    /// Keeps the entries `keep` says to, changing their values as it likes; each is read
    /// once.
    #[cfg(test)]
    pub fn retain(&mut self, keep: impl FnMut(u64, &mut V) -> bool) {
        if self.len == 0 {
            return;
        }
        // Start after an empty cell (there is one: at most 3/4 full), so that no cluster
        // wraps past the start: a cell moved back by a deletion is always one not read yet.
        let start = (0..self.cells.len())
            .find(|&i| self.cells[i].key == EMPTY)
            .map_or(0, |e| (e + 1) & self.mask());
        self.sweep(start, self.cells.len(), keep);
    }

    /// Keeps the entries `keep` says to, over part `part` of `parts` of the cells (a power of
    /// two, as the cells are): a caller sweeping one part at a time reads every entry in a
    /// round, with a bounded pause each time. A deletion moves only later cells back, never
    /// behind the cell being read, so no entry is skipped; one may be read twice (a cluster
    /// that wraps past the end), and `keep` must allow that. A table that grows between parts
    /// is read in its new layout: some entries wait a round.
    pub fn retain_part(
        &mut self,
        part: usize,
        parts: usize,
        keep: impl FnMut(u64, &mut V) -> bool,
    ) {
        if self.len == 0 {
            return;
        }
        // More parts than cells: a cell a part, and the later parts have none.
        let n = (self.cells.len() / parts).max(1);
        if n * part < self.cells.len() {
            self.sweep(n * part, n, keep);
        }
    }

    /// Reads `count` cells from `from` (wrapping), deleting the entries `keep` refuses.
    fn sweep(&mut self, from: usize, count: usize, mut keep: impl FnMut(u64, &mut V) -> bool) {
        let mask = self.mask();
        let mut n = 0;
        while n < count {
            let i = (from + n) & mask;
            let c = &mut self.cells[i];
            if c.key != EMPTY && !keep(c.key, &mut c.val) && self.delete_at(i) {
                continue;
            }
            n += 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let size = (self.cells.len() * 2).max(16);
        let old = std::mem::replace(&mut self.cells, vec![Cell::default(); size]);
        for c in old.into_iter().filter(|c| c.key != EMPTY) {
            let (i, _) = self.slot(c.key);
            self.cells[i] = c;
        }
    }

    /// Brings `key`'s home cell toward the cache: where a lookup reads and an insert writes.
    /// Changes nothing and never faults.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        if let Some(c) = self.cells.get(stored(key) as usize & self.mask()) {
            prefetch(c);
        }
    }
}

/// Brings the cache line holding `*r` toward the cache; changes nothing.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    let p = (r as *const T).cast::<i8>();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults; the address is that
    // of a live reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small deterministic generator: no dependency, repeatable failures.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 11
        }
    }

    /// Every operation, checked against a std map after each step; keys drawn from a small
    /// range and with few low bits, so clusters form, wrap around the table's end, and the
    /// backward shift and the retain walk meet every case.
    #[test]
    fn agrees_with_a_map_through_inserts_removals_and_retains() {
        for seed in 0..40 {
            let mut r = Lcg(seed);
            let mut ix: Index<u32> = Index::new();
            let mut m: HashMap<u64, u32> = HashMap::new();
            for step in 0..3000u32 {
                // Keys of 0 and 1 are one key (0 is stored as 1); the model says so too.
                let k = match r.next() % 4 {
                    0 => r.next() % 64,
                    1 => (r.next() % 16) << 40 | 0xF,
                    _ => r.next() % 4096,
                };
                let mk = k.max(1);
                match r.next() % 10 {
                    0..=4 => assert_eq!(ix.insert(k, step), m.insert(mk, step)),
                    5..=7 => assert_eq!(ix.remove(k), m.remove(&mk)),
                    8 if step % 50 == 0 => {
                        let cut = r.next() % 4096;
                        ix.retain(|k, v| {
                            *v += 1;
                            k % 4096 >= cut
                        });
                        m.retain(|k, v| {
                            *v += 1;
                            k % 4096 >= cut
                        });
                    }
                    _ => assert_eq!(ix.get(k), m.get(&mk).copied()),
                }
                assert_eq!(ix.len(), m.len());
            }
            for (&k, &v) in &m {
                assert_eq!(ix.get(k), Some(v));
            }
            let mut seen = 0;
            ix.retain(|_, _| {
                seen += 1;
                true
            });
            assert_eq!(seen, m.len(), "retain visits each entry once");
        }
    }

    /// A round of parts deletes what one retain would, whatever the clusters, and leaves the
    /// rest reachable.
    #[test]
    fn a_round_of_parts_retains_as_one_pass() {
        for seed in 0..40 {
            let mut r = Lcg(seed);
            let (mut ix, mut whole): (Index<u32>, Index<u32>) = (Index::new(), Index::new());
            for step in 0..2000u32 {
                let k = match r.next() % 3 {
                    0 => r.next() % 64,
                    1 => (r.next() % 16) << 40 | 0xF,
                    _ => r.next() % 4096,
                };
                ix.insert(k, step);
                whole.insert(k, step);
            }
            let cut = r.next() % 2000;
            let parts = 1 << (seed % 5);
            for p in 0..parts {
                ix.retain_part(p, parts, |_, v| *v >= cut as u32);
            }
            whole.retain(|_, v| *v >= cut as u32);
            assert_eq!(ix.len(), whole.len(), "seed {seed}");
            for (k, v) in whole.iter() {
                assert_eq!(ix.get(k), Some(v), "seed {seed}");
            }
        }
    }

    #[test]
    fn empty_index_answers_without_cells() {
        let mut ix: Index<u64> = Index::new();
        assert_eq!(ix.get(5), None);
        assert_eq!(ix.remove(5), None);
        ix.prefetch(5);
        ix.retain(|_, _| false);
        assert!(ix.is_empty());
        assert_eq!(ix.insert(0, 9), None);
        assert_eq!(ix.get(1), Some(9), "0 is stored as 1");
    }
}
