//! Fragment reassembly for IPv4 (RFC 791 §3.2, RFC 815) and IPv6
//! (RFC 8200 §4.5), bounded: at most a few datagrams in progress, each at
//! most 64 KiB, each given up after a timeout (Linux's ipfrag_time: 30 s;
//! RFC 8200 §4.5: "within 60 seconds"). Overlapping fragments drop the
//! whole datagram, as RFC 5722 asks of IPv6 (overlaps are an attack, not a
//! thing senders do); an exact duplicate, which the network does make, is
//! dropped alone (RFC 8200 §4.5 allows either).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// What names an IPv4 datagram's fragments (RFC 791 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ident: u16,
}

/// What names an IPv6 packet's fragments: RFC 8200 §4.5, "Fragment
/// Identification, Source Address, and Destination Address" (the next
/// header is not part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragmentKey {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub ident: u32,
}

/// The most a reassembled payload may hold: 16-bit length fields.
pub const MAX_DATAGRAM: usize = 65535;

/// One fragment as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    /// Where `data` goes in the reassembled payload, in bytes.
    pub offset: usize,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more: bool,
    pub data: &'a [u8],
    /// What heads the reassembled datagram, kept from the fragment at
    /// offset 0 (RFC 8200 §4.5: the unfragmentable part "of the first
    /// fragment packet"); the caller may leave it empty.
    pub header: &'a [u8],
    /// The most the reassembled payload may hold (RFC 8200 §4.5: with the
    /// unfragmentable part's extension headers it must fit a 16-bit
    /// Payload Length); a fragment reaching past it drops the datagram.
    pub max_len: usize,
}

/// A datagram whose fragments all arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// The first fragment's `header`.
    pub header: Vec<u8>,
    /// The fragments' data, in order.
    pub payload: Vec<u8>,
}

struct Partial {
    data: Vec<u8>,
    /// Byte ranges held, sorted and disjoint, none empty.
    have: Vec<(usize, usize)>,
    /// Known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    /// Known once the fragment at offset 0 arrived.
    header: Option<Vec<u8>>,
    deadline: Instant,
}

/// Counters of what reassembly did and gave up on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub reassembled: u64,
    pub timed_out: u64,
    pub overlaps: u64,
    pub too_many: u64,
    pub too_big: u64,
    /// Exact copies of a fragment already held, dropped alone.
    pub duplicates: u64,
}

impl ReassemblyStats {
    /// Datagrams and fragments given up on: overlaps, timeouts, limits and
    /// duplicates.
    pub fn dropped(&self) -> u64 {
        self.overlaps + self.timed_out + self.too_many + self.too_big + self.duplicates
    }
}

/// Datagrams in progress, keyed by what names their fragments
/// ([`FragmentKey`] for IPv4, [`Ipv6FragmentKey`] for IPv6).
pub struct Reassembler<K = FragmentKey> {
    partials: HashMap<K, Partial>,
    max_datagrams: usize,
    timeout: Duration,
    pub stats: ReassemblyStats,
}

impl<K: Copy + Eq + Hash> Reassembler<K> {
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
        key: K,
        offset: usize,
        more: bool,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let fragment = Fragment {
            offset,
            more,
            data,
            header: &[],
            max_len: MAX_DATAGRAM,
        };
        self.add_fragment(now, key, fragment)
            .map(|whole| whole.payload)
    }

    /// Adds a fragment; returns the datagram (the first fragment's header
    /// and the whole payload) once every piece is there.
    pub fn add_fragment(
        &mut self,
        now: Instant,
        key: K,
        fragment: Fragment<'_>,
    ) -> Option<Reassembled> {
        self.expire(now);
        let Fragment {
            offset,
            more,
            data,
            header,
            max_len,
        } = fragment;
        let end = offset.saturating_add(data.len());
        // RFC 8200 §4.5: a fragment that is not the last must be a multiple
        // of 8 bytes long, and none may reach past the largest payload.
        if end > max_len.min(MAX_DATAGRAM) || (more && !data.len().is_multiple_of(8)) {
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
            header: None,
            deadline,
        });
        let is_duplicate = p.have.contains(&(offset, end))
            && p.data.get(offset..end) == Some(data)
            && (more || p.total == Some(end));
        if is_duplicate {
            self.stats.duplicates += 1;
            return None;
        }
        // RFC 5722 §4: any overlap drops the datagram, fragments held and
        // fragments yet to come alike.
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
        if offset == 0 {
            p.header = Some(header.to_vec());
        }
        // An empty fragment adds nothing (and an empty range would read as a
        // gap in the check below).
        if !data.is_empty() {
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
        }
        // Complete when the ranges cover [0, total) without a gap.
        let total = p.total?;
        let mut covered = 0;
        for &(s, e) in &p.have {
            if s != covered {
                return None;
            }
            covered = e;
        }
        if covered != total || p.header.is_none() {
            return None;
        }
        let done = self.partials.remove(&key).map(|p| Reassembled {
            header: p.header.unwrap_or_default(),
            payload: p.data,
        });
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

    fn key6() -> Ipv6FragmentKey {
        Ipv6FragmentKey {
            src: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            dst: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            ident: 0x1234_5678,
        }
    }

    fn piece<'a>(offset: usize, more: bool, data: &'a [u8], header: &'a [u8]) -> Fragment<'a> {
        Fragment {
            offset,
            more,
            data,
            header,
            max_len: MAX_DATAGRAM,
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

    /// RFC 8200 §4.5: the reassembled packet is headed by the first
    /// fragment's unfragmentable part, whichever fragment came first.
    #[test]
    fn ipv6_keeps_the_first_fragments_header() {
        let mut r = Reassembler::<Ipv6FragmentKey>::new(4, Duration::from_secs(60));
        let t = Instant::now();
        let data: Vec<u8> = (0..24u8).collect();
        assert_eq!(
            r.add_fragment(t, key6(), piece(16, false, &data[16..], b"later")),
            None
        );
        assert_eq!(
            r.add_fragment(t, key6(), piece(0, true, &data[..8], b"first")),
            None
        );
        assert_eq!(
            r.add_fragment(t, key6(), piece(8, true, &data[8..16], b"middle")),
            Some(Reassembled {
                header: b"first".to_vec(),
                payload: data
            })
        );
        assert_eq!(r.stats.reassembled, 1);
        assert_eq!(r.stats.dropped(), 0);
    }

    /// RFC 5722 §4: one overlapping fragment discards the datagram, the
    /// fragments already held included; the rest of it never completes.
    #[test]
    fn ipv6_overlap_drops_the_whole_datagram() {
        let mut r = Reassembler::<Ipv6FragmentKey>::new(4, Duration::from_secs(60));
        let t = Instant::now();
        r.add_fragment(t, key6(), piece(0, true, &[1; 16], b"h"));
        // Overlaps [8, 16) with different bytes: a rewrite of the header bytes is
        // exactly the attack RFC 5722 is about.
        assert_eq!(
            r.add_fragment(t, key6(), piece(8, true, &[2; 16], b"h")),
            None
        );
        assert_eq!(r.stats.overlaps, 1);
        assert_eq!(r.in_progress(), 0);
        // What is left of the original never makes a datagram by itself.
        assert_eq!(
            r.add_fragment(t, key6(), piece(16, false, &[3; 8], b"h")),
            None
        );
        assert_eq!(r.in_progress(), 1);
        assert_eq!(r.stats.reassembled, 0);
    }

    /// RFC 8200 §4.5: an exact duplicate may be dropped alone, keeping the
    /// rest; a same-range fragment with other bytes is an overlap.
    #[test]
    fn exact_duplicates_are_dropped_alone() {
        let mut r = Reassembler::<Ipv6FragmentKey>::new(4, Duration::from_secs(60));
        let t = Instant::now();
        r.add_fragment(t, key6(), piece(0, true, &[1; 8], b"h"));
        r.add_fragment(t, key6(), piece(0, true, &[1; 8], b"h"));
        assert_eq!(r.stats.duplicates, 1);
        assert_eq!(r.in_progress(), 1);
        let whole = r.add_fragment(t, key6(), piece(8, false, &[2; 3], b""));
        assert_eq!(whole.map(|w| w.payload.len()), Some(11));
        r.add_fragment(t, key6(), piece(0, true, &[1; 8], b"h"));
        assert_eq!(
            r.add_fragment(t, key6(), piece(0, true, &[9; 8], b"h")),
            None
        );
        assert_eq!(r.stats.overlaps, 1);
    }

    /// RFC 8200 §4.5: reassembly gives up after a time; the fragments that
    /// come later start a new datagram that lacks what expired.
    #[test]
    fn ipv6_timeout_forgets_what_was_held() {
        let mut r = Reassembler::<Ipv6FragmentKey>::new(4, Duration::from_secs(30));
        let t = Instant::now();
        r.add_fragment(t, key6(), piece(0, true, &[1; 8], b"h"));
        let late = t + Duration::from_secs(31);
        assert_eq!(
            r.add_fragment(late, key6(), piece(8, false, &[2; 8], b"")),
            None
        );
        assert_eq!(r.stats.timed_out, 1);
        assert_eq!(r.in_progress(), 1);
        // Just inside the time, a datagram still completes.
        let mut r = Reassembler::<Ipv6FragmentKey>::new(4, Duration::from_secs(30));
        r.add_fragment(t, key6(), piece(0, true, &[1; 8], b"h"));
        let in_time = t + Duration::from_secs(29);
        assert!(r
            .add_fragment(in_time, key6(), piece(8, false, &[2; 8], b""))
            .is_some());
    }

    #[test]
    fn limits() {
        let mut r = Reassembler::<Ipv6FragmentKey>::new(4, Duration::from_secs(30));
        let t = Instant::now();
        // A non-last fragment whose length is not a multiple of 8.
        r.add_fragment(t, key6(), piece(0, true, &[1; 12], b""));
        assert_eq!(r.stats.too_big, 1);
        // Past the caller's limit (room taken by extension headers).
        let tight = Fragment {
            max_len: 100,
            ..piece(96, false, &[1; 8], b"")
        };
        assert_eq!(r.add_fragment(t, key6(), tight), None);
        assert_eq!(r.stats.too_big, 2);
        // An offset near usize::MAX does not overflow.
        r.add_fragment(t, key6(), piece(usize::MAX - 2, false, &[1; 8], b""));
        assert_eq!(r.stats.too_big, 3);
        // Empty fragments neither complete nor stall a datagram.
        r.add_fragment(t, key6(), piece(0, true, &[1; 8], b"h"));
        r.add_fragment(t, key6(), piece(8, true, &[], b""));
        let whole = r.add_fragment(t, key6(), piece(8, false, &[2; 8], b""));
        assert_eq!(whole.map(|w| w.payload.len()), Some(16));
        assert_eq!(r.stats.dropped(), 3);
    }
}
