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
pub fn host(b: u8) -> bool {
    HOST[b as usize]
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
    let mut i = 0;
    while i < s.len() && token(s[i]) {
        i += 1;
    }
    i
}

/// The first `needle` in `hay`. SIP lines are short (tens of bytes), where memchr's dispatch
/// and setup cost more than the search: an inlined SSE2 loop (baseline on x86_64) wins there.
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
        }
        hay[i..].iter().position(|&b| b == needle).map(|o| i + o)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr(needle, hay)
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

    #[test]
    fn find_byte_agrees_with_memchr() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for start in 0..hay.len() {
            for needle in [0u8, 10, 37, 58, 250, 255] {
                assert_eq!(
                    super::find_byte(needle, &hay[start..]),
                    memchr::memchr(needle, &hay[start..])
                );
            }
        }
    }
}
