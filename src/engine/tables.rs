//! What the engine remembers between packets: dialogs (by Call-ID), transactions of requests
//! that may fail authentication, and requests the PBX sent (so responses to them are known).
//! Keys are 64-bit hashes, so no per-message allocation; every table is bounded and expires.

use super::index::Index;
use crate::sip::Message;
use ahash::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

/// Bytes copied inline (no allocation), cut at N.
#[derive(Clone, Copy)]
pub struct Inline<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Inline<N> {
    pub fn new(s: &[u8]) -> Self {
        let n = s.len().min(N);
        let mut bytes = [0; N];
        bytes[..n].copy_from_slice(&s[..n]);
        Inline {
            len: n as u16,
            bytes,
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What a [`Txn`] is made from, borrowed from the message.
pub struct TxnFrom<'a> {
    pub key: super::SourceKey,
    pub ip: IpAddr,
    pub had_auth: bool,
    pub user: &'a [u8],
    pub line: &'a [u8],
}

/// A message's dialog and transaction keys, as [`Tables::warm`] computed them (hashes of the
/// Call-ID, and for the transaction of its CSeq too), so that its decision does not hash
/// again; 0: computed where needed (a key that is 0 is then computed again, to the same value).
#[derive(Clone, Copy)]
pub struct Keys {
    call: u64,
    txn: u64,
}

impl Keys {
    pub const NONE: Keys = Keys { call: 0, txn: 0 };
}

/// A request that may be answered with an authentication failure, as a failure reads it.
#[derive(Clone, Copy)]
pub struct Txn {
    pub key: super::SourceKey,
    pub ip: IpAddr,
    pub user: Inline<USER_MAX>,
    pub line: Inline<LINE_MAX>,
}

/// The user name and request line a transaction keeps, cut at these lengths (evidence).
const USER_MAX: usize = 64;
const LINE_MAX: usize = 160;

/// A transaction as stored: 48 bytes, its texts in [`Texts`]. Every REGISTER is noted and few
/// are ever read back (a failure), so the note writes one record line and its texts' bytes,
/// not 270 bytes of room for the longest texts (whose pages, as the table grew, were also
/// most of the engine's page faults).
#[derive(Clone, Copy)]
struct TxnRec {
    key: super::SourceKey,
    ip: IpAddr,
    had_auth: bool,
    user_len: u8,
    line_len: u8,
    /// Where its texts start in [`Texts`] (user name, then request line).
    text_at: u64,
}

/// A transaction's expiry, kept in its index cell (beside its slot) so that the expiry walk
/// reads the index alone, not every record at random: in ticks of 2^30 ns (~1.07 s, the
/// walk's own period), rounded up, so a transaction lives its lifetime and at most a tick more.
fn expiry_tick(at_ns: u64) -> u32 {
    u32::try_from((at_ns >> 30) + 1).unwrap_or(u32::MAX)
}

fn tick(now_ns: u64) -> u32 {
    u32::try_from(now_ns >> 30).unwrap_or(u32::MAX)
}

/// Bytes of texts a transaction may hold on average before the oldest texts are overwritten
/// (the ring is `max_txns` times this rounded up to a power of two, touched only as it
/// fills). A REGISTER's user and line take about 40; at the table's cap of live transactions
/// the ring still holds every live one's texts unless their average passes this.
const TEXT_BYTES_PER_TXN: usize = 96;

/// The transactions' texts in one ring of bytes, written in order: a text is read back while
/// the ring has not come round over it, and is empty after (the failure still counts; only
/// its evidence line is lost).
struct Texts {
    buf: Vec<u8>,
    /// A power of two: positions map into the ring by a mask, not a division (~40 cycles).
    cap: usize,
    /// Bytes written since the start (positions are absolute, masked into the ring).
    written: u64,
}

impl Texts {
    fn new(cap: usize) -> Self {
        let cap = cap.max(USER_MAX + LINE_MAX).next_power_of_two();
        Texts {
            // Reserved, not touched: address space only until written, and no reallocation
            // (a copy of the ring, and an allocation on the packet path) as it fills. Up to
            // 64 MiB (the default limits need 32): a huge configured cap must not fail at start.
            buf: Vec::with_capacity(cap.min(64 << 20)),
            cap,
            written: 0,
        }
    }

    /// Writes `a` then `b` contiguously; where they start.
    fn put(&mut self, a: &[u8], b: &[u8]) -> u64 {
        let n = a.len() + b.len();
        let mut at = self.written;
        let mut off = self.offset(at);
        if off + n > self.cap {
            // No text wraps: the ring's tail is skipped.
            at += (self.cap - off) as u64;
            off = 0;
        }
        if off == self.buf.len() {
            self.buf.extend_from_slice(a);
            self.buf.extend_from_slice(b);
        } else {
            if off + n > self.buf.len() {
                self.buf.resize(off + n, 0);
            }
            self.buf[off..off + a.len()].copy_from_slice(a);
            self.buf[off + a.len()..off + n].copy_from_slice(b);
        }
        self.written = at + n as u64;
        at
    }

    /// The `n` bytes written at `at`, unless the ring has come round over them.
    fn get(&self, at: u64, n: usize) -> &[u8] {
        if self.written > at + self.cap as u64 {
            return b"";
        }
        let off = self.offset(at);
        self.buf.get(off..off + n).unwrap_or_default()
    }

    #[inline]
    fn offset(&self, at: u64) -> usize {
        (at & (self.cap as u64 - 1)) as usize
    }
}

/// RFC 3261 Timer B/F: 64 × T1.
const TXN_LIFETIME_NS: u64 = 32_000_000_000;
/// How long an unanswered dialog is kept: an INVITE waits at most Timer C for its answer.
const EARLY_DIALOG_NS: u64 = PBX_INVITE_LIFETIME_NS;
/// How long a dialog is kept after its BYE: the BYE's transaction (Timer F), its last
/// retransmission answered.
const DIALOG_ENDING_NS: u64 = TXN_LIFETIME_NS;
/// INVITE client transactions of the PBX may see final answers for up to Timer C (3 min).
const PBX_INVITE_LIFETIME_NS: u64 = 200_000_000_000;

/// What of a worker's tables lets calls in progress outlive a restart: each confirmed dialog
/// and each request the PBX sent, with its expiry (ns since the Unix epoch, the clock `now`
/// is read from inline), and the credentialed requests awaiting their answer. Keys are hashes
/// of Call-IDs (and CSeqs, for requests) under the tables' seed (`Tables::new`): no Call-ID is
/// kept, and the keys mean something only to tables made with the same seed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    pub dialogs: Vec<(u64, u64)>,
    pub pbx_requests: Vec<(u64, u64)>,
    /// Sorted by key.
    pub txns: Vec<SavedTxn>,
}

/// A request with credentials that the PBX has not answered yet. Saved because a 401/403 to
/// a request the engine did not see is read as a first challenge, not a failure: without it,
/// a guess in flight across a restart would go uncounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTxn {
    /// Its transaction key ([`Tables::txn_key`]).
    pub key: u64,
    /// When it expires (ns since the Unix epoch), to the table's tick of 2^30 ns.
    pub expires: u64,
    pub source: super::SourceKey,
    pub ip: IpAddr,
    /// At most 64 bytes: the user name (evidence).
    pub user: Vec<u8>,
    /// At most 160 bytes: the request line (evidence).
    pub line: Vec<u8>,
}

/// Credentialed requests in flight a worker saves at most, the latest to expire: a flood of
/// guesses from spoofed sources fills the table, and the file is rewritten each second it
/// changes (about 100 bytes each; ~1.6 MB at the cap).
pub const MAX_SAVED_TXNS: usize = 16_384;

impl Calls {
    /// Several workers' calls as one: each dialog and request expiring at the latest expiry
    /// any of them holds.
    pub fn union<'a>(all: impl IntoIterator<Item = &'a Calls>) -> Calls {
        let all: Vec<&Calls> = all.into_iter().collect();
        if let [one] = all[..] {
            // One queue, the common case: nothing to merge.
            return one.clone();
        }
        let mut dialogs = ahash::AHashMap::new();
        let mut pbx = ahash::AHashMap::new();
        for c in &all {
            for &(k, t) in &c.dialogs {
                let e = dialogs.entry(k).or_insert(t);
                *e = (*e).max(t);
            }
            for &(k, t) in &c.pbx_requests {
                let e = pbx.entry(k).or_insert(t);
                *e = (*e).max(t);
            }
        }
        let mut txns: ahash::AHashMap<u64, SavedTxn> = ahash::AHashMap::new();
        for t in all.iter().flat_map(|c| &c.txns) {
            match txns.get(&t.key) {
                Some(have) if have.expires >= t.expires => {}
                _ => {
                    txns.insert(t.key, t.clone());
                }
            }
        }
        let mut c = Calls {
            dialogs: dialogs.into_iter().collect(),
            pbx_requests: pbx.into_iter().collect(),
            txns: txns.into_values().collect(),
        };
        c.dialogs.sort_unstable();
        c.pbx_requests.sort_unstable();
        c.txns.sort_unstable_by_key(|t| t.key);
        c
    }
}

pub struct Tables {
    hasher: RandomState,
    /// Confirmed dialogs, by Call-ID key, with their expiry: answered 2xx by the PBX, or
    /// the PBX's own. Their requests are never rate-limited.
    dialogs: Index<u64>,
    /// Dialogs a request created that the PBX has not answered 2xx yet (a caller's INVITE
    /// before its answer, an attacker's that never gets one), with their expiry: known, but
    /// their requests rate-limited, and kept apart so that a flood of them can neither fill
    /// the confirmed table nor stay in it for `dialog_idle`.
    early: Index<u64>,
    /// Transaction key → its slot in `slots` and its expiry tick. The records stay put in the
    /// slab: the index moves only 16-byte cells when it grows, and stays cache-sized.
    txns: Index<(u32, u32)>,
    slots: Vec<TxnRec>,
    free: Vec<u32>,
    texts: Texts,
    pbx_requests: Index<u64>,
    max_dialogs: usize,
    max_txns: usize,
    dialog_idle: u64,
    pub refused: u64,
    /// Changes whenever a dialog, a PBX request or a credentialed transaction comes or goes
    /// (not when one is refreshed, nor when a transaction expires unanswered: restoring
    /// drops expired ones).
    calls_version: u64,
}

impl Tables {
    /// `seed` keys the hashes of Call-IDs: tables with the same seed (every worker of a daemon,
    /// and the daemon after a restart) give a Call-ID the same key. It stays secret (in the
    /// state directory), so a flood cannot aim Call-IDs at one cell.
    pub fn new(max_dialogs: usize, max_txns: usize, dialog_idle: u64, seed: [u64; 4]) -> Self {
        Tables {
            hasher: RandomState::with_seeds(seed[0], seed[1], seed[2], seed[3]),
            dialogs: Index::new(),
            early: Index::new(),
            txns: Index::new(),
            slots: Vec::new(),
            free: Vec::new(),
            texts: Texts::new(max_txns.saturating_mul(TEXT_BYTES_PER_TXN)),
            pbx_requests: Index::new(),
            max_dialogs,
            max_txns,
            dialog_idle,
            refused: 0,
            calls_version: 0,
        }
    }

    /// A number that changes when the set of dialogs or PBX requests does.
    pub fn calls_version(&self) -> u64 {
        self.calls_version
    }

    /// The dialogs and PBX requests, to be saved.
    pub fn calls(&self, now: u64) -> Calls {
        // Expired entries wait for their part of the sweep; they are not calls.
        Calls {
            dialogs: self.dialogs.iter().filter(|&(_, e)| e >= now).collect(),
            pbx_requests: self.pbx_requests.iter().filter(|&(_, e)| e > now).collect(),
            txns: self.saved_txns(now),
        }
    }

    /// The credentialed transactions live at `now`, at most [`MAX_SAVED_TXNS`] (the latest
    /// to expire), sorted by key.
    fn saved_txns(&self, now: u64) -> Vec<SavedTxn> {
        let now_tick = tick(now);
        let mut live: Vec<(u64, u32, u32)> = self
            .txns
            .iter()
            .filter(|&(_, (i, e))| e > now_tick && self.slots[i as usize].had_auth)
            .map(|(k, (i, e))| (k, i, e))
            .collect();
        if live.len() > MAX_SAVED_TXNS {
            live.select_nth_unstable_by_key(MAX_SAVED_TXNS, |&(_, _, e)| std::cmp::Reverse(e));
            live.truncate(MAX_SAVED_TXNS);
        }
        live.sort_unstable_by_key(|&(k, _, _)| k);
        live.into_iter()
            .map(|(k, i, e)| {
                let r = &self.slots[i as usize];
                let (user, line) = self.texts_of(r);
                SavedTxn {
                    key: k,
                    expires: u64::from(e) << 30,
                    source: r.key,
                    ip: r.ip,
                    user: user.to_vec(),
                    line: line.to_vec(),
                }
            })
            .collect()
    }

    /// Takes back saved calls (made under this seed): those not expired at `now`, within the
    /// tables' caps. What the tables know already stays as it is.
    pub fn restore_calls(&mut self, c: &Calls, now: u64) {
        for &(k, expires) in &c.dialogs {
            if expires >= now
                && self.dialogs.len() < self.max_dialogs
                && !self.dialogs.contains_key(k)
            {
                self.dialogs.insert(k, expires);
            }
        }
        for &(k, expires) in &c.pbx_requests {
            if expires > now
                && self.pbx_requests.len() < self.max_txns
                && !self.pbx_requests.contains_key(k)
            {
                self.pbx_requests.insert(k, expires);
            }
        }
        let now_tick = tick(now);
        for t in &c.txns {
            // The tick it was saved at, not rounded up again: a txn saved and restored
            // repeatedly keeps its lifetime.
            let e = u32::try_from(t.expires >> 30).unwrap_or(u32::MAX);
            if e > now_tick && self.txns.len() < self.max_txns && !self.txns.contains_key(t.key) {
                let rec = self.record(&TxnFrom {
                    key: t.source,
                    ip: t.ip,
                    had_auth: true,
                    user: &t.user,
                    line: &t.line,
                });
                let i = self.put_slot(rec);
                self.txns.insert(t.key, (i, e));
            }
        }
        self.calls_version += 1;
    }

    /// Dialogs known: (confirmed, not yet answered).
    pub fn dialogs_len(&self) -> (usize, usize) {
        (self.dialogs.len(), self.early.len())
    }
    pub fn txns_len(&self) -> usize {
        self.txns.len() + self.pbx_requests.len()
    }

    fn call_key(&self, call_id: &[u8]) -> u64 {
        self.hasher.hash_one(call_id)
    }

    fn call_key_of(&self, m: &Message, keys: &Keys) -> u64 {
        match keys.call {
            0 => self.call_key(m.call_id),
            k => k,
        }
    }

    fn txn_key_of(&self, m: &Message, keys: &Keys) -> u64 {
        match keys.txn {
            0 => self.txn_key(m),
            k => k,
        }
    }

    /// Transaction key: Call-ID, CSeq number and CSeq method (what a response repeats).
    pub fn txn_key(&self, m: &Message) -> u64 {
        let mut h = self.hasher.build_hasher();
        // The Call-ID's bytes, then the number and a known method's index in one word: a
        // third fewer instructions than hashing the three as values (each with its length).
        // An unknown method's bytes go between, prefixed by their length as a value would
        // be, so no two (Call-ID, method) pairs make the same input.
        h.write(m.call_id);
        let method = match m.cseq.method.known_index() {
            Some(i) => i as u64,
            None => {
                let other = m.cseq.method.as_bytes();
                h.write_usize(other.len());
                h.write(other);
                u64::MAX >> 32
            }
        };
        h.write_u64(u64::from(m.cseq.seq) << 32 | method);
        h.finish()
    }

    /// Whether `m` belongs to a confirmed dialog. (Lookups read expiries: the sweep that
    /// removes expired entries reaches each only once a round.)
    pub fn dialog_known(&self, m: &Message, keys: &Keys, now: u64) -> bool {
        self.dialogs
            .get(self.call_key_of(m, keys))
            .is_some_and(|e| e >= now)
    }

    /// Whether `m` belongs to a dialog created but not yet answered 2xx.
    pub fn early_known(&self, m: &Message, keys: &Keys, now: u64) -> bool {
        !self.early.is_empty()
            && self
                .early
                .get(self.call_key_of(m, keys))
                .is_some_and(|e| e >= now)
    }

    /// An accepted request created (or continues) a dialog the PBX has not confirmed.
    pub fn note_early(&mut self, m: &Message, keys: &Keys, now: u64) {
        let k = self.call_key_of(m, keys);
        if self.early.len() >= self.max_dialogs && !self.early.contains_key(k) {
            self.refused += 1;
            return;
        }
        self.early.insert(k, now.saturating_add(EARLY_DIALOG_NS));
    }

    /// The PBX refused a dialog-creating request (a final non-2xx): no dialog. Its ACK and the
    /// answer's retransmissions still come for a transaction's time, so the unconfirmed entry
    /// is kept that long, not its 200 s. A request sent again (with credentials, after a 407)
    /// notes it again.
    pub fn refuse_early(&mut self, m: &Message, now: u64) {
        let k = self.call_key(m.call_id);
        if let Some(e) = self.early.get(k) {
            self.early
                .insert(k, e.min(now.saturating_add(TXN_LIFETIME_NS)));
        }
    }

    /// The PBX answered 2xx to a dialog-creating request: the dialog is confirmed (whether or
    /// not the request was seen: the PBX vouches for it, as after a restart).
    pub fn confirm_dialog(&mut self, m: &Message, now: u64) {
        let k = self.call_key(m.call_id);
        self.early.remove(k);
        self.note_dialog(m, &Keys { call: k, txn: 0 }, now);
    }

    /// A BYE ends the dialog: it is kept [`DIALOG_ENDING_NS`] more, for the BYE's
    /// retransmissions and answers, then expires (not `dialog_idle` later, so that the tables,
    /// and the calls saved from them, hold the calls in progress and not every call of hours).
    pub fn end_dialog(&mut self, m: &Message, keys: &Keys, now: u64) {
        let k = self.call_key_of(m, keys);
        if self.dialogs.contains_key(k) {
            let ends = now.saturating_add(DIALOG_ENDING_NS.min(self.dialog_idle));
            self.dialogs.insert(k, ends);
            self.calls_version += 1;
        }
    }

    pub fn note_dialog(&mut self, m: &Message, keys: &Keys, now: u64) {
        let k = self.call_key_of(m, keys);
        if self.dialogs.len() >= self.max_dialogs && !self.dialogs.contains_key(k) {
            self.refused += 1;
            return;
        }
        // Kept until idle that long: each request of the dialog moves its expiry on.
        if self
            .dialogs
            .insert(k, now.saturating_add(self.dialog_idle))
            .is_none()
        {
            self.calls_version += 1;
        }
    }

    pub fn note_txn(&mut self, m: &Message, keys: &Keys, t: TxnFrom, now: u64) {
        let k = self.txn_key_of(m, keys);
        let found = self.txns.get(k).map(|(i, _)| i);
        if found.is_none() && self.txns.len() >= self.max_txns {
            self.refused += 1;
            return;
        }
        let rec = self.record(&t);
        // A credentialed request in flight is saved with the calls (see [`SavedTxn`]).
        let was_auth = found.is_some_and(|i| self.slots[i as usize].had_auth);
        if t.had_auth != was_auth {
            self.calls_version += 1;
        }
        let i = match found {
            Some(i) => {
                self.slots[i as usize] = rec;
                i
            }
            None => self.put_slot(rec),
        };
        self.txns.insert(k, (i, expiry_tick(now + TXN_LIFETIME_NS)));
    }

    /// A free slot (or a new one) holding `rec`.
    fn put_slot(&mut self, rec: TxnRec) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = rec;
                i
            }
            None => {
                self.slots.push(rec);
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Touches the dialog and transaction entries judging `m` will read or write; their keys,
    /// for the decision to reuse.
    pub fn warm(&self, m: &Message) -> Keys {
        let mut keys = Keys::NONE;
        if m.to.tag.is_some() || m.method().is_some_and(|x| x.creates_dialog()) {
            let k = self.call_key(m.call_id);
            // In a dialog: looked up confirmed, then early. Out of one: noted early.
            if m.to.tag.is_some() {
                self.dialogs.prefetch(k);
            }
            self.early.prefetch(k);
            keys.call = k;
        }
        if m.method() == Some(crate::sip::Method::Register) || m.authorization.is_some() {
            let k = self.txn_key(m);
            self.txns.prefetch(k);
            keys.txn = k;
        }
        keys
    }

    /// The transaction with key `k` (see [`Tables::txn_key`]), if remembered, with its texts.
    pub fn txn(&self, k: u64) -> Option<Txn> {
        let r = &self.slots[self.txns.get(k)?.0 as usize];
        let (user, line) = self.texts_of(r);
        Some(Txn {
            key: r.key,
            ip: r.ip,
            user: Inline::new(user),
            line: Inline::new(line),
        })
    }

    /// A record's user name and request line (empty once the ring came round over them).
    fn texts_of(&self, r: &TxnRec) -> (&[u8], &[u8]) {
        let (u, l) = (usize::from(r.user_len), usize::from(r.line_len));
        let text = self.texts.get(r.text_at, u + l);
        if text.is_empty() {
            (b"", b"")
        } else {
            text.split_at(u)
        }
    }

    /// A record of a transaction, its texts (cut at their limits) written to the ring.
    #[inline]
    fn record(&mut self, t: &TxnFrom) -> TxnRec {
        let (user, line) = (
            &t.user[..t.user.len().min(USER_MAX)],
            &t.line[..t.line.len().min(LINE_MAX)],
        );
        TxnRec {
            key: t.key,
            ip: t.ip,
            had_auth: t.had_auth,
            user_len: user.len() as u8,
            line_len: line.len() as u8,
            text_at: self.texts.put(user, line),
        }
    }

    /// Did the transaction with key `k` carry credentials? (False if not remembered.)
    pub fn txn_had_auth(&self, k: u64) -> bool {
        self.txns
            .get(k)
            .is_some_and(|(i, _)| self.slots[i as usize].had_auth)
    }

    pub fn forget_txn(&mut self, k: u64) {
        if let Some((i, _)) = self.txns.remove(k) {
            if self.slots[i as usize].had_auth {
                self.calls_version += 1;
            }
            self.free.push(i);
        }
    }

    pub fn note_pbx_request(&mut self, m: &Message, now: u64) {
        let k = self.txn_key(m);
        if self.pbx_requests.len() >= self.max_txns && !self.pbx_requests.contains_key(k) {
            self.refused += 1;
            return;
        }
        let life = if m.cseq.method == crate::sip::Method::Invite {
            PBX_INVITE_LIFETIME_NS
        } else {
            TXN_LIFETIME_NS
        };
        if self.pbx_requests.insert(k, now + life).is_none() {
            self.calls_version += 1;
        }
    }

    /// Does this response answer a request the PBX sent?
    pub fn pbx_sent(&self, m: &Message, now: u64) -> bool {
        !self.pbx_requests.is_empty()
            && self
                .pbx_requests
                .get(self.txn_key(m))
                .is_some_and(|e| e > now)
    }

    #[cfg(test)]
    pub fn expire(&mut self, now: u64) {
        self.expire_part(now, 0, 1);
    }

    /// Expires part `part` of `parts` of each table (see [`Index::retain_part`]).
    pub fn expire_part(&mut self, now: u64, part: usize, parts: usize) {
        let calls = self.dialogs.len() + self.pbx_requests.len();
        self.dialogs
            .retain_part(part, parts, |_, expires| *expires >= now);
        self.early
            .retain_part(part, parts, |_, expires| *expires >= now);
        let (free, now_tick) = (&mut self.free, tick(now));
        self.txns.retain_part(part, parts, |_, &mut (i, expires)| {
            let live = expires > now_tick;
            if !live {
                free.push(i);
            }
            live
        });
        self.pbx_requests.retain_part(part, parts, |_, e| *e > now);
        if self.dialogs.len() + self.pbx_requests.len() != calls {
            self.calls_version += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(texts: &[String]) -> Vec<Message<'_>> {
        texts
            .iter()
            .map(|s| crate::sip::parse(s.as_bytes(), crate::sip::Framing::Datagram).unwrap())
            .collect()
    }

    fn msg(call: &str) -> String {
        format!(
            "REGISTER sip:a.example SIP/2.0\r\nFrom: <sip:1@a.example>;tag=x\r\nTo: <sip:1@a.example>\r\n\
             Call-ID: {call}\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn txn(user: &str) -> TxnFrom<'_> {
        TxnFrom {
            key: 7,
            ip: "198.18.0.1".parse().unwrap(),
            had_auth: true,
            user: user.as_bytes(),
            line: b"REGISTER sip:a.example SIP/2.0",
        }
    }

    #[test]
    fn saved_calls_merge_and_come_back_within_the_caps() {
        let a = Calls {
            dialogs: vec![(1, 70), (2, 80)],
            pbx_requests: vec![(7, 70)],
            ..Default::default()
        };
        let b = Calls {
            dialogs: vec![(2, 85), (3, 90)],
            pbx_requests: vec![(7, 60), (8, 80)],
            ..Default::default()
        };
        let u = Calls::union([&a, &b]);
        assert_eq!(
            u.dialogs,
            vec![(1, 70), (2, 85), (3, 90)],
            "latest expiry kept"
        );
        assert_eq!(u.pbx_requests, vec![(7, 70), (8, 80)], "latest expiry kept");
        // Two dialogs fit; what the tables know already is not overwritten; expired ones stay out.
        let mut t = Tables::new(2, 1, 50, [5; 4]);
        t.dialogs.insert(3, 91);
        let v = t.calls_version();
        t.restore_calls(&u, 75);
        assert_ne!(t.calls_version(), v);
        let mut d = t.calls(0).dialogs;
        d.sort_unstable();
        assert_eq!(
            d,
            vec![(2, 85), (3, 91)],
            "(1, 70) expired at 75: not taken back"
        );
        assert_eq!(
            t.calls(0).pbx_requests,
            vec![(8, 80)],
            "(7, 70) expired at 75"
        );
    }

    #[test]
    fn transaction_slots_are_reused_and_bounded() {
        let mut t = Tables::new(10, 3, 1, [1, 2, 3, 4]);
        let texts: Vec<String> = (0..5).map(|i| msg(&format!("c{i}"))).collect();
        let m = parsed(&texts);
        for (i, m) in m.iter().enumerate().take(3) {
            t.note_txn(m, &Keys::NONE, txn(&format!("u{i}")), 0);
        }
        // Full: a fourth is refused; the same key again replaces in place.
        t.note_txn(&m[3], &Keys::NONE, txn("u3"), 0);
        assert_eq!((t.txns.len(), t.refused), (3, 1));
        t.note_txn(&m[0], &Keys::NONE, txn("again"), 0);
        assert_eq!(t.txn(t.txn_key(&m[0])).unwrap().user.as_bytes(), b"again");
        // A shorter value over a longer one reads as itself.
        t.note_txn(&m[0], &Keys::NONE, txn("a"), 0);
        assert_eq!(t.txn(t.txn_key(&m[0])).unwrap().user.as_bytes(), b"a");
        // A forgotten transaction's slot serves the next one.
        t.forget_txn(t.txn_key(&m[1]));
        t.note_txn(&m[4], &Keys::NONE, txn("u4"), 0);
        assert_eq!(t.slots.len(), 3);
        assert_eq!(t.txn(t.txn_key(&m[4])).unwrap().user.as_bytes(), b"u4");
        assert!(t.txn(t.txn_key(&m[1])).is_none());
        // Expiry (within a tick of the lifetime) frees every slot; the slab does not grow
        // past the cap.
        t.expire(TXN_LIFETIME_NS - 1);
        assert_eq!(t.txns.len(), 3, "not before the lifetime");
        t.expire(TXN_LIFETIME_NS + (1 << 30));
        assert_eq!((t.txns.len(), t.free.len()), (0, 3));
        for m in &m[..3] {
            t.note_txn(
                m,
                &Keys::NONE,
                txn("later"),
                TXN_LIFETIME_NS + (1 << 30) + 1,
            );
        }
        assert_eq!((t.slots.len(), t.free.len()), (3, 0));
        // Texts are cut at their limits.
        let (long_user, long_line) = ("U".repeat(100), [b'L'; 200]);
        let long = TxnFrom {
            line: &long_line,
            ..txn(&long_user)
        };
        t.note_txn(&m[0], &Keys::NONE, long, TXN_LIFETIME_NS + (1 << 30) + 2);
        let got = t.txn(t.txn_key(&m[0])).unwrap();
        assert_eq!(
            (got.user.as_bytes().len(), got.line.as_bytes().len()),
            (64, 160)
        );
        assert!(t.txn_had_auth(t.txn_key(&m[0])) && !t.txn_had_auth(1));
    }

    #[test]
    fn credentialed_transactions_are_saved_and_come_back() {
        let mut t = Tables::new(10, 3, 1, [1, 2, 3, 4]);
        let texts: Vec<String> = (0..4).map(|i| msg(&format!("c{i}"))).collect();
        let m = parsed(&texts);
        let v = t.calls_version();
        t.note_txn(&m[0], &Keys::NONE, txn("alice"), 0);
        assert_ne!(t.calls_version(), v, "a credentialed request is saved");
        let v = t.calls_version();
        t.note_txn(&m[0], &Keys::NONE, txn("alice"), 5);
        assert_eq!(
            t.calls_version(),
            v,
            "a retransmission changes nothing saved"
        );
        // A first REGISTER without credentials: no failure can answer it, nothing to save.
        let plain = TxnFrom {
            had_auth: false,
            ..txn("bob")
        };
        t.note_txn(&m[1], &Keys::NONE, plain, 0);
        assert_eq!(t.calls_version(), v);
        t.note_txn(&m[2], &Keys::NONE, txn("carol"), 0);
        let saved = t.calls(1).txns;
        assert_eq!(saved.len(), 2);
        assert!(
            saved.windows(2).all(|w| w[0].key < w[1].key),
            "sorted by key"
        );
        let alice = saved.iter().find(|s| s.key == t.txn_key(&m[0])).unwrap();
        assert_eq!(
            (&alice.user[..], &alice.line[..], alice.source),
            (&b"alice"[..], &b"REGISTER sip:a.example SIP/2.0"[..], 7)
        );
        assert!(alice.expires >= TXN_LIFETIME_NS && alice.expires <= TXN_LIFETIME_NS + (2 << 30));
        // Answered: gone from what is saved.
        let v = t.calls_version();
        t.forget_txn(t.txn_key(&m[2]));
        assert_ne!(t.calls_version(), v);
        assert_eq!(t.calls(1).txns.len(), 1);

        // Restored under the same seed: read back as the engine noted it, keeping its expiry
        // through any number of restarts; past it, not taken back; within the cap.
        let mut after = Tables::new(10, 2, 1, [1, 2, 3, 4]);
        after.restore_calls(&t.calls(1), 2);
        let k = t.txn_key(&m[0]);
        assert!(after.txn_had_auth(k));
        let got = after.txn(k).unwrap();
        assert_eq!((got.user.as_bytes(), got.key), (&b"alice"[..], 7));
        assert_eq!(
            after.calls(3).txns,
            t.calls(1).txns,
            "same expiry after a restore"
        );
        let mut late = Tables::new(10, 2, 1, [1, 2, 3, 4]);
        late.restore_calls(&t.calls(1), alice.expires);
        assert!(!late.txn_had_auth(k), "expired");
        let mut full = Tables::new(10, 1, 1, [1, 2, 3, 4]);
        full.note_txn(&m[3], &Keys::NONE, txn("dave"), 0);
        full.restore_calls(&t.calls(1), 2);
        assert!(!full.txn_had_auth(k), "the table's cap holds");

        // Merged across workers: one entry a key, the latest expiry; the saved count is capped.
        let early = SavedTxn {
            expires: 1,
            ..alice.clone()
        };
        let u = Calls::union([
            &Calls {
                txns: vec![early],
                ..Default::default()
            },
            &t.calls(1),
        ]);
        assert_eq!(u.txns, t.calls(1).txns);
        let mut big = Tables::new(10, MAX_SAVED_TXNS + 10, 1, [1, 2, 3, 4]);
        let many: Vec<String> = (0..MAX_SAVED_TXNS + 10)
            .map(|i| msg(&format!("m{i}")))
            .collect();
        for (i, s) in many.iter().enumerate() {
            let m = crate::sip::parse(s.as_bytes(), crate::sip::Framing::Datagram).unwrap();
            big.note_txn(&m, &Keys::NONE, txn("x"), (i as u64) << 30);
        }
        let kept = big.calls(0).txns;
        assert_eq!(kept.len(), MAX_SAVED_TXNS);
        let first = crate::sip::parse(many[0].as_bytes(), crate::sip::Framing::Datagram).unwrap();
        assert!(
            kept.iter().all(|s| s.key != big.txn_key(&first)),
            "the earliest to expire are left out"
        );
    }

    #[test]
    fn texts_read_back_until_the_ring_comes_round_over_them() {
        assert_eq!(Texts::new(300).cap, 512, "a power of two");
        let mut t = Texts::new(256);
        let a = t.put(b"u1", &[b'x'; 100]);
        let b = t.put(b"u2", &[b'y'; 100]);
        assert_eq!((a, b), (0, 102));
        assert_eq!(t.get(a, 102), [&b"u1"[..], &[b'x'; 100]].concat());
        assert_eq!(t.get(b, 102), [&b"u2"[..], &[b'y'; 100]].concat());
        // 152 bytes do not fit in the 52 left: the tail is skipped, the text starts at 0.
        let c = t.put(b"u3", &[b'z'; 150]);
        assert_eq!(c, 256);
        assert_eq!(t.get(c, 152), [&b"u3"[..], &[b'z'; 150]].concat());
        assert_eq!(t.get(a, 102), b"", "written over");
        assert_eq!(t.get(b, 102), b"", "written over in part");
        let d = t.put(b"u4", &[b'w'; 10]);
        assert_eq!(t.get(d, 12), [&b"u4"[..], &[b'w'; 10]].concat());
        assert_eq!(t.get(c, 152).len(), 152, "still whole");
        assert!(t.buf.len() <= 256, "the ring never grows past its size");
    }
}
