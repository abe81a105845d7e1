//! The kernel rules that send SIP to sipwall: iptables and ip6tables (nft backend) rules in
//! sipwall's own chains, so others' rules are never touched, applied idempotently.
//!
//! Packets arriving for the PBX's SIP ports (INPUT) and those it sends from them (OUTPUT) go
//! to the same NFQUEUE range: the symmetric `--queue-balance` hash keeps both directions of a
//! flow on one queue. `--queue-bypass` lets traffic through while no sipwall listens (the
//! default: a crashed filter must not take the PBX down); `fail_closed` drops it instead.
//! The conntrack match (all states) turns conntrack on in the namespace, so IP fragments
//! are reassembled before the queue and a large INVITE arrives whole.

use std::process::Command;

#[derive(Debug, Clone)]
pub struct Rules {
    pub udp_ports: Vec<u16>,
    pub tcp_ports: Vec<u16>,
    /// SIP over TLS: queued so the ClientHello's SNI can be checked.
    pub tls_ports: Vec<u16>,
    pub first_queue: u16,
    pub last_queue: u16,
    pub fail_closed: bool,
}

const IN_CHAIN: &str = "SIPWALL_IN";
const OUT_CHAIN: &str = "SIPWALL_OUT";
const TOOLS: [&str; 2] = ["iptables", "ip6tables"];

impl Rules {
    fn target(&self) -> Vec<String> {
        let mut t = vec!["-j".into(), "NFQUEUE".into()];
        if self.first_queue == self.last_queue {
            t.extend(["--queue-num".into(), self.first_queue.to_string()]);
        } else {
            t.extend([
                "--queue-balance".into(),
                format!("{}:{}", self.first_queue, self.last_queue),
            ]);
        }
        if !self.fail_closed {
            t.push("--queue-bypass".into());
        }
        t
    }

    /// The rules of one chain, as iptables arguments (after the tool name).
    fn chain_rules(&self, chain: &str, port_flag: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (proto, ports) in [
            ("udp", &self.udp_ports),
            ("tcp", &self.tcp_ports),
            ("tcp", &self.tls_ports),
        ] {
            for port in ports {
                let mut r: Vec<String> = ["-A", chain, "-p", proto, port_flag, &port.to_string()]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                r.extend(
                    [
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "NEW,ESTABLISHED,RELATED,INVALID,UNTRACKED",
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
                r.extend(self.target());
                out.push(r);
            }
        }
        out
    }

    /// Every command `apply` runs, for `rules print`.
    pub fn script(&self) -> String {
        let mut s = String::new();
        for tool in TOOLS {
            for (chain, hook, flag) in [
                (IN_CHAIN, "INPUT", "--dport"),
                (OUT_CHAIN, "OUTPUT", "--sport"),
            ] {
                s += &format!("{tool} -w -N {chain} 2>/dev/null || {tool} -w -F {chain}\n");
                for r in self.chain_rules(chain, flag) {
                    s += &format!("{tool} -w {}\n", r.join(" "));
                }
                s += &format!("{tool} -w -C {hook} -j {chain} 2>/dev/null || {tool} -w -I {hook} 1 -j {chain}\n");
            }
        }
        s
    }

    /// Creates (or refreshes) sipwall's chains and hooks them in first. Idempotent.
    pub fn apply(&self) -> anyhow::Result<()> {
        for tool in TOOLS {
            for (chain, hook, flag) in [
                (IN_CHAIN, "INPUT", "--dport"),
                (OUT_CHAIN, "OUTPUT", "--sport"),
            ] {
                if !ok(tool, &["-w", "-N", chain]) {
                    run(tool, &["-w", "-F", chain])?;
                }
                for r in self.chain_rules(chain, flag) {
                    run(tool, &with_wait(r))?;
                }
                if !ok(tool, &["-w", "-C", hook, "-j", chain]) {
                    run(tool, &["-w", "-I", hook, "1", "-j", chain])?;
                }
            }
        }
        Ok(())
    }
}

impl Rules {
    /// The commands that move the rules in force (`self`) to `new`'s (a reload that changed
    /// the SIP ports), as (tool, arguments): the new rules are added before the stale ones go,
    /// so no port that both name is ever left unqueued; unchanged rules are not touched.
    pub fn update_commands(&self, new: &Rules) -> Vec<(&'static str, Vec<String>)> {
        let mut adds = Vec::new();
        let mut deletes = Vec::new();
        for tool in TOOLS {
            for (chain, flag) in [(IN_CHAIN, "--dport"), (OUT_CHAIN, "--sport")] {
                let (old, now) = (self.chain_rules(chain, flag), new.chain_rules(chain, flag));
                for r in now.iter().filter(|r| !old.contains(r)) {
                    adds.push((tool, with_wait(r.clone())));
                }
                for r in old.iter().filter(|r| !now.contains(r)) {
                    let mut d = r.clone();
                    d[0] = "-D".into();
                    deletes.push((tool, with_wait(d)));
                }
            }
        }
        adds.extend(deletes);
        adds
    }
}

/// Runs commands such as [`Rules::update_commands`] gives, in order. When one fails, those
/// that ran are undone, last first, so the kernel is left with the rules in force (which the
/// caller keeps, with the old config) rather than a mix of both port sets.
pub fn run_all(cmds: &[(&str, Vec<String>)]) -> anyhow::Result<()> {
    run_all_with(cmds, run::<String>)
}

fn run_all_with(
    cmds: &[(&str, Vec<String>)],
    mut run: impl FnMut(&str, &[String]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for (k, (tool, args)) in cmds.iter().enumerate() {
        let Err(e) = run(tool, args) else { continue };
        let mut undo_failed = Vec::new();
        for (tool, args) in cmds[..k].iter().rev() {
            if let Err(u) = run(tool, &undo(args)) {
                undo_failed.push(u.to_string());
            }
        }
        if undo_failed.is_empty() {
            return Err(e.context("the rules in force are unchanged (what had run was undone)"));
        }
        return Err(e.context(format!(
            "undoing what had run failed too (`sipwall rules apply` restores the rules): {}",
            undo_failed.join("; ")
        )));
    }
    Ok(())
}

/// The command that undoes an append or a delete (the rules' order in a chain does not
/// matter: each queues its own port, to the same target).
fn undo(args: &[String]) -> Vec<String> {
    let mut a = args.to_vec();
    for w in a.iter_mut() {
        match w.as_str() {
            "-A" => *w = "-D".into(),
            "-D" => *w = "-A".into(),
            _ => continue,
        }
        break;
    }
    a
}

fn with_wait(rule: Vec<String>) -> Vec<String> {
    let mut args = vec!["-w".to_string()];
    args.extend(rule);
    args
}

/// Unhooks and deletes sipwall's chains; does nothing where they are absent.
pub fn remove() -> anyhow::Result<()> {
    for tool in TOOLS {
        for (chain, hook) in [(IN_CHAIN, "INPUT"), (OUT_CHAIN, "OUTPUT")] {
            while ok(tool, &["-w", "-D", hook, "-j", chain]) {}
            if ok(tool, &["-w", "-F", chain]) {
                run(tool, &["-w", "-X", chain])?;
            }
        }
    }
    Ok(())
}

fn ok(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run<S: AsRef<str>>(tool: &str, args: &[S]) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = Command::new(tool)
        .args(&args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {tool}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default ports on queue 0, with bypass.
    fn defaults() -> Rules {
        Rules {
            udp_ports: vec![5060],
            tcp_ports: vec![5060],
            tls_ports: vec![5061],
            first_queue: 0,
            last_queue: 0,
            fail_closed: false,
        }
    }

    #[test]
    fn script_queues_both_directions_with_bypass() {
        let r = Rules {
            last_queue: 1,
            ..defaults()
        };
        let s = r.script();
        assert!(s.contains("iptables -w -A SIPWALL_IN -p udp --dport 5060 -m conntrack"));
        assert!(s.contains("ip6tables -w -A SIPWALL_OUT -p tcp --sport 5060"));
        assert!(s.contains("iptables -w -A SIPWALL_IN -p tcp --dport 5061"));
        assert!(s.contains("-j NFQUEUE --queue-balance 0:1 --queue-bypass"));
        assert!(s.contains("iptables -w -C INPUT -j SIPWALL_IN 2>/dev/null || iptables -w -I INPUT 1 -j SIPWALL_IN"));
        let closed = Rules {
            fail_closed: true,
            last_queue: 0,
            ..r
        };
        assert!(closed.script().contains("-j NFQUEUE --queue-num 0\n"));
    }

    #[test]
    fn a_port_change_adds_the_new_rules_before_removing_the_old() {
        let old = defaults();
        let new = Rules {
            udp_ports: vec![5060, 5160],
            tcp_ports: vec![5160],
            ..old.clone()
        };
        let cmds: Vec<String> = old
            .update_commands(&new)
            .iter()
            .map(|(t, a)| format!("{t} {}", a.join(" ")))
            .collect();
        let at = |needle: &str| {
            cmds.iter()
                .position(|c| c.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} in {cmds:#?}"))
        };
        // Per tool and chain: UDP 5160 and TCP 5160 added, TCP 5060 deleted; UDP 5060 and TLS
        // 5061 untouched.
        assert_eq!(cmds.len(), 2 * 2 * 3, "{cmds:#?}");
        let last_add = at("ip6tables -w -A SIPWALL_OUT -p tcp --sport 5160");
        let first_delete = at("iptables -w -D SIPWALL_IN -p tcp --dport 5060 ");
        assert!(last_add < first_delete, "{cmds:#?}");
        assert!(cmds
            .iter()
            .all(|c| !c.contains("5061") && !c.contains("udp --dport 5060 ")));
        assert!(cmds[first_delete].ends_with("-j NFQUEUE --queue-num 0 --queue-bypass"));
        assert!(old.update_commands(&old).is_empty());
    }

    #[test]
    fn a_move_that_fails_half_way_is_undone() {
        let old = defaults();
        let new = Rules {
            udp_ports: vec![5160],
            ..old.clone()
        };
        let cmds = old.update_commands(&new);
        let show = |t: &str, a: &[String]| format!("{t} {}", a.join(" "));
        // The kernel as a list of rules; the fourth command fails.
        let mut ran = Vec::new();
        let err = run_all_with(&cmds, |t, a| {
            if ran.len() == 3 {
                ran.push(format!("FAILED {}", show(t, a)));
                anyhow::bail!("iptables: no chain by that name");
            }
            ran.push(show(t, a));
            Ok(())
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("unchanged"), "{err:#}");
        let done: Vec<String> = cmds[..3].iter().map(|(t, a)| show(t, a)).collect();
        let undone: Vec<String> = done
            .iter()
            .rev()
            .map(|c| c.replacen(" -A ", " -D ", 1))
            .collect();
        assert_eq!(ran[..3], done[..]);
        assert!(ran[3].starts_with("FAILED "));
        assert_eq!(ran[4..], undone[..], "{ran:#?}");
        // An undo that fails is said, with how to restore.
        let mut calls = 0;
        let err = run_all_with(&cmds, |_, _| {
            calls += 1;
            if calls >= 2 {
                anyhow::bail!("busy")
            }
            Ok(())
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("rules apply"), "{err:#}");
        assert_eq!(undo(&undo(&cmds[0].1)), cmds[0].1);
        assert!(undo(&cmds.last().unwrap().1).contains(&"-A".to_string()));
    }
}
