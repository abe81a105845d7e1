//! The `sipwall` command: replay, explain, check. Library errors become `anyhow` here only.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sipwall::config::{Config, Policy};
use sipwall::engine::{Engine, Shared, Verdict};
use sipwall::replay::{self, Capture, Sides, VerdictLine};
use sipwall::sip;
use std::io::{IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sipwall",
    version,
    about = "Inline SIP-aware packet filter: secret domain, scanners, rate limits, bans"
)]
struct Cli {
    /// Log lines on stderr: text, json, or fail2ban (see config/fail2ban). Level: SIPWALL_LOG.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
    Fail2ban,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML config (see config/sipwall.toml); built-in defaults without it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Secret domain (repeatable); replaces sip.domains.
    #[arg(long = "domain", short = 'd')]
    domains: Vec<String>,
    /// SIP port, UDP and TCP (repeatable); replaces sip.udp_ports and sip.tcp_ports (FreePBX's
    /// chan_sip listens on 5160, for one).
    #[arg(long = "port")]
    ports: Vec<u16>,
}

#[derive(Args)]
struct DaemonArgs {
    /// Where bans, runtime entries, failure histories and counters are kept across restarts.
    #[arg(long, default_value = "/var/lib/sipwall")]
    state_dir: PathBuf,
    /// Keep nothing across restarts.
    #[arg(long, conflicts_with = "state_dir")]
    no_state: bool,
    /// Control socket for `sipwall ctl` (root only).
    #[arg(long, default_value = sipwall::inline::ctl::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Serve Prometheus metrics at ADDR (e.g. 127.0.0.1:9160), path /metrics.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Do not put bans and deny entries into nftables sets (sipwall still drops them itself).
    #[arg(long)]
    no_offload: bool,
    /// Queue backend: sipwall's netlink layer (batched), or the nfq crate (for comparison).
    #[arg(long, value_enum, default_value = "netlink")]
    backend: sipwall::inline::queue::Backend,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Active bans with their evidence.
    Bans,
    /// Ban an address (an IPv6 address bans its tracked prefix).
    Ban {
        addr: IpAddr,
        /// How long (e.g. 1h, 7d); until released without it.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Release a ban (and forget the source's failures).
    Unban { addr: IpAddr },
    /// Allow a network (never banned, no domain checks).
    Allow {
        net: String,
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
    },
    /// Deny a network.
    Deny {
        net: String,
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
    },
    /// Remove a runtime allow or deny entry.
    Unlist { net: String },
    /// Runtime allow and deny entries (operator's and feeds').
    Entries,
    /// Counters by reason, queues, tracked sources, bans, kernel sets.
    Stats,
    /// Busiest sources by packets and drops, refreshing.
    Top {
        #[arg(short, default_value_t = 15)]
        n: usize,
        /// Refresh this many times (default: until interrupted; once when not a terminal).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Reload the config (as SIGHUP).
    Reload,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RulesAction {
    Print,
    Apply,
    Remove,
}

#[derive(Subcommand)]
enum Cmd {
    /// Say, for every SIP message in captures, what sipwall would do inline and why.
    Replay {
        #[command(flatten)]
        common: Common,
        /// PBX address (repeatable); inferred from the capture when absent.
        #[arg(long = "pbx")]
        pbx: Vec<IpAddr>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// Write one JSON line per SIP message (and per packet carrying none).
        #[arg(long)]
        verdicts: Option<PathBuf>,
        #[arg(required = true)]
        pcaps: Vec<PathBuf>,
    },
    /// Judge one SIP message (a UDP payload) and show the facts used.
    Explain {
        #[command(flatten)]
        common: Common,
        /// Source address the message comes from.
        #[arg(long, default_value = "192.0.2.1")]
        source: IpAddr,
        #[arg(long)]
        json: bool,
        /// Message file, or - for standard input.
        file: PathBuf,
    },
    /// Filter inline: serve NFQUEUE queues in front of the PBX until SIGTERM/SIGINT; SIGHUP
    /// reloads the config.
    Run {
        #[command(flatten)]
        common: Common,
        /// PBX address (repeatable); needed only where sipwall forwards (not on the PBX host).
        #[arg(long = "pbx")]
        pbx: Vec<IpAddr>,
        /// Queue range A:B (one worker each), or one queue number.
        #[arg(long, default_value = "0")]
        queues: String,
        /// Install sipwall's kernel rules at start and remove them at stop.
        #[arg(long)]
        apply_rules: bool,
        /// With --apply-rules: drop SIP while sipwall is not running (default: let it through).
        #[arg(long)]
        fail_closed: bool,
        /// Judge and log everything, drop nothing; report what would have been dropped.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Talk to a running sipwall: bans, allow/deny, stats, top, reload.
    Ctl {
        /// The daemon's control socket.
        #[arg(long, default_value = sipwall::inline::ctl::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        cmd: CtlCmd,
    },
    /// Print, apply or remove the kernel rules that queue SIP to sipwall.
    Rules {
        #[arg(value_enum)]
        action: RulesAction,
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "0")]
        queues: String,
        #[arg(long)]
        fail_closed: bool,
        /// SIP port, UDP and TCP (repeatable), as `run --port`.
        #[arg(long = "port")]
        ports: Vec<u16>,
    },
    /// Write a synthetic mixed capture (phones, PBX answers, scanners, a password guesser).
    Gen {
        #[arg(long, default_value = "sip.example.com")]
        domain: String,
        #[arg(long, default_value_t = 300_000)]
        packets: usize,
        out: PathBuf,
    },
    /// Validate a config; exit 1 with the error.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `--port`: the SIP ports, UDP and TCP, in place of the config's (none given: the config's).
fn override_ports(cfg: &mut Config, ports: &[u16]) {
    if !ports.is_empty() {
        cfg.sip.udp_ports = ports.to_vec();
        cfg.sip.tcp_ports = ports.to_vec();
    }
}

fn load(common: &Common, pbx: &[IpAddr]) -> Result<Policy> {
    let mut cfg = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if !common.domains.is_empty() {
        cfg.sip.domains = common.domains.clone();
    }
    override_ports(&mut cfg, &common.ports);
    if !pbx.is_empty() {
        cfg.sip.pbx = pbx.to_vec();
    }
    Ok(cfg.compile()?)
}

fn main() {
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("SIPWALL_LOG").unwrap_or_else(|_| {
            // The daemon tells about drops and bans by default; the one-shot commands stay quiet.
            if matches!(cli.cmd, Cmd::Run { .. }) {
                "info"
            } else {
                "error"
            }
            .into()
        })
    };
    let base = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => base.init(),
        LogFormat::Json => base.json().init(),
        LogFormat::Fail2ban => base
            .event_format(sipwall::inline::log::Fail2banFormat)
            .init(),
    }
    if !matches!(cli.cmd, Cmd::Run { .. }) {
        // A one-shot command piped into `head` stops quietly when the reader goes, as other
        // command-line tools do, instead of panicking on the failed print. The daemon keeps
        // SIGPIPE ignored: a control client hanging up must not end it.
        // SAFETY: setting a signal's disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sipwall: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Check { config } => {
            let cfg = match &config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            let p = cfg.compile()?;
            println!(
                "ok: {} secret domain(s), {} PBX address(es), {} allow and {} deny entries, {} scanner patterns, {} ban tier(s); SIP on udp {:?}, tcp {:?}, tls {:?}",
                p.domains.len(),
                p.pbx.len(),
                cfg.sources.allow.len(),
                cfg.sources.deny.len(),
                p.scanner_patterns.len(),
                p.tiers.len(),
                cfg.sip.udp_ports,
                cfg.sip.tcp_ports,
                cfg.sip.tls_ports
            );
            if p.domains.is_empty() {
                println!("warning: no secret domain: every out-of-dialog request will be dropped as no-secret-domain");
            }
            Ok(0)
        }
        Cmd::Run {
            common,
            pbx,
            queues,
            apply_rules,
            fail_closed,
            dry_run,
            daemon,
        } => run_inline(
            &common,
            &pbx,
            &queues,
            apply_rules,
            fail_closed,
            dry_run,
            &daemon,
        ),
        Cmd::Ctl { socket, json, cmd } => ctl_cmd(&socket, json, cmd),
        Cmd::Rules {
            action,
            config,
            queues,
            fail_closed,
            ports,
        } => {
            let mut cfg = match &config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            override_ports(&mut cfg, &ports);
            let rules = kernel_rules(&cfg, &queues, fail_closed)?;
            match action {
                RulesAction::Print => print!("{}", rules.script()),
                RulesAction::Apply => rules.apply()?,
                RulesAction::Remove => {
                    sipwall::inline::rules::remove()?;
                    sipwall::inline::offload::remove()?;
                }
            }
            Ok(0)
        }
        Cmd::Gen {
            domain,
            packets,
            out,
        } => {
            let g = sipwall::gen::Generator::mixed(&domain, packets);
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?,
            );
            g.write_pcap(&mut f)?;
            f.flush()?;
            println!("{}: {} packets; {:?}", out.display(), g.len(), g.expect);
            Ok(0)
        }
        Cmd::Explain {
            common,
            source,
            json,
            file,
        } => explain(&common, source, json, &file),
        Cmd::Replay {
            common,
            pbx,
            json,
            verdicts,
            pcaps,
        } => replay_cmd(&common, &pbx, json, verdicts, &pcaps),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn explain(common: &Common, source: IpAddr, json: bool, file: &PathBuf) -> Result<i32> {
    let policy = Arc::new(load(common, &[])?);
    let mut msg = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut msg)?;
    } else {
        msg = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    let mut engine = Engine::new(policy.clone(), Arc::new(Shared::new()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let d = engine.explain(&msg, source, now);
    let mut facts = serde_json::Map::new();
    if let Ok(m) = sip::parse(&msg, sip::Framing::Datagram) {
        let host =
            |h: Option<sip::Host>| h.map_or(serde_json::Value::Null, |h| h.to_string().into());
        let secret = |h| policy.is_secret_host(h);
        match m.start {
            sip::StartLine::Request { method, uri } => {
                facts.insert("method".into(), method.to_string().into());
                facts.insert("request_uri_host".into(), host(uri.host));
                facts.insert("request_uri_host_is_secret".into(), secret(uri.host).into());
            }
            sip::StartLine::Response { status, .. } => {
                facts.insert("status".into(), status.into());
            }
        }
        facts.insert("to_host".into(), host(m.to.host()));
        facts.insert("to_host_is_secret".into(), secret(m.to.host()).into());
        facts.insert("from_host".into(), host(m.from.host()));
        facts.insert("from_host_is_secret".into(), secret(m.from.host()).into());
        facts.insert("to_tag".into(), m.to.tag.map(lossy).into());
        facts.insert("call_id".into(), lossy(m.call_id).into());
        facts.insert("user_agent".into(), m.user_agent.map(lossy).into());
        facts.insert(
            "scanner_pattern".into(),
            m.user_agent.and_then(|ua| policy.scanner(ua)).into(),
        );
        facts.insert("has_credentials".into(), m.authorization.is_some().into());
    }
    let out = serde_json::json!({
        "verdict": d.verdict.as_str(),
        "reason": d.reason.id(),
        "error": d.error.map(|e| e.describe()),
        "source": source.to_string(),
        "facts": facts,
    });
    if json {
        println!("{out}");
    } else {
        println!(
            "verdict: {}\nreason:  {}",
            d.verdict.as_str(),
            d.reason.id()
        );
        if let Some(e) = d.error {
            println!("error:   {e}");
        }
        println!("source:  {source}");
        for (k, v) in &facts {
            println!(
                "{k}: {}",
                if let Some(s) = v.as_str() {
                    s.to_string()
                } else {
                    v.to_string()
                }
            );
        }
        if d.verdict == Verdict::Drop {
            println!("hint:    {}", hint(d.reason.id()));
        }
    }
    Ok(0)
}

fn hint(reason: &str) -> &'static str {
    match reason {
        "no-secret-domain" => "the host of the Request-URI, To and From must each be a secret domain (set the phone's domain/realm to it)",
        "unknown-dialog" => "a request with a To tag whose Call-ID sipwall never saw start, and whose From/To are not the secret domain",
        "scanner" => "the User-Agent matches a scanner pattern ([scanners] in the config)",
        "method-not-allowed" => "the method is not in [methods] allow, or only allowed sources may use it",
        "malformed" => "the PBX could read this message differently from sipwall; fix the sender",
        "not-sip" => "the payload is not a SIP message",
        "denied-source" => "the source is on the deny list",
        _ => "see the reason table in the README",
    }
}

fn replay_cmd(
    common: &Common,
    pbx: &[IpAddr],
    json: bool,
    verdicts: Option<PathBuf>,
    pcaps: &[PathBuf],
) -> Result<i32> {
    let mut policy = load(common, pbx)?;
    let mut cap = Capture::default();
    for p in pcaps {
        cap.read(p)?;
    }
    cap.sort();
    let c = &policy.config.sip;
    let mut sides = Sides {
        pbx: policy.pbx.clone(),
        udp_ports: c.udp_ports.clone(),
        // TLS ports carry TCP the engine judges too (the ClientHello's SNI).
        tcp_ports: c.tcp_ports.iter().chain(&c.tls_ports).copied().collect(),
    };
    let mut inferred = false;
    if sides.pbx.is_empty() {
        match replay::infer_pbx(&cap, &sides.udp_ports, &sides.tcp_ports) {
            found if !found.is_empty() => {
                sides.pbx = found.clone();
                policy.pbx = found;
                inferred = true;
                if !json {
                    let list: Vec<String> = sides.pbx.iter().map(IpAddr::to_string).collect();
                    eprintln!(
                        "sipwall: no --pbx given; inferred PBX {} (addresses that receive SIP requests as a server does)",
                        list.join(", ")
                    );
                }
            }
            _ => {
                let found = replay::request_ports(&cap);
                let elsewhere: Vec<String> = found
                    .iter()
                    .take(3)
                    .map(|(t, port, n)| format!("{} port {port} ({n})", t.as_str()))
                    .collect();
                let hint = match found.first() {
                    Some((_, port, _)) => format!(
                        "SIP requests go to {}: give --port {port} (or sip.udp_ports/tcp_ports in --config)",
                        elsewhere.join(", ")
                    ),
                    None => "give --pbx".into(),
                };
                bail!(
                    "no SIP requests on udp ports {:?} / tcp ports {:?} in the capture; {hint}",
                    sides.udp_ports,
                    sides.tcp_ports
                )
            }
        }
    }
    if policy.domains.is_empty() && !json {
        eprintln!(
            "sipwall: no secret domain (--domain): every out-of-dialog request will be dropped"
        );
    }
    let mut engine = Engine::new(Arc::new(policy), Arc::new(Shared::new()));
    let bar = if std::io::stderr().is_terminal() && cap.frames.len() > 200_000 {
        indicatif::ProgressBar::new(cap.frames.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut out = match &verdicts {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut write_err = None;
    let mut writer = |l: &VerdictLine| {
        if let Some(w) = out.as_mut() {
            if let Err(e) = serde_json::to_writer(&mut *w, l)
                .map_err(std::io::Error::from)
                .and_then(|_| w.write_all(b"\n"))
            {
                write_err.get_or_insert(e);
            }
        }
    };
    let summary = replay::run(
        &mut engine,
        &sides,
        &cap,
        if verdicts.is_some() {
            Some(&mut writer)
        } else {
            None
        },
        |i| bar.set_position(i as u64),
    );
    bar.finish_and_clear();
    if let Some(e) = write_err {
        bail!("writing verdicts: {e}");
    }
    if let Some(mut w) = out {
        w.flush()?;
    }
    if json {
        let mut v = serde_json::to_value(&summary)?;
        v["pbx"] = serde_json::json!(sides.pbx.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        v["pbx_inferred"] = inferred.into();
        v["banned_sources"] = serde_json::to_value(engine.shared().list())?;
        println!("{v}");
    } else {
        println!("packets:       {}", summary.packets);
        println!("sip messages:  {}", summary.sip_messages);
        println!("accepted:      {}", summary.accepted);
        println!("dropped:       {}", summary.dropped);
        println!("observed:      {}", summary.observed);
        println!("by reason:");
        for (r, n) in &summary.reasons {
            println!("  {r:<22} {n}");
        }
        println!("auth failures: {}", summary.auth_failures);
        println!("bans:          {}", summary.bans);
        let bans = engine.shared().list();
        for b in bans.iter().take(10) {
            let e = &b.evidence;
            if b.tier == "scanning" {
                println!(
                    "  {} {} after {} dropped request(s); last: {}",
                    b.source, b.tier, e.failures, e.last_request
                );
            } else {
                println!(
                    "  {} {} after {} failure(s), users tried: {}; first: {}",
                    b.source,
                    b.tier,
                    e.failures,
                    e.users.join(","),
                    e.first_request
                );
            }
        }
        if bans.len() > 10 {
            println!("  ... and {} more (--json lists them all)", bans.len() - 10);
        }
        println!(
            "elapsed:       {:.3} s ({:.0} packets/s)",
            summary.elapsed_s, summary.packets_per_s
        );
    }
    Ok(0)
}

fn parse_queues(s: &str) -> Result<(u16, u16)> {
    let (a, b) = s.split_once(':').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    if a > b {
        bail!("--queues {s}: the first queue is above the last");
    }
    Ok((a, b))
}

fn kernel_rules(
    cfg: &Config,
    queues: &str,
    fail_closed: bool,
) -> Result<sipwall::inline::rules::Rules> {
    let (first_queue, last_queue) = parse_queues(queues)?;
    Ok(sipwall::inline::rules::Rules {
        udp_ports: cfg.sip.udp_ports.clone(),
        tcp_ports: cfg.sip.tcp_ports.clone(),
        tls_ports: cfg.sip.tls_ports.clone(),
        first_queue,
        last_queue,
        fail_closed,
    })
}

fn run_inline(
    common: &Common,
    pbx: &[IpAddr],
    queues: &str,
    apply_rules: bool,
    fail_closed: bool,
    dry_run: bool,
    daemon: &DaemonArgs,
) -> Result<i32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use sipwall::inline::{ctl, keeper, metrics, now_ns, Control};
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;
    let policy = load(common, pbx)?;
    if policy.domains.is_empty() {
        bail!("no secret domain: give --domain or sip.domains (every out-of-dialog request would be dropped)");
    }
    let rules = kernel_rules(&policy.config, queues, fail_closed)?;
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
    let ctl = Control::new(Arc::new(policy), dry_run);
    let listener = ctl::bind(&daemon.socket)?;
    let http = match daemon.metrics {
        Some(a) => Some(
            tiny_http::Server::http(a)
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {a}: {e}"))?,
        ),
        None => None,
    };
    if dry_run {
        if let Err(e) = sipwall::inline::offload::remove() {
            tracing::debug!(error = %e, "no kernel sets to remove");
        }
    }
    // Saved bans are back (and in the kernel) before the first packet is judged.
    let keeper = Arc::new(Mutex::new(keeper::Keeper::start(
        ctl.clone(),
        &keeper::KeeperOptions {
            state_dir: (!daemon.no_state).then(|| daemon.state_dir.clone()),
            // A dry run drops nothing, in the kernel either.
            offload: !daemon.no_offload && !dry_run,
        },
        now_ns(),
    )));
    let reload: ctl::Reloader = {
        let (common, pbx, ctl, keeper) =
            (common.clone(), pbx.to_vec(), ctl.clone(), keeper.clone());
        let queues = queues.to_string();
        // The kernel rules in force; a reload that changes the SIP ports moves them too.
        let in_force = Mutex::new(rules.clone());
        Arc::new(move || {
            let p = load(&common, &pbx)?;
            if p.domains.is_empty() {
                bail!("no secret domain");
            }
            let new = kernel_rules(&p.config, &queues, fail_closed)?;
            let mut rules = in_force.lock().expect("rules lock");
            let moves = rules.update_commands(&new);
            if !moves.is_empty() {
                if apply_rules {
                    sipwall::inline::rules::run_all(&moves)
                        .context("moving the kernel rules to the new ports")?;
                } else {
                    tracing::warn!(
                        udp = ?new.udp_ports,
                        tcp = ?new.tcp_ports,
                        tls = ?new.tls_ports,
                        "SIP ports changed: the kernel rules (not sipwall's: no --apply-rules) must queue them"
                    );
                }
                *rules = new;
            }
            drop(rules);
            ctl.reload(Arc::new(p));
            keeper.lock().expect("keeper lock").load_feeds(now_ns());
            Ok("config reloaded".to_string())
        })
    };
    let mut workers = Vec::new();
    for q in rules.first_queue..=rules.last_queue {
        let ctl = ctl.clone();
        let backend = daemon.backend;
        workers.push(
            std::thread::Builder::new()
                .name(format!("queue-{q}"))
                .spawn(move || sipwall::inline::worker(q, ctl, backend))?,
        );
    }
    let mut helpers = Vec::new();
    {
        let (c, k, r) = (ctl.clone(), keeper.clone(), reload.clone());
        helpers.push(
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || ctl::serve(listener, c, k, r))?,
        );
    }
    if let Some(http) = http {
        let (c, k) = (ctl.clone(), keeper.clone());
        helpers.push(
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || metrics::serve(http, c, k))?,
        );
    }
    {
        let (c, k) = (ctl.clone(), keeper.clone());
        let keeper_thread = std::thread::Builder::new()
            .name("keeper".into())
            .spawn(move || {
                while !c.stop.load(Ordering::Acquire) {
                    k.lock().expect("keeper lock").tick(now_ns());
                    // Woken early by a worker that made a ban (Control::wake_keeper).
                    std::thread::park_timeout(sipwall::inline::KEEPER_TICK);
                }
            })?;
        let _ = ctl.keeper.set(keeper_thread.thread().clone());
        helpers.push(keeper_thread);
    }
    // Queues are bound before traffic is sent to them.
    std::thread::sleep(std::time::Duration::from_millis(100));
    if apply_rules {
        rules.apply()?;
    }
    eprintln!(
        "sipwall: filtering on queue(s) {queues}{}{}; control socket {}",
        if apply_rules { ", rules applied" } else { "" },
        if dry_run {
            ", dry run (nothing is dropped)"
        } else {
            ""
        },
        daemon.socket.display()
    );
    'serve: loop {
        for sig in signals.pending() {
            match sig {
                SIGHUP => match reload() {
                    Ok(m) => eprintln!("sipwall: {m}"),
                    Err(e) => eprintln!("sipwall: reload failed, keeping the old config: {e:#}"),
                },
                _ => break 'serve,
            }
        }
        if workers.iter().any(|w| w.is_finished()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Stop queueing first, then let the workers answer what is still queued.
    if apply_rules {
        if let Err(e) = sipwall::inline::rules::remove() {
            eprintln!("sipwall: removing rules: {e:#}");
        }
    }
    ctl.stop.store(true, Ordering::Release);
    let mut total = sipwall::engine::Counters::default();
    let mut would = sipwall::engine::Counters::default();
    let mut failed = None;
    let (mut packets, mut rate) = (0u64, 0f64);
    for w in workers {
        match w.join() {
            Ok(Ok(r)) => {
                packets += r.packets;
                rate += r.busy_rate();
                total.merge(&r.counters);
                would.merge(&r.would_drop);
                ctl.workers.lock().expect("workers lock").insert(r.queue, r);
            }
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some(anyhow::anyhow!("a worker panicked")),
        }
    }
    for h in helpers {
        let _ = h.join();
    }
    keeper.lock().expect("keeper lock").finish(now_ns());
    let _ = std::fs::remove_file(&daemon.socket);
    println!(
        "accepted: {}  dropped: {}  observed: {}",
        total.accepted, total.dropped, total.observed
    );
    println!(
        "packets: {packets}  packets/s while busy: {rate:.0}  cpu: {:.3}s",
        sipwall::inline::cpu_seconds()
    );
    for (r, n) in total.reasons() {
        println!("  {r:<22} {n}");
    }
    if dry_run {
        println!("would have dropped: {}", would.dropped);
        for (r, n) in would.reasons() {
            println!("  {r:<22} {n}");
        }
    }
    for b in ctl.shared.list() {
        println!(
            "banned {} {} ({} failures, users {})",
            b.source,
            b.tier,
            b.evidence.failures,
            b.evidence.users.join(",")
        );
    }
    match failed {
        Some(e) => Err(e.context("worker failed")),
        None => Ok(0),
    }
}

/// A network as typed: a CIDR, or an address (a /32 or /128).
fn net_arg(s: &str) -> Result<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| anyhow::anyhow!("{s}: not an address or CIDR"))
}

fn ctl_cmd(socket: &std::path::Path, json: bool, cmd: CtlCmd) -> Result<i32> {
    use sipwall::inline::ctl::{call, render, Request};
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs().max(1));
    let (req, repeat) = match cmd {
        CtlCmd::Bans => (Request::Bans, None),
        CtlCmd::Ban { addr, for_, reason } => (
            Request::Ban {
                addr,
                for_s: secs(for_),
                reason,
            },
            None,
        ),
        CtlCmd::Unban { addr } => (Request::Unban { addr }, None),
        CtlCmd::Allow { net, for_ } => (
            Request::Allow {
                net: net_arg(&net)?,
                for_s: secs(for_),
            },
            None,
        ),
        CtlCmd::Deny { net, for_ } => (
            Request::Deny {
                net: net_arg(&net)?,
                for_s: secs(for_),
            },
            None,
        ),
        CtlCmd::Unlist { net } => (
            Request::Unlist {
                net: net_arg(&net)?,
            },
            None,
        ),
        CtlCmd::Entries => (Request::Entries, None),
        CtlCmd::Stats => (Request::Stats, None),
        CtlCmd::Top { n, count } => {
            let count = count.unwrap_or(if std::io::stdout().is_terminal() {
                u64::MAX
            } else {
                1
            });
            (Request::Top { n }, Some(count))
        }
        CtlCmd::Reload => (Request::Reload, None),
    };
    let rounds = repeat.unwrap_or(1);
    for i in 0..rounds {
        let resp = call(socket, &req)?;
        if !resp.ok {
            eprintln!(
                "sipwall ctl: {}",
                resp.error.unwrap_or_else(|| "failed".into())
            );
            return Ok(1);
        }
        if json {
            println!("{}", serde_json::to_string(&resp.data)?);
        } else {
            if repeat.is_some() && std::io::stdout().is_terminal() {
                // Clear the screen and go home, as top does.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", render(&req, &resp.data));
        }
        std::io::stdout().flush()?;
        if i + 1 < rounds {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    Ok(0)
}
