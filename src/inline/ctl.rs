//! The control socket: a Unix stream socket (mode 0600 in a 0700 directory: root only) that
//! takes one JSON request line and answers one JSON line. `sipwall ctl` is its client; the
//! same requests serve scripts (`--json`).

use super::keeper::Keeper;
use super::{now_ns, Control, SourceTally};
use crate::engine::{source_key, source_label, Ban, Entry, Evidence, ListKind, Totals};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/run/sipwall/sipwall.sock";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Bans,
    Ban {
        addr: IpAddr,
        /// Seconds; None: until released.
        for_s: Option<u64>,
        reason: Option<String>,
    },
    Unban {
        addr: IpAddr,
    },
    Allow {
        net: IpNet,
        for_s: Option<u64>,
    },
    Deny {
        net: IpNet,
        for_s: Option<u64>,
    },
    /// Removes runtime allow/deny entries for exactly this network.
    Unlist {
        net: IpNet,
    },
    Entries,
    Stats,
    Top {
        n: usize,
    },
    Reload,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    fn ok(data: impl Serialize) -> Response {
        Response {
            ok: true,
            error: None,
            data: serde_json::to_value(data).unwrap_or_default(),
        }
    }
    fn err(e: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            error: Some(e.to_string()),
            data: serde_json::Value::Null,
        }
    }
}

/// `ctl stats`, and what the metrics endpoint exposes.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub uptime_s: u64,
    pub dry_run: bool,
    /// Since the first start (saved across restarts with the state).
    pub totals: Totals,
    /// Would-be drops let through by `--dry-run`, this run.
    pub would_drop: Totals,
    pub queues: Vec<QueueStats>,
    /// Engine tables summed over workers: sources, dialogs, transactions, tcp_flows, ...
    pub tracked: BTreeMap<String, usize>,
    pub overflowed: u64,
    pub bans: usize,
    pub bans_by_tier: BTreeMap<String, usize>,
    pub allow_entries: usize,
    pub deny_entries: usize,
    /// Packets each kernel set's rule matched (kernel offload).
    pub kernel_sets: BTreeMap<String, u64>,
    pub offload: bool,
    pub state_file: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: u16,
    pub accepted: u64,
    pub dropped: u64,
    /// Receive errors (ENOBUFS: the kernel could not deliver to sipwall).
    pub recv_errors: u64,
    /// From /proc/net/netfilter/nfnetlink_queue.
    pub backlog: Option<u64>,
    pub kernel_dropped: Option<u64>,
    pub user_dropped: Option<u64>,
}

impl Stats {
    pub fn gather(ctl: &Control, keeper: &Keeper) -> Stats {
        let workers = ctl.worker_stats();
        let kernel = kernel_queues();
        let mut s = Stats {
            uptime_s: now_ns().saturating_sub(ctl.started_ns) / 1_000_000_000,
            dry_run: ctl.dry_run,
            totals: keeper.totals(&workers),
            kernel_sets: keeper.kernel_counters(),
            offload: keeper.offloading(),
            state_file: keeper.state_path().map(|p| p.display().to_string()),
            ..Default::default()
        };
        for w in &workers {
            s.would_drop.add(&w.would_drop);
            s.overflowed += w.overflowed;
            for (name, n) in &w.tables {
                if *name != "failing_sources" {
                    *s.tracked.entry(name.to_string()).or_default() += n;
                }
            }
            let k = kernel.get(&w.queue);
            s.queues.push(QueueStats {
                queue: w.queue,
                accepted: w.counters.accepted,
                dropped: w.counters.dropped,
                recv_errors: w.recv_errors,
                backlog: k.map(|k| k[0]),
                kernel_dropped: k.map(|k| k[1]),
                user_dropped: k.map(|k| k[2]),
            });
        }
        s.tracked
            .insert("failing_sources".into(), ctl.shared.failing_sources());
        for b in ctl.shared.list() {
            *s.bans_by_tier.entry(b.tier).or_default() += 1;
            s.bans += 1;
        }
        for e in ctl.shared.lists().entries() {
            match e.kind {
                ListKind::Allow => s.allow_entries += 1,
                ListKind::Deny => s.deny_entries += 1,
            }
        }
        s
    }
}

/// queue → [backlog, dropped by the kernel (queue full), dropped on delivery (ENOBUFS)].
fn kernel_queues() -> BTreeMap<u16, [u64; 3]> {
    let text = std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            // queue, portid, total, copy mode, copy range, dropped, user dropped, id, 1
            (f.len() >= 7).then(|| (f[0] as u16, [f[2], f[5], f[6]]))
        })
        .collect()
}

/// The busiest sources across workers in their last second.
pub fn top(ctl: &Control, n: usize) -> Vec<SourceTally> {
    let mut by: BTreeMap<IpAddr, SourceTally> = BTreeMap::new();
    for w in ctl.worker_stats() {
        for t in w.top {
            let e = by.entry(t.source).or_insert(SourceTally {
                source: t.source,
                packets: 0,
                drops: 0,
            });
            e.packets += t.packets;
            e.drops += t.drops;
        }
    }
    let mut v: Vec<SourceTally> = by.into_values().collect();
    v.sort_by_key(|t| (std::cmp::Reverse(t.drops.max(t.packets)), t.source));
    v.truncate(n);
    v
}

/// What the server needs besides the shared state: how to reload the config.
pub type Reloader = Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>;

/// Binds the socket: the directory is made 0700, the socket 0600 (root only).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    // A socket left by a killed daemon; a live one answers, and then we refuse.
    if UnixStream::connect(path).is_ok() {
        anyhow::bail!("{} is in use: is another sipwall running?", path.display());
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves requests until `ctl.stop`.
pub fn serve(l: UnixListener, ctl: Arc<Control>, keeper: Arc<Mutex<Keeper>>, reload: Reloader) {
    while !ctl.stop.load(Ordering::Acquire) {
        let stream = match l.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if let Err(e) = answer(stream, &ctl, &keeper, &reload) {
            tracing::debug!(error = %e, "control client");
        }
    }
}

fn answer(
    stream: UnixStream,
    ctl: &Control,
    keeper: &Mutex<Keeper>,
    reload: &Reloader,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .take(64 * 1024)
        .read_line(&mut line)?;
    let resp = match parse_request(&line) {
        Ok(req) => handle(req, ctl, keeper, reload),
        Err(e) => Response::err(e),
    };
    let mut out = serde_json::to_vec(&resp)?;
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// Reads one request line (fuzzed: `fuzz/control`).
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str::<Request>(line).map_err(|e| format!("bad request: {e}"))
}

/// Carries out one request. Changes reach the kernel sets before the answer.
pub fn handle(req: Request, ctl: &Control, keeper: &Mutex<Keeper>, reload: &Reloader) -> Response {
    let now = now_ns();
    let policy = ctl.current();
    let prefix = policy.ipv6_prefix;
    let until =
        |for_s: Option<u64>| for_s.map(|s| now.saturating_add(s.saturating_mul(1_000_000_000)));
    let sync = || keeper.lock().expect("keeper lock").tick(now);
    match req {
        Request::Bans => Response::ok(ctl.shared.list()),
        Request::Ban {
            addr,
            for_s,
            reason,
        } => {
            if ctl.shared.is_allowed(&policy, addr) {
                return Response::err(format!(
                    "{addr} is on the allow list; allowed sources are never banned"
                ));
            }
            let ban = Ban {
                source: source_label(addr, prefix),
                since_ns: now,
                until_ns: until(for_s),
                tier: "manual".into(),
                reason: reason.unwrap_or_else(|| "operator".into()),
                evidence: Evidence::default(),
            };
            ctl.shared.ban(source_key(addr, prefix), ban.clone());
            sync();
            tracing::warn!(source = %ban.source, reason = %ban.reason, "banned by operator");
            Response::ok(ban)
        }
        Request::Unban { addr } => match ctl.shared.unban(source_key(addr, prefix)) {
            Some(b) => {
                sync();
                tracing::info!(source = %b.source, "unbanned by operator");
                Response::ok(b)
            }
            None => Response::err(format!("{} is not banned", source_label(addr, prefix))),
        },
        Request::Allow { net, for_s } | Request::Deny { net, for_s } => {
            let kind = if matches!(req, Request::Allow { .. }) {
                ListKind::Allow
            } else {
                ListKind::Deny
            };
            let e = Entry {
                net: net.trunc(),
                kind,
                since_ns: now,
                until_ns: until(for_s),
                provenance: "ctl".into(),
            };
            let entries = ctl.shared.lists().with(e.clone(), now);
            ctl.shared.set_entries(entries);
            sync();
            tracing::info!(net = %e.net, kind = ?e.kind, "listed by operator");
            Response::ok(e)
        }
        Request::Unlist { net } => match ctl.shared.lists().without(net.trunc()) {
            Some(entries) => {
                ctl.shared.set_entries(entries);
                sync();
                Response::ok(net.trunc())
            }
            None => Response::err(format!("no runtime entry for {net}")),
        },
        Request::Entries => Response::ok(ctl.shared.lists().entries()),
        Request::Stats => Response::ok(Stats::gather(ctl, &keeper.lock().expect("keeper lock"))),
        Request::Top { n } => Response::ok(top(ctl, n.min(1000))),
        Request::Reload => match reload() {
            Ok(msg) => {
                sync();
                Response::ok(msg)
            }
            Err(e) => Response::err(format!("reload failed, the old config stays: {e:#}")),
        },
    }
}

/// Sends one request and reads the answer.
pub fn call(path: &Path, req: &Request) -> anyhow::Result<Response> {
    let s = UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach sipwall at {}: {e} (is it running? root?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    // MSG_NOSIGNAL: one-shot commands take SIGPIPE's default action (for `| head`), and a
    // daemon that hung up must be an error message, not a silent exit 141.
    let mut rest = &line[..];
    while !rest.is_empty() {
        match socket2::SockRef::from(&s).send_with_flags(rest, libc::MSG_NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => anyhow::bail!("sipwall at {} hung up: {e}", path.display()),
        }
    }
    let mut answer = String::new();
    match BufReader::new(&s).read_line(&mut answer) {
        Ok(0) => anyhow::bail!("sipwall at {} hung up without answering", path.display()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            anyhow::bail!("sipwall at {} hung up: {e}", path.display())
        }
        Err(e) => return Err(e.into()),
    }
    Ok(serde_json::from_str(&answer)?)
}

fn when(ns: Option<u64>, now: u64) -> String {
    match ns {
        None => "never".into(),
        Some(t) if t <= now => "now".into(),
        Some(t) => format!(
            "in {}",
            humantime::format_duration(Duration::from_secs((t - now).div_ceil(1_000_000_000)))
        ),
    }
}

fn ago(ns: u64, now: u64) -> String {
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(now.saturating_sub(ns) / 1_000_000_000))
    )
}

/// The human form of an answer.
pub fn render(req: &Request, data: &serde_json::Value) -> String {
    let now = now_ns();
    let mut out = String::new();
    match req {
        Request::Bans => {
            let bans: Vec<Ban> = serde_json::from_value(data.clone()).unwrap_or_default();
            if bans.is_empty() {
                return "no bans\n".into();
            }
            out += &format!(
                "{:<26} {:<14} {:<14} {:<12} {:<16} {:>8}  evidence\n",
                "SOURCE", "SINCE", "EXPIRES", "TIER", "REASON", "COUNT"
            );
            for b in bans {
                let e = &b.evidence;
                let mut ev = Vec::new();
                if !e.users.is_empty() {
                    ev.push(format!("users {}", e.users.join(",")));
                }
                if !e.first_request.is_empty() {
                    ev.push(format!("first {:?}", e.first_request));
                }
                if !e.last_request.is_empty() && e.last_request != e.first_request {
                    ev.push(format!("last {:?}", e.last_request));
                }
                out += &format!(
                    "{:<26} {:<14} {:<14} {:<12} {:<16} {:>8}  {}\n",
                    b.source,
                    ago(b.since_ns, now),
                    when(b.until_ns, now),
                    b.tier,
                    b.reason,
                    e.failures,
                    ev.join("; ")
                );
            }
        }
        Request::Entries => {
            let entries: Vec<Entry> = serde_json::from_value(data.clone()).unwrap_or_default();
            if entries.is_empty() {
                return "no runtime entries\n".into();
            }
            out += &format!(
                "{:<6} {:<34} {:<14} {:<14} from\n",
                "KIND", "NETWORK", "SINCE", "EXPIRES"
            );
            for e in entries {
                out += &format!(
                    "{:<6} {:<34} {:<14} {:<14} {}\n",
                    if e.kind == ListKind::Allow {
                        "allow"
                    } else {
                        "deny"
                    },
                    e.net.to_string(),
                    ago(e.since_ns, now),
                    when(e.until_ns, now),
                    e.provenance
                );
            }
        }
        Request::Stats => {
            let s: Stats = serde_json::from_value(data.clone()).unwrap_or_default();
            let t = &s.totals;
            out += &format!(
                "up {}{}; accepted {} dropped {} observed {} (since first start)\n",
                humantime::format_duration(Duration::from_secs(s.uptime_s)),
                if s.dry_run { ", DRY RUN" } else { "" },
                t.accepted,
                t.dropped,
                t.observed
            );
            out += "by reason:\n";
            for (r, n) in &t.reasons {
                out += &format!("  {r:<22} {n}\n");
            }
            if s.dry_run {
                out += &format!("would have dropped: {}\n", s.would_drop.dropped);
                for (r, n) in &s.would_drop.reasons {
                    out += &format!("  {r:<22} {n}\n");
                }
            }
            out += "queues:\n";
            for q in &s.queues {
                out += &format!(
                    "  {:<4} accepted {} dropped {} recv-errors {} backlog {} kernel-dropped {} enobufs {}\n",
                    q.queue,
                    q.accepted,
                    q.dropped,
                    q.recv_errors,
                    opt(q.backlog),
                    opt(q.kernel_dropped),
                    opt(q.user_dropped)
                );
            }
            out += "tracked:";
            for (k, n) in &s.tracked {
                out += &format!(" {k} {n}");
            }
            out += &format!("\nbans: {}", s.bans);
            for (tier, n) in &s.bans_by_tier {
                out += &format!(" {tier} {n}");
            }
            out += &format!(
                "\nruntime entries: allow {} deny {}\n",
                s.allow_entries, s.deny_entries
            );
            if s.offload {
                out += "kernel sets (packets dropped or passed):";
                for (k, n) in &s.kernel_sets {
                    out += &format!(" {k} {n}");
                }
                out += "\n";
            } else {
                out += "kernel offload: off\n";
            }
        }
        Request::Top { .. } => {
            let v: Vec<SourceTally> = serde_json::from_value(data.clone()).unwrap_or_default();
            out += &format!(
                "{:<40} {:>10} {:>10}\n",
                "SOURCE (last second)", "PACKETS/S", "DROPS/S"
            );
            for t in v {
                out += &format!(
                    "{:<40} {:>10} {:>10}\n",
                    t.source.to_string(),
                    t.packets,
                    t.drops
                );
            }
        }
        _ => {
            out += &match data {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "ok".into(),
                v => v.to_string(),
            };
            out += "\n";
        }
    }
    out
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_the_client_writes_them() {
        for r in [
            Request::Bans,
            Request::Ban {
                addr: "198.18.0.77".parse().unwrap(),
                for_s: Some(60),
                reason: Some("svcrack".into()),
            },
            Request::Deny {
                net: "203.0.113.0/24".parse().unwrap(),
                for_s: None,
            },
            Request::Top { n: 10 },
        ] {
            let line = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"ban","addr":"not-ip"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
    }
}
