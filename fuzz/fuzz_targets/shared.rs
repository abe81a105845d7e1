//! What the engine targets share.

use std::sync::{Arc, OnceLock};

/// The policy, compiled once per process (building the scanner matcher per input would
/// dominate the run); each input still gets a fresh engine, so findings reproduce alone.
pub fn policy(max_message_bytes: usize) -> Arc<sipwall::config::Policy> {
    static P: OnceLock<Arc<sipwall::config::Policy>> = OnceLock::new();
    P.get_or_init(|| {
        let mut c = sipwall::config::Config::default();
        c.sip.domains = vec!["example.com".into()];
        c.limits.max_message_bytes = max_message_bytes;
        // The transaction texts' ring is reserved whole when an engine starts (32 MiB at the
        // default cap): per input, under the sanitizer, that was 2 ms of page mapping, and the
        // engine targets ran 40 times slower. A small cap also reaches the full-table path.
        c.limits.max_transactions = 1024;
        Arc::new(c.compile().unwrap())
    })
    .clone()
}
