//! The decision against rsip's parse as a ratio of times taken in interleaved rounds.
//!
//! On a shared host one binary runs at one of two speeds from one minute to the next (the
//! Xeon VM: about 1.8x apart). Criterion measures one function for seconds, then the next:
//! when the host changes speed in between, the ratio of two of its figures moves with it
//! (6.6x to 12.3x for one message in two runs of one day). Here each round times a block of
//! rsip's parses, a block of decisions and a block of sipwall's parses back to back (their
//! order turning from round to round), so that the three share the host's speed of that
//! moment; the median of the rounds' ratios is the figure (the goal: 15x for the decision).
//!
//!     cargo bench --bench ratio        (about 3 s; ROUNDS=N for more)

use sipwall::engine::Direction;
use sipwall::net::{IpView, Packet};
use sipwall::sip::{self, Framing};
use std::hint::black_box;
use std::time::Instant;

#[path = "common/messages.rs"]
mod messages;
use messages::{engine, from_phones, messages};

/// Rounds counted, after as many again to warm up (caches, the engine's tables).
const WARM: usize = 20;

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for (name, msg) in messages() {
        let bytes = msg.as_bytes();
        let mut e = engine();
        // As in benches/engine.rs: the same message from 1024 phones 1 ms apart, inside
        // every rate limit (asserted: a rate-limited drop would be a cheaper decision).
        let ips = from_phones(bytes);
        let want = {
            let IpView::Packet(p) = Packet::from_ip(&ips[0]) else {
                unreachable!()
            };
            engine().decide(&p, Direction::ToPbx, 1).reason
        };
        let (mut now, mut i) = (1_000_000_000u64, 0usize);
        let mut decide = |k: usize| {
            for _ in 0..k {
                now += 1_000_000;
                i = (i + 1) % ips.len();
                let IpView::Packet(p) = Packet::from_ip(black_box(&ips[i])) else {
                    unreachable!()
                };
                let d = e.decide(&p, Direction::ToPbx, now);
                assert_eq!(d.reason, want, "never rate-limited");
                black_box(d.verdict);
            }
        };
        let rsip = |k: usize| {
            for _ in 0..k {
                black_box(rsip::SipMessage::try_from(black_box(msg.as_str())).unwrap());
            }
        };
        let parse = |k: usize| {
            for _ in 0..k {
                black_box(sip::parse(black_box(bytes), Framing::Datagram).unwrap().len);
            }
        };
        // Blocks of about a millisecond each: long against the clock's cost, short against
        // the host's changes of speed. rsip takes about ten times as long a message.
        let (n_rsip, n_ours) = (200usize, 2000usize);
        let timed = |f: &mut dyn FnMut(usize), k: usize| {
            let t = Instant::now();
            f(k);
            t.elapsed().as_secs_f64() / k as f64
        };
        let (mut by_decision, mut by_parse) = (Vec::new(), Vec::new());
        let (mut sum_r, mut sum_d, mut sum_p) = (0.0, 0.0, 0.0);
        let (mut rsip, mut parse) = (rsip, parse);
        for round in 0..WARM + rounds {
            let (r, d, p) = if round % 2 == 0 {
                let r = timed(&mut rsip, n_rsip);
                let d = timed(&mut decide, n_ours);
                (r, d, timed(&mut parse, n_ours))
            } else {
                let p = timed(&mut parse, n_ours);
                let d = timed(&mut decide, n_ours);
                (timed(&mut rsip, n_rsip), d, p)
            };
            if round >= WARM {
                by_decision.push(r / d);
                by_parse.push(r / p);
                (sum_r, sum_d, sum_p) = (sum_r + r, sum_d + d, sum_p + p);
            }
        }
        let q = |v: &mut Vec<f64>, f: f64| {
            v.sort_by(f64::total_cmp);
            v[((v.len() - 1) as f64 * f).round() as usize]
        };
        let n = rounds as f64;
        println!(
            "{name}: full packet decision {:.1}x faster than rsip's parse (median of {rounds} interleaved rounds; \
             p10 {:.1}x, p90 {:.1}x; goal 15x), parse alone {:.1}x; a message: rsip {:.0} ns, decision {:.0} ns, parse {:.0} ns",
            q(&mut by_decision, 0.5),
            q(&mut by_decision, 0.1),
            q(&mut by_decision, 0.9),
            q(&mut by_parse, 0.5),
            sum_r / n * 1e9,
            sum_d / n * 1e9,
            sum_p / n * 1e9,
        );
    }
}
