//! What the engine remembers between packets: dialogs (by Call-ID), transactions of requests
//! that may fail authentication, and requests the PBX sent (so responses to them are known).
//! Keys are 64-bit hashes, so no per-message allocation; every table is bounded and expires.

use super::index::Index;
use crate::sip::Message;
use ahash::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

/// Bytes copied inline (no allocation), cut at N.
#[derive(Clone, Copy)]
pub struct Inline<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Inline<N> {
    pub fn new(s: &[u8]) -> Self {
        let mut i = Inline {
            len: 0,
            bytes: [0; N],
        };
        i.set(s);
        i
    }
    /// Replaces the bytes in place; those past the new length are left as they were (never
    /// read), so a reused record costs a copy of what it holds, not of its capacity.
    pub fn set(&mut self, s: &[u8]) {
        let n = s.len().min(N);
        self.bytes[..n].copy_from_slice(&s[..n]);
        self.len = n as u16;
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What a [`Txn`] is made from, borrowed from the message: copied into its slab slot in
/// place (a record built on the stack and moved in wrote its 270 bytes three times).
pub struct TxnFrom<'a> {
    pub key: super::SourceKey,
    pub ip: IpAddr,
    pub had_auth: bool,
    pub user: &'a [u8],
    pub line: &'a [u8],
}

/// A request that may be answered with an authentication failure.
#[derive(Clone, Copy)]
pub struct Txn {
    pub key: super::SourceKey,
    pub ip: IpAddr,
    pub had_auth: bool,
    pub user: Inline<64>,
    pub line: Inline<160>,
    pub expires: u64,
}

/// RFC 3261 Timer B/F: 64 × T1.
const TXN_LIFETIME_NS: u64 = 32_000_000_000;
/// INVITE client transactions of the PBX may see final answers for up to Timer C (3 min).
const PBX_INVITE_LIFETIME_NS: u64 = 200_000_000_000;

pub struct Tables {
    hasher: RandomState,
    dialogs: Index<u64>,
    /// Transaction key → its slot in `slots`. The records (about 270 bytes each) stay put in
    /// the slab: the index moves only 16-byte cells when it grows, and stays cache-sized.
    txns: Index<u32>,
    slots: Vec<Txn>,
    free: Vec<u32>,
    pbx_requests: Index<u64>,
    max_dialogs: usize,
    max_txns: usize,
    dialog_idle: u64,
    pub refused: u64,
}

impl Tables {
    pub fn new(max_dialogs: usize, max_txns: usize, dialog_idle: u64) -> Self {
        Tables {
            hasher: RandomState::new(),
            dialogs: Index::new(),
            txns: Index::new(),
            slots: Vec::new(),
            free: Vec::new(),
            pbx_requests: Index::new(),
            max_dialogs,
            max_txns,
            dialog_idle,
            refused: 0,
        }
    }

    pub fn dialogs_len(&self) -> usize {
        self.dialogs.len()
    }
    pub fn txns_len(&self) -> usize {
        self.txns.len() + self.pbx_requests.len()
    }

    fn call_key(&self, call_id: &[u8]) -> u64 {
        self.hasher.hash_one(call_id)
    }

    /// Transaction key: Call-ID, CSeq number and CSeq method (what a response repeats).
    pub fn txn_key(&self, m: &Message) -> u64 {
        let mut h = self.hasher.build_hasher();
        m.call_id.hash(&mut h);
        m.cseq.seq.hash(&mut h);
        m.cseq.method.as_bytes().hash(&mut h);
        h.finish()
    }

    pub fn dialog_known(&self, call_id: &[u8]) -> bool {
        self.dialogs.contains_key(self.call_key(call_id))
    }

    pub fn note_dialog(&mut self, call_id: &[u8], now: u64) {
        let k = self.call_key(call_id);
        if self.dialogs.len() >= self.max_dialogs && !self.dialogs.contains_key(k) {
            self.refused += 1;
            return;
        }
        self.dialogs.insert(k, now);
    }

    pub fn note_txn(&mut self, m: &Message, t: TxnFrom, now: u64) {
        let k = self.txn_key(m);
        let i = match self.txns.get(k) {
            Some(i) => i,
            None if self.txns.len() >= self.max_txns => {
                self.refused += 1;
                return;
            }
            None => {
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        self.slots.push(Txn {
                            key: 0,
                            ip: IpAddr::from([0, 0, 0, 0]),
                            had_auth: false,
                            user: Inline::new(b""),
                            line: Inline::new(b""),
                            expires: 0,
                        });
                        (self.slots.len() - 1) as u32
                    }
                };
                self.txns.insert(k, i);
                i
            }
        };
        let slot = &mut self.slots[i as usize];
        slot.key = t.key;
        slot.ip = t.ip;
        slot.had_auth = t.had_auth;
        slot.user.set(t.user);
        slot.line.set(t.line);
        slot.expires = now + TXN_LIFETIME_NS;
    }

    /// Touches the dialog and transaction entries judging `m` will read or write.
    pub fn warm(&self, m: &Message) {
        if m.to.tag.is_some() || m.method().is_some_and(|x| x.creates_dialog()) {
            self.dialogs.prefetch(self.call_key(m.call_id));
        }
        if m.method() == Some(crate::sip::Method::Register) || m.authorization.is_some() {
            self.txns.prefetch(self.txn_key(m));
        }
    }

    /// The transaction with key `k` (see [`Tables::txn_key`]), if remembered.
    pub fn txn(&self, k: u64) -> Option<&Txn> {
        self.txns.get(k).map(|i| &self.slots[i as usize])
    }

    pub fn forget_txn(&mut self, k: u64) {
        if let Some(i) = self.txns.remove(k) {
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
        self.pbx_requests.insert(k, now + life);
    }

    /// Does this response answer a request the PBX sent?
    pub fn pbx_sent(&self, m: &Message) -> bool {
        !self.pbx_requests.is_empty() && self.pbx_requests.contains_key(self.txn_key(m))
    }

    pub fn expire(&mut self, now: u64) {
        let idle = self.dialog_idle;
        self.dialogs
            .retain(|_, seen| now.saturating_sub(*seen) <= idle);
        let (slots, free) = (&self.slots, &mut self.free);
        self.txns.retain(|_, &mut i| {
            let live = slots[i as usize].expires > now;
            if !live {
                free.push(i);
            }
            live
        });
        self.pbx_requests.retain(|_, e| *e > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn transaction_slots_are_reused_and_bounded() {
        let mut t = Tables::new(10, 3, 1);
        let texts: Vec<String> = (0..5).map(|i| msg(&format!("c{i}"))).collect();
        let m: Vec<Message> = texts
            .iter()
            .map(|s| crate::sip::parse(s.as_bytes(), crate::sip::Framing::Datagram).unwrap())
            .collect();
        for (i, m) in m.iter().enumerate().take(3) {
            t.note_txn(m, txn(&format!("u{i}")), 0);
        }
        // Full: a fourth is refused; the same key again replaces in place.
        t.note_txn(&m[3], txn("u3"), 0);
        assert_eq!((t.txns.len(), t.refused), (3, 1));
        t.note_txn(&m[0], txn("again"), 0);
        assert_eq!(t.txn(t.txn_key(&m[0])).unwrap().user.as_bytes(), b"again");
        // A shorter value over a longer one reads as itself.
        t.note_txn(&m[0], txn("a"), 0);
        assert_eq!(t.txn(t.txn_key(&m[0])).unwrap().user.as_bytes(), b"a");
        // A forgotten transaction's slot serves the next one.
        t.forget_txn(t.txn_key(&m[1]));
        t.note_txn(&m[4], txn("u4"), 0);
        assert_eq!(t.slots.len(), 3);
        assert_eq!(t.txn(t.txn_key(&m[4])).unwrap().user.as_bytes(), b"u4");
        assert!(t.txn(t.txn_key(&m[1])).is_none());
        // Expiry frees every slot; the slab does not grow past the cap.
        t.expire(TXN_LIFETIME_NS + 1);
        assert_eq!((t.txns.len(), t.free.len()), (0, 3));
        for m in &m[..3] {
            t.note_txn(m, txn("later"), TXN_LIFETIME_NS + 2);
        }
        assert_eq!((t.slots.len(), t.free.len()), (3, 0));
    }
}
