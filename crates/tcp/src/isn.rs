//! Initial sequence numbers per RFC 6528: ISN = M + F(4-tuple, secret),
//! M a clock ticking every 4 µs, F a keyed hash. The secret comes from the
//! caller (a seed), so runs are reproducible.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use crate::seq::SeqNum;

#[derive(Debug, Clone)]
pub struct IsnGenerator {
    secret: [u64; 2],
    epoch: Instant,
}

/// SipHash-2-4 (the keyed PRF RFC 6528 §3 suggests a cryptographic hash for),
/// small enough to keep here rather than pull in a crate.
struct SipHasher24 {
    v: [u64; 4],
    tail: u64,
    ntail: usize,
    length: usize,
}

impl SipHasher24 {
    fn new(k0: u64, k1: u64) -> Self {
        SipHasher24 {
            v: [
                k0 ^ 0x736f6d6570736575,
                k1 ^ 0x646f72616e646f6d,
                k0 ^ 0x6c7967656e657261,
                k1 ^ 0x7465646279746573,
            ],
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        Self::round(&mut self.v);
        Self::round(&mut self.v);
        self.v[0] ^= m;
    }
}

impl Hasher for SipHasher24 {
    fn write(&mut self, bytes: &[u8]) {
        self.length += bytes.len();
        for &b in bytes {
            self.tail |= (b as u64) << (8 * self.ntail);
            self.ntail += 1;
            if self.ntail == 8 {
                let m = self.tail;
                self.compress(m);
                self.tail = 0;
                self.ntail = 0;
            }
        }
    }

    fn finish(&self) -> u64 {
        let mut v = self.v;
        let b = ((self.length as u64 & 0xff) << 56) | self.tail;
        v[3] ^= b;
        Self::round(&mut v);
        Self::round(&mut v);
        v[0] ^= b;
        v[2] ^= 0xff;
        for _ in 0..4 {
            Self::round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

impl IsnGenerator {
    /// A generator keyed by `seed`, its clock starting at `epoch`.
    pub fn new(seed: u64, epoch: Instant) -> Self {
        // Spread the seed over both key words.
        let k1 = seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
        IsnGenerator {
            secret: [seed, k1],
            epoch,
        }
    }

    /// The ISN for a connection identified by `id` (its 4-tuple) at `now`.
    pub fn isn(&self, now: Instant, id: &impl Hash) -> SeqNum {
        let mut h = SipHasher24::new(self.secret[0], self.secret[1]);
        id.hash(&mut h);
        let f = h.finish() as u32;
        // M: a 4 µs timer (RFC 6528 §3, after RFC 793's clock).
        let m = (now.saturating_duration_since(self.epoch).as_micros() / 4) as u32;
        SeqNum(m.wrapping_add(f))
    }

    /// A keyed 32-bit hash of `id` (for SYN cookies).
    pub fn keyed_hash(&self, id: &impl Hash, extra: u64) -> u32 {
        let mut h = SipHasher24::new(self.secret[1], self.secret[0]);
        id.hash(&mut h);
        h.write(&extra.to_le_bytes());
        h.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn siphash_reference_vector() {
        // SipHash-2-4 paper, Appendix A: key 00..0f, message 00..0e -> a129ca6149be45e5
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let mut h = SipHasher24::new(k0, k1);
        h.write(&(0u8..15).collect::<Vec<_>>());
        assert_eq!(h.finish(), 0xa129ca6149be45e5);
    }

    #[test]
    fn keyed_by_tuple_and_advancing_with_time() {
        let t0 = Instant::now();
        let g = IsnGenerator::new(42, t0);
        let a = g.isn(t0, &("10.0.0.1", 1000u16, "10.0.0.2", 80u16));
        let b = g.isn(t0, &("10.0.0.1", 1001u16, "10.0.0.2", 80u16));
        assert_ne!(a, b, "different tuples, different ISNs");
        let later = g.isn(
            t0 + Duration::from_micros(400),
            &("10.0.0.1", 1000u16, "10.0.0.2", 80u16),
        );
        assert_eq!(later - a, 100, "M advances every 4 µs");
        let other_seed =
            IsnGenerator::new(43, t0).isn(t0, &("10.0.0.1", 1000u16, "10.0.0.2", 80u16));
        assert_ne!(a, other_seed);
    }
}
