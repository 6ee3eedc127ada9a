//! A device wrapper that measures the time spent inside the device's own
//! calls (so "time inside `Stack::poll`" can be split into the device's part
//! and the stack's), and notices SYNs as they are handed to the stack.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use oxcat_stack::{Device, Offloads, RxMeta, TxMeta};

/// What one `Instant::now()` costs here, in nanoseconds: the median of a
/// few passes of back-to-back reads.
pub fn clock_read_ns() -> f64 {
    const READS: u32 = 200_000;
    let mut passes: Vec<f64> = (0..7)
        .map(|_| {
            let t0 = Instant::now();
            let mut last = t0;
            for _ in 0..READS {
                last = std::hint::black_box(Instant::now());
            }
            (last - t0).as_nanos() as f64 / f64::from(READS)
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[passes.len() / 2]
}

/// Wraps a device. With `timing` on, every `receive`/`transmit` is bracketed
/// by two clock reads and the time between them is added to `device_ns`.
///
/// The bracket's own cost: each call's measured span holds about one clock
/// read beyond the device's work, and the stack's remainder about one more,
/// so the stack's own time in a poll is `poll - device_ns - calls * clock`
/// (see `stack_own_ns`). With `timing` off nothing is read.
pub struct Timed<D> {
    pub inner: D,
    timing: bool,
    pub device_ns: u64,
    pub calls: u64,
    /// A SYN without ACK was handed to the stack since the last `reset`.
    pub syn_in: bool,
}

impl<D> Timed<D> {
    pub fn new(inner: D, timing: bool) -> Timed<D> {
        Timed {
            inner,
            timing,
            device_ns: 0,
            calls: 0,
            syn_in: false,
        }
    }

    pub fn reset(&mut self) {
        self.device_ns = 0;
        self.calls = 0;
        self.syn_in = false;
    }

    pub fn set_timing(&mut self, on: bool) {
        self.timing = on;
        self.reset();
    }

    /// One device call, bracketed by the clock when timing is on.
    #[inline(always)]
    fn timed<R>(&mut self, call: impl FnOnce(&mut Self) -> R) -> R {
        let start = self.timing.then(Instant::now);
        let r = call(self);
        if let Some(start) = start {
            self.device_ns += start.elapsed().as_nanos() as u64;
            self.calls += 1;
        }
        r
    }
}

/// The stack's own share of `poll_ns` spent in polls that made `calls`
/// device calls totalling `device_ns` (measured by a timing `Timed`).
pub fn stack_own_ns(poll_ns: f64, device_ns: f64, calls: f64, clock_ns: f64) -> f64 {
    poll_ns - device_ns - calls * clock_ns
}

/// An IPv4 TCP segment with SYN set and ACK clear.
pub fn is_syn(packet: &[u8]) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    if first >> 4 != 4 || packet.get(9) != Some(&6) {
        return false;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    packet
        .get(ihl + 13)
        .is_some_and(|&flags| flags & 0x12 == 0x02)
}

impl<D: Device> Device for Timed<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.timed(|t| {
            let r = t.inner.receive(now, buf);
            if let Ok(Some(n)) = &r {
                t.syn_in |= is_syn(&buf[..*n]);
            }
            r
        })
    }

    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.timed(|t| t.inner.transmit(now, packet))
    }

    fn offloads(&self) -> Offloads {
        self.inner.offloads()
    }

    fn receive_meta(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, RxMeta)>> {
        self.timed(|t| {
            let r = t.inner.receive_meta(now, buf);
            if let Ok(Some((n, _))) = &r {
                t.syn_in |= is_syn(&buf[..*n]);
            }
            r
        })
    }

    fn transmit_meta(&mut self, now: Instant, packet: &[u8], meta: TxMeta) -> io::Result<()> {
        self.timed(|t| t.inner.transmit_meta(now, packet, meta))
    }

    fn gathers(&self) -> bool {
        self.inner.gathers()
    }

    fn transmit_gather(
        &mut self,
        now: Instant,
        parts: &[&[u8]],
        meta: Option<TxMeta>,
    ) -> io::Result<()> {
        self.timed(|t| t.inner.transmit_gather(now, parts, meta))
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.readiness_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_syn() {
        let mut p = [0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[33] = 0x02;
        assert!(is_syn(&p));
        p[33] = 0x12;
        assert!(!is_syn(&p));
        p[9] = 17;
        p[33] = 0x02;
        assert!(!is_syn(&p));
        assert!(!is_syn(&[]));
    }
}
