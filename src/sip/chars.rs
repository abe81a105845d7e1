//! RFC 3261 §25.1 character classes as 256-entry tables (one load per byte).

macro_rules! table {
    ($f:ident) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $f(i as u8);
            i += 1;
        }
        t
    }};
}

// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
const fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

// hostname = *( domainlabel "." ) toplabel [ "." ]; domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
// '_' is accepted too: it is harmless (no reading of it differs) and seen in the wild.
const fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

// Bytes that may appear inside a URI's user, parameter or header parts: anything printable
// except the delimiters that would end the URI in a header ("<>", quote, SP) and a raw '@'.
const fn is_uri_part_byte(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'<' | b'>' | b'"' | b'@')
}

static TOKEN: [bool; 256] = table!(is_token_byte);
static HOST: [bool; 256] = table!(is_host_byte);
static URI_PART: [bool; 256] = table!(is_uri_part_byte);

#[inline]
pub fn token(b: u8) -> bool {
    TOKEN[b as usize]
}
#[inline]
pub fn uri_part(b: u8) -> bool {
    URI_PART[b as usize]
}
#[inline]
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && token_run(s) == s.len()
}

/// How many bytes at the start of `s` are token characters.
#[inline]
pub fn token_run(s: &[u8]) -> usize {
    run_of(Class::Token, s)
}

// Bytes of a Call-ID ("word"): no SP, no control byte, no DEL.
const fn is_word_byte(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}
// Bytes a Request-URI may hold: a word byte and not '<' or '>'.
const fn is_request_uri_byte(b: u8) -> bool {
    is_word_byte(b) && b != b'<' && b != b'>'
}
const fn is_not_lws_byte(b: u8) -> bool {
    !matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}
static WORD: [bool; 256] = table!(is_word_byte);
static REQUEST_URI: [bool; 256] = table!(is_request_uri_byte);
static NOT_LWS: [bool; 256] = table!(is_not_lws_byte);
// A header parameter's unquoted value: a token, or a host with IPv6 brackets and ':'.
const fn is_param_value_byte(b: u8) -> bool {
    is_token_byte(b) || matches!(b, b'[' | b']' | b':')
}
static PARAM_VALUE: [bool; 256] = table!(is_param_value_byte);
const fn is_qdtext_byte(b: u8) -> bool {
    b != b'"' && b != b'\\'
}
static QDTEXT: [bool; 256] = table!(is_qdtext_byte);

/// A byte class [`run_of`] tests sixteen bytes at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Token,
    UriPart,
    Host,
    /// Call-ID bytes: anything but SP, controls and DEL.
    Word,
    /// Request-URI bytes: a word byte other than '<' and '>'.
    RequestUri,
    /// Anything but SP, HT, CR, LF.
    NotLws,
    /// Inside a quoted string: anything but '"' and '\\'.
    QdText,
    /// A header parameter's unquoted value: token bytes, '[', ']' and ':'.
    ParamValue,
}

impl Class {
    #[inline(always)]
    fn table(self) -> &'static [bool; 256] {
        match self {
            Class::Token => &TOKEN,
            Class::UriPart => &URI_PART,
            Class::Host => &HOST,
            Class::Word => &WORD,
            Class::RequestUri => &REQUEST_URI,
            Class::NotLws => &NOT_LWS,
            Class::QdText => &QDTEXT,
            Class::ParamValue => &PARAM_VALUE,
        }
    }
}

/// How many bytes at the start of `s` are in `class`. Header names, URIs and Call-IDs are
/// tens of bytes: a table load a byte was the parser's largest cost. SSE2 (baseline on
/// x86_64) tests sixteen at once; a short tail is re-tested in an overlapping block.
#[inline(always)]
pub fn run_of(class: Class, s: &[u8]) -> usize {
    run_of_from(class, s, 0)
}

/// Where the run of `class` bytes starting at `from` ends in `s` (`s.len()` if it runs to the
/// end). The bytes before `from` are not tested but may be loaded: a short run at the end of a
/// longer slice (a host at the end of its URI) still takes one block.
#[inline(always)]
pub fn run_of_from(class: Class, s: &[u8], from: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if s.len() >= 16 {
        // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside `s`.
        unsafe {
            let mut i = from;
            while i + 16 <= s.len() {
                let m = sse2::outside(class, s.as_ptr().add(i));
                if m != 0 {
                    return i + m.trailing_zeros() as usize;
                }
                i += 16;
            }
            if i < s.len() {
                let off = s.len() - 16;
                let m = sse2::outside(class, s.as_ptr().add(off)) >> (i - off);
                if m != 0 {
                    return i + m.trailing_zeros() as usize;
                }
            }
            return s.len();
        }
    }
    let t = class.table();
    let mut i = from;
    while i < s.len() && t[s[i] as usize] {
        i += 1;
    }
    i
}

/// Of `s[from..end]`: whether two dots stand together, and whether every byte is a digit or
/// a dot (an IPv4 address or nothing). Host names are mostly under 16 bytes, at the end of a
/// longer URI: one block ending at `end` answers both.
#[inline(always)]
pub fn dots_and_digits(s: &[u8], from: usize, end: usize) -> (bool, bool) {
    #[cfg(target_arch = "x86_64")]
    if end >= 16 && end - from <= 16 && end <= s.len() {
        // SAFETY: SSE2 is part of x86_64; the load reads s[end - 16..end].
        unsafe {
            use std::arch::x86_64::*;
            let off = end - 16;
            let v = _mm_loadu_si128(s.as_ptr().add(off).cast::<__m128i>());
            let range = (0xffff_u32 << (from - off)) & 0xffff;
            let dot = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8))) as u32;
            let digit = _mm_movemask_epi8(_mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(b'0' as i8 - 1)),
                _mm_cmplt_epi8(v, _mm_set1_epi8(b'9' as i8 + 1)),
            )) as u32;
            let dot = dot & range;
            return (dot & (dot >> 1) != 0, (dot | digit) & range == range);
        }
    }
    let name = &s[from..end];
    (
        name.windows(2).any(|w| w == b".."),
        name.iter().all(|&b| b.is_ascii_digit() || b == b'.'),
    )
}

/// Where the dots of `s[from..end]` are (bit k: `s[from + k]`), for at most 16 bytes; 0 past
/// that (no address is so long). As [`dots_and_digits`], one block ending at `end`.
#[inline(always)]
pub fn dot_bits(s: &[u8], from: usize, end: usize) -> u32 {
    if end - from > 16 {
        return 0;
    }
    #[cfg(target_arch = "x86_64")]
    if end >= 16 && end <= s.len() {
        // SAFETY: SSE2 is part of x86_64; the load reads s[end - 16..end].
        unsafe {
            use std::arch::x86_64::*;
            let off = end - 16;
            let v = _mm_loadu_si128(s.as_ptr().add(off).cast::<__m128i>());
            let dot = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8))) as u32;
            return dot >> (from - off);
        }
    }
    s[from..end]
        .iter()
        .enumerate()
        .fold(0, |m, (k, &b)| m | u32::from(b == b'.') << k)
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::Class;
    use std::arch::x86_64::*;

    /// Bit k set when byte k of the 16 at `p` is not in `class`. Signed compares against
    /// ASCII bounds put every byte >= 0x80 outside the ranges, as the tables do.
    #[inline(always)]
    pub(super) unsafe fn outside(class: Class, p: *const u8) -> u32 {
        let v = _mm_loadu_si128(p.cast::<__m128i>());
        let c = |b: u8| _mm_set1_epi8(b as i8);
        let eq = |b: u8| _mm_cmpeq_epi8(v, c(b));
        let or = |a, b| _mm_or_si128(a, b);
        let token = || {
            or(
                or(alnum(v), or(within(v, b'*', b'+'), within(v, b'-', b'.'))),
                or(
                    or(eq(b'!'), eq(b'%')),
                    or(or(eq(b'\''), eq(b'_')), or(eq(b'`'), eq(b'~'))),
                ),
            )
        };
        // Bytes 0x00-0x20 (unsigned): min(v, 0x20) == v.
        let ctl_or_space = || _mm_cmpeq_epi8(_mm_min_epu8(v, c(0x20)), v);
        let inside = match class {
            Class::Token => token(),
            Class::Host => host(v),
            Class::ParamValue => or(token(), or(eq(b':'), or(eq(b'['), eq(b']')))),
            Class::UriPart => uri_part(v),
            Class::Word | Class::RequestUri | Class::NotLws | Class::QdText => {
                let out = match class {
                    Class::Word => or(ctl_or_space(), eq(0x7f)),
                    Class::RequestUri => or(or(ctl_or_space(), eq(0x7f)), or(eq(b'<'), eq(b'>'))),
                    Class::QdText => or(eq(b'"'), eq(b'\\')),
                    _ => or(or(eq(b' '), eq(b'\t')), or(eq(b'\r'), eq(b'\n'))),
                };
                return _mm_movemask_epi8(out) as u32;
            }
        };
        (_mm_movemask_epi8(inside) as u32) ^ 0xffff
    }

    /// lo <= byte <= hi, for ASCII bounds (signed compares: bytes >= 0x80 are outside).
    #[inline(always)]
    unsafe fn within(v: __m128i, lo: u8, hi: u8) -> __m128i {
        _mm_and_si128(
            _mm_cmpgt_epi8(v, _mm_set1_epi8((lo - 1) as i8)),
            _mm_cmplt_epi8(v, _mm_set1_epi8((hi + 1) as i8)),
        )
    }

    /// Host bytes of `v` ([`Class::Host`]), for `outside` and `classes`.
    #[inline(always)]
    unsafe fn host(v: __m128i) -> __m128i {
        let eq = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
        _mm_or_si128(
            alnum(v),
            _mm_or_si128(eq(b'-'), _mm_or_si128(eq(b'.'), eq(b'_'))),
        )
    }

    /// Letters and digits of `v`.
    #[inline(always)]
    unsafe fn alnum(v: __m128i) -> __m128i {
        // Setting 0x20 folds A-Z onto a-z and moves no other byte into a-z.
        let alpha = within(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
        _mm_or_si128(alpha, within(v, b'0', b'9'))
    }

    /// URI-part bytes of `v` ([`Class::UriPart`]), for `outside` and `classes`.
    #[inline(always)]
    unsafe fn uri_part(v: __m128i) -> __m128i {
        let eq = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
        let delim = _mm_or_si128(
            _mm_or_si128(eq(b'<'), eq(b'>')),
            _mm_or_si128(eq(b'"'), eq(b'@')),
        );
        _mm_andnot_si128(delim, within(v, 0x21, 0x7e))
    }

    /// Of the 16 bytes `v`, bit k set when byte k is: a URI-part byte, a host byte, a dot,
    /// a digit.
    #[inline(always)]
    pub(super) unsafe fn classes(v: __m128i) -> [u32; 4] {
        let mask = |x| _mm_movemask_epi8(x) as u32;
        let dot = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'.' as i8));
        [
            mask(uri_part(v)),
            mask(host(v)),
            mask(dot),
            mask(within(v, b'0', b'9')),
        ]
    }

    /// `s` (4 to 15 bytes) as one vector, its first and last 8 (or 4) bytes side by side;
    /// `f`'s bit mask over that vector is mapped back to positions in `s`. (Class runs do
    /// not use it: inlined at every call, it cost more than the short byte loops it saved.)
    #[inline(always)]
    pub(super) unsafe fn short_mask(s: &[u8], f: impl Fn(__m128i) -> u32) -> u32 {
        let n = s.len();
        debug_assert!((4..16).contains(&n));
        if n >= 8 {
            let a = u64::from_le_bytes(s[..8].try_into().unwrap_or_default());
            let b = u64::from_le_bytes(s[n - 8..].try_into().unwrap_or_default());
            let m = f(_mm_set_epi64x(b as i64, a as i64));
            (m & 0xff) | ((m >> 8) & 0xff) << (n - 8)
        } else {
            let a = u32::from_le_bytes(s[..4].try_into().unwrap_or_default());
            let b = u32::from_le_bytes(s[n - 4..].try_into().unwrap_or_default());
            let m = f(_mm_set_epi32(0, 0, b as i32, a as i32));
            (m & 0xf) | ((m >> 4) & 0xf) << (n - 4)
        }
    }
}

/// Bit masks over 8 to 32 bytes (bit k: byte k), for reading a short URI without a scan a
/// part: where its bytes are URI-part bytes ([`Class::UriPart`]), host bytes
/// ([`Class::Host`]), dots and digits. Loads stay inside the bytes: two blocks that overlap
/// (or, under 16 bytes, their first and last 8 side by side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortMasks {
    pub part: u32,
    pub host: u32,
    pub dot: u32,
    pub digit: u32,
}

/// [`ShortMasks`] of `s`; `None` outside 8 to 32 bytes or off x86_64 (the caller reads it
/// part by part then).
#[inline(always)]
pub fn short_masks(s: &[u8]) -> Option<ShortMasks> {
    #[cfg(target_arch = "x86_64")]
    {
        let n = s.len();
        if !(8..=32).contains(&n) {
            return None;
        }
        // SAFETY: SSE2 is part of x86_64; every load reads bytes inside `s`.
        unsafe {
            use std::arch::x86_64::*;
            let one = |v: __m128i| sse2::classes(v);
            let m = if n >= 16 {
                let a = one(_mm_loadu_si128(s.as_ptr().cast::<__m128i>()));
                let b = one(_mm_loadu_si128(s.as_ptr().add(n - 16).cast::<__m128i>()));
                let join = |x: u32, y: u32| x | y << (n - 16);
                [
                    join(a[0], b[0]),
                    join(a[1], b[1]),
                    join(a[2], b[2]),
                    join(a[3], b[3]),
                ]
            } else {
                let lo = u64::from_le_bytes(s[..8].try_into().unwrap_or_default());
                let hi = u64::from_le_bytes(s[n - 8..].try_into().unwrap_or_default());
                let m = one(_mm_set_epi64x(hi as i64, lo as i64));
                m.map(|x| (x & 0xff) | ((x >> 8) & 0xff) << (n - 8))
            };
            Some(ShortMasks {
                part: m[0],
                host: m[1],
                dot: m[2],
                digit: m[3],
            })
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = s;
        None
    }
}

/// The first `needle` in `hay`. SIP lines are short (tens of bytes), where memchr's dispatch
/// and setup cost more than the search: an inlined SSE2 loop (baseline on x86_64) wins there.
/// A tail is tested in the block that ends the haystack, a haystack of 4 to 15 bytes in one
/// vector (`sse2::short_mask`); a byte loop only under 4.
#[inline]
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let mut i = 0;
        // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside `hay`.
        unsafe {
            let n = _mm_set1_epi8(needle as i8);
            while i + 16 <= hay.len() {
                let v = _mm_loadu_si128(hay.as_ptr().add(i).cast::<__m128i>());
                let m = _mm_movemask_epi8(_mm_cmpeq_epi8(v, n));
                if m != 0 {
                    return Some(i + m.trailing_zeros() as usize);
                }
                i += 16;
            }
            if i == hay.len() {
                return None;
            }
            let eq = |v| _mm_movemask_epi8(_mm_cmpeq_epi8(v, n)) as u32;
            if i > 0 {
                // The tail in the block that ends the haystack.
                let off = hay.len() - 16;
                let m = eq(_mm_loadu_si128(hay.as_ptr().add(off).cast::<__m128i>())) >> (i - off);
                return (m != 0).then(|| i + m.trailing_zeros() as usize);
            }
            if hay.len() >= 4 {
                let m = sse2::short_mask(hay, eq);
                return (m != 0).then(|| m.trailing_zeros() as usize);
            }
        }
        hay[i..].iter().position(|&b| b == needle).map(|o| i + o)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr(needle, hay)
    }
}

/// Line ends ('\n') of a buffer, 64 bytes at a time: a header block is walked line by line,
/// and finding each line's end with a search of its own cost a setup and a partial block a
/// line. The window holds one bit a byte for 64 bytes from `base`; a line end within it costs
/// a shift and a trailing-zero count. (Colons too were tried: the second mask cost more than
/// the short colon searches it saved.)
#[derive(Debug, Clone, Copy)]
pub struct LineEnds {
    base: usize,
    bits: u64,
}

impl LineEnds {
    /// The window over `buf` from its start.
    #[inline]
    pub fn new(buf: &[u8]) -> Self {
        LineEnds {
            base: 0,
            bits: newline_bits(buf, 0),
        }
    }

    /// The first '\n' at or after `from` in `buf` (the buffer the window was made over).
    #[inline(always)]
    pub fn next(&mut self, buf: &[u8], mut from: usize) -> Option<usize> {
        loop {
            let rel = from.wrapping_sub(self.base);
            if rel < 64 {
                let m = self.bits & (u64::MAX << rel);
                if m != 0 {
                    return Some(self.base + m.trailing_zeros() as usize);
                }
                from = self.base + 64;
            }
            if from >= buf.len() {
                return None;
            }
            self.base = from;
            self.bits = newline_bits(buf, from);
        }
    }
}

/// Bit k set when `buf[from + k]` is '\n', for k < 64 and inside `buf`.
#[inline]
fn newline_bits(buf: &[u8], from: usize) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; `p` points at 64 readable bytes.
        let bits64 = |p: *const u8| unsafe {
            let nl = _mm_set1_epi8(b'\n' as i8);
            let m = |k: usize| {
                let v = _mm_loadu_si128(p.add(16 * k).cast::<__m128i>());
                u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)) as u16)
            };
            m(0) | m(1) << 16 | m(2) << 32 | m(3) << 48
        };
        if from >= buf.len() {
            return 0;
        }
        if buf.len() - from >= 64 {
            return bits64(buf[from..from + 64].as_ptr());
        }
        if buf.len() >= 64 {
            // The last 64 bytes, shifted so that bit 0 is `from`.
            return bits64(buf[buf.len() - 64..].as_ptr()) >> (from - (buf.len() - 64));
        }
        let mut pad = [0u8; 64];
        pad[..buf.len() - from].copy_from_slice(&buf[from..]);
        bits64(pad.as_ptr())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        buf.get(from..)
            .unwrap_or_default()
            .iter()
            .take(64)
            .enumerate()
            .fold(0, |m, (k, &b)| m | u64::from(b == b'\n') << k)
    }
}

/// LWS as it appears inside a header value after line folding: SP, HT, and the CR/LF of a fold.
#[inline]
pub fn lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub fn trim_lws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if lws(*first) {
            s = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if lws(*last) {
            s = rest
        } else {
            break;
        }
    }
    s
}

pub fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && lws(s[i]) {
        i += 1;
    }
    i
}

/// Parses 1*DIGIT into a u64, refusing overflow and empty input.
pub fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_run_agrees_with_a_scan() {
        let s = b"Content-Length-And-More:x Via%abc~'`+_*!.- y";
        for start in 0..s.len() {
            for end in start..=s.len() {
                let t = &s[start..end];
                let want = t.iter().position(|&b| !super::token(b)).unwrap_or(t.len());
                assert_eq!(super::token_run(t), want);
            }
        }
    }

    /// The sixteen-at-once test agrees with the tables for every byte, at every position of
    /// a block and of the overlapping tail.
    #[test]
    fn run_of_agrees_with_the_tables() {
        use super::Class::*;
        for class in [
            Token, UriPart, Host, Word, RequestUri, NotLws, QdText, ParamValue,
        ] {
            let t = class.table();
            let good = (0..=255u8).find(|&b| t[b as usize]).unwrap();
            for len in 0..40 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut s = vec![good; len];
                        s[at] = b;
                        let want = s.iter().position(|&x| !t[x as usize]).unwrap_or(len);
                        assert_eq!(super::run_of(class, &s), want, "{class:?} {len} {at} {b}");
                        // Bytes before `from` are never tested, whatever they are.
                        for from in 0..=len {
                            let mut s = s.clone();
                            s[..from].fill(b'\0');
                            let want = (from..len).find(|&k| !t[s[k] as usize]).unwrap_or(len);
                            assert_eq!(super::run_of_from(class, &s, from), want);
                        }
                    }
                }
            }
        }
    }

    /// The short masks agree with the tables for every byte at every position of 8 to 32
    /// bytes (and there are none outside that length).
    #[test]
    fn short_masks_agree_with_the_tables() {
        for len in 0..40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    let Some(m) = super::short_masks(&s) else {
                        assert!(!(8..=32).contains(&len) || !cfg!(target_arch = "x86_64"));
                        continue;
                    };
                    let bits = |f: &dyn Fn(u8) -> bool| {
                        s.iter()
                            .enumerate()
                            .fold(0u32, |m, (k, &x)| m | u32::from(f(x)) << k)
                    };
                    let want = super::ShortMasks {
                        part: bits(&super::uri_part),
                        host: bits(&|x| super::HOST[x as usize]),
                        dot: bits(&|x| x == b'.'),
                        digit: bits(&|x| x.is_ascii_digit()),
                    };
                    assert_eq!(m, want, "{len} {at} {b}");
                }
            }
        }
    }

    /// Both block readers of a host name: `dots_and_digits` and `dot_bits`.
    #[test]
    fn dots_and_digits_agrees_with_a_scan() {
        let alphabet = b"..0123456789a-_X\xff";
        let mut x: u32 = 3;
        for _ in 0..200_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (x >> 8) as usize % 40;
            let s: Vec<u8> = (0..len)
                .map(|k| {
                    let y = x.wrapping_mul(k as u32 + 7).rotate_left(k as u32);
                    alphabet[(y >> 13) as usize % alphabet.len()]
                })
                .collect();
            let end = if len == 0 {
                0
            } else {
                (x >> 3) as usize % (len + 1)
            };
            let from = if end == 0 {
                0
            } else {
                (x >> 20) as usize % (end + 1)
            };
            let name = &s[from..end];
            let want = (
                name.windows(2).any(|w| w == b".."),
                name.iter().all(|&b| b.is_ascii_digit() || b == b'.'),
            );
            assert_eq!(
                super::dots_and_digits(&s, from, end),
                want,
                "{s:?} {from} {end}"
            );
            let dots = match name.len() {
                0..=16 => (0..name.len())
                    .filter(|&k| name[k] == b'.')
                    .map(|k| 1u32 << k)
                    .sum(),
                _ => 0,
            };
            assert_eq!(super::dot_bits(&s, from, end), dots, "{s:?} {from} {end}");
        }
    }

    /// Any walk forward (and back) over any buffer finds what memchr finds.
    #[test]
    fn line_ends_agree_with_memchr() {
        let mut x: u32 = 9;
        for len in 0..300usize {
            for density in [2u32, 9, 70] {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        match (x >> 16) % density {
                            0 => b'\n',
                            1 => b':',
                            _ => b'a',
                        }
                    })
                    .collect();
                let mut w = super::LineEnds::new(&buf);
                let mut from = 0;
                for _ in 0..len + 2 {
                    let want = buf
                        .get(from..)
                        .and_then(|t| memchr::memchr(b'\n', t))
                        .map(|o| from + o);
                    assert_eq!(w.next(&buf, from), want, "len {len} from {from}");
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    from = match (x >> 16) % 8 {
                        0 => from.saturating_sub((x >> 8) as usize % 70),
                        1 => from + (x >> 8) as usize % 130,
                        _ => want.map_or(len + 1, |p| p + 1),
                    };
                }
            }
        }
    }

    #[test]
    fn find_byte_agrees_with_memchr() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for start in 0..hay.len() {
            for end in start..(start + 40).min(hay.len()) {
                for needle in [0u8, 10, 37, 58, 250, 255] {
                    assert_eq!(
                        super::find_byte(needle, &hay[start..end]),
                        memchr::memchr(needle, &hay[start..end])
                    );
                }
            }
            for needle in [0u8, 10, 37, 58, 250, 255] {
                assert_eq!(
                    super::find_byte(needle, &hay[start..]),
                    memchr::memchr(needle, &hay[start..])
                );
            }
        }
    }
}
