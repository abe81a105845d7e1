//! Authentication failures read on the wire, and the escalating bans they lead to.
//! Bans live in [`Shared`] (one for all workers); failure histories are per worker, since a
//! source and the PBX's answers to it always reach the same worker.

use super::lists::{Entry, Lists};
use super::{source_key, SourceKey};
use crate::config::{BanTier, Expiry, Policy};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Distinct user names remembered per source.
const MAX_USERS: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ban {
    /// The source as tracked: an IPv4 address or an IPv6 prefix.
    pub source: String,
    pub since_ns: u64,
    /// None: until a person releases it.
    pub until_ns: Option<u64>,
    /// "tier-1", "tier-2", ..., "enumeration", "scanning", "manual".
    pub tier: String,
    /// Why, in words: "auth failures", "user enumeration", "dropped requests", or the
    /// operator's reason.
    #[serde(default)]
    pub reason: String,
    pub evidence: Evidence,
}

/// Has this ban run out by `now`? (A ban until release never does.)
fn expired(b: &Ban, now: u64) -> bool {
    matches!(b.until_ns, Some(u) if u <= now)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Evidence {
    /// The failures that earned the ban; for a `scanning` ban, the requests dropped (and the
    /// `*_failure_ns` times are those of the first and the last of them).
    pub failures: u32,
    pub users: Vec<String>,
    pub first_request: String,
    pub last_request: String,
    pub first_failure_ns: u64,
    pub last_failure_ns: u64,
}

/// What [`Shared::escalate`] did with an earned ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The source was not banned: now it is.
    New,
    /// A shorter ban of a lower tier was in force: this one replaced it.
    Raised,
    /// The same tier again, later: its expiry moved on.
    Extended,
    /// A ban at least as long was in force: nothing changed.
    Kept,
}

/// State every worker shares: bans, runtime allow/deny entries, failure histories, and the
/// seed of the workers' dialog keys. `version` moves on every change of the first three, so
/// the daemon knows when to save state and update kernel sets.
#[derive(Default)]
pub struct Shared {
    /// Keys the hashes of Call-IDs in every worker's tables ([`Shared::table_seed`]).
    table_seed: std::sync::OnceLock<[u64; 4]>,
    /// aHash, keyed at random like std's SipHash (flood-resistant) but cheaper: this is read
    /// for every packet while any ban stands.
    bans: DashMap<SourceKey, Ban, ahash::RandomState>,
    count: AtomicUsize,
    lists: ArcSwap<Lists>,
    /// Failures are rare (one per PBX rejection), so one lock is cheap and lets every worker
    /// and the state file see one history per source.
    failures: Mutex<Failures>,
    version: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("bans", &self.len())
            .field("entries", &self.lists().entries().len())
            .finish()
    }
}

/// The runtime lists as one worker reads them for every packet: while they are unchanged a
/// read is one pointer comparison (a plain `load` took about 110 instructions a packet,
/// through arc-swap's per-thread debt slots).
pub struct ListsCache(arc_swap::Cache<ListsOf, Arc<Lists>>);

impl ListsCache {
    /// The lists in force now.
    #[inline]
    pub fn get(&mut self) -> &Lists {
        self.0.load()
    }
}

/// [`Shared`]'s lists, as [`arc_swap::Cache`] wants them: something that derefs to the swap.
struct ListsOf(Arc<Shared>);

impl std::ops::Deref for ListsOf {
    type Target = ArcSwap<Lists>;
    fn deref(&self) -> &ArcSwap<Lists> {
        &self.0.lists
    }
}

/// Everything [`Shared`] holds, as saved in the state directory.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub bans: Vec<Ban>,
    pub entries: Vec<Entry>,
    pub failures: Vec<FailureHistory>,
}

impl Shared {
    pub fn new() -> Self {
        Self::default()
    }

    /// The seed every engine made with this `Shared` keys its dialog and transaction tables
    /// with: the one [`Shared::set_table_seed`] gave, or one drawn at random when first asked.
    pub fn table_seed(&self) -> [u64; 4] {
        *self.table_seed.get_or_init(|| {
            // aHash's own random keys (from the OS), read out as four words.
            let r = ahash::RandomState::new();
            [0u64, 1, 2, 3].map(|k| r.hash_one(k))
        })
    }

    /// Fixes the seed, as saved with the dialogs of an earlier run, so that their keys mean
    /// the same again. False (nothing changed) once an engine has asked for it.
    pub fn set_table_seed(&self, seed: [u64; 4]) -> bool {
        self.table_seed.set(seed).is_ok()
    }

    /// A number that changes whenever bans, entries or failures change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// As [`Shared::is_banned`], changing nothing (an expired ban stays for `is_banned`).
    #[inline]
    pub fn ban_holds(&self, key: SourceKey, now: u64) -> bool {
        self.count.load(Ordering::Relaxed) != 0
            && self.bans.get(&key).is_some_and(|b| !expired(&b, now))
    }

    /// True when `key` is banned at `now` (an expired ban is removed).
    #[inline]
    pub fn is_banned(&self, key: SourceKey, now: u64) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let expired = match self.bans.get(&key) {
            None => return false,
            Some(b) => expired(&b, now),
        };
        if expired {
            self.remove_ban(key);
            return false;
        }
        true
    }

    /// Applies an earned ban unless one as long is in force.
    pub fn escalate(&self, key: SourceKey, ban: Ban) -> Applied {
        use dashmap::mapref::entry::Entry as E;
        let applied = match self.bans.entry(key) {
            E::Vacant(v) => {
                v.insert(ban);
                self.count.fetch_add(1, Ordering::Relaxed);
                Applied::New
            }
            E::Occupied(mut o) => {
                let longer = match (o.get().until_ns, ban.until_ns) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => b > a,
                };
                if !longer {
                    return Applied::Kept;
                }
                let raised = o.get().tier != ban.tier;
                o.insert(ban);
                if raised {
                    Applied::Raised
                } else {
                    Applied::Extended
                }
            }
        };
        self.changed();
        applied
    }

    /// Sets a ban as given (an operator's), replacing any in force.
    pub fn ban(&self, key: SourceKey, ban: Ban) {
        if self.bans.insert(key, ban).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        self.changed();
    }

    /// An operator's release: the ban goes, and so does the failure history that led to it
    /// (else the next failure would ban again at once).
    pub fn unban(&self, key: SourceKey) -> Option<Ban> {
        let b = self.remove_ban(key);
        self.failures.lock().expect("failures lock").forget(key);
        self.changed();
        b
    }

    fn remove_ban(&self, key: SourceKey) -> Option<Ban> {
        let b = self.bans.remove(&key).map(|(_, b)| b);
        if b.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.changed();
        }
        b
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn list(&self) -> Vec<Ban> {
        let mut v: Vec<Ban> = self.bans.iter().map(|b| b.value().clone()).collect();
        v.sort_by_key(|b| b.since_ns);
        v
    }

    /// Drops expired bans and entries. Called once a second by each engine.
    pub fn expire(&self, now: u64) {
        let before = self.bans.len();
        self.bans.retain(|_, b| !expired(b, now));
        let removed = before.saturating_sub(self.bans.len());
        if removed > 0 {
            self.count.fetch_sub(removed, Ordering::Relaxed);
            self.changed();
        }
        let lists = self.lists.load();
        if lists.stale(now) {
            let live = lists.live(now);
            self.set_entries(live);
        }
    }

    /// Allowed by the config or by a runtime entry: never banned.
    pub fn is_allowed(&self, policy: &Policy, ip: IpAddr) -> bool {
        policy.is_allowed(ip) || self.lists().is_allowed(ip)
    }

    /// The runtime allow/deny entries in force.
    #[inline]
    pub fn lists(&self) -> arc_swap::Guard<Arc<Lists>> {
        self.lists.load()
    }

    /// A worker's own view of [`Shared::lists`], for reading them on every packet.
    pub fn lists_cache(self: &Arc<Self>) -> ListsCache {
        ListsCache(arc_swap::Cache::new(ListsOf(self.clone())))
    }

    /// Replaces the runtime entries (the `Lists` helpers build the new set).
    pub fn set_entries(&self, entries: Vec<Entry>) {
        self.lists.store(Arc::new(Lists::new(entries)));
        self.changed();
    }

    /// Records a failure; returns the ban it earns, if any.
    pub fn record_failure(&self, f: Failure, policy: &Policy) -> Option<Ban> {
        let ban = self
            .failures
            .lock()
            .expect("failures lock")
            .record(f, policy);
        self.changed();
        ban
    }

    /// Sources with a failure history.
    pub fn failing_sources(&self) -> usize {
        self.failures.lock().expect("failures lock").by_source.len()
    }

    pub fn expire_failures(&self, now: u64, policy: &Policy) {
        self.failures
            .lock()
            .expect("failures lock")
            .expire(now, keep_ns(policy));
    }

    /// A copy of everything, for the state file.
    pub fn snapshot(&self) -> Snapshot {
        let failures = self.failures.lock().expect("failures lock");
        Snapshot {
            bans: self.list(),
            entries: self.lists().entries().to_vec(),
            failures: failures
                .by_source
                .values()
                .map(|h| FailureHistory {
                    source: h.source.clone(),
                    times: h.times.iter().copied().collect(),
                    evidence: h.evidence.clone(),
                })
                .collect(),
        }
    }

    /// Takes back a saved snapshot; what has expired by `now` is left out. Entries whose source
    /// no longer reads as an address are skipped and counted.
    pub fn restore(&self, s: Snapshot, now: u64) -> usize {
        let mut skipped = 0;
        for b in s.bans {
            if expired(&b, now) {
                continue;
            }
            match key_of_label(&b.source) {
                Some(k) => self.ban(k, b),
                None => skipped += 1,
            }
        }
        self.set_entries(
            s.entries
                .into_iter()
                .filter(|e| e.until_ns.is_none_or(|u| u > now))
                .collect(),
        );
        let mut f = self.failures.lock().expect("failures lock");
        for h in s.failures {
            match key_of_label(&h.source) {
                Some(k) => {
                    f.by_source.insert(
                        k,
                        History {
                            source: h.source,
                            times: h.times.into(),
                            evidence: h.evidence,
                        },
                    );
                }
                None => skipped += 1,
            }
        }
        drop(f);
        self.changed();
        skipped
    }
}

/// The key of a source label as [`super::source_label`] writes it: an address or an IPv6
/// prefix.
pub fn key_of_label(label: &str) -> Option<SourceKey> {
    if let Ok(ip) = label.parse::<IpAddr>() {
        return Some(source_key(ip, 128));
    }
    let net: ipnet::IpNet = label.parse().ok()?;
    Some(source_key(net.addr(), net.prefix_len()))
}

/// One source's failures, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureHistory {
    pub source: String,
    pub times: Vec<u64>,
    pub evidence: Evidence,
}

fn keep_ns(policy: &Policy) -> u64 {
    policy
        .tiers
        .iter()
        .map(|t| t.within.as_nanos())
        .max()
        .unwrap_or(0)
}

/// One failure as seen on the wire.
pub struct Failure<'a> {
    pub key: SourceKey,
    pub source: &'a str,
    pub user: &'a [u8],
    pub request_line: &'a [u8],
    pub now: u64,
}

#[derive(Default)]
struct History {
    source: String,
    times: VecDeque<u64>,
    evidence: Evidence,
}

/// Failure histories per source, bounded in count (`limits.max_sources`) and age (the longest
/// tier window).
#[derive(Default)]
struct Failures {
    by_source: ahash::AHashMap<SourceKey, History>,
}

impl Failures {
    fn forget(&mut self, key: SourceKey) {
        self.by_source.remove(&key);
    }

    /// Records a failure; returns the ban it earns, if any.
    fn record(&mut self, f: Failure, policy: &Policy) -> Option<Ban> {
        let max_sources = policy.config.limits.max_sources;
        if !self.by_source.contains_key(&f.key) && self.by_source.len() >= max_sources {
            self.expire(f.now, keep_ns(policy));
            if self.by_source.len() >= max_sources {
                return None;
            }
        }
        let keep_count = policy
            .tiers
            .iter()
            .map(|t| t.failures as usize)
            .max()
            .unwrap_or(1);
        let h = self.by_source.entry(f.key).or_default();
        if h.source.is_empty() {
            h.source = f.source.to_string();
        }
        h.times.push_back(f.now);
        while h.times.len() > keep_count {
            h.times.pop_front();
        }
        let e = &mut h.evidence;
        let line =
            String::from_utf8_lossy(&f.request_line[..f.request_line.len().min(200)]).into_owned();
        if e.first_request.is_empty() {
            e.first_request = line.clone();
        }
        if e.failures == 0 {
            e.first_failure_ns = f.now;
        }
        e.failures += 1;
        if !line.is_empty() {
            e.last_request = line;
        }
        e.last_failure_ns = f.now;
        if !f.user.is_empty() && e.users.len() < MAX_USERS {
            let u = String::from_utf8_lossy(&f.user[..f.user.len().min(64)]).into_owned();
            if !e.users.contains(&u) {
                e.users.push(u);
            }
        }
        // The strongest tier reached wins.
        let reached = |t: &BanTier| {
            let since = f.now.saturating_sub(t.within.as_nanos());
            h.times.iter().filter(|&&t| t >= since).count() >= t.failures as usize
        };
        let mut best: Option<(String, Expiry)> = None;
        for (i, t) in policy.tiers.iter().enumerate() {
            if reached(t) {
                best = Some((format!("tier-{}", i + 1), t.ban));
            }
        }
        let b = &policy.config.bans;
        if best.is_none()
            && b.enumeration_users > 0
            && h.evidence.users.len() >= b.enumeration_users as usize
        {
            best = Some(("enumeration".into(), b.enumeration_ban));
        }
        best.map(|(tier, expiry)| Ban {
            source: f.source.to_string(),
            since_ns: f.now,
            until_ns: expiry.until(f.now),
            reason: if tier == "enumeration" {
                "user enumeration".into()
            } else {
                "auth failures".into()
            },
            tier,
            evidence: h.evidence.clone(),
        })
    }

    fn expire(&mut self, now: u64, keep: u64) {
        self.by_source.retain(|_, h| {
            h.times
                .back()
                .is_some_and(|&t| now.saturating_sub(t) <= keep)
        });
    }
}
