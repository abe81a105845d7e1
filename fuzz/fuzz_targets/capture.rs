#![no_main]
//! Replay's reading of captures: the bytes as a pcap/pcapng file whose frames are sliced
//! (link layers, tunnels) to packets, as one frame of every link type replay reads, and as
//! the reassembled payload of every tunnel protocol.
use libfuzzer_sys::fuzz_target;
use sipwall::net::{IpView, Packet};
use sipwall::replay::{slice, untunnel_reassembled, Capture};

fn look(linktype: i32, frame: &[u8]) {
    if let Some(s) = slice(linktype, frame) {
        if let IpView::Packet(p) = Packet::from_sliced(&s) {
            assert!(p.payload.len() <= frame.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cap = Capture::default();
    let _ = cap.read_from(data, "fuzz");
    cap.sort();
    for f in &cap.frames {
        look(f.linktype, cap.data(f));
    }
    for linktype in [0, 1, 12, 101, 108, 113, 228, 229, 276] {
        look(linktype, data);
    }
    for proto in [4, 41, 47] {
        if let Some(s) = untunnel_reassembled(etherparse::IpNumber(proto), data) {
            if let IpView::Packet(p) = Packet::from_sliced(&s) {
                assert!(p.payload.len() <= data.len());
            }
        }
    }
});
