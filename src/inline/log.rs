//! What the daemon logs: one line the first time a source is dropped, one per ban (from the
//! engine), never one per packet; under a flood, first-drop lines are capped per second and
//! the rest counted in one summary line. Formats: text, JSON, and a fail2ban-friendly line.

use crate::engine::index::Index;
use crate::engine::Reason;
use std::net::{IpAddr, Ipv6Addr};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

const SECOND: u64 = 1_000_000_000;

/// First-drop lines for one worker: once per source, at most `per_second` lines a second.
pub struct DropLog {
    /// IPv4 sources met, by a keyed hash of the address, in the engine's open-addressing
    /// index: 8 bytes a source and one probe, where a set of `IpAddr` (and before it a
    /// 1,024-slot front that the bench's 4,094 dropping sources thrashed) missed the cache
    /// on most drops: 5 % of sipwall's own samples under a backlog.
    v4: Index<()>,
    hasher: ahash::RandomState,
    v6: ahash::AHashSet<Ipv6Addr>,
    max_sources: usize,
    per_second: u32,
    window_start: u64,
    in_window: u32,
    suppressed: u64,
}

impl DropLog {
    pub fn new(per_second: u32, max_sources: usize) -> Self {
        DropLog {
            v4: Index::new(),
            // Keyed at random, as the engine's tables are: spoofed sources cannot be chosen
            // to collide.
            hasher: ahash::RandomState::new(),
            v6: Default::default(),
            max_sources,
            per_second,
            window_start: 0,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Notes a dropped packet; logs it if it is the source's first and the rate allows.
    /// Returns whether a line was written.
    pub fn drop(&mut self, source: IpAddr, reason: Reason, now: u64) -> bool {
        if now.saturating_sub(self.window_start) >= SECOND {
            if self.suppressed > 0 {
                tracing::warn!(
                    suppressed = self.suppressed,
                    "flood: first-drop lines not written in the last second"
                );
                self.suppressed = 0;
            }
            self.window_start = now;
            self.in_window = 0;
        }
        // Past `max_sources`, no source is a first any more (a spoofed flood's summary
        // line says how many were not written).
        let room = self.v4.len() + self.v6.len() < self.max_sources;
        let first = match source {
            IpAddr::V4(a) => {
                room && self
                    .v4
                    .insert(self.hasher.hash_one(a.to_bits()), ())
                    .is_none()
            }
            IpAddr::V6(a) => room && self.v6.insert(a),
        };
        if !first {
            return false;
        }
        if self.in_window >= self.per_second {
            self.suppressed += 1;
            return false;
        }
        self.in_window += 1;
        tracing::info!(source = %source, reason = %reason, "drop");
        true
    }
}

/// `TIME sipwall[PID]: LEVEL message key=value...`: fail2ban matches it with
/// `failregex = ^ sipwall\[\d+\]: \w+ (?:drop|banned) .*source=<HOST>` (see config/fail2ban).
pub struct Fail2banFormat;

impl<S, N> FormatEvent<S, N> for Fail2banFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut w)?;
        let mut v = Fields::default();
        event.record(&mut v);
        writeln!(
            w,
            " sipwall[{}]: {} {}{}",
            std::process::id(),
            event.metadata().level(),
            v.message,
            v.rest
        )
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Oracle: the lines are those of a set of addresses, through the cap and for both
    /// families.
    #[test]
    fn first_drops_are_those_of_a_set_of_addresses() {
        let mut l = DropLog::new(50, 3000);
        let mut reference = std::collections::HashSet::new();
        let (mut x, mut in_window, mut second) = (5u32, 0, 0);
        for k in 0..200_000u64 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let ip: IpAddr = match x % 50 {
                0 => format!("2001:db8::{:x}", x >> 20 & 0xff).parse().unwrap(),
                // Clustered, met again and again; spread, to fill the set to its cap.
                1..=40 => std::net::Ipv4Addr::from_bits(0xc612_0000 + (x >> 16) % 2048).into(),
                _ => std::net::Ipv4Addr::from_bits(x).into(),
            };
            let now = k * 20_000;
            if now / SECOND != second {
                (second, in_window) = (now / SECOND, 0);
            }
            let want = reference.len() < 3000 && reference.insert(ip) && {
                in_window += 1;
                in_window <= 50
            };
            assert_eq!(l.drop(ip, Reason::Scanner, now), want, "{k} {ip}");
        }
    }

    #[test]
    fn first_drop_per_source_capped_per_second() {
        let mut l = DropLog::new(2, 1000);
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        assert!(l.drop(a, Reason::Scanner, 0));
        assert!(!l.drop(a, Reason::Scanner, 1), "once per source");
        assert!(l.drop("198.18.0.2".parse().unwrap(), Reason::Scanner, 2));
        assert!(
            !l.drop("198.18.0.3".parse().unwrap(), Reason::Scanner, 3),
            "cap reached"
        );
        assert_eq!(l.suppressed, 1);
        assert!(
            l.drop("198.18.0.4".parse().unwrap(), Reason::Scanner, SECOND + 5),
            "next second"
        );
        assert_eq!(l.suppressed, 0);
    }
}
