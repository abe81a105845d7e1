//! The replay driver: a capture through the same engine the inline daemon uses, packet by
//! packet, in capture time. Thin on purpose: link layers, fragments and direction only.

mod capture;

pub use capture::{plain_ipv4, slice, untunnel_reassembled, Capture, Frame};

use crate::engine::{Decision, Direction, Engine, Outcome, Reason, What};
use crate::net::defrag::Defragmenter;
use crate::net::{IpView, Packet, Transport};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// One line of `--verdicts`: a SIP message, or a packet that carried none.
#[derive(Debug, Serialize)]
pub struct VerdictLine<'a> {
    pub index: usize,
    pub time: f64,
    pub direction: &'static str,
    pub src: String,
    pub dst: String,
    pub transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub verdict: &'static str,
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which side of a packet is the PBX, and which ports carry SIP.
pub struct Sides {
    pub pbx: Vec<IpAddr>,
    pub udp_ports: Vec<u16>,
    pub tcp_ports: Vec<u16>,
}

impl Sides {
    fn direction(&self, p: &Packet) -> Option<Direction> {
        let ports = match p.transport {
            Transport::Udp => &self.udp_ports,
            Transport::Tcp => &self.tcp_ports,
        };
        if !ports.contains(&p.src.port()) && !ports.contains(&p.dst.port()) {
            return None;
        }
        if self.pbx.contains(&p.dst.ip()) {
            Some(Direction::ToPbx)
        } else if self.pbx.contains(&p.src.ip()) {
            Some(Direction::FromPbx)
        } else {
            None
        }
    }
}

/// Guesses the PBX addresses of a capture (see [`servers`]) from the SIP requests sent to a SIP
/// port.
pub fn infer_pbx(cap: &Capture, udp_ports: &[u16], tcp_ports: &[u16]) -> Vec<IpAddr> {
    let mut requests = Vec::new();
    for p in packets(cap) {
        let ports = if p.transport == Transport::Udp {
            udp_ports
        } else {
            tcp_ports
        };
        if ports.contains(&p.dst.port()) && starts_request(p.payload) {
            requests.push((p.src.ip(), p.dst.ip()));
        }
    }
    servers(&requests)
}

/// The capture's UDP datagrams and TCP segments as they are on the wire (no reassembly), for
/// a look at the capture before it is replayed.
fn packets(cap: &Capture) -> impl Iterator<Item = Packet<'_>> {
    cap.frames.iter().filter_map(
        |f| match Packet::from_sliced(&slice(f.linktype, cap.data(f))?) {
            IpView::Packet(p) => Some(p),
            _ => None,
        },
    )
}

/// Where SIP requests go in a capture, whatever the configured ports: (transport, destination
/// port, requests), the busiest first, for a hint when none go to the configured ones.
pub fn request_ports(cap: &Capture) -> Vec<(Transport, u16, u64)> {
    let mut seen: HashMap<(Transport, u16), u64> = HashMap::new();
    for p in packets(cap) {
        if starts_request(p.payload) {
            *seen.entry((p.transport, p.dst.port())).or_default() += 1;
        }
    }
    let mut v: Vec<_> = seen
        .into_iter()
        .map(|((t, port), n)| (t, port, n))
        .collect();
    v.sort_by_key(|&(t, port, n)| (std::cmp::Reverse(n), port, t.as_str()));
    v
}

/// The payload starts with a SIP request line's shape, `token SP ... SP SIP/2.0`, even one
/// sipwall finds malformed (a request to an unbracketed IPv6 host still shows a server); a
/// TCP segment that starts inside a message does not, nor does a response or HTTP.
fn starts_request(payload: &[u8]) -> bool {
    let line = payload.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    crate::sip::chars::is_token(&line[..sp])
        && line.len() > sp + 9
        && line[line.len() - 8..].eq_ignore_ascii_case(b" SIP/2.0")
}

/// The servers among the (source, destination) pairs of requests: an address that receives
/// requests from several sources, or from a source that never receives any (a phone, a
/// scanner). A phone receives requests only from its PBX, which receives requests itself, so
/// it is not taken; every victim of a scanner is. The busiest first; when no address
/// qualifies (two servers talking only to each other), the busiest receiver.
pub fn servers(requests: &[(IpAddr, IpAddr)]) -> Vec<IpAddr> {
    // Per receiver: requests, and up to a few distinct sources.
    let mut recv: HashMap<IpAddr, (u64, Vec<IpAddr>)> = HashMap::new();
    for &(src, dst) in requests {
        let e = recv.entry(dst).or_default();
        e.0 += 1;
        if e.1.len() < 4 && !e.1.contains(&src) {
            e.1.push(src);
        }
    }
    let mut v: Vec<(u64, IpAddr)> = recv
        .iter()
        .filter(|(_, (_, from))| from.len() >= 2 || from.iter().any(|s| !recv.contains_key(s)))
        .map(|(ip, (n, _))| (*n, *ip))
        .collect();
    let busiest_first = |&(n, ip): &(u64, IpAddr)| (std::cmp::Reverse(n), ip);
    if v.is_empty() {
        v.extend(
            recv.iter()
                .map(|(ip, (n, _))| (*n, *ip))
                .min_by_key(busiest_first),
        );
    }
    v.sort_by_key(busiest_first);
    v.into_iter().map(|(_, ip)| ip).collect()
}

#[cfg(test)]
mod tests {
    use super::{servers, starts_request};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn servers_are_told_from_phones_and_several_victims_are_found() {
        let (pbx, phone, callee, scanner) = (
            ip("10.0.0.2"),
            ip("10.0.0.10"),
            ip("10.0.0.11"),
            ip("192.0.2.66"),
        );
        let (v1, v2) = (ip("203.0.113.1"), ip("203.0.113.2"));
        // Phones register with the PBX, which relays an INVITE to the callee; a scanner sweeps
        // two more victims and the PBX.
        let mut r = vec![(phone, pbx), (phone, pbx), (callee, pbx), (pbx, callee)];
        r.extend([(scanner, v1), (scanner, v1), (scanner, v2), (scanner, pbx)]);
        assert_eq!(servers(&r), vec![pbx, v1, v2]);
        // Only a scanner and one victim.
        assert_eq!(servers(&[(scanner, v2)]), vec![v2]);
        // Two servers that only talk to each other: the busier one.
        assert_eq!(servers(&[(v1, v2), (v2, v1), (v1, v2)]), vec![v2]);
        assert!(servers(&[]).is_empty());
    }

    #[test]
    fn only_a_request_line_counts_as_a_request() {
        assert!(starts_request(
            b"OPTIONS sip:100@198.18.0.2 SIP/2.0\r\nVia: x\r\n"
        ));
        assert!(starts_request(b"INVITE sip:2002@sip.example.com SIP/2.0\n"));
        // A response, a TCP segment that starts inside a message, a keepalive, a body.
        assert!(!starts_request(b"SIP/2.0 401 Unauthorized\r\n"));
        assert!(!starts_request(
            b"Via: SIP/2.0/TCP 198.18.1.7:5060;branch=z9hG4bK1\r\n"
        ));
        assert!(!starts_request(b"Content-Length: 0\r\n\r\n"));
        assert!(!starts_request(b"\r\n\r\n"));
        assert!(!starts_request(b"v=0\r\no=- 1 1 IN IP4 198.18.1.7\r\n"));
        assert!(!starts_request(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(!starts_request(b"INVITE SIP/2.0\r\n"));
        // Malformed for the policy (an unbracketed IPv6 host), yet a request to a server.
        assert!(starts_request(
            b"INVITE sip:4321@fec0:0:0:0:216:d3ff:fe0d:22c:5060 SIP/2.0\r\n"
        ));
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub packets: u64,
    pub sip_messages: u64,
    pub accepted: u64,
    pub dropped: u64,
    pub observed: u64,
    /// Packet decisions by reason.
    pub reasons: std::collections::BTreeMap<String, u64>,
    pub auth_failures: u64,
    pub bans: u64,
    pub fragments_reassembled: u64,
    /// Fragmented datagrams given up on (bound or age).
    pub fragments_dropped: u64,
    /// Requests charged to the shared overflow bucket because the source table was full.
    pub sources_overflowed: u64,
    /// Dialogs or transactions not remembered because their table was full.
    pub table_refusals: u64,
    pub elapsed_s: f64,
    pub packets_per_s: f64,
}

/// Runs every frame of `cap` through `engine`; `line` gets each verdict line when given.
/// The capture was taken without sipwall: the PBX's answers to requests sipwall drops are not
/// read (`answer-to-dropped`), as inline they would never be sent.
pub fn run(
    engine: &mut Engine,
    sides: &Sides,
    cap: &Capture,
    mut line: Option<&mut dyn FnMut(&VerdictLine)>,
    mut progress: impl FnMut(usize),
) -> Summary {
    engine.skip_answers_to_dropped();
    let mut defrag = Defragmenter::new(engine.policy().config.limits.max_fragments, 30_000_000_000);
    let mut reassembled = 0;
    let started = std::time::Instant::now();
    for (index, f) in cap.frames.iter().enumerate() {
        if index & 0xffff == 0 {
            progress(index);
        }
        let mut at = At {
            index,
            ts: f.ts,
            line: &mut line,
        };
        let data = cap.data(f);
        if let Some(p) = plain_ipv4(f.linktype, data).and_then(Packet::from_udp4) {
            at.judge(engine, sides, &p);
            continue;
        }
        let Some(s) = slice(f.linktype, data) else {
            at.external(engine, None, Reason::NotInspected);
            continue;
        };
        match Packet::from_sliced(&s) {
            IpView::Packet(p) => at.judge(engine, sides, &p),
            IpView::Fragment { src, dst } => match defrag.push(&s, f.ts) {
                Some(whole) => {
                    reassembled += 1;
                    // A mirror's tunnel around a full-size packet is often what was
                    // fragmented: looked into once whole.
                    match untunnel_reassembled(whole.ip_number, &whole.payload) {
                        Some(inner) => match Packet::from_sliced(&inner) {
                            // The tunnelled packet a fragment too (fragmented before the
                            // mirror took it): reassembled in turn, one level, no deeper.
                            IpView::Fragment { src, dst } => match defrag.push(&inner, f.ts) {
                                Some(inner_whole) => {
                                    reassembled += 1;
                                    let view = Packet::from_transport(
                                        src,
                                        dst,
                                        inner_whole.ip_number,
                                        &inner_whole.payload,
                                    );
                                    at.whole(engine, sides, view);
                                    defrag.recycle(inner_whole);
                                }
                                None => at.external(engine, None, Reason::Fragment),
                            },
                            view => at.whole(engine, sides, view),
                        },
                        None => {
                            let view =
                                Packet::from_transport(src, dst, whole.ip_number, &whole.payload);
                            at.whole(engine, sides, view)
                        }
                    }
                    defrag.recycle(whole);
                }
                // Held until the datagram is complete; judged then.
                None => at.external(engine, None, Reason::Fragment),
            },
            IpView::OtherProtocol { .. } | IpView::Invalid => {
                at.external(engine, None, Reason::NotInspected)
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let c = engine.counters();
    let (sources_overflowed, table_refusals) = engine.pressure();
    Summary {
        packets: cap.frames.len() as u64,
        sip_messages: c.messages,
        accepted: c.accepted,
        dropped: c.dropped,
        observed: c.observed,
        reasons: c.reasons().map(|(k, v)| (k.to_string(), v)).collect(),
        auth_failures: c.auth_failures,
        bans: c.bans,
        fragments_reassembled: reassembled,
        fragments_dropped: defrag.dropped,
        sources_overflowed,
        table_refusals,
        elapsed_s: elapsed,
        packets_per_s: cap.frames.len() as f64 / elapsed.max(1e-9),
    }
}

/// One frame being replayed, and where its verdict lines go.
struct At<'l, 'f> {
    index: usize,
    ts: u64,
    line: &'l mut Option<&'f mut dyn FnMut(&VerdictLine)>,
}

impl At<'_, '_> {
    fn emit(
        &mut self,
        dir: Option<Direction>,
        p: Option<&Packet>,
        what: Option<What>,
        d: Decision,
    ) {
        if let Some(l) = self.line.as_mut() {
            l(&VerdictLine {
                index: self.index,
                time: self.ts as f64 / 1e9,
                direction: dir.map_or("none", Direction::as_str),
                src: p.map(|p| p.src.to_string()).unwrap_or_default(),
                dst: p.map(|p| p.dst.to_string()).unwrap_or_default(),
                transport: p.map_or("", |p| p.transport.as_str()),
                method: match what {
                    Some(What::Request(m)) => Some(m.to_string()),
                    Some(What::Keepalive) => Some("keepalive".into()),
                    _ => None,
                },
                status: match what {
                    Some(What::Response(s)) => Some(s),
                    _ => None,
                },
                verdict: d.verdict.as_str(),
                reason: d.reason.id(),
                error: d.error.map(|e| e.describe()),
            });
        }
    }

    /// A packet the driver answers itself (inline it would never reach the engine).
    fn external(&mut self, engine: &mut Engine, p: Option<&Packet>, reason: Reason) {
        let d = Decision::accept(reason);
        engine.count_external(&d);
        self.emit(None, p, None, d);
    }

    /// A reassembled datagram's view: judged when it is a packet.
    fn whole(&mut self, engine: &mut Engine, sides: &Sides, view: IpView) {
        match view {
            IpView::Packet(p) => self.judge(engine, sides, &p),
            // Not reassembled a third time (bounded work per frame).
            IpView::Fragment { .. } => self.external(engine, None, Reason::Fragment),
            IpView::OtherProtocol { .. } | IpView::Invalid => {
                self.external(engine, None, Reason::NotInspected)
            }
        }
    }

    fn judge(&mut self, engine: &mut Engine, sides: &Sides, p: &Packet) {
        let Some(dir) = sides.direction(p) else {
            self.external(engine, Some(p), Reason::NotInspected);
            return;
        };
        if self.line.is_none() {
            engine.decide(p, dir, self.ts);
            return;
        }
        let mut any = false;
        let d = engine.decide_with(p, dir, self.ts, &mut |o: &Outcome| {
            any = true;
            self.emit(Some(dir), Some(p), Some(o.what), o.decision);
        });
        if !any {
            self.emit(Some(dir), Some(p), None, d);
        }
    }
}

#[cfg(test)]
mod run_tests {
    use super::{run, Capture, Sides};
    use crate::engine::{Engine, Shared};
    use std::sync::Arc;

    /// A classic pcap of raw IP frames (link type 101), one microsecond apart.
    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 101] {
            v.extend(w.to_le_bytes());
        }
        for (k, f) in frames.iter().enumerate() {
            for w in [1_700_000_000, k as u32, f.len() as u32, f.len() as u32] {
                v.extend(w.to_le_bytes());
            }
            v.extend(f);
        }
        v
    }

    /// IPv4 fragments of `payload` (protocol `proto`, identification `id`), `first` payload
    /// bytes in the first fragment.
    fn ip_fragments(
        src: [u8; 4],
        dst: [u8; 4],
        proto: etherparse::IpNumber,
        id: u16,
        payload: &[u8],
        first: usize,
    ) -> Vec<Vec<u8>> {
        [
            (0, &payload[..first], true),
            (first, &payload[first..], false),
        ]
        .into_iter()
        .map(|(off, part, more)| {
            let mut h =
                etherparse::Ipv4Header::new(part.len() as u16, 64, proto, src, dst).unwrap();
            h.identification = id;
            h.more_fragments = more;
            h.fragment_offset = etherparse::IpFragOffset::try_new(off as u16 / 8).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut v = h.to_bytes().to_vec();
            v.extend(part);
            v
        })
        .collect()
    }

    /// IPv4 fragments of a GRE packet between two mirror hosts, `first` payload bytes in the
    /// first fragment.
    fn fragmented_gre(inner: &[u8], first: usize) -> Vec<Vec<u8>> {
        let mut gre = vec![0x00, 0x00, 0x08, 0x00];
        gre.extend(inner);
        ip_fragments(
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            etherparse::IpNumber::GRE,
            77,
            &gre,
            first,
        )
    }

    const SCANNER: &[u8] = b"OPTIONS sip:100@198.18.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.5.5:5070;branch=z9hG4bK-1\r\n\
            From: <sip:100@198.18.0.2>;tag=1\r\nTo: <sip:100@198.18.0.2>\r\nCall-ID: 1@x\r\nCSeq: 1 OPTIONS\r\n\
            User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n";

    /// `frames` replayed with the test's PBX and domain: the summary's (packets, fragments
    /// reassembled, SIP messages) and one line per verdict.
    fn replay(frames: &[Vec<u8>]) -> ((u64, u64, u64), Vec<String>) {
        let mut cap = Capture::default();
        cap.read_from(&pcap(frames)[..], "test").unwrap();
        cap.sort();
        let mut c = crate::config::Config::default();
        c.sip.domains = vec!["sip.example.com".into()];
        let mut engine = Engine::new(Arc::new(c.compile().unwrap()), Arc::new(Shared::new()));
        let sides = Sides {
            pbx: vec!["198.18.0.2".parse().unwrap()],
            udp_ports: vec![5060],
            tcp_ports: vec![5060],
        };
        let mut lines = Vec::new();
        let mut keep = |l: &super::VerdictLine| {
            lines.push(format!("{} {} {} {}", l.index, l.src, l.verdict, l.reason))
        };
        let s = run(&mut engine, &sides, &cap, Some(&mut keep), |_| {});
        ((s.packets, s.fragments_reassembled, s.sip_messages), lines)
    }

    /// A mirror's GRE packet fragmented on its way: reassembled, then the SIP inside judged.
    #[test]
    fn a_fragmented_tunnel_is_looked_into_once_whole() {
        let mut inner = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 18, 5, 5], [198, 18, 0, 2], 64)
            .udp(5070, 5060)
            .write(&mut inner, SCANNER)
            .unwrap();
        let (summary, lines) = replay(&fragmented_gre(&inner, 64));
        assert_eq!(summary, (2, 1, 1));
        assert_eq!(
            lines,
            ["0  accept fragment", "1 198.18.5.5:5070 drop scanner"],
            "the held fragment, then the message when whole"
        );
    }

    /// A datagram fragmented before the mirror took it, each fragment's GRE packet
    /// fragmented again: both levels reassembled, then the SIP judged.
    #[test]
    fn a_fragment_inside_a_fragmented_tunnel_is_reassembled_too() {
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 18, 5, 5], [198, 18, 0, 2], 64)
            .udp(5070, 5060)
            .write(&mut udp, SCANNER)
            .unwrap();
        // The UDP datagram (header and SIP) in two fragments of the phone's packet.
        let udp = &udp[20..];
        let inner = ip_fragments(
            [198, 18, 5, 5],
            [198, 18, 0, 2],
            etherparse::IpNumber::UDP,
            9,
            udp,
            128,
        );
        let frames: Vec<Vec<u8>> = inner.iter().flat_map(|f| fragmented_gre(f, 64)).collect();
        let (summary, lines) = replay(&frames);
        assert_eq!(
            summary,
            (4, 3, 1),
            "two tunnels and the datagram reassembled"
        );
        assert_eq!(
            lines,
            [
                "0  accept fragment",
                "1  accept fragment",
                "2  accept fragment",
                "3 198.18.5.5:5070 drop scanner"
            ],
            "held until the inner datagram is whole"
        );
    }
}
