//! Allow and deny lists: a prefix trie per address family (longest-prefix match).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixSet;
use std::net::IpAddr;

#[derive(Debug, Clone, Default)]
pub struct CidrSet {
    v4: PrefixSet<Ipv4Net>,
    v6: PrefixSet<Ipv6Net>,
    len: usize,
}

impl CidrSet {
    pub fn new<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Self {
        let mut s = CidrSet::default();
        for n in nets {
            s.insert(*n);
        }
        s
    }

    pub fn insert(&mut self, net: IpNet) {
        match net.trunc() {
            IpNet::V4(n) => self.v4.insert(n),
            IpNet::V6(n) => self.v6.insert(n),
        };
        self.len += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The empty test always inline: most lists are empty, and every packet asks several;
    /// whether the call was inlined otherwise moved with unrelated changes (~50 instructions
    /// a packet).
    #[inline(always)]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.len != 0 && self.lookup(ip)
    }

    #[inline(never)]
    fn lookup(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).is_some(),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.get_lpm(&Ipv4Net::from(v4)).is_some(),
                None => self.v6.get_lpm(&Ipv6Net::from(a)).is_some(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Oracle: the trie agrees with a naive scan.
    #[test]
    fn agrees_with_naive_scan() {
        let nets: Vec<IpNet> = [
            "10.0.0.0/8",
            "10.1.2.0/24",
            "192.0.2.1/32",
            "2001:db8::/48",
            "::/0",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let set = CidrSet::new(&nets[..4]);
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(x & 0x0aff_ffff | (x & 1) << 31));
            let naive = nets[..4].iter().any(|n| n.contains(&ip));
            assert_eq!(set.contains(ip), naive, "{ip}");
        }
        assert!(set.contains("2001:db8:0:1::1".parse().unwrap()));
        assert!(!set.contains("2001:db9::1".parse().unwrap()));
        assert!(set.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(CidrSet::new(&nets[4..]).contains("2001:1::1".parse().unwrap()));
    }
}
