//! The pause expiry puts in a worker's packet stream: an engine filled with N phones'
//! REGISTERs (N sources, N transactions), then one packet every 1/16 s, each running one step
//! of maintenance; prints the slowest step and the cost per second.
//!
//!   cargo run --release --example sweep_pause [N]      (N defaults to 200000, the default caps)

#[path = "../benches/common/messages.rs"]
#[allow(dead_code)]
mod messages;
use sipwall::engine::Direction;
use sipwall::net::{IpView, Packet};
fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(200_000, |s| s.parse().unwrap());
    let (_, msg) = messages::messages().into_iter().next().unwrap();
    let mut e = messages::engine();
    let mut now = 1_000_000_000u64;
    let mut pkt = Vec::new();
    for s in 0..n {
        let ip = (198u32 << 24 | 18 << 16) + 4096 + s;
        let b =
            etherparse::PacketBuilder::ipv4(ip.to_be_bytes(), [198, 18, 0, 2], 64).udp(5060, 5060);
        pkt.clear();
        let m = msg.replace("NjJhYzQx", &format!("{s:08}"));
        b.write(&mut pkt, m.as_bytes()).unwrap();
        let IpView::Packet(p) = Packet::from_ip(&pkt) else {
            unreachable!()
        };
        now += 1000; // all within one second: maintenance would not run mid-fill
        e.decide(&p, Direction::ToPbx, now);
    }
    // One packet every 1/16 s from a known phone: each decide runs one maintenance step.
    let mut worst = std::time::Duration::ZERO;
    let mut total = std::time::Duration::ZERO;
    for k in 0..64u64 {
        let t = std::time::Instant::now();
        let IpView::Packet(p) = Packet::from_ip(&pkt) else {
            unreachable!()
        };
        e.decide(&p, Direction::ToPbx, now + (k + 1) * 62_500_000);
        let d = t.elapsed();
        worst = worst.max(d);
        total += d;
    }
    println!(
        "{n} sources/txns: worst step {worst:?}, per second {:?}",
        total / 4
    );
}
