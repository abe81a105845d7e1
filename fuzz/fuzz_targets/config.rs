#![no_main]
//! Config loader: any text gives a config or an error, never a panic; what loads compiles or errs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = sipwall::config::Config::from_toml(s, "fuzz") {
            let _ = c.compile();
        }
    }
});
