#![no_main]
//! Control-socket requests and state files: any bytes give a request or state, or an error,
//! never a panic; a request that reads back serializes to one that reads the same, and so
//! do saved calls.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = sipwall::inline::ctl::parse_request(&text) {
        let again = serde_json::to_string(&r).unwrap();
        assert_eq!(sipwall::inline::ctl::parse_request(&again).unwrap(), r);
    }
    let _ = sipwall::inline::state::decode(data);
    if let Ok(c) = sipwall::inline::state::decode_calls(data) {
        // A file of the current format is written back byte for byte; one of the first
        // format reads back the same once rewritten in the current one.
        let again = sipwall::inline::state::encode_calls(&c);
        if data.starts_with(b"SWCALLS2") {
            assert_eq!(again, data);
        }
        assert_eq!(sipwall::inline::state::decode_calls(&again).unwrap(), c);
    }
});
