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
        let mut reader = create_reader(1 << 20, file).map_err(|e| {
            anyhow::anyhow!("{}: not a pcap or pcapng file ({e:?})", path.display())
        })?;
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
                        .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
                }
                Err(e) => anyhow::bail!(
                    "{}: damaged capture after {} packets ({e:?})",
                    path.display(),
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
/// common case, read without slicing the link layer (what [`slice`] would find there).
#[inline]
pub fn plain_ipv4(linktype: i32, data: &[u8]) -> Option<&[u8]> {
    match linktype {
        1 if data.len() > 14 && data[12..14] == [0x08, 0x00] => Some(&data[14..]),
        12 | 14 | 101 | 228 if data.first().is_some_and(|b| b >> 4 == 4) => Some(data),
        _ => None,
    }
}

/// Slices a frame of the given link type down to its IP packet.
pub fn slice(linktype: i32, data: &[u8]) -> Option<etherparse::SlicedPacket<'_>> {
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
