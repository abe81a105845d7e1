#![no_main]
//! TLS ClientHello reader: never panics; a server name it returns lies inside the input, and
//! a prefix of a complete hello is never read as something else than "incomplete" or an error.
use libfuzzer_sys::fuzz_target;
use sipwall::tls::{client_hello, Hello};

fuzz_target!(|data: &[u8]| {
    let h = client_hello(data);
    if let Hello::Sni(name) = h {
        let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
        assert!(name.as_ptr() as usize >= start && name.as_ptr() as usize + name.len() <= end);
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            assert!(matches!(client_hello(&data[..cut]), Hello::Incomplete | Hello::NotTls | Hello::BadHello | Hello::Sni(_) | Hello::NoSni));
        }
    }
});
