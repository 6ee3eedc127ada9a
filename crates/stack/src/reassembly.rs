//! IPv4 fragment reassembly (RFC 791 §3.2, RFC 815), bounded: at most a
//! few datagrams in progress, each at most 64 KiB, each given up after a
//! timeout (Linux's ipfrag_time: 30 s). Overlapping fragments drop the
//! whole datagram, as RFC 5722 asks of IPv6 (overlaps are an attack, not
//! a thing senders do).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ident: u16,
}

struct Partial {
    data: Vec<u8>,
    /// Byte ranges held, sorted and disjoint.
    have: Vec<(usize, usize)>,
    /// Known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    deadline: Instant,
}

/// Counters of what reassembly gave up on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub reassembled: u64,
    pub timed_out: u64,
    pub overlaps: u64,
    pub too_many: u64,
    pub too_big: u64,
}

pub struct Reassembler {
    partials: HashMap<FragmentKey, Partial>,
    max_datagrams: usize,
    timeout: Duration,
    pub stats: ReassemblyStats,
}

const MAX_DATAGRAM: usize = 65535;

impl Reassembler {
    pub fn new(max_datagrams: usize, timeout: Duration) -> Self {
        Reassembler {
            partials: HashMap::new(),
            max_datagrams,
            timeout,
            stats: ReassemblyStats::default(),
        }
    }

    /// Adds a fragment (`offset` in bytes, `more` = MF); returns the whole
    /// payload once every piece is there.
    pub fn add(
        &mut self,
        now: Instant,
        key: FragmentKey,
        offset: usize,
        more: bool,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        self.expire(now);
        let end = offset + data.len();
        if end > MAX_DATAGRAM || (more && !data.len().is_multiple_of(8)) {
            self.stats.too_big += 1;
            self.partials.remove(&key);
            return None;
        }
        if !self.partials.contains_key(&key) && self.partials.len() >= self.max_datagrams {
            self.stats.too_many += 1;
            return None;
        }
        let deadline = now + self.timeout;
        let p = self.partials.entry(key).or_insert_with(|| Partial {
            data: Vec::new(),
            have: Vec::new(),
            total: None,
            deadline,
        });
        if p.have.iter().any(|&(s, e)| offset < e && s < end) {
            self.stats.overlaps += 1;
            self.partials.remove(&key);
            return None;
        }
        if !more {
            if p.total.is_some_and(|t| t != end) || p.have.iter().any(|&(_, e)| e > end) {
                self.stats.overlaps += 1;
                self.partials.remove(&key);
                return None;
            }
            p.total = Some(end);
        } else if p.total.is_some_and(|t| end > t) {
            self.stats.overlaps += 1;
            self.partials.remove(&key);
            return None;
        }
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        p.data[offset..end].copy_from_slice(data);
        let at = p
            .have
            .iter()
            .position(|&(s, _)| s > offset)
            .unwrap_or(p.have.len());
        p.have.insert(at, (offset, end));
        // Complete when the ranges cover [0, total) without a gap.
        let total = p.total?;
        let mut covered = 0;
        for &(s, e) in &p.have {
            if s != covered {
                return None;
            }
            covered = e;
        }
        if covered != total {
            return None;
        }
        let done = self.partials.remove(&key).map(|p| p.data);
        self.stats.reassembled += 1;
        done
    }

    /// Gives up on datagrams whose time ran out.
    pub fn expire(&mut self, now: Instant) {
        let before = self.partials.len();
        self.partials.retain(|_, p| p.deadline > now);
        self.stats.timed_out += (before - self.partials.len()) as u64;
    }

    pub fn in_progress(&self) -> usize {
        self.partials.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FragmentKey {
        FragmentKey {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            protocol: 17,
            ident: 7,
        }
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let mut r = Reassembler::new(4, Duration::from_secs(30));
        let t = Instant::now();
        let data: Vec<u8> = (0..40u8).collect();
        assert_eq!(r.add(t, key(), 16, true, &data[16..32]), None);
        assert_eq!(r.add(t, key(), 32, false, &data[32..]), None);
        assert_eq!(r.add(t, key(), 0, true, &data[..16]), Some(data));
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn overlaps_timeouts_and_limits() {
        let t = Instant::now();
        let mut r = Reassembler::new(1, Duration::from_secs(30));
        r.add(t, key(), 0, true, &[0; 16]);
        assert_eq!(r.add(t, key(), 8, true, &[1; 16]), None);
        assert_eq!(r.stats.overlaps, 1);
        r.add(t, key(), 0, true, &[0; 16]);
        let other = FragmentKey { ident: 8, ..key() };
        assert_eq!(r.add(t, other, 0, true, &[0; 8]), None);
        assert_eq!(r.stats.too_many, 1, "one datagram at a time");
        r.expire(t + Duration::from_secs(31));
        assert_eq!(r.stats.timed_out, 1);
        assert_eq!(r.add(t, key(), 65528, true, &[0; 16]), None);
        assert_eq!(r.stats.too_big, 1);
    }
}
