//! A device that wraps any other and records every packet that passes, in
//! both directions, to a pcap file (LINKTYPE_RAW: the packets are bare IP,
//! as a TUN device carries them) that Wireshark and tshark open.

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use crate::device::{Device, Offloads, RxMeta, TxMeta};

pub struct PcapTap<D> {
    inner: D,
    /// Unbuffered: every packet is in the file when `transmit`/`receive`
    /// returns (pcap-file's writer gives no way to flush a buffer it owns).
    writer: PcapWriter<File>,
    /// Wall-clock time of `start`, so timestamps are real dates.
    wall_start: Duration,
    start: Instant,
    packets: u64,
}

impl<D: Device> PcapTap<D> {
    /// Records `inner`'s packets to a new file at `path`; `start` is the
    /// instant the run's clock (the `now` passed to the device) began.
    pub fn create(inner: D, path: &Path, start: Instant) -> io::Result<PcapTap<D>> {
        let file = File::create(path)?;
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(file, header).map_err(io::Error::other)?;
        let wall_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(PcapTap {
            inner,
            writer,
            wall_start,
            start,
            packets: 0,
        })
    }

    fn record(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let ts = self.wall_start + now.saturating_duration_since(self.start);
        let p = PcapPacket::new(ts, packet.len() as u32, packet);
        self.writer.write_packet(&p).map_err(io::Error::other)?;
        self.packets += 1;
        Ok(())
    }

    /// Packets recorded so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: Device> Device for PcapTap<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let got = self.inner.receive(now, buf)?;
        if let Some(n) = got {
            self.record(now, &buf[..n])?;
        }
        Ok(got)
    }

    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.record(now, packet)?;
        self.inner.transmit(now, packet)
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.readiness_fd()
    }

    fn offloads(&self) -> Offloads {
        self.inner.offloads()
    }

    fn receive_meta(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, RxMeta)>> {
        let got = self.inner.receive_meta(now, buf)?;
        if let Some((n, _)) = got {
            self.record(now, &buf[..n])?;
        }
        Ok(got)
    }

    /// Records the packet as handed to the device: a TSO segment appears
    /// whole (as in a capture on a sending host), its checksum unfinished.
    fn transmit_meta(&mut self, now: Instant, packet: &[u8], meta: TxMeta) -> io::Result<()> {
        self.record(now, packet)?;
        self.inner.transmit_meta(now, packet, meta)
    }
}
