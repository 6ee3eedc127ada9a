//! A device that wraps any other and hands every packet that passes, in
//! both directions, to a recorder ([`Tap`]); the recorder the stack offers
//! writes a pcap file (LINKTYPE_RAW: the packets are bare IP, as a TUN
//! device carries them) that Wireshark and tshark open ([`PcapTap`]).

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use crate::device::{Device, Offloads, RxMeta, TxMeta};

/// Called once with the error when a [`Tap`]'s recorder fails.
type OnStop = Box<dyn FnMut(&io::Error) + Send>;

/// What a [`Tap`] does with each packet, stamped with the device's `now`.
pub trait Recorder {
    fn record(&mut self, now: Instant, packet: &[u8]) -> io::Result<()>;
}

/// `inner`, with every packet it receives or is given to send also handed
/// to a recorder (first, so a packet the device then fails on is recorded
/// too, as a capture on a sending host shows it).
///
/// The recording is a witness, not part of the path: a recorder that fails
/// (a full disk) stops recording and every packet goes on as before; the
/// error is kept ([`Tap::stopped`]) and handed once to [`Tap::on_stop`]'s
/// callback.
pub struct Tap<D, R> {
    inner: D,
    recorder: R,
    stopped: Option<io::Error>,
    on_stop: Option<OnStop>,
}

impl<D, R> Tap<D, R> {
    pub fn new(inner: D, recorder: R) -> Tap<D, R> {
        Tap {
            inner,
            recorder,
            stopped: None,
            on_stop: None,
        }
    }

    /// `f` is called once, with the error, if the recorder fails.
    pub fn on_stop(mut self, f: impl FnMut(&io::Error) + Send + 'static) -> Tap<D, R> {
        self.on_stop = Some(Box::new(f));
        self
    }

    /// Why recording stopped, if it did.
    pub fn stopped(&self) -> Option<&io::Error> {
        self.stopped.as_ref()
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    pub fn recorder(&self) -> &R {
        &self.recorder
    }
}

impl<D, R: Recorder> Tap<D, R> {
    #[inline]
    fn record(&mut self, now: Instant, packet: &[u8]) {
        if self.stopped.is_none() {
            if let Err(e) = self.recorder.record(now, packet) {
                self.stop(e);
            }
        }
    }

    #[cold]
    fn stop(&mut self, e: io::Error) {
        if let Some(f) = self.on_stop.as_mut() {
            f(&e);
        }
        self.stopped = Some(e);
    }
}

impl<D: Device, R: Recorder> Device for Tap<D, R> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let got = self.inner.receive(now, buf)?;
        if let Some(n) = got {
            self.record(now, &buf[..n]);
        }
        Ok(got)
    }

    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.record(now, packet);
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
            self.record(now, &buf[..n]);
        }
        Ok(got)
    }

    /// Records the packet as handed to the device: a TSO segment appears
    /// whole (as in a capture on a sending host), its checksum unfinished.
    fn transmit_meta(&mut self, now: Instant, packet: &[u8], meta: TxMeta) -> io::Result<()> {
        self.record(now, packet);
        self.inner.transmit_meta(now, packet, meta)
    }
}

/// Writes packets to a pcap file, stamped in wall-clock time.
pub struct PcapFile {
    /// Unbuffered: every packet is in the file when `transmit`/`receive`
    /// returns (pcap-file's writer gives no way to flush a buffer it owns).
    writer: PcapWriter<File>,
    /// The same file, to cut a record a failed write left half-written.
    file: File,
    /// Bytes of the header and the records written whole.
    complete: u64,
    /// Wall-clock time of `start`, so timestamps are real dates.
    wall_start: Duration,
    start: Instant,
    packets: u64,
}

impl PcapFile {
    /// A new file at `path`; `start` is the instant the run's clock (the
    /// `now` passed to the device) began.
    pub fn create(path: &Path, start: Instant) -> io::Result<PcapFile> {
        let file = File::create(path)?;
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(file.try_clone()?, header).map_err(io_error)?;
        let wall_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(PcapFile {
            writer,
            // The file header, written by `with_header`.
            complete: file.metadata()?.len(),
            file,
            wall_start,
            start,
            packets: 0,
        })
    }

    /// Packets recorded so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }
}

impl Recorder for PcapFile {
    fn record(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let ts = self.wall_start + now.saturating_duration_since(self.start);
        let p = PcapPacket::new(ts, packet.len() as u32, packet);
        match self.writer.write_packet(&p) {
            Ok(n) => {
                self.complete += n as u64;
                self.packets += 1;
                Ok(())
            }
            Err(e) => {
                // A full disk can take part of a record: cut it, so the
                // file ends on a whole one (tshark reads it without a
                // "cut short" error).
                let _ = self.file.set_len(self.complete);
                Err(io_error(e))
            }
        }
    }
}

/// pcap-file's error as the io error it wraps: its `IoError`'s own text is
/// "Error reading bytes" whatever happened (a full disk, say); the OS's
/// reason is inside it.
pub fn io_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other),
    }
}

/// A device recorded to a pcap file.
pub type PcapTap<D> = Tap<D, PcapFile>;

impl<D: Device> Tap<D, PcapFile> {
    /// Records `inner`'s packets to a new file at `path`; `start` is the
    /// instant the run's clock (the `now` passed to the device) began.
    pub fn create(inner: D, path: &Path, start: Instant) -> io::Result<PcapTap<D>> {
        Ok(Tap::new(inner, PcapFile::create(path, start)?))
    }

    /// Packets recorded so far.
    pub fn packets(&self) -> u64 {
        self.recorder.packets()
    }
}
