//! Kernel offload of bans and deny entries: nftables sets in sipwall's own table (`inet
//! sipwall`), matched in a chain that runs before iptables' filter chains (priority -10), so a
//! banned source's SIP packets are dropped in the kernel and never cost a queue round trip.
//!
//! The table is sipwall's alone: it is built whole in one transaction, never touches other
//! tables, and coexists with iptables-nft (a reload that changes the SIP ports rebuilds it
//! with its sets filled, in the same transaction). Every sync replaces a changed set's
//! contents in one transaction (flush + add), which keeps the kernel equal to sipwall's
//! state without tracking deltas; ban elements carry their remaining time, so the kernel
//! expires them on its own even while sipwall is down. Sources newly blocked have their
//! conntrack entries deleted, so an established UDP "flow" stops too.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

pub const TABLE: &str = "sipwall";

/// Sets and what they hold. Allowed sources return early (they still reach the queue).
const SETS: [(&str, &str, &str); 6] = [
    ("allow4", "ipv4_addr", "return"),
    ("allow6", "ipv6_addr", "return"),
    ("ban4", "ipv4_addr", "drop"),
    ("ban6", "ipv6_addr", "drop"),
    ("deny4", "ipv4_addr", "drop"),
    ("deny6", "ipv6_addr", "drop"),
];

/// What a set should hold: network → when it leaves the set, in ns since the epoch (None:
/// when sipwall removes it). Absolute, so an unchanged ban compares equal from one sync to
/// the next and costs no nft run.
pub type Elements = BTreeMap<IpNet, Option<u64>>;

/// The wanted contents of every set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub allow: Elements,
    pub ban: Elements,
    pub deny: Elements,
}

impl Wanted {
    fn set(&self, name: &str) -> Elements {
        let (all, v4) = match name {
            "allow4" => (&self.allow, true),
            "allow6" => (&self.allow, false),
            "ban4" => (&self.ban, true),
            "ban6" => (&self.ban, false),
            "deny4" => (&self.deny, true),
            _ => (&self.deny, false),
        };
        all.iter()
            .filter(|(n, _)| matches!(n, IpNet::V4(_)) == v4)
            .map(|(n, t)| (*n, *t))
            .collect()
    }
}

/// The kernel side: what is installed, and how to change it.
pub struct Offload {
    ports: Vec<u16>,
    installed: BTreeMap<&'static str, Elements>,
}

/// Packets each set's rule has dropped (or let through to the queue, for allow sets).
pub type SetCounters = BTreeMap<String, u64>;

/// The ports the table's rules match: every SIP port of the config (UDP, TCP, TLS), once each.
pub fn sip_ports(c: &crate::config::SipSection) -> Vec<u16> {
    let mut ports = [&c.udp_ports[..], &c.tcp_ports, &c.tls_ports].concat();
    ports.sort_unstable();
    ports.dedup();
    ports
}

impl Offload {
    /// Builds sipwall's table afresh (an old one is replaced) for the config's SIP ports, with
    /// `want` in its sets, in one transaction. Returns it and the networks it blocks (their
    /// conntrack entries deleted).
    pub fn create(
        c: &crate::config::SipSection,
        want: &Wanted,
        now_ns: u64,
    ) -> anyhow::Result<(Offload, Vec<IpNet>)> {
        let mut o = Offload {
            ports: Vec::new(),
            installed: BTreeMap::new(),
        };
        let newly = o.rebuild(c, want, now_ns)?;
        Ok((o, newly))
    }

    /// The ports the table's rules match (sorted, once each).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The script that (re)creates the table, empty.
    pub fn table_script(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let ports = ports.join(", ");
        let mut s =
            format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
        for (name, ty, _) in SETS {
            // interval: deny entries are CIDRs, IPv6 bans are prefixes.
            s += &format!("  set {name} {{ type {ty}; flags interval, timeout; }}\n");
        }
        for hook in ["input", "forward"] {
            s += &format!(
                "  chain {hook} {{\n    type filter hook {hook} priority -10; policy accept;\n"
            );
            for (name, _, verdict) in SETS {
                let family = if name.ends_with('4') { "ip" } else { "ip6" };
                s += &format!(
                    "    meta l4proto {{ udp, tcp }} th dport {{ {ports} }} {family} saddr @{name} counter {verdict}\n"
                );
            }
            s += "  }\n";
        }
        s + "}\n"
    }

    /// Makes the kernel sets equal `want`. Returns the networks newly banned or denied, whose
    /// conntrack entries were deleted.
    pub fn sync(&mut self, want: &Wanted, now_ns: u64) -> anyhow::Result<Vec<IpNet>> {
        let (script, changed) = self.sync_script(want, now_ns);
        if script.is_empty() {
            return Ok(Vec::new());
        }
        nft(&script)?;
        let newly = self.newly_blocked(want);
        self.installed.extend(changed);
        newly.iter().for_each(flush_conntrack);
        Ok(newly)
    }

    /// Rebuilds the table for the ports of `c` (at start, or when a reload changed them) with
    /// `want` already in its sets, in one transaction: the kernel never holds the new table
    /// empty, so a banned source is dropped in the kernel throughout; if nft fails, the old
    /// table stays whole.
    /// Returns the networks newly banned or denied, as [`Offload::sync`].
    pub fn rebuild(
        &mut self,
        c: &crate::config::SipSection,
        want: &Wanted,
        now_ns: u64,
    ) -> anyhow::Result<Vec<IpNet>> {
        let (script, fresh) = rebuild_script(c, want, now_ns);
        nft(&script)?;
        let newly = self.newly_blocked(want);
        *self = fresh;
        newly.iter().for_each(flush_conntrack);
        Ok(newly)
    }

    /// The nft commands that make the installed sets equal `want` (empty when they do), and
    /// the sets they change with their new contents.
    fn sync_script(&self, want: &Wanted, now_ns: u64) -> (String, Vec<(&'static str, Elements)>) {
        let mut script = String::new();
        let mut changed = Vec::new();
        for (name, _, _) in SETS {
            let elems = want.set(name);
            let before = self.installed.get(name);
            if before == Some(&elems) || (before.is_none() && elems.is_empty()) {
                continue;
            }
            script += &format!("flush set inet {TABLE} {name}\n");
            if !elems.is_empty() {
                let list: Vec<String> = elems
                    .iter()
                    .map(|(n, t)| {
                        let n = element(n);
                        match t {
                            // The kernel counts the time left down from now.
                            Some(until) => format!(
                                "{n} timeout {}s",
                                until.saturating_sub(now_ns).div_ceil(1_000_000_000).max(1)
                            ),
                            None => n,
                        }
                    })
                    .collect();
                script += &format!(
                    "add element inet {TABLE} {name} {{ {} }}\n",
                    list.join(", ")
                );
            }
            changed.push((name, elems));
        }
        (script, changed)
    }

    /// Networks `want` bans or denies that the installed sets do not hold yet.
    fn newly_blocked(&self, want: &Wanted) -> Vec<IpNet> {
        let mut newly = Vec::new();
        for (name, _, verdict) in SETS {
            if verdict != "drop" {
                continue;
            }
            let before = self.installed.get(name);
            newly.extend(
                want.set(name)
                    .into_keys()
                    .filter(|n| before.is_none_or(|b| !b.contains_key(n))),
            );
        }
        newly
    }

    /// Packets matched by each set's rules (input and forward together).
    pub fn counters(&self) -> anyhow::Result<SetCounters> {
        let out = Command::new("nft")
            .args(["-j", "list", "table", "inet", TABLE])
            .output()?;
        if !out.status.success() {
            anyhow::bail!("nft list: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(parse_counters(&out.stdout))
    }
}

/// [`Offload::rebuild`]'s transaction, and the offload it makes (its sets as the transaction
/// fills them).
fn rebuild_script(c: &crate::config::SipSection, want: &Wanted, now_ns: u64) -> (String, Offload) {
    let mut fresh = Offload {
        ports: sip_ports(c),
        installed: BTreeMap::new(),
    };
    let (fill, changed) = fresh.sync_script(want, now_ns);
    let script = fresh.table_script() + &fill;
    fresh.installed.extend(changed);
    (script, fresh)
}

/// Removes sipwall's table (`sipwall rules remove`); absent is fine.
pub fn remove() -> anyhow::Result<()> {
    nft(&format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
    ))
}

fn element(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// Runs one nft transaction: all of it applies, or none.
fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Deletes conntrack entries whose original source is in `net`. conntrack exits 1 when none
/// matched; a missing tool is logged once by the caller's log line.
fn flush_conntrack(net: &IpNet) {
    let mut c = Command::new("conntrack");
    c.arg("-D");
    match net {
        IpNet::V4(n) => {
            c.args(["-f", "ipv4", "-s", &n.addr().to_string()]);
            if n.prefix_len() < 32 {
                c.args(["--mask-src", &n.netmask().to_string()]);
            }
        }
        IpNet::V6(n) => {
            c.args(["-f", "ipv6", "-s", &n.addr().to_string()]);
            if n.prefix_len() < 128 {
                c.args(["--mask-src", &n.netmask().to_string()]);
            }
        }
    }
    match c.stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "conntrack not run: established flows of a banned source continue until they idle out")
        }
    }
}

/// Sums the counter of every rule that names a set, from `nft -j list table`.
fn parse_counters(json: &[u8]) -> SetCounters {
    let mut out = SetCounters::new();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return out;
    };
    for item in v["nftables"].as_array().into_iter().flatten() {
        let Some(expr) = item["rule"]["expr"].as_array() else {
            continue;
        };
        let set = expr.iter().find_map(|e| {
            e["match"]["right"]
                .as_str()
                .and_then(|r| r.strip_prefix('@'))
        });
        let packets = expr.iter().find_map(|e| e["counter"]["packets"].as_u64());
        if let (Some(set), Some(p)) = (set, packets) {
            *out.entry(set.to_string()).or_default() += p;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_split_by_family_and_counters_parse() {
        let mut w = Wanted::default();
        w.ban.insert("198.18.0.77/32".parse().unwrap(), Some(3600));
        w.ban.insert("2001:db8::/64".parse().unwrap(), None);
        assert_eq!(w.set("ban4").len(), 1);
        assert_eq!(w.set("ban6").len(), 1);
        assert!(w.set("deny4").is_empty());
        assert_eq!(element(&"198.18.0.77/32".parse().unwrap()), "198.18.0.77");
        assert_eq!(element(&"2001:db8::/64".parse().unwrap()), "2001:db8::/64");

        let json = br#"{"nftables":[{"rule":{"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@ban4"}},{"counter":{"packets":7,"bytes":700}},{"drop":null}]}},
            {"rule":{"expr":[{"match":{"right":"@ban4"}},{"counter":{"packets":3,"bytes":1}},{"drop":null}]}}]}"#;
        assert_eq!(parse_counters(json).get("ban4"), Some(&10));
    }

    #[test]
    fn table_script_has_every_set_in_both_hooks() {
        let o = Offload {
            ports: vec![5060, 5061],
            installed: BTreeMap::new(),
        };
        let s = o.table_script();
        for (name, _, _) in SETS {
            assert_eq!(s.matches(&format!("@{name} counter")).count(), 2, "{name}");
        }
        assert!(s.contains("th dport { 5060, 5061 }"));
        assert!(s.starts_with("table inet sipwall {}\ndelete table inet sipwall\n"));
    }

    /// A reload that changes the ports rebuilds the table and fills its sets in one script
    /// (one nft transaction), so there is no moment with the table there and the bans not;
    /// only bans the old table lacked count as newly blocked.
    #[test]
    fn a_port_change_rebuilds_the_table_with_its_sets_filled() {
        let banned: IpNet = "198.18.0.77/32".parse().unwrap();
        let mut w = Wanted::default();
        w.ban.insert(banned, Some(3_600_000_000_000));
        w.deny.insert("198.19.0.0/16".parse().unwrap(), None);
        let mut old = Offload {
            ports: vec![5060],
            installed: BTreeMap::new(),
        };
        old.installed.insert("ban4", w.set("ban4"));
        let mut c = crate::config::Config::default().sip;
        c.udp_ports = vec![5060, 5160];
        let (script, fresh) = rebuild_script(&c, &w, 0);
        let table = script.find("table inet sipwall {\n").unwrap();
        let fill = script
            .find("add element inet sipwall ban4 { 198.18.0.77 timeout 3600s }")
            .unwrap();
        assert!(table < fill, "{script}");
        assert!(script.contains("add element inet sipwall deny4 { 198.19.0.0/16 }"));
        assert!(script.contains("th dport { 5060, 5061, 5160 }"), "{script}");
        assert_eq!(fresh.ports(), [5060, 5061, 5160]);
        assert_eq!(
            old.newly_blocked(&w),
            vec!["198.19.0.0/16".parse::<IpNet>().unwrap()]
        );
        // The new table's sets are what the transaction filled: nothing left to sync.
        assert_eq!(fresh.sync_script(&w, 0).0, "");
    }
}
