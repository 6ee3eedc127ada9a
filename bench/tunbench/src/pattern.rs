//! The bytes every bulk transfer carries: a fixed pseudo-random sequence
//! repeating with a period that is not a power of two, so a lost, repeated
//! or misplaced chunk shows up when a receiver checks it.

use std::sync::OnceLock;

/// Period of the pattern (a prime just under 256 KiB).
const PERIOD: usize = 262_139;

fn bytes() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..PERIOD)
            .map(|_| {
                // xorshift64
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    })
}

/// The pattern from stream offset `offset`, at most `left` bytes and at
/// most up to the end of one period.
pub fn slice(offset: u64, left: u64) -> &'static [u8] {
    let p = bytes();
    let start = (offset % PERIOD as u64) as usize;
    let len = (PERIOD - start).min(usize::try_from(left).unwrap_or(usize::MAX));
    &p[start..start + len]
}

/// Whether `data` is what the pattern holds at stream offset `offset`.
pub fn matches(offset: u64, data: &[u8]) -> bool {
    let mut at = offset;
    let mut rest = data;
    while !rest.is_empty() {
        let want = slice(at, rest.len() as u64);
        if rest[..want.len()] != *want {
            return false;
        }
        at += want.len() as u64;
        rest = &rest[want.len()..];
    }
    true
}
