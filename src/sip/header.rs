//! Header names normalised once: any case, compact forms (RFC 3261 §7.3.3, RFC 3515, 3841, 3892, 4474, 4028).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName {
    CallId,
    Contact,
    ContentEncoding,
    ContentLength,
    ContentType,
    From,
    Subject,
    Supported,
    To,
    Via,
    CSeq,
    UserAgent,
    Authorization,
    ProxyAuthorization,
    Event,
    ReferTo,
    AcceptContact,
    ReferredBy,
    RejectContact,
    RequestDisposition,
    SessionExpires,
    Identity,
    Allow,
    MaxForwards,
    Expires,
    Route,
    RecordRoute,
    Server,
    WwwAuthenticate,
    ProxyAuthenticate,
    /// Any other header: policy never reads it.
    Other,
}

impl HeaderName {
    /// Normalises a header name: a token, as `HeaderIter` yields it (the fast comparison relies
    /// on that). Case-insensitive; compact forms map to their long names.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'i' => CallId,
                b'm' => Contact,
                b'e' => ContentEncoding,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'f' => From,
                b's' => Subject,
                b'k' => Supported,
                b't' => To,
                b'v' => Via,
                b'o' => Event,
                b'r' => ReferTo,
                b'a' => AcceptContact,
                b'b' => ReferredBy,
                b'j' => RejectContact,
                b'd' => RequestDisposition,
                b'x' => SessionExpires,
                b'y' => Identity,
                _ => Other,
            };
        }
        // Dispatch on length: at most three comparisons for any name.
        let candidates: &[(&[u8], HeaderName)] = match name.len() {
            2 => &[(b"to", To)],
            3 => &[(b"via", Via)],
            4 => &[(b"from", From), (b"cseq", CSeq)],
            5 => &[(b"allow", Allow), (b"event", Event), (b"route", Route)],
            6 => &[(b"server", Server)],
            7 => &[
                (b"call-id", CallId),
                (b"contact", Contact),
                (b"expires", Expires),
            ],
            8 => &[(b"identity", Identity), (b"refer-to", ReferTo)],
            9 => &[(b"supported", Supported)],
            10 => &[(b"user-agent", UserAgent)],
            11 => &[(b"referred-by", ReferredBy)],
            12 => &[
                (b"content-type", ContentType),
                (b"max-forwards", MaxForwards),
                (b"record-route", RecordRoute),
            ],
            13 => &[(b"authorization", Authorization)],
            14 => &[
                (b"content-length", ContentLength),
                (b"accept-contact", AcceptContact),
                (b"reject-contact", RejectContact),
            ],
            15 => &[(b"session-expires", SessionExpires)],
            16 => &[
                (b"content-encoding", ContentEncoding),
                (b"www-authenticate", WwwAuthenticate),
            ],
            18 => &[(b"proxy-authenticate", ProxyAuthenticate)],
            19 => &[
                (b"proxy-authorization", ProxyAuthorization),
                (b"request-disposition", RequestDisposition),
            ],
            _ => &[],
        };
        for (n, h) in candidates {
            if eq_lower_token(name, n) {
                return *h;
            }
        }
        Other
    }
}

/// `name` (token characters) equals `lower` (lowercase) ignoring ASCII case, compared in
/// (possibly overlapping) words. OR-ing 0x20 lowercases letters; among token characters it turns
/// no other byte into a letter ('_' becomes DEL, the rest already have the bit): exact.
#[inline(always)]
pub(super) fn eq_lower_token(name: &[u8], lower: &[u8]) -> bool {
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    fn w4(s: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes")) | 0x2020_2020
    }
    fn w8(s: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes")) | 0x2020_2020_2020_2020
    }
    match n {
        0..=3 => name.iter().zip(lower).all(|(x, y)| x | 0x20 == *y),
        4..=8 => w4(name, 0) == w4(lower, 0) && w4(name, n - 4) == w4(lower, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if w8(name, at) != w8(lower, at) {
                    return false;
                }
                at += 8;
            }
            w8(name, n - 8) == w8(lower, n - 8)
        }
    }
}
#[cfg(test)]
mod tests {
    use super::HeaderName::*;
    use super::*;

    #[test]
    fn any_case_and_compact() {
        for (n, h) in [
            (&b"TO"[..], To),
            (b"t", To),
            (b"T", To),
            (b"fRoM", From),
            (b"f", From),
            (b"i", CallId),
            (b"CALL-id", CallId),
            (b"l", ContentLength),
            (b"Content-Length", ContentLength),
            (b"user-AGENT", UserAgent),
            (b"cseq", CSeq),
            (b"X-Foo", Other),
            (b"Proxy-Authorization", ProxyAuthorization),
            (b"WWW-Authenticate", WwwAuthenticate),
            (b"Record-Route", RecordRoute),
            (b"Request-Disposition", RequestDisposition),
            (b"Content-Lengthx", Other),
            (b"Content-Lenhtg", Other),
            (b"CALL_ID", Other),
            (b"Suppprted", Other),
        ] {
            assert_eq!(
                HeaderName::from_bytes(n),
                h,
                "{}",
                String::from_utf8_lossy(n)
            );
        }
    }
}
