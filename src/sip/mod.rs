//! Zero-copy SIP message parser: one pass, no allocation, strict wherever a PBX could read a
//! message differently from us (such messages are `malformed`).

pub mod chars;
mod error;
pub mod header;
mod message;
mod uri;

pub use error::{ParseError, Part};
pub use header::HeaderName;
pub use message::{
    auth_param, parse, parse_name_addr, parse_name_addr_general, parse_observed, parse_start_line,
    CSeq, Framing, Header, HeaderIter, Message, Method, NameAddr, StartLine, KNOWN_METHODS,
    MAX_UDP_PAYLOAD,
};
pub use uri::{Host, Scheme, Uri};

/// Longest datagram of whitespace and NULs taken as a keepalive.
pub const MAX_BLANK_KEEPALIVE: usize = 16;

/// A keepalive datagram: RFC 5626's CRLF (pong) and CRLFCRLF (ping), and the other short runs
/// of whitespace or NULs (or nothing) that older phones and ATAs send to hold their NAT
/// binding open, every ~30 s: five spaces, four NULs. No SIP stack reads anything from them
/// (a start line may not begin with whitespace); judged `not-sip`, every such phone would
/// show as dropped in the logs and in a dry run's counters.
pub fn is_keepalive(payload: &[u8]) -> bool {
    payload.len() <= MAX_BLANK_KEEPALIVE
        && payload
            .iter()
            .all(|&b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
}

/// Largest STUN keepalive taken as one: a Binding Request carries a few short attributes
/// (SOFTWARE, FINGERPRINT), not kilobytes.
pub const MAX_STUN_KEEPALIVE: usize = 548;

/// RFC 5626 §4.4.2 keepalive over UDP: a STUN Binding Request (RFC 5389) on the SIP port.
/// An outbound-capable phone (baresip, for one) sends one every ~30 s and, unanswered,
/// declares its flow dead and registers again. Only a whole, well-formed request counts: the
/// 20-byte header (first two bits 0, type 0x0001, the magic cookie), a length that is the rest
/// of the datagram, and attributes that tile it exactly.
pub fn is_stun_keepalive(payload: &[u8]) -> bool {
    const MAGIC: [u8; 4] = 0x2112_A442u32.to_be_bytes();
    if payload.len() < 20 || payload.len() > MAX_STUN_KEEPALIVE {
        return false;
    }
    let be16 = |at: usize| usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
    if payload[..2] != [0x00, 0x01] || payload[4..8] != MAGIC || be16(2) != payload.len() - 20 {
        return false;
    }
    // Attributes: type, length, value padded to four bytes; they must end where the message does.
    let mut at = 20;
    while at < payload.len() {
        if payload.len() - at < 4 {
            return false;
        }
        let padded = (be16(at + 2) + 3) & !3;
        if payload.len() - at - 4 < padded {
            return false;
        }
        at += 4 + padded;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding Request as libre (baresip) sends it: SOFTWARE, then FINGERPRINT.
    fn binding(ty: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend(t.to_be_bytes());
            body.extend((v.len() as u16).to_be_bytes());
            body.extend(*v);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = ty.to_be_bytes().to_vec();
        m.extend((body.len() as u16).to_be_bytes());
        m.extend(0x2112_A442u32.to_be_bytes());
        m.extend(b"0123456789ab");
        m.extend(body);
        m
    }

    #[test]
    fn blank_datagrams_are_keepalives() {
        for k in [
            &b"\r\n"[..],
            b"\r\n\r\n",
            b"     ",
            b"\0\0\0\0",
            b"",
            b"\n",
            b" \r\n\t",
        ] {
            assert!(is_keepalive(k), "{k:?}");
        }
        let long = [b' '; MAX_BLANK_KEEPALIVE + 1];
        for k in [&long[..], b"hello", b"\r\nx", b"\r\nOPTIONS", b"\x01"] {
            assert!(!is_keepalive(k), "{k:?}");
        }
    }

    #[test]
    fn stun_binding_requests_are_keepalives() {
        let soft: &[u8] = b"baresip v3.10.1 (x86_64/linux)";
        let req = binding(0x0001, &[(0x8022, soft), (0x8028, &[1, 2, 3, 4])]);
        assert!(is_stun_keepalive(&req));
        assert!(
            is_stun_keepalive(&binding(0x0001, &[])),
            "no attributes (RFC 5626's own)"
        );
        assert!(
            is_stun_keepalive(&binding(0x0001, &[(0x8022, b"odd")])),
            "padded value"
        );
    }

    #[test]
    fn nothing_else_is_a_stun_keepalive() {
        let req = binding(0x0001, &[(0x8022, b"phone")]);
        // Responses, indications, other methods.
        for ty in [0x0101u16, 0x0111, 0x0011, 0x0003, 0x4001] {
            assert!(!is_stun_keepalive(&binding(ty, &[])), "type {ty:#06x}");
        }
        // No magic cookie (RFC 3489's STUN, or anything else starting 00 01).
        let mut old = req.clone();
        old[4..8].copy_from_slice(&[0, 0, 0, 0]);
        assert!(!is_stun_keepalive(&old));
        // The length field must be the rest of the datagram.
        let mut long = req.clone();
        long.extend([0; 4]);
        assert!(!is_stun_keepalive(&long));
        assert!(!is_stun_keepalive(&req[..req.len() - 4]));
        assert!(!is_stun_keepalive(&req[..19]));
        // Attributes must tile the body: one whose length runs past the end.
        let mut bad = req.clone();
        bad[22..24].copy_from_slice(&200u16.to_be_bytes());
        assert!(!is_stun_keepalive(&bad));
        // Too large to be a keepalive.
        let big = binding(0x0001, &[(0x8022, &[b'x'; 600])]);
        assert!(!is_stun_keepalive(&big));
        assert!(!is_stun_keepalive(b"REGISTER sip:x SIP/2.0\r\n\r\n"));
        assert!(!is_stun_keepalive(b"\r\n\r\n"));
    }
}
