#![no_main]
//! SIP parser: never panics; a message it reads is inside the buffer and re-reads the same;
//! the From/To reader's common-shape path answers as its general path does.
use libfuzzer_sys::fuzz_target;
use sipwall::sip::{parse, parse_name_addr, parse_name_addr_general, Framing, Part};

fuzz_target!(|data: &[u8]| {
    if data.len() < 256 {
        assert_eq!(
            parse_name_addr(data, Part::From),
            parse_name_addr_general(data, Part::From)
        );
    }
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok(m) = parse(data, framing) {
            assert!(m.len <= data.len());
            let again =
                parse(&data[..m.len], Framing::Datagram).expect("a framed message re-reads");
            assert_eq!(again.call_id, m.call_id);
            for h in m.headers() {
                let _ = h;
            }
        }
    }
});
