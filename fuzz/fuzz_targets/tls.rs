#![no_main]
//! TLS ClientHello reader: never panics; a server name it returns lies inside the input or the
//! scratch buffer (a hello joined from several records); a prefix of a stream whose hello was
//! read is either still incomplete or reads the same name.
use libfuzzer_sys::fuzz_target;
use sipwall::tls::{client_hello, Hello};

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let (name, at, len) = match client_hello(data, &mut scratch) {
        Hello::Sni(n) => (n.to_vec(), n.as_ptr() as usize, n.len()),
        _ => return,
    };
    let within = |s: &[u8]| at >= s.as_ptr() as usize && at + len <= s.as_ptr() as usize + s.len();
    assert!(within(data) || within(&scratch));
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        let mut s = Vec::new();
        match client_hello(&data[..cut], &mut s) {
            Hello::Incomplete => {}
            Hello::Sni(n) => assert_eq!(n, &name[..]),
            other => panic!("a prefix read as {other:?}"),
        }
    }
});
