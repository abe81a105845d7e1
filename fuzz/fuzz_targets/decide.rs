#![no_main]
//! Packet → decision, as IP bytes (what NFQUEUE hands over) and as UDP payloads both ways.
use libfuzzer_sys::fuzz_target;
use sipwall::engine::{Direction, Engine, Reason, Shared};
use sipwall::net::{IpView, Packet, Transport};
use std::sync::Arc;
mod shared;

fuzz_target!(|data: &[u8]| {
    let mut e = Engine::new(shared::policy(65_535), Arc::new(Shared::new()));
    let ip = Packet::from_ip(data);
    // The IPv4/UDP fast path reads what etherparse reads.
    let sliced = Packet::from_ip_sliced(data);
    assert!(
        ip.same_reading(&sliced),
        "fast path {ip:?}, etherparse {sliced:?}"
    );
    if let IpView::Packet(p) = ip {
        e.decide(&p, Direction::ToPbx, 1);
        e.decide(&p, Direction::FromPbx, 2);
    }
    let p = Packet {
        src: "198.18.0.1:5060".parse().unwrap(),
        dst: "198.18.0.2:5060".parse().unwrap(),
        transport: Transport::Udp,
        tcp: None,
        payload: data,
    };
    e.decide(&p, Direction::ToPbx, 3);
    let back = Packet {
        src: p.dst,
        dst: p.src,
        ..p
    };
    e.decide(&back, Direction::FromPbx, 4);
    e.decide(&p, Direction::ToPbx, 5);
    // A source that sent nothing accepted and whose request is dropped as a scanner's or by
    // IP, ten times within a minute, is banned (tier scanning): the next one is not read.
    let mut e = Engine::new(shared::policy(65_535), Arc::new(Shared::new()));
    const S: u64 = 1_000_000_000;
    let first = e.decide(&p, Direction::ToPbx, S).reason;
    if matches!(first, Reason::Scanner | Reason::NoSecretDomain) {
        for k in 1..10 {
            assert_eq!(e.decide(&p, Direction::ToPbx, S + k * S).reason, first);
        }
        assert_eq!(e.decide(&p, Direction::ToPbx, 11 * S).reason, Reason::Banned);
        assert_eq!(e.shared().list()[0].tier, "scanning");
    }
});
