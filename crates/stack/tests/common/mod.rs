//! Test devices shared by the API tests.
#![allow(dead_code)]

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use std::net::Ipv4Addr;

use oxcat_stack::{sim_link, Device, LinkConfig, Runtime, SimPort, Stack, StackConfig};

/// A device whose descriptor loses its interface (a TUN deleted under
/// us): once `gone` is set every call fails with EBADFD, and its readiness
/// descriptor reports ready at once (as poll(2) does on a detached TUN).
pub struct Vanishing {
    pub port: SimPort,
    pub gone: Arc<AtomicBool>,
    /// Always readable (a pipe with a byte nobody reads).
    ready: OwnedFd,
    _ready_w: OwnedFd,
}

impl Vanishing {
    pub fn new(port: SimPort, gone: Arc<AtomicBool>) -> Vanishing {
        let mut fds = [0; 2];
        // SAFETY: a two-element array for pipe(2) to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: writing one byte from a live buffer to the fresh pipe.
        assert_eq!(unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) }, 1);
        // SAFETY: both descriptors are fresh from pipe(2) and owned here.
        let (ready, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Vanishing {
            port,
            gone,
            ready,
            _ready_w: w,
        }
    }

    fn check(&self) -> std::io::Result<()> {
        match self.gone.load(Ordering::Relaxed) {
            true => Err(std::io::Error::from_raw_os_error(libc::EBADFD)),
            false => Ok(()),
        }
    }
}

impl Device for Vanishing {
    fn mtu(&self) -> usize {
        self.port.mtu()
    }
    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        self.check()?;
        self.port.receive(now, buf)
    }
    fn transmit(&mut self, now: Instant, packet: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.port.transmit(now, packet)
    }
    fn poll_at(&self) -> Option<Instant> {
        self.port.poll_at()
    }
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        self.gone
            .load(Ordering::Relaxed)
            .then(|| self.ready.as_fd())
    }
}

/// A runtime with stack 0 at `a` on a [`Vanishing`] device (gone when
/// `gone` is set) and stack 1 at `b`, on a clean simulated link.
pub fn vanishing_runtime(gone: Arc<AtomicBool>, seed: u64, a: Ipv4Addr, b: Ipv4Addr) -> Runtime {
    Runtime::start(move || {
        let now = Instant::now();
        let (pa, pb) = sim_link(LinkConfig::default(), seed);
        let cfg = |ip| StackConfig {
            ipv4: Some(ip),
            ..StackConfig::default()
        };
        vec![
            (
                Stack::new(cfg(a), now),
                Box::new(Vanishing::new(pa, gone)) as Box<dyn Device>,
            ),
            (Stack::new(cfg(b), now), Box::new(pb) as Box<dyn Device>),
        ]
    })
    .expect("runtime")
}
