//! Packets as the engine sees them: addresses, transport and payload, borrowed from the
//! IP packet; plus the two reassemblers (IP fragments for replay, TCP streams for both drivers).

pub mod defrag;
mod packet;
pub mod tcp;

pub use packet::{IpView, Packet, TcpMeta, Transport};
