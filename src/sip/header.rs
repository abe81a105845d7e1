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
    /// Normalises a header name (already trimmed). Case-insensitive; compact forms map to their long names.
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
        const LONG: &[(&[u8], HeaderName)] = &[
            (b"call-id", CallId),
            (b"contact", Contact),
            (b"content-encoding", ContentEncoding),
            (b"content-length", ContentLength),
            (b"content-type", ContentType),
            (b"from", From),
            (b"subject", Subject),
            (b"supported", Supported),
            (b"to", To),
            (b"via", Via),
            (b"cseq", CSeq),
            (b"user-agent", UserAgent),
            (b"authorization", Authorization),
            (b"proxy-authorization", ProxyAuthorization),
            (b"event", Event),
            (b"refer-to", ReferTo),
            (b"accept-contact", AcceptContact),
            (b"referred-by", ReferredBy),
            (b"reject-contact", RejectContact),
            (b"request-disposition", RequestDisposition),
            (b"session-expires", SessionExpires),
            (b"identity", Identity),
            (b"allow", Allow),
            (b"max-forwards", MaxForwards),
            (b"expires", Expires),
            (b"route", Route),
            (b"record-route", RecordRoute),
            (b"server", Server),
            (b"www-authenticate", WwwAuthenticate),
            (b"proxy-authenticate", ProxyAuthenticate),
        ];
        for (n, h) in LONG {
            if n.len() == name.len() && n.eq_ignore_ascii_case(name) {
                return *h;
            }
        }
        Other
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
