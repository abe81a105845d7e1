#![no_main]
//! Blocklist feeds: any text gives networks and counted bad lines, never a panic; every network
//! read is in canonical (truncated) form.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = sipwall::config::feed::parse(&String::from_utf8_lossy(data));
    for n in &p.nets {
        assert_eq!(*n, n.trunc());
    }
    assert!(p.bad.len() <= p.bad_count.min(10));
});
