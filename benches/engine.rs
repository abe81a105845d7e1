//! Parse, decide and the full packet path on realistic messages, with rsip parsing the same
//! messages side by side (the ratio is what matters on a noisy machine).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sipwall::engine::Direction;
use sipwall::net::{IpView, Packet};
use sipwall::sip::{self, Framing};

#[path = "common/messages.rs"]
mod messages;
use messages::{engine, from_phones, messages};

fn bench(c: &mut Criterion) {
    for (name, msg) in messages() {
        let bytes = msg.as_bytes();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("sipwall_parse", |b| {
            b.iter(|| {
                let m = sip::parse(black_box(bytes), Framing::Datagram).unwrap();
                assert!(!m.call_id.is_empty());
                m.len
            })
        });
        g.bench_function("rsip_parse", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(msg.as_str())).unwrap())
        });
        let mut e = engine();
        // The same message from 1024 phones, 1 ms apart: each source sends one a second
        // (inside every rate limit), and the engine's once-a-second upkeep is paid as it is
        // in service, not on every packet.
        let ips = from_phones(bytes);
        let want = {
            let IpView::Packet(p) = Packet::from_ip(&ips[0]) else {
                unreachable!()
            };
            engine().decide(&p, Direction::ToPbx, 1).reason
        };
        // the full packet path: IP bytes → packet view → decision
        // Outside the closure: criterion calls it again for every sample, and the clock
        // must not go back.
        let (mut now, mut i) = (1_000_000_000u64, 0);
        g.bench_function("sipwall_packet_decision", |b| {
            b.iter(|| {
                now += 1_000_000;
                i = (i + 1) % ips.len();
                let IpView::Packet(p) = Packet::from_ip(black_box(&ips[i])) else {
                    unreachable!()
                };
                let d = e.decide(&p, Direction::ToPbx, now);
                assert_eq!(d.reason, want, "never rate-limited");
                d.verdict
            })
        });
        g.finish();
    }
    // A TCP stream: one REGISTER split in three segments, per message.
    let (_, reg) = &messages()[0];
    let reg = reg.as_bytes();
    let mut g = c.benchmark_group("tcp_stream");
    g.throughput(Throughput::Bytes(reg.len() as u64));
    g.bench_function("register_in_3_segments", |b| {
        let mut e = engine();
        let src = "198.18.1.7:40000".parse().unwrap();
        let dst = "198.18.0.2:5060".parse().unwrap();
        let mut seq = 1u32;
        let mut now = 0u64;
        let syn = Packet {
            src,
            dst,
            transport: sipwall::net::Transport::Tcp,
            tcp: Some(sipwall::net::TcpMeta {
                seq: 0,
                syn: true,
                ..Default::default()
            }),
            payload: b"",
        };
        e.decide(&syn, Direction::ToPbx, 0);
        b.iter(|| {
            now += 1_000_000_000;
            let mut last = None;
            for part in reg.chunks(reg.len() / 3 + 1) {
                let p = Packet {
                    src,
                    dst,
                    transport: sipwall::net::Transport::Tcp,
                    tcp: Some(sipwall::net::TcpMeta {
                        seq,
                        ..Default::default()
                    }),
                    payload: part,
                };
                seq = seq.wrapping_add(part.len() as u32);
                last = Some(e.decide(&p, Direction::ToPbx, now).reason);
            }
            assert_eq!(last, Some(sipwall::engine::Reason::SecretDomain));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
