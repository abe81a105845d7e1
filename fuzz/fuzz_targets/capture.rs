#![no_main]
//! Replay's reading of captures: the bytes as a pcap/pcapng file whose frames are sliced
//! (link layers, tunnels) to packets, as one frame of every link type replay reads, and as
//! the reassembled payload of every tunnel protocol; and the file replayed whole (fragments
//! reassembled, tunnels and tunnelled fragments included, every packet judged).
use libfuzzer_sys::fuzz_target;
use sipwall::engine::{Engine, Shared};
use sipwall::net::{IpView, Packet};
use sipwall::replay::{run, slice, untunnel_reassembled, Capture, Sides};
use std::sync::{Arc, OnceLock};

/// A packet sliced out of `bytes` stays inside them.
fn look(sliced: Option<etherparse::SlicedPacket>, bytes: &[u8]) {
    if let Some(IpView::Packet(p)) = sliced.as_ref().map(Packet::from_sliced) {
        assert!(p.payload.len() <= bytes.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cap = Capture::default();
    let _ = cap.read_from(data, "fuzz");
    cap.sort();
    for f in &cap.frames {
        look(slice(f.linktype, cap.data(f)), cap.data(f));
    }
    static POLICY: OnceLock<Arc<sipwall::config::Policy>> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let mut c = sipwall::config::Config::default();
        c.sip.domains = vec!["sip.example.com".into()];
        Arc::new(c.compile().unwrap())
    });
    let mut engine = Engine::new(policy.clone(), Arc::new(Shared::new()));
    let sides = Sides {
        pbx: vec!["198.18.0.2".parse().unwrap()],
        udp_ports: vec![5060],
        tcp_ports: vec![5060],
    };
    let s = run(&mut engine, &sides, &cap, None, |_| {});
    assert_eq!(s.packets, cap.frames.len() as u64);
    for linktype in [0, 1, 12, 101, 108, 113, 228, 229, 276] {
        look(slice(linktype, data), data);
    }
    for proto in [4, 41, 47] {
        look(untunnel_reassembled(etherparse::IpNumber(proto), data), data);
    }
});
