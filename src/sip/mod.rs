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
    auth_param, parse, parse_name_addr, parse_name_addr_general, parse_start_line, CSeq, Framing,
    Header, HeaderIter, Message, Method, NameAddr, StartLine, KNOWN_METHODS, MAX_UDP_PAYLOAD,
};
pub use uri::{Host, Scheme, Uri};

/// RFC 5626 keepalive: a bare CRLF (pong) or CRLFCRLF (ping).
pub fn is_keepalive(payload: &[u8]) -> bool {
    payload == b"\r\n" || payload == b"\r\n\r\n"
}
