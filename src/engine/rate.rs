//! Per-source token buckets (governor GCRA), created only for requests that passed every
//! other check, expired when idle, and capped: past `max_sources`, new sources share one
//! overflow bucket, so a spoofed-source flood can neither grow memory nor evict known phones.

use super::clock::PassedClock;
use super::SourceKey;
use crate::config::{Bucket, RateSection};
use crate::sip::Method;
use ahash::AHashMap;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;

type Limiter = RateLimiter<NotKeyed, InMemoryState, PassedClock, NoOpMiddleware<Nanos>>;

fn quota(b: Bucket, mult: u32) -> Quota {
    let per_second = b.per_second * f64::from(mult);
    let period = std::time::Duration::from_secs_f64(1.0 / per_second)
        .max(std::time::Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("period is above zero")
        .allow_burst(NonZeroU32::new(b.burst.saturating_mul(mult).max(1)).expect("above zero"))
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

struct Quotas {
    general: Quota,
    by_class: [Quota; 3],
}

impl Quotas {
    fn new(r: &RateSection, mult: u32) -> Self {
        Quotas {
            general: quota(r.general, mult),
            by_class: [
                quota(r.register, mult),
                quota(r.invite, mult),
                quota(r.other, mult),
            ],
        }
    }
}

struct SourceState {
    last_seen: u64,
    general: Limiter,
    by_class: [Limiter; 3],
}

impl SourceState {
    fn new(q: &Quotas, now: u64) -> Self {
        let l = |q: Quota| Limiter::direct_with_clock(q, PassedClock);
        SourceState {
            last_seen: now,
            general: l(q.general),
            by_class: [l(q.by_class[0]), l(q.by_class[1]), l(q.by_class[2])],
        }
    }
    fn check(&mut self, class: Option<Class>, now: u64) -> bool {
        self.last_seen = now;
        // The class bucket first: a request refused by it must not also drain the general one.
        if let Some(c) = class {
            if self.by_class[c as usize].check().is_err() {
                return false;
            }
        }
        self.general.check().is_ok()
    }
}

pub struct RateLimits {
    sources: AHashMap<SourceKey, SourceState>,
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
        RateLimits {
            sources: AHashMap::new(),
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
        }
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Charges one request; false when the source is over its limit.
    pub fn check(&mut self, key: SourceKey, allowed: bool, class: Option<Class>, now: u64) -> bool {
        if let Some(s) = self.sources.get_mut(&key) {
            return s.check(class, now);
        }
        if self.sources.len() >= self.max_sources {
            self.overflowed += 1;
            return self.overflow.check().is_ok();
        }
        let q = if allowed { &self.allowed } else { &self.normal };
        let mut s = SourceState::new(q, now);
        let ok = s.check(class, now);
        self.sources.insert(key, s);
        ok
    }

    /// Loads the source's state into the cache (see [`super::Engine::warm`]); changes nothing.
    #[inline]
    pub fn warm(&self, key: SourceKey) {
        let Some(s) = self.sources.get(&key) else {
            return;
        };
        // The entry spans three cache lines (four limiters); the lookup brought one.
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = (s as *const SourceState).cast::<i8>();
            for off in (64..std::mem::size_of::<SourceState>()).step_by(64) {
                // SAFETY: the address is inside a live entry, and a prefetch never faults.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
            }
        }
        std::hint::black_box(s.last_seen);
    }

    /// A keepalive: charged to the source's general bucket if it has state, else to a shared one.
    pub fn check_keepalive(&mut self, key: SourceKey, now: u64) -> bool {
        match self.sources.get_mut(&key) {
            Some(s) => s.check(None, now),
            None => self.keepalive_unknown.check().is_ok(),
        }
    }

    pub fn expire(&mut self, now: u64) {
        let idle = self.idle_ns;
        self.sources
            .retain(|_, s| now.saturating_sub(s.last_seen) <= idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
