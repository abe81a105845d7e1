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

impl<'a> Packet<'a> {
    /// Reads an IPv4 or IPv6 packet (the bytes NFQUEUE hands over).
    pub fn from_ip(bytes: &'a [u8]) -> IpView<'a> {
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
