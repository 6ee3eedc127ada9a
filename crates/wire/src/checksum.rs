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

    #[inline]
    fn add_u64_word(&mut self, v: u64) {
        // End-around carry: 2^64 ≡ 1 (mod 2^16 − 1).
        let (sum, carry) = self.sum.overflowing_add(v);
        self.sum = sum + u64::from(carry);
    }

    /// Add bytes to the sum, continuing where the previous call stopped.
    #[inline]
    pub fn add_bytes(&mut self, data: &[u8]) -> &mut Self {
        if !self.odd && data.len() < 64 {
            // Headers and pseudo-headers (the common case, inlined where
            // the size is known): a few words, summed as they are.
            let mut words = data.chunks_exact(4);
            for w in &mut words {
                self.add_u64_word(u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]])));
            }
            let tail = words.remainder();
            if tail.is_empty() {
                return self;
            }
            return self.add_tail(tail);
        }
        self.add_bytes_any(data)
    }

    /// `add_bytes` for any length and position.
    fn add_bytes_any(&mut self, mut data: &[u8]) -> &mut Self {
        if self.odd {
            if let Some((&low, rest)) = data.split_first() {
                self.add_u64_word(u64::from(low));
                self.odd = false;
                data = rest;
            }
        }
        if data.len() < 64 {
            return self.add_short(data);
        }
        self.add_long(data)
    }

    /// 64 bytes or more starting on a word boundary. (Inlined into
    /// `upper_layer` too: a full-size segment's check then calls the
    /// vector sum directly.)
    #[inline(always)]
    fn add_long(&mut self, data: &[u8]) -> &mut Self {
        // The bulk, summed in the machine's byte order (RFC 1071 §2(B): the
        // one's complement sum does not depend on it; the result is
        // swapped back once, `add_native`): 32-bit words added into a
        // 64-bit sum, no carry to propagate at each step, so the additions
        // do not wait on each other and vectorise. Added to the running
        // sum once (§4.1).
        let (words, tail) = data.split_at(data.len() & !3);
        self.add_native(sum_words(words));
        self.add_tail(tail)
    }

    /// Fewer than 64 bytes starting on a word boundary: 64-bit words in
    /// the machine's byte order with the end-around carry (2^64 ≡ 1 as
    /// well), then a 32-bit one, swapped back once (`add_native`, as the
    /// bulk is), then the last 0 to 3 bytes. A 32-byte TCP header takes
    /// four additions where 32-bit big-endian words took eight, each with
    /// its swap.
    #[inline(always)]
    fn add_short(&mut self, data: &[u8]) -> &mut Self {
        let mut native: u64 = 0;
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let w: [u8; 8] = w.try_into().unwrap_or([0; 8]);
            let (sum, carry) = native.overflowing_add(u64::from_ne_bytes(w));
            native = sum + u64::from(carry);
        }
        let mut rest = words.remainder();
        if let Some((w, tail)) = rest.split_first_chunk::<4>() {
            let (sum, carry) = native.overflowing_add(u64::from(u32::from_ne_bytes(*w)));
            native = sum + u64::from(carry);
            rest = tail;
        }
        self.add_native(native);
        if rest.is_empty() {
            return self;
        }
        self.add_tail(rest)
    }

    /// Adds a sum of 16-bit words taken in the machine's byte order (any
    /// value congruent to it modulo 2^16 − 1), swapped back. Reversing a
    /// u64's eight bytes moves each byte between an even and an odd
    /// position, weights 1 and 2^8 (2^16 ≡ 1), so it multiplies the value
    /// by 2^8 modulo 2^16 − 1, as swapping the two bytes of its folded
    /// 16 bits does (a rotation by 8): one `bswap` in place of the fold
    /// and the swap. Zero stays zero and nothing else becomes zero, so
    /// `sum` and `finish` give what the folded value would.
    #[inline(always)]
    fn add_native(&mut self, native: u64) {
        self.add_u64_word(if cfg!(target_endian = "little") {
            native.swap_bytes()
        } else {
            native
        });
    }

    /// The last 0 to 3 bytes of an `add_bytes` (starting on a word boundary).
    fn add_tail(&mut self, mut data: &[u8]) -> &mut Self {
        if let Some((chunk, rest)) = data.split_first_chunk::<2>() {
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
    #[inline]
    pub fn add_u16(&mut self, v: u16) -> &mut Self {
        if self.odd {
            return self.add_bytes(&v.to_be_bytes());
        }
        self.add_u64_word(u64::from(v));
        self
    }

    /// Add a 32-bit value as two 16-bit words.
    #[inline]
    pub fn add_u32(&mut self, v: u32) -> &mut Self {
        if self.odd {
            return self.add_bytes(&v.to_be_bytes());
        }
        // Its two 16-bit words at once: 2^16 is 1 in one's complement arithmetic.
        self.add_u64_word(u64::from(v));
        self
    }

    /// The one's complement sum folded to 16 bits, not yet complemented.
    #[inline]
    pub fn sum(&self) -> u16 {
        fold(self.sum)
    }

    /// The checksum to put in a header: the complement of the sum.
    ///
    /// Summing a packet that already carries a correct checksum gives 0 here (RFC 1071 §1(3)).
    #[inline]
    pub fn finish(&self) -> u16 {
        !self.sum()
    }
}

/// A one's complement sum in 64 bits folded to 16, without a loop: adding
/// a value to itself rotated by half its width leaves the halves' end-around
/// sum in the upper half (Linux's `csum_fold`). Zero stays zero, and any
/// other value gives the same 1..=0xffff as folding 16 bits at a time.
#[inline]
fn fold(sum: u64) -> u16 {
    let s = (sum.wrapping_add(sum.rotate_right(32)) >> 32) as u32;
    (s.wrapping_add(s.rotate_right(16)) >> 16) as u16
}

/// A sum of `data`'s 32-bit words in the machine's byte order (`data` is
/// a whole number of words), exact or congruent to it modulo 2^16 − 1
/// (all the Internet checksum needs). On x86-64 with AVX2 (checked once
/// at run time) a vector loop sums 32 bytes in three instructions;
/// elsewhere a plain loop the compiler vectorises.
#[inline(always)]
fn sum_words(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { sum_words_avx2(data) };
        }
    }
    // At most 2^28 words per pass: their sum cannot overflow 64 bits.
    let mut native: u64 = 0;
    for part in data.chunks(1 << 30) {
        let (s, carry) = native.overflowing_add(sum_words_portable(part));
        native = s + u64::from(carry);
    }
    native
}

/// The sum of `data`'s 16-bit words in the machine's byte order, which is
/// congruent modulo 2^16 − 1 to the sum of its 32-bit words (2^16 ≡ 1).
///
/// Each word `w` is biased to the signed `w − 32768` (an XOR of its top
/// bit), so `vpmaddwd` against ones adds pairs of them into 32-bit lanes:
/// XOR (the load folded in), multiply-add, add per 32 bytes, where
/// widening 32-bit words to 64 bits (the compiler's loop) takes four. The
/// bias comes back as 32768 per word at the end; a tail shorter than 32
/// bytes is the last 32 bytes again, masked. Measured with callgrind on a
/// full-size segment (1480 bytes): 303 instructions a call down to 259,
/// then to 229 (a buffer of one 64 KiB piece or less skips the loop over
/// pieces; the lanes are added in 32 bits and the bias is counted from
/// the length), then to 221 (256 bytes a turn).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_words_avx2(data: &[u8]) -> u64 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_extracti128_si256, _mm256_loadu_si256,
        _mm256_madd_epi16, _mm256_set1_epi16, _mm256_setzero_si256, _mm256_xor_si256,
        _mm_add_epi32, _mm_cvtsi128_si32, _mm_shuffle_epi32,
    };

    /// At offset n: 32 − n bytes cleared, then n kept.
    const TAIL_MASK: [u8; 64] = {
        let mut m = [0u8; 64];
        let mut i = 32;
        while i < 64 {
            m[i] = 0xff;
            i += 1;
        }
        m
    };
    /// A lane gains at most 2^16 in magnitude per 32 bytes it takes: in
    /// 64 KiB pieces (at most 512 additions per lane of the four
    /// accumulators) no lane, nor the sum of all eight, leaves 32 bits
    /// (|sum| <= 32768 per word, 2^15 words: 2^30).
    const PIECE: usize = 1 << 16;
    let bias = _mm256_set1_epi16(i16::MIN);
    let ones = _mm256_set1_epi16(1);
    // The 16-bit words of `v`, biased, added in pairs.
    let pairs = |v: __m256i| _mm256_madd_epi16(_mm256_xor_si256(v, bias), ones);
    // SAFETY (both): 32 readable bytes; the loads are unaligned.
    let load = |bytes: &[u8; 32]| unsafe { _mm256_loadu_si256(bytes.as_ptr().cast::<__m256i>()) };
    // The sum of the 16-bit words of `piece` (at most `PIECE` bytes).
    let piece_sum = |piece: &[u8]| -> u64 {
        let Some(last) = piece.last_chunk::<32>() else {
            // Shorter than one vector (the end of a short or long buffer): as it is.
            return sum_words_portable(piece);
        };
        let mut acc = [_mm256_setzero_si256(); 4];
        // 256 bytes a turn (the loop's own count and branch halved), then
        // at most one 128-byte block.
        let mut blocks = piece.chunks_exact(256);
        for block in &mut blocks {
            for (i, chunk) in block.chunks_exact(32).enumerate() {
                let chunk: &[u8; 32] = chunk.try_into().unwrap_or(&[0; 32]);
                acc[i % 4] = _mm256_add_epi32(acc[i % 4], pairs(load(chunk)));
            }
        }
        let mut rest = blocks.remainder();
        if let Some((block, tail)) = rest.split_first_chunk::<128>() {
            for (a, chunk) in acc.iter_mut().zip(block.chunks_exact(32)) {
                let chunk: &[u8; 32] = chunk.try_into().unwrap_or(&[0; 32]);
                *a = _mm256_add_epi32(*a, pairs(load(chunk)));
            }
            rest = tail;
        }
        while let Some((chunk, tail)) = rest.split_first_chunk::<32>() {
            acc[1] = _mm256_add_epi32(acc[1], pairs(load(chunk)));
            rest = tail;
        }
        if !rest.is_empty() {
            // The last 32 bytes again, all but the `rest.len()` not yet
            // summed masked to zero (each still a biased word).
            let keep: &[u8; 32] = TAIL_MASK
                .get(rest.len()..rest.len() + 32)
                .and_then(|m| m.try_into().ok())
                .unwrap_or(&[0xff; 32]);
            acc[2] = _mm256_add_epi32(acc[2], pairs(_mm256_and_si256(load(last), load(keep))));
        }
        let sum = _mm256_add_epi32(
            _mm256_add_epi32(acc[0], acc[1]),
            _mm256_add_epi32(acc[2], acc[3]),
        );
        // The eight lanes, added (in 32 bits: see `PIECE`).
        let x = _mm_add_epi32(
            _mm256_extracti128_si256::<0>(sum),
            _mm256_extracti128_si256::<1>(sum),
        );
        let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b01_00_11_10>(x));
        let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0b10_11_00_01>(x));
        // Each of the 16 words of each vector (a partial last one counted
        // whole, its masked words being biased zeros) was added as
        // w − 32768; the words' sum is never negative.
        let vectors = piece.len().div_ceil(32) as i64;
        (i64::from(_mm_cvtsi128_si32(x)) + (vectors << 19)) as u64
    };
    let mut total: u64 = 0;
    let mut data = data;
    while data.len() > PIECE {
        let (piece, rest) = data.split_at(PIECE);
        total += piece_sum(piece);
        data = rest;
    }
    total + piece_sum(data)
}

/// A plain widening sum: the compiler turns it into vector adds.
#[inline(always)]
fn sum_words_portable(data: &[u8]) -> u64 {
    data.chunks_exact(4)
        .map(|w| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .sum()
}

/// The Internet checksum of `data`, ready to store in a header.
#[inline]
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
    if data.len() < 64 {
        // A header alone (an ACK, a SYN): `add_short` here, where
        // `add_bytes` (inlined at every header's call site) keeps its
        // 32-bit loop.
        sum.add_short(data);
    } else {
        // (The pseudo-header is 12 or 40 bytes: a word boundary.)
        sum.add_long(data);
    }
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

    /// The extremes of the vector sum's biased words (0x0000, 0x7fff,
    /// 0x8000, 0xffff), at lengths around its 128- and 256-byte blocks and 64 KiB
    /// pieces.
    #[test]
    fn word_sums_at_extremes() {
        for byte in [0x00u8, 0x7f, 0x80, 0xff] {
            for len in [
                4, 28, 32, 124, 128, 132, 252, 256, 260, 380, 384, 388, 1468, 65532, 65536, 65540,
                200_000,
            ] {
                let data = vec![byte; len];
                let expected = (len / 4) as u64 * u64::from(u32::from_ne_bytes([byte; 4]));
                assert_eq!(
                    sum_words(&data) % 0xffff,
                    expected % 0xffff,
                    "{byte:#x} x {len}"
                );
                assert_eq!(checksum(&data), reference(&data), "{byte:#x} x {len}");
            }
        }
    }

    /// The loop-free fold against folding 16 bits at a time.
    #[test]
    fn fold_matches_the_loop() {
        let by_loop = |mut s: u64| {
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s as u16
        };
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let edges = [
            0,
            1,
            0xfffe,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
            u64::MAX - 1,
        ];
        for s in edges.into_iter().chain((0..100_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 64)
        })) {
            assert_eq!(fold(s), by_loop(s), "{s:#x}");
        }
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

    /// Buffers longer than the vector sum's 64 KiB pieces (a TSO segment,
    /// a reassembled datagram), with tails of every length after the last
    /// whole piece, sum as the portable loop does.
    #[test]
    fn word_sums_agree_across_64k_pieces() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..(1 << 16) * 2 + 256)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in [
            (1 << 16) - 4,
            1 << 16,
            (1 << 16) + 4,
            (1 << 16) + 28,
            (1 << 16) + 32,
        ]
        .into_iter()
        .chain((0..=256).step_by(4).map(|t| (1 << 17) + t))
        {
            let d = &data[..len];
            assert_eq!(
                sum_words(d) % 0xffff,
                sum_words_portable(d) % 0xffff,
                "{len} bytes"
            );
        }
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

        /// Words added as numbers (add_u16, add_u32) count as their bytes
        /// would, at even and odd positions alike.
        #[test]
        fn numbers_add_as_their_bytes(pieces in proptest::collection::vec((0u8..3, proptest::prelude::any::<u32>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)), 0..20)) {
            let mut sum = Checksum::new();
            let mut all = Vec::new();
            for (kind, n, bytes) in &pieces {
                match kind {
                    0 => { sum.add_u16(*n as u16); all.extend_from_slice(&(*n as u16).to_be_bytes()); }
                    1 => { sum.add_u32(*n); all.extend_from_slice(&n.to_be_bytes()); }
                    _ => { sum.add_bytes(bytes); all.extend_from_slice(bytes); }
                }
            }
            proptest::prop_assert_eq!(sum.finish(), reference(&all));
        }

        /// The run-time-selected word sum (AVX2 here when the CPU has it)
        /// and the portable one agree modulo 2^16 − 1 (the portable one
        /// exactly), so both paths are checked whatever the machine runs.
        #[test]
        fn word_sums_agree(words in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..2000)) {
            let data: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let expected: u64 = words.iter().map(|&w| u64::from(w)).sum();
            proptest::prop_assert_eq!(sum_words(&data) % 0xffff, expected % 0xffff);
            proptest::prop_assert_eq!(sum_words_portable(&data), expected);
        }
    }
}
