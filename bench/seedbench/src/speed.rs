//! How fast the CPU runs the stack's kind of work right now. On a shared
//! virtual machine the same code can take about twice as long for minutes
//! at a time (another tenant on the core's sibling thread, or a lower
//! clock); a fixed piece of work timed at the start of each round shows in
//! which kind of phase that round's figures were taken.

use std::time::Instant;

/// Payload bytes of a full-size segment.
const LEN: usize = 1448;
/// Copies and checksums per probe.
const TURNS: u32 = 20_000;

/// Nanoseconds for one copy of a full-size segment's payload plus its
/// Internet checksum (the bulk of a segment's work in the stack), the
/// median of five timings of `TURNS` each.
pub fn probe() -> f64 {
    let src: Vec<u8> = (0..LEN).map(|i| (i * 7 + 3) as u8).collect();
    let mut dst = vec![0u8; LEN];
    let mut timings: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut acc = 0u16;
            for _ in 0..TURNS {
                dst.copy_from_slice(std::hint::black_box(&src));
                acc ^= oxcat_wire::checksum(std::hint::black_box(&dst));
            }
            std::hint::black_box(acc);
            t.elapsed().as_nanos() as f64 / f64::from(TURNS)
        })
        .collect();
    timings.sort_by(f64::total_cmp);
    timings[timings.len() / 2]
}
