//! Bounds-checked big-endian loads and stores.
//!
//! Views validate their buffer once in `new_checked`, so these checks never fail there; they
//! exist so that a view over a short buffer (made with `new_unchecked`) reads zeros and ignores
//! writes instead of panicking.

pub(crate) fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .unwrap_or([0; N])
}

pub(crate) fn u8_at(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(buf, at))
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(buf, at))
}

/// `buf[start..end]`, clamped to the buffer (empty when `start` is past the end or `end`).
pub(crate) fn slice(buf: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(buf.len());
    buf.get(start..end).unwrap_or(&[])
}

pub(crate) fn slice_mut(buf: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(buf.len());
    buf.get_mut(start..end).unwrap_or(&mut [])
}

pub(crate) fn set_array<const N: usize>(buf: &mut [u8], at: usize, value: [u8; N]) {
    if let Some(dst) = buf
        .get_mut(at..)
        .and_then(|rest| rest.first_chunk_mut::<N>())
    {
        *dst = value;
    }
}

pub(crate) fn set_u8(buf: &mut [u8], at: usize, value: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = value;
    }
}

pub(crate) fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    set_array(buf, at, value.to_be_bytes());
}

pub(crate) fn set_u32(buf: &mut [u8], at: usize, value: u32) {
    set_array(buf, at, value.to_be_bytes());
}

/// Copy `src` to `buf[at..]`; the caller has checked that it fits (extra bytes are dropped
/// rather than panicking).
pub(crate) fn copy_to(buf: &mut [u8], at: usize, src: &[u8]) {
    let dst = slice_mut(buf, at, at.saturating_add(src.len()));
    let n = dst.len();
    dst.copy_from_slice(src.get(..n).unwrap_or(&[]));
}
