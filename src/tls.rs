//! The SNI of a TLS ClientHello (SIP over TLS, port 5061): a client that does not name a
//! secret domain never gets a handshake. The ClientHello may span TCP segments (modern ones
//! with large key shares often do): the caller reassembles and asks again. It may also span
//! TLS records (RFC 8446 §5.1 lets a handshake message be fragmented; some clients do): the
//! fragments are joined in a scratch buffer. rusticata's tls-parser reads the ClientHello and
//! its extensions.

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_handshake_client_hello, SNIType, TlsExtension,
};

/// Largest record payload (2^14 plaintext, plus the 2048 a TLS 1.2 record may add).
const MAX_FRAGMENT: usize = (1 << 14) + 2048;
/// Largest first record accepted.
pub const MAX_RECORD: usize = 5 + MAX_FRAGMENT;
/// Largest ClientHello accepted across records: far above any real one (a post-quantum key
/// share makes about 2 KB), and what the TCP buffer bounds anyway.
pub const MAX_HELLO: usize = 1 << 16;

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello<'a> {
    /// More bytes are needed to read the ClientHello.
    Incomplete,
    /// The server name the client asks for.
    Sni(&'a [u8]),
    /// A ClientHello without a server name.
    NoSni,
    /// The stream does not start with a TLS handshake record.
    NotTls,
    /// Handshake records that do not hold a readable ClientHello.
    BadHello,
}

/// Reads the ClientHello at the start of a client's stream. `scratch` holds the handshake
/// message when it spans records (reused: no allocation once it has grown).
pub fn client_hello<'a>(buf: &'a [u8], scratch: &'a mut Vec<u8>) -> Hello<'a> {
    match buf.first() {
        None => return Hello::Incomplete,
        Some(&HANDSHAKE) => {}
        Some(_) => return Hello::NotTls,
    }
    // The fragments of one handshake message, in consecutive handshake records.
    scratch.clear();
    let mut at = 0;
    loop {
        let frag = match record(buf, at) {
            None => return Hello::BadHello,
            Some(None) => return Hello::Incomplete,
            Some(Some(frag)) => frag,
        };
        if buf[at] != HANDSHAKE || frag.is_empty() {
            return Hello::BadHello;
        }
        // The common case, the whole message in the first record, is read in place.
        if at == 0 {
            if let Some(need) = message_len(frag).filter(|&n| n <= frag.len()) {
                return hello(&frag[..need]);
            }
        }
        scratch.extend_from_slice(frag);
        at += 5 + frag.len();
        if let Some(need) = message_len(scratch) {
            if need > MAX_HELLO {
                return Hello::BadHello;
            }
            if need <= scratch.len() {
                return hello(&scratch[..need]);
            }
        } else if scratch.len() >= 4 {
            return Hello::BadHello;
        }
    }
}

/// The payload of the record at `at`: `None` for a bad record, `Some(None)` when not all of it
/// is here yet.
fn record(buf: &[u8], at: usize) -> Option<Option<&[u8]>> {
    let Some(h) = buf.get(at..at + 5) else {
        return Some(None);
    };
    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
    if len > MAX_FRAGMENT {
        return None;
    }
    Some(buf.get(at + 5..at + 5 + len))
}

/// The length of the handshake message starting `hs` (header included), if it is a ClientHello
/// and its header is here; `None` when the header is incomplete or not a ClientHello (callers
/// tell the two apart by length).
fn message_len(hs: &[u8]) -> Option<usize> {
    match hs {
        [CLIENT_HELLO, a, b, c, ..] => {
            Some(4 + (usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c)))
        }
        _ => None,
    }
}

/// The server name of one whole ClientHello handshake message.
fn hello(msg: &[u8]) -> Hello<'_> {
    let Ok((_, ch)) = parse_tls_handshake_client_hello(&msg[4..]) else {
        return Hello::BadHello;
    };
    let Some(ext) = ch.ext else {
        return Hello::NoSni;
    };
    let Ok((_, exts)) = parse_tls_client_hello_extensions(ext) else {
        return Hello::BadHello;
    };
    for e in exts {
        if let TlsExtension::SNI(names) = e {
            return match names.iter().find(|(t, _)| *t == SNIType::HostName) {
                Some((_, name)) => Hello::Sni(name),
                None => Hello::NoSni,
            };
        }
    }
    Hello::NoSni
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal TLS 1.2-style ClientHello with an optional SNI extension and `pad` bytes of
    /// padding extension (to make it span segments).
    pub fn client_hello_bytes(sni: Option<&str>, pad: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(name) = sni {
            let n = name.as_bytes();
            let list_len = 3 + n.len();
            ext.extend_from_slice(&[0x00, 0x00]);
            ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
            ext.extend_from_slice(&(list_len as u16).to_be_bytes());
            ext.push(0x00);
            ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
            ext.extend_from_slice(n);
        }
        if pad > 0 {
            ext.extend_from_slice(&[0x00, 0x15]);
            ext.extend_from_slice(&(pad as u16).to_be_bytes());
            ext.extend(std::iter::repeat_n(0u8, pad));
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn reads_sni_and_waits_for_the_rest() {
        let mut s = Vec::new();
        let h = client_hello_bytes(Some("sip.example.com"), 1500);
        assert_eq!(client_hello(&h, &mut s), Hello::Sni(b"sip.example.com"));
        for cut in [0, 3, 5, 100, h.len() - 1] {
            assert_eq!(
                client_hello(&h[..cut], &mut s),
                Hello::Incomplete,
                "cut at {cut}"
            );
        }
        assert_eq!(
            client_hello(&client_hello_bytes(None, 0), &mut s),
            Hello::NoSni
        );
        assert_eq!(
            client_hello(b"REGISTER sip:x SIP/2.0\r\n", &mut s),
            Hello::NotTls
        );
        let mut bad = h.clone();
        bad[5] = 0x02; // a ServerHello where a ClientHello belongs
        assert_ne!(client_hello(&bad, &mut s), Hello::Sni(b"sip.example.com"));
    }

    /// The handshake message of `rec` (one record) cut into records of `size` bytes.
    pub fn split_into_records(rec: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for frag in rec[5..].chunks(size) {
            out.extend_from_slice(&rec[..3]);
            out.extend_from_slice(&(frag.len() as u16).to_be_bytes());
            out.extend_from_slice(frag);
        }
        out
    }

    #[test]
    fn a_client_hello_spread_over_records_is_joined() {
        let mut s = Vec::new();
        let one = client_hello_bytes(Some("sip.example.com"), 900);
        // Three records; records of 2 and 1 bytes cut the handshake header itself.
        for size in [400, 2, 1] {
            let h = split_into_records(&one, size);
            assert_eq!(
                client_hello(&h, &mut s),
                Hello::Sni(b"sip.example.com"),
                "{size}"
            );
            for cut in [3, 5, 7, 9, 500, h.len() - 1] {
                assert_eq!(
                    client_hello(&h[..cut], &mut s),
                    Hello::Incomplete,
                    "{size} {cut}"
                );
            }
        }
        // A record of another type in the middle, or more than MAX_HELLO claimed: no hello.
        let mut h = split_into_records(&one, 400);
        h[405] = 0x17;
        assert_eq!(client_hello(&h, &mut s), Hello::BadHello);
        let mut huge = split_into_records(&one, 400);
        huge[6..9].copy_from_slice(&[0x02, 0x00, 0x00]); // 128 KiB
        assert_eq!(client_hello(&huge, &mut s), Hello::BadHello);
    }
}
