//! A Linux TUN device: the kernel hands us the IP packets it routes to the
//! interface and takes the ones we write, so the real Linux TCP/IP stack is
//! the peer of ours. Layer 3, `IFF_NO_PI`: each read or write is one packet.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Instant;

use crate::device::Device;

const IFNAMSIZ: usize = 16;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
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
}

impl Tun {
    /// Opens (creating if needed) the TUN interface `name`. Needs
    /// CAP_NET_ADMIN; the caller configures addresses and brings it up.
    pub fn open(name: &str) -> io::Result<Tun> {
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
            flags: IFF_TUN | IFF_NO_PI,
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
        Ok(Tun {
            file,
            name: name.to_string(),
            mtu: 1500,
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

impl Device for Tun {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn receive(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn transmit(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        match self.file.write(packet) {
            Ok(_) => Ok(()),
            // A full queue drops the packet, as a wire would; TCP resends.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}
