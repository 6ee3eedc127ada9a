//! Where IP packets come from and go to. A device moves whole IP packets
//! (layer 3: no Ethernet, no neighbour discovery), as a Linux TUN device
//! with `IFF_NO_PI` does.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

/// What a device does on the stack's behalf (a TUN device with
/// `IFF_VNET_HDR` and offloads: the kernel cuts our large TCP segments and
/// hands us its own before cutting them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// The largest TCP segment (IP packet) the device takes and cuts into
    /// MSS-sized ones itself (TSO); 0 when it cannot.
    pub tso_max: usize,
}

/// How an outgoing packet is to be finished by the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxMeta {
    /// The packet carries one TCP segment to be cut into segments of this
    /// many payload bytes (TSO); None for a packet to send as it is.
    pub tcp_segment_size: Option<u16>,
    /// The TCP checksum field holds only the pseudo-header sum; the device
    /// completes it (from `csum_start`, the TCP header's offset, with the
    /// field at `csum_start + 16`).
    pub csum_start: Option<u16>,
}

/// What a device says about an arrived packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// The sender (the local kernel) left the transport checksum to be
    /// filled in: the packet never crossed a wire, and the field is not a
    /// checksum to verify.
    pub checksum_partial: bool,
}

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
    /// The offloads the device performs; none by default.
    fn offloads(&self) -> Offloads {
        Offloads::default()
    }
    /// [`receive`](Device::receive), with what the device knows about the packet.
    fn receive_meta(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, RxMeta)>> {
        Ok(self.receive(now, buf)?.map(|n| (n, RxMeta::default())))
    }
    /// Whether [`transmit_gather`](Device::transmit_gather) sends a packet
    /// from its pieces as they lie, without joining them first (a TUN's
    /// `writev`): then the stack hands a full segment over as its headers
    /// and the payload where it waits in the send buffer, not copied.
    fn gathers(&self) -> bool {
        false
    }
    /// Sends one packet given as pieces, in order, finished as `meta` says
    /// (None: as it is). The stack calls it only when
    /// [`gathers`](Device::gathers) says so, with `meta` only when
    /// [`offloads`](Device::offloads) allows it; by default the pieces are
    /// joined and sent with [`transmit`](Device::transmit) or
    /// [`transmit_meta`](Device::transmit_meta).
    fn transmit_gather(
        &mut self,
        now: Instant,
        parts: &[&[u8]],
        meta: Option<TxMeta>,
    ) -> io::Result<()> {
        let packet = parts.concat();
        match meta {
            Some(meta) => self.transmit_meta(now, &packet, meta),
            None => self.transmit(now, &packet),
        }
    }
    /// [`transmit`](Device::transmit) for a packet the device finishes
    /// (only used when [`offloads`](Device::offloads) says it can).
    fn transmit_meta(&mut self, now: Instant, packet: &[u8], meta: TxMeta) -> io::Result<()> {
        let _ = meta;
        self.transmit(now, packet)
    }
}
