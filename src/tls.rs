//! The SNI of a TLS ClientHello (SIP over TLS, port 5061): a client that does not name a
//! secret domain never gets a handshake. The ClientHello may span TCP segments (modern ones
//! with large key shares often do); the caller reassembles and asks again. rusticata's
//! tls-parser reads the record and extensions.

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_plaintext, SNIType, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

/// Largest first record accepted (a TLS record's payload is at most 2^14 + 2048 bytes).
pub const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello<'a> {
    /// More bytes are needed to read the first record.
    Incomplete,
    /// The server name the client asks for.
    Sni(&'a [u8]),
    /// A ClientHello without a server name.
    NoSni,
    /// The stream does not start with a TLS handshake record.
    NotTls,
    /// A handshake record that is not a readable ClientHello.
    BadHello,
}

/// Reads the first TLS record of a client's stream.
pub fn client_hello(buf: &[u8]) -> Hello<'_> {
    match buf.first() {
        None => return Hello::Incomplete,
        Some(0x16) => {}
        Some(_) => return Hello::NotTls,
    }
    if buf.len() < 5 {
        return Hello::Incomplete;
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if 5 + len > MAX_RECORD {
        return Hello::BadHello;
    }
    if buf.len() < 5 + len {
        return Hello::Incomplete;
    }
    let Ok((_, record)) = parse_tls_plaintext(&buf[..5 + len]) else {
        return Hello::BadHello;
    };
    for msg in &record.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = msg {
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
            return Hello::NoSni;
        }
    }
    Hello::BadHello
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
        let h = client_hello_bytes(Some("sip.example.com"), 1500);
        assert_eq!(client_hello(&h), Hello::Sni(b"sip.example.com"));
        for cut in [0, 3, 5, 100, h.len() - 1] {
            assert_eq!(client_hello(&h[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        assert_eq!(client_hello(&client_hello_bytes(None, 0)), Hello::NoSni);
        assert_eq!(client_hello(b"REGISTER sip:x SIP/2.0\r\n"), Hello::NotTls);
        let mut bad = h.clone();
        bad[5] = 0x02; // a ServerHello where a ClientHello belongs
        assert_ne!(client_hello(&bad), Hello::Sni(b"sip.example.com"));
    }
}
