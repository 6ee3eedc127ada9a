//! A Linux TUN device: the kernel hands us the IP packets it routes to the
//! interface and takes the ones we write, so the real Linux TCP/IP stack is
//! the peer of ours. Layer 3, `IFF_NO_PI`: each read or write is one packet.
//!
//! [`Tun::open_offloaded`] adds `IFF_VNET_HDR` and offloads (TSO4/6 and
//! checksums): every packet then travels behind a `virtio_net_hdr`, the
//! kernel hands us TCP segments of up to 64 KB before it cuts them (and
//! leaves their checksums to be filled in), and takes 64 KB segments of
//! ours that it cuts into MSS-sized ones itself: one read or write per 64 KB
//! instead of per 1.5 KB.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Instant;

use crate::device::{Device, Offloads, RxMeta, TxMeta};

const IFNAMSIZ: usize = 16;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// _IOW('T', 208, unsigned int)
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
/// `struct virtio_net_hdr` (without `num_buffers`): flags, gso_type,
/// hdr_len, gso_size, csum_start, csum_offset, in host byte order.
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// _IOW('T', 202, int)
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

pub struct Tun {
    file: File,
    name: String,
    mtu: usize,
    /// `IFF_VNET_HDR` with offloads: packets carry a virtio_net_hdr.
    vnet: bool,
}

impl Tun {
    /// Opens (creating if needed) the TUN interface `name`. Needs
    /// CAP_NET_ADMIN; the caller configures addresses and brings it up.
    pub fn open(name: &str) -> io::Result<Tun> {
        Tun::open_with(name, false)
    }

    /// [`open`](Tun::open) with `IFF_VNET_HDR` and TSO/checksum offloads.
    pub fn open_offloaded(name: &str) -> io::Result<Tun> {
        Tun::open_with(name, true)
    }

    fn open_with(name: &str, vnet: bool) -> io::Result<Tun> {
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let bytes = cname.as_bytes_with_nul();
        if bytes.len() > IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name too long",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            flags: IFF_TUN | IFF_NO_PI | if vnet { IFF_VNET_HDR } else { 0 },
            _pad: [0; 22],
        };
        for (dst, &src) in req.name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        // SAFETY: TUNSETIFF reads a `struct ifreq` (name, then flags) from the
        // pointer; `IfReq` has that layout and lives for the call; the fd is open.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if vnet {
            let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
            // SAFETY: TUNSETOFFLOAD takes its argument by value; the fd is open.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD as _, offloads) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Tun {
            file,
            name: name.to_string(),
            // The interface's own (an existing one's may differ); a new
            // TUN starts at 1500.
            mtu: interface_mtu(name).unwrap_or(1500),
            vnet,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// For poll(2): readable when the kernel has a packet for us.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The MTU of interface `name` in this thread's network namespace
/// (SIOCGIFMTU on a socket; sysfs may show another namespace's).
pub fn interface_mtu(name: &str) -> io::Result<usize> {
    #[repr(C)]
    struct IfReqMtu {
        name: [libc::c_char; IFNAMSIZ],
        mtu: libc::c_int,
        _pad: [u8; 20],
    }
    // The kernel writes up to a whole `struct ifreq`.
    const _: () = assert!(std::mem::size_of::<IfReqMtu>() >= std::mem::size_of::<libc::ifreq>());
    let bytes = name.as_bytes();
    if bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqMtu {
        name: [0; IFNAMSIZ],
        mtu: 0,
        _pad: [0; 20],
    };
    for (dst, &src) in req.name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into a
    // `struct ifreq`; `IfReqMtu` has that layout (name, then the union's
    // int) and its full size, and lives for the call.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFMTU as _,
            &mut req as *mut IfReqMtu,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(req.mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

impl Tun {
    /// One read: the packet into `buf`, its virtio_net_hdr (when there is one) into `hdr`.
    fn read_packet(
        &mut self,
        buf: &mut [u8],
        hdr: &mut [u8; VNET_HDR_LEN],
    ) -> io::Result<Option<usize>> {
        if !self.vnet {
            return match self.file.read(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            };
        }
        let mut iov = [io::IoSliceMut::new(hdr), io::IoSliceMut::new(buf)];
        match self.file.read_vectored(&mut iov) {
            Ok(n) if n >= VNET_HDR_LEN => Ok(Some(n - VNET_HDR_LEN)),
            // A read shorter than the header carries no packet.
            Ok(_) => Ok(Some(0)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_packet(&mut self, packet: &[u8], hdr: &[u8; VNET_HDR_LEN]) -> io::Result<()> {
        let r = if self.vnet {
            self.file
                .write_vectored(&[io::IoSlice::new(hdr), io::IoSlice::new(packet)])
        } else {
            self.file.write(packet)
        };
        written(r)
    }
}

/// A write's outcome for the stack: a full queue drops the packet, as a
/// wire would (TCP resends), and is no error.
fn written(r: io::Result<usize>) -> io::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where a partial checksum starts, if the header says the packet has one.
fn partial_checksum(hdr: &[u8; VNET_HDR_LEN], len: usize) -> Option<(usize, usize)> {
    if hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
        return None;
    }
    let start = usize::from(u16::from_ne_bytes([hdr[6], hdr[7]]));
    let offset = usize::from(u16::from_ne_bytes([hdr[8], hdr[9]]));
    (start + offset + 2 <= len).then_some((start, offset))
}

impl Device for Tun {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn receive(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let Some(n) = self.read_packet(buf, &mut hdr)? else {
            return Ok(None);
        };
        if let Some((start, offset)) = partial_checksum(&hdr, n).filter(|_| self.vnet) {
            // The kernel left the transport checksum to be finished (the
            // field holds the pseudo-header's sum): finish it, so the packet
            // is whole for whoever reads it without the metadata.
            let sum = oxcat_wire::checksum(&buf[start..n]);
            buf[start + offset..start + offset + 2].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(Some(n))
    }

    fn receive_meta(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, RxMeta)>> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let Some(n) = self.read_packet(buf, &mut hdr)? else {
            return Ok(None);
        };
        let partial = self.vnet && partial_checksum(&hdr, n).is_some();
        Ok(Some((
            n,
            RxMeta {
                checksum_partial: partial,
            },
        )))
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn transmit(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.write_packet(packet, &[0u8; VNET_HDR_LEN])
    }

    fn offloads(&self) -> Offloads {
        Offloads {
            tso_max: if self.vnet { 65535 } else { 0 },
        }
    }

    fn gathers(&self) -> bool {
        true
    }

    fn transmit_gather(
        &mut self,
        _now: Instant,
        parts: &[&[u8]],
        meta: Option<TxMeta>,
    ) -> io::Result<()> {
        // The headers come whole in the first piece (what the vnet header
        // needs of them).
        let hdr = match meta {
            Some(meta) if self.vnet => vnet_header(parts.first().copied().unwrap_or(&[]), meta),
            _ => [0u8; VNET_HDR_LEN],
        };
        // One writev(2): the TUN takes the whole vector as one packet.
        let mut iov = [io::IoSlice::new(&[]); 4];
        let mut n = 0;
        if self.vnet {
            iov[0] = io::IoSlice::new(&hdr);
            n = 1;
        }
        for part in parts.iter().filter(|p| !p.is_empty()) {
            if n == iov.len() {
                // More pieces than the stack ever gives: joined.
                return self.write_packet(&parts.concat(), &hdr);
            }
            iov[n] = io::IoSlice::new(part);
            n += 1;
        }
        written(self.file.write_vectored(&iov[..n]))
    }

    fn transmit_meta(&mut self, _now: Instant, packet: &[u8], meta: TxMeta) -> io::Result<()> {
        if !self.vnet {
            return self.write_packet(packet, &[0u8; VNET_HDR_LEN]);
        }
        self.write_packet(packet, &vnet_header(packet, meta))
    }
}

/// The virtio_net_hdr asking the kernel to finish a packet as `meta` says
/// (`headers`: the packet from its start through the TCP header, at least).
fn vnet_header(headers: &[u8], meta: TxMeta) -> [u8; VNET_HDR_LEN] {
    let mut hdr = [0u8; VNET_HDR_LEN];
    if let Some(start) = meta.csum_start {
        hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        hdr[6..8].copy_from_slice(&start.to_ne_bytes());
        hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
        if let Some(size) = meta.tcp_segment_size {
            let tcp_header = headers
                .get(usize::from(start) + 12)
                .map_or(20, |b| usize::from(b >> 4) * 4);
            hdr[1] = if headers.first().map(|b| b >> 4) == Some(6) {
                VIRTIO_NET_HDR_GSO_TCPV6
            } else {
                VIRTIO_NET_HDR_GSO_TCPV4
            };
            let hdr_len = (usize::from(start) + tcp_header) as u16;
            hdr[2..4].copy_from_slice(&hdr_len.to_ne_bytes());
            hdr[4..6].copy_from_slice(&size.to_ne_bytes());
        }
    }
    hdr
}
