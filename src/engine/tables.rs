//! What the engine remembers between packets: dialogs (by Call-ID), transactions of requests
//! that may fail authentication, and requests the PBX sent (so responses to them are known).
//! Keys are 64-bit hashes, so no per-message allocation; every table is bounded and expires.

use crate::sip::Message;
use ahash::{AHashMap, RandomState};
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
    dialogs: AHashMap<u64, u64>,
    txns: AHashMap<u64, Txn>,
    pbx_requests: AHashMap<u64, u64>,
    max_dialogs: usize,
    max_txns: usize,
    dialog_idle: u64,
    pub refused: u64,
}

impl Tables {
    pub fn new(max_dialogs: usize, max_txns: usize, dialog_idle: u64) -> Self {
        Tables {
            hasher: RandomState::new(),
            dialogs: AHashMap::new(),
            txns: AHashMap::new(),
            pbx_requests: AHashMap::new(),
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
        self.dialogs.contains_key(&self.call_key(call_id))
    }

    pub fn note_dialog(&mut self, call_id: &[u8], now: u64) {
        let k = self.call_key(call_id);
        if self.dialogs.len() >= self.max_dialogs && !self.dialogs.contains_key(&k) {
            self.refused += 1;
            return;
        }
        self.dialogs.insert(k, now);
    }

    pub fn note_txn(&mut self, m: &Message, mut t: Txn, now: u64) {
        let k = self.txn_key(m);
        if self.txns.len() >= self.max_txns && !self.txns.contains_key(&k) {
            self.refused += 1;
            return;
        }
        t.expires = now + TXN_LIFETIME_NS;
        self.txns.insert(k, t);
    }

    /// The transaction with key `k` (see [`Tables::txn_key`]), if remembered.
    pub fn txn(&self, k: u64) -> Option<&Txn> {
        self.txns.get(&k)
    }

    pub fn forget_txn(&mut self, k: u64) {
        self.txns.remove(&k);
    }

    pub fn note_pbx_request(&mut self, m: &Message, now: u64) {
        let k = self.txn_key(m);
        if self.pbx_requests.len() >= self.max_txns && !self.pbx_requests.contains_key(&k) {
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
        !self.pbx_requests.is_empty() && self.pbx_requests.contains_key(&self.txn_key(m))
    }

    pub fn expire(&mut self, now: u64) {
        let idle = self.dialog_idle;
        self.dialogs
            .retain(|_, seen| now.saturating_sub(*seen) <= idle);
        self.txns.retain(|_, t| t.expires > now);
        self.pbx_requests.retain(|_, e| *e > now);
    }
}
