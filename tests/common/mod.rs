//! Shared helpers: SIP message builders and packets, used by every integration test.
#![allow(dead_code)]

use sipwall::config::Config;
use sipwall::engine::{Engine, Shared};
use sipwall::net::{Packet, TcpMeta, Transport};
use std::sync::Arc;

pub const DOMAIN: &str = "sip.example.com";
pub const PBX: &str = "198.18.0.2:5060";

/// The tests' policy from `toml`: the test domain unless it names one, and the PBX.
pub fn policy_with(toml: &str) -> Arc<sipwall::config::Policy> {
    let mut c = Config::from_toml(toml, "test").unwrap();
    if c.sip.domains.is_empty() {
        c.sip.domains = vec![DOMAIN.into()];
    }
    c.sip.pbx = vec!["198.18.0.2".parse().unwrap()];
    Arc::new(c.compile().unwrap())
}

pub fn engine_with(toml: &str) -> Engine {
    Engine::new(policy_with(toml), Arc::new(Shared::new()))
}

pub fn engine() -> Engine {
    engine_with("")
}

pub fn udp<'a>(src: &str, dst: &str, payload: &'a [u8]) -> Packet<'a> {
    Packet {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        transport: Transport::Udp,
        tcp: None,
        payload,
    }
}

pub fn tcp<'a>(src: &str, dst: &str, seq: u32, syn: bool, payload: &'a [u8]) -> Packet<'a> {
    Packet {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        transport: Transport::Tcp,
        tcp: Some(TcpMeta {
            seq,
            syn,
            fin: false,
            rst: false,
        }),
        payload,
    }
}

/// A request with the given Request-URI host, To/From hosts and extra headers.
pub fn request(
    method: &str,
    ruri_host: &str,
    to_host: &str,
    from_host: &str,
    extra: &str,
) -> String {
    request_full(
        method, ruri_host, to_host, from_host, "", "call-1", 1, extra,
    )
}

#[allow(clippy::too_many_arguments)]
pub fn request_full(
    method: &str,
    ruri_host: &str,
    to_host: &str,
    from_host: &str,
    to_tag: &str,
    call_id: &str,
    cseq: u32,
    extra: &str,
) -> String {
    let body = if method == "INVITE" {
        "v=0\r\no=- 1 1 IN IP4 198.18.0.1\r\ns=-\r\nc=IN IP4 198.18.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:200@{ruri_host} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.1:5062;branch=z9hG4bK{cseq}x{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:100@{from_host}>;tag=f1\r\n\
         To: <sip:200@{to_host}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:100@198.18.0.1:5062>\r\n\
         User-Agent: Yealink SIP-T46S\r\n\
         {extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn response(status: u16, method: &str, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "SIP/2.0 {status} Whatever\r\n\
         Via: SIP/2.0/UDP 198.18.0.1:5062;branch=z9hG4bK{cseq}x{call_id}\r\n\
         From: <sip:100@{DOMAIN}>;tag=f1\r\n\
         To: <sip:100@{DOMAIN}>;tag=t9\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
}
