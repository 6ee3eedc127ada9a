//! The kernel's side of every measurement: std::net sockets, each call
//! bounded by a deadline.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::pattern;

/// The longest a single read or write may stall before the run is failed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: timed out"))
}

fn remaining(deadline: Instant, what: &str) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(timed_out(what))
    } else {
        Ok(left)
    }
}

/// Waits up to `timeout` for `fd` to become readable.
pub fn wait_readable(fd: &impl AsRawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd and a valid timespec, both live for the call;
    // no signal mask is passed.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
}

pub fn listen(addr: SocketAddrV4) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// `accept` on a non-blocking listener, waiting at most until `deadline`
/// (or until `stop` is set). Returns a blocking stream with I/O timeouts.
pub fn accept(l: &TcpListener, deadline: Instant, stop: &AtomicBool) -> io::Result<TcpStream> {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(IDLE_TIMEOUT))?;
                s.set_write_timeout(Some(IDLE_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    return Err(io::Error::other("accept: the other side gave up"));
                }
                let left = remaining(deadline, "accept")?;
                wait_readable(l, left.min(Duration::from_millis(10)));
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn connect(addr: SocketAddrV4, nodelay: bool) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(2))?;
    s.set_nodelay(nodelay)?;
    s.set_read_timeout(Some(IDLE_TIMEOUT))?;
    s.set_write_timeout(Some(IDLE_TIMEOUT))?;
    Ok(s)
}

/// Writes `bytes` of the pattern, then shuts down the write side. Returns
/// when the first byte was handed to the kernel.
pub fn send_all(s: &mut TcpStream, bytes: u64, deadline: Instant) -> io::Result<Instant> {
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        remaining(deadline, "kernel send")?;
        let chunk = pattern::slice(sent, bytes - sent);
        let n = s.write(chunk)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write)?;
    Ok(start)
}

/// Reads until EOF; returns the byte count and when EOF was seen. With
/// `check`, every byte is compared with the pattern.
pub fn recv_all(s: &mut TcpStream, check: bool, deadline: Instant) -> io::Result<(u64, Instant)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        remaining(deadline, "kernel receive")?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok((got, Instant::now()));
        }
        if check && !pattern::matches(got, &buf[..n]) {
            return Err(io::Error::other(format!(
                "kernel received wrong bytes near offset {got}"
            )));
        }
        got += n as u64;
    }
}

/// The request/response client: one byte out, one byte back, for `secs`
/// after a warm-up. Returns round trips per second.
pub fn ping_pong(s: &mut TcpStream, warmup: Duration, secs: Duration) -> io::Result<f64> {
    let mut byte = [0u8; 1];
    let mut round_trip = |s: &mut TcpStream| -> io::Result<()> {
        s.write_all(&byte)?;
        s.read_exact(&mut byte)?;
        byte[0] = byte[0].wrapping_add(1);
        Ok(())
    };
    let warm_end = Instant::now() + warmup;
    while Instant::now() < warm_end {
        round_trip(s)?;
    }
    let start = Instant::now();
    let end = start + secs;
    let mut count = 0u64;
    // Clock read once per 64 round trips: cheap against a round trip.
    loop {
        for _ in 0..64 {
            round_trip(s)?;
        }
        count += 64;
        let now = Instant::now();
        if now >= end {
            return Ok(count as f64 / (now - start).as_secs_f64());
        }
    }
}

/// The server side of ping-pong over kernel sockets (veth): echoes until EOF.
pub fn echo(s: &mut TcpStream, deadline: Instant) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        remaining(deadline, "kernel echo")?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

/// Tallies of a connection-rate client.
#[derive(Default)]
pub struct ConnTally {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}

/// Stop after this many failed connections in one run.
pub const MAX_CONN_ERRORS: u64 = 100;

/// One connection-rate client thread: until `end`, connect, shut down the
/// write side, read until the server closes, close. The client closes first,
/// so TIME-WAIT stays on the kernel's side.
pub fn conn_client(to: SocketAddrV4, end: Instant, tally: &ConnTally) {
    let mut buf = [0u8; 64];
    while Instant::now() < end && tally.errors.load(Ordering::Relaxed) < MAX_CONN_ERRORS {
        let one = (|| -> io::Result<()> {
            let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.shutdown(Shutdown::Write)?;
            loop {
                if s.read(&mut buf)? == 0 {
                    return Ok(());
                }
            }
        })();
        match one {
            Ok(()) => tally.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                if tally.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("tunbench: connection to {to} failed: {e}");
                }
                0
            }
        };
    }
}

/// The kernel's connection-rate server (veth): accept, read until EOF, close;
/// one thread, like the userspace stacks' single loop. Ends when `stop` is
/// set or at `deadline`.
pub fn conn_server(l: &TcpListener, deadline: Instant, stop: &AtomicBool) -> io::Result<u64> {
    let mut served = 0u64;
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                while s.read(&mut buf)? > 0 {}
                served += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = remaining(deadline, "kernel connection server")?;
                wait_readable(l, left.min(Duration::from_millis(10)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(served)
}
