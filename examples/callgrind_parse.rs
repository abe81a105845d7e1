//! Fixed loops for `valgrind --tool=callgrind` (instruction counts are repeatable on a noisy
//! machine, unlike time): `cargo build --release --example callgrind_parse`, then
//! `callgrind_parse [N] [parse|decide|inline|rsip] [register|invite_sdp|scanner_options]`: a message
//! parsed N times, or judged N times as a packet from 1024 phones 1 ms apart (as
//! `benches/engine.rs`); `inline` judges it through the worker's read-ahead steps.

#[path = "../benches/common/messages.rs"]
mod messages;

use sipwall::engine::Direction;
use sipwall::net::{IpView, Packet};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(100_000, |s| s.parse().unwrap());
    let mode = args.next();
    let name = args.next().unwrap_or_else(|| "register".into());
    let (_, msg) = messages::messages()
        .into_iter()
        .find(|(m, _)| *m == name)
        .expect("register, invite_sdp or scanner_options");
    let mut t = 0;
    if mode.as_deref() == Some("inline") {
        // As the inline worker takes a packet: warmed, read ahead, its cells warmed, decided.
        let mut e = messages::engine();
        let ips = messages::from_phones(msg.as_bytes());
        let mut now = 1_000_000_000u64;
        let mut ahead = sipwall::engine::Ahead::NONE;
        for k in 0..n {
            now += 1_000_000;
            let IpView::Packet(p) = Packet::from_ip(std::hint::black_box(&ips[k % ips.len()]))
            else {
                unreachable!()
            };
            e.warm(p.src.ip());
            e.read_ahead(&p, Direction::ToPbx, now, &mut ahead);
            e.warm_ahead(&p, &mut ahead);
            t += e.decide_ahead(&p, Direction::ToPbx, now, &ahead).verdict as usize;
        }
    } else if mode.as_deref() == Some("decide") {
        let mut e = messages::engine();
        let ips = messages::from_phones(msg.as_bytes());
        let mut now = 1_000_000_000u64;
        for k in 0..n {
            now += 1_000_000;
            let IpView::Packet(p) = Packet::from_ip(std::hint::black_box(&ips[k % ips.len()]))
            else {
                unreachable!()
            };
            t += e.decide(&p, Direction::ToPbx, now).verdict as usize;
        }
    } else if mode.as_deref() == Some("rsip") {
        // rsip parsing the same message, for the instruction ratio (noise-free, unlike time).
        for _ in 0..n {
            let m = rsip::SipMessage::try_from(std::hint::black_box(msg.as_str())).unwrap();
            t += m.body().len() + 1;
        }
    } else {
        for _ in 0..n {
            let m = sipwall::sip::parse(
                std::hint::black_box(msg.as_bytes()),
                sipwall::sip::Framing::Datagram,
            )
            .unwrap();
            t += m.len;
        }
    }
    println!("{t}");
}
