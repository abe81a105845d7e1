#![no_main]
//! SIP parser: never panics; a message it reads is inside the buffer and re-reads the same;
//! the From/To reader's common-shape path answers as its general path does, and a URI reads
//! the same in its context as alone and as the general reader reads it (the short-URI path);
//! what it reads, the observing reader (the PBX's messages, URIs unread) reads the same.
use libfuzzer_sys::fuzz_target;
use sipwall::sip::{
    parse, parse_name_addr, parse_name_addr_general, parse_observed, Framing, Part, Uri,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 256 {
        assert_eq!(
            parse_name_addr(data, Part::From),
            parse_name_addr_general(data, Part::From)
        );
        // A URI read in its context reads as it does alone, and as the general reader does.
        for k in [1, data.len() / 3, data.len() / 2] {
            if k <= data.len() {
                let alone = Uri::parse(&data[k..], Part::To);
                assert_eq!(Uri::parse_in(data, k, Part::To), alone);
                assert_eq!(alone, Uri::parse_general(&data[k..], Part::To));
            }
        }
        assert_eq!(Uri::parse(data, Part::To), Uri::parse_general(data, Part::To));
    }
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok(m) = parse(data, framing) {
            assert!(m.len <= data.len());
            let observed = parse_observed(data, framing).expect("the observing reader reads it");
            assert!(m.agrees_but_uris(&observed));
            let again =
                parse(&data[..m.len], Framing::Datagram).expect("a framed message re-reads");
            assert_eq!(again.call_id, m.call_id);
            for h in m.headers() {
                let _ = h;
            }
        }
    }
});
