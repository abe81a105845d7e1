//! The real binary, as users run it: explain, replay, check.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipwall"))
}

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn explain_says_why_a_phone_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("msg.sip");
    std::fs::write(
        &f,
        common::request("REGISTER", "198.18.0.2", common::DOMAIN, common::DOMAIN, ""),
    )
    .unwrap();
    let out = bin()
        .args(["explain", "--domain", common::DOMAIN, "--json"])
        .arg(&f)
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["verdict"], "drop");
    assert_eq!(v["reason"], "no-secret-domain");
    assert_eq!(v["facts"]["request_uri_host"], "198.18.0.2");
    assert_eq!(v["facts"]["request_uri_host_is_secret"], false);
    assert_eq!(v["facts"]["to_host_is_secret"], true);
    assert_eq!(v["facts"]["scanner_pattern"], serde_json::Value::Null);
    let scan = common::request("OPTIONS", "198.18.0.2", "198.18.0.2", "198.18.0.2", "")
        .replace("Yealink SIP-T46S", "friendly-scanner 0.3");
    std::fs::write(&f, scan).unwrap();
    let out = bin()
        .args(["explain", "--domain", common::DOMAIN, "--json"])
        .arg(&f)
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["reason"], "scanner");
    assert_eq!(v["facts"]["scanner_pattern"], "friendly-scanner");
    // human form, from standard input
    let mut child = bin()
        .args(["explain", "--domain", common::DOMAIN, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            common::request("INVITE", common::DOMAIN, common::DOMAIN, common::DOMAIN, "")
                .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("verdict: accept") && s.contains("reason:  secret-domain"),
        "{s}"
    );
}

/// Every RFC 4475 message through the binary: the valid ones are read, the invalid ones that
/// touch what policy reads are `malformed`.
#[test]
fn explain_rfc4475_torture_messages() {
    let malformed = [
        "badaspec",
        "baddn",
        "badvers",
        "bigcode",
        "clerr",
        "escruri",
        "insuf",
        "ltgtruri",
        "lwsruri",
        "lwsstart",
        "mcl01",
        "mismatch01",
        "mismatch02",
        "multi01",
        "ncl",
        "quotbal",
        "scalar02",
        "scalarlg",
        "trws",
    ];
    let readable = [
        "badbranch",
        "baddate",
        "badinv01",
        "bcast",
        "bext01",
        "cparam01",
        "cparam02",
        "dblreq",
        "esc01",
        "esc02",
        "escnull",
        "intmeth",
        "inv2543",
        "invut",
        "longreq",
        "lwsdisp",
        "mpart01",
        "noreason",
        "novelsc",
        "regaut01",
        "regbadct",
        "regescrt",
        "sdp01",
        "semiuri",
        "transports",
        "unkscm",
        "unksm2",
        "unreason",
        "wsinv",
        "zeromf",
    ];
    for name in malformed.iter().chain(&readable) {
        let out = bin()
            .args(["explain", "--domain", "example.com", "--json"])
            .arg(data(&format!("rfc4475/{name}.dat")))
            .output()
            .unwrap();
        let v = json(&out);
        let reason = v["reason"].as_str().unwrap();
        if malformed.contains(name) {
            assert_eq!(reason, "malformed", "{name}: {v}");
        } else {
            assert!(!["malformed", "not-sip"].contains(&reason), "{name}: {v}");
            assert!(v["facts"]["call_id"].is_string(), "{name} was read: {v}");
        }
    }
    // test.dat (in the tarball, in no section) has no SIP version: not SIP.
    let v = json(
        &bin()
            .args(["explain", "--json"])
            .arg(data("rfc4475/test.dat"))
            .output()
            .unwrap(),
    );
    assert_eq!(v["reason"], "not-sip");
}

#[test]
fn replay_judges_the_shipped_capture() {
    let dir = tempfile::tempdir().unwrap();
    let verdicts = dir.path().join("v.jsonl");
    let out = bin()
        .args(["replay", "--domain", common::DOMAIN, "--json", "--verdicts"])
        .arg(&verdicts)
        .arg(data("mixed-small.pcap"))
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["packets"], 614);
    // Both of the PBX's addresses are inferred: phones reach it over IPv4 and IPv6.
    assert_eq!(
        v["pbx"],
        serde_json::json!(["198.18.0.2", "2001:db8::2"]),
        "inferred"
    );
    assert_eq!(v["pbx_inferred"], true);
    let r = &v["reasons"];
    // every scanner probe and every by-IP request dropped; no phone request rate-limited
    assert_eq!(r["scanner"], 52);
    assert_eq!(r["no-secret-domain"], 52);
    assert!(r.get("rate-limited").is_none(), "{r}");
    assert!(r.get("malformed").is_none(), "{r}");
    assert!(r["secret-domain"].as_u64().unwrap() > 90);
    assert!(r["in-dialog"].as_u64().unwrap() > 60);
    // the password guesser is banned after two failures, with evidence
    assert_eq!(v["banned_sources"].as_array().unwrap().len(), 1);
    assert_eq!(v["banned_sources"][0]["source"], "198.19.200.0");
    assert_eq!(r["banned"], 4);
    let lines = std::fs::read_to_string(&verdicts).unwrap();
    let mut sip_lines = 0;
    for l in lines.lines() {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        for k in [
            "index",
            "time",
            "direction",
            "src",
            "dst",
            "transport",
            "verdict",
            "reason",
        ] {
            assert!(j.get(k).is_some(), "{k} missing in {l}");
        }
        if j.get("method").is_some() || j.get("status").is_some() {
            sip_lines += 1;
        }
        if j["src"].as_str().unwrap().starts_with('[') {
            assert!(
                j["src"].as_str().unwrap().contains("]:"),
                "IPv6 in brackets: {l}"
            );
        }
    }
    assert_eq!(sip_lines, v["sip_messages"].as_u64().unwrap());
}

#[test]
fn replay_of_a_generated_capture_with_tcp_and_ipv6_and_explicit_pbx() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("gen.pcap");
    let g = sipwall::gen::Generator::mixed(common::DOMAIN, 5000);
    g.write_pcap(&mut std::fs::File::create(&pcap).unwrap())
        .unwrap();
    let v = json(
        &bin()
            .args([
                "replay",
                "--domain",
                common::DOMAIN,
                "--pbx",
                "198.18.0.2",
                "--pbx",
                "2001:db8::2",
                "--json",
            ])
            .arg(&pcap)
            .output()
            .unwrap(),
    );
    let r = &v["reasons"];
    assert_eq!(r["scanner"].as_u64().unwrap(), g.expect.scanner_requests);
    assert_eq!(
        r["no-secret-domain"].as_u64().unwrap(),
        g.expect.by_ip_requests
    );
    assert!(
        r.get("rate-limited").is_none() && r.get("malformed").is_none(),
        "{r}"
    );
    assert!(
        r["tcp-partial"].as_u64().unwrap() > 0,
        "TCP REGISTERs split in two"
    );
    let accepted_requests = r["secret-domain"].as_u64().unwrap() + r["in-dialog"].as_u64().unwrap();
    assert!(
        accepted_requests >= g.expect.phone_requests,
        "{accepted_requests} < {}",
        g.expect.phone_requests
    );
}

#[test]
fn check_validates_configs_with_line_numbers() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sipwall.toml");
    let out = bin()
        .args(["check", "--config"])
        .arg(&shipped)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("1 secret domain(s)")
            && said.contains("SIP on udp [5060], tcp [5060], tls [5061]"),
        "{said}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[sip]\ndomains = [\"a.example\"]\n\n[rate]\ngenral = 1\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5") && err.contains("genral"), "{err}");
    let out = bin()
        .args(["replay", "--domain", "x.example"])
        .arg(dir.path().join("missing.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pcap"));
}

/// `sipwall replay --verdicts /dev/stdout | head -1`: the reader goes away early. The command
/// stops on SIGPIPE as other tools do; it does not panic on the failed print.
#[test]
fn a_reader_that_goes_away_early_is_no_panic() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    // Megabytes of verdict lines: far more than a pipe holds.
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcap");
    let gen = bin()
        .args(["gen", "--packets", "20000"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(gen.status.success());
    let mut child = bin()
        .args([
            "replay",
            "--domain",
            common::DOMAIN,
            "--verdicts",
            "/dev/stdout",
        ])
        .arg(&pcap)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{status:?}: {err}"
    );
}

/// A daemon that hangs up on `sipwall ctl` (stopping, or not sipwall at all): a clear error
/// and exit 1, whether the hang-up comes before the request is written (EPIPE: the command
/// takes SIGPIPE's default action, which would end it silently) or after.
#[test]
fn ctl_says_so_when_the_daemon_hangs_up() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Bounded: one connection per run below.
    let runs = 20;
    let server = std::thread::spawn(move || {
        for _ in 0..runs {
            let (s, _) = listener.accept().unwrap();
            s.shutdown(std::net::Shutdown::Both).unwrap();
        }
    });
    for _ in 0..runs {
        let out = bin()
            .arg("ctl")
            .arg("--socket")
            .arg(&sock)
            .arg("bans")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), None, "{:?}: {err}", out.status);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("hung up"), "{err}");
    }
    server.join().unwrap();
}

/// A PBX on another port (FreePBX's chan_sip takes 5160): replay says where the requests go,
/// and `--port` judges them.
#[test]
fn replay_points_at_sip_on_another_port_and_port_judges_it() {
    let msg = common::request(
        "REGISTER",
        common::DOMAIN,
        common::DOMAIN,
        common::DOMAIN,
        "",
    );
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(5062, 5160)
        .write(&mut frame, msg.as_bytes())
        .unwrap();
    // pcap: global header (Ethernet), one record.
    let mut pcap = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        pcap.extend(v.to_le_bytes());
    }
    for v in [1_700_000_000u32, 0, frame.len() as u32, frame.len() as u32] {
        pcap.extend(v.to_le_bytes());
    }
    pcap.extend(&frame);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("5160.pcap");
    std::fs::write(&f, pcap).unwrap();
    let out = bin()
        .args(["replay", "--domain", common::DOMAIN])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("udp port 5160 (1): give --port 5160"), "{err}");
    let out = bin()
        .args([
            "replay",
            "--json",
            "--domain",
            common::DOMAIN,
            "--port",
            "5160",
        ])
        .arg(&f)
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["sip_messages"], 1, "{v}");
    assert_eq!(v["reasons"]["secret-domain"], 1, "{v}");
}
