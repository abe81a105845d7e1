#![no_main]
//! The NFQUEUE netlink reader: any buffer from the socket gives packets whose payloads lie
//! inside it, never a panic or an out-of-bounds read.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    for (_, _, payload) in sipwall::inline::queue::netlink::packets(data) {
        let p = payload.as_ptr_range();
        assert!(p.start >= range.start && p.end <= range.end);
    }
});
