//! Verdicts and their reasons. Reason ids are kebab-case and stable: users graph them.

use crate::sip::ParseError;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Accept,
    Drop,
    /// Traffic the PBX sends: read for state, always let through.
    Observe,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Observe => "observe",
        }
    }
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $v:ident = $id:literal, )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Reason { $( $(#[$doc])* $v, )* }
        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$v,)*];
            pub const COUNT: usize = Reason::ALL.len();
            pub fn id(self) -> &'static str {
                match self { $(Reason::$v => $id,)* }
            }
            pub fn from_id(s: &str) -> Option<Reason> {
                match s { $($id => Some(Reason::$v),)* _ => None }
            }
        }
    };
}

reasons! {
    /// Source on the allow list.
    AllowedSource = "allowed-source",
    /// Source on the deny list.
    DeniedSource = "denied-source",
    /// Source under an active ban.
    Banned = "banned",
    /// CRLF / CRLFCRLF keepalive (RFC 5626).
    Keepalive = "keepalive",
    /// Not SIP at all.
    NotSip = "not-sip",
    /// SIP the PBX could read differently from sipwall.
    Malformed = "malformed",
    MethodNotAllowed = "method-not-allowed",
    /// User-Agent of a known attack tool.
    Scanner = "scanner",
    /// Out-of-dialog request whose Request-URI, To or From host is not a secret domain.
    NoSecretDomain = "no-secret-domain",
    SecretDomain = "secret-domain",
    InDialog = "in-dialog",
    UnknownDialog = "unknown-dialog",
    /// Response answering a request the PBX sent.
    Response = "response",
    /// Response answering nothing the PBX sent (verdict per `responses.unsolicited`).
    UnsolicitedResponse = "unsolicited-response",
    RateLimited = "rate-limited",
    /// Larger than `limits.max_message_bytes`.
    TooLarge = "too-large",
    /// An IP fragment reached the engine (inline, conntrack should have reassembled it).
    Fragment = "fragment",
    /// TCP segment of a flow that already carried a dropped message.
    FlowBlocked = "flow-blocked",
    /// A state bound was hit (TCP flows or bytes).
    Overload = "overload",
    /// TCP segment with no payload.
    TcpControl = "tcp-control",
    /// TCP segment that completes no message yet.
    TcpPartial = "tcp-partial",
    TcpRetransmission = "tcp-retransmission",
    TcpOutOfOrder = "tcp-out-of-order",
    /// TLS ClientHello naming a secret domain (SNI): the connection may proceed.
    SecretSni = "secret-sni",
    /// TLS ClientHello naming another server, or an IP.
    NoSecretSni = "no-secret-sni",
    /// TLS ClientHello without a server name (verdict per `tls.no_sni`).
    NoSni = "no-sni",
    /// A TLS port's stream that does not start with a readable ClientHello.
    NotTls = "not-tls",
    /// Later segments of an accepted TLS connection.
    TlsFlow = "tls-flow",
    /// Traffic the PBX sends.
    Observed = "observed",
    /// Replay only: the PBX's answer to a request sipwall drops. Inline the PBX never gets the
    /// request, so the answer would not exist: it is not read (no failure, no ban from it).
    AnswerToDropped = "answer-to-dropped",
    /// Not to or from a SIP port of the PBX (replay only: inline it is never queued).
    NotInspected = "not-inspected",
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// The engine's answer for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    /// Why a message was `malformed`.
    pub error: Option<ParseError>,
}

impl Decision {
    pub const fn new(verdict: Verdict, reason: Reason) -> Self {
        Decision {
            verdict,
            reason,
            error: None,
        }
    }
    pub const fn accept(reason: Reason) -> Self {
        Self::new(Verdict::Accept, reason)
    }
    pub const fn drop(reason: Reason) -> Self {
        Self::new(Verdict::Drop, reason)
    }
}

/// What one SIP message (or keepalive) inside a packet was, and what became of it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub what: What<'a>,
    pub decision: Decision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What<'a> {
    Request(crate::sip::Method<'a>),
    Response(u16),
    Keepalive,
    /// Bytes that did not parse.
    Unreadable,
}

/// Counters by reason and verdict, plus the events that matter to operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub by_reason: [u64; Reason::COUNT],
    pub accepted: u64,
    pub dropped: u64,
    pub observed: u64,
    /// Messages (not packets) judged.
    pub messages: u64,
    pub auth_failures: u64,
    /// Bans placed: new ones and raises to a longer tier.
    pub bans: u64,
}

impl Counters {
    #[inline]
    pub fn count(&mut self, d: &Decision) {
        self.by_reason[d.reason as usize] += 1;
        match d.verdict {
            Verdict::Accept => self.accepted += 1,
            Verdict::Drop => self.dropped += 1,
            Verdict::Observe => self.observed += 1,
        }
    }
    /// Adds another worker's counts.
    pub fn merge(&mut self, o: &Counters) {
        for (a, b) in self.by_reason.iter_mut().zip(&o.by_reason) {
            *a += b;
        }
        self.accepted += o.accepted;
        self.dropped += o.dropped;
        self.observed += o.observed;
        self.messages += o.messages;
        self.auth_failures += o.auth_failures;
        self.bans += o.bans;
    }
    pub fn get(&self, r: Reason) -> u64 {
        self.by_reason[r as usize]
    }
    /// Non-zero reasons, by id.
    pub fn reasons(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reason::ALL
            .iter()
            .map(|r| (r.id(), self.by_reason[*r as usize]))
            .filter(|(_, n)| *n > 0)
    }
}

/// Counters as saved and reported: by reason id, so they read the same across versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Totals {
    pub accepted: u64,
    pub dropped: u64,
    pub observed: u64,
    pub messages: u64,
    pub auth_failures: u64,
    pub bans: u64,
    pub reasons: std::collections::BTreeMap<String, u64>,
}

impl Totals {
    pub fn of(c: &Counters) -> Totals {
        Totals {
            accepted: c.accepted,
            dropped: c.dropped,
            observed: c.observed,
            messages: c.messages,
            auth_failures: c.auth_failures,
            bans: c.bans,
            reasons: c.reasons().map(|(r, n)| (r.to_string(), n)).collect(),
        }
    }

    pub fn add(&mut self, c: &Counters) {
        self.merge(&Totals::of(c));
    }

    pub fn merge(&mut self, o: &Totals) {
        self.accepted += o.accepted;
        self.dropped += o.dropped;
        self.observed += o.observed;
        self.messages += o.messages;
        self.auth_failures += o.auth_failures;
        self.bans += o.bans;
        for (r, n) in &o.reasons {
            *self.reasons.entry(r.clone()).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let id = r.id();
            assert!(
                id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{id}"
            );
            assert!(seen.insert(id));
            assert_eq!(Reason::from_id(id), Some(*r));
        }
    }
}
