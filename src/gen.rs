//! A synthetic but realistic capture: registering and calling phones (UDP, TCP with split
//! segments, IPv6), the PBX's answers, scanners by IP, extension sweeps, and a password
//! guesser that knows the domain. Used by tests, benches and `sipwall gen`.

use etherparse::PacketBuilder;
use std::io::Write;

pub const PBX_V4: [u8; 4] = [198, 18, 0, 2];
pub const PBX_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// What the generated capture holds, so tests can check verdicts against it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Expect {
    pub phone_requests: u64,
    pub scanner_requests: u64,
    pub by_ip_requests: u64,
    pub brute_requests: u64,
    pub brute_sources: u64,
}

pub struct Generator {
    pub domain: String,
    frames: Vec<(u64, Vec<u8>)>,
    ts: u64,
    seq: u32,
    pub expect: Expect,
}

#[derive(Clone, Copy)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// One end of an exchange.
type End = (Ip, u16);

fn ip_builder(src: Ip, dst: Ip) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => b.ipv4(s, d, 64),
        (Ip::V6(s), Ip::V6(d)) => b.ipv6(s, d, 64),
        _ => unreachable!("one family per exchange"),
    }
}

/// The parts of a SIP exchange that stay the same from message to message.
struct Sip<'a> {
    user: &'a str,
    host: &'a str,
    call: &'a str,
    ua: &'a str,
}

impl Sip<'_> {
    /// A request; `to_tag` is "" outside a dialog or ";tag=..." inside one.
    fn req(
        &self,
        method: &str,
        ruri: &str,
        cseq: u32,
        to_tag: &str,
        extra: &str,
        body: &str,
    ) -> String {
        let Sip {
            user,
            host,
            call,
            ua,
        } = self;
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK{call}{cseq}\r\nMax-Forwards: 70\r\n\
             From: \"{user}\" <sip:{user}@{host}>;tag=ft{call}\r\nTo: <sip:{user}@{host}>{to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:{user}@198.18.1.1:5060>\r\nUser-Agent: {ua}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn resp(&self, status: &str, method: &str, cseq: u32, extra: &str) -> String {
        let Sip {
            user, host, call, ..
        } = self;
        format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 198.18.1.1:5060;branch=z9hG4bK{call}{cseq}\r\n\
             From: <sip:{user}@{host}>;tag=ft{call}\r\nTo: <sip:{user}@{host}>;tag=pbx{cseq}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }
}

impl Generator {
    pub fn new(domain: &str) -> Self {
        Generator {
            domain: domain.into(),
            frames: vec![],
            ts: 1_700_000_000_000_000_000,
            seq: 1,
            expect: Expect::default(),
        }
    }

    fn udp(&mut self, from: End, to: End, payload: &[u8]) {
        let b = ip_builder(from.0, to.0).udp(from.1, to.1);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).expect("vec write");
        self.push(out);
    }

    fn tcp(&mut self, from: End, to: End, seq: u32, syn: bool, payload: &[u8]) {
        let b = ip_builder(from.0, to.0).tcp(from.1, to.1, seq, 65535);
        let b = if syn { b.syn() } else { b.ack(1).psh() };
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).expect("vec write");
        self.push(out);
    }

    fn push(&mut self, frame: Vec<u8>) {
        self.ts += 50_000; // 50 µs apart
        self.frames.push((self.ts, frame));
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn next_call(&mut self, prefix: &str, n: u32) -> String {
        self.seq += 1;
        format!("{prefix}{n}-{}", self.seq - 1)
    }

    /// A phone registering with digest auth and making a call (INVITE, 407, INVITE with
    /// credentials, 100, 180, 200, ACK and BYE to the contact IP, 200).
    pub fn phone_udp(&mut self, n: u32, v6: bool) {
        let (me, pbx) = if v6 {
            let mut a = PBX_V6;
            // each phone in its own /64, as a home router would hand out
            a[6] = (n >> 8) as u8 | 0x40;
            a[7] = n as u8;
            ((Ip::V6(a), 5060), (Ip::V6(PBX_V6), 5060))
        } else {
            (
                (Ip::V4([198, 18, 1 + (n >> 8) as u8 % 200, n as u8]), 5060),
                (Ip::V4(PBX_V4), 5060),
            )
        };
        let d = self.domain.clone();
        let user = format!("{}", 1000 + n % 9000);
        let ruri = format!("sip:{d}");
        let call = self.next_call("reg", n);
        let ua = "Yealink SIP-T46S 66.85.0.5";
        let auth = format!("Authorization: Digest username=\"{user}\", realm=\"{d}\", nonce=\"abc\", uri=\"{ruri}\", response=\"0123456789abcdef\", qop=auth, nc=00000001, cnonce=\"x\"\r\n");
        let reg = Sip {
            user: &user,
            host: &d,
            call: &call,
            ua,
        };
        self.udp(
            me,
            pbx,
            reg.req("REGISTER", &ruri, 1, "", "Expires: 3600\r\n", "")
                .as_bytes(),
        );
        let challenge = "WWW-Authenticate: Digest realm=\"x\", nonce=\"abc\", qop=\"auth\"\r\n";
        self.udp(
            pbx,
            me,
            reg.resp("401 Unauthorized", "REGISTER", 1, challenge)
                .as_bytes(),
        );
        self.udp(
            me,
            pbx,
            reg.req(
                "REGISTER",
                &ruri,
                2,
                "",
                &format!("Expires: 3600\r\n{auth}"),
                "",
            )
            .as_bytes(),
        );
        self.udp(pbx, me, reg.resp("200 OK", "REGISTER", 2, "").as_bytes());
        self.expect.phone_requests += 2;
        // a call
        let call = self.next_call("inv", n);
        let inv = Sip { call: &call, ..reg };
        let sdp = "v=0\r\no=- 1 1 IN IP4 198.18.1.1\r\ns=-\r\nc=IN IP4 198.18.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let ruri = format!("sip:2000@{d}");
        self.udp(me, pbx, inv.req("INVITE", &ruri, 1, "", "", sdp).as_bytes());
        let challenge = "Proxy-Authenticate: Digest realm=\"x\", nonce=\"n\"\r\n";
        self.udp(
            pbx,
            me,
            inv.resp("407 Proxy Authentication Required", "INVITE", 1, challenge)
                .as_bytes(),
        );
        self.udp(
            me,
            pbx,
            inv.req("ACK", &ruri, 1, ";tag=pbx1", "", "").as_bytes(),
        );
        let pauth = auth.replace("Authorization", "Proxy-Authorization");
        self.udp(
            me,
            pbx,
            inv.req("INVITE", &ruri, 2, "", &pauth, sdp).as_bytes(),
        );
        for s in ["100 Trying", "180 Ringing", "200 OK"] {
            self.udp(pbx, me, inv.resp(s, "INVITE", 2, "").as_bytes());
        }
        // in-dialog requests go to the PBX's contact address
        let contact = "sip:2000@198.18.0.2:5060";
        for (meth, cseq) in [("ACK", 2), ("BYE", 3)] {
            self.udp(
                me,
                pbx,
                inv.req(meth, contact, cseq, ";tag=pbx2", "", "").as_bytes(),
            );
        }
        self.udp(pbx, me, inv.resp("200 OK", "BYE", 3, "").as_bytes());
        self.expect.phone_requests += 5;
    }

    /// A phone registering over TCP, its REGISTER split across two segments.
    pub fn phone_tcp(&mut self, n: u32) {
        let me = (Ip::V4([198, 18, 250, n as u8]), 40000 + (n % 20000) as u16);
        let pbx = (Ip::V4(PBX_V4), 5060);
        let d = self.domain.clone();
        let user = format!("{}", 5000 + n % 1000);
        let call = self.next_call("tcp", n);
        let sip = Sip {
            user: &user,
            host: &d,
            call: &call,
            ua: "baresip",
        };
        let m = sip.req("REGISTER", &format!("sip:{d};transport=tcp"), 1, "", "", "");
        let isn = 1000 * n;
        self.tcp(me, pbx, isn, true, b"");
        let (a, b) = m.as_bytes().split_at(m.len() / 2);
        self.tcp(me, pbx, isn + 1, false, a);
        self.tcp(me, pbx, isn + 1 + a.len() as u32, false, b);
        let r = sip.resp("200 OK", "REGISTER", 1, "");
        self.tcp(pbx, me, 7 * n, true, b"");
        self.tcp(pbx, me, 7 * n + 1, false, r.as_bytes());
        self.expect.phone_requests += 1;
    }

    /// svmap / svwar style probes by IP, with and without a scanner User-Agent.
    pub fn scanner(&mut self, n: u32) {
        let me = (Ip::V4([198, 19, (n >> 8) as u8, n as u8]), 5060);
        let pbx = (Ip::V4(PBX_V4), 5060);
        let call = format!("scan{n}");
        let probe = Sip {
            user: "100",
            host: "198.18.0.2",
            call: &call,
            ua: "friendly-scanner",
        };
        self.udp(
            me,
            pbx,
            probe
                .req("OPTIONS", "sip:100@198.18.0.2", 1, "", "", "")
                .as_bytes(),
        );
        self.expect.scanner_requests += 1;
        let user = format!("{}", n % 1000);
        let sweep = Sip {
            user: &user,
            ua: "Linksys/PAP2T-3.1.15",
            ..probe
        };
        self.udp(
            me,
            pbx,
            sweep
                .req("REGISTER", "sip:198.18.0.2", 2, "", "", "")
                .as_bytes(),
        );
        self.expect.by_ip_requests += 1;
    }

    /// A guesser that knows the domain: each wrong password is answered 403 by the PBX.
    pub fn brute(&mut self, n: u32, guesses: u32) {
        let me = (Ip::V4([198, 19, 200, n as u8]), 5060);
        let pbx = (Ip::V4(PBX_V4), 5060);
        let d = self.domain.clone();
        for g in 0..guesses {
            let call = format!("brute{n}-{g}");
            let sip = Sip {
                user: "100",
                host: &d,
                call: &call,
                ua: "Zoiper rv2.10",
            };
            let auth = format!("Authorization: Digest username=\"100\", realm=\"{d}\", nonce=\"a\", uri=\"sip:{d}\", response=\"{g:032x}\"\r\n");
            self.udp(
                me,
                pbx,
                sip.req("REGISTER", &format!("sip:{d}"), 1, "", &auth, "")
                    .as_bytes(),
            );
            self.udp(
                pbx,
                me,
                sip.resp("403 Forbidden", "REGISTER", 1, "").as_bytes(),
            );
            self.expect.brute_requests += 1;
        }
        self.expect.brute_sources += 1;
    }

    /// RTP that is not SIP (not inspected).
    pub fn rtp(&mut self, n: u32) {
        let payload = [0x80u8; 172];
        self.udp(
            (Ip::V4([198, 18, 1, n as u8]), 4000),
            (Ip::V4(PBX_V4), 10000),
            &payload,
        );
    }

    /// A mix of everything, about `packets` long.
    pub fn mixed(domain: &str, packets: usize) -> Generator {
        let mut g = Generator::new(domain);
        let mut i = 0u32;
        while g.len() < packets {
            g.phone_udp(i, i % 10 == 9);
            if i % 5 == 0 {
                g.phone_tcp(i);
            }
            g.scanner(i);
            g.scanner(i + 7);
            if i % 50 == 0 {
                g.brute(i / 50 % 250, 6);
            }
            for _ in 0..4 {
                g.rtp(i);
            }
            i += 1;
        }
        g
    }

    /// The frames made so far (Ethernet), with their times in ns, in the order made.
    pub fn frames(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.frames.iter().map(|(t, f)| (*t, &f[..]))
    }

    /// Writes a classic pcap (microsecond times, Ethernet).
    pub fn write_pcap(&self, w: &mut impl Write) -> std::io::Result<()> {
        // magic, v2.4, thiszone, sigfigs, snaplen, LINKTYPE_ETHERNET
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&[0; 8])?;
        w.write_all(&65535u32.to_le_bytes())?;
        w.write_all(&1u32.to_le_bytes())?;
        for (ts, f) in &self.frames {
            w.write_all(&((ts / 1_000_000_000) as u32).to_le_bytes())?;
            w.write_all(&((ts % 1_000_000_000 / 1000) as u32).to_le_bytes())?;
            w.write_all(&(f.len() as u32).to_le_bytes())?;
            w.write_all(&(f.len() as u32).to_le_bytes())?;
            w.write_all(f)?;
        }
        Ok(())
    }
}
