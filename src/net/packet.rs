use etherparse::{IpNumber, NetSlice, SlicedPacket, TcpSlice, TransportSlice, UdpSlice};
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// The TCP header fields stream reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpMeta {
    pub seq: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

/// One UDP datagram or TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    /// Present for TCP.
    pub tcp: Option<TcpMeta>,
    pub payload: &'a [u8],
}

/// What an IP packet turned out to be.
#[derive(Debug)]
pub enum IpView<'a> {
    Packet(Packet<'a>),
    /// An IP fragment: inline, conntrack reassembles these before the queue; replay reassembles them.
    Fragment {
        src: IpAddr,
        dst: IpAddr,
    },
    /// Valid IP carrying neither UDP nor TCP (ICMP, SCTP, ...).
    OtherProtocol {
        src: IpAddr,
        dst: IpAddr,
    },
    /// Truncated or inconsistent headers.
    Invalid,
}

impl IpView<'_> {
    /// Both readings of one buffer agree: the same view, addresses, ports, TCP fields, and the
    /// very same payload bytes (for checking the fast path against etherparse).
    pub fn same_reading(&self, other: &IpView) -> bool {
        match (self, other) {
            (IpView::Packet(x), IpView::Packet(y)) => {
                x.src == y.src
                    && x.dst == y.dst
                    && x.transport == y.transport
                    && x.tcp == y.tcp
                    && std::ptr::eq(x.payload, y.payload)
            }
            (IpView::Fragment { src: a, dst: b }, IpView::Fragment { src: c, dst: d })
            | (
                IpView::OtherProtocol { src: a, dst: b },
                IpView::OtherProtocol { src: c, dst: d },
            ) => a == c && b == d,
            (IpView::Invalid, IpView::Invalid) => true,
            _ => false,
        }
    }
}

impl<'a> Packet<'a> {
    /// Reads an IPv4 or IPv6 packet (the bytes NFQUEUE hands over).
    #[inline]
    pub fn from_ip(bytes: &'a [u8]) -> IpView<'a> {
        if let Some(p) = Self::from_udp4(bytes) {
            return IpView::Packet(p);
        }
        Self::from_ip_sliced(bytes)
    }

    /// The common case read directly: an IPv4 header without options, not a fragment,
    /// carrying a UDP datagram whose lengths agree. etherparse's general slicing cost ~650
    /// instructions a packet, as much as the rest of the engine's own work; anything else
    /// (options, fragments, IPv6, TCP, odd lengths) returns `None` for etherparse, whose
    /// reading this matches exactly (tested, and checked in the decide fuzz target).
    #[inline]
    pub fn from_udp4(b: &'a [u8]) -> Option<Packet<'a>> {
        let be16 = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        if b.len() < 28 || b[0] != 0x45 || b[9] != 17 || be16(6) & 0x3fff != 0 {
            return None;
        }
        let total = usize::from(be16(2));
        if total < 28 || total > b.len() {
            return None;
        }
        // etherparse: a UDP length of 0 means "to the end of the IP payload".
        let udp_len = match usize::from(be16(24)) {
            0 => total - 20,
            n if n < 8 || n > total - 20 => return None,
            n => n,
        };
        let src = std::net::Ipv4Addr::new(b[12], b[13], b[14], b[15]);
        let dst = std::net::Ipv4Addr::new(b[16], b[17], b[18], b[19]);
        Some(Packet {
            src: SocketAddr::new(IpAddr::V4(src), be16(20)),
            dst: SocketAddr::new(IpAddr::V4(dst), be16(22)),
            transport: Transport::Udp,
            tcp: None,
            payload: &b[28..20 + udp_len],
        })
    }

    /// [`Packet::from_ip`] through etherparse alone (every case; the fast path is tested
    /// against it).
    pub fn from_ip_sliced(bytes: &'a [u8]) -> IpView<'a> {
        match SlicedPacket::from_ip(bytes) {
            Ok(s) => Self::from_sliced(&s),
            Err(_) => IpView::Invalid,
        }
    }

    /// Reads an already sliced packet (replay slices link layers first).
    pub fn from_sliced(s: &SlicedPacket<'a>) -> IpView<'a> {
        let (src, dst, fragmenting) = match &s.net {
            Some(NetSlice::Ipv4(v4)) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
                v4.is_payload_fragmented(),
            ),
            Some(NetSlice::Ipv6(v6)) => (
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
                v6.is_payload_fragmented(),
            ),
            _ => return IpView::Invalid,
        };
        if fragmenting {
            return IpView::Fragment { src, dst };
        }
        match &s.transport {
            Some(TransportSlice::Udp(u)) => IpView::Packet(udp(src, dst, u)),
            Some(TransportSlice::Tcp(t)) => IpView::Packet(tcp(src, dst, t)),
            _ => IpView::OtherProtocol { src, dst },
        }
    }

    /// Builds a packet from a reassembled transport payload (UDP or TCP header + data).
    pub fn from_transport(
        src: IpAddr,
        dst: IpAddr,
        proto: IpNumber,
        bytes: &'a [u8],
    ) -> IpView<'a> {
        match proto {
            IpNumber::UDP => match UdpSlice::from_slice_lax(bytes) {
                Ok(u) => IpView::Packet(udp(src, dst, &u)),
                Err(_) => IpView::Invalid,
            },
            IpNumber::TCP => match TcpSlice::from_slice(bytes) {
                Ok(t) => IpView::Packet(tcp(src, dst, &t)),
                Err(_) => IpView::Invalid,
            },
            _ => IpView::OtherProtocol { src, dst },
        }
    }
}

fn udp<'a>(src: IpAddr, dst: IpAddr, u: &UdpSlice<'a>) -> Packet<'a> {
    Packet {
        src: SocketAddr::new(src, u.source_port()),
        dst: SocketAddr::new(dst, u.destination_port()),
        transport: Transport::Udp,
        tcp: None,
        payload: u.payload(),
    }
}

fn tcp<'a>(src: IpAddr, dst: IpAddr, t: &TcpSlice<'a>) -> Packet<'a> {
    Packet {
        src: SocketAddr::new(src, t.source_port()),
        dst: SocketAddr::new(dst, t.destination_port()),
        transport: Transport::Tcp,
        tcp: Some(TcpMeta {
            seq: t.sequence_number(),
            syn: t.syn(),
            fin: t.fin(),
            rst: t.rst(),
        }),
        payload: t.payload(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4/UDP fast path reads every packet as etherparse does: valid ones, and ones
    /// with each header field and the length bent.
    #[test]
    fn udp4_fast_path_agrees_with_etherparse() {
        let mut base = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 18, 1, 7], [198, 18, 0, 2], 64)
            .udp(5062, 5060)
            .write(&mut base, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
            .unwrap();
        let mut x: u32 = 1;
        let mut fast = 0;
        for round in 0..200_000 {
            let mut p = base.clone();
            // Grow or cut the buffer, then bend up to three header bytes.
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            match round % 4 {
                0 => p.truncate((x >> 8) as usize % (base.len() + 1)),
                1 => p.extend(std::iter::repeat_n(0u8, (x >> 8) as usize % 9)),
                _ => {}
            }
            for _ in 0..round % 4 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let at = (x >> 8) as usize % 28;
                let v = match (x >> 20) % 6 {
                    0 => 0,
                    1 => 0xff,
                    2 => 0x45,
                    3 => 17,
                    4 => p.len() as u8,
                    _ => (x >> 24) as u8,
                };
                if at < p.len() {
                    p[at] = v;
                }
            }
            let want = Packet::from_ip_sliced(&p);
            let got = Packet::from_ip(&p);
            fast += usize::from(Packet::from_udp4(&p).is_some());
            assert!(got.same_reading(&want), "{p:02x?}: {got:?} vs {want:?}");
        }
        assert!(fast > 50_000, "the fast path was taken {fast} times");
    }
}
