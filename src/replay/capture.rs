//! pcap and pcapng files read into one arena, packets sorted by capture time.

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, Linktype, PcapBlockOwned, PcapError};
use std::path::Path;

#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// Nanoseconds since the Unix epoch (the capture's clock).
    pub ts: u64,
    pub linktype: i32,
    off: usize,
    len: usize,
}

#[derive(Default)]
pub struct Capture {
    arena: Vec<u8>,
    pub frames: Vec<Frame>,
}

impl Capture {
    pub fn data(&self, f: &Frame) -> &[u8] {
        &self.arena[f.off..f.off + f.len]
    }

    /// Appends every packet of a file; call [`Capture::sort`] after the last one.
    pub fn read(&mut self, path: &Path) -> anyhow::Result<()> {
        let file =
            std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        self.read_from(file, &path.display().to_string())
    }

    /// [`Capture::read`] of any reader; `name` is for errors.
    pub fn read_from<R: std::io::Read + Send>(
        &mut self,
        file: R,
        name: &str,
    ) -> anyhow::Result<()> {
        let mut reader = create_reader(1 << 20, file)
            .map_err(|e| anyhow::anyhow!("{name}: not a pcap or pcapng file ({e:?})"))?;
        // pcapng: link type and time resolution per interface.
        let mut ifaces: Vec<(i32, u64)> = Vec::new();
        let mut legacy = (Linktype::ETHERNET.0, 1_000u64);
        loop {
            match reader.next() {
                Ok((offset, block)) => {
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            legacy = (
                                h.network.0,
                                if h.is_nanosecond_precision() {
                                    1
                                } else {
                                    1_000
                                },
                            );
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let ts = u64::from(b.ts_sec) * 1_000_000_000
                                + u64::from(b.ts_usec) * legacy.1;
                            self.push(ts, legacy.0, b.data);
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            ifaces.push((idb.linktype.0, idb.ts_resolution().unwrap_or(1_000_000)));
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let (lt, res) = ifaces
                                .get(epb.if_id as usize)
                                .copied()
                                .unwrap_or((1, 1_000_000));
                            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ts =
                                (u128::from(raw) * 1_000_000_000 / u128::from(res.max(1))) as u64;
                            self.push(ts, lt, epb.data);
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let lt = ifaces.first().map_or(1, |i| i.0);
                            let ts = self.frames.last().map_or(0, |f| f.ts);
                            self.push(ts, lt, spb.data);
                        }
                        _ => {}
                    }
                    reader.consume(offset);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    reader
                        .refill()
                        .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
                }
                Err(e) => anyhow::bail!(
                    "{name}: damaged capture after {} packets ({e:?})",
                    self.frames.len()
                ),
            }
        }
        Ok(())
    }

    fn push(&mut self, ts: u64, linktype: i32, data: &[u8]) {
        self.frames.push(Frame {
            ts,
            linktype,
            off: self.arena.len(),
            len: data.len(),
        });
        self.arena.extend_from_slice(data);
    }

    /// Timestamp order (stable: equal times keep file order).
    pub fn sort(&mut self) {
        if !self.frames.windows(2).all(|w| w[0].ts <= w[1].ts) {
            self.frames.sort_by_key(|f| f.ts);
        }
    }
}

/// The IPv4 packet in an Ethernet frame without VLAN tags, or a raw IPv4 frame: replay's
/// common case, read without slicing the link layer (what [`slice()`] would find there).
#[inline]
pub fn plain_ipv4(linktype: i32, data: &[u8]) -> Option<&[u8]> {
    match linktype {
        1 if data.len() > 14 && data[12..14] == [0x08, 0x00] => Some(&data[14..]),
        12 | 14 | 101 | 228 if data.first().is_some_and(|b| b >> 4 == 4) => Some(data),
        _ => None,
    }
}

/// Slices a frame of the given link type down to its IP packet, and out of the tunnels a
/// mirror session or an IP-in-IP link wraps it in (see `untunnel`).
pub fn slice(linktype: i32, data: &[u8]) -> Option<etherparse::SlicedPacket<'_>> {
    Some(inner_of(link(linktype, data)?, MAX_TUNNELS))
}

/// `s` out of at most `depth` tunnels.
fn inner_of(mut s: etherparse::SlicedPacket<'_>, depth: usize) -> etherparse::SlicedPacket<'_> {
    for _ in 0..depth {
        match untunnel(&s) {
            Some(inner) => s = inner,
            None => break,
        }
    }
    s
}

/// What a tunnel packet whose outer IP packet came in fragments carries, once reassembled
/// (`ip_number` and `payload` the reassembled datagram's): the inner packet, out of any
/// further tunnels, as [`slice()`] takes them off an unfragmented one. `None` when the datagram
/// is no tunnel `untunnel` knows.
pub fn untunnel_reassembled(
    ip_number: etherparse::IpNumber,
    payload: &[u8],
) -> Option<etherparse::SlicedPacket<'_>> {
    Some(inner_of(
        untunnel_payload(ip_number, payload)?,
        MAX_TUNNELS - 1,
    ))
}

/// Tunnels within tunnels taken off, at most (bounded work per frame).
const MAX_TUNNELS: usize = 4;

/// The packet a tunnel carries: IP in IP (IPv4 or IPv6, protocols 4 and 41), and GRE
/// (RFC 2784/2890, version 0) carrying IP, Ethernet (0x6558, as port mirrors send it) or
/// ERSPAN types I to III. Captures taken on a mirror port are made of these; sipwall
/// inline never sees them. `None`: not a tunnel, an unknown one, or a fragment of one
/// (replay reassembles it, then looks inside: [`untunnel_reassembled`]).
fn untunnel<'a>(s: &etherparse::SlicedPacket<'a>) -> Option<etherparse::SlicedPacket<'a>> {
    use etherparse::NetSlice;
    if s.transport.is_some() {
        return None;
    }
    let p = match &s.net {
        Some(NetSlice::Ipv4(v4)) => v4.payload(),
        Some(NetSlice::Ipv6(v6)) => v6.payload(),
        _ => return None,
    };
    if p.fragmented {
        return None;
    }
    untunnel_payload(p.ip_number, p.payload)
}

/// The packet in a tunnel's IP payload `b` (of protocol `ip_number`), as `untunnel` reads it.
fn untunnel_payload(
    ip_number: etherparse::IpNumber,
    b: &[u8],
) -> Option<etherparse::SlicedPacket<'_>> {
    use etherparse::{EtherType, IpNumber, SlicedPacket};
    match ip_number {
        IpNumber::IPV4 | IpNumber::IPV6 => SlicedPacket::from_ip(b).ok(),
        IpNumber::GRE => {
            let flags = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
            let proto = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
            // Version 0 only (1 is PPTP's); no source routing (R).
            if flags & 0x0007 != 0 || flags & 0x4000 != 0 {
                return None;
            }
            let (checksum, key, seq) = (
                flags & 0x8000 != 0,
                flags & 0x2000 != 0,
                flags & 0x1000 != 0,
            );
            let off = 4 + 4 * (usize::from(checksum) + usize::from(key) + usize::from(seq));
            let rest = b.get(off..)?;
            match proto {
                0x0800 | 0x86dd => SlicedPacket::from_ether_type(EtherType(proto), rest).ok(),
                0x6558 => SlicedPacket::from_ethernet(rest).ok(),
                // ERSPAN type II: an 8-byte header (type I, without GRE's sequence, has none).
                0x88be => SlicedPacket::from_ethernet(rest.get(if seq { 8 } else { 0 }..)?).ok(),
                // ERSPAN type III: 12 bytes, 8 more when its O flag says a subheader follows.
                0x22eb => {
                    let o = rest.get(11)? & 1 != 0;
                    SlicedPacket::from_ethernet(rest.get(if o { 20 } else { 12 }..)?).ok()
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A frame of the given link type, sliced.
fn link(linktype: i32, data: &[u8]) -> Option<etherparse::SlicedPacket<'_>> {
    use etherparse::{EtherType, SlicedPacket};
    match linktype {
        // Ethernet, with any VLAN tags
        1 => SlicedPacket::from_ethernet(data).ok(),
        // raw IP (DLT_RAW as 12/14 on some systems, 101 as LINKTYPE_RAW, 228/229 v4/v6)
        12 | 14 | 101 | 228 | 229 => SlicedPacket::from_ip(data).ok(),
        // Linux cooked v1
        113 => SlicedPacket::from_linux_sll(data).ok(),
        // Linux cooked v2: protocol type in the first two bytes of a 20-byte header
        276 if data.len() >= 20 => SlicedPacket::from_ether_type(
            EtherType(u16::from_be_bytes([data[0], data[1]])),
            &data[20..],
        )
        .ok(),
        // BSD loopback: 4-byte address family, host order (0) or network order (108)
        0 | 108 if data.len() >= 4 => SlicedPacket::from_ip(&data[4..]).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::slice;
    use crate::net::{IpView, Packet};

    const SIP: &[u8] = b"OPTIONS sip:100@198.18.0.2 SIP/2.0\r\n\r\n";

    /// The SIP datagram 198.18.5.5:5070 -> 198.18.0.2:5060, as IPv4.
    fn inner() -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 18, 5, 5], [198, 18, 0, 2], 64)
            .udp(5070, 5060)
            .write(&mut v, SIP)
            .unwrap();
        v
    }

    /// `payload` in an IPv4 packet of protocol `proto` between two mirror hosts.
    fn outer(proto: u8, payload: &[u8]) -> Vec<u8> {
        let h = etherparse::Ipv4Header::new(
            payload.len() as u16,
            64,
            etherparse::IpNumber(proto),
            [192, 0, 2, 1],
            [192, 0, 2, 2],
        )
        .unwrap();
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn ethernet(ip: &[u8]) -> Vec<u8> {
        let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        v.extend_from_slice(ip);
        v
    }

    fn seen(frame: &[u8]) -> Option<(String, String, Vec<u8>)> {
        match Packet::from_sliced(&slice(101, frame)?) {
            IpView::Packet(p) => Some((p.src.to_string(), p.dst.to_string(), p.payload.to_vec())),
            _ => None,
        }
    }

    #[test]
    fn sip_is_found_inside_tunnels() {
        let want = Some((
            "198.18.5.5:5070".to_string(),
            "198.18.0.2:5060".to_string(),
            SIP.to_vec(),
        ));
        assert_eq!(seen(&inner()), want);
        // IP in IP
        assert_eq!(seen(&outer(4, &inner())), want);
        // GRE with a key, bridging Ethernet (a port mirror)
        let mut gre = vec![0x20, 0x00, 0x65, 0x58, 0, 0, 0, 7];
        gre.extend(ethernet(&inner()));
        assert_eq!(seen(&outer(47, &gre)), want);
        // GRE carrying IPv4 with checksum and sequence number
        let mut gre = vec![0x90, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 1];
        gre.extend(inner());
        assert_eq!(seen(&outer(47, &gre)), want);
        // ERSPAN type II: GRE with a sequence number, an 8-byte ERSPAN header, Ethernet
        let mut gre = vec![
            0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0x01, 0, 0, 0, 0, 0, 0,
        ];
        gre.extend(ethernet(&inner()));
        assert_eq!(seen(&outer(47, &gre)), want);
        // ERSPAN type III with its optional subheader
        let mut gre = vec![0x10, 0x00, 0x22, 0xeb, 0, 0, 0, 1];
        gre.extend([0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        gre.extend([0; 8]);
        gre.extend(ethernet(&inner()));
        assert_eq!(seen(&outer(47, &gre)), want);
        // A tunnel in a tunnel
        assert_eq!(seen(&outer(4, &outer(4, &inner()))), want);
    }

    #[test]
    fn odd_tunnels_are_not_looked_into() {
        // GRE version 1 (PPTP), GRE with source routing, an unknown payload type, cut short.
        for head in [
            &[0x00, 0x01, 0x08, 0x00][..],
            &[0x40, 0x00, 0x08, 0x00, 0, 0, 0, 0],
            &[0x00, 0x00, 0x12, 0x34],
            &[0x20, 0x00],
        ] {
            let mut gre = head.to_vec();
            if head.len() > 2 {
                gre.extend(inner());
            }
            assert_eq!(seen(&outer(47, &gre)), None, "{head:02x?}");
        }
        // Deeper than the bound: the frame is left at the fifth tunnel.
        let mut p = inner();
        for _ in 0..5 {
            p = outer(4, &p);
        }
        assert_eq!(seen(&p), None);
        let mut p = inner();
        for _ in 0..4 {
            p = outer(4, &p);
        }
        assert!(seen(&p).is_some());
    }
}
