//! The two userspace stacks behind one small trait, each driven by one
//! thread in a loop: poll the stack (TUN in, timers, TUN out), do the
//! application's work, and when neither did anything sleep in ppoll(2) on
//! the TUN descriptor until a packet arrives or the stack's next timer.
//!
//! Both stacks get the same TUN device (`oxcat_stack::Tun::open`: IFF_TUN,
//! IFF_NO_PI, non-blocking) and move packets the same way: one read(2) or
//! write(2) per packet, into and from buffers allocated once. So the
//! comparison is between the stacks, not their device glue.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use oxcat_stack::{Device as _, SocketHandle, Stack, StackConfig, Tun};
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::kernel::wait_readable;
use crate::netns::STACK_TUN;
use crate::pattern;

/// The longest the loop sleeps before it looks at its flags again.
const WAIT_CAP: Duration = Duration::from_millis(10);

/// Settings both stacks get alike.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Send and receive buffer per connection (bytes).
    pub buffer: usize,
    pub mtu: usize,
    /// TCP timestamps (RFC 7323) on both stacks.
    pub timestamps: bool,
}

pub trait UserStack {
    type Sock: Copy;
    type Listener: Copy;
    /// The MSS the kernel's end of the TUN should announce to this stack
    /// (`advmss` on its route), if not the default (MTU - 40).
    fn kernel_advmss(_settings: Settings) -> Option<u16> {
        None
    }
    fn connect(&mut self, remote: SocketAddrV4) -> io::Result<Self::Sock>;
    /// `Ok(true)` once established; an error if the connect failed.
    fn established(&mut self, s: Self::Sock) -> io::Result<bool>;
    /// Listen on our address; `backlog` is the listener's accept queue for
    /// oxcat and the number of listening sockets for smoltcp.
    fn listen(&mut self, port: u16, backlog: usize) -> io::Result<Self::Listener>;
    fn accept(&mut self, l: Self::Listener) -> io::Result<Option<Self::Sock>>;
    fn set_nodelay(&mut self, s: Self::Sock);
    /// Bytes taken (0: the send buffer is full).
    fn send(&mut self, s: Self::Sock, data: &[u8]) -> io::Result<usize>;
    /// `None`: nothing to read yet; `Some(0)`: EOF.
    fn recv(&mut self, s: Self::Sock, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Half close: FIN after what is buffered.
    fn shutdown(&mut self, s: Self::Sock);
    fn close(&mut self, s: Self::Sock);
    /// Packets in, timers, packets out. `true` if anything happened.
    fn poll(&mut self) -> io::Result<bool>;
    /// Sleeps until the TUN is readable or a timer is due, at most `cap`.
    fn wait(&mut self, cap: Duration);
}

// ------------------------------------------------------------------ oxcat

pub struct Ours {
    stack: Stack,
    tun: Tun,
}

/// oxcat's stack with the shared settings; every other setting is its default.
pub fn ours_config(settings: Settings) -> StackConfig {
    let mut config = StackConfig {
        ipv4: Some(STACK_TUN),
        mtu: settings.mtu,
        ..StackConfig::default()
    };
    config.tcp.send_buffer = settings.buffer;
    config.tcp.recv_buffer = settings.buffer;
    config.tcp.timestamps = settings.timestamps;
    config
}

impl Ours {
    pub fn new(tun: Tun, settings: Settings) -> Ours {
        let mut tun = tun;
        tun.set_mtu(settings.mtu);
        let mut stack = Stack::new(ours_config(settings), Instant::now());
        // Before the first connection, so that it uses the device's TSO (a
        // plain TUN has none: then nothing changes).
        stack.use_offloads(tun.offloads());
        Ours { stack, tun }
    }
}

fn would_block<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

impl UserStack for Ours {
    type Sock = SocketHandle;
    type Listener = SocketHandle;

    fn connect(&mut self, remote: SocketAddrV4) -> io::Result<SocketHandle> {
        self.stack
            .tcp_connect(SocketAddr::V4(remote), None, Instant::now())
    }

    fn established(&mut self, s: SocketHandle) -> io::Result<bool> {
        Ok(would_block(self.stack.tcp_connect_result(s))?.is_some())
    }

    fn listen(&mut self, port: u16, backlog: usize) -> io::Result<SocketHandle> {
        self.stack.tcp_listen(
            SocketAddr::new(STACK_TUN.into(), port),
            backlog,
            Instant::now(),
        )
    }

    fn accept(&mut self, l: SocketHandle) -> io::Result<Option<SocketHandle>> {
        Ok(self.stack.tcp_accept(l)?.map(|(h, _)| h))
    }

    fn set_nodelay(&mut self, s: SocketHandle) {
        let _ = self.stack.tcp_set_nodelay(s, true);
    }

    fn send(&mut self, s: SocketHandle, data: &[u8]) -> io::Result<usize> {
        Ok(would_block(self.stack.tcp_send(s, data))?.unwrap_or(0))
    }

    fn recv(&mut self, s: SocketHandle, buf: &mut [u8]) -> io::Result<Option<usize>> {
        would_block(self.stack.tcp_recv(s, buf))
    }

    fn shutdown(&mut self, s: SocketHandle) {
        let _ = self.stack.tcp_shutdown_write(s, Instant::now());
    }

    fn close(&mut self, s: SocketHandle) {
        self.stack.close(s, Instant::now());
    }

    fn poll(&mut self) -> io::Result<bool> {
        self.stack.poll(Instant::now(), &mut self.tun)
    }

    fn wait(&mut self, cap: Duration) {
        let timeout = match self.stack.poll_at() {
            Some(t) => t.saturating_duration_since(Instant::now()).min(cap),
            None => cap,
        };
        if !timeout.is_zero() {
            wait_readable(&self.tun.fd(), timeout);
        }
    }
}

// ------------------------------------------------------------------ smoltcp

/// smoltcp's view of the TUN: read(2) and write(2) of one packet on the
/// descriptor, as `oxcat_stack::Tun` does for oxcat (smoltcp's own
/// `TunTapInterface` allocates a Vec per packet each way; this does not).
pub struct TunPhy {
    tun: Tun,
    rx: Vec<u8>,
    tx: Vec<u8>,
    mtu: usize,
}

pub struct PhyRx<'a> {
    packet: &'a [u8],
}

pub struct PhyTx<'a> {
    tun: &'a Tun,
    buf: &'a mut [u8],
}

/// One packet from the TUN into `buf`; `None` when none is waiting (or on
/// an error: the packet is lost, TCP resends).
fn tun_read(tun: &Tun, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: reads at most `buf.len()` bytes into the live, writable `buf`
    // from the TUN's open descriptor.
    let n = unsafe { libc::read(tun.fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// One packet to the TUN. A full queue or an error loses it, as a wire
/// would (oxcat's `Tun` does the same); TCP resends.
fn tun_write(tun: &Tun, packet: &[u8]) {
    // SAFETY: writes `packet.len()` bytes from the live `packet` to the
    // TUN's open descriptor.
    let _ = unsafe { libc::write(tun.fd().as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
}

impl phy::Device for TunPhy {
    type RxToken<'a> = PhyRx<'a>;
    type TxToken<'a> = PhyTx<'a>;

    fn receive(&mut self, _timestamp: smoltcp::time::Instant) -> Option<(PhyRx<'_>, PhyTx<'_>)> {
        let n = tun_read(&self.tun, &mut self.rx)?;
        Some((
            PhyRx {
                packet: &self.rx[..n],
            },
            PhyTx {
                tun: &self.tun,
                buf: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: smoltcp::time::Instant) -> Option<PhyTx<'_>> {
        Some(PhyTx {
            tun: &self.tun,
            buf: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

impl phy::RxToken for PhyRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.packet)
    }
}

impl phy::TxToken for PhyTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let packet = &mut self.buf[..len];
        let r = f(packet);
        tun_write(self.tun, packet);
        r
    }
}

/// Milliseconds since the first call: smoltcp's TCP timestamp clock.
fn tsval() -> u32 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u32
}

struct PoolEntry {
    handle: smoltcp::iface::SocketHandle,
    handed_out: bool,
    closed_by_app: bool,
}

pub struct Smol {
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: TunPhy,
    epoch: Instant,
    settings: Settings,
    next_port: u16,
    /// Listening sockets (smoltcp has no listener: each socket listens and
    /// becomes the connection), with their port.
    pools: Vec<(u16, Vec<PoolEntry>)>,
}

impl Smol {
    pub fn new(tun: Tun, settings: Settings) -> Smol {
        let epoch = Instant::now();
        let mut dev = TunPhy {
            tun,
            rx: vec![0u8; 65536],
            tx: vec![0u8; 65536],
            mtu: settings.mtu,
        };
        let mut config = IfaceConfig::new(HardwareAddress::Ip);
        config.random_seed = 0x0c0f_fee0;
        let mut iface = Interface::new(config, &mut dev, smoltcp::time::Instant::from_micros(0));
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(STACK_TUN), 24));
        });
        Smol {
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            epoch,
            settings,
            next_port: 40000,
            pools: Vec::new(),
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// A TCP socket with oxcat's settings: the same buffers, CUBIC,
    /// timestamps (RFC 7323), Nagle on until `set_nodelay`.
    fn new_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0u8; self.settings.buffer]);
        let tx = tcp::SocketBuffer::new(vec![0u8; self.settings.buffer]);
        let mut s = tcp::Socket::new(rx, tx);
        s.set_congestion_control(tcp::CongestionControl::Cubic);
        if self.settings.timestamps {
            s.set_tsval_generator(Some(tsval));
        }
        s
    }

    fn socket(&mut self, h: smoltcp::iface::SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }
}

impl UserStack for Smol {
    type Sock = smoltcp::iface::SocketHandle;
    type Listener = usize;

    /// smoltcp 0.12 sizes a data segment as min(peer MSS, MTU - 40) and
    /// forgets its own 12-byte timestamp option: against the kernel's usual
    /// 1460 every full-size packet would be 1512 bytes for the 1500-byte
    /// MTU, which its dispatch drops, so it would move no data at all. With
    /// timestamps on, the kernel announces 1448 to smoltcp instead: its
    /// packets are then 1500 bytes with 1448 of payload, the same as
    /// oxcat's (which takes the option out of the announced 1460 itself, as
    /// Linux does). What the kernel sends is unchanged: 1448-byte payloads
    /// to both, their announced 1460 less its own option.
    fn kernel_advmss(settings: Settings) -> Option<u16> {
        settings.timestamps.then(|| (settings.mtu - 40 - 12) as u16)
    }

    fn connect(&mut self, remote: SocketAddrV4) -> io::Result<Self::Sock> {
        let socket = self.new_socket();
        let h = self.sockets.add(socket);
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        let port = self.next_port;
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        s.connect(
            self.iface.context(),
            (IpAddress::Ipv4(*remote.ip()), remote.port()),
            port,
        )
        .map_err(|e| io::Error::other(format!("smoltcp connect: {e}")))?;
        Ok(h)
    }

    fn established(&mut self, s: Self::Sock) -> io::Result<bool> {
        match self.socket(s).state() {
            tcp::State::SynSent | tcp::State::SynReceived => Ok(false),
            tcp::State::Closed => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
            _ => Ok(true),
        }
    }

    fn listen(&mut self, port: u16, backlog: usize) -> io::Result<usize> {
        let mut pool = Vec::new();
        for _ in 0..backlog.max(1) {
            let mut socket = self.new_socket();
            socket
                .listen(port)
                .map_err(|e| io::Error::other(format!("smoltcp listen: {e}")))?;
            pool.push(PoolEntry {
                handle: self.sockets.add(socket),
                handed_out: false,
                closed_by_app: false,
            });
        }
        self.pools.push((port, pool));
        Ok(self.pools.len() - 1)
    }

    fn accept(&mut self, l: usize) -> io::Result<Option<Self::Sock>> {
        let (port, pool) = &mut self.pools[l];
        let mut found = None;
        for e in pool.iter_mut() {
            let s = self.sockets.get_mut::<tcp::Socket>(e.handle);
            if e.handed_out {
                // A connection the application closed and that has finished
                // goes back to listening.
                if e.closed_by_app && s.state() == tcp::State::Closed {
                    s.listen(*port)
                        .map_err(|e| io::Error::other(format!("smoltcp listen: {e}")))?;
                    e.handed_out = false;
                    e.closed_by_app = false;
                }
                continue;
            }
            match s.state() {
                tcp::State::Listen | tcp::State::SynReceived => {}
                tcp::State::Closed => {
                    // Reset during the handshake: listen again.
                    s.listen(*port)
                        .map_err(|e| io::Error::other(format!("smoltcp listen: {e}")))?;
                }
                _ if found.is_none() => {
                    e.handed_out = true;
                    found = Some(e.handle);
                }
                _ => {}
            }
        }
        Ok(found)
    }

    fn set_nodelay(&mut self, s: Self::Sock) {
        self.socket(s).set_nagle_enabled(false);
    }

    fn send(&mut self, s: Self::Sock, data: &[u8]) -> io::Result<usize> {
        self.socket(s)
            .send_slice(data)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    fn recv(&mut self, s: Self::Sock, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.socket(s).recv_slice(buf) {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(tcp::RecvError::Finished) => Ok(Some(0)),
            Err(tcp::RecvError::InvalidState) => {
                Err(io::Error::from(io::ErrorKind::ConnectionReset))
            }
        }
    }

    fn shutdown(&mut self, s: Self::Sock) {
        self.socket(s).close();
    }

    fn close(&mut self, s: Self::Sock) {
        self.socket(s).close();
        for (_, pool) in &mut self.pools {
            if let Some(e) = pool.iter_mut().find(|e| e.handle == s) {
                e.closed_by_app = true;
            }
        }
    }

    fn poll(&mut self) -> io::Result<bool> {
        let now = self.now();
        let mut worked = self.iface.poll(now, &mut self.dev, &mut self.sockets)
            == PollResult::SocketStateChanged;
        // smoltcp's `poll` sends at most one segment per socket; send the
        // rest of what is ready now, without a read(2) of the TUN between
        // segments (bounded, like oxcat's poll).
        for _ in 0..4096 {
            if self
                .iface
                .poll_egress(now, &mut self.dev, &mut self.sockets)
                == PollResult::None
            {
                break;
            }
            worked = true;
        }
        Ok(worked)
    }

    fn wait(&mut self, cap: Duration) {
        let now = self.now();
        let timeout = match self.iface.poll_delay(now, &self.sockets) {
            Some(d) => Duration::from_micros(d.total_micros()).min(cap),
            None => cap,
        };
        if !timeout.is_zero() {
            wait_readable(&self.dev.tun.fd().as_fd(), timeout);
        }
    }
}

// ------------------------------------------------------------------ the loop

/// CPU time this thread has used (user + system, including the kernel's
/// work done inside its TUN reads and writes).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub enum Flow {
    /// Nothing to do until a packet or a timer.
    Idle,
    /// Made progress: poll again at once.
    Busy,
    Done,
}

/// Polls the stack and runs `app` until it says `Done`, at most until `deadline`.
pub fn drive<S: UserStack>(
    s: &mut S,
    deadline: Instant,
    what: &str,
    mut app: impl FnMut(&mut S) -> io::Result<Flow>,
) -> io::Result<()> {
    loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: timed out"),
            ));
        }
        let polled = s.poll()?;
        match app(s)? {
            Flow::Done => return Ok(()),
            Flow::Busy => {}
            Flow::Idle => {
                if !polled {
                    s.wait(WAIT_CAP);
                }
            }
        }
    }
}

pub fn connect<S: UserStack>(
    s: &mut S,
    remote: SocketAddrV4,
    deadline: Instant,
) -> io::Result<S::Sock> {
    let h = s.connect(remote)?;
    drive(s, deadline, "connect", |s| {
        Ok(if s.established(h)? {
            Flow::Done
        } else {
            Flow::Idle
        })
    })?;
    Ok(h)
}

/// Sends `bytes` of the pattern on `h`, then FIN; keeps the stack running
/// until `stop()` (the kernel has read everything). Returns when the first
/// byte was queued.
pub fn send_all<S: UserStack>(
    s: &mut S,
    h: S::Sock,
    bytes: u64,
    deadline: Instant,
    stop: impl Fn() -> bool,
) -> io::Result<Instant> {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut shut = false;
    drive(s, deadline, "stack send", |s| {
        let mut busy = false;
        while sent < bytes {
            let n = s.send(h, pattern::slice(sent, bytes - sent))?;
            if n == 0 {
                break;
            }
            sent += n as u64;
            busy = true;
        }
        if sent == bytes && !shut {
            s.shutdown(h);
            shut = true;
            busy = true;
        }
        if stop() {
            return Ok(Flow::Done);
        }
        Ok(if busy { Flow::Busy } else { Flow::Idle })
    })?;
    Ok(start)
}

/// Reads `h` until EOF. Returns the byte count and when EOF was seen.
pub fn recv_all<S: UserStack>(
    s: &mut S,
    h: S::Sock,
    check: bool,
    deadline: Instant,
) -> io::Result<(u64, Instant)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let mut end = None;
    drive(s, deadline, "stack receive", |s| {
        let mut busy = false;
        while let Some(n) = s.recv(h, &mut buf)? {
            if n == 0 {
                end = Some(Instant::now());
                return Ok(Flow::Done);
            }
            if check && !pattern::matches(got, &buf[..n]) {
                return Err(io::Error::other(format!(
                    "stack received wrong bytes near offset {got}"
                )));
            }
            got += n as u64;
            busy = true;
        }
        Ok(if busy { Flow::Busy } else { Flow::Idle })
    })?;
    Ok((got, end.unwrap_or_else(Instant::now)))
}

/// Echoes every byte on the first connection `l` accepts until `stop()`.
/// Returns how many bytes it echoed.
pub fn echo<S: UserStack>(
    s: &mut S,
    l: S::Listener,
    deadline: Instant,
    stop: impl Fn() -> bool,
) -> io::Result<u64> {
    let mut echoed = 0u64;
    let mut conn = None;
    let mut buf = [0u8; 256];
    let mut pending: Vec<u8> = Vec::new();
    drive(s, deadline, "stack echo", |s| {
        let mut busy = false;
        if conn.is_none() {
            conn = s.accept(l)?;
            if let Some(h) = conn {
                s.set_nodelay(h);
                busy = true;
            }
        }
        if let Some(h) = conn {
            while let Some(n) = s.recv(h, &mut buf)? {
                if n == 0 {
                    s.close(h);
                    conn = None;
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                busy = true;
            }
            if let (Some(h), false) = (conn, pending.is_empty()) {
                let n = s.send(h, &pending)?;
                pending.drain(..n);
                echoed += n as u64;
            }
        }
        if stop() {
            return Ok(Flow::Done);
        }
        Ok(if busy { Flow::Busy } else { Flow::Idle })
    })?;
    Ok(echoed)
}

/// Serves short connections until `stop()`: accept, read until EOF, close.
/// Returns how many were served.
pub fn serve_conns<S: UserStack>(
    s: &mut S,
    l: S::Listener,
    deadline: Instant,
    stop: impl Fn() -> bool,
) -> io::Result<u64> {
    let mut open: Vec<S::Sock> = Vec::new();
    let mut served = 0u64;
    let mut buf = [0u8; 256];
    drive(s, deadline, "stack connection server", |s| {
        let mut busy = false;
        while let Some(h) = s.accept(l)? {
            open.push(h);
            busy = true;
        }
        let mut i = 0;
        while i < open.len() {
            let h = open[i];
            match s.recv(h, &mut buf) {
                Ok(None) => i += 1,
                Ok(Some(n)) if n > 0 => busy = true,
                // EOF or reset: done with it.
                _ => {
                    s.close(h);
                    open.swap_remove(i);
                    served += 1;
                    busy = true;
                }
            }
        }
        if stop() {
            return Ok(Flow::Done);
        }
        Ok(if busy { Flow::Busy } else { Flow::Idle })
    })?;
    Ok(served)
}
