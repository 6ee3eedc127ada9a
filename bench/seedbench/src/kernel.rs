//! The kernel's SYN-to-accept on loopback, seen from user space, measured
//! as `oxcat demo` does: from the client's `connect()` call to the
//! server's `accept()` returning, with the server already waiting in
//! `accept` (the SYN arrives within microseconds of the call, so this
//! bounds the notes' figure from above). Loopback of this process's own
//! network namespace; no interface is touched.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `SO_LINGER` zero: `close` sends RST and leaves no TIME-WAIT behind
/// (20 000 of them would crowd the port space).
pub fn linger_zero(fd: &impl AsRawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a `linger` that lives for the call,
    // with its exact size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

pub fn loopback_syn_to_accept(runs: usize, warmup: usize) -> io::Result<Vec<f64>> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel::<Instant>();
    let total = warmup + runs;
    let server = std::thread::spawn(move || -> io::Result<()> {
        for _ in 0..total {
            let (s, _) = listener.accept()?;
            let _ = tx.send(Instant::now());
            drop(s);
        }
        Ok(())
    });
    let mut v = Vec::with_capacity(runs);
    for i in 0..total {
        // Give the server time to be back in accept().
        std::thread::sleep(Duration::from_micros(200));
        let t0 = Instant::now();
        let c = TcpStream::connect(addr)?;
        let t1 = rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| io::Error::other("kernel loopback: the server did not accept"))?;
        if i >= warmup {
            v.push(t1.saturating_duration_since(t0).as_nanos() as f64);
        }
        // The client resets (after its connect returned): no TIME-WAIT on
        // either side. (A server-side RST could race the client's connect.)
        linger_zero(&c);
        drop(c);
    }
    server
        .join()
        .map_err(|_| io::Error::other("kernel loopback: server thread failed"))??;
    Ok(v)
}
