//! sipwall-load: a bounded SIP load generator and receiver, for the inline benchmark
//! (`benches/inline.sh`) and the flood test (`tests/e2e/flood.sh`).
//!
//! `send` writes pre-built SIP datagrams through a raw socket (IP_HDRINCL) so that each can
//! carry another source address: a spoofed flood from 100k sources is one process. Every
//! datagram's Call-ID carries its send time; `recv` counts arrivals and the one-way latency
//! (both ends read the same clock: namespaces share it). Both stop at a count or a time limit.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "sipwall-load",
    about = "Bounded SIP load: send from spoofed sources, receive and time"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Traffic {
    /// REGISTER addressed by IP, no secret domain (a spoofed-source flood).
    Flood,
    /// Registrations and INVITEs with the domain, scanner OPTIONS, requests by IP (6:2:1:1).
    Mix,
    /// REGISTERs with the domain only (all accepted: for latency).
    Legit,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send datagrams to DST from addresses in --sources, cycling through them.
    Send {
        #[arg(long)]
        dst: SocketAddrV4,
        /// Source networks (repeatable); every address in them is used in turn.
        #[arg(long = "sources", default_value = "198.18.0.0/15")]
        sources: Vec<Ipv4Net>,
        /// Networks never used as sources (the test LAN).
        #[arg(long = "exclude", default_value = "198.18.0.0/24")]
        exclude: Vec<Ipv4Net>,
        #[arg(long, value_enum, default_value = "mix")]
        mix: Traffic,
        #[arg(long, default_value = "sip.example.com")]
        domain: String,
        /// Stop after this many datagrams.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Stop after this many seconds, whatever the count.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Datagrams per second (0: as fast as the socket takes them).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// A do-nothing NFQUEUE consumer: accepts every packet of QUEUE, with sipwall's queue
    /// settings and the chosen backend; prints packets and packets/s as one JSON line.
    Consume {
        #[arg(long, default_value_t = 0)]
        queue: u16,
        #[arg(long, value_enum, default_value = "netlink")]
        backend: sipwall::inline::queue::Backend,
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Stop when nothing arrived for this long after the first packet.
        #[arg(long, default_value_t = 1.0)]
        idle: f64,
    },
    /// Count datagrams arriving at BIND and their one-way latency; print one JSON line.
    Recv {
        #[arg(long)]
        bind: SocketAddr,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Stop when nothing arrived for this long after the first datagram.
        #[arg(long, default_value_t = 1.0)]
        idle: f64,
        /// Stop after this many datagrams.
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
    },
}

fn main() {
    let r = match Cli::parse().cmd {
        Cmd::Send {
            dst,
            sources,
            exclude,
            mix,
            domain,
            count,
            seconds,
            rate,
        } => send(dst, &sources, &exclude, mix, &domain, count, seconds, rate),
        Cmd::Recv {
            bind,
            seconds,
            idle,
            count,
        } => recv(bind, seconds, idle, count),
        Cmd::Consume {
            queue,
            backend,
            seconds,
            idle,
        } => consume(queue, backend, seconds, idle),
    };
    if let Err(e) = r {
        eprintln!("sipwall-load: {e:#}");
        std::process::exit(1);
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The Call-ID's fixed-width stamp: send time in ns, then a sequence number.
const STAMP: &str = "00000000000000000000-0000000000";

/// An IPv4+UDP datagram with its SIP payload; `stamp` is where the Call-ID stamp sits.
struct Template {
    bytes: Vec<u8>,
    /// Offsets of every stamp (Call-ID, Via branch).
    stamps: Vec<usize>,
}

fn templates(mix: Traffic, domain: &str, dst: SocketAddrV4) -> Vec<Template> {
    let pbx = dst.ip();
    let register = |host: &str, user: &str, ua: &str| {
        format!(
            "REGISTER sip:{host} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{STAMP}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{host}>;tag=a1\r\nTo: <sip:{user}@{host}>\r\n\
             Call-ID: {STAMP}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@192.0.2.1:5060>\r\n\
             User-Agent: {ua}\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let invite = format!(
        "INVITE sip:200@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{STAMP}\r\n\
         Max-Forwards: 70\r\nFrom: \"Desk 100\" <sip:100@{domain}>;tag=b2\r\nTo: <sip:200@{domain}>\r\n\
         Call-ID: {STAMP}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@192.0.2.1:5060>\r\n\
         User-Agent: Yealink SIP-T46S\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let options = format!(
        "OPTIONS sip:100@{pbx} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{STAMP}\r\n\
         From: \"sipvicious\" <sip:100@1.1.1.1>;tag=c3\r\nTo: <sip:100@1.1.1.1>\r\nCall-ID: {STAMP}\r\n\
         CSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    );
    let phone = register(domain, "100", "Yealink SIP-T46S");
    let by_ip = register(&pbx.to_string(), "100", "Zoiper");
    let payloads: Vec<String> = match mix {
        Traffic::Flood => vec![by_ip],
        Traffic::Legit => vec![phone],
        Traffic::Mix => [vec![phone; 6], vec![invite; 2], vec![options], vec![by_ip]].concat(),
    };
    payloads
        .into_iter()
        .map(|p| {
            let mut bytes = Vec::new();
            etherparse::PacketBuilder::ipv4([192, 0, 2, 1], pbx.octets(), 64)
                .udp(5060, dst.port())
                .write(&mut bytes, p.as_bytes())
                .expect("write to a Vec");
            // The kernel fills the IP checksum (IP_HDRINCL); a zero UDP checksum means none.
            bytes[26] = 0;
            bytes[27] = 0;
            let stamps = p.match_indices(STAMP).map(|(i, _)| 28 + i).collect();
            Template { bytes, stamps }
        })
        .collect()
}

/// Every address of `nets` not in `exclude`, in order.
fn addresses(nets: &[Ipv4Net], exclude: &[Ipv4Net]) -> Vec<u32> {
    let mut v: Vec<u32> = nets
        .iter()
        .flat_map(|n| u32::from(n.network())..=u32::from(n.broadcast()))
        .filter(|a| !exclude.iter().any(|x| x.contains(&Ipv4Addr::from(*a))))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[allow(clippy::too_many_arguments)]
fn send(
    dst: SocketAddrV4,
    sources: &[Ipv4Net],
    exclude: &[Ipv4Net],
    mix: Traffic,
    domain: &str,
    count: u64,
    seconds: f64,
    rate: u64,
) -> Result<()> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::os::fd::AsRawFd;
    let addrs = addresses(sources, exclude);
    if addrs.is_empty() {
        bail!("no source address left");
    }
    let tpl = templates(mix, domain, dst);
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .context("raw socket (needs CAP_NET_RAW)")?;
    let _ = sock.set_send_buffer_size(4 << 20);
    let to = SockAddr::from(dst);
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    // Batches of datagrams go out in one sendmmsg call.
    const BATCH: usize = 64;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2048)).collect();
    let (mut sent, mut full) = (0u64, 0u64);
    while sent < count {
        let el = start.elapsed();
        if el >= limit {
            break;
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if due > el {
                std::thread::sleep(due - el);
            }
        }
        let n = (count - sent).min(if rate > 0 {
            rate.div_ceil(1000).clamp(1, BATCH as u64)
        } else {
            BATCH as u64
        }) as usize;
        let now = now_ns();
        for (k, buf) in bufs.iter_mut().enumerate().take(n) {
            let seq = sent + k as u64;
            let t = &tpl[(seq % tpl.len() as u64) as usize];
            buf.clear();
            buf.extend_from_slice(&t.bytes);
            let src = addrs[(seq % addrs.len() as u64) as usize];
            buf[12..16].copy_from_slice(&src.to_be_bytes());
            // The branch carries the stamp too, so no two requests look like retransmissions.
            for &at in &t.stamps {
                digits(&mut buf[at..at + 20], now);
                digits(&mut buf[at + 21..at + 31], seq);
            }
        }
        let mut iov = sipwall::inline::queue::iovecs(bufs[..n].iter_mut());
        let mut msgs = sipwall::inline::queue::mmsghdrs(&mut iov, Some(&to));
        // SAFETY: `msgs` points into `iov`, `bufs` and `to`, all alive and unmoved here.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if r > 0 {
            sent += r as u64;
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                // The socket buffer is full: the kernel is the bottleneck; wait a little.
                full += 1;
                std::thread::sleep(Duration::from_micros(50));
            } else {
                return Err(e).context("send");
            }
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"seconds\":{s:.3},\"pps\":{:.0},\"distinct_sources\":{},\"buffer_full\":{full}}}",
        sent as f64 / s,
        addrs.len().min(sent as usize)
    );
    Ok(())
}

fn recv(bind: SocketAddr, seconds: f64, idle: f64, count: u64) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    let start = Instant::now();
    let (limit, idle) = (
        Duration::from_secs_f64(seconds),
        Duration::from_secs_f64(idle),
    );
    let mut buf = [0u8; 65536];
    let mut lat_ns: Vec<u64> = Vec::new();
    let (mut n, mut first, mut last) = (0u64, None::<Instant>, Instant::now());
    while n < count && start.elapsed() < limit {
        match sock.recv(&mut buf) {
            Ok(len) => {
                let now = now_ns();
                let at = Instant::now();
                first.get_or_insert(at);
                last = at;
                n += 1;
                if let Some(sent) = stamp(&buf[..len]) {
                    lat_ns.push(now.saturating_sub(sent));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if first.is_some() && last.elapsed() >= idle {
                    break;
                }
            }
            Err(e) => return Err(e).context("recv"),
        }
    }
    lat_ns.sort_unstable();
    let pct = |p: f64| {
        if lat_ns.is_empty() {
            0.0
        } else {
            lat_ns[((lat_ns.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
    let span = first.map_or(0.0, |f| (last - f).as_secs_f64());
    println!(
        "{{\"received\":{n},\"seconds\":{span:.3},\"pps\":{:.0},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
        if span > 0.0 { n as f64 / span } else { 0.0 },
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    Ok(())
}

fn consume(
    queue: u16,
    backend: sipwall::inline::queue::Backend,
    seconds: f64,
    idle: f64,
) -> Result<()> {
    use sipwall::inline::queue::{Queue, Verdict};
    let mut q = Queue::open(backend, queue).context("bind the queue (root?)")?;
    // Ready: the script waits for this line before sending.
    eprintln!("consuming queue {queue}");
    let start = Instant::now();
    let (limit, idle) = (
        Duration::from_secs_f64(seconds),
        Duration::from_secs_f64(idle),
    );
    let (mut n, mut first, mut last) = (0u64, None::<Instant>, Instant::now());
    while start.elapsed() < limit {
        let got = q.recv()?;
        if got == 0 {
            if first.is_some() && last.elapsed() >= idle {
                break;
            }
            continue;
        }
        let at = Instant::now();
        first.get_or_insert(at);
        last = at;
        for i in 0..got {
            q.set_verdict(i, Verdict::Accept)?;
        }
        q.flush()?;
        n += got as u64;
    }
    let span = first.map_or(0.0, |f| (last - f).as_secs_f64());
    println!(
        "{{\"packets\":{n},\"seconds\":{span:.3},\"pps\":{:.0},\"enobufs\":{},\"cpu_s\":{:.3}}}",
        if span > 0.0 { n as f64 / span } else { 0.0 },
        q.enobufs(),
        sipwall::inline::cpu_seconds()
    );
    Ok(())
}

/// `v` in decimal, right-aligned and zero-padded to the width of `out`.
fn digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The send time in a datagram's Call-ID stamp.
fn stamp(payload: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(payload, b"Call-ID: ")? + 9;
    std::str::from_utf8(payload.get(at..at + 20)?)
        .ok()?
        .parse()
        .ok()
}
