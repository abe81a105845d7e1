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
    /// Normalises a header name (any bytes; only exact names match). Case-insensitive;
    /// compact forms map to their long names.
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
            if eq_name(name, n) {
                return *h;
            }
        }
        Other
    }
}

/// `name` (any bytes) equals `lower` (lowercase letters, and bytes below 0x40 such as '-' or
/// '/') ignoring ASCII case, in overlapping words. Bit 0x20 is set only where `lower` has a
/// letter: there it folds case and merges no other byte into the letter; the other bytes must
/// match exactly ('\r' | 0x20 is '-').
#[inline(always)]
pub(super) fn eq_name(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    // Letters have bit 0x40, '-' (0x2d) has not: the fold mask is that bit moved to 0x20.
    let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    // (Plain `&&` and loops, not iterator adapters: those were left as calls.)
    let eq4 = |at: usize| {
        let l = w4(lower, at);
        w4(name, at) | ((l & 0x4040_4040) >> 1) == l
    };
    match n {
        0..=3 => {
            let mut same = true;
            for k in 0..n {
                same &= name[k] | ((lower[k] & 0x40) >> 1) == lower[k];
            }
            same
        }
        4..=8 => eq4(0) && eq4(n - 4),
        _ => {
            let mut at = 0;
            loop {
                let l = w8(lower, at);
                if w8(name, at) | ((l & 0x4040_4040_4040_4040) >> 1) != l {
                    return false;
                }
                if at + 8 >= n {
                    return true;
                }
                at = (at + 8).min(n - 8);
            }
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
