#![no_main]
//! TCP reassembly: the input is cut into segments sent in a data-chosen order with overlaps;
//! never panics, and never accepts a segment after the flow was blocked.
use libfuzzer_sys::fuzz_target;
use sipwall::engine::{Direction, Engine, Reason, Shared, Verdict};
use sipwall::net::{Packet, TcpMeta, Transport};
use std::sync::Arc;
mod shared;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (ctl, stream) = data.split_at(data.len().min(16));
    let mut e = Engine::new(shared::policy(4096), Arc::new(Shared::new()));
    let src = "198.18.0.1:40000".parse().unwrap();
    let dst = "198.18.0.2:5060".parse().unwrap();
    let syn = Packet {
        src,
        dst,
        transport: Transport::Tcp,
        tcp: Some(TcpMeta {
            seq: 0,
            syn: true,
            ..Default::default()
        }),
        payload: b"",
    };
    e.decide(&syn, Direction::ToPbx, 1);
    let mut blocked = false;
    for (i, &b) in ctl.iter().enumerate() {
        let start = (b as usize * 7) % (stream.len() + 1);
        let len = (ctl[(i + 1) % ctl.len()] as usize) % 64 + 1;
        let end = (start + len).min(stream.len());
        let p = Packet {
            src,
            dst,
            transport: Transport::Tcp,
            tcp: Some(TcpMeta {
                seq: 1 + start as u32,
                ..Default::default()
            }),
            payload: &stream[start..end],
        };
        let d = e.decide(&p, Direction::ToPbx, 2 + i as u64);
        if blocked && !p.payload.is_empty() {
            assert!(
                d.verdict == Verdict::Drop && d.reason == Reason::FlowBlocked
                    || d.reason == Reason::TcpRetransmission,
                "{d:?}"
            );
        }
        if d.verdict == Verdict::Drop && d.reason != Reason::Overload {
            blocked = true;
        }
    }
});
