//! Realistic messages for the benchmarks and the callgrind loop: a phone's REGISTER with
//! credentials, an INVITE with SDP, a sipvicious OPTIONS probe; and the engine and packets
//! they are judged with.

pub const D: &str = "sip.example.com";

pub fn messages() -> Vec<(&'static str, String)> {
    let register = format!(
        "REGISTER sip:{D} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.7:5060;rport;branch=z9hG4bK-524287-1---b7a1c9a0e4d3f2a1\r\n\
         Max-Forwards: 70\r\nContact: <sip:1001@198.18.1.7:5060;rinstance=6f8dc969b62d1466;transport=UDP>\r\n\
         To: <sip:1001@{D}>\r\nFrom: \"Reception\" <sip:1001@{D}>;tag=9c1e5a3b\r\nCall-ID: NjJhYzQxNGI3NmQ3ZGFkYWQ4ZjM0ZmM0NDU0ZTVlNzg\r\n\
         CSeq: 2 REGISTER\r\nExpires: 3600\r\nAllow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
         User-Agent: Yealink SIP-T46S 66.85.0.5\r\nAuthorization: Digest username=\"1001\",realm=\"{D}\",nonce=\"1700000000/abcdef0123456789\",uri=\"sip:{D}\",response=\"0123456789abcdef0123456789abcdef\",algorithm=MD5,cnonce=\"0a4f113b\",qop=auth,nc=00000001\r\n\
         Allow-Events: presence, kpml, talk\r\nContent-Length: 0\r\n\r\n"
    );
    let sdp = "v=0\r\no=- 3711 3711 IN IP4 198.18.1.7\r\ns=Talk\r\nc=IN IP4 198.18.1.7\r\nt=0 0\r\nm=audio 7078 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";
    let invite = format!(
        "INVITE sip:2002@{D} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.7:5060;rport;branch=z9hG4bK.Xm2Lpq7\r\nFrom: \"Alice\" <sip:1001@{D}>;tag=x9Q2\r\n\
         To: <sip:2002@{D}>\r\nCSeq: 21 INVITE\r\nCall-ID: 7yVnq3Cz0b\r\nMax-Forwards: 70\r\nSupported: replaces, outbound, gruu\r\n\
         Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\nContent-Type: application/sdp\r\n\
         Contact: <sip:1001@198.18.1.7:5060;transport=udp>;+sip.instance=\"<urn:uuid:5e9b1c1e-0000-0000-0000-000000000001>\"\r\n\
         User-Agent: Linphone-Desktop/5.2.4 (belle-sip/5.2.94)\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let scanner = "OPTIONS sip:100@198.18.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.19.4.4:5060;branch=z9hG4bK-1553461447;rport\r\n\
         Content-Length: 0\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=6434396633623535313363340131363131313434383536\r\n\
         Accept: application/sdp\r\nUser-Agent: friendly-scanner\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nContact: sip:100@198.19.4.4:5060\r\n\
         CSeq: 1 OPTIONS\r\nCall-ID: 1016931385727327174436302\r\nMax-Forwards: 70\r\n\r\n"
        .to_string();
    vec![
        ("register", register),
        ("invite_sdp", invite),
        ("scanner_options", scanner),
    ]
}

/// Sources the decision is measured from: each sends once every `PHONES` packets.
pub const PHONES: u16 = 1024;

/// An engine with the default config and the benchmark's secret domain.
pub fn engine() -> sipwall::engine::Engine {
    let mut c = sipwall::config::Config::default();
    c.sip.domains = vec![D.into()];
    // Each phone sends the scanner's probe once a second of packet time: with the default
    // bans.scanning each would be banned after ten, and its probes would cost a ban lookup
    // alone. The drops are still counted (the tally's work is measured); no ban is reached.
    c.bans.scanning.drops = u32::MAX;
    sipwall::engine::Engine::new(
        std::sync::Arc::new(c.compile().unwrap()),
        std::sync::Arc::new(sipwall::engine::Shared::new()),
    )
}

/// `payload` in a UDP/IPv4 packet to the PBX from each of `PHONES` addresses.
pub fn from_phones(payload: &[u8]) -> Vec<Vec<u8>> {
    (0..PHONES)
        .map(|s| {
            let [hi, lo] = s.to_be_bytes();
            let b = etherparse::PacketBuilder::ipv4([198, 18, 16 + hi, lo], [198, 18, 0, 2], 64)
                .udp(5060, 5060);
            let mut v = Vec::new();
            b.write(&mut v, payload).unwrap();
            v
        })
        .collect()
}
