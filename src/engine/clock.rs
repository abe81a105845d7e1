//! governor asks its clock for the time; ours answers with the `now` the caller passed to
//! `decide`/`observe`, so the engine itself never reads a clock.

use governor::clock::Clock;
use governor::nanos::Nanos;
use std::cell::Cell;

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(0) };
}

/// Zero-sized: costs nothing per limiter.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassedClock;

impl PassedClock {
    #[inline]
    pub fn set(now_ns: u64) {
        NOW.with(|n| n.set(now_ns));
    }

    /// Runs `f` with the clock at 0: a limiter made inside counts from time 0, not from
    /// whatever time this thread last passed (another engine's, a later packet's).
    pub fn at_zero<T>(f: impl FnOnce() -> T) -> T {
        let passed = NOW.with(|n| n.replace(0));
        let out = f();
        Self::set(passed);
        out
    }
}

impl Clock for PassedClock {
    type Instant = Nanos;
    #[inline]
    fn now(&self) -> Nanos {
        Nanos::from(NOW.with(|n| n.get()))
    }
}
