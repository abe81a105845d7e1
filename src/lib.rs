//! sipwall: an inline, SIP-aware packet filter.
//!
//! - [`sip`]: zero-copy SIP parser.
//! - [`net`]: IP/UDP/TCP views, fragment and TCP stream reassembly.
//! - [`engine`]: the policy; no I/O, no clock: `decide` and `observe` take the time.
//! - [`config`]: TOML config compiled into lookup structures.
//! - [`replay`]: the pcap driver around the engine.

pub mod config;
pub mod engine;
pub mod gen;
pub mod inline;
pub mod net;
pub mod replay;
pub mod sip;
pub mod tls;
