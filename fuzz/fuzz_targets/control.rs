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
        assert_eq!(sipwall::inline::state::encode_calls(&c), data);
    }
});
