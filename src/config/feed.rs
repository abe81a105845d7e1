//! Blocklist files: one address or CIDR a line, the format APIBan and common blocklists
//! export. `#` and `;` start comments; a line may carry more after the address (a comment,
//! CSV columns), which is ignored. Bad lines are reported by number, never fatal.

use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub nets: Vec<IpNet>,
    /// (line number, the line) of lines that did not read as an address; the first 10.
    pub bad: Vec<(usize, String)>,
    pub bad_count: usize,
}

pub fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let Some(token) = line.split([' ', '\t', ',']).find(|t| !t.is_empty()) else {
            continue;
        };
        let net = token
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| token.parse::<IpAddr>().map(IpNet::from));
        match net {
            Ok(n) => p.nets.push(n),
            Err(_) => {
                p.bad_count += 1;
                if p.bad.len() < 10 {
                    p.bad.push((i + 1, line.chars().take(80).collect()));
                }
            }
        }
    }
    p.nets.sort_unstable();
    p.nets.dedup();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_addresses_cidrs_and_comments() {
        let p = parse(
            "# APIBan list\n203.0.113.7\n198.51.100.0/24 ; office scanners\n\n2001:db8::/32\n\
             192.0.2.9,2026-11-01,svwar\n198.51.100.77/24\nnot-an-ip\n  \t# indented comment\n203.0.113.7\n",
        );
        let want: Vec<IpNet> = [
            "192.0.2.9/32",
            "198.51.100.0/24",
            "203.0.113.7/32",
            "2001:db8::/32",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(p.nets, want);
        assert_eq!(p.bad, vec![(8, "not-an-ip".to_string())]);
        assert_eq!(p.bad_count, 1);
    }
}
