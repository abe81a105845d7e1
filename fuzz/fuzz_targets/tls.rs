#![no_main]
//! TLS ClientHello reader: never panics; a server name it returns lies inside the input or the
//! scratch buffer (a hello joined from several records); a prefix of a stream whose hello was
//! read is either still incomplete or reads the same name.
use libfuzzer_sys::fuzz_target;
use sipwall::tls::{client_hello, Hello};

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let name = match client_hello(data, &mut scratch) {
        Hello::Sni(name) => name.to_vec(),
        _ => return,
    };
    let inside = |s: &[u8]| {
        let (start, end) = (s.as_ptr() as usize, s.as_ptr() as usize + s.len());
        move |n: &[u8]| n.as_ptr() as usize >= start && n.as_ptr() as usize + n.len() <= end
    };
    if let Hello::Sni(n) = client_hello(data, &mut scratch) {
        let in_data = inside(data)(n);
        assert!(in_data || inside(&scratch)(n));
    }
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        let mut s = Vec::new();
        match client_hello(&data[..cut], &mut s) {
            Hello::Incomplete => {}
            Hello::Sni(n) => assert_eq!(n, &name[..]),
            other => panic!("a prefix read as {other:?}"),
        }
    }
});
