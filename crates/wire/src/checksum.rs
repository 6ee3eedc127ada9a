//! The Internet checksum (RFC 1071) and the pseudo-headers of TCP and UDP.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::IpProtocol;

/// A running Internet checksum (RFC 1071): the one's complement sum of 16-bit big-endian words.
///
/// Data may be added in pieces of any length, odd ones included: a piece that ends in the
/// middle of a 16-bit word is continued by the next. The sum is kept in a `u64`, 16 bytes are
/// added per step (RFC 1071 §2(B): the sum is independent of the word size it is computed in,
/// since 2^16 ≡ 1 mod 2^16 − 1) and folded to 16 bits only at the end (§4.1's "deferred
/// carries").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksum {
    sum: u64,
    /// The bytes added so far end in the middle of a 16-bit word.
    odd: bool,
}

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Self {
        Self { sum: 0, odd: false }
    }

    fn add_u64_word(&mut self, v: u64) {
        // End-around carry: 2^64 ≡ 1 (mod 2^16 − 1).
        let (sum, carry) = self.sum.overflowing_add(v);
        self.sum = sum + u64::from(carry);
    }

    /// Add bytes to the sum, continuing where the previous call stopped.
    pub fn add_bytes(&mut self, mut data: &[u8]) -> &mut Self {
        if self.odd {
            if let Some((&low, rest)) = data.split_first() {
                self.add_u64_word(u64::from(low));
                self.odd = false;
                data = rest;
            }
        }
        // 32-bit words summed into four independent 64-bit accumulators:
        // no carry to propagate at each step (2^32 words could not overflow
        // them), so the additions do not wait on each other and vectorise.
        // Folded into the running sum once (RFC 1071 §2(B), §4.1).
        let mut lanes = [0u64; 4];
        let mut blocks = data.chunks_exact(16);
        for block in &mut blocks {
            for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(4)) {
                *lane += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
            }
        }
        data = blocks.remainder();
        for lane in lanes {
            self.add_u64_word(lane);
        }
        while let Some((chunk, rest)) = data.split_first_chunk::<2>() {
            self.add_u64_word(u64::from(u16::from_be_bytes(*chunk)));
            data = rest;
        }
        if let Some(&high) = data.first() {
            // RFC 1071 §4.1: an odd last byte is padded with a zero byte on the right.
            self.add_u64_word(u64::from(high) << 8);
            self.odd = true;
        }
        self
    }

    /// Add a 16-bit word. Must be called on a word boundary (after an even number of bytes).
    pub fn add_u16(&mut self, v: u16) -> &mut Self {
        self.add_bytes(&v.to_be_bytes())
    }

    /// Add a 32-bit value as two 16-bit words.
    pub fn add_u32(&mut self, v: u32) -> &mut Self {
        self.add_bytes(&v.to_be_bytes())
    }

    /// The one's complement sum folded to 16 bits, not yet complemented.
    pub fn sum(&self) -> u16 {
        let mut sum = self.sum;
        // At most four rounds: each halves the number of significant bits.
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The checksum to put in a header: the complement of the sum.
    ///
    /// Summing a packet that already carries a correct checksum gives 0 here (RFC 1071 §1(3)).
    pub fn finish(&self) -> u16 {
        !self.sum()
    }
}

/// The Internet checksum of `data`, ready to store in a header.
pub fn checksum(data: &[u8]) -> u16 {
    Checksum::new().add_bytes(data).finish()
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An IP address family that TCP, UDP and ICMPv6 checksums can cover: [`Ipv4Addr`] or
/// [`Ipv6Addr`]. Upper-layer `verify_checksum`/`emit` take a pair of these, so the source and
/// destination are of the same family by construction.
pub trait IpAddress: Copy + sealed::Sealed {
    /// Whether a UDP checksum of zero ("none") is forbidden: false for IPv4 (RFC 768),
    /// true for IPv6 (RFC 8200 §8.1).
    const UDP_CHECKSUM_REQUIRED: bool;

    /// The sum over the pseudo-header for an upper-layer packet of `upper_len` bytes.
    fn pseudo_header(src: Self, dst: Self, protocol: IpProtocol, upper_len: u32) -> Checksum;
}

impl IpAddress for Ipv4Addr {
    const UDP_CHECKSUM_REQUIRED: bool = false;

    /// RFC 9293 §3.1 (and RFC 768): source, destination, zero, protocol, 16-bit length.
    fn pseudo_header(src: Self, dst: Self, protocol: IpProtocol, upper_len: u32) -> Checksum {
        let mut sum = Checksum::new();
        sum.add_bytes(&src.octets())
            .add_bytes(&dst.octets())
            .add_u16(u16::from(protocol.0))
            // The length is 16 bits here; IPv4 cannot carry more.
            .add_u16(upper_len as u16);
        sum
    }
}

impl IpAddress for Ipv6Addr {
    const UDP_CHECKSUM_REQUIRED: bool = true;

    /// RFC 8200 §8.1: source, destination, 32-bit upper-layer length, 3 zero bytes, next header.
    fn pseudo_header(src: Self, dst: Self, protocol: IpProtocol, upper_len: u32) -> Checksum {
        let mut sum = Checksum::new();
        sum.add_bytes(&src.octets())
            .add_bytes(&dst.octets())
            .add_u32(upper_len)
            .add_u32(u32::from(protocol.0));
        sum
    }
}

/// The checksum of an upper-layer packet (`data`, its checksum field included) with its
/// pseudo-header; 0 when the stored checksum is right, or the value to store when the checksum
/// field in `data` is zero.
pub(crate) fn upper_layer<A: IpAddress>(src: A, dst: A, protocol: IpProtocol, data: &[u8]) -> u16 {
    // Packets longer than u32::MAX cannot exist in any buffer we are handed over IP.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut sum = A::pseudo_header(src, dst, protocol, len);
    sum.add_bytes(data);
    sum.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, one 16-bit word at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let word = match pair {
                [a, b] => u16::from_be_bytes([*a, *b]),
                [a] => u16::from_be_bytes([*a, 0]),
                _ => 0,
            };
            sum += u32::from(word);
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (after the carries).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let mut sum = Checksum::new();
        sum.add_bytes(&data);
        assert_eq!(sum.sum(), 0xddf2);
        assert_eq!(sum.finish(), !0xddf2);
        assert_eq!(checksum(&data), reference(&data));
    }

    #[test]
    fn verifies_to_zero() {
        // The IPv4 header from Wikipedia's "IPv4 header checksum" example, checksum b861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn odd_pieces_join() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        for split in [0, 1, 2, 3, 15, 16, 17, 33, 500, 1000, 1001] {
            let (a, b) = data.split_at(split);
            let mut sum = Checksum::new();
            sum.add_bytes(a).add_bytes(b);
            assert_eq!(sum.finish(), reference(&data), "split at {split}");
        }
        // Byte by byte.
        let mut sum = Checksum::new();
        for b in &data {
            sum.add_bytes(std::slice::from_ref(b));
        }
        assert_eq!(sum.finish(), reference(&data));
    }

    #[test]
    fn all_ones_does_not_overflow() {
        let data = vec![0xff; 70_000];
        assert_eq!(checksum(&data), reference(&data));
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn pseudo_headers() {
        // Pseudo-header sums computed by hand: 10.0.0.1 -> 10.0.0.2, TCP, length 20.
        let s = Ipv4Addr::pseudo_header(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::TCP,
            20,
        );
        assert_eq!(s.sum(), 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0006 + 0x0014);
        let s = Ipv6Addr::pseudo_header(
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::LOCALHOST,
            IpProtocol::UDP,
            0x1_0002,
        );
        assert_eq!(s.sum(), 1 + 1 + 0x0001 + 0x0002 + 17);
    }

    proptest::proptest! {
        #[test]
        fn matches_reference(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                             split in 0usize..600) {
            let split = split.min(data.len());
            let (a, b) = data.split_at(split);
            let mut sum = Checksum::new();
            sum.add_bytes(a).add_bytes(b);
            proptest::prop_assert_eq!(sum.finish(), reference(&data));
        }
    }
}
