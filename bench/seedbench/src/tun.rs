//! Our stack over a Linux TUN device with the real kernel as the peer, in a
//! private network namespace this process makes (`unshare(CLONE_NEWNET)`
//! on a thread; gone when the thread ends): TUN `oxt0`, kernel
//! 198.18.0.1/24, our stack 198.18.0.2. The kernel's side is std::net
//! sockets on threads spawned from the namespace thread (so in the same
//! namespace). Nothing outside that namespace is touched; every wait is
//! bounded.
//!
//! Our stack is driven the usual way: poll, do the application's work, and
//! when nothing happened sleep in ppoll(2) on the TUN until a packet comes
//! or the stack's next timer (at most 10 ms).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxcat_stack::{Device, SocketHandle, Stack, StackConfig, Tun};
use oxcat_trace::{Direction, Event};

use crate::timed::{stack_own_ns, Timed};

pub const TUN_NAME: &str = "oxt0";
pub const KERNEL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// The longest any single step may take before the run is failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the driver sleeps before it looks again.
const WAIT_CAP: Duration = Duration::from_millis(10);

fn current_netns() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

fn sh(args: &[&str]) -> io::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `f` on a new thread in a fresh private network namespace holding
/// TUN `oxt0` (kernel 198.18.0.1/24, up, IPv6 off so the kernel sends
/// nothing of its own) and an up loopback. Threads `f` spawns share the
/// namespace. Before any `ip` command the thread checks it really is in a
/// new namespace, so a failed `unshare` cannot touch the original one.
pub fn with_tun<T: Send>(
    offloaded: bool,
    f: impl FnOnce(Tun) -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let before = current_netns()?;
                // SAFETY: unshare(CLONE_NEWNET) changes only this thread's
                // network namespace; it takes no pointers.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::other(format!(
                        "unshare(CLONE_NEWNET): {}",
                        io::Error::last_os_error()
                    )));
                }
                if current_netns()? == before {
                    return Err(io::Error::other("still in the original network namespace"));
                }
                sh(&["ip", "link", "set", "lo", "up"])?;
                let tun = if offloaded {
                    Tun::open_offloaded(TUN_NAME)?
                } else {
                    Tun::open(TUN_NAME)?
                };
                // No IPv6 on the TUN: no router solicitations or MLD reports
                // landing in a measured poll. (Absent if IPv6 is off anyway.)
                let _ = std::fs::write(
                    format!("/proc/sys/net/ipv6/conf/{TUN_NAME}/disable_ipv6"),
                    "1",
                );
                sh(&[
                    "ip",
                    "addr",
                    "add",
                    &format!("{KERNEL}/24"),
                    "dev",
                    TUN_NAME,
                ])?;
                sh(&["ip", "link", "set", TUN_NAME, "up"])?;
                f(tun)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// Waits until the TUN is readable, at most `timeout`.
fn wait_readable(fd: &impl AsRawFd, timeout: Duration) {
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

fn new_stack() -> Stack {
    Stack::new(
        StackConfig {
            ipv4: Some(OURS),
            ..StackConfig::default()
        },
        Instant::now(),
    )
}

/// Sleeps on the TUN until a packet or the stack's next timer.
fn idle(stack: &Stack, dev: &Timed<Tun>) {
    let wait = stack
        .poll_at()
        .map_or(WAIT_CAP, |t| t.saturating_duration_since(Instant::now()))
        .min(WAIT_CAP);
    if !wait.is_zero() {
        wait_readable(&dev.inner.fd(), wait);
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("TUN: {what}: timed out"))
}

/// How a handshake pass runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pass {
    /// Nothing extra: the latencies and the processing including the TUN's system calls.
    Plain,
    /// The device's calls timed, for the stack's own share of the processing.
    DeviceTimed,
    /// The stack's trace on: the SYN's instant as the trace gives it.
    Traced,
}

/// Per handshake, nanoseconds.
#[derive(Default)]
pub struct Handshakes {
    /// From the poll that took in the SYN (its `now`, which is the instant
    /// the stack's trace gives the SYN) to our `accept` returning.
    pub syn_to_accept: Vec<f64>,
    /// From the kernel client's `connect()` call to our `accept` returning.
    pub connect_to_accept: Vec<f64>,
    /// Time inside `Stack::poll` from the poll that took in the SYN to the
    /// one that took in the final ACK, plus the `accept` that returned the
    /// connection (Plain: TUN reads and writes included).
    pub processing: Vec<f64>,
    /// The same less the time inside the device's calls (DeviceTimed only).
    pub processing_own: Vec<f64>,
    /// Polls from SYN to accept, summed over the runs.
    pub polls: u64,
    /// Traced: runs where the trace's SYN instant was the poll's `now`.
    pub trace_agrees: u64,
}

/// `runs` handshakes (after `warmup`) of a kernel client thread
/// (`connect()` to 198.18.0.2:`port`) with our listener. After each accept
/// our side resets the connection (RST), untimed; the client closes its
/// socket before its next connect.
pub fn handshakes(
    dev: &mut Timed<Tun>,
    pass: Pass,
    runs: usize,
    warmup: usize,
    port: u16,
    clock_ns: f64,
) -> io::Result<Handshakes> {
    let mut stack = new_stack();
    if pass == Pass::Traced {
        stack.set_tracing(true);
    }
    dev.set_timing(pass == Pass::DeviceTimed);
    let listener = stack.tcp_listen(SocketAddr::from((OURS, port)), 128, Instant::now())?;
    let target = SocketAddr::from((OURS, port));
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let (res_tx, res_rx) = mpsc::channel::<io::Result<Instant>>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut previous: Option<TcpStream> = None;
            while let Ok(true) = go_rx.recv() {
                drop(previous.take());
                let t0 = Instant::now();
                match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                    Ok(s) => {
                        previous = Some(s);
                        let _ = res_tx.send(Ok(t0));
                    }
                    Err(e) => {
                        let _ = res_tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        let r = drive_handshakes(
            &mut stack, dev, listener, pass, runs, warmup, clock_ns, &go_tx, &res_rx,
        );
        let _ = go_tx.send(false);
        r
    })
}

#[allow(clippy::too_many_arguments)]
fn drive_handshakes(
    stack: &mut Stack,
    dev: &mut Timed<Tun>,
    listener: SocketHandle,
    pass: Pass,
    runs: usize,
    warmup: usize,
    clock_ns: f64,
    go: &mpsc::Sender<bool>,
    connected: &mpsc::Receiver<io::Result<Instant>>,
) -> io::Result<Handshakes> {
    let mut out = Handshakes::default();
    for i in 0..warmup + runs {
        go.send(true)
            .map_err(|_| io::Error::other("TUN: the kernel client thread ended"))?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut syn_at: Option<Instant> = None;
        let (mut poll_ns, mut device_ns, mut calls, mut polls) = (0u64, 0u64, 0u64, 0u64);
        let (h, accept_ns, accepted_at) = loop {
            if Instant::now() > deadline {
                return Err(timed_out("waiting for a handshake"));
            }
            let (dev_before, calls_before) = (dev.device_ns, dev.calls);
            dev.syn_in = false;
            let now = Instant::now();
            let worked = stack.poll(now, dev)?;
            let polled = Instant::now();
            if dev.syn_in && syn_at.is_none() {
                syn_at = Some(now);
            }
            if syn_at.is_some() {
                poll_ns += (polled - now).as_nanos() as u64;
                device_ns += dev.device_ns - dev_before;
                calls += dev.calls - calls_before;
                polls += 1;
            }
            let a0 = Instant::now();
            let accepted = stack.tcp_accept(listener)?;
            let a1 = Instant::now();
            if let Some((h, _)) = accepted {
                break (h, (a1 - a0).as_nanos() as u64, a1);
            }
            if !worked {
                idle(stack, dev);
            }
        };
        let syn_at = syn_at.ok_or_else(|| io::Error::other("TUN: accepted without a SYN seen"))?;
        let called = connected
            .recv_timeout(STEP_TIMEOUT)
            .map_err(|_| timed_out("the kernel's connect()"))??;
        let trace = stack.take_trace();
        if i >= warmup {
            out.syn_to_accept
                .push(accepted_at.saturating_duration_since(syn_at).as_nanos() as f64);
            out.connect_to_accept
                .push(accepted_at.saturating_duration_since(called).as_nanos() as f64);
            let processing = (poll_ns + accept_ns) as f64;
            out.processing.push(processing);
            if pass == Pass::DeviceTimed {
                out.processing_own.push(stack_own_ns(
                    processing,
                    device_ns as f64,
                    calls as f64,
                    clock_ns,
                ));
            }
            out.polls += polls;
            if pass == Pass::Traced {
                let traced_syn = trace.iter().find_map(|(t, e)| match e {
                    Event::Segment(s) if s.dir == Direction::In && s.flags & 0x12 == 0x02 => {
                        Some(*t)
                    }
                    _ => None,
                });
                if traced_syn == Some(syn_at) {
                    out.trace_agrees += 1;
                }
                if let Some(t) = traced_syn {
                    // The traced figure is the trace's own SYN instant to accept.
                    if let Some(last) = out.syn_to_accept.last_mut() {
                        *last = accepted_at.saturating_duration_since(t).as_nanos() as f64;
                    }
                }
            }
        }
        stack.tcp_close_reset(h, Instant::now());
        stack.poll(Instant::now(), dev)?;
    }
    Ok(out)
}

/// Per-packet cost of a bulk transfer over the TUN, one value per block of
/// `BLOCK` packets, nanoseconds per packet.
#[derive(Default)]
pub struct Bulk {
    /// Time inside `Stack::poll` per packet (TUN reads and writes included).
    pub per_packet: Vec<f64>,
    /// The same less the device's calls (only when the device is timed).
    pub own_per_packet: Vec<f64>,
    pub packets: u64,
    /// Polls in the counted part (empty ones included).
    pub polls: u64,
    pub bytes: u64,
    pub seconds: f64,
}

const BLOCK: u64 = 256;

/// What a bulk transfer counts per poll: IP packets, or full-size
/// segments' worth of payload (`PAYLOAD` bytes each) when the device
/// carries segments of up to 64 KB (offloads: the kernel cuts and joins).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Packets,
    FullSegments,
}

/// Payload of a full-size segment on this link: MTU 1500 less the IPv4
/// and TCP headers and the timestamps option.
pub const PAYLOAD: u64 = 1448;

/// Turns payload bytes into full segments, carrying the remainder over.
#[derive(Default)]
struct SegmentsOf {
    bytes: u64,
}

impl SegmentsOf {
    fn add(&mut self, bytes: u64) -> u64 {
        self.bytes += bytes;
        let whole = self.bytes / PAYLOAD;
        self.bytes %= PAYLOAD;
        whole
    }
}

/// What one poll took: its time, the device's share, the device calls.
#[derive(Clone, Copy)]
struct PollTime {
    worked: bool,
    poll_ns: u64,
    device_ns: u64,
    calls: u64,
}

/// Sums polls into blocks of `BLOCK` packets.
struct BlockCounter {
    counting: bool,
    timed: bool,
    clock_ns: f64,
    poll_ns: u64,
    device_ns: u64,
    calls: u64,
    packets: u64,
}

impl BlockCounter {
    fn new(timed: bool, clock_ns: f64) -> BlockCounter {
        BlockCounter {
            counting: false,
            timed,
            clock_ns,
            poll_ns: 0,
            device_ns: 0,
            calls: 0,
            packets: 0,
        }
    }

    fn add(&mut self, out: &mut Bulk, t: PollTime, packets: u64) {
        let PollTime {
            poll_ns,
            device_ns,
            calls,
            ..
        } = t;
        if !self.counting {
            return;
        }
        self.poll_ns += poll_ns;
        self.device_ns += device_ns;
        self.calls += calls;
        self.packets += packets;
        out.packets += packets;
        out.polls += 1;
        if self.packets >= BLOCK {
            let n = self.packets as f64;
            out.per_packet.push(self.poll_ns as f64 / n);
            if self.timed {
                out.own_per_packet.push(
                    stack_own_ns(
                        self.poll_ns as f64,
                        self.device_ns as f64,
                        self.calls as f64,
                        self.clock_ns,
                    ) / n,
                );
            }
            (self.poll_ns, self.device_ns, self.calls, self.packets) = (0, 0, 0, 0);
        }
    }
}

/// One poll, timed.
fn timed_poll(stack: &mut Stack, dev: &mut Timed<Tun>) -> io::Result<PollTime> {
    let (dev_before, calls_before) = (dev.device_ns, dev.calls);
    let now = Instant::now();
    let worked = stack.poll(now, dev)?;
    let poll_ns = now.elapsed().as_nanos() as u64;
    Ok(PollTime {
        worked,
        poll_ns,
        device_ns: dev.device_ns - dev_before,
        calls: dev.calls - calls_before,
    })
}

/// The kernel sends `bytes` to our listener on `port`; per packet our stack
/// takes in (receive, in-order delivery, ACKs). The first quarter is not counted.
pub fn bulk_receive(
    dev: &mut Timed<Tun>,
    timed: bool,
    count: Count,
    bytes: usize,
    port: u16,
    clock_ns: f64,
) -> io::Result<Bulk> {
    let mut stack = new_stack();
    // Before the first connection, so it uses the device's offloads (if any).
    stack.use_offloads(dev.offloads());
    dev.set_timing(timed);
    let listener = stack.tcp_listen(SocketAddr::from((OURS, port)), 8, Instant::now())?;
    let target = SocketAddr::from((OURS, port));
    std::thread::scope(|scope| {
        let sender = scope.spawn(move || -> io::Result<()> {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            s.set_write_timeout(Some(STEP_TIMEOUT))?;
            s.set_read_timeout(Some(STEP_TIMEOUT))?;
            let chunk = vec![0x5au8; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                s.write_all(&chunk[..n])?;
                left -= n;
            }
            s.shutdown(Shutdown::Write)?;
            let mut sink = [0u8; 64];
            while s.read(&mut sink)? > 0 {}
            Ok(())
        });
        let mut out = Bulk::default();
        let mut counter = BlockCounter::new(timed, clock_ns);
        let mut buf = vec![0u8; 256 * 1024];
        let mut conn = None;
        let mut got = 0usize;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        let mut eof = false;
        let mut segments_of = SegmentsOf::default();
        while !eof {
            if Instant::now() > deadline {
                return Err(timed_out("bulk receive"));
            }
            let before = stack.stats().packets_in;
            let t = timed_poll(&mut stack, dev)?;
            let packets = match count {
                Count::Packets => stack.stats().packets_in - before,
                // Everything the poll delivered is readable now (the
                // application reads it all below, after every poll).
                Count::FullSegments => segments_of.add(
                    conn.and_then(|h| stack.tcp_connection(h))
                        .map_or(0, |c| c.readable_len() as u64),
                ),
            };
            counter.add(&mut out, t, packets);
            if conn.is_none() {
                conn = stack.tcp_accept(listener)?.map(|(h, _)| h);
            }
            let mut read_any = false;
            if let Some(h) = conn {
                loop {
                    match stack.tcp_recv(h, &mut buf) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => {
                            got += n;
                            read_any = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            counter.counting = got >= bytes / 4;
            if !t.worked && !read_any {
                idle(&stack, dev);
            }
        }
        out.seconds = started.elapsed().as_secs_f64();
        out.bytes = got as u64;
        if got != bytes {
            return Err(io::Error::other(format!(
                "TUN bulk receive: {got} of {bytes} bytes"
            )));
        }
        if let Some(h) = conn {
            stack.close(h, Instant::now());
        }
        let end = Instant::now() + STEP_TIMEOUT;
        while !sender.is_finished() && Instant::now() < end {
            let t = timed_poll(&mut stack, dev)?;
            if !t.worked {
                idle(&stack, dev);
            }
        }
        sender
            .join()
            .map_err(|_| io::Error::other("TUN: the kernel sender panicked"))??;
        Ok(out)
    })
}

/// Our stack sends `bytes` to a kernel listener on 198.18.0.1:`port`; per
/// packet our stack sends (segments out, ACKs in). The first quarter is not counted.
pub fn bulk_send(
    dev: &mut Timed<Tun>,
    timed: bool,
    count: Count,
    bytes: usize,
    port: u16,
    clock_ns: f64,
) -> io::Result<Bulk> {
    let mut stack = new_stack();
    // Before the first connection, so it uses the device's offloads (if any).
    stack.use_offloads(dev.offloads());
    dev.set_timing(timed);
    let kernel_listener = TcpListener::bind((KERNEL, port))?;
    kernel_listener.set_nonblocking(true)?;
    std::thread::scope(|scope| {
        let receiver = scope.spawn(move || -> io::Result<u64> {
            let end = Instant::now() + STEP_TIMEOUT;
            let mut s = loop {
                match kernel_listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if Instant::now() > end {
                            return Err(timed_out("kernel accept"));
                        }
                        wait_readable(&kernel_listener, Duration::from_millis(10));
                    }
                    Err(e) => return Err(e),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(STEP_TIMEOUT))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                total += n as u64;
            }
        });
        let c = stack.tcp_connect(SocketAddr::from((KERNEL, port)), None, Instant::now())?;
        let data = vec![0x5au8; 256 * 1024];
        let mut out = Bulk::default();
        let mut counter = BlockCounter::new(timed, clock_ns);
        let mut sent = 0usize;
        let mut shut = false;
        let mut segments_of = SegmentsOf::default();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        while !receiver.is_finished() {
            if Instant::now() > deadline {
                return Err(timed_out("bulk send"));
            }
            let mut queued_any = false;
            if sent < bytes && stack.tcp_connect_result(c).is_ok() {
                while sent < bytes {
                    match stack.tcp_send(c, &data[..data.len().min(bytes - sent)]) {
                        Ok(n) if n > 0 => {
                            sent += n;
                            queued_any = true;
                        }
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            if sent >= bytes && !shut {
                stack.tcp_shutdown_write(c, Instant::now())?;
                shut = true;
            }
            counter.counting = sent >= bytes / 4 && !shut;
            let before = stack.stats().packets_out;
            // Bytes the peer has acknowledged so far: what left the send buffer.
            let acked = |stack: &mut Stack| {
                stack
                    .tcp_connection(c)
                    .map_or(0, |conn| sent as u64 - conn.send_queued() as u64)
            };
            let acked_before = acked(&mut stack);
            let t = timed_poll(&mut stack, dev)?;
            let packets = match count {
                Count::Packets => stack.stats().packets_out - before,
                Count::FullSegments => segments_of.add(acked(&mut stack) - acked_before),
            };
            counter.add(&mut out, t, packets);
            if !t.worked && !queued_any {
                idle(&stack, dev);
            }
        }
        out.seconds = started.elapsed().as_secs_f64();
        let received = receiver
            .join()
            .map_err(|_| io::Error::other("TUN: the kernel receiver panicked"))??;
        out.bytes = received;
        if received != bytes as u64 {
            return Err(io::Error::other(format!(
                "TUN bulk send: the kernel read {received} of {bytes} bytes"
            )));
        }
        stack.close(c, Instant::now());
        for _ in 0..3 {
            stack.poll(Instant::now(), dev)?;
        }
        Ok(out)
    })
}
