//! Per-source token buckets (governor GCRA), created only for requests that passed every
//! other check, expired when idle, and capped: past `max_sources`, new sources share one
//! overflow bucket, so a spoofed-source flood can neither grow memory nor evict known phones.
//!
//! A source's state is its buckets' theoretical arrival times (TATs), 48 bytes in one map
//! entry. governor does the arithmetic: one keyed limiter per quota is handed the source's
//! TAT cell itself as its "key" ([`InKey`] reads and writes it there). Four direct limiters a
//! source cost 136 bytes over three cache lines, and an atomic compare-and-swap a check that
//! a worker's own state never needs.

use super::clock::PassedClock;
use super::index::{self, Index};
use super::SourceKey;
use crate::config::{Bucket, RateSection};
use crate::sip::Method;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use std::cell::Cell;
use std::num::NonZeroU32;

type Limiter = RateLimiter<NotKeyed, InMemoryState, PassedClock, NoOpMiddleware<Nanos>>;
/// One quota, for every source: the state is in the key.
type Shared = RateLimiter<Tat, InKey, PassedClock, NoOpMiddleware<Nanos>>;

fn quota(b: Bucket, mult: u32) -> Quota {
    let per_second = b.per_second * f64::from(mult);
    let period = std::time::Duration::from_secs_f64(1.0 / per_second)
        .max(std::time::Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("period is above zero")
        .allow_burst(NonZeroU32::new(b.burst.saturating_mul(mult).max(1)).expect("above zero"))
}

/// One bucket's TAT, in nanoseconds from the limiters' start; 0 until first charged (a TAT is
/// always at least one emission interval). Equality and hashing are by value: governor's
/// keyed limiter asks for them, and never uses them with [`InKey`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tat(Cell<u64>);

impl std::hash::Hash for Tat {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.get().hash(h);
    }
}

/// A governor state store that keeps nothing: the TAT is the key it is handed.
#[derive(Debug, Default)]
struct InKey;

impl StateStore for InKey {
    type Key = Tat;

    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &Tat, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let tat = key.0.get();
        let (out, next) = f((tat != 0).then(|| Nanos::from(tat)))?;
        key.0.set(next.as_u64());
        Ok(out)
    }
}

/// The bucket a request is charged to besides the general one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Register = 0,
    Invite = 1,
    Other = 2,
}

impl Class {
    pub fn of(m: &Method) -> Class {
        match m {
            Method::Register => Class::Register,
            Method::Invite => Class::Invite,
            _ => Class::Other,
        }
    }
}

/// The four buckets of a quota set: by class (REGISTER, INVITE, other), then general.
struct Quotas([Shared; 4]);

impl Quotas {
    fn new(r: &RateSection, mult: u32) -> Self {
        let l = |b: Bucket| Shared::new(quota(b, mult), InKey, PassedClock);
        Quotas([l(r.register), l(r.invite), l(r.other), l(r.general)])
    }
}

const GENERAL: usize = 3;

struct SourceState {
    last_seen: u64,
    /// TATs by class, then general.
    tats: [Tat; 4],
    /// Charged at the allowed sources' quotas (as the source was when its state was made).
    allowed: bool,
}

impl SourceState {
    fn new(allowed: bool, now: u64) -> Self {
        SourceState {
            last_seen: now,
            tats: Default::default(),
            allowed,
        }
    }
}

pub struct RateLimits {
    /// A source key's hash → its state's slot in `states`. The index cell can be prefetched
    /// before a batch is decided, and the state once the cell is in (hashbrown's lookup was
    /// two dependent misses a packet, neither prefetchable). Two sources whose keys hash
    /// alike (1 in 2^64, the hasher's keys random) would share buckets.
    sources: Index<u32>,
    states: Vec<SourceState>,
    free: Vec<u32>,
    hasher: ahash::RandomState,
    normal: Quotas,
    allowed: Quotas,
    overflow: Limiter,
    keepalive_unknown: Limiter,
    max_sources: usize,
    idle_ns: u64,
    /// Sources that had to use the overflow bucket.
    pub overflowed: u64,
}

#[allow(clippy::len_without_is_empty)]
impl RateLimits {
    pub fn new(r: &RateSection, max_sources: usize) -> Self {
        // Every limiter counts from time 0: the sources' TATs are kept relative to one start.
        PassedClock::at_zero(|| RateLimits {
            sources: Index::new(),
            states: Vec::new(),
            free: Vec::new(),
            hasher: ahash::RandomState::new(),
            normal: Quotas::new(r, 1),
            allowed: Quotas::new(r, r.allowed_multiplier),
            overflow: Limiter::direct_with_clock(quota(r.overflow, 1), PassedClock),
            keepalive_unknown: Limiter::direct_with_clock(
                quota(r.keepalive_unknown, 1),
                PassedClock,
            ),
            max_sources,
            idle_ns: r.source_idle.as_nanos(),
            overflowed: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Charges one request; false when the source is over its limit.
    pub fn check(&mut self, key: SourceKey, allowed: bool, class: Option<Class>, now: u64) -> bool {
        let h = self.hasher.hash_one(key);
        if let Some(i) = self.sources.get(h) {
            let s = &mut self.states[i as usize];
            return charge(&self.normal, &self.allowed, s, class, now);
        }
        if self.sources.len() >= self.max_sources {
            self.overflowed += 1;
            return self.overflow.check().is_ok();
        }
        let mut s = SourceState::new(allowed, now);
        let ok = charge(&self.normal, &self.allowed, &mut s, class, now);
        let i = match self.free.pop() {
            Some(i) => {
                self.states[i as usize] = s;
                i
            }
            None => {
                self.states.push(s);
                (self.states.len() - 1) as u32
            }
        };
        self.sources.insert(h, i);
        ok
    }

    /// Brings the source's index cell toward the cache: the first of two stages (see
    /// [`super::Engine::warm`]); changes nothing.
    #[inline]
    pub fn warm(&self, key: SourceKey) {
        self.sources.prefetch(self.hasher.hash_one(key));
    }

    /// The second stage, once the cell is in: brings the source's state toward the cache.
    #[inline]
    pub fn warm_state(&self, key: SourceKey) {
        if let Some(i) = self.sources.get(self.hasher.hash_one(key)) {
            // A 48-byte state may straddle two lines.
            let s = &self.states[i as usize];
            index::prefetch(s);
            index::prefetch(&s.allowed);
        }
    }

    /// Whether `key` sent a request that passed every check within `rate.source_idle` (its
    /// buckets are kept that long).
    pub fn knows(&self, key: SourceKey, now: u64) -> bool {
        self.sources
            .get(self.hasher.hash_one(key))
            .is_some_and(|i| now.saturating_sub(self.states[i as usize].last_seen) <= self.idle_ns)
    }

    /// A keepalive: charged to the source's general bucket if it has state, else to a shared one.
    pub fn check_keepalive(&mut self, key: SourceKey, now: u64) -> bool {
        match self.sources.get(self.hasher.hash_one(key)) {
            Some(i) => {
                let s = &mut self.states[i as usize];
                charge(&self.normal, &self.allowed, s, None, now)
            }
            None => self.keepalive_unknown.check().is_ok(),
        }
    }

    #[cfg(test)]
    pub fn expire(&mut self, now: u64) {
        self.expire_part(now, 0, 1);
    }

    /// Expires part `part` of `parts` of the sources (see [`Index::retain_part`]).
    pub fn expire_part(&mut self, now: u64, part: usize, parts: usize) {
        let idle = self.idle_ns;
        let (states, free) = (&self.states, &mut self.free);
        self.sources.retain_part(part, parts, |_, &mut i| {
            let live = now.saturating_sub(states[i as usize].last_seen) <= idle;
            if !live {
                free.push(i);
            }
            live
        });
    }
}

/// Charges a request to a source's class bucket (if any), then its general one.
#[inline]
fn charge(
    normal: &Quotas,
    allowed: &Quotas,
    s: &mut SourceState,
    class: Option<Class>,
    now: u64,
) -> bool {
    s.last_seen = now;
    let q = if s.allowed { allowed } else { normal };
    // The class bucket first: a request refused by it must not also drain the general one.
    if let Some(c) = class {
        if q.0[c as usize].check_key(&s.tats[c as usize]).is_err() {
            return false;
        }
    }
    q.0[GENERAL].check_key(&s.tats[GENERAL]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ahash::AHashMap;

    fn rs() -> RateSection {
        RateSection {
            general: Bucket {
                per_second: 10.0,
                burst: 5,
            },
            register: Bucket {
                per_second: 1.0,
                burst: 2,
            },
            ..RateSection::default()
        }
    }

    #[test]
    fn burst_then_refill_with_passed_time() {
        let mut r = RateLimits::new(&rs(), 10);
        let k = 1;
        PassedClock::set(1_000_000_000);
        assert!(r.check(k, false, Some(Class::Register), 1));
        assert!(r.check(k, false, Some(Class::Register), 1));
        assert!(
            !r.check(k, false, Some(Class::Register), 1),
            "register burst of 2 spent"
        );
        // The general bucket (burst 5) was charged only twice.
        assert!(r.check(k, false, None, 1));
        assert!(r.check(k, false, None, 1));
        assert!(r.check(k, false, None, 1));
        assert!(!r.check(k, false, None, 1));
        PassedClock::set(2_100_000_000);
        assert!(
            r.check(k, false, Some(Class::Register), 2),
            "refilled after a second"
        );
        // allowed sources get the multiplier
        for _ in 0..40 {
            assert!(r.check(2, true, Some(Class::Register), 2));
        }
    }

    /// The previous design, four direct governor limiters a source made at its first
    /// request, as the reference: the shared limiters with TATs in the entries decide the
    /// same for any sequence of sources, classes and (non-decreasing) times.
    #[test]
    fn tats_in_entries_decide_as_limiters_a_source() {
        struct Old {
            general: Limiter,
            by_class: [Limiter; 3],
        }
        let r = rs();
        let old_quotas = |mult| [r.register, r.invite, r.other, r.general].map(|b| quota(b, mult));
        let (normal, allowed) = (old_quotas(1), old_quotas(r.allowed_multiplier));
        let mut old: AHashMap<SourceKey, Old> = AHashMap::new();
        // A thread clock far ahead when the limits are made must not matter.
        PassedClock::set(u64::MAX / 2);
        let mut new = RateLimits::new(&r, 1000);
        let mut now = 1_700_000_000_000_000_000u64;
        let mut x: u64 = 5;
        let (mut allowed_n, mut refused_n) = (0, 0);
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            now += (x >> 40) % 400_000_000;
            PassedClock::set(now);
            let key = u128::from((x >> 20) % 12);
            let is_allowed = key % 5 == 0;
            let class = match (x >> 10) % 4 {
                0 => Some(Class::Register),
                1 => Some(Class::Invite),
                2 => Some(Class::Other),
                _ => None,
            };
            let o = old.entry(key).or_insert_with(|| {
                let q = if is_allowed { &allowed } else { &normal };
                let l = |q: Quota| Limiter::direct_with_clock(q, PassedClock);
                Old {
                    general: l(q[3]),
                    by_class: [l(q[0]), l(q[1]), l(q[2])],
                }
            });
            let want = match class {
                Some(c) if o.by_class[c as usize].check().is_err() => false,
                _ => o.general.check().is_ok(),
            };
            assert_eq!(new.check(key, is_allowed, class, now), want);
            if want {
                allowed_n += 1
            } else {
                refused_n += 1
            }
        }
        assert!(
            allowed_n > 10_000 && refused_n > 10_000,
            "{allowed_n} {refused_n}"
        );
    }

    #[test]
    fn cap_sends_new_sources_to_overflow_and_idle_expires() {
        let mut r = RateLimits::new(&rs(), 2);
        PassedClock::set(5);
        r.check(1, false, None, 0);
        r.check(2, false, None, 0);
        r.check(3, false, None, 0);
        assert_eq!(r.len(), 2);
        assert_eq!(r.overflowed, 1);
        r.expire(rs().source_idle.as_nanos() + 1);
        assert_eq!(r.len(), 0);
    }
}
