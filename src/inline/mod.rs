//! The inline driver: NFQUEUE workers around the same engine replay uses. One worker thread
//! per queue; both directions of a flow reach the same queue (symmetric `--queue-balance`), so
//! each worker's engine state needs no locks. Bans are shared by all workers.
//!
//! Packets come in batches from [`queue`] (sipwall's netlink layer by default; the `nfq` crate
//! on request, for comparison) and their verdicts leave batched; a receive waits at most
//! [`queue::WAIT_MS`], so workers notice stops and reloads.

pub mod ctl;
pub mod keeper;
pub mod log;
pub mod metrics;
pub mod offload;
pub mod queue;
pub mod rules;
pub mod state;

use crate::config::Policy;
use crate::engine::{Ahead, Calls, Counters, Decision, Direction, Engine, Reason, Shared, Verdict};
use crate::net::{IpView, Packet};
use prometheus_client::metrics::histogram::Histogram;
use queue::{Backend, Queue};
/// Packets a worker reads ahead before deciding them (see the worker loop).
const GROUP: usize = 16;
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Netfilter hooks (linux/netfilter.h) a queued packet can come from.
const NF_INET_LOCAL_IN: u8 = 1;
const NF_INET_LOCAL_OUT: u8 = 3;

/// What the main thread shares with the workers.
pub struct Control {
    pub stop: AtomicBool,
    /// The policy in force; `generation` tells workers to pick up a new one.
    pub policy: Mutex<Arc<Policy>>,
    pub generation: AtomicU64,
    pub shared: Arc<Shared>,
    /// What each worker last published (a few times a second), by queue.
    pub workers: Mutex<BTreeMap<u16, WorkerStats>>,
    /// Time to judge a packet, sampled (one packet in [`LATENCY_SAMPLE`]).
    pub latency: Histogram,
    /// `sipwall ctl reload` asks the main thread, which owns the config paths.
    pub reload_requested: AtomicBool,
    pub dry_run: bool,
    pub started_ns: u64,
    /// Calls in progress: those an earlier run saved, and each worker's as last published.
    pub calls: Mutex<CallsBoard>,
    /// The keeper's thread, once it runs: a worker that made a ban wakes it, so that the
    /// kernel's ban set has the source within a batch, not at the keeper's next tick (at a
    /// blasting bot's thousands of packets a second, a tick is hundreds through the queue).
    pub keeper: std::sync::OnceLock<std::thread::Thread>,
}

/// Calls in progress, between the workers (which know them) and the keeper (which saves them
/// so that a restart does not cut them).
#[derive(Default)]
pub struct CallsBoard {
    /// What the state directory held at start: every worker takes it back.
    pub restored: Option<Arc<Calls>>,
    /// Each worker's dialogs and PBX requests, by queue, as last published (shared, so the
    /// keeper takes them without copying under the lock).
    pub by_queue: BTreeMap<u16, Arc<Calls>>,
    /// Moves on with every publication.
    pub version: u64,
}

/// The keeper's period: expiry, feeds, saves, and bans no worker woke it for (an operator's).
pub const KEEPER_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// A worker publishes its calls this often when they changed (and when it stops).
const CALLS_PUBLISH_NS: u64 = 2_000_000_000;

/// One packet in this many has its decision timed for the latency histogram.
pub const LATENCY_SAMPLE: u64 = 64;

impl Control {
    pub fn new(policy: Arc<Policy>, dry_run: bool) -> Arc<Control> {
        Arc::new(Control {
            stop: AtomicBool::new(false),
            policy: Mutex::new(policy),
            generation: AtomicU64::new(0),
            shared: Arc::new(Shared::new()),
            workers: Mutex::new(BTreeMap::new()),
            // 1 µs to ~1 ms.
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1e-6, 2.0, 11,
            )),
            reload_requested: AtomicBool::new(false),
            dry_run,
            started_ns: now_ns(),
            calls: Mutex::new(CallsBoard::default()),
            keeper: std::sync::OnceLock::new(),
        })
    }

    /// Has the keeper look at the bans now (it also does every [`KEEPER_TICK`]).
    pub fn wake_keeper(&self) {
        if let Some(t) = self.keeper.get() {
            t.unpark();
        }
    }

    /// Swaps in a new policy for every worker (SIGHUP).
    pub fn reload(&self, policy: Arc<Policy>) {
        *self.policy.lock().expect("policy lock") = policy;
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn current(&self) -> Arc<Policy> {
        self.policy.lock().expect("policy lock").clone()
    }

    /// The workers' last reports.
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.workers
            .lock()
            .expect("workers lock")
            .values()
            .cloned()
            .collect()
    }
}

/// What a worker did: published while it runs, returned when it stops.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    pub queue: u16,
    pub counters: Counters,
    /// Drops that `--dry-run` let through, by reason.
    pub would_drop: Counters,
    pub recv_errors: u64,
    /// Engine table sizes: sources, dialogs, transactions, TCP flows, failing sources.
    pub tables: Vec<(&'static str, usize)>,
    /// Requests charged to the overflow bucket (source table full).
    pub overflowed: u64,
    /// Packets and drops per source in the last full second, the busiest first.
    pub top: Vec<SourceTally>,
    /// Packets received, and the times of the first and last batch (ns): the rate while busy.
    pub packets: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl WorkerStats {
    /// Packets per second between the first and the last packet.
    pub fn busy_rate(&self) -> f64 {
        let span = self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9;
        if span > 0.0 {
            self.packets as f64 / span
        } else {
            0.0
        }
    }
}

/// The old name of [`WorkerStats`], as `worker` returns it.
pub type Report = WorkerStats;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct SourceTally {
    pub source: IpAddr,
    pub packets: u64,
    pub drops: u64,
}

/// Per-source packet and drop counts over one period, for `ctl top`. Bounded: past
/// `MAX_TALLY` sources, new ones are not tallied (a spoofed flood shows in the counters
/// instead). Noted for every packet (one in 8 under a backlog, see [`TallySampler`]), so
/// kept small (keyed by `IpAddr` with u64 counts it missed the cache on every packet: 4% of
/// the worker's time): IPv4 sources in 12-byte entries, and a source's entry stays from one
/// period to the next (reset, not re-inserted) until a period passes without it.
#[derive(Default)]
struct Tally {
    v4: ahash::AHashMap<u32, (u32, u32)>,
    v6: ahash::AHashMap<u128, (u32, u32)>,
}

const MAX_TALLY: usize = 65_536;
const TOP: usize = 20;
const PUBLISH_NS: u64 = 250_000_000;

impl Tally {
    /// `weight` packets from `src` (more than one when the packet stands for a sample).
    #[inline]
    fn note(&mut self, src: IpAddr, dropped: bool, weight: u32) {
        let n = self.v4.len() + self.v6.len();
        let t = match src {
            IpAddr::V4(a) => slot(&mut self.v4, a.to_bits(), n),
            IpAddr::V6(a) => slot(&mut self.v6, a.to_bits(), n),
        };
        if let Some(t) = t {
            // Counts of one period (250 ms): far from u32's limit.
            t.0 = t.0.saturating_add(weight);
            t.1 = t.1.saturating_add(if dropped { weight } else { 0 });
        }
    }

    /// The busiest sources by packets and by drops; the tally starts again.
    fn take_top(&mut self) -> Vec<SourceTally> {
        let mut all: Vec<SourceTally> = Vec::with_capacity(self.v4.len() + self.v6.len());
        drain_period(&mut self.v4, &mut all, |k| {
            std::net::Ipv4Addr::from_bits(k).into()
        });
        drain_period(&mut self.v6, &mut all, |k| {
            std::net::Ipv6Addr::from_bits(k).into()
        });
        let mut top = Vec::with_capacity(2 * TOP);
        for by_drops in [false, true] {
            let key =
                |t: &SourceTally| std::cmp::Reverse(if by_drops { t.drops } else { t.packets });
            if all.len() > TOP {
                all.select_nth_unstable_by_key(TOP, key);
            }
            top.extend(all.iter().take(TOP).copied());
        }
        top.sort_by_key(|t| (std::cmp::Reverse(t.packets), t.source));
        top.dedup_by_key(|t| t.source);
        top
    }
}

/// Which packets the tally counts. A batch of [`TallySampler::FROM`] packets or more is a
/// backlog: there one packet in [`TallySampler::EVERY`], at random, is counted for that many
/// (the tally's lookups, misses in a table of thousands of sources, were 5 % of the
/// worker's own samples under a flood, 1 % of all; the top talkers a flood is searched
/// for still stand out). Otherwise every packet is counted once, exactly.
struct TallySampler(u32);

impl TallySampler {
    const FROM: usize = 32;
    const EVERY: u32 = 8;

    /// The weight to count the next packet of a batch of `batch` with, if it is counted.
    #[inline]
    fn take(&mut self, batch: usize) -> Option<u32> {
        if batch < Self::FROM {
            return Some(1);
        }
        // xorshift32: random enough not to beat with a sender's periodic mix.
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x % Self::EVERY == 0).then_some(Self::EVERY)
    }
}

impl Default for TallySampler {
    fn default() -> Self {
        TallySampler(0x9e37_79b9)
    }
}

/// The entry of `key`, made if fewer than `MAX_TALLY` sources (`n`) are tallied.
#[inline]
fn slot<K: std::hash::Hash + Eq>(
    m: &mut ahash::AHashMap<K, (u32, u32)>,
    key: K,
    n: usize,
) -> Option<&mut (u32, u32)> {
    if n < MAX_TALLY {
        Some(m.entry(key).or_default())
    } else {
        m.get_mut(&key)
    }
}

/// Moves one period's counts into `all`: sources silent for the whole period leave, the
/// others start again from zero.
fn drain_period<K: Copy>(
    m: &mut ahash::AHashMap<K, (u32, u32)>,
    all: &mut Vec<SourceTally>,
    addr: impl Fn(K) -> IpAddr,
) {
    m.retain(|&key, t| {
        if t.0 == 0 {
            return false;
        }
        all.push(SourceTally {
            source: addr(key),
            packets: u64::from(t.0),
            drops: u64::from(t.1),
        });
        *t = (0, 0);
        true
    });
}

/// CPU time this process has used, user and system (the kernel's work on its behalf: copies,
/// verdicts), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Serves one queue until `ctl.stop`; every packet received gets a verdict.
pub fn worker(queue: u16, ctl: Arc<Control>, backend: Backend) -> anyhow::Result<Report> {
    let dry_run = ctl.dry_run;
    let mut q = Queue::open(backend, queue)?;
    let mut policy = ctl.current();
    let mut generation = ctl.generation.load(Ordering::Acquire);
    let mut engine = Engine::new(policy.clone(), ctl.shared.clone());
    let restored = ctl.calls.lock().expect("calls lock").restored.clone();
    if let Some(c) = restored {
        engine.restore_calls(&c, now_ns());
    }
    let (mut calls_published, mut calls_version) = (0u64, 0u64);
    let mut report = WorkerStats {
        queue,
        ..Default::default()
    };
    let mut drops = log::DropLog::new(20, 100_000);
    let mut tally = Tally::default();
    let mut noted: Vec<(IpAddr, bool, u32)> = Vec::new();
    let mut dropped: Vec<(IpAddr, Reason)> = Vec::new();
    let mut sampler = TallySampler::default();
    let (mut last_publish, mut last_top) = (0u64, 0u64);
    let mut seen = 0u64;
    let mut bans_made = 0u64;
    // Receive errors returned to us; ENOBUFS the netlink layer counts itself.
    let (mut errors, mut warned) = (0u64, 0u64);
    tracing::info!(queue, dry_run, ?backend, "worker started");
    loop {
        let g = ctl.generation.load(Ordering::Acquire);
        if g != generation {
            generation = g;
            policy = ctl.current();
            engine.set_policy(policy.clone());
            tracing::info!(queue, "config reloaded");
        }
        let n = match q.recv() {
            Ok(n) => n,
            Err(e) => {
                // The kernel let packets through (fail-open) or lost them; count and go on.
                errors += 1;
                if errors >= warned * 2 {
                    warned = errors;
                    tracing::warn!(queue, error = %e, errors, "receive error");
                }
                continue;
            }
        };
        // One clock read per batch: the engine takes time as an argument.
        let now = now_ns();
        if n == 0 && ctl.stop.load(Ordering::Acquire) {
            break;
        }
        if n > 0 {
            if report.packets == 0 {
                report.first_ns = now;
            }
            report.packets += n as u64;
            report.last_ns = now;
        }
        // The batch in groups, in passes: the group's rate-limit entries are touched, its
        // messages read, the dialog and transaction cells their decisions will use prefetched,
        // then the packets decided in order. Each pass's lookups come back to back so that
        // their cache misses overlap (a parse between two lookups serialises them), and the
        // parser's code stays hot. The tally's and the first-drop log's misses overlap after
        // the batch, its verdicts sent.
        noted.clear();
        dropped.clear();
        let mut first = 0;
        while first < n {
            let group = (n - first).min(GROUP);
            let mut verdicts = [queue::Verdict::Accept; GROUP];
            {
                // The group's arrays are filled in place, not built by `array::from_fn`,
                // which builds each aside and moves it: about 11 KB copied a group.
                // Each packet read once: a packet to decide, or judged by its IP header alone.
                let mut views: [Option<Result<(Packet, Direction), Decision>>; GROUP] =
                    [const { None }; GROUP];
                for (k, v) in views.iter_mut().enumerate().take(group) {
                    let r = q.packet(first + k);
                    *v = Some(match Packet::from_ip(r.payload) {
                        IpView::Packet(p) => {
                            let dir = direction(p.src.ip(), r.hook, &policy);
                            Ok((p, dir))
                        }
                        // Conntrack reassembles fragments before the queue (the rules turn
                        // it on); one that still arrives could hide a request.
                        IpView::Fragment { .. } => Err(Decision::drop(Reason::Fragment)),
                        IpView::OtherProtocol { .. } | IpView::Invalid => {
                            Err(Decision::accept(Reason::NotInspected))
                        }
                    });
                }
                for (p, _) in views.iter().flatten().flatten() {
                    engine.warm(p.src.ip());
                }
                // A slot for each packet to decide; the others are never written (an
                // initialised array of slots was an 8.7 KB memset a group).
                let mut room = [const { MaybeUninit::<Ahead>::uninit() }; GROUP];
                let mut ahead: [Option<&mut Ahead>; GROUP] = [const { None }; GROUP];
                for ((v, a), r) in views.iter().zip(&mut ahead).zip(&mut room) {
                    if let Some(Ok((p, dir))) = v {
                        let slot = Ahead::empty_in(r);
                        engine.read_ahead(p, *dir, now, slot);
                        *a = Some(slot);
                    }
                }
                for (v, a) in views.iter().zip(&mut ahead) {
                    if let (Some(Ok((p, _))), Some(a)) = (v, a) {
                        engine.warm_ahead(p, a);
                    }
                }
                for (k, v) in views.iter().enumerate().take(group) {
                    let Some(v) = v else { continue };
                    seen += 1;
                    let timed = (seen % LATENCY_SAMPLE == 0).then(Instant::now);
                    let d = match v {
                        Ok((p, dir)) => {
                            // Every packet to decide has its slot (`NONE` would read it).
                            let a = ahead[k].as_deref().unwrap_or(&Ahead::NONE);
                            let d = engine.decide_ahead(p, *dir, now, a);
                            if d.verdict == Verdict::Drop {
                                dropped.push((p.src.ip(), d.reason));
                            }
                            if *dir == Direction::ToPbx {
                                if let Some(w) = sampler.take(n) {
                                    noted.push((p.src.ip(), d.verdict == Verdict::Drop, w));
                                }
                            }
                            d
                        }
                        Err(d) => counted(&mut engine, *d),
                    };
                    verdicts[k] = if d.verdict == Verdict::Drop {
                        if dry_run {
                            report.would_drop.count(&d);
                            queue::Verdict::Accept
                        } else {
                            queue::Verdict::Drop
                        }
                    } else {
                        queue::Verdict::Accept
                    };
                    if let Some(t) = timed {
                        ctl.latency.observe(t.elapsed().as_secs_f64());
                    }
                }
            }
            for (k, v) in verdicts.iter().take(group).enumerate() {
                q.set_verdict(first + k, *v)?;
            }
            first += group;
        }
        q.flush()?;
        if engine.counters().bans != bans_made {
            bans_made = engine.counters().bans;
            ctl.wake_keeper();
        }
        for &(ip, dropped, weight) in &noted {
            tally.note(ip, dropped, weight);
        }
        for &(ip, reason) in &dropped {
            drops.drop(ip, reason, now);
        }
        report.recv_errors = errors + q.enobufs();
        if now.saturating_sub(last_publish) >= PUBLISH_NS {
            publish(&ctl, &engine, &mut report, &mut tally, &mut last_top, now);
            last_publish = now;
        }
        if now.saturating_sub(calls_published) >= CALLS_PUBLISH_NS {
            publish_calls(&ctl, queue, &engine, &mut calls_version);
            calls_published = now;
        }
    }
    publish_calls(&ctl, queue, &engine, &mut calls_version);
    report.recv_errors = errors + q.enobufs();
    report.counters = engine.counters().clone();
    tracing::info!(
        queue,
        accepted = report.counters.accepted,
        dropped = report.counters.dropped,
        "worker stopped"
    );
    Ok(report)
}

/// The hook tells the direction on the PBX host; where sipwall forwards, the PBX addresses do.
fn direction(src: IpAddr, hook: u8, policy: &Policy) -> Direction {
    match hook {
        NF_INET_LOCAL_IN => Direction::ToPbx,
        NF_INET_LOCAL_OUT => Direction::FromPbx,
        _ if policy.pbx.contains(&src) => Direction::FromPbx,
        _ => Direction::ToPbx,
    }
}

/// Shares the worker's counters and tables with the control socket and metrics; the top
/// sources once a second.
fn publish(
    ctl: &Control,
    engine: &Engine,
    report: &mut WorkerStats,
    tally: &mut Tally,
    last_top: &mut u64,
    now: u64,
) {
    report.counters = engine.counters().clone();
    report.tables = engine.table_sizes().to_vec();
    report.overflowed = engine.pressure().0;
    if now.saturating_sub(*last_top) >= 1_000_000_000 {
        report.top = tally.take_top();
        *last_top = now;
    }
    ctl.workers
        .lock()
        .expect("workers lock")
        .insert(report.queue, report.clone());
}

/// Hands the worker's calls to the keeper if they changed since `*version` (copying them is a
/// walk of its tables: done between batches, every [`CALLS_PUBLISH_NS`] at most).
fn publish_calls(ctl: &Control, queue: u16, engine: &Engine, version: &mut u64) {
    if engine.calls_version() == *version {
        return;
    }
    *version = engine.calls_version();
    let calls = Arc::new(engine.calls());
    let mut board = ctl.calls.lock().expect("calls lock");
    board.by_queue.insert(queue, calls);
    board.version += 1;
}

fn counted(engine: &mut Engine, d: Decision) -> Decision {
    engine.count_external(&d);
    d
}

#[cfg(test)]
mod tally_tests {
    use super::*;

    #[test]
    fn tally_counts_a_period_then_starts_again() {
        let mut t = Tally::default();
        let v4: IpAddr = "198.18.1.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        for k in 0..10 {
            t.note(v4, k % 2 == 0, 1);
        }
        t.note(v6, true, 1);
        let top = t.take_top();
        let find = |top: &[SourceTally], ip| top.iter().find(|s| s.source == ip).copied();
        let a = find(&top, v4).unwrap();
        assert_eq!((a.packets, a.drops), (10, 5));
        let b = find(&top, v6).unwrap();
        assert_eq!((b.packets, b.drops), (1, 1));
        // The next period counts from zero; a source silent for a period is not shown.
        t.note(v4, false, 1);
        let top = t.take_top();
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].source, top[0].packets, top[0].drops), (v4, 1, 0));
        assert!(t.take_top().is_empty());
        assert!(
            t.v4.is_empty() && t.v6.is_empty(),
            "silent sources leave the maps"
        );
    }

    #[test]
    fn a_backlog_is_tallied_by_sample_and_the_rest_exactly() {
        let mut s = TallySampler::default();
        assert!((0..10_000).all(|_| s.take(TallySampler::FROM - 1) == Some(1)));
        // A flood from one source among many: 1 packet in 10 is the attacker's, every 10th
        // (a period the sampling must not beat with).
        let (mut t, mut seen) = (Tally::default(), 0u64);
        let attacker: IpAddr = "198.19.4.4".parse().unwrap();
        for k in 0..200_000u32 {
            let src: IpAddr = if k % 10 == 0 {
                attacker
            } else {
                std::net::Ipv4Addr::from_bits(0xc612_1000 + k % 4000).into()
            };
            if let Some(w) = s.take(64) {
                assert_eq!(w, TallySampler::EVERY);
                seen += 1;
                t.note(src, src == attacker, w);
            }
        }
        let share = seen as f64 / 200_000.0;
        assert!((share - 0.125).abs() < 0.005, "sampled {share}");
        let top = t.take_top();
        let a = top.iter().find(|x| x.source == attacker).unwrap();
        assert!(
            a.packets.abs_diff(20_000) < 1_000,
            "estimated {}",
            a.packets
        );
        assert_eq!(a.drops, a.packets);
        assert_eq!(top[0].source, attacker, "the flood's source tops the list");
    }
}
