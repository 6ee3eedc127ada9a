//! Fault injection around a real device: the seeded loss, delay, jitter,
//! reordering, duplication and corruption of the simulated link, applied to
//! the packets a device (a TUN device, say) sends and receives. With the
//! kernel as the peer over TUN this stands in for `tc netem`, and covers
//! the direction netem cannot (what the kernel sends us).

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use crate::device::Device;
use crate::sim_link::{Impairment, Lane, LinkConfig, LinkStats};

pub struct Impaired<D> {
    inner: D,
    outbound: (Impairment, Lane),
    inbound: (Impairment, Lane),
    scratch: Vec<u8>,
}

impl<D: Device> Impaired<D> {
    /// Wraps `inner`; `out` applies to what we send, `into` to what we receive.
    pub fn new(inner: D, out: LinkConfig, into: LinkConfig, seed: u64) -> Self {
        let mtu = inner.mtu().max(out.mtu).max(into.mtu);
        Impaired {
            inner,
            outbound: (Impairment::new(out, seed), Lane::default()),
            inbound: (
                Impairment::new(into, seed.rotate_left(17) ^ 0x5a5a),
                Lane::default(),
            ),
            scratch: vec![0; mtu.max(65536)],
        }
    }

    /// What the faults did: (outbound, inbound).
    pub fn stats(&self) -> (LinkStats, LinkStats) {
        (self.outbound.0.stats, self.inbound.0.stats)
    }

    fn release_outbound(&mut self, now: Instant) -> io::Result<()> {
        while let Some(p) = self.outbound.1.pop_due(now) {
            self.inner.transmit(now, &p)?;
        }
        Ok(())
    }
}

impl<D: Device> Device for Impaired<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.release_outbound(now)?;
        // Everything the device has goes through the inbound faults first.
        for _ in 0..4096 {
            match self.inner.receive(now, &mut self.scratch)? {
                Some(n) => {
                    let (imp, lane) = &mut self.inbound;
                    imp.put(now, &self.scratch[..n], lane);
                }
                None => break,
            }
        }
        Ok(self.inbound.1.pop_due(now).map(|p| {
            let n = p.len().min(buf.len());
            buf[..n].copy_from_slice(&p[..n]);
            n
        }))
    }

    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let (imp, lane) = &mut self.outbound;
        imp.put(now, packet, lane);
        self.release_outbound(now)
    }

    fn poll_at(&self) -> Option<Instant> {
        [
            self.outbound.1.next_at(),
            self.inbound.1.next_at(),
            self.inner.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.readiness_fd()
    }
}
