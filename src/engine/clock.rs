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
}

impl Clock for PassedClock {
    type Instant = Nanos;
    #[inline]
    fn now(&self) -> Nanos {
        Nanos::from(NOW.with(|n| n.get()))
    }
}
