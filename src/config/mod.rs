//! Configuration: TOML read with `deny_unknown_fields` (errors carry line and column), then
//! compiled into the lookup structures the engine uses ([`Policy`]).

mod cidr;
mod duration;
pub mod feed;

pub use cidr::CidrSet;
pub use duration::{Duration, Expiry};

use crate::sip::{Method, KNOWN_METHODS};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipSection,
    pub sources: SourcesSection,
    pub methods: MethodsSection,
    pub scanners: ScannersSection,
    pub rate: RateSection,
    pub responses: ResponsesSection,
    pub tls: TlsSection,
    pub bans: BansSection,
    pub limits: LimitsSection,
    /// Blocklist files (APIBan and the like) loaded into the deny list.
    pub feeds: Vec<Feed>,
}

/// A blocklist file: one address or CIDR a line; `#` and `;` start comments.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    pub path: std::path::PathBuf,
    /// How long its entries hold when the file is not read again (it is re-read on reload and
    /// whenever it changes).
    #[serde(default = "Feed::default_ttl")]
    pub ttl: Duration,
}

impl Feed {
    fn default_ttl() -> Duration {
        Duration::from_secs(7 * 86400)
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipSection {
    /// The secret domains: a request outside a dialog must address one in its Request-URI, To and From hosts.
    pub domains: Vec<String>,
    /// Addresses of the PBX (which side of a packet is the PBX).
    pub pbx: Vec<IpAddr>,
    pub udp_ports: Vec<u16>,
    pub tcp_ports: Vec<u16>,
    /// SIP over TLS; reserved for the inline daemon's SNI check.
    pub tls_ports: Vec<u16>,
    /// STUN Binding Requests on a UDP SIP port are RFC 5626 keepalives (accepted as
    /// `keepalive`); false drops them as `not-sip`.
    pub stun_keepalives: bool,
}

impl Default for SipSection {
    fn default() -> Self {
        SipSection {
            domains: vec![],
            pbx: vec![],
            udp_ports: vec![5060],
            tcp_ports: vec![5060],
            tls_ports: vec![5061],
            stun_keepalives: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesSection {
    /// Trunks, offices: accepted without domain checks, never banned, rate-limited by their own (higher) limit.
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    /// IPv6 sources are tracked (rate limits, failures, bans) by this prefix.
    pub ipv6_prefix: u8,
}

impl Default for SourcesSection {
    fn default() -> Self {
        SourcesSection {
            allow: vec![],
            deny: vec![],
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodsSection {
    /// Methods accepted at all. Default: the standard RFC methods.
    pub allow: Vec<String>,
    /// Methods accepted only from allowed sources (e.g. MESSAGE, PUBLISH on a PBX that has no use for them).
    pub allowed_sources_only: Vec<String>,
}

impl Default for MethodsSection {
    fn default() -> Self {
        MethodsSection {
            allow: KNOWN_METHODS.iter().map(|s| s.to_string()).collect(),
            allowed_sources_only: vec![],
        }
    }
}

/// User-Agent substrings of known attack tools (case-insensitive).
pub const DEFAULT_SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "sip-scan",
    "sundayddr",
    "iwar",
    "sivus",
    "smap",
    "pplsip",
    "sipsak",
    "sip-scanner",
    "sipptk",
    "voiper",
    "nmap",
    "masscan",
    "zgrab",
    "cpxinterface",
    "siparator",
    "fake",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScannersSection {
    /// Replaces the built-in list.
    pub user_agents: Vec<String>,
    /// Added to the list.
    pub extra_user_agents: Vec<String>,
}

impl Default for ScannersSection {
    fn default() -> Self {
        ScannersSection {
            user_agents: DEFAULT_SCANNERS.iter().map(|s| s.to_string()).collect(),
            extra_user_agents: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateSection {
    /// Every request of a source.
    pub general: Bucket,
    pub register: Bucket,
    pub invite: Bucket,
    /// Requests other than REGISTER and INVITE.
    pub other: Bucket,
    /// Allowed sources get every bucket multiplied by this.
    pub allowed_multiplier: u32,
    /// Shared by all sources once `limits.max_sources` are tracked (spoofed-source floods).
    pub overflow: Bucket,
    /// Shared by keepalives from sources with no state yet.
    pub keepalive_unknown: Bucket,
    /// Per-source state idle for this long is forgotten.
    pub source_idle: Duration,
}

impl Default for RateSection {
    fn default() -> Self {
        RateSection {
            general: Bucket {
                per_second: 20.0,
                burst: 60,
            },
            register: Bucket {
                per_second: 2.0,
                burst: 10,
            },
            invite: Bucket {
                per_second: 5.0,
                burst: 20,
            },
            other: Bucket {
                per_second: 10.0,
                burst: 40,
            },
            allowed_multiplier: 20,
            overflow: Bucket {
                per_second: 200.0,
                burst: 400,
            },
            keepalive_unknown: Bucket {
                per_second: 500.0,
                burst: 1000,
            },
            source_idle: Duration::from_secs(600),
        }
    }
}

/// What to do with a kind of traffic the rules leave open.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Accept,
    Drop,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesSection {
    /// A response to the PBX that answers no request the PBX was seen sending.
    pub unsolicited: Action,
}

impl Default for ResponsesSection {
    fn default() -> Self {
        ResponsesSection {
            unsolicited: Action::Drop,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// A ClientHello on a TLS port without a server name (SNI): "drop" or "accept".
    pub no_sni: Action,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            no_sni: Action::Drop,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BanTier {
    pub failures: u32,
    pub within: Duration,
    /// `"permanent"`: until a person releases it.
    pub ban: Expiry,
}

/// A scanner's sweep, svwar's extension walk or svcrack's guesses by IP never reach the PBX,
/// so no failure of theirs is ever seen: `drops` of them within `within` ban the source, and
/// the kernel's ban set drops the rest of the sweep before the queue (0 drops: off).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScanningBan {
    pub drops: u32,
    pub within: Duration,
    pub ban: Expiry,
}

impl Default for ScanningBan {
    fn default() -> Self {
        ScanningBan {
            drops: 10,
            within: Duration::from_secs(60),
            ban: Expiry::For(Duration::from_secs(3600)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BansSection {
    pub tiers: Vec<BanTier>,
    /// Distinct user names failing from one source that mean enumeration (0: off).
    pub enumeration_users: u32,
    pub enumeration_ban: Expiry,
    /// Sources that keep sending what sipwall drops as `scanner` or `no-secret-domain` (tier
    /// `scanning`), unless they sent an accepted request within `rate.source_idle`.
    pub scanning: ScanningBan,
    /// Command run (by `sh -c`) for each new ban, with SIPWALL_SOURCE, SIPWALL_TIER,
    /// SIPWALL_REASON, SIPWALL_UNTIL (Unix seconds, or "permanent"), SIPWALL_FAILURES and
    /// SIPWALL_USERS in its environment. Never waited for by the packet path.
    pub on_ban: Option<String>,
    /// At most this many hook runs a minute; the rest are counted and logged.
    pub on_ban_per_minute: u32,
}

impl Default for BansSection {
    fn default() -> Self {
        BansSection {
            tiers: vec![
                BanTier {
                    failures: 2,
                    within: Duration::from_secs(3600),
                    ban: Expiry::For(Duration::from_secs(3600)),
                },
                BanTier {
                    failures: 12,
                    within: Duration::from_secs(86400),
                    ban: Expiry::Permanent,
                },
            ],
            enumeration_users: 5,
            enumeration_ban: Expiry::For(Duration::from_secs(86400)),
            scanning: ScanningBan::default(),
            on_ban: None,
            on_ban_per_minute: 6,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest SIP message accepted (UDP or TCP).
    pub max_message_bytes: usize,
    pub max_tcp_flows: usize,
    pub max_tcp_bytes: usize,
    pub tcp_idle: Duration,
    /// Sources with rate-limit state; beyond it new sources share the overflow bucket.
    pub max_sources: usize,
    pub max_dialogs: usize,
    pub max_transactions: usize,
    /// In-dialog Call-IDs are forgotten after this long without traffic.
    pub dialog_idle: Duration,
    /// Fragmented datagrams held for reassembly (replay); the oldest half goes when full.
    pub max_fragments: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_message_bytes: 65_535,
            max_tcp_flows: 16_384,
            max_tcp_bytes: 64 << 20,
            tcp_idle: Duration::from_secs(900),
            max_sources: 200_000,
            max_dialogs: 200_000,
            max_transactions: 200_000,
            // A call may last hours with no request in it: a dialog ends with its BYE, so
            // a long idle bound holds only calls whose end sipwall did not see.
            dialog_idle: Duration::from_secs(24 * 3600),
            max_fragments: 4096,
        }
    }
}

impl Config {
    pub fn from_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Checks what types cannot, and compiles the config.
    pub fn compile(&self) -> Result<Policy, ConfigError> {
        let inv = |m: String| Err(ConfigError::Invalid(m));
        for d in &self.sip.domains {
            if d.is_empty()
                || d.starts_with('.')
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return inv(format!("sip.domains: {d:?} is not a host name"));
            }
        }
        if self.sources.ipv6_prefix == 0 || self.sources.ipv6_prefix > 128 {
            return inv("sources.ipv6_prefix must be 1..=128".into());
        }
        for m in self
            .methods
            .allow
            .iter()
            .chain(&self.methods.allowed_sources_only)
        {
            if !crate::sip::chars::is_token(m.as_bytes()) {
                return inv(format!("methods: {m:?} is not a method token"));
            }
        }
        let r = &self.rate;
        for (name, b) in [
            ("general", r.general),
            ("register", r.register),
            ("invite", r.invite),
            ("other", r.other),
            ("overflow", r.overflow),
            ("keepalive_unknown", r.keepalive_unknown),
        ] {
            if !(b.per_second > 0.0 && b.per_second.is_finite()) || b.burst == 0 {
                return inv(format!(
                    "rate.{name}: per_second and burst must be above zero"
                ));
            }
        }
        if r.allowed_multiplier == 0 {
            return inv("rate.allowed_multiplier must be at least 1".into());
        }
        for (i, t) in self.bans.tiers.iter().enumerate() {
            if t.failures == 0 || t.within.is_zero() {
                return inv(format!(
                    "bans.tiers[{i}]: failures and within must be above zero"
                ));
            }
        }
        let s = &self.bans.scanning;
        if s.drops > 0 && s.within.is_zero() {
            return inv("bans.scanning: within must be above zero".into());
        }
        let l = &self.limits;
        if l.max_message_bytes < 512 || l.max_message_bytes > 1 << 20 {
            return inv("limits.max_message_bytes must be 512..=1048576".into());
        }
        if l.max_tcp_flows == 0
            || l.max_sources == 0
            || l.max_dialogs == 0
            || l.max_transactions == 0
        {
            return inv("limits: table sizes must be above zero".into());
        }
        let mut patterns: Vec<String> = self.scanners.user_agents.clone();
        patterns.extend(self.scanners.extra_user_agents.iter().cloned());
        patterns.retain(|p| !p.is_empty());
        // The DFA type itself, not `AhoCorasick`: that one reaches its automaton through a
        // trait object, a call per byte (~18 instructions a byte, read on every request).
        let scanners = aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(true)
            .build(&patterns)
            .map_err(|e| ConfigError::Invalid(format!("scanners: {e}")))?;

        let allow = CidrSet::new(&self.sources.allow);
        let deny = CidrSet::new(&self.sources.deny);
        let mut known = [false; KNOWN_METHODS.len()];
        let mut known_allowed_only = [false; KNOWN_METHODS.len()];
        let mut other = Vec::new();
        let mut other_allowed_only = Vec::new();
        for (list, k, o) in [
            (&self.methods.allow, &mut known, &mut other),
            (
                &self.methods.allowed_sources_only,
                &mut known_allowed_only,
                &mut other_allowed_only,
            ),
        ] {
            for m in list {
                match Method::from_bytes(m.as_bytes()).known_index() {
                    Some(i) => k[i] = true,
                    None => o.push(m.as_bytes().to_vec()),
                }
            }
        }
        let mut tiers = self.bans.tiers.clone();
        tiers.sort_by_key(|t| t.failures);
        Ok(Policy {
            domains: self
                .sip
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase().into_bytes())
                .collect(),
            pbx: self.sip.pbx.clone(),
            allow,
            deny,
            ipv6_prefix: self.sources.ipv6_prefix,
            known_methods: known,
            known_allowed_only,
            other_methods: other,
            other_allowed_only,
            scanners,
            scanner_patterns: patterns,
            tiers,
            config: self.clone(),
        })
    }
}

/// Shows a secret domain as its first label's first letter and its length only: the domain is
/// the secret that keeps scanners out, so it never reaches logs or debug output in full.
pub fn redact(domain: &[u8]) -> String {
    let first = domain.first().map_or('?', |&b| b as char);
    format!("{first}…({} bytes)", domain.len())
}

impl std::fmt::Debug for SipSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipSection")
            .field(
                "domains",
                &self
                    .domains
                    .iter()
                    .map(|d| redact(d.as_bytes()))
                    .collect::<Vec<_>>(),
            )
            .field("pbx", &self.pbx)
            .field("udp_ports", &self.udp_ports)
            .field("tcp_ports", &self.tcp_ports)
            .field("tls_ports", &self.tls_ports)
            .finish()
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field(
                "domains",
                &self.domains.iter().map(|d| redact(d)).collect::<Vec<_>>(),
            )
            .field("pbx", &self.pbx)
            .field("scanner_patterns", &self.scanner_patterns.len())
            .field("tiers", &self.tiers)
            .finish_non_exhaustive()
    }
}

/// The config compiled for the packet path. Cheap to share (`Arc`) between workers.
#[derive(Clone)]
pub struct Policy {
    pub domains: Vec<Vec<u8>>,
    pub pbx: Vec<IpAddr>,
    allow: CidrSet,
    deny: CidrSet,
    pub ipv6_prefix: u8,
    known_methods: [bool; KNOWN_METHODS.len()],
    known_allowed_only: [bool; KNOWN_METHODS.len()],
    other_methods: Vec<Vec<u8>>,
    other_allowed_only: Vec<Vec<u8>>,
    scanners: aho_corasick::dfa::DFA,
    /// The User-Agent patterns, in the matcher's order.
    pub scanner_patterns: Vec<String>,
    /// Ban tiers sorted by failure count.
    pub tiers: Vec<BanTier>,
    pub config: Config,
}

impl Policy {
    #[inline]
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip)
    }
    #[inline]
    pub fn is_denied(&self, ip: IpAddr) -> bool {
        self.deny.contains(ip)
    }
    #[inline]
    pub fn is_secret_domain(&self, host: &[u8]) -> bool {
        self.domains.iter().any(|d| eq_host_fold(host, d))
    }
    #[inline]
    pub fn is_tls_port(&self, port: u16) -> bool {
        self.config.sip.tls_ports.contains(&port)
    }
    /// True when a URI host is a secret domain (an IP never is).
    #[inline]
    pub fn is_secret_host(&self, host: Option<crate::sip::Host>) -> bool {
        matches!(host, Some(crate::sip::Host::Name(n)) if self.is_secret_domain(n))
    }
    /// `Some(true)` allowed, `Some(false)` allowed only from allowed sources, `None` not allowed.
    pub fn method_rule(&self, m: &Method) -> Option<bool> {
        let (allowed, only) = match m.known_index() {
            Some(i) => (self.known_methods[i], self.known_allowed_only[i]),
            None => {
                let b = m.as_bytes();
                (
                    self.other_methods.iter().any(|o| o == b),
                    self.other_allowed_only.iter().any(|o| o == b),
                )
            }
        };
        if only {
            Some(false)
        } else if allowed {
            Some(true)
        } else {
            None
        }
    }
    /// The scanner pattern a User-Agent matches, if any.
    pub fn scanner(&self, user_agent: &[u8]) -> Option<&str> {
        use aho_corasick::{automaton::Automaton, Anchored};
        // The search loop the crate documents for `Automaton`, written out: `try_find` costs
        // ~200 instructions of set-up, more than stepping through a User-Agent. Standard match
        // semantics: the first match to end is the one reported, as `try_find` would.
        let dfa = &self.scanners;
        // An unanchored start always exists on this DFA; an error would only mean no match.
        let mut sid = dfa.start_state(Anchored::No).ok()?;
        let mut rest = user_agent.iter();
        loop {
            if dfa.is_special(sid) {
                if dfa.is_match(sid) {
                    let pid = dfa.match_pattern(sid, 0);
                    return Some(self.scanner_patterns[pid.as_usize()].as_str());
                }
                if dfa.is_dead(sid) {
                    return None;
                }
            }
            sid = dfa.next_state(Anchored::No, sid, *rest.next()?);
        }
    }
}

/// `host` equals `domain` ignoring ASCII case, eight bytes a step. Setting bit 0x20 lowercases
/// letters; among the bytes a parsed host or a configured domain can hold (letters, digits,
/// '-', '.', '_': both are checked before they get here) it merges no two other bytes, so the
/// comparison is exact.
#[inline]
fn eq_host_fold(host: &[u8], domain: &[u8]) -> bool {
    if host.len() != domain.len() {
        return false;
    }
    const LOW: u64 = 0x2020_2020_2020_2020;
    let w = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes")) | LOW;
    let (mut a, mut b) = (host.chunks_exact(8), domain.chunks_exact(8));
    if !a.by_ref().zip(b.by_ref()).all(|(x, y)| w(x) == w(y)) {
        return false;
    }
    let n = host.len();
    if n >= 8 {
        // The tail in the word that ends both (it overlaps bytes already compared).
        return w(&host[n - 8..]) == w(&domain[n - 8..]);
    }
    a.remainder()
        .iter()
        .zip(b.remainder())
        .all(|(x, y)| x | 0x20 == y | 0x20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_fold_agrees_with_ascii_case_comparison() {
        let hosts = [
            "sip.example.com",
            "SIP.Example.COM",
            "sip.example.con",
            "sip-example.com",
            "sip_example.com",
            "sip.example.com.",
            "a",
            "A",
            "",
            "sip.example.co",
            "1.2.3.4",
            "sip.exa-ple.com",
            "sip.example.coM",
            "abcdefgh",
            "ABCDEFGH",
            "abcdefgi",
            "abcdefghi",
            "Abcdefghj",
            "bbcdefghi",
        ];
        for h in hosts {
            for d in [
                "sip.example.com",
                "a",
                "1.2.3.4",
                "sip-example.com",
                "abcdefgh",
                "abcdefghi",
            ] {
                assert_eq!(
                    eq_host_fold(h.as_bytes(), d.as_bytes()),
                    h.eq_ignore_ascii_case(d),
                    "{h} {d}"
                );
            }
        }
    }

    #[test]
    fn defaults_compile_and_example_file_loads() {
        Config::default().compile().unwrap();
        let text = include_str!("../../config/sipwall.toml");
        let c = Config::from_toml(text, "sipwall.toml").unwrap();
        let p = c.compile().unwrap();
        assert!(!p.domains.is_empty());
    }

    #[test]
    fn debug_output_never_shows_the_secret_domain() {
        let mut c = Config::default();
        c.sip.domains = vec!["very-secret.example.com".into()];
        let p = c.compile().unwrap();
        for s in [format!("{c:?}"), format!("{p:?}"), format!("{p:#?}")] {
            assert!(!s.contains("very-secret"), "{s}");
            assert!(s.contains("v…(23 bytes)"), "{s}");
        }
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let e = Config::from_toml("[sip]\ndomains = [\"a.b\"]\ndomain = \"x\"\n", "t.toml")
            .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("line 3"), "{s}");
        assert!(s.contains("column 1"), "{s}");
        assert!(s.contains("unknown field"), "{s}");
    }

    #[test]
    fn lists_methods_scanners() {
        let c = Config::from_toml(
            r#"
            [sources]
            allow = ["203.0.113.0/24", "2001:db8::/32"]
            deny = ["198.51.100.7/32"]
            [methods]
            allowed_sources_only = ["MESSAGE"]
            [scanners]
            extra_user_agents = ["EvilBot"]
            "#,
            "t",
        )
        .unwrap()
        .compile()
        .unwrap();
        assert!(c.is_allowed("203.0.113.9".parse().unwrap()));
        assert!(c.is_allowed("2001:db8:1::5".parse().unwrap()));
        assert!(!c.is_allowed("203.0.114.9".parse().unwrap()));
        assert!(c.is_denied("198.51.100.7".parse().unwrap()));
        assert_eq!(c.method_rule(&Method::Invite), Some(true));
        assert_eq!(c.method_rule(&Method::Message), Some(false));
        assert_eq!(c.method_rule(&Method::Other(b"FOO")), None);
        assert_eq!(
            c.scanner(b"Mozilla FRIENDLY-SCANNER 1.0"),
            Some("friendly-scanner")
        );
        assert!(c.scanner(b"my evilbot").is_some());
        assert!(c.scanner(b"Yealink SIP-T46S").is_none());
        // The written-out loop agrees with the crate's own search, on every pattern placed
        // anywhere in noise, in any case, and on near misses.
        use aho_corasick::automaton::Automaton;
        let crate_says = |ua: &[u8]| {
            c.scanners
                .try_find(&aho_corasick::Input::new(ua))
                .unwrap()
                .map(|m| c.scanner_patterns[m.pattern().as_usize()].as_str())
        };
        let mut uas: Vec<Vec<u8>> = vec![vec![], b"x".to_vec()];
        for p in &c.scanner_patterns {
            let p = p.as_bytes();
            for (pre, post) in [("", ""), ("Mozilla/5.0 ", " (x)"), ("a", "")] {
                uas.push([pre.as_bytes(), p, post.as_bytes()].concat());
                uas.push([pre.as_bytes(), &p.to_ascii_uppercase(), post.as_bytes()].concat());
                uas.push([pre.as_bytes(), &p[..p.len() - 1], post.as_bytes()].concat());
            }
        }
        for ua in &uas {
            assert_eq!(
                c.scanner(ua),
                crate_says(ua),
                "{}",
                String::from_utf8_lossy(ua)
            );
        }
    }

    #[test]
    fn invalid_values_are_reported() {
        let bad = Config::from_toml("[sip]\ndomains=[\"bad domain\"]", "t")
            .unwrap()
            .compile();
        assert!(matches!(bad, Err(ConfigError::Invalid(_))));
        let bad = Config::from_toml("[rate]\ngeneral={per_second=0, burst=1}", "t")
            .unwrap()
            .compile();
        assert!(bad.is_err());
        let scanning = |t: &str| Config::from_toml(&format!("[bans]\nscanning = {t}"), "t");
        let bad = scanning("{ drops = 5, within = \"0s\", ban = \"1h\" }").unwrap();
        assert!(matches!(bad.compile(), Err(ConfigError::Invalid(m)) if m.contains("scanning")));
        let off = scanning("{ drops = 0, within = \"0s\", ban = \"1h\" }").unwrap();
        assert!(off.compile().is_ok(), "off needs no window");
        let forever = scanning("{ drops = 50, within = \"1h\", ban = \"permanent\" }").unwrap();
        assert_eq!(forever.bans.scanning.ban, Expiry::Permanent);
        assert!(scanning("{ drops = 5 }").is_err(), "every field is given");
        assert!(Config::from_toml(
            "[bans]\ntiers=[{failures=2, within=\"1x\", ban=\"1h\"}]",
            "t"
        )
        .is_err());
    }
}
