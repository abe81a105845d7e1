#![no_main]
//! Oracles: (1) changing header-name case or using the long form of compact names never
//! changes the verdict; (2) the engine's domain decision agrees with a naive reference that
//! compares the three hosts by hand; (3) a message judged again from another source gets the
//! same verdict, though the scanner check then answers from memory.
use libfuzzer_sys::fuzz_target;
use sipwall::engine::{Engine, Reason, Shared};
use sipwall::sip::{self, Framing, Host};
use std::sync::Arc;

mod shared;

fn engine() -> Engine {
    Engine::new(shared::policy(65_535), Arc::new(Shared::new()))
}

/// Upper-cases every header name (the text before the first ':' of each header line).
fn upcase_names(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    let mut in_headers = false;
    let mut at_line_start = false;
    let mut in_name = false;
    let mut i = 0;
    while i < msg.len() {
        let b = msg[i];
        if at_line_start && in_headers {
            if b == b'\r' || b == b'\n' {
                in_headers = false; // empty line: body follows
            } else if b != b' ' && b != b'\t' {
                in_name = true;
            }
        }
        at_line_start = false;
        if b == b':' {
            in_name = false;
        }
        out.push(if in_name { b.to_ascii_uppercase() } else { b });
        if b == b'\n' {
            at_line_start = true;
            in_name = false;
            if !in_headers && out.len() == i + 1 && !out[..i].contains(&b'\n') {
                in_headers = true;
            }
        }
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let src = "198.18.0.1".parse().unwrap();
    let a = engine().explain(data, src, 1);
    let b = engine().explain(&upcase_names(data), src, 1);
    assert_eq!(a.reason, b.reason, "header-name case changed the verdict");

    // A second source starts with full buckets, and what the first message taught (a dialog)
    // cannot turn a verdict: only the User-Agent's remembered answer is new.
    let mut e = engine();
    e.explain(data, src, 1);
    let again = e.explain(data, "198.18.0.9".parse().unwrap(), 1);
    assert_eq!(
        a.reason, again.reason,
        "a remembered answer changed the verdict"
    );

    if let Ok(m) = sip::parse(data, Framing::Datagram) {
        if let (Some(uri), None) = (m.request_uri(), m.to.tag) {
            let is = |h: Option<Host>| match h {
                Some(Host::Name(n)) => std::str::from_utf8(n)
                    .map(|s| s.to_ascii_lowercase() == "example.com")
                    .unwrap_or(false),
                _ => false,
            };
            let naive = is(uri.host) && is(m.to.host()) && is(m.from.host());
            if a.reason == Reason::SecretDomain {
                assert!(naive, "accepted without the domain");
            }
            if a.reason == Reason::NoSecretDomain {
                assert!(!naive, "dropped with the domain");
            }
        }
    }
});
