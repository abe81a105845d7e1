//! The policy as users see it: each rule, and every way round it that we know of.

mod common;
use common::*;
use sipwall::engine::{Direction, Reason, Verdict};

const S: u64 = 1_000_000_000;
const PHONE: &str = "198.18.0.1:5062";

fn reason(e: &mut sipwall::engine::Engine, src: &str, msg: &str, now: u64) -> Reason {
    e.decide(&udp(src, PBX, msg.as_bytes()), Direction::ToPbx, now)
        .reason
}

/// The PBX sends `msg` to `dst`: the engine observes it.
fn pbx_sends(e: &mut sipwall::engine::Engine, dst: &str, msg: &str, now: u64) -> Reason {
    e.decide(&udp(PBX, dst, msg.as_bytes()), Direction::FromPbx, now)
        .reason
}

#[test]
fn secret_domain_must_be_the_host_of_all_three() {
    let mut e = engine();
    let d = DOMAIN;
    assert_eq!(
        reason(&mut e, PHONE, &request("REGISTER", d, d, d, ""), S),
        Reason::SecretDomain
    );
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request("INVITE", "SIP.Example.COM", d, d, ""),
            S
        ),
        Reason::SecretDomain
    );
    // Scanners address the server by IP.
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request("REGISTER", "198.18.0.2", d, d, ""),
            S
        ),
        Reason::NoSecretDomain
    );
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request("REGISTER", d, "198.18.0.2", d, ""),
            S
        ),
        Reason::NoSecretDomain
    );
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request("REGISTER", d, d, "evil.example", ""),
            S
        ),
        Reason::NoSecretDomain
    );
}

#[test]
fn the_domain_anywhere_else_never_counts() {
    let mut e = engine();
    let ip = "198.18.0.2";
    let tricks = [
        // user part, display name, parameters, other headers, body: all fooled `-m string`
        format!("REGISTER sip:{DOMAIN}@{ip} SIP/2.0"),
        format!("REGISTER sip:200@{ip};x={DOMAIN} SIP/2.0"),
        format!("REGISTER sip:200@{ip}:5060;maddr={DOMAIN} SIP/2.0"),
    ];
    for t in tricks {
        let m = request("REGISTER", ip, ip, ip, "").replacen(
            &format!("REGISTER sip:200@{ip} SIP/2.0"),
            &t,
            1,
        );
        assert_eq!(reason(&mut e, PHONE, &m, S), Reason::NoSecretDomain, "{t}");
    }
    let m = request(
        "REGISTER",
        ip,
        ip,
        ip,
        &format!("User-Agent2: {DOMAIN}\r\nSubject: {DOMAIN}\r\n"),
    );
    assert_eq!(reason(&mut e, PHONE, &m, S), Reason::NoSecretDomain);
    let m = request("REGISTER", ip, ip, ip, "").replace("\"Alice\"", &format!("\"{DOMAIN}\""));
    assert_eq!(reason(&mut e, PHONE, &m, S), Reason::NoSecretDomain);
    // a longer or shorter name that contains the domain
    let m = request(
        "REGISTER",
        &format!("{DOMAIN}.evil.net"),
        DOMAIN,
        DOMAIN,
        "",
    );
    assert_eq!(reason(&mut e, PHONE, &m, S), Reason::NoSecretDomain);
    let m = request("REGISTER", &format!("x{DOMAIN}"), DOMAIN, DOMAIN, "");
    assert_eq!(reason(&mut e, PHONE, &m, S), Reason::NoSecretDomain);
}

#[test]
fn header_case_compact_forms_and_folding_do_not_get_round_checks() {
    let mut e = engine();
    let good = request("REGISTER", DOMAIN, DOMAIN, DOMAIN, "");
    // compact and odd-case names still name the headers policy reads: a bad To is seen
    let compact = good.replace("To: <sip:200@sip.example.com>", "t: <sip:200@198.18.0.2>");
    assert_eq!(reason(&mut e, PHONE, &compact, S), Reason::NoSecretDomain);
    let upper = good.replace("To:", "TO  :");
    assert_eq!(reason(&mut e, PHONE, &upper, S), Reason::SecretDomain);
    // A second To in compact form is a duplicate: malformed, not "first one wins".
    let dup = good.replace("Call-ID:", "t: <sip:200@198.18.0.2>\r\nCall-ID:");
    assert_eq!(reason(&mut e, PHONE, &dup, S), Reason::Malformed);
    let folded = good.replace(
        "To: <sip:200@sip.example.com>",
        "To:\r\n  <sip:200@sip.example.com>",
    );
    assert_eq!(reason(&mut e, PHONE, &folded, S), Reason::SecretDomain);
    let two_at = good.replace(
        "sip:200@sip.example.com SIP",
        "sip:200@198.18.0.2@sip.example.com SIP",
    );
    assert_eq!(reason(&mut e, PHONE, &two_at, S), Reason::Malformed);
}

#[test]
fn scanners_methods_not_sip_and_keepalives() {
    let mut e = engine();
    let d = DOMAIN;
    let ua = request("OPTIONS", d, d, d, "").replace("Yealink SIP-T46S", "FRIENDLY-SCANNER");
    assert_eq!(reason(&mut e, PHONE, &ua, S), Reason::Scanner);
    let m = request("FOO", d, d, d, "");
    assert_eq!(reason(&mut e, PHONE, &m, S), Reason::MethodNotAllowed);
    assert_eq!(
        reason(&mut e, PHONE, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", S),
        Reason::NotSip
    );
    assert_eq!(
        reason(&mut e, PHONE, "\u{16}\u{3}\u{1}binary", S),
        Reason::NotSip
    );
    assert_eq!(reason(&mut e, PHONE, "\r\n\r\n", S), Reason::Keepalive);
    // Older phones' NAT keepalives (five spaces, as in a 2005 softphone capture; NULs).
    assert_eq!(reason(&mut e, PHONE, "     ", S), Reason::Keepalive);
    assert_eq!(reason(&mut e, PHONE, "\0\0\0\0", S), Reason::Keepalive);
    assert_eq!(reason(&mut e, PHONE, "hello", S), Reason::NotSip);
    let mut e = engine_with(
        "[methods]\nallowed_sources_only = [\"MESSAGE\"]\n[sources]\nallow=[\"198.18.5.0/24\"]",
    );
    let m = request("MESSAGE", d, d, d, "");
    assert_eq!(reason(&mut e, PHONE, &m, S), Reason::MethodNotAllowed);
    assert_eq!(
        reason(&mut e, "198.18.5.9:5060", &m, S),
        Reason::AllowedSource
    );
}

/// A STUN Binding Request with a SOFTWARE attribute, as baresip's outbound keepalive.
fn stun_request(ty: u16) -> Vec<u8> {
    let soft = b"baresip v3.10.1\0";
    let mut m = ty.to_be_bytes().to_vec();
    m.extend((4 + soft.len() as u16).to_be_bytes());
    m.extend(0x2112_A442u32.to_be_bytes());
    m.extend(b"txn-id-12byt");
    m.extend(0x8022u16.to_be_bytes());
    m.extend((soft.len() as u16).to_be_bytes());
    m.extend(soft);
    m
}

#[test]
fn stun_binding_requests_are_keepalives_unless_turned_off() {
    let stun = stun_request(0x0001);
    let judge = |e: &mut sipwall::engine::Engine, src: &str, b: &[u8], now| {
        e.decide(&udp(src, PBX, b), Direction::ToPbx, now).reason
    };
    let mut e = engine();
    assert_eq!(judge(&mut e, PHONE, &stun, S), Reason::Keepalive);
    // A response or a truncated request is not a keepalive.
    assert_eq!(
        judge(&mut e, PHONE, &stun_request(0x0101), S),
        Reason::NotSip
    );
    assert_eq!(
        judge(&mut e, PHONE, &stun[..stun.len() - 1], S),
        Reason::NotSip
    );
    // Sources with no state share the keepalive bucket (burst 1000): a spoofed flood of them
    // is cut there, as CRLFs are.
    let limited = (0..1500u32)
        .filter(|i| {
            let src = format!("198.19.{}.{}:5060", i / 250, i % 250 + 1);
            judge(&mut e, &src, &stun, 2 * S) == Reason::RateLimited
        })
        .count();
    assert!((400..=500).contains(&limited), "{limited} rate-limited");
    let mut e = engine_with("[sip]\nstun_keepalives = false");
    assert_eq!(judge(&mut e, PHONE, &stun, S), Reason::NotSip);
}

#[test]
fn in_dialog_requests_of_real_calls_pass_and_strangers_do_not() {
    let mut e = engine();
    let d = DOMAIN;
    let ip = "198.18.0.2";
    let invite = request_full("INVITE", d, d, d, "", "call-9", 1, "");
    assert_eq!(reason(&mut e, PHONE, &invite, S), Reason::SecretDomain);
    // Before its answer the dialog is known, unconfirmed: the ACK of a challenge, a PRACK
    // pass (rate-limited as new requests are).
    let ack = request_full("ACK", ip, ip, ip, ";tag=t9", "call-9", 1, "");
    assert_eq!(reason(&mut e, PHONE, &ack, S), Reason::InDialog);
    assert_eq!(e.calls().dialogs.len(), 0, "not confirmed yet");
    // The PBX answers 200: the dialog is confirmed. ACK/BYE addressed to the contact IP
    // carry the To tag: known Call-ID.
    pbx_sends(&mut e, PHONE, &response(200, "INVITE", "call-9", 1, ""), S);
    let bye = request_full("BYE", ip, ip, ip, ";tag=t9", "call-9", 2, "");
    assert_eq!(reason(&mut e, PHONE, &bye, S), Reason::InDialog);
    let stranger = request_full("BYE", ip, ip, ip, ";tag=t9", "call-unknown", 2, "");
    assert_eq!(reason(&mut e, PHONE, &stranger, S), Reason::UnknownDialog);
    // A dialog the PBX started (call to the phone): the callee's BYE is known.
    let pbx_invite = request_full("INVITE", "198.18.0.1", ip, d, "", "call-from-pbx", 1, "");
    pbx_sends(&mut e, PHONE, &pbx_invite, S);
    let bye = request_full("BYE", ip, ip, ip, ";tag=t1", "call-from-pbx", 2, "");
    assert_eq!(reason(&mut e, PHONE, &bye, S), Reason::InDialog);
    // and the callee's answers to the PBX's INVITE are responses to a request the PBX sent
    let ok = response(200, "INVITE", "call-from-pbx", 1, "");
    assert_eq!(reason(&mut e, PHONE, &ok, S), Reason::Response);
    assert_eq!(
        reason(&mut e, PHONE, &response(200, "INVITE", "nope", 1, ""), S),
        Reason::UnsolicitedResponse
    );
    // A BYE ends its dialog (both above had theirs at S): its retransmissions still pass for a
    // transaction's time (32 s), then the dialog is forgotten, not after limits.dialog_idle (24 h).
    let sec = 1_000_000_000;
    let dialogs = |e: &sipwall::engine::Engine| e.calls().dialogs.len();
    assert_eq!(dialogs(&e), 2);
    assert_eq!(reason(&mut e, PHONE, &bye, S + 20 * sec), Reason::InDialog);
    let reinvite = request_full("INVITE", ip, ip, ip, ";tag=t9", "call-9", 3, "");
    assert_eq!(
        reason(&mut e, PHONE, &reinvite, S + 40 * sec),
        Reason::UnknownDialog
    );
    assert_eq!(
        dialogs(&e),
        1,
        "the retransmitted BYE kept its dialog 32 s more"
    );
    assert_eq!(
        reason(&mut e, PHONE, &bye, S + 60 * sec),
        Reason::UnknownDialog
    );
    assert_eq!(dialogs(&e), 0);
    // The PBX's own BYE ends a dialog too.
    let pbx_invite = request_full("INVITE", "198.18.0.1", ip, d, "", "call-p", 1, "");
    pbx_sends(&mut e, PHONE, &pbx_invite, S + 60 * sec);
    let pbx_bye = request_full("BYE", "198.18.0.1", ip, ip, ";tag=t1", "call-p", 2, "");
    pbx_sends(&mut e, PHONE, &pbx_bye, S + 70 * sec);
    let phone_bye = request_full("BYE", ip, ip, ip, ";tag=t1", "call-p", 1, "");
    assert_eq!(
        reason(&mut e, PHONE, &phone_bye, S + 100 * sec),
        Reason::InDialog
    );
    assert_eq!(
        reason(&mut e, PHONE, &phone_bye, S + 140 * sec),
        Reason::UnknownDialog
    );
}

#[test]
fn calls_in_progress_outlive_a_restart_through_saved_calls() {
    use sipwall::engine::{Engine, Shared};
    use std::sync::Arc;
    let ip = "198.18.0.2";
    let shared = Arc::new(Shared::new());
    let mut before = Engine::new(policy_with(""), shared.clone());
    // A phone's call, and a call the PBX makes to a phone (From and To by IP, as Asterisk
    // writes them): nothing but the dialog tables lets their in-dialog requests in.
    let d = DOMAIN;
    let invite = request_full("INVITE", d, d, d, "", "call-out", 1, "");
    assert_eq!(reason(&mut before, PHONE, &invite, S), Reason::SecretDomain);
    let answer = response(200, "INVITE", "call-out", 1, "");
    pbx_sends(&mut before, PHONE, &answer, S);
    let pbx_invite = request_full("INVITE", "198.18.0.1", ip, ip, "", "call-in", 1, "");
    pbx_sends(&mut before, PHONE, &pbx_invite, S);
    let v0 = before.calls_version();
    let calls = before.calls();
    assert_eq!((calls.dialogs.len(), calls.pbx_requests.len()), (2, 1));
    // A re-INVITE refreshes its dialog; nothing new to save.
    let reinvite = request_full("INVITE", ip, ip, ip, ";tag=t9", "call-out", 2, "");
    assert_eq!(reason(&mut before, PHONE, &reinvite, S), Reason::InDialog);
    assert_eq!(before.calls_version(), v0);
    let bye_out = request_full("BYE", ip, ip, ip, ";tag=t9", "call-out", 3, "");
    let bye_in = request_full("BYE", ip, ip, ip, ";tag=t1", "call-in", 2, "");
    let ok_in = response(200, "INVITE", "call-in", 1, "");

    // A fresh engine knows none of them ...
    let mut fresh = Engine::new(policy_with(""), Arc::new(Shared::new()));
    assert_eq!(reason(&mut fresh, PHONE, &bye_in, S), Reason::UnknownDialog);
    assert_eq!(
        reason(&mut fresh, PHONE, &ok_in, S),
        Reason::UnsolicitedResponse
    );
    // ... and saved calls mean nothing under another seed.
    fresh.restore_calls(&calls, S + 1);
    assert_eq!(
        reason(&mut fresh, PHONE, &bye_in, S + 1),
        Reason::UnknownDialog
    );

    // After a restart: the same seed and the saved calls, a minute later.
    let restarted_shared = Arc::new(Shared::new());
    assert!(restarted_shared.set_table_seed(shared.table_seed()));
    let mut after = Engine::new(policy_with(""), restarted_shared.clone());
    assert!(
        !restarted_shared.set_table_seed([9; 4]),
        "fixed once engines use it"
    );
    let later = S + 60_000_000_000;
    after.restore_calls(&calls, later);
    assert_eq!(reason(&mut after, PHONE, &ok_in, later), Reason::Response);
    assert_eq!(reason(&mut after, PHONE, &bye_in, later), Reason::InDialog);
    assert_eq!(reason(&mut after, PHONE, &bye_out, later), Reason::InDialog);
    assert_eq!(
        reason(
            &mut after,
            PHONE,
            &request_full("BYE", ip, ip, ip, ";tag=t1", "call-x", 2, ""),
            later
        ),
        Reason::UnknownDialog
    );

    // Saved calls past their time are not taken back: the PBX's INVITE after Timer C, a
    // dialog after `limits.dialog_idle` (24 h).
    let mut late = Engine::new(policy_with(""), restarted_shared);
    late.restore_calls(&calls, S + 25 * 3600 * 1_000_000_000);
    assert_eq!(late.calls(), sipwall::engine::Calls::default());
}

#[test]
fn a_flood_of_unanswered_invites_cannot_crowd_out_answered_calls() {
    // Who knows the domain can send INVITEs from many (spoofed) sources; the PBX challenges
    // them and never answers 2xx. Here the tables hold 100 dialogs of each kind.
    let mut e = engine_with("[limits]\nmax_dialogs = 100");
    let (d, ip) = (DOMAIN, "198.18.0.2");
    let call = |e: &mut sipwall::engine::Engine, id: &str, src: &str| {
        let invite = request_full("INVITE", d, d, d, "", id, 1, "");
        assert_eq!(reason(e, src, &invite, S), Reason::SecretDomain);
        pbx_sends(e, src, &response(200, "INVITE", id, 1, ""), S);
    };
    call(&mut e, "before", PHONE);
    for k in 0..1000 {
        let src = format!("198.19.{}.{}:5060", k / 250, k % 250);
        let invite = request_full("INVITE", d, d, d, "", &format!("flood-{k}"), 1, "");
        assert_eq!(reason(&mut e, &src, &invite, S), Reason::SecretDomain);
        pbx_sends(
            &mut e,
            &src,
            &response(407, "INVITE", &format!("flood-{k}"), 1, ""),
            S,
        );
    }
    // A call that starts during the flood: its INVITE finds no room among the unanswered,
    // yet the PBX's 200 confirms it.
    call(&mut e, "during", PHONE);
    let sizes: std::collections::HashMap<_, _> = e.table_sizes().into_iter().collect();
    assert_eq!(sizes["dialogs"], 2, "only the answered calls are confirmed");
    assert_eq!(
        sizes["unanswered_dialogs"], 100,
        "the flood fills its own table only"
    );
    // Both calls' requests, addressed by IP as phones address in-dialog requests, pass and are
    // never rate-limited; the flood's own in-dialog requests, past its table, are not known.
    for (id, n) in [("before", 2), ("during", 2)] {
        for cseq in n..n + 30 {
            let reinvite = request_full("INVITE", ip, ip, ip, ";tag=t", id, cseq, "");
            assert_eq!(
                reason(&mut e, PHONE, &reinvite, S),
                Reason::InDialog,
                "{id} {cseq}"
            );
        }
    }
    let late = request_full("BYE", ip, ip, ip, ";tag=t", "flood-999", 2, "");
    assert_eq!(
        reason(&mut e, "198.19.3.249:5060", &late, S),
        Reason::UnknownDialog
    );
}

#[test]
fn in_dialog_requests_are_not_rate_limited_but_new_requests_are() {
    let mut e = engine_with("[rate]\ninvite = { per_second = 1.0, burst = 1 }");
    let d = DOMAIN;
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request_full("INVITE", d, d, d, "", "c1", 1, ""),
            S
        ),
        Reason::SecretDomain
    );
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request_full("INVITE", d, d, d, "", "c2", 1, ""),
            S
        ),
        Reason::RateLimited
    );
    // Answered by the PBX: the dialog's requests are never rate-limited.
    pbx_sends(&mut e, PHONE, &response(200, "INVITE", "c1", 1, ""), S);
    for i in 0..50 {
        let m = request_full("INVITE", "198.18.0.2", d, d, ";tag=x", "c1", 2 + i, "");
        assert_eq!(
            reason(&mut e, PHONE, &m, S),
            Reason::InDialog,
            "re-INVITE {i}"
        );
    }
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request_full("INVITE", d, d, d, "", "c3", 1, ""),
            3 * S
        ),
        Reason::SecretDomain
    );
    // Not answered yet: in-dialog requests are rate-limited as new ones are, so that an
    // INVITE of one's own does not open an unlimited stream to the PBX.
    let in_c3 = request_full("INVITE", "198.18.0.2", d, d, ";tag=x", "c3", 2, "");
    assert_eq!(reason(&mut e, PHONE, &in_c3, 3 * S), Reason::RateLimited);
    pbx_sends(&mut e, PHONE, &response(200, "INVITE", "c3", 1, ""), 3 * S);
    assert_eq!(reason(&mut e, PHONE, &in_c3, 3 * S), Reason::InDialog);
}

fn fail_once(e: &mut sipwall::engine::Engine, src: &str, n: u32, user: &str, now: u64) {
    let auth = format!("Authorization: Digest username=\"{user}\", realm=\"x\", nonce=\"n\", uri=\"sip:{DOMAIN}\", response=\"r\"\r\n");
    let call = format!("brute-{src}-{n}");
    let reg = request_full("REGISTER", DOMAIN, DOMAIN, DOMAIN, "", &call, n, &auth);
    let d = e.decide(&udp(src, PBX, reg.as_bytes()), Direction::ToPbx, now);
    if d.verdict == Verdict::Drop {
        return;
    }
    pbx_sends(e, src, &response(401, "REGISTER", &call, n, ""), now);
}

#[test]
fn wrong_passwords_seen_on_the_wire_ban_the_source_with_evidence() {
    let mut e = engine();
    let attacker = "198.18.0.66:5060";
    // The first challenge to a credential-less REGISTER is not a failure.
    let reg = request_full("REGISTER", DOMAIN, DOMAIN, DOMAIN, "", "c0", 1, "");
    e.decide(&udp(attacker, PBX, reg.as_bytes()), Direction::ToPbx, S);
    pbx_sends(&mut e, attacker, &response(401, "REGISTER", "c0", 1, ""), S);
    assert_eq!(e.counters().auth_failures, 0);
    // A stale-nonce re-challenge is not either.
    let auth = "Authorization: Digest username=\"200\", response=\"r\"\r\n";
    let reg = request_full("REGISTER", DOMAIN, DOMAIN, DOMAIN, "", "c0", 2, auth);
    e.decide(&udp(attacker, PBX, reg.as_bytes()), Direction::ToPbx, S);
    let stale = response(
        401,
        "REGISTER",
        "c0",
        2,
        "WWW-Authenticate: Digest realm=\"x\", nonce=\"y\", stale=true\r\n",
    );
    pbx_sends(&mut e, attacker, &stale, S);
    assert_eq!(e.counters().auth_failures, 0);

    fail_once(&mut e, attacker, 10, "200", 2 * S);
    assert_eq!(e.shared().len(), 0);
    fail_once(&mut e, attacker, 11, "201", 3 * S);
    assert_eq!(
        e.shared().len(),
        1,
        "2 failures within 1 hour ban for 1 hour"
    );
    let ban = &e.shared().list()[0];
    assert_eq!(ban.source, "198.18.0.66");
    assert_eq!(ban.tier, "tier-1");
    assert_eq!(ban.until_ns, Some(3 * S + 3600 * S));
    assert_eq!(ban.evidence.users, vec!["200", "201"]);
    assert!(ban
        .evidence
        .first_request
        .starts_with("REGISTER sip:200@sip.example.com"));
    assert_eq!(
        reason(
            &mut e,
            attacker,
            &request("REGISTER", DOMAIN, DOMAIN, DOMAIN, ""),
            4 * S
        ),
        Reason::Banned
    );
    // other phones unaffected
    assert_eq!(
        reason(
            &mut e,
            PHONE,
            &request("REGISTER", DOMAIN, DOMAIN, DOMAIN, ""),
            4 * S
        ),
        Reason::SecretDomain
    );
    // the ban expires
    assert_eq!(
        reason(
            &mut e,
            attacker,
            &request_full("REGISTER", DOMAIN, DOMAIN, DOMAIN, "", "z", 1, ""),
            3 * S + 3601 * S
        ),
        Reason::SecretDomain
    );
}

#[test]
fn a_guess_in_flight_across_a_restart_still_counts() {
    use sipwall::engine::{Engine, Shared};
    use std::sync::Arc;
    let attacker = "198.18.0.67:5060";
    let shared = Arc::new(Shared::new());
    let mut before = Engine::new(policy_with(""), shared.clone());
    fail_once(&mut before, attacker, 1, "200", S);
    assert_eq!(before.counters().auth_failures, 1);
    // The second guess reaches the PBX; sipwall restarts before the PBX's 401 comes back.
    let auth = format!("Authorization: Digest username=\"201\", realm=\"x\", nonce=\"n\", uri=\"sip:{DOMAIN}\", response=\"r\"\r\n");
    let guess = request_full("REGISTER", DOMAIN, DOMAIN, DOMAIN, "", "guess-2", 2, &auth);
    assert_eq!(
        reason(&mut before, attacker, &guess, S),
        Reason::SecretDomain
    );
    let calls = before.calls();
    assert_eq!(calls.txns.len(), 1, "the guess in flight is saved");
    assert_eq!(calls.txns[0].user, b"201");
    let answer = response(401, "REGISTER", "guess-2", 2, "");

    // What a restart keeps: the bans file (failure histories) and the calls file.
    let restart = || {
        let s = Arc::new(Shared::new());
        assert!(s.set_table_seed(shared.table_seed()));
        s.restore(shared.snapshot(), S + 1);
        s
    };
    // Without the saved transaction the 401 reads as a first challenge: the guess is lost.
    let mut forgetful = Engine::new(policy_with(""), restart());
    pbx_sends(&mut forgetful, attacker, &answer, S + 1);
    assert_eq!(forgetful.counters().auth_failures, 0);
    // With it, the second failure counts and bans, with the guess's evidence.
    let after_shared = restart();
    let mut after = Engine::new(policy_with(""), after_shared.clone());
    after.restore_calls(&calls, S + 1);
    pbx_sends(&mut after, attacker, &answer, S + 1);
    assert_eq!(after.counters().auth_failures, 1);
    let bans = after_shared.list();
    assert_eq!(
        bans.len(),
        1,
        "2 failures within an hour, across the restart"
    );
    assert_eq!(bans[0].evidence.users, vec!["200", "201"]);
    assert!(bans[0].evidence.last_request.starts_with("REGISTER sip:"));
    // Answered: no longer in flight, and no longer saved.
    assert!(after.calls().txns.is_empty());
}

/// A REGISTER for an unknown user that the engine did not see (it came before a restart, or
/// on a path sipwall does not watch): the PBX's 404 still counts, and the user tried is read
/// from the answer's To URI (the PBX's messages are read without their URIs otherwise).
#[test]
fn unknown_users_in_answers_to_unseen_requests_count_with_the_user_tried() {
    let mut e = engine();
    let prober = "198.18.0.68:5060";
    for (k, call) in ["probe-1", "probe-2"].into_iter().enumerate() {
        pbx_sends(
            &mut e,
            prober,
            &response(404, "REGISTER", call, 1, ""),
            (k as u64 + 1) * S,
        );
    }
    assert_eq!(e.counters().auth_failures, 2);
    let bans = e.shared().list();
    assert_eq!(bans.len(), 1, "2 failures within an hour");
    assert_eq!(bans[0].source, "198.18.0.68");
    assert_eq!(bans[0].evidence.users, vec!["100"]);
}

#[test]
fn twelve_failures_in_a_day_ban_until_released_and_allowed_sources_are_never_banned() {
    let mut e =
        engine_with("[sources]\nallow = [\"198.18.7.0/24\"]\n[bans]\nenumeration_users = 0");
    let attacker = "198.18.0.77:5060";
    for i in 0..12u32 {
        // one every 2 hours: tier 1 (2 in 1 h) never fires, tier 2 does at the 12th
        fail_once(&mut e, attacker, i, "200", u64::from(i) * 7200 * S + S);
    }
    let ban = e.shared().list().pop().expect("banned");
    assert_eq!(ban.tier, "tier-2");
    assert_eq!(ban.until_ns, None);
    for i in 0..20u32 {
        fail_once(&mut e, "198.18.7.7:5060", i, "trunk", S);
    }
    assert_eq!(e.shared().len(), 1);
}

/// A request addressed by IP throughout (Request-URI, To and From), as sweeps send them.
fn addressed_by_ip(method: &str, call_id: &str) -> String {
    let ip = "198.18.0.2";
    request_full(method, ip, ip, ip, "", call_id, 1, "")
}

/// svwar walking extensions by IP, svcrack guessing at the address: none of it reaches the
/// PBX, so no failure is ever read; the drops themselves ban the source, and the rest of its
/// sweep is dropped as `banned` (in the kernel, inline) without being read.
#[test]
fn a_source_that_keeps_sending_what_is_dropped_is_banned_for_scanning() {
    let mut e = engine();
    let d = DOMAIN;
    let sweep = "198.19.4.4:5060";
    let by_ip = |n: u32| addressed_by_ip("REGISTER", &format!("w{n}"));
    // Nine in a minute: dropped, not banned.
    for n in 0..9 {
        assert_eq!(
            reason(&mut e, sweep, &by_ip(n), S + u64::from(n) * S),
            Reason::NoSecretDomain
        );
    }
    assert!(e.shared().is_empty());
    // The tenth (a scanner's User-Agent counts alike) bans the source for an hour.
    let probe = request("OPTIONS", d, d, d, "").replace("Yealink SIP-T46S", "friendly-scanner");
    assert_eq!(reason(&mut e, sweep, &probe, 10 * S), Reason::Scanner);
    let ban = e.shared().list().pop().expect("banned for scanning");
    assert_eq!(
        (ban.source.as_str(), ban.tier.as_str()),
        ("198.19.4.4", "scanning")
    );
    assert_eq!(ban.until_ns, Some(10 * S + 3600 * S));
    assert_eq!(ban.evidence.failures, 10);
    assert_eq!(
        (ban.evidence.first_failure_ns, ban.evidence.last_failure_ns),
        (S, 10 * S)
    );
    assert!(
        ban.evidence
            .last_request
            .starts_with("OPTIONS sip:200@sip.example.com"),
        "{ban:?}"
    );
    assert_eq!(e.counters().bans, 1);
    // Even a request that would pass is dropped now, unread.
    assert_eq!(
        reason(&mut e, sweep, &request("REGISTER", d, d, d, ""), 11 * S),
        Reason::Banned
    );
    // Released by a person, it must earn a ban again: ten more drops, not one.
    e.shared().unban(sipwall::engine::source_key(
        "198.19.4.4".parse().unwrap(),
        64,
    ));
    for n in 0..9 {
        assert_eq!(
            reason(&mut e, sweep, &by_ip(100 + n), 20 * S),
            Reason::NoSecretDomain
        );
    }
    assert!(e.shared().is_empty());
}

#[test]
fn drops_spread_thin_or_from_a_working_phone_ban_no_one() {
    let mut e = engine();
    let d = DOMAIN;
    let by_ip = |n: u32| addressed_by_ip("OPTIONS", &format!("s{n}"));
    // A honeypot's usual visitor: one probe every ten minutes, all day.
    for n in 0..144u32 {
        assert_eq!(
            reason(
                &mut e,
                "198.19.9.9:5060",
                &by_ip(n),
                S + u64::from(n) * 600 * S
            ),
            Reason::NoSecretDomain
        );
    }
    // A phone that registered a minute ago, whose address someone forges with a scanner's
    // User-Agent: never banned that way (its own failures still would be).
    assert_eq!(
        reason(&mut e, PHONE, &request("REGISTER", d, d, d, ""), 1000 * S),
        Reason::SecretDomain
    );
    let forged = request("OPTIONS", d, d, d, "").replace("Yealink SIP-T46S", "sipvicious");
    for n in 0..50u64 {
        assert_eq!(
            reason(&mut e, PHONE, &forged, 1060 * S + n),
            Reason::Scanner
        );
    }
    assert!(e.shared().is_empty(), "{:?}", e.shared().list());
    // Turned off, a sweep is dropped request by request and never banned.
    let mut e = engine_with("[bans]\nscanning = { drops = 0, within = \"1m\", ban = \"1h\" }");
    for n in 0..50 {
        assert_eq!(
            reason(&mut e, "198.19.4.4:5060", &by_ip(n), S + u64::from(n)),
            Reason::NoSecretDomain
        );
    }
    assert!(e.shared().is_empty());
}

/// A spoofed flood cycling through a network could earn a ban for each of its addresses: bans
/// for scanning stop at a cap (their probes are still dropped, one by one).
#[test]
fn bans_for_scanning_stop_while_the_cap_of_bans_stands() {
    use sipwall::engine::{Ban, MAX_SCANNING_BANS};
    let mut e = engine();
    for k in 0..MAX_SCANNING_BANS as u128 {
        let ban = Ban {
            source: format!("x{k}"),
            since_ns: S,
            until_ns: None,
            tier: "manual".into(),
            reason: String::new(),
            evidence: Default::default(),
        };
        e.shared().ban(k + 1, ban);
    }
    let by_ip = |n: u32| addressed_by_ip("OPTIONS", &format!("c{n}"));
    for n in 0..30 {
        assert_eq!(
            reason(&mut e, "198.19.4.4:5060", &by_ip(n), S + u64::from(n)),
            Reason::NoSecretDomain
        );
    }
    assert_eq!(e.shared().len(), MAX_SCANNING_BANS);
    // One ban fewer, and the sweep's next ten drops ban it.
    e.shared().unban(1);
    for n in 0..10 {
        assert_eq!(
            reason(
                &mut e,
                "198.19.4.4:5060",
                &by_ip(100 + n),
                2 * S + u64::from(n)
            ),
            Reason::NoSecretDomain
        );
    }
    assert_eq!(
        reason(&mut e, "198.19.4.4:5060", &by_ip(200), 3 * S),
        Reason::Banned
    );
}

#[test]
fn a_raise_to_a_longer_tier_counts_as_a_ban() {
    // A guesser's burst: twelve REGISTERs reach the PBX before its first answer comes back.
    let mut e = engine_with(
        "[rate]\nregister = { per_second = 100, burst = 100 }\n[bans]\nenumeration_users = 0",
    );
    let src = "198.18.0.78:5060";
    let auth = format!("Authorization: Digest username=\"200\", realm=\"x\", nonce=\"n\", uri=\"sip:{DOMAIN}\", response=\"r\"\r\n");
    for n in 0..12u32 {
        let reg = request_full(
            "REGISTER",
            DOMAIN,
            DOMAIN,
            DOMAIN,
            "",
            &format!("b{n}"),
            n + 1,
            &auth,
        );
        let d = e.decide(&udp(src, PBX, reg.as_bytes()), Direction::ToPbx, S);
        assert_eq!(d.verdict, Verdict::Accept);
    }
    for n in 0..12u32 {
        let r = response(401, "REGISTER", &format!("b{n}"), n + 1, "");
        pbx_sends(&mut e, src, &r, S + u64::from(n));
    }
    // The second failure banned it for an hour (tier 1); the twelfth raised that to tier 2.
    assert_eq!(e.counters().auth_failures, 12);
    assert_eq!(e.counters().bans, 2);
    let ban = e.shared().list().pop().expect("banned");
    assert_eq!((ban.tier.as_str(), ban.until_ns), ("tier-2", None));
}

#[test]
fn replay_does_not_read_answers_to_requests_sipwall_drops() {
    // svwar by IP: inline the PBX never sees the REGISTER, so its 404 must not be a failure.
    let scan = |e: &mut sipwall::engine::Engine, n: u32| {
        let call = format!("svwar-{n}");
        let reg = request_full(
            "REGISTER",
            "198.18.0.2",
            "198.18.0.2",
            "198.18.0.2",
            "",
            &call,
            1,
            "",
        );
        let src = "198.18.0.99:5060";
        let d = e.decide(&udp(src, PBX, reg.as_bytes()), Direction::ToPbx, S);
        assert_eq!(d.reason, Reason::NoSecretDomain);
        let answer = response(404, "REGISTER", &call, 1, "");
        pbx_sends(e, src, &answer, S)
    };
    let mut replay = engine();
    replay.skip_answers_to_dropped();
    for n in 0..5 {
        assert_eq!(scan(&mut replay, n), Reason::AnswerToDropped);
    }
    assert_eq!(replay.counters().auth_failures, 0);
    assert_eq!(replay.counters().get(Reason::AnswerToDropped), 5);
    assert_eq!(replay.shared().len(), 0);
    // An accepted phone's failures still count.
    fail_once(&mut replay, "198.18.0.5:5060", 1, "100", S);
    assert_eq!(replay.counters().auth_failures, 1);
    // Inline the engine reads every answer it gets (the option is replay's).
    let mut inline = engine();
    for n in 0..2 {
        assert_eq!(scan(&mut inline, n), Reason::Observed);
    }
    assert_eq!(inline.counters().auth_failures, 2);
}

#[test]
fn ipv6_sources_are_tracked_by_prefix() {
    let mut e = engine_with("[rate]\nregister = { per_second = 0.01, burst = 1 }");
    let d = DOMAIN;
    let a = "[2001:db8:1:2::10]:5060";
    let b = "[2001:db8:1:2::99]:5060";
    let m = |c: &str| request_full("REGISTER", d, d, d, "", c, 1, "");
    assert_eq!(
        e.decide(
            &udp(a, "[2001:db8::2]:5060", m("a").as_bytes()),
            Direction::ToPbx,
            S
        )
        .reason,
        Reason::SecretDomain
    );
    assert_eq!(
        e.decide(
            &udp(b, "[2001:db8::2]:5060", m("b").as_bytes()),
            Direction::ToPbx,
            S
        )
        .reason,
        Reason::RateLimited
    );
}

#[test]
fn tcp_message_split_across_segments_and_several_in_one() {
    let mut e = engine();
    let d = DOMAIN;
    let src = "198.18.0.1:40000";
    let m1 = request_full("REGISTER", d, d, d, "", "t1", 1, "");
    let m2 = request_full("OPTIONS", d, d, d, "", "t2", 1, "");
    let both = format!("{m1}{m2}");
    e.decide(&tcp(src, PBX, 1000, true, b""), Direction::ToPbx, S);
    let (a, b) = both.as_bytes().split_at(30);
    let r = e.decide(&tcp(src, PBX, 1001, false, a), Direction::ToPbx, S);
    assert_eq!((r.verdict, r.reason), (Verdict::Accept, Reason::TcpPartial));
    let mut seen = vec![];
    let r = e.decide_with(
        &tcp(src, PBX, 1031, false, b),
        Direction::ToPbx,
        S,
        &mut |o| seen.push(o.decision.reason),
    );
    assert_eq!(r.reason, Reason::SecretDomain);
    assert_eq!(seen, vec![Reason::SecretDomain, Reason::SecretDomain]);
}

#[test]
fn tcp_forbidden_request_blocks_the_rest_of_the_flow() {
    let mut e = engine();
    let src = "198.18.0.1:40001";
    let bad = request("REGISTER", "198.18.0.2", DOMAIN, DOMAIN, "");
    let good = request("REGISTER", DOMAIN, DOMAIN, DOMAIN, "");
    e.decide(&tcp(src, PBX, 1, true, b""), Direction::ToPbx, S);
    let (a, b) = bad.as_bytes().split_at(bad.len() - 5);
    assert_eq!(
        e.decide(&tcp(src, PBX, 2, false, a), Direction::ToPbx, S)
            .reason,
        Reason::TcpPartial
    );
    // out of order: the last part arrives... and the gap is retransmitted: the segment that
    // completes the message is the one dropped
    let r = e.decide(
        &tcp(src, PBX, 2 + a.len() as u32, false, b),
        Direction::ToPbx,
        S,
    );
    assert_eq!(
        (r.verdict, r.reason),
        (Verdict::Drop, Reason::NoSecretDomain)
    );
    let r = e.decide(
        &tcp(src, PBX, 2 + bad.len() as u32, false, good.as_bytes()),
        Direction::ToPbx,
        S,
    );
    assert_eq!((r.verdict, r.reason), (Verdict::Drop, Reason::FlowBlocked));
}

#[test]
fn tcp_out_of_order_segments_are_reassembled() {
    let mut e = engine();
    let src = "198.18.0.1:40002";
    let m = request("INVITE", DOMAIN, DOMAIN, DOMAIN, "");
    let bytes = m.as_bytes();
    e.decide(&tcp(src, PBX, 99, true, b""), Direction::ToPbx, S);
    let r = e.decide(
        &tcp(src, PBX, 100 + 200, false, &bytes[200..]),
        Direction::ToPbx,
        S,
    );
    assert_eq!(r.reason, Reason::TcpOutOfOrder);
    let r = e.decide(
        &tcp(src, PBX, 100, false, &bytes[..200]),
        Direction::ToPbx,
        S,
    );
    assert_eq!(r.reason, Reason::SecretDomain);
    let r = e.decide(
        &tcp(src, PBX, 100, false, &bytes[..200]),
        Direction::ToPbx,
        S,
    );
    assert_eq!(r.reason, Reason::TcpRetransmission);
}

#[test]
fn counters_count_every_decision_by_reason() {
    let mut e = engine();
    for _ in 0..3 {
        reason(
            &mut e,
            PHONE,
            &request("OPTIONS", "1.2.3.4", "1.2.3.4", "1.2.3.4", ""),
            S,
        );
    }
    reason(
        &mut e,
        PHONE,
        &request("OPTIONS", DOMAIN, DOMAIN, DOMAIN, ""),
        S,
    );
    let c = e.counters();
    assert_eq!(c.get(Reason::NoSecretDomain), 3);
    assert_eq!(c.get(Reason::SecretDomain), 1);
    assert_eq!((c.accepted, c.dropped), (1, 3));
}

#[test]
fn tcp_message_larger_than_the_limit_blocks_the_flow() {
    let mut e = engine_with("[limits]\nmax_message_bytes = 512");
    let src = "198.18.0.1:40003";
    e.decide(&tcp(src, PBX, 0, true, b""), Direction::ToPbx, S);
    let head = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nX-Pad: {}\r\n",
        "a".repeat(300)
    );
    let r = e.decide(
        &tcp(src, PBX, 1, false, head.as_bytes()),
        Direction::ToPbx,
        S,
    );
    assert_eq!(r.reason, Reason::TcpPartial);
    let more = format!("X-Pad2: {}\r\n", "b".repeat(300));
    let r = e.decide(
        &tcp(src, PBX, 1 + head.len() as u32, false, more.as_bytes()),
        Direction::ToPbx,
        S,
    );
    assert_eq!((r.verdict, r.reason), (Verdict::Drop, Reason::TooLarge));
    let r = e.decide(
        &tcp(
            src,
            PBX,
            1 + (head.len() + more.len()) as u32,
            false,
            b"\r\n",
        ),
        Direction::ToPbx,
        S,
    );
    assert_eq!((r.verdict, r.reason), (Verdict::Drop, Reason::FlowBlocked));
}

/// A TLS ClientHello on 5061 (see src/tls.rs tests for the byte layout), split across segments.
fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
        ext.extend_from_slice(n);
    }
    ext.extend_from_slice(&[0x00, 0x15, 0x05, 0xdc]);
    ext.extend(std::iter::repeat_n(0u8, 1500)); // padding: the hello spans two segments
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    rec.push(1);
    rec.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    rec.extend_from_slice(&body);
    rec
}

#[test]
fn tls_needs_the_secret_domain_as_sni_across_segments() {
    const TLS: &str = "198.18.0.2:5061";
    for (i, (sni, want)) in [
        (Some(DOMAIN), Reason::SecretSni),
        (Some("198.18.0.2"), Reason::NoSecretSni),
        (Some("other.example"), Reason::NoSecretSni),
        (None, Reason::NoSni),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = engine();
        let src = format!("198.18.0.1:{}", 41000 + i);
        let hello = client_hello(sni);
        e.decide(&tcp(&src, TLS, 0, true, b""), Direction::ToPbx, S);
        let (a, b) = hello.split_at(1200);
        let r = e.decide(&tcp(&src, TLS, 1, false, a), Direction::ToPbx, S);
        assert_eq!(r.reason, Reason::TcpPartial, "{sni:?}");
        let r = e.decide(
            &tcp(&src, TLS, 1 + a.len() as u32, false, b),
            Direction::ToPbx,
            S,
        );
        assert_eq!(r.reason, want, "{sni:?}");
        let next = e.decide(
            &tcp(
                &src,
                TLS,
                1 + hello.len() as u32,
                false,
                b"\x17\x03\x03\x00\x01x",
            ),
            Direction::ToPbx,
            S,
        );
        if want == Reason::SecretSni {
            assert_eq!(
                (next.verdict, next.reason),
                (Verdict::Accept, Reason::TlsFlow)
            );
        } else {
            assert_eq!(
                (next.verdict, next.reason),
                (Verdict::Drop, Reason::FlowBlocked)
            );
        }
    }
    // SIP in clear on the TLS port is not TLS
    let mut e = engine();
    let m = request("REGISTER", DOMAIN, DOMAIN, DOMAIN, "");
    e.decide(
        &tcp("198.18.0.1:42000", TLS, 0, true, b""),
        Direction::ToPbx,
        S,
    );
    assert_eq!(
        e.decide(
            &tcp("198.18.0.1:42000", TLS, 1, false, m.as_bytes()),
            Direction::ToPbx,
            S
        )
        .reason,
        Reason::NotTls
    );
    // no_sni = "accept"
    let mut e = engine_with("[tls]\nno_sni = \"accept\"");
    let h = client_hello(None);
    e.decide(
        &tcp("198.18.0.1:42001", TLS, 0, true, b""),
        Direction::ToPbx,
        S,
    );
    let r = e.decide(
        &tcp("198.18.0.1:42001", TLS, 1, false, &h),
        Direction::ToPbx,
        S,
    );
    assert_eq!((r.verdict, r.reason), (Verdict::Accept, Reason::NoSni));
}

#[test]
fn a_client_hello_in_several_records_and_segments_is_read() {
    // RFC 8446 §5.1: a handshake message may be fragmented over records.
    let one = client_hello(Some(DOMAIN));
    let mut split = Vec::new();
    for frag in one[5..].chunks(700) {
        split.extend_from_slice(&one[..3]);
        split.extend_from_slice(&(frag.len() as u16).to_be_bytes());
        split.extend_from_slice(frag);
    }
    let mut e = engine();
    let (src, tls) = ("198.18.0.1:43000", "198.18.0.2:5061");
    e.decide(&tcp(src, tls, 0, true, b""), Direction::ToPbx, S);
    let (a, b) = split.split_at(1000);
    let r = e.decide(&tcp(src, tls, 1, false, a), Direction::ToPbx, S);
    assert_eq!(r.reason, Reason::TcpPartial);
    let r = e.decide(
        &tcp(src, tls, 1 + a.len() as u32, false, b),
        Direction::ToPbx,
        S,
    );
    assert_eq!((r.verdict, r.reason), (Verdict::Accept, Reason::SecretSni));
}

/// A reload keeps the sources' token buckets unless the limits changed: SIGHUP in a flood
/// hands no source a fresh burst.
#[test]
fn reload_keeps_rate_state_unless_the_limits_change() {
    let slow = "[rate]\nregister = { per_second = 0.01, burst = 1 }\n";
    let mut e = engine_with(slow);
    let reg = |e: &mut sipwall::engine::Engine, call_id: &str| {
        let m = request_full("REGISTER", DOMAIN, DOMAIN, DOMAIN, "", call_id, 1, "");
        let p = udp("198.18.0.10:5060", PBX, m.as_bytes());
        e.decide(&p, Direction::ToPbx, S).reason
    };
    assert_eq!(reg(&mut e, "a"), Reason::SecretDomain);
    assert_eq!(reg(&mut e, "b"), Reason::RateLimited);
    // Same limits, another scanner list: the bucket is still empty.
    e.set_policy(policy_with(&format!(
        "{slow}[scanners]\nuser_agents = [\"x-scan\"]\n"
    )));
    assert_eq!(reg(&mut e, "c"), Reason::RateLimited);
    // New limits: new buckets.
    e.set_policy(policy_with(
        "[rate]\nregister = { per_second = 1.0, burst = 5 }\n",
    ));
    assert_eq!(reg(&mut e, "d"), Reason::SecretDomain);
}

/// The scanner check's answers are remembered per User-Agent; a reload with other patterns
/// must judge a User-Agent already seen by the new list, both ways.
#[test]
fn reload_judges_user_agents_already_seen_by_the_new_scanner_list() {
    let d = DOMAIN;
    let mut e = engine();
    let options = |n: u32| {
        request_full("OPTIONS", d, d, d, "", &format!("ua-{n}"), 1, "")
            .replace("Yealink SIP-T46S", "Acme Desk Phone 7.1 (x-probe build)")
    };
    // Seen twice (the second answer from memory), each time not a scanner.
    assert_eq!(reason(&mut e, PHONE, &options(1), S), Reason::SecretDomain);
    assert_eq!(reason(&mut e, PHONE, &options(2), S), Reason::SecretDomain);
    e.set_policy(policy_with("[scanners]\nuser_agents = [\"X-PROBE\"]\n"));
    assert_eq!(reason(&mut e, PHONE, &options(3), S), Reason::Scanner);
    assert_eq!(reason(&mut e, PHONE, &options(4), S), Reason::Scanner);
    e.set_policy(policy_with(""));
    assert_eq!(reason(&mut e, PHONE, &options(5), S), Reason::SecretDomain);
}

/// A runtime entry (`sipwall ctl deny|allow`, a feed) reaches a worker's engine on its next
/// packet, and its removal too: each engine keeps its own view of the lists.
#[test]
fn runtime_entries_apply_to_running_engines_at_once() {
    use sipwall::engine::{Entry, ListKind};
    let d = DOMAIN;
    let mut e = engine();
    let msg = |n: u32| request_full("OPTIONS", d, d, d, "", &format!("rt-{n}"), 1, "");
    let entry = |net: &str, kind| Entry {
        net: net.parse().unwrap(),
        kind,
        since_ns: 0,
        until_ns: None,
        provenance: "ctl".into(),
    };
    assert_eq!(reason(&mut e, PHONE, &msg(1), S), Reason::SecretDomain);
    let shared = e.shared().clone();
    shared.set_entries(vec![entry("198.18.0.1/32", ListKind::Deny)]);
    assert_eq!(reason(&mut e, PHONE, &msg(2), S), Reason::DeniedSource);
    shared.set_entries(vec![entry("198.18.0.0/24", ListKind::Allow)]);
    assert_eq!(reason(&mut e, PHONE, &msg(3), S), Reason::AllowedSource);
    shared.set_entries(Vec::new());
    assert_eq!(reason(&mut e, PHONE, &msg(4), S), Reason::SecretDomain);
}

/// Drivers holding a batch read its messages ahead (`read_ahead`, `warm_ahead`) and then
/// decide each packet with what was read (`decide_ahead`): every decision, and every count,
/// must be the one that deciding the packets one by one gives. A generated mix of phones over
/// UDP and TCP, IPv4 and IPv6, scanners, password guessers answered by the PBX (bans), RTP.
#[test]
fn deciding_a_batch_read_ahead_is_deciding_it_packet_by_packet() {
    use sipwall::engine::Ahead;
    use sipwall::net::{IpView, Packet};
    let g = sipwall::gen::Generator::mixed("sip.example.com", 20_000);
    let mut frames: Vec<(u64, Vec<u8>)> = g.frames().map(|(t, f)| (t, f[14..].to_vec())).collect();
    frames.sort_by_key(|(t, _)| *t);
    let pbx: Vec<std::net::IpAddr> = vec![sipwall::gen::PBX_V4.into(), sipwall::gen::PBX_V6.into()];
    let (mut one, mut batched) = (engine(), engine());
    let mut reasons = std::collections::HashSet::new();
    for group in frames.chunks(16) {
        let views: Vec<(Packet, Direction, u64)> = group
            .iter()
            .filter_map(|(t, f)| match Packet::from_ip(f) {
                IpView::Packet(p) => {
                    let dir = if pbx.contains(&p.src.ip()) {
                        Direction::FromPbx
                    } else {
                        Direction::ToPbx
                    };
                    Some((p, dir, *t))
                }
                _ => None,
            })
            .collect();
        // Slots as the worker makes them: in uninitialised room, flag and keys alone written.
        let mut room: Vec<std::mem::MaybeUninit<Ahead>> = views
            .iter()
            .map(|_| std::mem::MaybeUninit::uninit())
            .collect();
        let mut ahead: Vec<&mut Ahead> = room.iter_mut().map(Ahead::empty_in).collect();
        for ((p, dir, t), a) in views.iter().zip(&mut ahead) {
            batched.read_ahead(p, *dir, *t, a);
        }
        for ((p, _, _), a) in views.iter().zip(&mut ahead) {
            batched.warm_ahead(p, a);
        }
        for ((p, dir, t), a) in views.iter().zip(&ahead) {
            let want = one.decide(p, *dir, *t);
            assert_eq!(batched.decide_ahead(p, *dir, *t, a), want, "{p:?}");
            reasons.insert(want.reason);
        }
    }
    assert_eq!(batched.counters(), one.counters());
    assert!(one.counters().bans > 0, "the mix bans guessers");
    for r in [
        Reason::SecretDomain,
        Reason::Scanner,
        Reason::InDialog,
        Reason::Banned,
    ] {
        assert!(reasons.contains(&r), "the mix has {r:?}: {reasons:?}");
    }
}

/// Expiry runs in parts as packets come (a sixteenth of each table every 1/16 s): within a
/// second of their expiry, idle sources and unanswered transactions are gone from every part
/// of the tables, however many there were, while the live phone keeps its state.
#[test]
fn idle_state_is_swept_within_a_second_of_expiring() {
    let mut e = engine_with("[rate]\nsource_idle = \"60s\"");
    let d = DOMAIN;
    let size = |e: &sipwall::engine::Engine, name: &str| {
        e.table_sizes().iter().find(|(n, _)| *n == name).unwrap().1
    };
    for k in 0..3000u32 {
        let src = format!("198.18.{}.{}:5060", 16 + k / 250, 1 + k % 250);
        let reg = request_full("REGISTER", d, d, d, "", &format!("c{k}"), 1, "");
        assert_eq!(reason(&mut e, &src, &reg, S), Reason::SecretDomain);
    }
    assert_eq!(size(&e, "sources"), 3000);
    assert_eq!(size(&e, "transactions"), 3000);
    // One phone goes on, a request every 1/16 s. Transactions live 32 s (counted in ticks of
    // ~1.07 s), sources idle 60 s; each is swept within a second after.
    let opts = request_full("OPTIONS", d, d, d, "", "keep", 1, "");
    let mut t = S;
    let mut step = |e: &mut sipwall::engine::Engine, until: u64| {
        while t < until {
            t += S / 16;
            reason(e, PHONE, &opts, t);
        }
    };
    step(&mut e, 31 * S);
    assert_eq!(
        size(&e, "transactions"),
        3000,
        "none expired before its time"
    );
    step(&mut e, 35 * S);
    assert_eq!(size(&e, "transactions"), 0);
    step(&mut e, 60 * S);
    assert_eq!(size(&e, "sources"), 3001);
    step(&mut e, 63 * S);
    assert_eq!(size(&e, "sources"), 1, "only the phone that kept on");
}

/// An INVITE the PBX refuses (486 Busy) makes no dialog: its ACK passes, as the answer's
/// retransmissions would, for a transaction's time (32 s); after that the Call-ID is a
/// stranger's, not 200 s later as for an INVITE never answered.
#[test]
fn a_refused_invite_leaves_no_dialog_once_its_ack_has_come() {
    let mut e = engine();
    let d = DOMAIN;
    let ip = "198.18.0.2";
    let invite = request_full("INVITE", d, d, d, "", "busy-1", 1, "");
    assert_eq!(reason(&mut e, PHONE, &invite, S), Reason::SecretDomain);
    let unanswered = request_full("INVITE", d, d, d, "", "ringing-1", 1, "");
    assert_eq!(reason(&mut e, PHONE, &unanswered, S), Reason::SecretDomain);
    pbx_sends(
        &mut e,
        PHONE,
        &response(486, "INVITE", "busy-1", 1, ""),
        2 * S,
    );
    let ack = request_full("ACK", ip, ip, ip, ";tag=t9", "busy-1", 1, "");
    assert_eq!(reason(&mut e, PHONE, &ack, 3 * S), Reason::InDialog);
    let late = request_full("BYE", ip, ip, ip, ";tag=t9", "busy-1", 2, "");
    assert_eq!(reason(&mut e, PHONE, &late, 40 * S), Reason::UnknownDialog);
    // The INVITE still waiting for its answer keeps its unconfirmed dialog.
    let cancel = request_full("CANCEL", ip, ip, ip, ";tag=t9", "ringing-1", 1, "");
    assert_eq!(reason(&mut e, PHONE, &cancel, 40 * S), Reason::InDialog);
}
