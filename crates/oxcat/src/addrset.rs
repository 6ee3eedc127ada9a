//! Host sets for `--allow`/`--deny` (and their `*file` forms), in the
//! syntax ncat's addrset takes: single addresses (IPv4 or IPv6), CIDR
//! blocks (`192.168.0.0/16`, `fd00::/8`), IPv4 octet ranges and wildcards
//! (`10.0.0-5.1-254`, `192.168.*.*`), and host names (resolved once, all of
//! their addresses, unless `-n`).

use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::error::Failure;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    /// An address block: every address whose first `prefix` bits equal `net`'s.
    Block { net: IpAddr, prefix: u8 },
    /// Per-octet inclusive ranges of an IPv4 address.
    Octets([(u8, u8); 4]),
}

impl Spec {
    fn matches(&self, ip: &IpAddr) -> bool {
        match (self, ip) {
            (
                Spec::Block {
                    net: IpAddr::V4(n),
                    prefix,
                },
                IpAddr::V4(a),
            ) => prefix_eq(&n.octets(), &a.octets(), *prefix),
            (
                Spec::Block {
                    net: IpAddr::V6(n),
                    prefix,
                },
                IpAddr::V6(a),
            ) => prefix_eq(&n.octets(), &a.octets(), *prefix),
            (Spec::Octets(ranges), IpAddr::V4(a)) => ranges
                .iter()
                .zip(a.octets())
                .all(|(&(lo, hi), o)| lo <= o && o <= hi),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = (prefix / 8) as usize;
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// A set of hosts, as given to `--allow` or `--deny`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    specs: Vec<Spec>,
}

impl AddrSet {
    /// Builds a set from command-line specs and spec files; `None` when none were given.
    pub fn from_specs(
        specs: &[String],
        files: &[PathBuf],
        nodns: bool,
    ) -> Result<Option<AddrSet>, Failure> {
        if specs.is_empty() && files.is_empty() {
            return Ok(None);
        }
        let mut set = AddrSet::default();
        for s in specs {
            set.add_list(s, nodns)?;
        }
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| {
                Failure::usage(format!(
                    "Error opening host list file \"{}\": {}",
                    f.display(),
                    crate::error::describe(&e)
                ))
            })?;
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                set.add_list(line, nodns)?;
            }
        }
        Ok(Some(set))
    }

    fn add_list(&mut self, list: &str, nodns: bool) -> Result<(), Failure> {
        for spec in list
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
        {
            self.add_spec(spec, nodns)?;
        }
        Ok(())
    }

    fn add_spec(&mut self, spec: &str, nodns: bool) -> Result<(), Failure> {
        let bad = || Failure::usage(format!("Error in host specification \"{spec}\""));
        let (host, prefix) = match spec.split_once('/') {
            Some((h, p)) => (h, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (spec, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = prefix.unwrap_or(max);
            if prefix > max {
                return Err(bad());
            }
            self.specs.push(Spec::Block { net: ip, prefix });
            return Ok(());
        }
        if prefix.is_none() {
            if let Some(octets) = parse_octet_ranges(host) {
                self.specs.push(Spec::Octets(octets));
                return Ok(());
            }
        }
        if nodns || !looks_like_hostname(host) {
            return Err(bad());
        }
        let addrs = (host, 0).to_socket_addrs().map_err(|_| bad())?;
        for a in addrs {
            let ip = a.ip();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let p = prefix.unwrap_or(max);
            if p > max {
                return Err(bad());
            }
            self.specs.push(Spec::Block { net: ip, prefix: p });
        }
        Ok(())
    }

    /// Whether `ip` (IPv4-mapped IPv6 addresses count as IPv4) is in the set.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*ip),
            v4 => *v4,
        };
        self.specs.iter().any(|s| s.matches(&ip))
    }
}

fn looks_like_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// `a.b.c.d` where each part is `N`, `N-M`, `-M`, `N-` or `*`.
fn parse_octet_ranges(s: &str) -> Option<[(u8, u8); 4]> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut out = [(0u8, 0u8); 4];
    for (slot, part) in out.iter_mut().zip(parts) {
        *slot = if part == "*" {
            (0, 255)
        } else if let Some((lo, hi)) = part.split_once('-') {
            let lo = if lo.is_empty() { 0 } else { lo.parse().ok()? };
            let hi = if hi.is_empty() { 255 } else { hi.parse().ok()? };
            if lo > hi {
                return None;
            }
            (lo, hi)
        } else {
            let v: u8 = part.parse().ok()?;
            (v, v)
        };
    }
    // A plain dotted quad is handled as an address; this is for patterns.
    Some(out)
}

/// True when `ip` may connect given the allow and deny sets, as ncat decides:
/// it must be in the allow set (if any) and not in the deny set (if any).
pub fn admitted(ip: &IpAddr, allow: Option<&AddrSet>, deny: Option<&AddrSet>) -> bool {
    allow.is_none_or(|a| a.contains(ip)) && !deny.is_some_and(|d| d.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: &str) -> AddrSet {
        AddrSet::from_specs(&[spec.to_string()], &[], true)
            .unwrap()
            .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn single_and_cidr() {
        let s = set("127.0.0.1");
        assert!(s.contains(&ip("127.0.0.1")));
        assert!(!s.contains(&ip("127.0.0.2")));
        let s = set("10.1.0.0/16");
        assert!(s.contains(&ip("10.1.200.3")));
        assert!(!s.contains(&ip("10.2.0.1")));
        let s = set("fd00::/8");
        assert!(s.contains(&ip("fd12::1")));
        assert!(!s.contains(&ip("fe80::1")));
        let s = set("0.0.0.0/0");
        assert!(s.contains(&ip("203.0.113.9")));
        let s = set("127.0.0.0/25");
        assert!(s.contains(&ip("127.0.0.127")));
        assert!(!s.contains(&ip("127.0.0.128")));
    }

    #[test]
    fn octet_ranges_and_wildcards() {
        let s = set("127.0.0.1-5");
        assert!(s.contains(&ip("127.0.0.5")));
        assert!(!s.contains(&ip("127.0.0.6")));
        let s = set("192.168.*.1");
        assert!(s.contains(&ip("192.168.77.1")));
        assert!(!s.contains(&ip("192.168.77.2")));
    }

    #[test]
    fn lists_and_mapped_addresses() {
        let s = set("10.0.0.1, 127.0.0.1");
        assert!(s.contains(&ip("::ffff:127.0.0.1")));
        assert!(s.contains(&ip("10.0.0.1")));
        assert!(!s.contains(&ip("::1")));
    }

    #[test]
    fn malformed_specs_are_usage_errors() {
        for bad in [
            "1.2.3.4/33",
            "::1/129",
            "10.0.0.300",
            "5-1.0.0.0",
            "a.b/x",
            "not a host!",
        ] {
            let r = AddrSet::from_specs(&[bad.to_string()], &[], true);
            assert!(r.is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn allow_and_deny_combine() {
        let allow = set("127.0.0.0/8");
        let deny = set("127.0.0.2");
        assert!(admitted(&ip("127.0.0.1"), Some(&allow), Some(&deny)));
        assert!(!admitted(&ip("127.0.0.2"), Some(&allow), Some(&deny)));
        assert!(!admitted(&ip("10.0.0.1"), Some(&allow), None));
        assert!(admitted(&ip("10.0.0.1"), None, None));
    }
}
