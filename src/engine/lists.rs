//! Allow and deny entries added while running: by an operator (`sipwall ctl allow|deny`) or
//! from blocklist feeds. Each has a provenance and an optional expiry. They live in an
//! `ArcSwap`; changes build a new snapshot, and each worker reads it through its own cache
//! (one pointer comparison a packet while it is unchanged).

use crate::config::CidrSet;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListKind {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub net: IpNet,
    pub kind: ListKind,
    pub since_ns: u64,
    /// None: until removed.
    pub until_ns: Option<u64>,
    /// Who added it: "ctl", "ctl: REASON", "feed:PATH".
    pub provenance: String,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.until_ns.is_none_or(|u| u > now)
    }
}

/// One immutable snapshot of the entries, with a prefix trie per kind.
#[derive(Debug, Default)]
pub struct Lists {
    entries: Vec<Entry>,
    allow: CidrSet,
    deny: CidrSet,
    next_expiry: Option<u64>,
}

impl Lists {
    pub fn new(mut entries: Vec<Entry>) -> Lists {
        entries.sort_by_key(|e| (e.kind as u8, e.net));
        let pick = |k| entries.iter().filter(move |e| e.kind == k).map(|e| &e.net);
        Lists {
            allow: CidrSet::new(pick(ListKind::Allow)),
            deny: CidrSet::new(pick(ListKind::Deny)),
            next_expiry: entries.iter().filter_map(|e| e.until_ns).min(),
            entries,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    #[inline]
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip)
    }

    #[inline]
    pub fn is_denied(&self, ip: IpAddr) -> bool {
        self.deny.contains(ip)
    }

    /// True when some entry has expired at `now` (the snapshot should be rebuilt).
    pub fn stale(&self, now: u64) -> bool {
        self.next_expiry.is_some_and(|t| t <= now)
    }

    /// The entries still live at `now`.
    pub fn live(&self, now: u64) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.live(now))
            .cloned()
            .collect()
    }

    /// `entries` with `add` in place of an entry for the same network and kind.
    pub fn with(&self, add: Entry, now: u64) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.live(now) && !(e.net == add.net && e.kind == add.kind))
            .cloned()
            .collect();
        v.push(add);
        v
    }

    /// `entries` without those for `net` (any kind); None when there were none.
    pub fn without(&self, net: IpNet) -> Option<Vec<Entry>> {
        let v: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.net != net)
            .cloned()
            .collect();
        (v.len() != self.entries.len()).then_some(v)
    }

    /// `entries` with all of `provenance` replaced by `nets` (a feed reloaded).
    pub fn with_feed(
        &self,
        provenance: &str,
        nets: &[IpNet],
        kind: ListKind,
        since_ns: u64,
        until_ns: Option<u64>,
    ) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.provenance != provenance)
            .cloned()
            .collect();
        v.extend(nets.iter().map(|&net| Entry {
            net,
            kind,
            since_ns,
            until_ns,
            provenance: provenance.to_string(),
        }));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(net: &str, kind: ListKind, until: Option<u64>, p: &str) -> Entry {
        Entry {
            net: net.parse().unwrap(),
            kind,
            since_ns: 0,
            until_ns: until,
            provenance: p.into(),
        }
    }

    #[test]
    fn lookups_expiry_and_feeds() {
        let l = Lists::new(vec![
            e("203.0.113.0/24", ListKind::Deny, Some(100), "ctl"),
            e("2001:db8::/48", ListKind::Allow, None, "ctl"),
        ]);
        assert!(l.is_denied("203.0.113.9".parse().unwrap()));
        assert!(!l.is_allowed("203.0.113.9".parse().unwrap()));
        assert!(l.is_allowed("2001:db8::5".parse().unwrap()));
        assert!(!l.stale(99));
        assert!(l.stale(100));
        let l = Lists::new(l.live(100));
        assert!(!l.is_denied("203.0.113.9".parse().unwrap()));
        assert_eq!(l.entries().len(), 1);

        let feed: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        let l = Lists::new(l.with_feed("feed:a", &feed, ListKind::Deny, 0, None));
        assert!(l.is_denied("192.0.2.1".parse().unwrap()));
        // Reloading the feed with other contents replaces it.
        let feed: Vec<IpNet> = vec!["198.51.100.0/24".parse().unwrap()];
        let l = Lists::new(l.with_feed("feed:a", &feed, ListKind::Deny, 0, None));
        assert!(!l.is_denied("192.0.2.1".parse().unwrap()));
        assert!(l.is_denied("198.51.100.1".parse().unwrap()));
        assert_eq!(l.entries().len(), 2);

        let l = Lists::new(l.without("198.51.100.0/24".parse().unwrap()).unwrap());
        assert!(!l.is_denied("198.51.100.1".parse().unwrap()));
        assert!(l.without("198.51.100.0/24".parse().unwrap()).is_none());
    }
}
