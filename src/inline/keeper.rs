//! The daemon's housekeeping, off the packet path: it saves state, keeps the kernel's ban and
//! deny sets equal to the engine's, loads blocklist feeds, and runs the `on_ban` hook. Workers
//! only touch [`Shared`](crate::engine::Shared); the keeper notices changes by its version.

use super::offload::{Offload, Wanted};
use super::state::{Loaded, SavedCalls, StateDir};
use super::{Control, WorkerStats};
use crate::config::feed;
use crate::engine::{Ban, Calls, ListKind, Totals};
use ipnet::IpNet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::SystemTime;

const SECOND: u64 = 1_000_000_000;
/// Counters alone (no ban or entry changed) are saved this often.
const SAVE_COUNTERS_NS: u64 = 10 * SECOND;
/// Feed files are checked for changes this often.
const FEED_CHECK_NS: u64 = 10 * SECOND;
/// After a failed kernel sync, the next try (each runs nft).
const SYNC_RETRY_NS: u64 = 5 * SECOND;
/// Calls in progress are saved at most this often, when a worker published new ones.
const SAVE_CALLS_NS: u64 = SECOND;
/// The calls restored at start are let go this long after: every worker took them when it
/// started (all start with the daemon).
const RESTORED_CALLS_KEPT_NS: u64 = 10 * SECOND;

pub struct Keeper {
    ctl: Arc<Control>,
    state: Option<StateDir>,
    offload: Option<Offload>,
    /// Counters from before this start (the state file's).
    base: Totals,
    saved_version: u64,
    last_save: u64,
    save_error: Option<String>,
    /// The calls board's version last saved, when, and the last error saving calls.
    calls_saved: (u64, u64),
    calls_error: Option<String>,
    synced: Option<(u64, u64)>,
    sync_error: Option<String>,
    /// When a failed kernel sync is tried again (not at every tick: each try runs nft).
    sync_retry_at: u64,
    known_bans: HashMap<String, (u64, Option<u64>)>,
    feeds: HashMap<PathBuf, Option<SystemTime>>,
    last_feed_check: u64,
    /// When the calls restored at start are let go (once).
    release_restored_at: Option<u64>,
    hook: Hook,
}

/// Options the daemon starts the keeper with.
pub struct KeeperOptions {
    pub state_dir: Option<PathBuf>,
    /// Kernel offload of bans and deny entries (nftables).
    pub offload: bool,
}

impl Keeper {
    /// Restores saved state into `ctl.shared`, builds the kernel sets and loads feeds. Problems
    /// (an unreadable state file, no nft) are logged; the daemon starts regardless.
    pub fn start(ctl: Arc<Control>, opts: &KeeperOptions, now: u64) -> Keeper {
        let mut base = Totals::default();
        let state = opts.state_dir.as_deref().and_then(|dir| {
            let s = StateDir::open(dir)
                .map_err(|e| tracing::error!(dir = %dir.display(), error = %e, "state directory unusable: bans will not survive a restart"))
                .ok()?;
            match s.load(now) {
                Ok(Loaded::Empty) => tracing::info!(path = %s.path().display(), "no saved state"),
                Ok(Loaded::State { snapshot, saved_ns, counters }) => {
                    let (bans, entries) = (snapshot.bans.len(), snapshot.entries.len());
                    let skipped = ctl.shared.restore(snapshot, now);
                    base = counters;
                    tracing::info!(bans, entries, skipped, age_s = now.saturating_sub(saved_ns) / SECOND, "state restored");
                }
                Ok(Loaded::Corrupt { error, moved_to }) => tracing::error!(
                    %error, moved_to = %moved_to.display(),
                    "state file unreadable: moved aside, starting without saved bans"
                ),
                Err(e) => tracing::error!(error = %e, "state file unreadable, starting without saved bans"),
            }
            restore_calls(&ctl, &s, now);
            Some(s)
        });
        // The table is made with the restored bans already in it (one transaction): while
        // sipwall was down the old table kept them out, and the new one never stands empty.
        let offload = if opts.offload {
            let want = wanted(&ctl, &ctl.shared.list());
            match Offload::create(&ctl.current().config.sip, &want, now) {
                Ok((off, newly)) => {
                    if !newly.is_empty() {
                        tracing::info!(
                            sources = newly.len(),
                            "blocked in the kernel; their conntrack entries deleted"
                        );
                    }
                    Some(off)
                }
                Err(e) => {
                    tracing::error!(error = %e, "kernel offload off: bans are enforced by sipwall only");
                    None
                }
            }
        } else {
            None
        };
        let known_bans = ctl
            .shared
            .list()
            .into_iter()
            .map(|b| (b.source.clone(), (b.since_ns, b.until_ns)))
            .collect();
        let mut k = Keeper {
            hook: Hook::default(),
            ctl,
            state,
            offload,
            base,
            saved_version: u64::MAX,
            last_save: now,
            save_error: None,
            calls_saved: (0, now),
            calls_error: None,
            synced: None,
            sync_error: None,
            sync_retry_at: 0,
            known_bans,
            feeds: HashMap::new(),
            last_feed_check: now,
            release_restored_at: Some(now + RESTORED_CALLS_KEPT_NS),
        };
        k.load_feeds(now);
        k.tick(now);
        k
    }

    /// Once every ~200 ms, and after every operator command.
    pub fn tick(&mut self, now: u64) {
        let shared = self.ctl.shared.clone();
        shared.expire(now);
        if now.saturating_sub(self.last_feed_check) >= FEED_CHECK_NS {
            self.last_feed_check = now;
            if self.feeds_changed() {
                self.load_feeds(now);
            }
        }
        let version = shared.version();
        let generation = self
            .ctl
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        if self.synced != Some((version, generation)) {
            let bans = shared.list();
            self.new_bans(&bans, now);
            // After a failed kernel sync, the next waits a little.
            if now >= self.sync_retry_at {
                if self.sync_kernel(&bans, now) {
                    self.synced = Some((version, generation));
                } else {
                    self.sync_retry_at = now + SYNC_RETRY_NS;
                }
            }
        }
        if version != self.saved_version && now.saturating_sub(self.last_save) >= SECOND
            || now.saturating_sub(self.last_save) >= SAVE_COUNTERS_NS
        {
            self.save(now);
        }
        if now.saturating_sub(self.calls_saved.1) >= SAVE_CALLS_NS {
            self.save_calls(now);
        }
        if self.release_restored_at.is_some_and(|at| now >= at) {
            self.release_restored_at = None;
            self.ctl.calls.lock().expect("calls lock").restored = None;
        }
        self.hook.reap();
    }

    /// The last save, at stop (after the workers published their calls a last time).
    pub fn finish(&mut self, now: u64) {
        self.save(now);
        self.save_calls(now);
    }

    /// Saves the workers' calls if they published new ones since the last save. Before any
    /// worker has, the file keeps what the last run saved.
    fn save_calls(&mut self, now: u64) {
        let Some(state) = &self.state else { return };
        let (version, by_queue): (u64, Vec<Arc<Calls>>) = {
            let board = self.ctl.calls.lock().expect("calls lock");
            if board.version == self.calls_saved.0 {
                return;
            }
            (board.version, board.by_queue.values().cloned().collect())
        };
        let saved = SavedCalls {
            seed: self.ctl.shared.table_seed(),
            saved_ns: now,
            calls: Calls::union(by_queue.iter().map(|c| &**c)),
        };
        let written = state.save_calls(&saved);
        if reported(
            written,
            &mut self.calls_error,
            "calls in progress",
            &state.calls_path(),
        ) {
            self.calls_saved.0 = version;
        }
        self.calls_saved.1 = now;
    }

    /// Counters since the first start: saved ones plus this run's.
    pub fn totals(&self, live: &[WorkerStats]) -> Totals {
        let mut t = self.base.clone();
        for w in live {
            t.add(&w.counters);
        }
        t
    }

    /// Packets each kernel set's rules matched; empty without offload.
    pub fn kernel_counters(&self) -> std::collections::BTreeMap<String, u64> {
        self.offload
            .as_ref()
            .and_then(|o| o.counters().ok())
            .unwrap_or_default()
    }

    pub fn offloading(&self) -> bool {
        self.offload.is_some()
    }

    pub fn state_path(&self) -> Option<PathBuf> {
        self.state.as_ref().map(StateDir::path)
    }

    fn save(&mut self, now: u64) {
        let Some(state) = &self.state else { return };
        let version = self.ctl.shared.version();
        let totals = self.totals(&self.ctl.worker_stats());
        let written = state.save(self.ctl.shared.snapshot(), totals, now);
        if reported(written, &mut self.save_error, "state", &state.path()) {
            self.saved_version = version;
        }
        self.last_save = now;
    }

    /// Makes the kernel sets (and, after a reload that changed the SIP ports, the table) match
    /// the bans and lists; false when the kernel is not yet up to date.
    fn sync_kernel(&mut self, bans: &[Ban], now: u64) -> bool {
        let Some(off) = &mut self.offload else {
            return true;
        };
        let policy = self.ctl.current();
        let want = wanted(&self.ctl, bans);
        // A reload changed the SIP ports: the table is rebuilt for them, filled in the same
        // transaction. If that fails, the old table's sets are kept current meanwhile, and
        // the rebuild is tried again a little later.
        let rebuild = off.ports() != super::offload::sip_ports(&policy.config.sip);
        let mut failed = None;
        let synced = match rebuild.then(|| off.rebuild(&policy.config.sip, &want, now)) {
            Some(Ok(newly)) => {
                tracing::info!(ports = ?off.ports(), "kernel table rebuilt for the new SIP ports");
                Ok(newly)
            }
            Some(Err(e)) => {
                failed = Some(format!("kernel table kept for the old SIP ports: {e}"));
                off.sync(&want, now)
            }
            None => off.sync(&want, now),
        };
        match synced {
            Ok(newly) => {
                for n in newly {
                    tracing::info!(source = %n, "blocked in the kernel; its conntrack entries deleted");
                }
            }
            Err(e) => {
                failed = Some(format!(
                    "kernel sets not updated; sipwall still drops these sources itself: {e}"
                ))
            }
        }
        // Each failure is logged once, not at every tick it lasts.
        if let Some(f) = failed
            .as_ref()
            .filter(|&f| self.sync_error.as_ref() != Some(f))
        {
            tracing::error!("{f}");
        }
        self.sync_error = failed;
        self.sync_error.is_none()
    }

    /// Bans not seen before, or made longer: the hook runs for each.
    fn new_bans(&mut self, bans: &[Ban], now: u64) {
        let mut seen = HashMap::with_capacity(bans.len());
        let policy = self.ctl.current();
        let hook = &policy.config.bans;
        for b in bans {
            let v = (b.since_ns, b.until_ns);
            if self.known_bans.get(&b.source) != Some(&v) {
                if let Some(cmd) = &hook.on_ban {
                    self.hook.fire(cmd, hook.on_ban_per_minute, b, now);
                }
            }
            seen.insert(b.source.clone(), v);
        }
        self.known_bans = seen;
    }

    fn feeds_changed(&self) -> bool {
        let policy = self.ctl.current();
        policy.config.feeds.len() != self.feeds.len()
            || policy
                .config
                .feeds
                .iter()
                .any(|f| self.feeds.get(&f.path) != Some(&mtime(&f.path)))
    }

    /// Reads every configured feed into the deny entries (their provenance is `feed:PATH`);
    /// entries of feeds no longer configured go. A feed that cannot be read keeps its old
    /// entries until they expire.
    pub fn load_feeds(&mut self, now: u64) {
        let policy = self.ctl.current();
        let shared = &self.ctl.shared;
        let mut lists_entries = shared.lists().entries().to_vec();
        let configured: Vec<String> = policy
            .config
            .feeds
            .iter()
            .map(|f| format!("feed:{}", f.path.display()))
            .collect();
        lists_entries
            .retain(|e| !e.provenance.starts_with("feed:") || configured.contains(&e.provenance));
        let mut lists = crate::engine::lists::Lists::new(lists_entries);
        self.feeds.clear();
        for (f, provenance) in policy.config.feeds.iter().zip(&configured) {
            self.feeds.insert(f.path.clone(), mtime(&f.path));
            let text = match std::fs::read_to_string(&f.path) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(feed = %f.path.display(), error = %e, "feed unreadable; its old entries stay until they expire");
                    continue;
                }
            };
            let p = feed::parse(&text);
            for (line, text) in &p.bad {
                tracing::warn!(feed = %f.path.display(), line, text, "feed line is not an address; skipped");
            }
            let until = now.saturating_add(f.ttl.as_nanos());
            lists = crate::engine::lists::Lists::new(lists.with_feed(
                provenance,
                &p.nets,
                ListKind::Deny,
                now,
                Some(until),
            ));
            tracing::info!(feed = %f.path.display(), entries = p.nets.len(), bad_lines = p.bad_count, "feed loaded");
        }
        shared.set_entries(lists.entries().to_vec());
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Whether a save succeeded. A failure (a full disk) is logged once while it lasts, not at
/// every retry, and its end once; the old file stays meanwhile.
fn reported(
    written: std::io::Result<()>,
    error: &mut Option<String>,
    what: &str,
    path: &Path,
) -> bool {
    match written {
        Ok(()) => {
            if error.take().is_some() {
                tracing::info!("{what} saved again");
            }
            true
        }
        Err(e) => {
            let e = e.to_string();
            if error.as_ref() != Some(&e) {
                tracing::error!(error = %e, path = %path.display(), "cannot save {what}; retrying");
            }
            *error = Some(e);
            false
        }
    }
}

/// Takes back the calls an earlier run saved: their seed keys this run's tables, and every
/// worker starts with them, so in-dialog requests and answers of calls in progress still pass.
fn restore_calls(ctl: &Control, state: &StateDir, now: u64) {
    match state.load_calls() {
        Ok(None) => {}
        Ok(Some(saved)) => {
            if !ctl.shared.set_table_seed(saved.seed) {
                tracing::warn!("saved calls not restored: the tables were already keyed");
                return;
            }
            let c = &saved.calls;
            tracing::info!(
                dialogs = c.dialogs.len(),
                pbx_requests = c.pbx_requests.len(),
                credentialed_requests = c.txns.len(),
                age_s = now.saturating_sub(saved.saved_ns) / SECOND,
                "calls in progress restored"
            );
            ctl.calls.lock().expect("calls lock").restored = Some(Arc::new(saved.calls));
        }
        Err(e) => tracing::warn!(
            error = %e, path = %state.calls_path().display(),
            "saved calls unreadable: ignored (calls in progress whose requests lack the secret domain may be cut)"
        ),
    }
}

/// What the kernel sets should hold: the bans, and the allow and deny entries of the config
/// and of the runtime lists.
fn wanted(ctl: &Control, bans: &[Ban]) -> Wanted {
    let policy = ctl.current();
    let mut want = Wanted::default();
    for b in bans {
        let Some(net) = net_of_label(&b.source) else {
            continue;
        };
        want.ban.insert(net, b.until_ns);
    }
    let lists = ctl.shared.lists();
    let mut allow: Vec<IpNet> = policy.config.sources.allow.clone();
    let mut deny: Vec<IpNet> = policy.config.sources.deny.clone();
    for e in lists.entries() {
        match e.kind {
            ListKind::Allow => allow.push(e.net),
            ListKind::Deny => deny.push(e.net),
        }
    }
    // Interval sets refuse overlapping elements; the kernel needs the merged form.
    want.allow = IpNet::aggregate(&allow)
        .into_iter()
        .map(|n| (n, None))
        .collect();
    want.deny = IpNet::aggregate(&deny)
        .into_iter()
        .map(|n| (n, None))
        .collect();
    want
}

/// A ban's source label as a network: an address, or an IPv6 prefix.
fn net_of_label(label: &str) -> Option<IpNet> {
    label
        .parse::<IpNet>()
        .ok()
        .or_else(|| label.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// The `on_ban` command: started, never waited for; at most `per_minute` a minute.
#[derive(Default)]
struct Hook {
    window_start: u64,
    in_window: u32,
    skipped: u64,
    children: Vec<Child>,
}

impl Hook {
    fn fire(&mut self, cmd: &str, per_minute: u32, b: &Ban, now: u64) {
        if now.saturating_sub(self.window_start) >= 60 * SECOND {
            if self.skipped > 0 {
                tracing::warn!(
                    skipped = self.skipped,
                    "on_ban hook: runs skipped by its rate limit"
                );
            }
            self.window_start = now;
            self.in_window = 0;
            self.skipped = 0;
        }
        if self.in_window >= per_minute {
            self.skipped += 1;
            return;
        }
        self.in_window += 1;
        let until = b
            .until_ns
            .map_or_else(|| "permanent".to_string(), |u| (u / SECOND).to_string());
        let started = Command::new("sh")
            .args(["-c", cmd])
            .env("SIPWALL_SOURCE", &b.source)
            .env("SIPWALL_TIER", &b.tier)
            .env("SIPWALL_REASON", &b.reason)
            .env("SIPWALL_UNTIL", until)
            .env("SIPWALL_FAILURES", b.evidence.failures.to_string())
            .env("SIPWALL_USERS", b.evidence.users.join(","))
            .stdin(std::process::Stdio::null())
            .spawn();
        match started {
            Ok(c) => self.children.push(c),
            Err(e) => tracing::error!(error = %e, "on_ban hook not started"),
        }
    }

    /// Collects finished hook runs (no zombies); reports failures.
    fn reap(&mut self) {
        self.children.retain_mut(|c| match c.try_wait() {
            Ok(Some(st)) => {
                if !st.success() {
                    tracing::warn!(status = %st, "on_ban hook failed");
                }
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
    }
}
