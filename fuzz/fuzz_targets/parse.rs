#![no_main]
//! SIP parser: never panics; a message it reads is inside the buffer and re-reads the same.
use libfuzzer_sys::fuzz_target;
use sipwall::sip::{parse, Framing};

fuzz_target!(|data: &[u8]| {
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
