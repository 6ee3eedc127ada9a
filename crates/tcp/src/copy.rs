//! Byte copies that step around one CPU's slow case.
//!
//! glibc copies 4 KiB and more with `rep movsb` on CPUs that announce it
//! fast (ERMS/FSRM). On AMD Zen 3 (measured on an EPYC of family 25 with
//! glibc 2.36) that instruction slows about sixteenfold, from ~33 GB/s to
//! ~2 GB/s, when the destination lies 1 to 31 bytes after the source
//! modulo 4096 (a 4 KiB aliasing stall; glibc's bug 30994, changed in later
//! glibc). Where the engine's buffers and the application's fall relative
//! to each other is the allocator's choice, so a 64 KiB `send` could take
//! 32 µs instead of 2 for no reason the caller can see. The helpers here
//! copy such a pair in pieces below glibc's threshold, which it copies
//! with vector loads and stores at full speed whatever the alignment, and
//! every other pair in one call as before. The result is the same bytes
//! either way; only the time differs.

use std::collections::VecDeque;

/// Pieces this long or shorter are copied without `rep movsb`.
const PIECE: usize = 2048;

/// Whether copying `len` bytes from `src` to `dst` would hit the stall:
/// long enough for `rep movsb` and `dst - src` in 1..64 modulo 4096 (the
/// slow range measured was 1..=31; the margin costs nothing).
#[inline(always)]
fn stalls(dst: *const u8, src: *const u8, len: usize) -> bool {
    len > PIECE && ((dst as usize).wrapping_sub(src as usize) % 4096).wrapping_sub(1) < 63
}

/// `dst.copy_from_slice(src)`, around the stall.
#[inline(always)]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    if src.len() > PIECE {
        copy_long(dst, src);
    } else {
        dst.copy_from_slice(src);
    }
}

#[inline(never)]
fn copy_long(dst: &mut [u8], src: &[u8]) {
    if stalls(dst.as_ptr(), src.as_ptr(), src.len()) {
        assert_eq!(
            dst.len(),
            src.len(),
            "copy between slices of different lengths"
        );
        for (d, s) in dst.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
            d.copy_from_slice(s);
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// `dst.extend_from_slice(src)`, around the stall.
#[inline(always)]
pub fn extend(dst: &mut Vec<u8>, src: &[u8]) {
    if src.len() > PIECE {
        extend_long(dst, src);
    } else {
        dst.extend_from_slice(src);
    }
}

#[inline(never)]
fn extend_long(dst: &mut Vec<u8>, src: &[u8]) {
    dst.reserve(src.len());
    if stalls(
        dst.as_ptr().wrapping_add(dst.len()),
        src.as_ptr(),
        src.len(),
    ) {
        for s in src.chunks(PIECE) {
            dst.extend_from_slice(s);
        }
    } else {
        dst.extend_from_slice(src);
    }
}

/// `dst.extend(src)` for a ring, around the stall. Where the ring's next
/// byte lies is taken from its slices (when the free space wraps to the
/// buffer's start this guesses wrong, which costs time, never bytes).
#[inline(always)]
pub fn extend_ring(dst: &mut VecDeque<u8>, src: &[u8]) {
    if src.len() > PIECE {
        extend_ring_long(dst, src);
    } else {
        dst.extend(src);
    }
}

#[inline(never)]
fn extend_ring_long(dst: &mut VecDeque<u8>, src: &[u8]) {
    dst.reserve(src.len());
    let (a, b) = dst.as_slices();
    let next = if b.is_empty() {
        a.as_ptr_range().end
    } else {
        b.as_ptr_range().end
    };
    if stalls(next, src.as_ptr(), src.len()) {
        for s in src.chunks(PIECE) {
            dst.extend(s);
        }
    } else {
        dst.extend(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every helper gives the same bytes as the plain call, at every
    /// relative alignment (stalling or not) and across a ring's wrap.
    #[test]
    fn same_bytes_at_every_alignment() {
        let source: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut stalled = 0;
        for shift in 0..80 {
            for len in [0, 1, PIECE, PIECE + 1, 4096, 9001] {
                let src = &source[shift..shift + len];

                let mut dst = vec![0u8; len + 4096];
                let at = (0..4096).find(|&k| {
                    let d = dst.as_ptr().wrapping_add(k) as usize;
                    d.wrapping_sub(src.as_ptr() as usize) % 4096 == shift % 64
                });
                let at = at.unwrap_or(0);
                stalled += stalls(dst[at..].as_ptr(), src.as_ptr(), len) as usize;
                copy(&mut dst[at..at + len], src);
                assert_eq!(&dst[at..at + len], src);

                let mut v = vec![9u8; shift];
                extend(&mut v, src);
                assert_eq!(&v[..shift], &vec![9u8; shift][..]);
                assert_eq!(&v[shift..], src);

                let mut ring: VecDeque<u8> = VecDeque::with_capacity(12_000);
                ring.extend(&source[..7_000 + shift]);
                ring.drain(..6_500);
                extend_ring(&mut ring, src);
                let got: Vec<u8> = ring.iter().copied().collect();
                assert_eq!(&got[..500 + shift], &source[6_500..7_000 + shift]);
                assert_eq!(&got[500 + shift..], src);
            }
        }
        assert!(stalled > 0, "no case took the piecewise path");
    }
}
