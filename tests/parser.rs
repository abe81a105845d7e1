//! Parser properties: no allocation per message, agreement with rsip, fuzz corpora replayed.

mod common;
use sipwall::engine::Direction;
use sipwall::sip::{self, Framing};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local!(static COUNT_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT_HERE.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.store(0, Ordering::Relaxed);
    COUNT_HERE.with(|c| c.set(true));
    f();
    COUNT_HERE.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed)
}

#[test]
fn parsing_and_deciding_allocate_nothing_per_message() {
    let d = common::DOMAIN;
    let msgs: Vec<String> = vec![
        common::request(
            "REGISTER",
            d,
            d,
            d,
            "Authorization: Digest username=\"100\", response=\"x\"\r\n",
        ),
        common::request("INVITE", d, d, d, ""),
        common::request("OPTIONS", "198.18.0.2", "198.18.0.2", "198.18.0.2", "")
            .replace("Yealink SIP-T46S", "friendly-scanner"),
        common::request_full("BYE", "198.18.0.2", d, d, ";tag=x", "call-1", 2, ""),
    ];
    let n = allocations(|| {
        for m in &msgs {
            std::hint::black_box(sip::parse(m.as_bytes(), Framing::Datagram).unwrap());
        }
    });
    assert_eq!(n, 0, "parse allocated");
    // The engine on messages from a known source: state exists, nothing new is allocated.
    let mut e = common::engine_with("[limits]\nmax_transactions = 64");
    let pkts: Vec<_> = msgs
        .iter()
        .map(|m| common::udp("198.18.0.1:5060", common::PBX, m.as_bytes()))
        .collect();
    for p in &pkts {
        e.decide(p, Direction::ToPbx, 1);
    }
    let n = allocations(|| {
        for i in 0..1000u64 {
            for p in &pkts {
                std::hint::black_box(e.decide(p, Direction::ToPbx, 1 + i * 1000));
            }
        }
    });
    assert_eq!(n, 0, "decide allocated {n} times for 4000 messages");
}

/// Differential: on messages both read, sipwall and rsip agree on method, hosts and Call-ID.
/// Known disagreements (not compared): rsip ignores compact header forms and rejects folded
/// lines; rsip accepts what sipwall calls malformed (double '@', spaces in the Request-URI).
#[test]
fn agrees_with_rsip_on_messages_both_read() {
    let d = common::DOMAIN;
    let mut msgs = vec![
        common::request("REGISTER", d, d, d, ""),
        common::request("INVITE", "198.18.0.2", d, "other.example", ""),
        common::request_full("BYE", "[2001:db8::2]", d, d, ";tag=abc", "xyz@host", 7, ""),
        common::response(
            401,
            "REGISTER",
            "c1",
            1,
            "WWW-Authenticate: Digest realm=\"x\", nonce=\"y\"\r\n",
        ),
    ];
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475")).unwrap()
    {
        msgs.push(String::from_utf8_lossy(&std::fs::read(f.unwrap().path()).unwrap()).into_owned());
    }
    let mut compared = 0;
    for m in &msgs {
        let ours = sip::parse(m.as_bytes(), Framing::Datagram);
        let theirs = rsip::SipMessage::try_from(m.as_str());
        let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
            continue;
        };
        // rsip does not know compact forms: skip messages that use them
        if ours.headers().flatten().any(|h| h.name.len() == 1) {
            continue;
        }
        compared += 1;
        use rsip::prelude::*;
        match &theirs {
            rsip::SipMessage::Request(r) => {
                assert_eq!(
                    ours.method().unwrap().to_string(),
                    r.method.to_string(),
                    "{m}"
                );
                let ruri_host = r.uri.host_with_port.host.to_string();
                let our_host = ours.request_uri().unwrap().host.map(|h| h.to_string());
                if let Some(h) = our_host {
                    assert_eq!(
                        h.trim_matches(|c| c == '[' || c == ']')
                            .to_ascii_lowercase(),
                        ruri_host
                            .trim_matches(|c| c == '[' || c == ']')
                            .to_ascii_lowercase(),
                        "{m}"
                    );
                }
            }
            rsip::SipMessage::Response(r) => {
                assert_eq!(
                    ours.status().unwrap(),
                    u16::from(r.status_code.clone()),
                    "{m}"
                );
            }
        }
        let call_id = theirs
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(ours.call_id), call_id.trim(), "{m}");
    }
    assert!(compared >= 10, "only {compared} messages compared");
}

/// Every committed fuzz seed and finding replays without a panic.
#[test]
fn fuzz_corpora_replay() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus");
    let mut n = 0;
    for target in std::fs::read_dir(root).expect("fuzz/corpus") {
        let target = target.unwrap().path();
        for f in std::fs::read_dir(&target).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            let _ = sip::parse(&bytes, Framing::Stream);
            assert_observed_agrees(&bytes);
            // The short-URI path answers as the general reader, on the seed and its URIs.
            let mut uris = vec![&bytes[..]];
            if let Ok(m) = sip::parse(&bytes, Framing::Datagram) {
                uris.extend([m.from.uri.raw, m.to.uri.raw]);
                uris.extend(m.request_uri().map(|u| u.raw));
            }
            for u in uris {
                assert_eq!(
                    sip::Uri::parse(u, sip::Part::To),
                    sip::Uri::parse_general(u, sip::Part::To)
                );
            }
            let mut e = common::engine();
            e.decide(
                &common::udp("198.18.0.1:5060", common::PBX, &bytes),
                Direction::ToPbx,
                1,
            );
            e.decide(
                &common::tcp("198.18.0.1:4000", common::PBX, 1, false, &bytes),
                Direction::ToPbx,
                2,
            );
            e.decide(
                &common::udp(common::PBX, "198.18.0.1:5060", &bytes),
                Direction::FromPbx,
                3,
            );
            let _ = sipwall::net::Packet::from_ip(&bytes);
            let _ = sipwall::tls::client_hello(&bytes, &mut Vec::new());
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = sipwall::config::Config::from_toml(s, "fuzz").map(|c| c.compile());
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = sipwall::config::feed::parse(&text);
            let _ = sipwall::inline::ctl::parse_request(&text);
            let _ = sipwall::inline::state::decode(&bytes);
            if let Ok(c) = sipwall::inline::state::decode_calls(&bytes) {
                let again = sipwall::inline::state::encode_calls(&c);
                if bytes.starts_with(b"SWCALLS2") {
                    assert_eq!(again, bytes);
                }
                assert_eq!(sipwall::inline::state::decode_calls(&again).unwrap(), c);
            }
            let _ = sipwall::inline::queue::netlink::packets(&bytes).count();
            let mut cap = sipwall::replay::Capture::default();
            let _ = cap.read_from(&bytes[..], "seed");
            cap.sort();
            // Replayed whole too: fragments (and fragments in tunnels) reassembled, judged.
            let sides = sipwall::replay::Sides {
                pbx: vec![common::PBX.split(':').next().unwrap().parse().unwrap()],
                udp_ports: vec![5060],
                tcp_ports: vec![5060],
            };
            let s = sipwall::replay::run(&mut common::engine(), &sides, &cap, None, |_| {});
            assert_eq!(s.packets, cap.frames.len() as u64);
            let frames = cap.frames.iter().map(|f| (f.linktype, cap.data(f)));
            for (linktype, frame) in frames.chain([1, 101, 113, 276].map(|l| (l, &bytes[..]))) {
                if let Some(s) = sipwall::replay::slice(linktype, frame) {
                    let _ = sipwall::net::Packet::from_sliced(&s);
                }
            }
            for proto in [4, 41, 47] {
                let ip = etherparse::IpNumber(proto);
                if let Some(s) = sipwall::replay::untunnel_reassembled(ip, &bytes) {
                    let _ = sipwall::net::Packet::from_sliced(&s);
                }
            }
            n += 1;
        }
    }
    assert!(n > 50, "only {n} corpus files");
}

/// What `parse` reads of `bytes`, the observing reader (the PBX's messages, URIs unread)
/// reads the same, both ways a message is framed.
fn assert_observed_agrees(bytes: &[u8]) -> bool {
    let mut read = false;
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok(m) = sip::parse(bytes, framing) {
            let o = sip::parse_observed(bytes, framing).expect("the observing reader reads it");
            assert!(
                m.agrees_but_uris(&o),
                "{framing:?}: {}",
                String::from_utf8_lossy(bytes)
            );
            read = true;
        }
    }
    read
}

/// The observing reader against `parse` on the RFC 4475 messages, the parse seeds, and
/// mutants of both (bytes replaced, dropped or doubled where the parser decides things).
#[test]
fn observed_messages_read_as_parse_reads_them_but_their_uris() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut seeds = Vec::new();
    for dir in ["tests/data/rfc4475", "fuzz/corpus/parse"] {
        for f in std::fs::read_dir(format!("{root}/{dir}")).expect(dir) {
            seeds.push(std::fs::read(f.unwrap().path()).unwrap());
        }
    }
    const SWAPS: &[u8] = b" \t\r\n:;<>\"@%,=[]?0Aa\x00";
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let (mut tried, mut read) = (0, 0);
    for seed in &seeds {
        for k in 0..200 {
            let mut m = seed.clone();
            for _ in 0..(k % 3) + usize::from(k > 0) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if m.is_empty() {
                    break;
                }
                let at = (x >> 8) as usize % m.len();
                match x % 4 {
                    0 => {
                        m.remove(at);
                    }
                    1 => m.insert(at, m[at]),
                    _ => m[at] = SWAPS[(x >> 40) as usize % SWAPS.len()],
                }
            }
            tried += 1;
            read += usize::from(assert_observed_agrees(&m));
        }
    }
    assert!(
        read * 10 >= tried,
        "only {read} of {tried} mutants read: the comparison says little"
    );
}
