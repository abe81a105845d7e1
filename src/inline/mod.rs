//! The inline driver: NFQUEUE workers around the same engine replay uses. One worker thread
//! per queue; both directions of a flow reach the same queue (symmetric `--queue-balance`), so
//! each worker's engine state needs no locks. Bans are shared by all workers.
//!
//! The `nfq` crate gives no access to the socket, so a worker runs non-blocking and backs off
//! briefly when idle (to notice shutdown and reloads); its cost against a blocking netlink
//! loop is what issue 3's benchmark is to measure.

pub mod log;
pub mod rules;

use crate::config::Policy;
use crate::engine::{Counters, Decision, Direction, Engine, Reason, Shared, Verdict};
use crate::net::{IpView, Packet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

impl Control {
    pub fn new(policy: Arc<Policy>) -> Arc<Control> {
        Arc::new(Control {
            stop: AtomicBool::new(false),
            policy: Mutex::new(policy),
            generation: AtomicU64::new(0),
            shared: Arc::new(Shared::new()),
        })
    }

    /// Swaps in a new policy for every worker (SIGHUP).
    pub fn reload(&self, policy: Arc<Policy>) {
        *self.policy.lock().expect("policy lock") = policy;
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn current(&self) -> Arc<Policy> {
        self.policy.lock().expect("policy lock").clone()
    }
}

/// What a worker did, reported when it stops.
#[derive(Debug, Default)]
pub struct Report {
    pub queue: u16,
    pub counters: Counters,
    /// Drops that `--dry-run` let through, by reason.
    pub would_drop: Counters,
    pub recv_errors: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Serves one queue until `ctl.stop`; every packet received gets a verdict.
pub fn worker(queue: u16, ctl: Arc<Control>, dry_run: bool) -> anyhow::Result<Report> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue)?;
    // Overload: let packets through rather than drop them in the kernel.
    q.set_fail_open(queue, true)?;
    q.set_copy_range(queue, 0xffff)?;
    q.set_queue_max_len(queue, 8192)?;
    q.set_nonblocking(true);
    let mut policy = ctl.current();
    let mut generation = ctl.generation.load(Ordering::Acquire);
    let mut engine = Engine::new(policy.clone(), ctl.shared.clone());
    let mut report = Report {
        queue,
        ..Default::default()
    };
    let mut drops = log::DropLog::new(20, 100_000);
    let mut idle = 0u32;
    tracing::info!(queue, dry_run, "worker started");
    loop {
        let g = ctl.generation.load(Ordering::Acquire);
        if g != generation {
            generation = g;
            policy = ctl.current();
            engine.set_policy(policy.clone());
            tracing::info!(queue, "config reloaded");
        }
        let mut msg = match q.recv() {
            Ok(m) => {
                idle = 0;
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if ctl.stop.load(Ordering::Acquire) {
                    break;
                }
                idle = (idle + 1).min(20);
                if idle > 4 {
                    std::thread::sleep(Duration::from_micros(50 * u64::from(idle)));
                }
                continue;
            }
            Err(e) => {
                // ENOBUFS and friends: the kernel dropped messages (fail-open let packets
                // through); count and go on.
                report.recv_errors += 1;
                tracing::warn!(queue, error = %e, "receive error");
                continue;
            }
        };
        let now = now_ns();
        let d = match Packet::from_ip(msg.get_payload()) {
            IpView::Packet(p) => {
                let dir = match msg.get_hook() {
                    NF_INET_LOCAL_IN => Direction::ToPbx,
                    NF_INET_LOCAL_OUT => Direction::FromPbx,
                    // Forwarded (sipwall on a gateway): the PBX addresses tell.
                    _ if policy.pbx.contains(&p.src.ip()) => Direction::FromPbx,
                    _ => Direction::ToPbx,
                };
                let d = engine.decide(&p, dir, now);
                if d.verdict == Verdict::Drop {
                    drops.drop(p.src.ip(), d.reason, now);
                }
                d
            }
            // Conntrack reassembles fragments before the queue (the rules turn it on); one
            // that still arrives could hide a request.
            IpView::Fragment { .. } => counted(&mut engine, Decision::drop(Reason::Fragment)),
            IpView::OtherProtocol { .. } | IpView::Invalid => {
                counted(&mut engine, Decision::accept(Reason::NotInspected))
            }
        };
        let verdict = if d.verdict == Verdict::Drop {
            if dry_run {
                report.would_drop.count(&d);
                nfq::Verdict::Accept
            } else {
                nfq::Verdict::Drop
            }
        } else {
            nfq::Verdict::Accept
        };
        msg.set_verdict(verdict);
        q.verdict(msg)?;
    }
    report.counters = engine.counters().clone();
    tracing::info!(
        queue,
        accepted = report.counters.accepted,
        dropped = report.counters.dropped,
        "worker stopped"
    );
    Ok(report)
}

fn counted(engine: &mut Engine, d: Decision) -> Decision {
    engine.count_external(&d);
    d
}
