//! SIP, SIPS, tel and other URIs (RFC 3261 §19.1, §25.1; RFC 3966), borrowed from the message.

use super::chars::{self, Class};
use super::error::{ParseError, Part};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other absoluteURI scheme: readable, but it has no host sipwall could check.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    Name(&'a [u8]),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host<'_> {
    /// True when this host is `domain` (ASCII case-insensitive; an IP never is).
    #[inline]
    pub fn is_domain(&self, domain: &[u8]) -> bool {
        matches!(self, Host::Name(n) if n.eq_ignore_ascii_case(domain))
    }
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(&String::from_utf8_lossy(n)),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub raw: &'a [u8],
    pub scheme: Scheme,
    /// userinfo without the '@' (user and optional ":password"); for tel, the number.
    pub user: Option<&'a [u8]>,
    pub host: Option<Host<'a>>,
    pub port: Option<u16>,
    /// ";name=value..." including the leading ';', or empty.
    pub params: &'a [u8],
    /// "?h=v&..." including the leading '?', or empty.
    pub headers: &'a [u8],
}

impl<'a> Uri<'a> {
    /// Parses one URI with nothing around it. `part` names the field for errors.
    pub fn parse(raw: &'a [u8], part: Part) -> Result<Uri<'a>, ParseError> {
        Uri::read::<false, true>(raw, 0, part)
    }

    /// A URI kept as written, not read: what [`crate::sip::parse_observed`] gives for the
    /// PBX's own messages, whose URIs nothing judges. Only `raw` says anything (scheme
    /// `Other`, no user or host); [`Uri::parse`] of it reads it when needed.
    #[inline]
    pub fn unread(raw: &'a [u8]) -> Uri<'a> {
        Uri {
            raw,
            scheme: Scheme::Other,
            user: None,
            host: None,
            port: None,
            params: &[],
            headers: &[],
        }
    }

    /// [`Uri::parse`] without its short-URI path (public for the fuzz target that compares
    /// the two).
    #[doc(hidden)]
    pub fn parse_general(raw: &'a [u8], part: Part) -> Result<Uri<'a>, ParseError> {
        Uri::read::<false, false>(raw, 0, part)
    }

    /// Parses the URI `ctx[start..]`: the same as [`Uri::parse`] of it (tested), but its
    /// scans may load the bytes before it. Most URIs are under 32 bytes and many under 16
    /// (`sip:100@1.1.1.1`), where a scan over the URI alone falls back to a byte loop; in
    /// the message around it, every scan takes one SIMD block.
    #[inline]
    pub fn parse_in(ctx: &'a [u8], start: usize, part: Part) -> Result<Uri<'a>, ParseError> {
        // A URI of a block or more scans alone (the same scans, with nothing to add).
        if ctx.len() - start >= 16 {
            Uri::read::<false, true>(&ctx[start..], 0, part)
        } else {
            Uri::read::<true, true>(ctx, start, part)
        }
    }

    /// [`Uri::parse_in`]; `IN_CONTEXT` false reads `ctx` whole (`start` is 0); `SHORT` tries
    /// [`Uri::read_short`] first. Always inlined: the parser's hot path must not depend on
    /// how many callers [`Uri::parse`] has (a second one took it out of line there, +50
    /// instructions a message).
    #[inline(always)]
    fn read<const IN_CONTEXT: bool, const SHORT: bool>(
        ctx: &'a [u8],
        start: usize,
        part: Part,
    ) -> Result<Uri<'a>, ParseError> {
        let start = if IN_CONTEXT { start } else { 0 };
        let raw = &ctx[start..];
        let bad = ParseError::BadUri(part);
        // Nearly every URI is "sip:": read it with one comparison.
        let (scheme, rest) = match raw {
            [s, i, p, b':', rest @ ..] if [s | 0x20, i | 0x20, p | 0x20] == *b"sip" => {
                if let Some(u) = SHORT.then(|| Uri::read_short(raw, rest)).flatten() {
                    return Ok(u);
                }
                (Scheme::Sip, rest)
            }
            _ => {
                let colon = chars::find_byte(b':', raw).ok_or(bad)?;
                let (scheme_s, rest) = (&raw[..colon], &raw[colon + 1..]);
                // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
                if scheme_s.is_empty()
                    || !scheme_s[0].is_ascii_alphabetic()
                    || !scheme_s
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                {
                    return Err(bad);
                }
                let scheme = if scheme_s.eq_ignore_ascii_case(b"sip") {
                    Scheme::Sip
                } else if scheme_s.eq_ignore_ascii_case(b"sips") {
                    Scheme::Sips
                } else if scheme_s.eq_ignore_ascii_case(b"tel") {
                    Scheme::Tel
                } else {
                    Scheme::Other
                };
                (scheme, rest)
            }
        };
        if rest.is_empty() {
            return Err(bad);
        }
        if matches!(scheme, Scheme::Tel | Scheme::Other) {
            if !rest.iter().all(|&b| b > 0x20 && b < 0x7f || b >= 0x80) {
                return Err(bad);
            }
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            return Ok(Uri {
                raw,
                scheme,
                user: Some(&rest[..end]),
                host: None,
                port: None,
                params: &rest[end..],
                headers: &[],
            });
        }
        // Every byte must be allowed in some part of a SIP URI, and a second '@' makes the
        // userinfo/host split ambiguous (a PBX may read either host): the scan stops at the
        // first byte that is not a URI part, which may only be the '@'. Scans run over `ctx`
        // from an offset (positions in it are `start` more than in `raw`), so that a short
        // part still takes one SIMD block.
        let off = raw.len() - rest.len();
        let run = |class, from: usize| chars::run_of_from(class, ctx, start + from) - start;
        let a = run(Class::UriPart, off);
        // Where the host's run ends, when the user part's scan found it on the way.
        let mut host_run = None;
        let hstart = if a == raw.len() {
            off
        } else {
            if raw[a] != b'@' {
                return Err(bad);
            }
            // One scan of the host part too; only a second '@' may stop it (ambiguous), and a
            // bad byte anywhere after still makes the whole a bad URI. Host bytes are URI-part
            // bytes: the host's own run goes first, and is kept for `parse_host`; most hosts
            // end the URI, and then nothing is left to scan.
            let h = run(Class::Host, a + 1);
            host_run = Some(h);
            let o = if h == raw.len() {
                h
            } else {
                run(Class::UriPart, h)
            };
            if o < raw.len() {
                if raw[o] != b'@'
                    || raw[o + 1..]
                        .iter()
                        .any(|&b| b != b'@' && !chars::uri_part(b))
                {
                    return Err(bad);
                }
                return Err(ParseError::BadHost(part));
            }
            if a == off {
                return Err(bad);
            }
            a + 1
        };
        let user = (hstart > off).then(|| &raw[off..hstart - 1]);
        let hostpart = &raw[hstart..];
        let (host, end) = parse_host(ctx, start + hstart, host_run.map(|h| start + h))
            .ok_or(ParseError::BadHost(part))?;
        let (port, params, headers) =
            after_host(&hostpart[end - start - hstart..]).map_err(|e| match e {
                AfterHost::BadPort => bad,
                AfterHost::NotParams => ParseError::BadHost(part),
            })?;
        Ok(Uri {
            raw,
            scheme,
            user,
            host: Some(host),
            port,
            params,
            headers,
        })
    }

    /// A `sip:` URI whose `rest` (after the scheme) is 8 to 32 bytes of the common shape: an
    /// optional user, a host name or IPv4 address, an optional port, parameters. Read from
    /// four bit masks over `rest` where [`Uri::read`] scans part by part (~200 instructions a
    /// URI where the scans took ~270). `None` for anything else, errors included: the
    /// general reader then answers. Where this answers, it answers as the general reader
    /// does (tested, fuzzed).
    #[inline(always)]
    fn read_short(raw: &'a [u8], rest: &'a [u8]) -> Option<Uri<'a>> {
        let m = chars::short_masks(rest)?;
        let n = rest.len();
        // Masks widened to 64 bits: shifts by up to 32 stay defined.
        let all = (1u64 << n) - 1;
        let from = |k: usize| all & (u64::MAX << k);
        let first = |bits: u64| (bits != 0).then(|| bits.trailing_zeros() as usize);
        // Every byte a URI-part byte but at most one, the '@' after a non-empty user (the
        // general reader's errors otherwise).
        let not_part = !u64::from(m.part) & all;
        let hstart = match first(not_part) {
            None => 0,
            Some(a) if a > 0 && rest[a] == b'@' && not_part & (not_part - 1) == 0 => a + 1,
            Some(_) => return None,
        };
        // The host: a run of host bytes (a '[' ends it at once: IPv6 goes the general way),
        // not starting with '-' or '.', no two dots together.
        let hend = first(!u64::from(m.host) & from(hstart)).unwrap_or(n);
        if hend == hstart || matches!(rest[hstart], b'-' | b'.') {
            return None;
        }
        let range = from(hstart) & !from(hend);
        let dots = u64::from(m.dot) & range;
        if dots & (dots >> 1) != 0 {
            return None;
        }
        let name = &rest[hstart..hend];
        let host = if (dots | u64::from(m.digit)) & range == range {
            Host::V4(dotted_quad(name, (dots >> hstart) as u32)?)
        } else {
            Host::Name(name)
        };
        let (port, params, headers) = after_host(&rest[hend..]).ok()?;
        Some(Uri {
            raw,
            scheme: Scheme::Sip,
            user: (hstart > 0).then(|| &rest[..hstart - 1]),
            host: Some(host),
            port,
            params,
            headers,
        })
    }

    /// The user part without a ":password".
    pub fn user_name(&self) -> Option<&'a [u8]> {
        self.user.map(|u| match memchr::memchr(b':', u) {
            Some(c) if self.scheme != Scheme::Tel => &u[..c],
            _ => u,
        })
    }
}

/// Why the bytes after a host do not read.
enum AfterHost {
    /// ':' with no port, or one above 65535.
    BadPort,
    /// Something other than params/headers right after the host: '%', '[', ...
    NotParams,
}

/// A URI's port, params and headers.
type Tail<'a> = (Option<u16>, &'a [u8], &'a [u8]);

/// What follows a URI's host: `[":" port] [";" params] ["?" headers]`, as (port, params,
/// headers). Both readers end with it.
#[inline(always)]
fn after_host(s: &[u8]) -> Result<Tail<'_>, AfterHost> {
    let mut i = 0;
    let mut port = None;
    if s.first() == Some(&b':') {
        i = 1 + s[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let p = chars::digits(&s[1..i]).ok_or(AfterHost::BadPort)?;
        port = Some(u16::try_from(p).map_err(|_| AfterHost::BadPort)?);
    }
    let tail = &s[i..];
    if !matches!(tail.first(), None | Some(b';' | b'?')) {
        return Err(AfterHost::NotParams);
    }
    let q = tail.iter().position(|&b| b == b'?').unwrap_or(tail.len());
    Ok((port, &tail[..q], &tail[q..]))
}

/// host = hostname / IPv4address / IPv6reference, starting at `s[start]` and running at
/// most to the end of `s`. Returns the host and where it ended in `s`. `run`: where the run
/// of host bytes from `start` ends, when the caller's scan found it already.
#[inline(always)]
fn parse_host(s: &[u8], start: usize, run: Option<usize>) -> Option<(Host<'_>, usize)> {
    if s.get(start) == Some(&b'[') {
        let close = memchr::memchr(b']', &s[start..])? + start;
        let inner = std::str::from_utf8(&s[start + 1..close]).ok()?;
        let v6: Ipv6Addr = inner.parse().ok()?;
        return Some((Host::V6(v6), close + 1));
    }
    // The name's extent in one class scan; then its shape: no empty label (a leading dot or
    // two in a row), no leading '-', and all digits and dots means an IPv4 address.
    let i = run.unwrap_or_else(|| chars::run_of_from(Class::Host, s, start));
    let name = &s[start..i];
    match name.first() {
        None | Some(b'-' | b'.') => return None,
        Some(_) => {}
    }
    let (double_dot, digits_and_dots) = chars::dots_and_digits(s, start, i);
    if double_dot {
        return None;
    }
    if digits_and_dots {
        // No top label is all digits: an IPv4 address or nothing.
        let dots = chars::dot_bits(s, start, i);
        return Some((Host::V4(dotted_quad(name, dots)?), i));
    }
    Some((Host::Name(name), i))
}

/// [`dotted_quad`] of any bytes, for the test against std.
#[cfg(test)]
fn ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    if !s.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    dotted_quad(s, chars::dot_bits(s, 0, s.len()))
}

/// Dotted-decimal IPv4 as std reads it (four decimal octets, no leading zeros), of digits and
/// dots whose dots are the bits of `dots` (bit k: `s[k]`, as [`chars::dot_bits`] gives them).
/// Hosts in in-dialog requests and scanners' URIs are mostly addresses: the octets are cut
/// where the dots are, not found byte by byte (a scanner's three address hosts: about 95
/// instructions each, where the scan took 150).
#[inline]
fn dotted_quad(s: &[u8], dots: u32) -> Option<Ipv4Addr> {
    // Exactly three dots (so four octets), without a popcount instruction x86-64 lacks.
    let r1 = dots & dots.wrapping_sub(1);
    let r2 = r1 & r1.wrapping_sub(1);
    // "255.255.255.255" is the longest.
    if s.len() > 15 || r2 == 0 || r2 & r2.wrapping_sub(1) != 0 {
        return None;
    }
    let d1 = dots.trailing_zeros() as usize;
    let d2 = r1.trailing_zeros() as usize;
    let d3 = r2.trailing_zeros() as usize;
    Some(Ipv4Addr::new(
        octet(s, 0, d1)?,
        octet(s, d1 + 1, d2)?,
        octet(s, d2 + 1, d3)?,
        octet(s, d3 + 1, s.len())?,
    ))
}

/// The digits `s[a..b]` as one octet: 1 to 3 digits, no leading zero, at most 255.
#[inline(always)]
fn octet(s: &[u8], a: usize, b: usize) -> Option<u8> {
    let digit = |i: usize| u32::from(s[i].wrapping_sub(b'0'));
    let v = match b.wrapping_sub(a) {
        1 => digit(a),
        2 if s[a] != b'0' => digit(a) * 10 + digit(a + 1),
        3 if s[a] != b'0' => digit(a) * 100 + digit(a + 1) * 10 + digit(a + 2),
        _ => return None,
    };
    u8::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Uri<'_>, ParseError> {
        Uri::parse(s.as_bytes(), Part::RequestUri)
    }

    #[test]
    fn sip_uri_parts() {
        let u = p("sip:alice:pw@Sip.Example.com:5070;transport=tcp?subject=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"alice:pw"[..]));
        assert_eq!(u.user_name(), Some(&b"alice"[..]));
        assert!(u.host.unwrap().is_domain(b"sip.example.COM"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.params, b";transport=tcp");
        assert_eq!(u.headers, b"?subject=x");
    }

    #[test]
    fn hosts_of_every_kind() {
        assert_eq!(
            p("sips:1.2.3.4").unwrap().host,
            Some(Host::V4("1.2.3.4".parse().unwrap()))
        );
        let v6 = p("sip:u@[2001:db8::1]:5060").unwrap();
        assert_eq!(v6.host, Some(Host::V6("2001:db8::1".parse().unwrap())));
        assert_eq!(v6.port, Some(5060));
        assert_eq!(p("tel:+1-201-555-0123;phone-context=x").unwrap().host, None);
        assert_eq!(p("urn:service:sos").unwrap().scheme, Scheme::Other);
        // user part may hold ';' and escapes (RFC 4475 semiuri, esc01)
        let u = p("sip:user;par=u%40example.net@example.com").unwrap();
        assert!(u.host.unwrap().is_domain(b"example.com"));
    }

    /// Oracle: the hand reader agrees with std's on address-like strings.
    #[test]
    fn ipv4_agrees_with_std() {
        let pieces = [
            "0", "1", "01", "9", "10", "99", "100", "255", "256", "999", "1000", "", "00",
        ];
        let mut x: u32 = 7;
        for _ in 0..20_000 {
            let mut s = String::new();
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let parts = 3 + (x >> 28) % 3;
            for k in 0..parts {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if k > 0 {
                    s.push('.');
                }
                s.push_str(pieces[(x >> 16) as usize % pieces.len()]);
            }
            assert_eq!(ipv4(s.as_bytes()), s.parse().ok(), "{s}");
        }
    }

    /// Oracle: a URI read in its context reads as it does alone, errors included, whatever
    /// the bytes before it.
    #[test]
    fn a_uri_reads_the_same_in_context() {
        let uris = [
            "sip:100@1.1.1.1",
            "sip:1.2.3.4",
            "sip:a@b",
            "sips:x",
            "sip:u@[::1]:5060",
            "tel:+1",
            "sip:1001@sip.example.com;transport=tcp?x=y",
            "sip:a@b@c",
            "sip:a@h:99999",
            "sip:",
            "sip:a@-b",
            "sip:a@b..c",
            "sip:%40@x",
            "urn:x",
            "sip:a@b:5;lr",
            "sip:@x",
            "sip:a b",
        ];
        let befores = [
            "",
            "<",
            "INVITE ",
            "\"sipvicious\"<",
            "@@@@@@@@@@@@@@@@@@@@",
            "\0\0\0",
        ];
        let mut x: u32 = 9;
        for round in 0..20_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let mut uri = uris[(x >> 8) as usize % uris.len()].as_bytes().to_vec();
            if round % 2 == 1 && !uri.is_empty() {
                let k = (x >> 4) as usize % uri.len();
                uri[k] = [b'@', b'.', b':', b'?', b'[', 0, 0xff, b' ', b'1', b'a']
                    [(x >> 20) as usize % 10];
            }
            let before = befores[(x >> 16) as usize % befores.len()].as_bytes();
            let ctx = [before, &uri[..]].concat();
            assert_eq!(
                Uri::parse_in(&ctx, before.len(), Part::To),
                Uri::parse(&uri, Part::To),
                "{}",
                String::from_utf8_lossy(&ctx)
            );
        }
    }

    /// Oracle: where the short-URI path answers, it answers as the general reader does;
    /// and whether it answers or not, `parse` does. URIs of the common shapes, then each
    /// with one byte changed.
    #[test]
    fn the_short_path_agrees_with_the_general_reader() {
        let users = [
            "", "1001", "100", "alice:pw", "u;p=x", "+1-201", "a%40b", "-x.y_z",
        ];
        let hosts = [
            "sip.example.com",
            "1.1.1.1",
            "198.18.0.2",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "a..b",
            "-a.b",
            ".a",
            "a-",
            "x_y.example",
            "[::1]",
            "",
            "SIP.Example.COM.",
        ];
        let tails = [
            "",
            ":5060",
            ":99999",
            ":",
            ":5x",
            ";transport=tcp",
            "?h=v",
            ";lr?x",
            "%",
        ];
        let mut x: u32 = 11;
        let mut short = 0;
        for round in 0..60_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let pick = |k: u32, n: usize| (x >> k) as usize % n;
            let (u, h, t) = (
                users[pick(4, users.len())],
                hosts[pick(10, hosts.len())],
                tails[pick(16, tails.len())],
            );
            let at = if u.is_empty() && round % 3 != 0 {
                ""
            } else {
                "@"
            };
            let mut uri =
                format!("{}:{u}{at}{h}{t}", ["sip", "SIP", "sIp"][pick(22, 3)]).into_bytes();
            if round % 2 == 1 {
                let k = pick(3, uri.len());
                uri[k] = [
                    b'@', b'.', b':', b'?', b'[', 0, 0xff, b' ', b'<', b'a', b'9', b';',
                ][pick(25, 12)];
            }
            let general = Uri::parse_general(&uri, Part::To);
            // The short path is taken after the scheme was read as "sip:".
            let sip = uri.len() >= 4 && uri[..4].eq_ignore_ascii_case(b"sip:");
            if let Some(u) = sip.then(|| Uri::read_short(&uri, &uri[4..])).flatten() {
                assert_eq!(Ok(u), general, "{}", String::from_utf8_lossy(&uri));
                short += 1;
            }
            assert_eq!(
                Uri::parse(&uri, Part::To),
                general,
                "{}",
                String::from_utf8_lossy(&uri)
            );
        }
        // The common shapes do take the short path.
        assert!(short > 5_000, "{short}");
        assert!(Uri::read_short(b"sip:1001@sip.example.com", b"1001@sip.example.com").is_some());
        assert!(Uri::read_short(b"sip:100@1.1.1.1", b"100@1.1.1.1").is_some());
    }

    #[test]
    fn ambiguous_hosts_are_errors() {
        assert_eq!(
            p("sip:a@b@sip.example.com"),
            Err(ParseError::BadHost(Part::RequestUri))
        );
        assert_eq!(
            p("sip:a@sip.example.com%00.evil"),
            Err(ParseError::BadHost(Part::RequestUri))
        );
        assert_eq!(
            p("sip:a@sip.exa\0mple.com"),
            Err(ParseError::BadUri(Part::RequestUri))
        );
        assert!(p("sip:a@").is_err());
        assert!(p("sip:a@1.2.3.4.5").is_err());
        assert!(p("sip:a@host:99999").is_err());
        assert!(p("sip:a@[::1").is_err());
        assert!(p("sip:a@host name").is_err());
        assert!(p(":nothing").is_err());
    }
}
