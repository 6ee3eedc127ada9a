//! Where IP packets come from and go to. A device moves whole IP packets
//! (layer 3: no Ethernet, no neighbour discovery), as a Linux TUN device
//! with `IFF_NO_PI` does.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

pub trait Device {
    /// The largest IP packet the device carries.
    fn mtu(&self) -> usize;
    /// Takes one arrived packet into `buf`; `Ok(None)` when none is waiting.
    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Sends one packet.
    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()>;
    /// When a packet will next be ready to receive, if the device knows
    /// (a simulated link does; a real device says `None` and is polled).
    fn poll_at(&self) -> Option<Instant> {
        None
    }
    /// A descriptor that becomes readable when a packet arrives (a TUN
    /// device's); `None` for devices that only `poll_at` can wake.
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}
