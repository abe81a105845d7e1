//! Authentication failures read on the wire, and the escalating bans they lead to.
//! Bans live in [`Shared`] (one for all workers); failure histories are per worker, since a
//! source and the PBX's answers to it always reach the same worker.

use super::SourceKey;
use crate::config::{BanTier, Expiry, Policy};
use dashmap::DashMap;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Distinct user names remembered per source.
const MAX_USERS: usize = 32;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ban {
    /// The source as tracked: an IPv4 address or an IPv6 prefix.
    pub source: String,
    pub since_ns: u64,
    /// None: until a person releases it.
    pub until_ns: Option<u64>,
    /// "tier-1", "tier-2", ..., "enumeration".
    pub tier: String,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Evidence {
    pub failures: u32,
    pub users: Vec<String>,
    pub first_request: String,
    pub last_request: String,
    pub first_failure_ns: u64,
    pub last_failure_ns: u64,
}

/// State every worker shares: the bans.
#[derive(Debug, Default)]
pub struct Shared {
    bans: DashMap<SourceKey, Ban>,
    count: AtomicUsize,
}

impl Shared {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when `key` is banned at `now` (an expired ban is removed).
    #[inline]
    pub fn is_banned(&self, key: SourceKey, now: u64) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let expired = match self.bans.get(&key) {
            None => return false,
            Some(b) => matches!(b.until_ns, Some(u) if u <= now),
        };
        if expired {
            self.unban(key);
            return false;
        }
        true
    }

    /// Applies an earned ban unless a longer one is in force. True when the source was not
    /// banned before.
    pub fn escalate(&self, key: SourceKey, ban: Ban) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.bans.entry(key) {
            Entry::Vacant(v) => {
                v.insert(ban);
                self.count.fetch_add(1, Ordering::Relaxed);
                true
            }
            Entry::Occupied(mut o) => {
                let longer = match (o.get().until_ns, ban.until_ns) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => b > a,
                };
                if longer {
                    o.insert(ban);
                }
                false
            }
        }
    }

    pub fn unban(&self, key: SourceKey) -> Option<Ban> {
        let b = self.bans.remove(&key).map(|(_, b)| b);
        if b.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
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

    pub fn expire(&self, now: u64) {
        let before = self.bans.len();
        self.bans
            .retain(|_, b| !matches!(b.until_ns, Some(u) if u <= now));
        let removed = before.saturating_sub(self.bans.len());
        self.count.fetch_sub(removed, Ordering::Relaxed);
    }
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
    times: VecDeque<u64>,
    evidence: Evidence,
}

/// Failure histories per source, bounded in count and age.
pub struct Failures {
    by_source: ahash::AHashMap<SourceKey, History>,
    max_sources: usize,
    keep_ns: u64,
    keep_count: usize,
}

#[allow(clippy::len_without_is_empty)]
impl Failures {
    pub fn new(policy: &Policy) -> Self {
        Failures {
            by_source: Default::default(),
            max_sources: policy.config.limits.max_sources,
            keep_ns: policy
                .tiers
                .iter()
                .map(|t| t.within.as_nanos())
                .max()
                .unwrap_or(0),
            keep_count: policy
                .tiers
                .iter()
                .map(|t| t.failures as usize)
                .max()
                .unwrap_or(1),
        }
    }

    pub fn len(&self) -> usize {
        self.by_source.len()
    }

    /// Records a failure; returns the ban it earns, if any.
    pub fn record(&mut self, f: Failure, policy: &Policy) -> Option<Ban> {
        if !self.by_source.contains_key(&f.key) && self.by_source.len() >= self.max_sources {
            self.expire(f.now);
            if self.by_source.len() >= self.max_sources {
                return None;
            }
        }
        let h = self.by_source.entry(f.key).or_default();
        h.times.push_back(f.now);
        while h.times.len() > self.keep_count {
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
            until_ns: match expiry {
                Expiry::Permanent => None,
                Expiry::For(d) => Some(f.now.saturating_add(d.as_nanos())),
            },
            tier,
            evidence: h.evidence.clone(),
        })
    }

    pub fn expire(&mut self, now: u64) {
        let keep = self.keep_ns;
        self.by_source.retain(|_, h| {
            h.times
                .back()
                .is_some_and(|&t| now.saturating_sub(t) <= keep)
        });
    }
}
