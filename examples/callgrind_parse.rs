//! A fixed parse loop for `valgrind --tool=callgrind` (instruction counts are repeatable on a
//! noisy machine, unlike time): `cargo build --release --example callgrind_parse`.

fn main() {
    let d = "sip.example.com";
    let msg = format!(
        "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.7:5060;rport;branch=z9hG4bK-524287-1---b7a1c9a0e4d3f2a1\r\n\
         Max-Forwards: 70\r\nContact: <sip:1001@198.18.1.7:5060;rinstance=6f8dc969b62d1466;transport=UDP>\r\n\
         To: <sip:1001@{d}>\r\nFrom: \"Reception\" <sip:1001@{d}>;tag=9c1e5a3b\r\nCall-ID: NjJhYzQxNGI3NmQ3ZGFkYWQ4ZjM0ZmM0NDU0ZTVlNzg\r\n\
         CSeq: 2 REGISTER\r\nExpires: 3600\r\nAllow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
         User-Agent: Yealink SIP-T46S 66.85.0.5\r\nAuthorization: Digest username=\"1001\",realm=\"{d}\",nonce=\"1700000000/abcdef0123456789\",uri=\"sip:{d}\",response=\"0123456789abcdef0123456789abcdef\",algorithm=MD5,cnonce=\"0a4f113b\",qop=auth,nc=00000001\r\n\
         Allow-Events: presence, kpml, talk\r\nContent-Length: 0\r\n\r\n"
    );
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().unwrap());
    let mut t = 0;
    for _ in 0..n {
        let m = sipwall::sip::parse(
            std::hint::black_box(msg.as_bytes()),
            sipwall::sip::Framing::Datagram,
        )
        .unwrap();
        t += m.len;
    }
    println!("{t}");
}
