//! The policy engine: no I/O, no clock. Drivers hand it packets and the time.
//!
//! Order for packets to the PBX (each outcome has a [`Reason`]):
//! allow list → deny list / ban → keepalive → not SIP / malformed → method → scanner →
//! secret domain (outside a dialog) or known dialog (inside one) → rate limit.
//! Responses to the PBX must answer a request the PBX sent. Packets from the PBX are observed:
//! its requests teach dialogs and transactions, its 401/403/407/404 answers count failures.

mod bans;
mod clock;
pub(crate) mod index;
pub mod lists;
mod memo;
mod rate;
mod reason;
mod scanning;
mod tables;

pub use bans::{key_of_label, Ban, Evidence, FailureHistory, Shared, Snapshot};
pub use clock::PassedClock;
pub use lists::{Entry, ListKind};
pub use reason::{Counters, Decision, Outcome, Reason, Totals, Verdict, What};

use crate::config::{Action, Policy};
use crate::net::tcp::{FlowKey, Push, TcpLimits, TcpStreams};
use crate::net::{Packet, Transport};
use crate::sip::{self, Framing, HeaderName, Message, Method, ParseError, Part, StartLine, Uri};
use bans::Failure;
use rate::{Class, RateLimits};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::sync::Arc;
pub use tables::{Calls, SavedTxn, MAX_SAVED_TXNS};
use tables::{Keys, Tables, Txn, TxnFrom};

/// A source as tracked for limits, failures and bans: an IPv4 address (as a v4-mapped IPv6
/// value) or an IPv6 address cut to the configured prefix.
pub type SourceKey = u128;

pub fn source_key(ip: IpAddr, v6_prefix: u8) -> SourceKey {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => {
                let bits = u128::from(a);
                let p = u32::from(v6_prefix.min(128));
                if p == 0 {
                    0
                } else {
                    bits & (u128::MAX << (128 - p))
                }
            }
        },
    }
}

/// How a tracked source is shown: the address, or the prefix for IPv6.
pub fn source_label(ip: IpAddr, v6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None if v6_prefix >= 128 => a.to_string(),
            None => format!(
                "{}/{}",
                std::net::Ipv6Addr::from(source_key(ip, v6_prefix)),
                v6_prefix
            ),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToPbx,
    FromPbx,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToPbx => "to-pbx",
            Direction::FromPbx => "from-pbx",
        }
    }
}

/// Per-worker engine. Time is nanoseconds since the Unix epoch, passed in by the driver.
pub struct Engine {
    policy: Arc<Policy>,
    shared: Arc<Shared>,
    rate: RateLimits,
    tables: Tables,
    tcp: TcpStreams,
    counters: Counters,
    last_maintenance: u64,
    /// The time of the last packet judged.
    now: u64,
    /// The part of the per-worker tables the next maintenance step sweeps.
    sweep_part: usize,
    /// Replay only (see [`Engine::skip_answers_to_dropped`]): transaction keys of requests
    /// dropped, whose answers the capture holds but an inline PBX would never have sent.
    dropped_txns: Option<ahash::AHashSet<u64>>,
    /// A ClientHello spread over TLS records, joined.
    tls_scratch: Vec<u8>,
    /// The scanner check's recent answers.
    user_agents: memo::UaMemo,
    /// The runtime allow/deny lists, as this worker last saw them.
    lists: bans::ListsCache,
    /// Drops per source that lead to a `scanning` ban.
    scanning: scanning::ScanTally,
    /// When the cap on bans last stopped a ban for scanning (logged once a minute).
    scanning_capped_at: u64,
}

/// Bans for scanning are made only while fewer bans than this (of any tier) stand.
pub const MAX_SCANNING_BANS: usize = 4096;

/// Dropped requests remembered for [`Engine::skip_answers_to_dropped`]; past it the memory
/// starts again (a few answers may then be read as if inline).
const MAX_DROPPED_TXNS: usize = 200_000;

/// Every entry of the per-worker tables is looked at once a round for expiry; a round is
/// swept in parts, one every `MAINTENANCE_NS / SWEEP_PARTS`: in one go, 200k sources and
/// transactions took the worker ~10 ms every second (measured), a stall in which the queue
/// fills (and, full, fails open); a part takes a sixteenth of it.
const MAINTENANCE_NS: u64 = 1_000_000_000;
const SWEEP_PARTS: usize = 16;

/// A message judged inside a packet.
struct Judged<'a> {
    what: What<'a>,
    decision: Decision,
}

impl Engine {
    pub fn new(policy: Arc<Policy>, shared: Arc<Shared>) -> Self {
        let l = &policy.config.limits;
        let tcp = TcpStreams::new(TcpLimits {
            max_flow_bytes: l.max_message_bytes,
            max_total_bytes: l.max_tcp_bytes,
            max_flows: l.max_tcp_flows,
            max_out_of_order: 16,
            idle_ns: l.tcp_idle.as_nanos(),
        });
        Engine {
            rate: RateLimits::new(&policy.config.rate, l.max_sources),
            tables: Tables::new(
                l.max_dialogs,
                l.max_transactions,
                l.dialog_idle.as_nanos(),
                shared.table_seed(),
            ),
            tcp,
            counters: Counters::default(),
            last_maintenance: 0,
            now: 0,
            sweep_part: 0,
            policy,
            lists: shared.lists_cache(),
            shared,
            dropped_txns: None,
            tls_scratch: Vec::new(),
            user_agents: memo::UaMemo::default(),
            scanning: scanning::ScanTally::default(),
            scanning_capped_at: 0,
        }
    }

    /// For replaying a capture taken without sipwall: the PBX answered requests that sipwall
    /// drops. Those answers are not read (reason `answer-to-dropped`), so a scanner's 404s do
    /// not count as failures inline would never see.
    pub fn skip_answers_to_dropped(&mut self) {
        self.dropped_txns.get_or_insert_with(Default::default);
    }

    /// Remembers a dropped request (replay only).
    fn note_dropped(&mut self, m: &Message) {
        if let (Some(set), StartLine::Request { .. }) = (&mut self.dropped_txns, m.start) {
            if set.len() >= MAX_DROPPED_TXNS {
                set.clear();
            }
            set.insert(self.tables.txn_key(m));
        }
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Sources with rate-limit state, confirmed and unanswered dialogs, transactions, TCP
    /// flows, failure histories.
    pub fn table_sizes(&self) -> [(&'static str, usize); 6] {
        let (confirmed, early) = self.tables.dialogs_len();
        [
            ("sources", self.rate.len()),
            ("dialogs", confirmed),
            ("unanswered_dialogs", early),
            ("transactions", self.tables.txns_len()),
            ("tcp_flows", self.tcp.flow_count()),
            ("failing_sources", self.shared.failing_sources()),
        ]
    }

    /// The dialogs and the PBX's open requests, to be saved so that calls in progress outlive
    /// a restart ([`Engine::restore_calls`]).
    pub fn calls(&self) -> Calls {
        self.tables.calls(self.now)
    }

    /// A number that changes when [`Engine::calls`] does (a dialog or PBX request came or went).
    pub fn calls_version(&self) -> u64 {
        self.tables.calls_version()
    }

    /// Takes back calls an earlier run saved: in-dialog requests and answers to the PBX's
    /// requests are then known as if this engine had seen them start. The keys must come
    /// from engines with the same [`Shared::table_seed`].
    pub fn restore_calls(&mut self, calls: &Calls, now: u64) {
        self.tables.restore_calls(calls, now);
    }

    /// Signs of pressure: requests charged to the shared overflow bucket (source table full),
    /// and dialogs or transactions not remembered because their table was full.
    pub fn pressure(&self) -> (u64, u64) {
        (self.rate.overflowed, self.tables.refused)
    }

    /// Swaps in a new policy (reload). Learned state (dialogs, bans, failures) is kept, and so
    /// are the sources' token buckets unless the rate limits themselves changed: a reload in
    /// the middle of a flood must not hand every source a fresh burst.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        let (old, new) = (&self.policy.config, &policy.config);
        if old.rate != new.rate || old.limits.max_sources != new.limits.max_sources {
            self.rate = RateLimits::new(&new.rate, new.limits.max_sources);
        }
        self.policy = policy;
        // The scanner patterns may have changed.
        self.user_agents.clear();
    }

    /// Judges a packet. For `FromPbx` it observes and answers `Observe`.
    pub fn decide(&mut self, pkt: &Packet, dir: Direction, now: u64) -> Decision {
        self.decide_with(pkt, dir, now, &mut |_| {})
    }

    /// As [`Engine::decide`], telling `sink` about every message in the packet.
    pub fn decide_with(
        &mut self,
        pkt: &Packet,
        dir: Direction,
        now: u64,
        sink: &mut dyn FnMut(&Outcome),
    ) -> Decision {
        self.decide_inner(pkt, dir, now, sink, &Ahead::NONE)
    }

    fn decide_inner<'p>(
        &mut self,
        pkt: &Packet<'p>,
        dir: Direction,
        now: u64,
        sink: &mut dyn FnMut(&Outcome),
        ahead: &Ahead<'p>,
    ) -> Decision {
        PassedClock::set(now);
        self.now = now;
        if now.saturating_sub(self.last_maintenance) >= MAINTENANCE_NS / SWEEP_PARTS as u64 {
            self.maintain_part(now);
        }
        let d = match dir {
            Direction::FromPbx => {
                Decision::new(Verdict::Observe, self.observe_inner(pkt, now, sink))
            }
            Direction::ToPbx => self.judge_to_pbx(pkt, now, sink, ahead),
        };
        self.counters.count(&d);
        d
    }

    /// Reads a packet the PBX sent.
    pub fn observe(&mut self, pkt: &Packet, now: u64) {
        self.decide(pkt, Direction::FromPbx, now);
    }

    /// Counts a packet a driver judged without the engine (fragments, non-SIP ports).
    pub fn count_external(&mut self, d: &Decision) {
        self.counters.count(d);
    }

    /// One step of expiry, run from `decide` every `MAINTENANCE_NS / SWEEP_PARTS` of packet
    /// time: a part of the per-worker tables, and the small or shared state once a round.
    fn maintain_part(&mut self, now: u64) {
        self.last_maintenance = now;
        let part = self.sweep_part;
        self.sweep_part = (part + 1) % SWEEP_PARTS;
        self.rate.expire_part(now, part, SWEEP_PARTS);
        self.tables.expire_part(now, part, SWEEP_PARTS);
        if part == 0 {
            self.tcp.expire(now);
            self.shared.expire_failures(now, &self.policy);
            self.shared.expire(now);
        }
    }

    fn judge_to_pbx<'p>(
        &mut self,
        pkt: &Packet<'p>,
        now: u64,
        sink: &mut dyn FnMut(&Outcome),
        ahead: &Ahead<'p>,
    ) -> Decision {
        let src = match self.source(pkt.src.ip(), now) {
            Ok(src) => src,
            Err(d) => {
                if self.dropped_txns.is_some() && pkt.transport == Transport::Udp {
                    if let Ok(m) = sip::parse(pkt.payload, Framing::Datagram) {
                        self.note_dropped(&m);
                    }
                }
                return d;
            }
        };
        match (pkt.transport, pkt.tcp) {
            (Transport::Tcp, Some(meta)) => {
                let fk = FlowKey {
                    src: pkt.src,
                    dst: pkt.dst,
                };
                match self.tcp.push(fk, meta, pkt.payload, now) {
                    Push::Data if self.policy.is_tls_port(pkt.dst.port()) => {
                        self.judge_tls(fk, &src)
                    }
                    Push::Passed => Decision::accept(Reason::TlsFlow),
                    Push::Control => Decision::accept(Reason::TcpControl),
                    Push::Retransmission => Decision::accept(Reason::TcpRetransmission),
                    Push::OutOfOrder => Decision::accept(Reason::TcpOutOfOrder),
                    Push::Blocked => Decision::drop(Reason::FlowBlocked),
                    Push::TooLarge => Decision::drop(Reason::TooLarge),
                    Push::Overflow => Decision::drop(Reason::Overload),
                    Push::Data => self.frame_stream(fk, &src, now, sink),
                }
            }
            _ => {
                let j = self.judge(pkt.payload, &src, now, ahead);
                sink(&Outcome {
                    what: j.what,
                    decision: j.decision,
                });
                j.decision
            }
        }
    }

    /// Frames and judges the messages a TCP flow now holds. The segment is dropped (and the
    /// flow blocked) as soon as one message is dropped.
    fn frame_stream(
        &mut self,
        fk: FlowKey,
        src: &Src,
        now: u64,
        sink: &mut dyn FnMut(&Outcome),
    ) -> Decision {
        // The reassembler holds at most `max_message_bytes` per flow, so every message framed
        // here is within the limit.
        let mut lent = self.tcp.take(&fk);
        let mut off = 0;
        let mut last = None;
        let mut block = false;
        if lent.resync {
            // Picked up mid-stream: judge from the first start line on.
            match find_start_line(&lent.buf) {
                Some(p) => {
                    off = p;
                    lent.resync = false;
                }
                None => {
                    let keep_from = memchr::memrchr(b'\n', &lent.buf).map_or(0, |p| p + 1);
                    self.tcp.give_back(&fk, lent, keep_from, false);
                    return Decision::accept(Reason::TcpPartial);
                }
            }
        }
        loop {
            while lent.buf[off..].starts_with(b"\r\n") {
                off += 2;
                let ka = self.keepalive(src, now);
                sink(&Outcome {
                    what: What::Keepalive,
                    decision: ka,
                });
                last = Some(ka);
            }
            if off >= lent.buf.len() {
                break;
            }
            let j = match sip::parse(&lent.buf[off..], Framing::Stream) {
                Err(ParseError::Incomplete) => break,
                Err(e) => self.unreadable(e, src),
                Ok(m) => {
                    off += m.len;
                    self.judge_message(&m, src, now, &Keys::NONE)
                }
            };
            sink(&Outcome {
                what: j.what,
                decision: j.decision,
            });
            last = Some(j.decision);
            if j.decision.verdict == Verdict::Drop {
                block = true;
                break;
            }
        }
        self.tcp.give_back(&fk, lent, off, block);
        last.unwrap_or(Decision::accept(Reason::TcpPartial))
    }

    /// The first bytes of a TLS connection: its ClientHello must name a secret domain. The
    /// segment that completes the ClientHello carries the verdict; after it the flow is let
    /// through (accepted) or blocked.
    fn judge_tls(&mut self, fk: FlowKey, src: &Src) -> Decision {
        let lent = self.tcp.take(&fk);
        if lent.resync {
            // Picked up mid-connection (sipwall restarted): the handshake is long past and was
            // judged then; record boundaries cannot be found from here.
            self.tcp.give_back(&fk, lent, 0, false);
            self.tcp.pass(&fk);
            return Decision::accept(Reason::TlsFlow);
        }
        let d = match crate::tls::client_hello(&lent.buf, &mut self.tls_scratch) {
            crate::tls::Hello::Incomplete => {
                self.tcp.give_back(&fk, lent, 0, false);
                return Decision::accept(Reason::TcpPartial);
            }
            _ if src.allowed => Decision::accept(Reason::AllowedSource),
            crate::tls::Hello::Sni(name) if self.policy.is_secret_domain(name) => {
                Decision::accept(Reason::SecretSni)
            }
            crate::tls::Hello::Sni(_) => Decision::drop(Reason::NoSecretSni),
            crate::tls::Hello::NoSni => match self.policy.config.tls.no_sni {
                Action::Accept => Decision::accept(Reason::NoSni),
                Action::Drop => Decision::drop(Reason::NoSni),
            },
            crate::tls::Hello::NotTls | crate::tls::Hello::BadHello => {
                Decision::drop(Reason::NotTls)
            }
        };
        let block = d.verdict == Verdict::Drop;
        self.tcp.give_back(&fk, lent, 0, block);
        if !block {
            self.tcp.pass(&fk);
        }
        d
    }

    /// A UDP keepalive: a blank datagram, or a STUN Binding Request unless the config
    /// turned those off. The one test `judge` and `read_ahead` both make.
    fn is_keepalive(&self, payload: &[u8]) -> bool {
        sip::is_keepalive(payload)
            || (self.policy.config.sip.stun_keepalives && sip::is_stun_keepalive(payload))
    }

    fn keepalive(&mut self, src: &Src, now: u64) -> Decision {
        if self.rate.check_keepalive(src.key, now) {
            Decision::accept(Reason::Keepalive)
        } else {
            Decision::drop(Reason::RateLimited)
        }
    }

    fn unreadable(&mut self, e: ParseError, src: &Src) -> Judged<'static> {
        let decision = if src.allowed {
            // Trusted peers are never judged on syntax.
            Decision::accept(Reason::AllowedSource)
        } else if e == ParseError::NotSip {
            Decision::drop(Reason::NotSip)
        } else {
            Decision {
                error: Some(e),
                ..Decision::drop(Reason::Malformed)
            }
        };
        Judged {
            what: What::Unreadable,
            decision,
        }
    }

    /// One UDP payload (or an `explain` input).
    fn judge<'a>(
        &mut self,
        payload: &'a [u8],
        src: &Src,
        now: u64,
        ahead: &Ahead<'a>,
    ) -> Judged<'a> {
        if self.is_keepalive(payload) {
            return Judged {
                what: What::Keepalive,
                decision: self.keepalive(src, now),
            };
        }
        if payload.len() > self.policy.config.limits.max_message_bytes {
            return Judged {
                what: What::Unreadable,
                decision: Decision::drop(Reason::TooLarge),
            };
        }
        // Read here unless the driver read it ahead (it is not moved: a message is 520 bytes).
        let parsed;
        let read = match ahead.get() {
            Some(read) => read,
            None => {
                parsed = sip::parse(payload, Framing::Datagram);
                &parsed
            }
        };
        match read {
            Ok(m) => self.judge_message(m, src, now, &ahead.keys),
            Err(e) => self.unreadable(*e, src),
        }
    }

    fn judge_message<'a>(
        &mut self,
        m: &Message<'a>,
        src: &Src,
        now: u64,
        keys: &Keys,
    ) -> Judged<'a> {
        self.counters.messages += 1;
        let what = what_of(m);
        let decision = match m.start {
            StartLine::Response { .. } => self.judge_response(m, src, now),
            StartLine::Request { method, .. } => self.judge_request(m, method, src, now, keys),
        };
        if decision.verdict == Verdict::Drop {
            self.note_dropped(m);
            if matches!(decision.reason, Reason::Scanner | Reason::NoSecretDomain) {
                self.note_scanning(m, src, now);
            }
        }
        Judged { what, decision }
    }

    /// A request dropped as a scanner's or by IP: counted, and the source banned (tier
    /// `scanning`) once it has sent `bans.scanning.drops` of them within `within`. Not a source
    /// that sent an accepted request within `rate.source_idle`: forging a working phone's
    /// address with a scanner's User-Agent must not ban the phone.
    #[cold]
    fn note_scanning(&mut self, m: &Message, src: &Src, now: u64) {
        // (An allowed source is never dropped as either: it is accepted before those checks.)
        let s = self.policy.config.bans.scanning;
        if s.drops == 0 {
            return;
        }
        let Some((drops, since)) = self.scanning.note(src.key, now, s.within.as_nanos()) else {
            return;
        };
        if drops < s.drops {
            return;
        }
        // Asked only now: a drop costs the tally's one slot, not a lookup in the sources.
        self.scanning.forget(src.key);
        if self.rate.knows(src.key, now) {
            return;
        }
        // A spoofed flood cycling through a network could earn a ban for every address in it
        // (10 packets each): bans, kernel set and state file would grow with it. Real scanners
        // are a few hundred a day; past the cap their probes are dropped one by one instead.
        if self.shared.len() >= MAX_SCANNING_BANS {
            if now.saturating_sub(self.scanning_capped_at) >= 60_000_000_000 {
                self.scanning_capped_at = now;
                tracing::warn!(
                    bans = self.shared.len(),
                    "no new bans for scanning while this many bans stand (a spoofed flood?)"
                );
            }
            return;
        }
        let source = source_label(src.ip, self.policy.ipv6_prefix);
        let line = &m.start_line[..m.start_line.len().min(200)];
        let ban = Ban {
            source: source.clone(),
            since_ns: now,
            until_ns: s.ban.until(now),
            tier: "scanning".into(),
            reason: "dropped requests".into(),
            evidence: Evidence {
                failures: drops,
                users: Vec::new(),
                first_request: String::new(),
                last_request: String::from_utf8_lossy(line).into_owned(),
                first_failure_ns: since,
                last_failure_ns: now,
            },
        };
        if let Some(raised) = self.earn(src.key, ban) {
            tracing::warn!(%source, tier = "scanning", drops, raised, "banned");
        }
    }

    /// Applies a ban a source earned; `Some(raised)` when it is a ban to count and log (a new
    /// one, or a raise to a longer tier: fail2ban's filter matches "banned"), `None` when one
    /// at least as long was in force.
    fn earn(&mut self, key: SourceKey, ban: Ban) -> Option<bool> {
        match self.shared.escalate(key, ban) {
            bans::Applied::New => Some(false),
            bans::Applied::Raised => Some(true),
            bans::Applied::Extended | bans::Applied::Kept => None,
        }
        .inspect(|_| self.counters.bans += 1)
    }

    fn judge_response(&mut self, m: &Message, src: &Src, now: u64) -> Decision {
        if self.tables.pbx_sent(m, now) {
            return Decision::accept(Reason::Response);
        }
        if src.allowed {
            return Decision::accept(Reason::AllowedSource);
        }
        match self.policy.config.responses.unsolicited {
            Action::Accept => Decision::accept(Reason::UnsolicitedResponse),
            Action::Drop => Decision::drop(Reason::UnsolicitedResponse),
        }
    }

    fn judge_request(
        &mut self,
        m: &Message,
        method: Method,
        src: &Src,
        now: u64,
        keys: &Keys,
    ) -> Decision {
        let p = &*self.policy;
        // A confirmed dialog's requests pass unrated; an unanswered one's pass rated, as new
        // requests do (an attacker who knows the domain gets no unrated stream by an INVITE).
        let known_dialog = m.to.tag.is_some() && self.tables.dialog_known(m, keys, now);
        let early_dialog =
            m.to.tag.is_some() && !known_dialog && self.tables.early_known(m, keys, now);
        let reason = if src.allowed {
            Reason::AllowedSource
        } else {
            match p.method_rule(&method) {
                Some(true) => {}
                _ => return Decision::drop(Reason::MethodNotAllowed),
            }
            if let Some(ua) = m.user_agent {
                if self
                    .user_agents
                    .is_scanner(ua, |ua| p.scanner(ua).is_some())
                {
                    return Decision::drop(Reason::Scanner);
                }
            }
            let secret = |h| p.is_secret_host(h);
            if m.to.tag.is_some() {
                if known_dialog || early_dialog || (secret(m.from.host()) && secret(m.to.host())) {
                    Reason::InDialog
                } else {
                    return Decision::drop(Reason::UnknownDialog);
                }
            } else if secret(m.request_uri().and_then(|u| u.host))
                && secret(m.to.host())
                && secret(m.from.host())
            {
                Reason::SecretDomain
            } else {
                return Decision::drop(Reason::NoSecretDomain);
            }
        };
        // Requests in a confirmed dialog are never rate-limited: ACK, BYE and re-INVITE of
        // real calls must get through.
        if !known_dialog
            && !self
                .rate
                .check(src.key, src.allowed, Some(Class::of(&method)), now)
        {
            return Decision::drop(Reason::RateLimited);
        }
        if method == Method::Bye && known_dialog {
            self.tables.end_dialog(m, keys, now);
        } else if known_dialog {
            self.tables.note_dialog(m, keys, now);
        } else if method.creates_dialog() || (early_dialog && method != Method::Ack) {
            // An ACK in an unconfirmed dialog acknowledges a refusal: it continues nothing.
            self.tables.note_early(m, keys, now);
        }
        if method == Method::Register || m.authorization.is_some() {
            let user = m
                .auth_username()
                .or_else(|| m.to.uri.user_name())
                .unwrap_or_default();
            self.tables.note_txn(
                m,
                keys,
                TxnFrom {
                    key: src.key,
                    ip: src.ip,
                    had_auth: m.authorization.is_some(),
                    user,
                    line: m.start_line,
                },
                now,
            );
        }
        Decision::accept(reason)
    }

    /// Reads a packet the PBX sent; its reason is `answer-to-dropped` when that is what its
    /// (UDP) message was, else `observed`.
    fn observe_inner(&mut self, pkt: &Packet, now: u64, sink: &mut dyn FnMut(&Outcome)) -> Reason {
        if self.policy.is_tls_port(pkt.src.port()) {
            // The PBX's side of a TLS connection: nothing to read.
            return Reason::Observed;
        }
        match (pkt.transport, pkt.tcp) {
            (Transport::Tcp, Some(meta)) => {
                let fk = FlowKey {
                    src: pkt.src,
                    dst: pkt.dst,
                };
                if self.tcp.push(fk, meta, pkt.payload, now) != Push::Data {
                    return Reason::Observed;
                }
                let lent = self.tcp.take(&fk);
                let mut off = 0;
                let mut resync = lent.resync;
                if resync {
                    off = find_start_line(&lent.buf).unwrap_or(lent.buf.len());
                    resync = off == lent.buf.len();
                }
                loop {
                    while lent.buf[off..].starts_with(b"\r\n") {
                        off += 2;
                    }
                    match sip::parse_observed(&lent.buf[off..], Framing::Stream) {
                        Ok(m) => {
                            off += m.len;
                            self.observe_message(&m, pkt.dst.ip(), now, sink);
                        }
                        Err(ParseError::Incomplete) => break,
                        Err(_) => {
                            // The PBX's own bytes: skip what cannot be read and resync.
                            off = lent.buf.len();
                            resync = true;
                            break;
                        }
                    }
                }
                let mut lent = lent;
                lent.resync = resync;
                self.tcp.give_back(&fk, lent, off, false);
                Reason::Observed
            }
            _ => match sip::parse_observed(pkt.payload, Framing::Datagram) {
                Ok(m) => self.observe_message(&m, pkt.dst.ip(), now, sink),
                Err(_) => Reason::Observed,
            },
        }
    }

    fn observe_message(
        &mut self,
        m: &Message,
        peer: IpAddr,
        now: u64,
        sink: &mut dyn FnMut(&Outcome),
    ) -> Reason {
        self.counters.messages += 1;
        let reason = match m.start {
            StartLine::Request { method, .. } => {
                self.tables.note_pbx_request(m, now);
                if method == Method::Bye {
                    self.tables.end_dialog(m, &Keys::NONE, now);
                } else if method.creates_dialog() || m.to.tag.is_some() {
                    self.tables.note_dialog(m, &Keys::NONE, now);
                }
                Reason::Observed
            }
            StartLine::Response { status, .. } => self.read_answer(m, status, peer, now),
        };
        sink(&Outcome {
            what: what_of(m),
            decision: Decision::new(Verdict::Observe, reason),
        });
        reason
    }

    /// A PBX answer: an authentication failure when it is one, and the end of its transaction
    /// when final. In replay, an answer to a request sipwall dropped is not read.
    fn read_answer(&mut self, m: &Message, status: u16, peer: IpAddr, now: u64) -> Reason {
        let k = self.tables.txn_key(m);
        if let Some(set) = &mut self.dropped_txns {
            if set.contains(&k) {
                if status >= 200 {
                    set.remove(&k);
                }
                return Reason::AnswerToDropped;
            }
        }
        let had_auth = self.tables.txn_had_auth(k);
        let failed = match status {
            401 | 407 | 403 if had_auth => !is_stale(m),
            403 | 404 => m.cseq.method == Method::Register,
            _ => false,
        };
        if failed {
            // Copied out only here: most answers are not failures.
            let txn = self.tables.txn(k);
            self.record_failure(m, txn.as_ref(), peer, now);
        }
        if m.cseq.method.creates_dialog() {
            match status {
                200..=299 => self.tables.confirm_dialog(m, now),
                300.. => self.tables.refuse_early(m, now),
                _ => {}
            }
        }
        if status >= 200 {
            self.tables.forget_txn(k);
        }
        Reason::Observed
    }

    /// A failure read on the wire: counted, remembered, and a ban when a tier is reached.
    /// `txn` is the request it answers, when the engine saw it (else the peer and To user).
    fn record_failure(&mut self, m: &Message, txn: Option<&Txn>, peer: IpAddr, now: u64) {
        self.counters.auth_failures += 1;
        let ip = txn.map_or(peer, |t| t.ip);
        if self.shared.is_allowed(&self.policy, ip) {
            return;
        }
        let prefix = self.policy.ipv6_prefix;
        let key = txn.map_or_else(|| source_key(ip, prefix), |t| t.key);
        let label = source_label(ip, prefix);
        let user = txn.map_or_else(
            // An observed message's URIs are unread: this one is read here, for evidence.
            || {
                Uri::parse(m.to.uri.raw, Part::To)
                    .ok()
                    .and_then(|u| u.user_name())
                    .unwrap_or_default()
            },
            |t| t.user.as_bytes(),
        );
        let line = txn.map_or(&b""[..], |t| t.line.as_bytes());
        let failure = Failure {
            key,
            source: &label,
            user,
            request_line: line,
            now,
        };
        if let Some(ban) = self.shared.record_failure(failure, &self.policy) {
            let (source, tier, failures) =
                (ban.source.clone(), ban.tier.clone(), ban.evidence.failures);
            if let Some(raised) = self.earn(key, ban) {
                tracing::warn!(%source, %tier, failures, raised, "banned");
            }
        }
    }

    /// Judges one UDP payload from `source` without a packet around it (`sipwall explain`).
    pub fn explain(&mut self, payload: &[u8], source: IpAddr, now: u64) -> Decision {
        PassedClock::set(now);
        match self.source(source, now) {
            Ok(src) => self.judge(payload, &src, now, &Ahead::NONE).decision,
            Err(d) => d,
        }
    }

    /// As [`Engine::decide`], with what [`Engine::read_ahead`] read of the packet.
    pub fn decide_ahead<'p>(
        &mut self,
        pkt: &Packet<'p>,
        dir: Direction,
        now: u64,
        ahead: &Ahead<'p>,
    ) -> Decision {
        self.decide_inner(pkt, dir, now, &mut |_| {}, ahead)
    }

    /// A driver's pass over a batch before deciding it: reads the packet's UDP message (as
    /// `decide` would), changing nothing. The parser's code then stays in cache across the
    /// batch, and [`Engine::warm_ahead`] can touch what the decisions will use. `out` is
    /// written in place rather than returned: a message is 520 bytes.
    ///
    /// What is read ahead is only ever what `decide` would read itself, so a packet it skips
    /// is still judged whole; it skips those `decide` would not parse (TCP, keepalives, too
    /// large) and banned sources, whose flood must stay as cheap as a ban lookup.
    pub fn read_ahead<'a>(&self, pkt: &Packet<'a>, dir: Direction, now: u64, out: &mut Ahead<'a>) {
        let udp = !(pkt.transport == Transport::Tcp && pkt.tcp.is_some());
        out.read = false;
        out.keys = Keys::NONE;
        if dir != Direction::ToPbx
            || !udp
            || self.is_keepalive(pkt.payload)
            || pkt.payload.len() > self.policy.config.limits.max_message_bytes
            || self
                .shared
                .ban_holds(source_key(pkt.src.ip(), self.policy.ipv6_prefix), now)
        {
            return;
        }
        out.message
            .write(sip::parse(pkt.payload, Framing::Datagram));
        out.read = true;
    }

    /// Brings in the source's rate-limit state (its index cell came in with [`Engine::warm`])
    /// and the dialog and transaction cells judging the message read ahead will use. A driver
    /// calls it for a batch's packets one after another (their misses overlap only when the
    /// lookups are close together: a parse between two of them serialises them).
    pub fn warm_ahead(&self, pkt: &Packet, ahead: &mut Ahead) {
        self.rate
            .warm_state(source_key(pkt.src.ip(), self.policy.ipv6_prefix));
        if let Some(Ok(m)) = ahead.get() {
            ahead.keys = self.tables.warm(m);
        }
    }

    /// Brings toward the cache the index cell of the rate-limit state `decide` will read for a
    /// packet from `ip` (the state itself follows in [`Engine::warm_ahead`]), changing nothing.
    /// A driver holding a batch calls it for every packet first: the cache misses of
    /// thousands of sources' entries then overlap instead of stalling one decision after
    /// another.
    #[inline]
    pub fn warm(&self, ip: IpAddr) {
        self.rate.warm(source_key(ip, self.policy.ipv6_prefix));
    }

    /// The first checks, on the source alone: allow list, deny list, ban.
    fn source(&mut self, ip: IpAddr, now: u64) -> Result<Src, Decision> {
        let lists = self.lists.get();
        let allowed = self.policy.is_allowed(ip) || lists.is_allowed(ip);
        let key = source_key(ip, self.policy.ipv6_prefix);
        if !allowed {
            if self.policy.is_denied(ip) || lists.is_denied(ip) {
                return Err(Decision::drop(Reason::DeniedSource));
            }
            if self.shared.is_banned(key, now) {
                return Err(Decision::drop(Reason::Banned));
            }
        }
        Ok(Src { ip, key, allowed })
    }
}

/// A packet's UDP message as [`Engine::read_ahead`] read it, for [`Engine::decide_ahead`].
/// A driver makes one for each packet of a group with [`Ahead::empty_in`], in room it leaves
/// uninitialised: a message is 520 bytes, and an empty slot needs only its flag.
pub struct Ahead<'a> {
    read: bool,
    /// Written whenever `read` is set.
    message: MaybeUninit<Result<Message<'a>, ParseError>>,
    /// The message's table keys, once [`Engine::warm_ahead`] computed them.
    keys: Keys,
}

impl<'a> Ahead<'a> {
    /// Nothing read ahead: the decision reads the packet itself.
    pub const NONE: Ahead<'static> = Ahead {
        read: false,
        message: MaybeUninit::uninit(),
        keys: Keys::NONE,
    };

    /// An empty slot made in `room`, writing its flag and keys alone: `room.write(NONE)`
    /// stores the whole 544-byte image, a memset a packet on the worker's path.
    pub fn empty_in<'r>(room: &'r mut MaybeUninit<Ahead<'a>>) -> &'r mut Ahead<'a> {
        let p = room.as_mut_ptr();
        // SAFETY: every field but `message` (which may stay uninitialised) is written first.
        unsafe {
            std::ptr::addr_of_mut!((*p).read).write(false);
            std::ptr::addr_of_mut!((*p).keys).write(Keys::NONE);
            room.assume_init_mut()
        }
    }

    fn get(&self) -> Option<&Result<Message<'a>, ParseError>> {
        // SAFETY: `read` is set only once `message` is written (`read_ahead`).
        self.read.then(|| unsafe { self.message.assume_init_ref() })
    }
}

struct Src {
    ip: IpAddr,
    key: SourceKey,
    allowed: bool,
}

fn what_of<'a>(m: &Message<'a>) -> What<'a> {
    match m.start {
        StartLine::Request { method, .. } => What::Request(method),
        StartLine::Response { status, .. } => What::Response(status),
    }
}

/// A 401/407 whose challenge says `stale=true` is a nonce refresh, not a wrong password.
fn is_stale(m: &Message) -> bool {
    m.headers().flatten().any(|h| {
        matches!(
            h.kind,
            HeaderName::WwwAuthenticate | HeaderName::ProxyAuthenticate
        ) && sip::auth_param(h.value, b"stale").is_some_and(|v| v.eq_ignore_ascii_case(b"true"))
    })
}

/// Offset of the first line that reads as a SIP start line (stream resynchronisation).
fn find_start_line(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < buf.len() {
        let nl = memchr::memchr(b'\n', &buf[pos..])? + pos;
        let line = buf[pos..nl].strip_suffix(b"\r").unwrap_or(&buf[pos..nl]);
        if matches!(sip::parse_start_line(line), Err(ParseError::NotSip)) {
            pos = nl + 1;
        } else {
            return Some(pos);
        }
    }
    None
}
