//! One SIP message read in a single pass over borrowed bytes, with no allocation.

use super::chars::{self, Class};
use super::error::{ParseError, Part};
use super::header::{eq_name, HeaderName};
use super::uri::{Host, Uri};

/// Largest UDP payload; a Content-Length above it can only be a lie.
pub const MAX_UDP_PAYLOAD: u64 = 65_507;

/// How message ends are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// UDP: the datagram is the message; Content-Length may not exceed it, trailing octets are ignored.
    Datagram,
    /// TCP: Content-Length (0 when absent, as RFC 3261 §18.3 requires it) frames the message.
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Methods are case-sensitive (RFC 3261 §7.1).
    pub fn from_bytes(m: &'a [u8]) -> Method<'a> {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(other),
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Register => b"REGISTER",
            Method::Options => b"OPTIONS",
            Method::Info => b"INFO",
            Method::Update => b"UPDATE",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Publish => b"PUBLISH",
            Method::Other(m) => m,
        }
    }

    /// Index into per-method tables; `None` for unknown methods.
    pub fn known_index(&self) -> Option<usize> {
        Some(match self {
            Method::Invite => 0,
            Method::Ack => 1,
            Method::Bye => 2,
            Method::Cancel => 3,
            Method::Register => 4,
            Method::Options => 5,
            Method::Info => 6,
            Method::Update => 7,
            Method::Prack => 8,
            Method::Subscribe => 9,
            Method::Notify => 10,
            Method::Refer => 11,
            Method::Message => 12,
            Method::Publish => 13,
            Method::Other(_) => return None,
        })
    }

    /// Requests that can start a dialog the engine should remember.
    pub fn creates_dialog(&self) -> bool {
        matches!(
            self,
            Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
        )
    }
}

impl std::fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

pub const KNOWN_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: Method<'a>, uri: Uri<'a> },
    Response { status: u16, reason: &'a [u8] },
}

/// From or To: `[display-name] <uri>;params` or `uri;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes included when quoted).
    pub display: Option<&'a [u8]>,
    pub uri: Uri<'a>,
    /// The `tag` parameter. The other header parameters are checked and not kept: nothing
    /// reads them, and at 128 bytes a name-addr is moved by a few vector stores where at
    /// 144 it took two calls to memcpy a message.
    pub tag: Option<&'a [u8]>,
}

impl NameAddr<'_> {
    pub fn host(&self) -> Option<Host<'_>> {
        self.uri.host
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

/// A parsed SIP message. Every field borrows the buffer it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The start line as written (no line end).
    pub start_line: &'a [u8],
    pub start: StartLine<'a>,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
    pub call_id: &'a [u8],
    pub cseq: CSeq<'a>,
    pub content_length: Option<u32>,
    pub user_agent: Option<&'a [u8]>,
    /// The first Authorization or Proxy-Authorization value: the request carries credentials.
    pub authorization: Option<&'a [u8]>,
    /// The header block, from the first header line to the empty line (exclusive).
    pub header_block: &'a [u8],
    pub body: &'a [u8],
    /// Octets this message takes in the buffer (start line to end of body).
    pub len: usize,
}

impl<'a> Message<'a> {
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }
    pub fn request_uri(&self) -> Option<&Uri<'a>> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }
    /// Every header in order, for display; policy uses the fields above.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter::new(self.header_block)
    }
    /// Whether `observed` (the [`parse_observed`] of the same bytes) says what this says,
    /// but for the URIs it leaves unread, which must be the same bytes (for the tests and
    /// the fuzz target that compare the two).
    #[doc(hidden)]
    pub fn agrees_but_uris(&self, observed: &Message) -> bool {
        let start = match (self.start, observed.start) {
            (StartLine::Request { method, uri }, StartLine::Request { method: m, uri: u }) => {
                method == m && uri.raw == u.raw
            }
            (a @ StartLine::Response { .. }, b) => a == b,
            _ => false,
        };
        let name_addr = |a: &NameAddr, b: &NameAddr| {
            a.display == b.display && a.tag == b.tag && a.uri.raw == b.uri.raw
        };
        start
            && name_addr(&self.from, &observed.from)
            && name_addr(&self.to, &observed.to)
            && (
                self.start_line,
                self.call_id,
                self.cseq,
                self.content_length,
            ) == (
                observed.start_line,
                observed.call_id,
                observed.cseq,
                observed.content_length,
            )
            && (self.user_agent, self.authorization)
                == (observed.user_agent, observed.authorization)
            && (self.header_block, self.body, self.len)
                == (observed.header_block, observed.body, observed.len)
    }

    /// `username` from the credentials, if any.
    pub fn auth_username(&self) -> Option<&'a [u8]> {
        self.authorization.and_then(username_of)
    }
}

/// `username` from a credentials value. Nearly every phone writes `Digest username="..."`
/// first: that form is read in place (the search's answer on it, tested); others are searched.
/// Out of line: inlined, it changed the engine's code enough to copy each parsed message.
#[inline(never)]
fn username_of(v: &[u8]) -> Option<&[u8]> {
    const AT: usize = b"Digest username=\"".len();
    if v.len() > AT && eq_name(&v[..6], b"digest") && &v[6..AT] == b" username=\"" {
        return chars::find_byte(b'"', &v[AT..]).map(|e| &v[AT..AT + e]);
    }
    // The searcher is built once: building it costs more than the search.
    static USERNAME: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"username"));
    auth_param_with(v, &USERNAME)
}

/// One header line (folds joined): the name as written, its normalised form, and its trimmed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub kind: HeaderName,
    pub value: &'a [u8],
}

/// Walks header lines until the empty line that ends them; a line starting with SP/HT
/// continues the previous header. One pass: line ends, the colon and folds are found together.
pub struct HeaderIter<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where the body starts (relative to the iterated bytes), once the empty line was met.
    body_start: Option<usize>,
    /// The last line read ran into the end of the buffer (a stream may bring the rest).
    cut: bool,
    /// Which header `parse` reads the last line was (`read_by_parse`), if any.
    read: Option<HeaderName>,
    /// Where the lines end, 64 bytes at a time.
    ends: chars::LineEnds,
}

impl<'a> HeaderIter<'a> {
    /// Iterates the header lines at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        HeaderIter {
            buf,
            pos: 0,
            body_start: None,
            cut: false,
            read: None,
            ends: chars::LineEnds::new(buf),
        }
    }
}

/// One header line as positions: name start, name end, (value start, line end).
type Span = (usize, usize, (usize, usize));

impl<'a> HeaderIter<'a> {
    /// The next header line as positions in the buffer: (name start, name end, value start,
    /// line end), the value untrimmed. `parse` reads only a few headers' values; this spares
    /// it naming and trimming the others.
    #[inline(always)]
    fn next_span(&mut self) -> Option<Result<Span, ParseError>> {
        let buf = self.buf;
        let start = self.pos;
        // The common line: a well-known name and its colon, read from the line's first 16
        // bytes by a few word comparisons (no colon search, no trim, no length dispatch).
        if let Some(b) = buf.get(start..start + 16) {
            let w = |k: usize| u64::from_le_bytes(b[k..k + 8].try_into().unwrap_or_default());
            // Bytes 16 to 24, read only for the long names that need them (0 past the end:
            // no colon there, so no long name matches and the general path reads the line).
            let w2 = || {
                buf.get(start + 16..start + 24)
                    .map_or(0, |t| u64::from_le_bytes(t.try_into().unwrap_or_default()))
            };
            if let Some((len, read)) = name_and_colon(w(0), w(8), w2) {
                self.read = read;
                return Some(Ok((start, start + len, self.value_end(start + len + 1))));
            }
        }
        match buf.get(start..) {
            None | Some([]) => return None,
            Some([b'\n', ..]) => {
                self.body_start = Some(start + 1);
                self.pos = buf.len();
                return None;
            }
            Some([b'\r', b'\n', ..]) => {
                self.body_start = Some(start + 2);
                self.pos = buf.len();
                return None;
            }
            Some([b'\r']) => {
                self.cut = true;
                self.pos = buf.len();
                return None;
            }
            _ => {}
        }
        // field-name = token, optional whitespace, ':'
        let name_end = start + chars::token_run(&buf[start..]);
        let mut i = name_end;
        if buf.get(i) != Some(&b':') {
            while i < buf.len() && matches!(buf[i], b' ' | b'\t') {
                i += 1;
            }
        }
        if name_end == start || buf.get(i) != Some(&b':') {
            // A fold with nothing before it, a line without a colon, a bad name.
            self.cut = chars::find_byte(b'\n', &buf[start..]).is_none();
            self.pos = buf.len();
            return Some(Err(ParseError::BadHeaderLine));
        }
        self.read = read_by_parse(&buf[start..name_end]);
        Some(Ok((start, name_end, self.value_end(i + 1))))
    }

    /// The value starting at `vstart` runs to the line end, across folds: (value start, line
    /// end); the next line starts after it.
    #[inline(always)]
    fn value_end(&mut self, vstart: usize) -> (usize, usize) {
        let buf = self.buf;
        let mut nl = vstart;
        loop {
            match self.ends.next(buf, nl) {
                Some(p) => nl = p,
                None => {
                    self.cut = true;
                    nl = buf.len();
                    break;
                }
            }
            // A fold: the next line starts with SP or HT (one bit test for both).
            let next = buf.get(nl + 1).map_or(0, |&b| u64::from(b));
            if next >= 64 || (1u64 << next) & (1u64 << b' ' | 1u64 << b'\t') == 0 {
                break;
            }
            nl += 1;
        }
        self.pos = nl + 1;
        (vstart, nl)
    }
}

/// "name:" as 24 bytes to compare the first 24 of a line with: a byte matches when
/// `(byte | fold) & keep == expected` (fold sets 0x20 on letters only, as [`eq_name`] does;
/// keep drops the bytes after the colon).
struct NamePat {
    expected: [u64; 3],
    fold: [u64; 3],
    keep: [u64; 3],
    len: usize,
    read: Option<HeaderName>,
}

impl NamePat {
    /// `lower`: a lowercase header name of at most 23 bytes.
    const fn new(lower: &[u8], read: Option<HeaderName>) -> NamePat {
        assert!(lower.len() < 24);
        let mut p = NamePat {
            expected: [0; 3],
            fold: [0; 3],
            keep: [0; 3],
            len: lower.len(),
            read,
        };
        let mut k = 0;
        while k <= lower.len() {
            let b = if k < lower.len() { lower[k] } else { b':' };
            let (word, shift) = (k / 8, (k % 8) * 8);
            p.expected[word] |= (b as u64) << shift;
            p.fold[word] |= (((b & 0x40) >> 1) as u64) << shift;
            p.keep[word] |= 0xff << shift;
            k += 1;
        }
        p
    }

    /// Whether the line starts with this name and its colon; `w2` (bytes 16 to 24) is read
    /// only for a name of 16 bytes or more (known when the pattern is built).
    #[inline(always)]
    fn at_start_of(&self, w0: u64, w1: u64, w2: impl Fn() -> u64) -> bool {
        (w0 | self.fold[0]) & self.keep[0] == self.expected[0]
            && (w1 | self.fold[1]) & self.keep[1] == self.expected[1]
            && (self.len < 16 || (w2() | self.fold[2]) & self.keep[2] == self.expected[2])
    }
}

/// The name and colon at the start of a line whose first 16 bytes are `w0`, `w1` (little
/// endian; `w2` the next 8, for long names), when the name is one messages commonly carry
/// and the colon follows it at once: (name length, which header `parse` reads). Such a name
/// is a token. `None` sends the line to the general path (other names, names of 24 bytes or
/// more, a space before the colon, errors), which agrees on every line this answers (tested).
/// An unlisted name costs the general path about twice a listed one's reading.
#[inline(always)]
fn name_and_colon(
    w0: u64,
    w1: u64,
    w2: impl Fn() -> u64 + Copy,
) -> Option<(usize, Option<HeaderName>)> {
    use HeaderName::*;
    let first = w0 as u8;
    macro_rules! names {
        ($($lower:literal => $read:expr),+) => {{
            $({
                const P: NamePat = NamePat::new($lower, $read);
                if P.at_start_of(w0, w1, w2) {
                    return Some((P.len, P.read));
                }
            })+
            None
        }};
    }
    // Most frequent first in each arm; compact forms (RFC 3261 §7.3.3) last: few senders
    // use them. Then names trunks, PBXs and their answers carry (RFC 3325 identities,
    // challenges, RFC 4028 timers, RFC 3262 reliability, RFC 4244 history).
    match first | 0x20 {
        b'v' => names!(b"via" => None, b"v" => None),
        b'f' => names!(b"from" => Some(From), b"f" => Some(From)),
        b't' => names!(b"to" => Some(To), b"timestamp" => None, b"t" => Some(To)),
        b'c' => names!(
            b"call-id" => Some(CallId),
            b"cseq" => Some(CSeq),
            b"contact" => None,
            b"content-length" => Some(ContentLength),
            b"content-type" => None,
            b"c" => None,
            b"call-info" => None,
            b"content-disposition" => None,
            b"content-encoding" => None,
            b"content-language" => None
        ),
        b'i' => names!(b"i" => Some(CallId), b"identity" => None, b"in-reply-to" => None),
        b'l' => names!(b"l" => Some(ContentLength)),
        b'm' => names!(
            b"max-forwards" => None,
            b"m" => None,
            b"min-se" => None,
            b"min-expires" => None,
            b"mime-version" => None
        ),
        b'u' => names!(b"user-agent" => Some(UserAgent), b"unsupported" => None),
        b'a' => names!(
            b"allow" => None,
            b"authorization" => Some(Authorization),
            b"allow-events" => None,
            b"accept" => None,
            b"accept-contact" => None,
            b"accept-encoding" => None,
            b"accept-language" => None,
            b"alert-info" => None,
            b"authentication-info" => None
        ),
        b'e' => names!(b"expires" => None, b"event" => None, b"error-info" => None),
        b's' => names!(
            b"supported" => None,
            b"server" => None,
            b"session-expires" => None,
            b"subject" => None,
            b"subscription-state" => None,
            b"s" => None
        ),
        b'r' => names!(
            b"route" => None,
            b"record-route" => None,
            b"require" => None,
            b"reason" => None,
            b"refer-to" => None,
            b"replaces" => None,
            b"referred-by" => None,
            b"remote-party-id" => None,
            b"rack" => None,
            b"rseq" => None,
            b"retry-after" => None,
            b"recv-info" => None
        ),
        b'p' => names!(
            b"privacy" => None,
            b"proxy-require" => None,
            b"p-asserted-identity" => None,
            b"proxy-authorization" => Some(ProxyAuthorization),
            b"proxy-authenticate" => None,
            b"p-preferred-identity" => None,
            b"p-early-media" => None,
            b"path" => None,
            b"priority" => None
        ),
        b'w' => names!(b"www-authenticate" => None, b"warning" => None),
        b'd' => names!(b"date" => None, b"diversion" => None),
        b'h' => names!(b"history-info" => None),
        b'o' => names!(b"organization" => None),
        b'k' => names!(b"k" => None),
        _ => None,
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<Header<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_span()?.map(|(ns, ne, (vs, nl))| {
            let name = &self.buf[ns..ne];
            Header {
                name,
                kind: HeaderName::from_bytes(name),
                value: trim_value(&self.buf[vs..nl]),
            }
        }))
    }
}

/// A header value without the LWS around it. Most are " value\r": that case costs two
/// comparisons; folds and odd spacing take the general path.
#[inline]
fn trim_value(v: &[u8]) -> &[u8] {
    let v = match v {
        [b' ', inner @ .., b'\r'] => inner,
        _ => v,
    };
    match v {
        [first, .., last] if !chars::lws(*first) && !chars::lws(*last) => v,
        _ => chars::trim_lws(v),
    }
}

/// Reads one message from the start of `buf`.
pub fn parse(buf: &[u8], framing: Framing) -> Result<Message<'_>, ParseError> {
    parse_with::<true>(buf, framing)
}

/// [`parse`] for the messages the PBX sends: its URIs (Request-URI, From, To) are kept as
/// written ([`Uri::unread`]), not read. Nothing judges them: observing reads the start line,
/// tags, Call-ID and CSeq, which this reads exactly as [`parse`] does (tested), and the PBX's
/// answers are as many as the requests it gets. Every message `parse` reads, this reads; it
/// may read one whose URIs `parse` rejects, which is right for the PBX's own bytes.
pub fn parse_observed(buf: &[u8], framing: Framing) -> Result<Message<'_>, ParseError> {
    parse_with::<false>(buf, framing)
}

/// [`parse`], reading the URIs or not (`URIS`).
#[inline(always)]
fn parse_with<const URIS: bool>(buf: &[u8], framing: Framing) -> Result<Message<'_>, ParseError> {
    let Some(first_nl) = chars::find_byte(b'\n', buf) else {
        return Err(match framing {
            Framing::Stream if looks_like_sip_prefix(buf) => ParseError::Incomplete,
            _ => ParseError::NotSip,
        });
    };
    let line_end_ix = if first_nl > 0 && buf[first_nl - 1] == b'\r' {
        first_nl - 1
    } else {
        first_nl
    };
    let start = start_line::<URIS>(&buf[..line_end_ix])?;
    let hstart = first_nl + 1;
    let stream = framing == Framing::Stream;

    let mut from = None;
    let mut to = None;
    let mut call_id = None;
    let mut cseq = None;
    let mut content_length: Option<u64> = None;
    let mut user_agent = None;
    let mut authorization = None;

    let block = &buf[hstart..];
    let mut headers = HeaderIter::new(block);
    while let Some(h) = headers.next_span() {
        let (vs, nl) = match h {
            Ok((_, _, v)) => v,
            // A stream may not have brought the rest of the line yet.
            Err(_) if stream && headers.cut => return Err(ParseError::Incomplete),
            Err(e) => return Err(e),
        };
        let Some(kind) = headers.read else {
            continue;
        };
        let value = trim_value(&block[vs..nl]);
        match kind {
            HeaderName::From => set_once(&mut from, value, Part::From)?,
            HeaderName::To => set_once(&mut to, value, Part::To)?,
            HeaderName::CallId => set_once(&mut call_id, value, Part::CallId)?,
            HeaderName::CSeq => set_once(&mut cseq, value, Part::CSeq)?,
            HeaderName::ContentLength => {
                if content_length.is_some() {
                    return Err(ParseError::DuplicateHeader(Part::ContentLength));
                }
                content_length = Some(match chars::digits(value) {
                    Some(v) => v,
                    None if stream && headers.cut => return Err(ParseError::Incomplete),
                    None => return Err(ParseError::BadContentLength),
                });
            }
            HeaderName::UserAgent => {
                user_agent.get_or_insert(value);
            }
            _ => {
                // Authorization or Proxy-Authorization
                authorization.get_or_insert(value);
            }
        }
    }
    // Without the empty line a stream waits for more; a datagram's headers ran to its end
    // (its body is empty, and a Content-Length above zero fails below).
    let (block_end, body_start) = match headers.body_start {
        Some(b) => {
            let blank = if buf[hstart + b - 2] == b'\r' { 2 } else { 1 };
            (hstart + b - blank, hstart + b)
        }
        None if stream => return Err(ParseError::Incomplete),
        None => (buf.len(), buf.len()),
    };
    let header_block = &buf[hstart..block_end];

    let from = name_addr::<URIS>(
        from.ok_or(ParseError::MissingHeader(Part::From))?,
        Part::From,
    )?;
    let to = name_addr::<URIS>(to.ok_or(ParseError::MissingHeader(Part::To))?, Part::To)?;
    let call_id = call_id.ok_or(ParseError::MissingHeader(Part::CallId))?;
    // callid = word [ "@" word ]: no whitespace inside.
    if call_id.is_empty() || chars::run_of(Class::Word, call_id) < call_id.len() {
        return Err(ParseError::BadCallId);
    }
    let cseq = parse_cseq(cseq.ok_or(ParseError::MissingHeader(Part::CSeq))?)?;
    if let StartLine::Request { method, .. } = start {
        if method != cseq.method {
            return Err(ParseError::CSeqMismatch);
        }
    }

    let available = (buf.len() - body_start) as u64;
    let body_len = match (content_length, framing) {
        (Some(cl), Framing::Datagram) if cl > available || cl > MAX_UDP_PAYLOAD => {
            return Err(ParseError::BodyTruncated)
        }
        (Some(cl), Framing::Stream) if cl > available => return Err(ParseError::Incomplete),
        (Some(cl), _) => cl as usize,
        (None, Framing::Datagram) => available as usize,
        (None, Framing::Stream) => 0,
    };
    let end = body_start + body_len;
    Ok(Message {
        start_line: &buf[..line_end_ix],
        start,
        from,
        to,
        call_id,
        cseq,
        content_length: content_length.map(|c| c as u32),
        user_agent,
        authorization,
        header_block,
        body: &buf[body_start..end],
        len: end,
    })
}

/// The headers `parse` reads, by name (a token, as `HeaderIter` finds it); `None` for the
/// rest. One length dispatch and at most two comparisons; agrees with
/// [`HeaderName::from_bytes`] on these (tested).
#[inline(always)]
fn read_by_parse(name: &[u8]) -> Option<HeaderName> {
    use HeaderName::*;
    let (kind, lower): (_, &[u8]) = match name.len() {
        1 => match name[0] | 0x20 {
            b'f' => return Some(From),
            b't' => return Some(To),
            b'i' => return Some(CallId),
            b'l' => return Some(ContentLength),
            _ => return None,
        },
        2 => (To, b"to"),
        4 if name[0] | 0x20 == b'f' => (From, b"from"),
        4 => (CSeq, b"cseq"),
        7 => (CallId, b"call-id"),
        10 => (UserAgent, b"user-agent"),
        13 => (Authorization, b"authorization"),
        14 => (ContentLength, b"content-length"),
        19 => (ProxyAuthorization, b"proxy-authorization"),
        _ => return None,
    };
    eq_name(name, lower).then_some(kind)
}

#[inline]
fn set_once<'a>(slot: &mut Option<&'a [u8]>, v: &'a [u8], part: Part) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::DuplicateHeader(part));
    }
    *slot = Some(v);
    Ok(())
}

/// Could these bytes (no newline yet) be the beginning of a SIP start line?
fn looks_like_sip_prefix(buf: &[u8]) -> bool {
    buf.len() < 8192
        && buf
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || b == b'\r' || b >= 0x80)
}

/// Starts with "SIP/" in any case (one word comparison, as header names are compared).
fn is_sip_version(v: &[u8]) -> bool {
    v.len() >= 4 && eq_name(&v[..4], b"sip/")
}

fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.len() == 7 && is_sip_version(v) && &v[4..] == b"2.0" {
        Ok(())
    } else {
        Err(ParseError::BadVersion)
    }
}

/// Reads one start line (no line end): a request line or a status line.
pub fn parse_start_line(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    start_line::<true>(line)
}

/// [`parse_start_line`], reading the Request-URI or keeping it as written (`URIS`).
/// Inlined, as `name_addr` and `parse_cseq`: out of line, each returned its value through
/// the stack, and `parse` copied it from there with wider loads than the stores that wrote
/// it; such a load waits for those stores to retire (no store-to-load forwarding), which
/// perf put at a fifth of `parse`'s time (REGISTER: rsip/parse 14x -> 16.5x, measured A/B).
/// `Uri::parse_in` stays out of line: inlined at its three sites it made `parse` 63 KB of
/// code (19 KB now), for no gain on the REGISTER and a loss on the scanner's OPTIONS.
#[inline(always)]
fn start_line<const URIS: bool>(line: &[u8]) -> Result<StartLine<'_>, ParseError> {
    if is_sip_version(line) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = chars::find_byte(b' ', line).ok_or(ParseError::BadStatusLine)?;
        check_version(&line[..sp])?;
        let rest = &line[sp + 1..];
        if rest.len() < 3 || (rest.len() > 3 && rest[3] != b' ') {
            return Err(ParseError::BadStatusLine);
        }
        let code = chars::digits(&rest[..3]).ok_or(ParseError::BadStatusLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusLine);
        }
        let reason = if rest.len() > 4 { &rest[4..] } else { &[][..] };
        if reason.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(ParseError::BadStatusLine);
        }
        return Ok(StartLine::Response {
            status: code as u16,
            reason,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: decide "is it SIP at all" by the
    // version token at the end, then be strict about everything else.
    // The version is a few bytes from the end: a backward loop finds its space sooner than
    // memrchr's setup.
    let last_sp = match line {
        // Nearly every request line: the version exactly, at the end, nothing to trim (one
        // word comparison, where the general way trims and searches).
        [first, .., b' ', b'S', b'I', b'P', b'/', b'2', b'.', b'0'] if !chars::lws(*first) => {
            line.len() - 8
        }
        _ => last_space_before_version(line)?,
    };
    let first_sp = chars::find_byte(b' ', line).ok_or(ParseError::BadRequestLine)?;
    if first_sp == last_sp {
        return Err(ParseError::BadRequestLine);
    }
    let method_s = &line[..first_sp];
    let uri = &line[first_sp + 1..last_sp];
    let version = &line[last_sp + 1..];
    let method = token_method(method_s, ParseError::BadRequestLine)?;
    check_version(version)?;
    if !URIS {
        return match uri {
            [] => Err(ParseError::BadRequestLine),
            _ => Ok(StartLine::Request {
                method,
                uri: Uri::unread(uri),
            }),
        };
    }
    // The URI's scans run in the line before it (see `Uri::parse_in`).
    let ctx = &line[..last_sp];
    if uri.is_empty() || chars::run_of_from(Class::RequestUri, ctx, first_sp + 1) < last_sp {
        return Err(ParseError::BadRequestLine);
    }
    let uri = Uri::parse_in(ctx, first_sp + 1, Part::RequestUri)?;
    // RFC 3261 §19.1.1: headers are not allowed in a Request-URI.
    if !uri.headers.is_empty() {
        return Err(ParseError::BadUri(Part::RequestUri));
    }
    Ok(StartLine::Request { method, uri })
}

/// Where the space before a request line's version is, the line's LWS trimmed for the
/// search; `NotSip` when what follows the last space is no SIP version.
fn last_space_before_version(line: &[u8]) -> Result<usize, ParseError> {
    let trimmed = chars::trim_lws(line);
    let last_sp = trimmed
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(ParseError::NotSip)?;
    if !is_sip_version(&trimmed[last_sp + 1..]) {
        return Err(ParseError::NotSip);
    }
    if trimmed.len() == line.len() {
        return Ok(last_sp);
    }
    line.iter()
        .rposition(|&b| b == b' ')
        .ok_or(ParseError::BadRequestLine)
}

/// `s` as a method, if it is a token. A known method is one by construction: only others are
/// tested.
#[inline(always)]
fn token_method(s: &[u8], bad: ParseError) -> Result<Method<'_>, ParseError> {
    let m = Method::from_bytes(s);
    if matches!(m, Method::Other(_)) && !chars::is_token(s) {
        return Err(bad);
    }
    Ok(m)
}

#[inline(always)]
fn parse_cseq(v: &[u8]) -> Result<CSeq<'_>, ParseError> {
    // CSeq = 1*DIGIT LWS Method
    let mut i = 0;
    while i < v.len() && v[i].is_ascii_digit() {
        i += 1;
    }
    let seq = chars::digits(&v[..i]).ok_or(ParseError::BadCSeq)?;
    if seq >= 1 << 31 {
        return Err(ParseError::BadCSeq);
    }
    let j = chars::skip_lws(v, i);
    if j == i {
        return Err(ParseError::BadCSeq);
    }
    let m = &v[j..];
    let method = token_method(m, ParseError::BadCSeq)?;
    Ok(CSeq {
        seq: seq as u32,
        method,
    })
}

/// name-addr / addr-spec followed by `;params`, for From and To.
pub fn parse_name_addr(v: &[u8], part: Part) -> Result<NameAddr<'_>, ParseError> {
    name_addr::<true>(v, part)
}

/// [`parse_name_addr`], reading the URI or keeping it as written (`URIS`).
#[inline(always)]
fn name_addr<const URIS: bool>(v: &[u8], part: Part) -> Result<NameAddr<'_>, ParseError> {
    if let Some((display, (uri_ctx, uri_start), tag)) = common_name_addr(v) {
        return Ok(NameAddr {
            display,
            uri: name_addr_uri::<URIS>(uri_ctx, uri_start, part)?,
            tag,
        });
    }
    name_addr_general::<URIS>(v, part)
}

/// The shapes nearly every From and To take, `["display" [SP]]<uri>[;tag=value]`, as
/// (display, (the value up to the URI's end, where the URI starts), tag); `None` for the
/// rest. The general reader answers the same on every value this reads (tested; the parse
/// fuzz target asserts it) and alone tells the errors apart; its searches and trims cost
/// more than the URI did.
#[inline(always)]
fn common_name_addr(v: &[u8]) -> Option<Shape<'_>> {
    let (display, lt) = match v.first()? {
        b'<' => (None, 0),
        b'"' => {
            let q = chars::run_of_from(Class::QdText, v, 1);
            if v.get(q) != Some(&b'"') {
                return None;
            }
            let lt = if v.get(q + 1) == Some(&b' ') {
                q + 2
            } else {
                q + 1
            };
            if v.get(lt) != Some(&b'<') {
                return None;
            }
            (Some(&v[..=q]), lt)
        }
        _ => return None,
    };
    let gt = lt + 1 + chars::find_byte(b'>', &v[lt + 1..])?;
    let uri = &v[lt + 1..gt];
    let tag = match &v[gt + 1..] {
        [] => None,
        [b';', t, a, g, b'=', value @ ..]
            if [t | 0x20, a | 0x20, g | 0x20] == *b"tag"
                && !value.is_empty()
                && chars::run_of(Class::ParamValue, value) == value.len() =>
        {
            Some(value)
        }
        _ => return None,
    };
    (!uri.is_empty()).then_some((display, (&v[..gt], lt + 1), tag))
}

/// A name-addr as (display, (URI's context, where the URI starts in it), tag).
type Shape<'a> = (Option<&'a [u8]>, (&'a [u8], usize), Option<&'a [u8]>);

/// A name-addr's URI, `ctx[start..]`; an error names the name-addr when the URI has LWS in
/// it.
#[inline(always)]
fn name_addr_uri<const URIS: bool>(
    ctx: &[u8],
    start: usize,
    part: Part,
) -> Result<Uri<'_>, ParseError> {
    let uri_raw = &ctx[start..];
    if !URIS {
        return Ok(Uri::unread(uri_raw));
    }
    Uri::parse_in(ctx, start, part).map_err(|e| {
        // No URI with LWS in it parses; that the error names the name-addr is tested for
        // only then (the check used to come first, and errors must stay as they were).
        if chars::run_of(Class::NotLws, uri_raw) < uri_raw.len() {
            ParseError::BadNameAddr(part)
        } else {
            e
        }
    })
}

/// [`parse_name_addr`]'s general reader: every value, and the error of one that does not
/// read (public for the fuzz target that compares the two).
#[doc(hidden)]
pub fn parse_name_addr_general(v: &[u8], part: Part) -> Result<NameAddr<'_>, ParseError> {
    name_addr_general::<true>(v, part)
}

/// [`parse_name_addr_general`], reading the URI or keeping it as written (`URIS`).
fn name_addr_general<const URIS: bool>(v: &[u8], part: Part) -> Result<NameAddr<'_>, ParseError> {
    let bad = ParseError::BadNameAddr(part);
    let mut i = chars::skip_lws(v, 0);
    let mut display = None;
    let uri_raw;
    let after;
    if v.get(i) == Some(&b'"') {
        // quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE
        let q0 = i;
        i += 1;
        loop {
            i = chars::run_of_from(Class::QdText, v, i);
            match v.get(i) {
                None => return Err(bad),
                Some(b'"') => break,
                Some(b'\\') => {
                    match v.get(i + 1) {
                        Some(b'\r' | b'\n') | None => return Err(bad),
                        Some(_) => i += 2,
                    };
                }
                Some(_) => i += 1,
            }
        }
        display = Some(&v[q0..=i]);
        i = chars::skip_lws(v, i + 1);
        if v.get(i) != Some(&b'<') {
            return Err(bad);
        }
        let (u, a) = angle(v, i, part)?;
        uri_raw = u;
        after = a;
    } else if let Some(lt) = chars::find_byte(b'<', v) {
        // *(token LWS) before '<'
        let d = chars::trim_lws(&v[i..lt]);
        if !d.is_empty() {
            if !d.iter().all(|&b| chars::token(b) || chars::lws(b)) {
                return Err(bad);
            }
            display = Some(d);
        }
        let (u, a) = angle(v, lt, part)?;
        uri_raw = u;
        after = a;
    } else {
        // addr-spec: ends at the first ';' (all params are header params) or LWS.
        let rest = &v[i..];
        let end = rest
            .iter()
            .position(|&b| b == b';' || chars::lws(b))
            .unwrap_or(rest.len());
        uri_raw = &rest[..end];
        if uri_raw.contains(&b',') || uri_raw.contains(&b'?') {
            return Err(bad);
        }
        after = i + end;
    }
    let uri = name_addr_uri::<URIS>(uri_raw, 0, part)?;
    let params = chars::trim_lws(&v[after..]);
    let tag = parse_params(params, bad)?;
    Ok(NameAddr { display, uri, tag })
}

/// `<uri>` starting at `lt`: the URI and the index after '>'. No LWS is allowed inside (RFC
/// 4475 badaspec): no URI with LWS parses, and the caller names the error then.
fn angle(v: &[u8], lt: usize, part: Part) -> Result<(&[u8], usize), ParseError> {
    let gt = chars::find_byte(b'>', &v[lt..]).ok_or(ParseError::BadNameAddr(part))? + lt;
    let u = &v[lt + 1..gt];
    if u.is_empty() {
        return Err(ParseError::BadNameAddr(part));
    }
    Ok((u, gt + 1))
}

/// `*( SEMI generic-param )`; returns the `tag` value. Anything else (a ',' and a second value) is an error.
fn parse_params(p: &[u8], bad: ParseError) -> Result<Option<&[u8]>, ParseError> {
    let mut tag = None;
    let mut i = 0;
    while i < p.len() {
        if p[i] != b';' {
            return Err(bad);
        }
        i = chars::skip_lws(p, i + 1);
        let ns = i;
        i += chars::token_run(&p[i..]);
        let name = &p[ns..i];
        if name.is_empty() {
            return Err(bad);
        }
        i = chars::skip_lws(p, i);
        let mut value: &[u8] = &[];
        if p.get(i) == Some(&b'=') {
            i = chars::skip_lws(p, i + 1);
            let vs = i;
            if p.get(i) == Some(&b'"') {
                i += 1;
                while i < p.len() && p[i] != b'"' {
                    i += if p[i] == b'\\' { 2 } else { 1 };
                }
                if i >= p.len() {
                    return Err(bad);
                }
                i += 1;
            } else {
                // token / host (IPv6 brackets and ':' included)
                i = chars::run_of_from(Class::ParamValue, p, i);
            }
            value = &p[vs..i];
            if value.is_empty() {
                return Err(bad);
            }
            i = chars::skip_lws(p, i);
        }
        if name.eq_ignore_ascii_case(b"tag") {
            if tag.is_some() || value.is_empty() {
                return Err(bad);
            }
            tag = Some(value);
        }
    }
    Ok(tag)
}

/// A `name=value` or `name="value"` parameter from a credentials header (for evidence only).
pub fn auth_param<'a>(v: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    auth_param_with(v, &memchr::memmem::Finder::new(name))
}

fn auth_param_with<'a>(v: &'a [u8], finder: &memchr::memmem::Finder) -> Option<&'a [u8]> {
    let name = finder.needle();
    // The value of the occurrence of `name` at `at`, when it is a parameter name there;
    // Err(()) when it is not. (An unterminated quoted value ends the search: None.)
    let param_at = |at: usize| -> Result<Option<&'a [u8]>, ()> {
        let before_ok = at == 0 || matches!(v[at - 1], b' ' | b',' | b'\t');
        let mut j = chars::skip_lws(v, at + name.len());
        if !before_ok || v.get(j) != Some(&b'=') {
            return Err(());
        }
        j = chars::skip_lws(v, j + 1);
        if v.get(j) == Some(&b'"') {
            return Ok(chars::find_byte(b'"', &v[j + 1..]).map(|e| &v[j + 1..j + 1 + e]));
        }
        let end = v[j..]
            .iter()
            .position(|&b| b == b',' || chars::lws(b))
            .map_or(v.len(), |e| e + j);
        Ok(Some(&v[j..end]))
    };
    // Most phones write the parameter first ("Digest username=..."). A scheme shorter than
    // the name cannot hold it, so that is the first occurrence the search would find too.
    let scheme = chars::token_run(v);
    let p = chars::skip_lws(v, scheme);
    if scheme < name.len()
        && p > scheme
        && matches!(v[p - 1], b' ' | b'\t')
        && v.len() > p + name.len()
        && &v[p..p + name.len()] == name
    {
        if let Ok(found) = param_at(p) {
            return found;
        }
    }
    let mut i = 0;
    while i + name.len() < v.len() {
        let at = finder.find(&v[i..])? + i;
        if let Ok(found) = param_at(at) {
            return found;
        }
        i = at + name.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_version_word_agrees_with_a_case_blind_comparison() {
        for a in 0..=255u8 {
            for rest in [*b"IP/", *b"ip/", *b"iP/", *b"IP\x0f", *b"IP\x2f"] {
                for v in [
                    [a, rest[0], rest[1], rest[2]],
                    [b'S', a, rest[1], rest[2]],
                    [b's', b'I', a, b'/'],
                    [b'S', b'i', b'P', a],
                ] {
                    assert_eq!(is_sip_version(&v), v.eq_ignore_ascii_case(b"SIP/"), "{v:?}");
                }
            }
        }
        assert!(!is_sip_version(b"SIP"));
    }

    /// The search without its fast path, as it was.
    fn auth_param_by_search<'a>(v: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        let finder = memchr::memmem::Finder::new(name);
        let mut i = 0;
        while i + name.len() < v.len() {
            let at = finder.find(&v[i..])? + i;
            let before_ok = at == 0 || matches!(v[at - 1], b' ' | b',' | b'\t');
            let mut j = chars::skip_lws(v, at + name.len());
            if before_ok && v.get(j) == Some(&b'=') {
                j = chars::skip_lws(v, j + 1);
                if v.get(j) == Some(&b'"') {
                    let end = memchr::memchr(b'"', &v[j + 1..])? + j + 1;
                    return Some(&v[j + 1..end]);
                }
                let end = v[j..]
                    .iter()
                    .position(|&b| b == b',' || chars::lws(b))
                    .map_or(v.len(), |e| e + j);
                return Some(&v[j..end]);
            }
            i = at + name.len();
        }
        None
    }

    #[test]
    fn auth_param_fast_path_agrees_with_the_search() {
        let base: &[&[u8]] = &[
            b"Digest username=\"1001\",realm=\"x\",nonce=\"n\"",
            b"Digest username=1001, realm=x",
            b"Digest realm=\"x\", username=\"1001\"",
            b"username username=\"a\"",
            b"Digest\r\n username=\"a\", username=\"b\"",
            b"Digest usernamex=\"a\", username=\"b\"",
            b"Digest username=\"unterminated, username=\"b\"",
            b"Digest  \t username = \"spaced\"",
            b"Digest username",
            b"xusername=a username=b",
            b"username=first",
            b"DIGEST username=\"1001\"",
            b"digest username=\"\", username=\"b\"",
            b"Digest username=\"1001",
            b"Digesx username=\"1001\"",
            b"Digest username=\"a\"",
        ];
        let pieces: &[&[u8]] = &[b" ", b"\t", b"\"", b",", b"=", b"username", b"u", b"\r\n "];
        let mut x: u32 = 9;
        for v in base {
            assert_eq!(
                auth_param(v, b"username"),
                auth_param_by_search(v, b"username")
            );
            assert_eq!(username_of(v), auth_param_by_search(v, b"username"));
            for _ in 0..3_000 {
                let mut m = v.to_vec();
                for _ in 0..2 {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let at = (x >> 8) as usize % (m.len() + 1);
                    let piece = pieces[(x >> 20) as usize % pieces.len()];
                    if x & 1 == 0 {
                        m.splice(at..at, piece.iter().copied());
                    } else {
                        m.drain(at..(at + 3).min(m.len()));
                    }
                }
                let want = auth_param_by_search(&m, b"username");
                let shown = String::from_utf8_lossy(&m);
                assert_eq!(auth_param(&m, b"username"), want, "{shown}");
                assert_eq!(username_of(&m), want, "{shown}");
            }
        }
    }

    /// The word-compare fast path answers only for a known name followed at once by its
    /// colon, and then as the general path does: every known name (and every compact form) in
    /// several cases, with each of a line's first 16 bytes bent to every value.
    /// Oracle: the common shapes' reader agrees with the general one wherever it answers,
    /// and answers the usual From and To.
    #[test]
    fn common_name_addr_agrees_with_the_general_reader() {
        let displays = [
            "",
            "\"Alice\"",
            "\"a\\\"b\"",
            "Bob ",
            "\"x\"",
            "\"\"",
            "\"open",
        ];
        let gaps = ["", " ", "  ", "\t", "\r\n "];
        let uris = [
            "sip:1001@sip.example.com",
            "sip:a@b>",
            "",
            "sip:x y",
            "tel:+1",
            "sip:[::1]",
        ];
        let params = [
            "",
            ";tag=9c1e5a3b",
            ";TAG=x",
            ";tag=",
            ";tag=\"q\"",
            ";tag=a;x=y",
            " ;tag=a",
            ";tag=a ",
            ";tag=[::1]:5",
            ";lr",
            ";tag=a;tag=b",
            ";tag=a,b",
            ">",
        ];
        let mut x: u32 = 3;
        let mut next = |n: usize| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 8) as usize % n
        };
        let mut common = 0;
        for round in 0..60_000 {
            let mut v = String::new();
            v.push_str(displays[next(displays.len())]);
            v.push_str(gaps[next(gaps.len())]);
            let angle = next(8) != 0;
            if angle {
                v.push('<');
            }
            v.push_str(uris[next(uris.len())]);
            if angle {
                v.push('>');
            }
            v.push_str(params[next(params.len())]);
            let mut b = v.into_bytes();
            if round % 3 == 0 && !b.is_empty() {
                let k = next(b.len());
                b[k] = [b'"', b'\\', b'<', b'>', b';', b' ', 0, 0xff, b'=', b't'][next(10)];
            }
            for part in [Part::From, Part::To] {
                let general = parse_name_addr_general(&b, part);
                if common_name_addr(&b).is_some() {
                    common += 1;
                }
                assert_eq!(
                    parse_name_addr(&b, part),
                    general,
                    "{}",
                    String::from_utf8_lossy(&b)
                );
            }
        }
        assert!(common > 2_000, "only {common} read as a common shape");
        for usual in [
            "\"Reception\" <sip:1001@sip.example.com>;tag=9c1e5a3b",
            "<sip:1001@sip.example.com>",
            "\"sipvicious\"<sip:100@1.1.1.1>;tag=6434396633",
        ] {
            assert!(common_name_addr(usual.as_bytes()).is_some(), "{usual}");
        }
    }

    #[test]
    fn name_and_colon_agrees_with_the_general_path() {
        let word = |l: &[u8], k: usize| u64::from_le_bytes(l[k..k + 8].try_into().unwrap());
        let compact = (0..=255u8)
            .filter(|&b| chars::token(b))
            .map(|b| (b as char).to_string());
        for k in KNOWN.iter().map(|k| k.to_string()).chain(compact) {
            for case in [k.clone(), k.to_uppercase(), k.replace('e', "E")] {
                let line = format!("{case}: value; x=1\r\nNext: y\r\n");
                let line = line.as_bytes();
                let dispatched = ["v", "f", "t", "c", "i", "l", "m", "s", "k"];
                if k.len() > 1 || dispatched.contains(&k.to_lowercase().as_str()) {
                    // Every listed name, and the usual compact forms.
                    assert_eq!(
                        name_and_colon(word(line, 0), word(line, 8), || word(line, 16)),
                        Some((k.len(), read_by_parse(case.as_bytes()))),
                        "{case}"
                    );
                }
                for at in 0..24 {
                    for b in 0..=255u8 {
                        let mut m = line.to_vec();
                        m[at] = b;
                        let w2 = || word(&m, 16);
                        let Some((len, read)) = name_and_colon(word(&m, 0), word(&m, 8), w2) else {
                            continue;
                        };
                        assert_eq!(m[len], b':', "{m:?}");
                        assert!(chars::is_token(&m[..len]), "{m:?}");
                        assert_eq!(read, read_by_parse(&m[..len]), "{m:?}");
                    }
                }
            }
        }
    }

    const KNOWN: [&str; 65] = [
        "via",
        "from",
        "to",
        "timestamp",
        "call-id",
        "cseq",
        "contact",
        "content-length",
        "content-type",
        "call-info",
        "content-disposition",
        "content-encoding",
        "content-language",
        "identity",
        "in-reply-to",
        "max-forwards",
        "min-se",
        "min-expires",
        "mime-version",
        "user-agent",
        "unsupported",
        "allow",
        "authorization",
        "allow-events",
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "authentication-info",
        "expires",
        "event",
        "error-info",
        "supported",
        "server",
        "session-expires",
        "subject",
        "subscription-state",
        "route",
        "record-route",
        "require",
        "reason",
        "refer-to",
        "replaces",
        "referred-by",
        "remote-party-id",
        "rack",
        "rseq",
        "retry-after",
        "recv-info",
        "privacy",
        "proxy-require",
        "p-asserted-identity",
        "proxy-authorization",
        "proxy-authenticate",
        "p-preferred-identity",
        "p-early-media",
        "path",
        "priority",
        "www-authenticate",
        "warning",
        "date",
        "diversion",
        "history-info",
        "organization",
    ];

    #[test]
    fn read_by_parse_agrees_with_header_names() {
        use HeaderName::*;
        let ours = [
            From,
            To,
            CallId,
            CSeq,
            ContentLength,
            UserAgent,
            Authorization,
            ProxyAuthorization,
        ];
        let mut names: Vec<Vec<u8>> = [
            "to",
            "TO",
            "tO",
            "tx",
            "from",
            "FROM",
            "cseq",
            "CSeq",
            "csex",
            "fRom",
            "frox",
            "call-id",
            "Call-ID",
            "contact",
            "expires",
            "user-agent",
            "User-Agent",
            "authorization",
            "content-length",
            "Content-Length",
            "proxy-authorization",
            "Proxy-Authorization",
            "request-disposition",
            "via",
            "max-forwards",
            "allow",
            "accept-contact",
            "user_agent",
            "call_id",
        ]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
        // Every one-byte token too (the compact forms and all the others).
        names.extend((0u8..=255).filter(|&b| chars::token(b)).map(|b| vec![b]));
        for n in &names {
            let want = Some(HeaderName::from_bytes(n)).filter(|k| ours.contains(k));
            assert_eq!(read_by_parse(n), want, "{}", String::from_utf8_lossy(n));
        }
    }
}
