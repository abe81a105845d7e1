//! Traffic from real peers: kamailio as the PBX, SIPp phones (UDP, TCP), sipvicious by IP,
//! and a SIPp password guesser that knows the domain (`tests/e2e/capture.sh`).
//! The committed capture is always replayed; as root with the peers installed (CI), the
//! capture is also made afresh in network namespaces and replayed with the same expectations.

use std::path::{Path, PathBuf};
use std::process::Command;

fn replay(pcap: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_sipwall"))
        .args([
            "replay",
            "--json",
            "--domain",
            "sip.example.com",
            "--pbx",
            "198.18.0.2",
            "--verdicts",
        ])
        .arg(&v)
        .arg(pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = serde_json::from_slice(&out.stdout).unwrap();
    let lines = std::fs::read_to_string(&v)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, lines)
}

fn from(lines: &[serde_json::Value], ip: &str) -> Vec<(String, String, String)> {
    lines
        .iter()
        .filter(|l| {
            l["direction"] == "to-pbx" && l["src"].as_str().unwrap().starts_with(&format!("{ip}:"))
        })
        .map(|l| {
            (
                l["method"].as_str().unwrap_or("-").to_string(),
                l["verdict"].as_str().unwrap().to_string(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn check(pcap: &Path) {
    let (summary, lines) = replay(pcap);
    // Phones: every request accepted, over UDP and TCP.
    let phone = from(&lines, "198.18.0.10");
    let registers = phone.iter().filter(|(m, ..)| m == "REGISTER").count();
    assert!(
        registers >= 6,
        "3 registrations of 2 REGISTERs each: {phone:?}"
    );
    assert!(phone.iter().all(|(_, v, _)| v == "accept"), "{phone:?}");
    // sipvicious by IP: nothing reaches the PBX.
    let atk = from(&lines, "198.18.0.66");
    assert!(atk.len() >= 5, "{atk:?}");
    assert!(atk.iter().all(|(_, v, _)| v == "drop"), "{atk:?}");
    assert!(atk.iter().any(|(_, _, r)| r == "scanner"), "{atk:?}");
    // The guesser: 2 attempts (REGISTER, then REGISTER with a wrong password) reach the PBX,
    // the 2 failures ban it (tier 1), and its later attempts are dropped.
    let guess = from(&lines, "198.18.0.77");
    let accepted = guess.iter().filter(|(_, v, _)| v == "accept").count();
    assert_eq!(accepted, 4, "{guess:?}");
    assert!(
        guess.iter().skip(4).all(|(_, _, r)| r == "banned"),
        "{guess:?}"
    );
    assert!(guess.len() > 4, "{guess:?}");
    let bans = summary["banned_sources"].as_array().unwrap();
    let b = bans
        .iter()
        .find(|b| b["source"] == "198.18.0.77")
        .expect("guesser banned");
    assert_eq!(b["tier"], "tier-1");
    assert_eq!(b["evidence"]["users"][0], "100");
    assert!(b["evidence"]["first_request"]
        .as_str()
        .unwrap()
        .starts_with("REGISTER sip:sip.example.com"));
}

#[test]
fn committed_real_capture_gets_the_expected_verdicts() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-kamailio-sipvicious.pcap"));
}

/// Makes the capture afresh with the real tools. Needs root and the peers; CI has both.
#[test]
fn fresh_capture_from_real_peers_gets_the_expected_verdicts() {
    if !can_run_peers(&["tcpdump"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap: PathBuf = dir.path().join("fresh.pcap");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/capture.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("kamailio registrations: 3"), "{log}");
    check(&pcap);
}

/// Facts `tests/e2e/inline.sh` prints as key=value lines.
fn facts(out: &std::process::Output) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn can_run_peers(extra: &[&str]) -> bool {
    let have = |c: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = ["kamailio", "sipp", "svmap", "ip"]
        .iter()
        .chain(extra)
        .all(|t| have(t));
    if !(root && tools) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: root={root}, peers installed={tools}"
        );
        eprintln!("skipped: needs root and kamailio, sipp, sipvicious, {extra:?} (run as CI does: bash .ci/run)");
    }
    root && tools
}

/// sipwall inline (NFQUEUE) in front of kamailio: phones register and complete calls (UDP,
/// TCP), an allowed trunk gets in by IP, sipvicious gets nothing
/// through, a guesser is banned after the configured failures, kill -9 fails open, a restart
/// filters again, SIGTERM removes the rules, --dry-run drops nothing, SIGHUP reloads (and a
/// broken file keeps the config in force). Counted from kamailio's log.
#[test]
fn inline_in_front_of_kamailio_against_real_tools() {
    if !can_run_peers(&["iptables"]) {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/inline.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_sipwall"))
        .output()
        .unwrap();
    let f = facts(&out);
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    let get = |k: &str| {
        f.get(k)
            .unwrap_or_else(|| panic!("{k} missing: {log}"))
            .as_str()
    };
    assert_eq!(
        get("phone_runs_ok"),
        "4",
        "every phone registration succeeds, IPv4 and IPv6, UDP and TCP: {log}"
    );
    assert_eq!(
        get("registrations_at_pbx"),
        "7",
        "5 phone registrations and 2 by the callee: {log}"
    );
    assert_eq!(get("tls_ip_sni_unfiltered"), "ok", "{log}");
    assert_eq!(
        get("tls_secret_sni"),
        "ok",
        "TLS handshake with the secret domain as SNI: {log}"
    );
    assert_eq!(
        get("tls_ip_sni"),
        "failed",
        "no handshake for an IP as SNI: {log}"
    );
    assert_eq!(
        get("tls_no_sni"),
        "failed",
        "no handshake without SNI: {log}"
    );
    assert_eq!(
        get("fail2ban_drop_lines"),
        "1",
        "one line for the attacker's first drop: {log}"
    );
    assert_eq!(
        get("fail2ban_ban_lines"),
        "1",
        "one line for the guesser's ban: {log}"
    );
    assert_eq!(get("secret_domain_in_log"), "0", "{log}");
    assert_eq!(
        get("call_udp"),
        "ok",
        "INVITE/407/ACK/INVITE/180/200/ACK/BYE relayed over UDP: {log}"
    );
    assert_eq!(get("call_tcp"), "ok", "the same call over TCP: {log}");
    assert_ne!(
        get("trunk_invites_at_pbx"),
        "0",
        "an allowed trunk's IP-addressed INVITE: {log}"
    );
    assert_eq!(get("attacker_requests_at_pbx"), "0", "{log}");
    assert_eq!(
        get("guesser_failures_at_pbx"),
        "2",
        "banned after 2 failures (tier 1): {log}"
    );
    assert_ne!(
        get("attacker_requests_after_kill"),
        "0",
        "kill -9 fails open: {log}"
    );
    assert_eq!(get("attacker_requests_after_restart"), "0", "{log}");
    assert_eq!(get("phone_after_restart"), "ok", "{log}");
    assert_eq!(get("rules_left_after_stop"), "0", "{log}");
    assert_ne!(
        get("attacker_requests_in_dry_run"),
        "0",
        "dry run drops nothing: {log}"
    );
    assert_ne!(get("dry_run_would_drop"), "0", "{log}");
    assert_eq!(
        get("phone_before_reload"),
        "failed",
        "config names another domain: {log}"
    );
    assert_eq!(
        get("phone_after_reload"),
        "ok",
        "SIGHUP took the new domain: {log}"
    );
    assert_eq!(
        get("phone_after_bad_reload"),
        "ok",
        "a bad file keeps the old config: {log}"
    );
    assert_eq!(get("bad_reload_reported"), "1", "{log}");
}
