//! A blocking socket API shaped like `std::net` (`TcpListener`,
//! `TcpStream`, `UdpSocket`), usable from many threads, all driven by one
//! stack thread.
//!
//! The stack thread owns the devices; the stacks sit behind one mutex.
//! Each socket call locks, tries the non-blocking operation, and if it would
//! block waits on a condition variable that the stack thread signals after
//! every round of packets and timers. Calls that queue work (a send, a
//! close) wake the stack thread through a pipe so it goes out at once.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::device::Device;
use crate::stack::{SocketHandle, Stack};

pub(crate) struct Shared {
    pub(crate) stacks: Vec<Stack>,
    stop: bool,
    /// Rounds the stack thread has run (see [`Runtime::rounds`]).
    rounds: u64,
    /// Async tasks waiting for progress; all are woken after each round
    /// (a spurious wake costs one more try, never a lost one).
    pub(crate) wakers: Vec<std::task::Waker>,
    /// Per stack: its device went away (the descriptor no longer reaches
    /// an interface). The stack is no longer polled; a call on it that
    /// would wait, or that would send, fails with this.
    failed: Vec<Option<Failed>>,
}

/// Why a stack's device was given up on (its error, kept to hand out).
#[derive(Debug, Clone)]
struct Failed {
    os: Option<i32>,
    kind: io::ErrorKind,
    text: String,
}

impl Failed {
    fn of(e: &io::Error) -> Failed {
        Failed {
            os: e.raw_os_error(),
            kind: e.kind(),
            text: e.to_string(),
        }
    }

    fn error(&self) -> io::Error {
        match self.os {
            Some(n) => io::Error::from_raw_os_error(n),
            None => io::Error::new(self.kind, self.text.clone()),
        }
    }
}

impl Shared {
    /// The error of `stack`'s device if it went away: what a call that
    /// would wait gets instead (bytes already received are still read
    /// first), and a send at once (its bytes could never leave).
    pub(crate) fn failure(&self, stack: StackId) -> Option<io::Error> {
        self.failed.get(stack.0)?.as_ref().map(Failed::error)
    }
}

/// A device error that no later poll can get past: the descriptor is
/// detached from its interface (a TUN whose interface was deleted answers
/// EBADFD to every read and write, and poll(2) reports it ready at once,
/// so polling on would spin) or refers to nothing.
fn device_is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::EBADF)
    )
}

pub(crate) struct Inner {
    shared: Mutex<Shared>,
    /// Signalled after every round of the stack thread.
    progressed: Condvar,
    /// Writing a byte here wakes the stack thread.
    wake_tx: OwnedFd,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn wake(&self) {
        // A full pipe already means "wake up", so the result does not matter.
        // SAFETY: writing one byte from a live buffer to a descriptor we own.
        let _ = unsafe { libc::write(self.wake_tx.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }
}

/// The stack thread and the stacks it drives.
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

/// Which of the runtime's stacks a socket lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackId(pub usize);

impl Runtime {
    /// Starts the stack thread. `make` runs on that thread and returns the
    /// stacks with their devices (devices need not be `Send`: a simulated
    /// link's two ends share state and stay on the stack thread).
    pub fn start<F>(make: F) -> io::Result<Runtime>
    where
        F: FnOnce() -> Vec<(Stack, Box<dyn Device>)> + Send + 'static,
    {
        let (wake_rx, wake_tx) = pipe_nonblocking()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                stacks: Vec::new(),
                stop: false,
                rounds: 0,
                wakers: Vec::new(),
                failed: Vec::new(),
            }),
            progressed: Condvar::new(),
            wake_tx,
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("oxcat-stack".into())
            .spawn(move || {
                let pairs = make();
                let mut devices = Vec::new();
                {
                    let mut g = thread_inner.lock();
                    for (mut stack, dev) in pairs {
                        stack.use_offloads(dev.offloads());
                        g.stacks.push(stack);
                        g.failed.push(None);
                        devices.push(dev);
                    }
                }
                let _ = ready_tx.send(());
                run(&thread_inner, devices, wake_rx);
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the stack thread did not start"))?;
        Ok(Runtime {
            inner,
            thread: Some(thread),
        })
    }

    /// How many rounds (poll every stack, signal the waiters) the stack
    /// thread has run: one per packet burst, due timer or socket call that
    /// queued work, plus a tick every 100 ms when idle. A count that climbs
    /// fast while nothing happens means something is spinning.
    pub fn rounds(&self) -> u64 {
        self.inner.lock().rounds
    }

    /// The error of `stack`'s device if it went away (a TUN whose
    /// interface was deleted): that stack is then no longer polled (nothing
    /// more is sent or received on it; the others go on), and a call on
    /// it that would wait, or that would send, returns this error.
    pub fn failure(&self, stack: StackId) -> Option<io::Error> {
        self.inner.lock().failure(stack)
    }

    /// Waits until `stack`'s device goes away (returning its error, as
    /// [`failure`](Runtime::failure)) or the runtime is dropped (None).
    pub fn wait_failure(&self, stack: StackId) -> Option<io::Error> {
        let mut g = self.inner.lock();
        loop {
            if let Some(e) = g.failure(stack) {
                return Some(e);
            }
            if g.stop {
                return None;
            }
            g = self
                .inner
                .progressed
                .wait_timeout(g, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Runs `f` on a stack, under the lock (for calls the blocking API does not wrap).
    pub fn with_stack<T>(&self, id: StackId, f: impl FnOnce(&mut Stack) -> T) -> T {
        let mut g = self.inner.lock();
        let r = f(&mut g.stacks[id.0]);
        drop(g);
        self.inner.wake();
        r
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.inner.lock().stop = true;
        self.inner.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we now own.
    unsafe {
        use std::os::fd::FromRawFd;
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// The stack thread: poll every stack, signal waiters, sleep until a device
/// is readable, a timer is due, or a socket call wakes us.
fn run(inner: &Inner, mut devices: Vec<Box<dyn Device>>, wake_rx: OwnedFd) {
    let mut drain = [0u8; 64];
    loop {
        let next = {
            let mut g = inner.lock();
            if g.stop {
                return;
            }
            g.rounds += 1;
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let Shared { stacks, failed, .. } = &mut *g;
            for ((stack, dev), failed) in stacks.iter_mut().zip(devices.iter_mut()).zip(failed) {
                if failed.is_some() {
                    continue;
                }
                // A device error ends nothing (the packet is lost, TCP
                // resends) unless the device is gone for good: then this
                // stack is polled no more.
                if let Err(e) = stack.poll(now, dev.as_mut()) {
                    if device_is_gone(&e) {
                        *failed = Some(Failed::of(&e));
                        continue;
                    }
                }
                for t in [stack.poll_at(), dev.poll_at()].into_iter().flatten() {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            }
            inner.progressed.notify_all();
            for w in g.wakers.drain(..) {
                w.wake();
            }
            next
        };
        let timeout = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100));
        if timeout.is_zero() {
            continue;
        }
        let gone: Vec<bool> = inner.lock().failed.iter().map(Option::is_some).collect();
        let mut fds: Vec<libc::pollfd> = devices
            .iter()
            .zip(gone)
            // A device that went away is always "ready": left out.
            .filter(|(_, gone)| !gone)
            .filter_map(|(d, _)| d.readiness_fd())
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        fds.push(libc::pollfd {
            fd: wake_rx.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let ms = timeout.as_millis().clamp(1, 100) as i32;
        // SAFETY: `fds` is a valid array of initialised pollfd for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        // SAFETY: reading into a live buffer of the given length from a descriptor we own.
        while unsafe { libc::read(wake_rx.as_raw_fd(), drain.as_mut_ptr().cast(), drain.len()) } > 0
        {
        }
    }
}

/// Waits (on the stack thread's signal) until `op` stops saying WouldBlock.
fn blocking<T>(
    inner: &Inner,
    stack: StackId,
    op: impl FnMut(&mut Shared) -> io::Result<T>,
) -> io::Result<T> {
    blocking_until(inner, stack, None, op)
}

/// [`blocking`] that gives up at `deadline` with the WouldBlock `op` last
/// said (what a socket timeout gives on Unix: EAGAIN).
fn blocking_until<T>(
    inner: &Inner,
    stack: StackId,
    deadline: Option<Instant>,
    mut op: impl FnMut(&mut Shared) -> io::Result<T>,
) -> io::Result<T> {
    let mut g = inner.lock();
    let mut woken = false;
    loop {
        match op(&mut g) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(gone) = g.failure(stack) {
                    return Err(gone);
                }
                let mut wait = Duration::from_millis(50);
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        drop(g);
                        return Err(e);
                    }
                    wait = wait.min(left);
                }
                // Once, for whatever the first try queued. Waking the stack
                // thread on every try made the two ping-pong (its round
                // signals us, we wake it again): an idle listener or a
                // connect left unanswered spun a CPU. Its own rounds (a
                // packet, a timer, another call's wake, or its 100 ms
                // tick) signal us from then on.
                if !woken {
                    inner.wake();
                    woken = true;
                }
                g = inner
                    .progressed
                    .wait_timeout(g, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            other => {
                drop(g);
                inner.wake();
                return other;
            }
        }
    }
}

pub struct TcpListener {
    inner: Arc<Inner>,
    stack: StackId,
    handle: SocketHandle,
}

impl TcpListener {
    pub fn bind(
        rt: &Runtime,
        stack: StackId,
        addr: SocketAddr,
        backlog: usize,
    ) -> io::Result<TcpListener> {
        let handle = rt.with_stack(stack, |s| s.tcp_listen(addr, backlog, Instant::now()))?;
        Ok(TcpListener {
            inner: rt.inner.clone(),
            stack,
            handle,
        })
    }

    /// The listening socket in its stack's table.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    /// [`accept`](TcpListener::accept) that gives up with `WouldBlock` after `timeout`.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<(TcpStream, SocketAddr)> {
        self.accept_until(Some(Instant::now() + timeout))
    }

    /// Blocks until a connection is established (the stack did the handshake).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.accept_until(None)
    }

    fn accept_until(&self, deadline: Option<Instant>) -> io::Result<(TcpStream, SocketAddr)> {
        let (h, from) = blocking_until(&self.inner, self.stack, deadline, |g| {
            match g.stacks[self.stack.0].tcp_accept(self.handle)? {
                Some(x) => Ok(x),
                None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            }
        })?;
        Ok((
            TcpStream {
                inner: self.inner.clone(),
                stack: self.stack,
                handle: h,
            },
            from,
        ))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.inner.lock().stacks[self.stack.0].close(self.handle, Instant::now());
        self.inner.wake();
    }
}

pub struct TcpStream {
    inner: Arc<Inner>,
    stack: StackId,
    handle: SocketHandle,
}

impl TcpStream {
    /// Connects, blocking until the handshake completes or fails
    /// (`ConnectionRefused`, `TimedOut`).
    pub fn connect(rt: &Runtime, stack: StackId, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_until(rt, stack, addr, None)
    }

    /// Connects, giving up with `TimedOut` after `timeout` (the connection
    /// attempt is then reset).
    pub fn connect_timeout(
        rt: &Runtime,
        stack: StackId,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        TcpStream::connect_until(rt, stack, addr, Some(Instant::now() + timeout))
    }

    fn connect_until(
        rt: &Runtime,
        stack: StackId,
        addr: SocketAddr,
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        let handle = rt.with_stack(stack, |s| s.tcp_connect(addr, None, Instant::now()))?;
        let stream = TcpStream {
            inner: rt.inner.clone(),
            stack,
            handle,
        };
        match blocking_until(&stream.inner, stack, deadline, |g| {
            g.stacks[stack.0].tcp_connect_result(handle)
        }) {
            Ok(()) => Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stream.inner.lock().stacks[stack.0].tcp_close_reset(handle, Instant::now());
                Err(io::Error::from(io::ErrorKind::TimedOut))
            }
            Err(e) => Err(e),
        }
    }

    /// The connection's socket in its stack's table.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.lock().stacks[self.stack.0]
            .tcp_endpoints(self.handle)
            .map(|t| t.remote)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.lock().stacks[self.stack.0]
            .tcp_endpoints(self.handle)
            .map(|t| t.local)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Blocks until every byte written (and a FIN, after `shutdown_write`)
    /// has been acknowledged by the peer, the connection ended, or `timeout`
    /// passed (then `TimedOut`). What a lingering close waits for.
    pub fn wait_sent(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let r = blocking_until(&self.inner, self.stack, Some(deadline), |g| {
            match g.stacks[self.stack.0].tcp_connection(self.handle) {
                Some(c) if c.send_queued() > 0 => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                Some(c)
                    if matches!(
                        c.state(),
                        oxcat_tcp::State::FinWait1
                            | oxcat_tcp::State::Closing
                            | oxcat_tcp::State::LastAck
                    ) =>
                {
                    Err(io::Error::from(io::ErrorKind::WouldBlock))
                }
                _ => Ok(()),
            }
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::from(io::ErrorKind::TimedOut))
            }
            other => other,
        }
    }

    /// Shuts down the write side: FIN after the buffered bytes.
    pub fn shutdown_write(&self) -> io::Result<()> {
        let r =
            self.inner.lock().stacks[self.stack.0].tcp_shutdown_write(self.handle, Instant::now());
        self.inner.wake();
        r
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for TcpStream {
    /// May take fewer bytes than given (the notes' partial send); `write_all` loops.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// As with `std::net::TcpStream`, a shared reference reads and writes too,
/// so one thread may read while another writes.
impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        blocking(&self.inner, self.stack, |g| {
            g.stacks[self.stack.0].tcp_recv(self.handle, buf)
        })
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        blocking(&self.inner, self.stack, |g| match g.failure(self.stack) {
            Some(gone) => Err(gone),
            None => g.stacks[self.stack.0].tcp_send(self.handle, buf),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.inner.lock().stacks[self.stack.0].close(self.handle, Instant::now());
        self.inner.wake();
    }
}

/// A UDP socket shaped like `std::net::UdpSocket`: datagrams keep their
/// boundaries, a short buffer truncates (the rest of that datagram is
/// lost), `connect` sets the default destination and filters what is
/// received to that peer, and a port unreachable from the peer makes the
/// next call fail with ConnectionRefused, as on Linux. Calls block unless a timeout or non-blocking mode
/// says otherwise; dropping the socket closes it (datagrams already sent
/// still go out).
pub struct UdpSocket {
    inner: Arc<Inner>,
    stack: StackId,
    handle: SocketHandle,
    /// SO_RCVTIMEO: how long a receive waits; `None` waits for ever.
    read_timeout: Mutex<Option<Duration>>,
    /// SO_SNDTIMEO: how long a send waits for room in the send queue.
    write_timeout: Mutex<Option<Duration>>,
    /// O_NONBLOCK: calls that would wait say WouldBlock at once.
    nonblocking: AtomicBool,
}

impl UdpSocket {
    /// Binds to `addr` on `stack`. Port 0 picks an ephemeral port (see
    /// [`local_addr`](UdpSocket::local_addr)); errors as std gives them:
    /// `AddrInUse`, `AddrNotAvailable` for an address the stack lacks.
    pub fn bind(rt: &Runtime, stack: StackId, addr: SocketAddr) -> io::Result<UdpSocket> {
        let handle = rt.with_stack(stack, |s| s.udp_bind(addr))?;
        Ok(UdpSocket {
            inner: rt.inner.clone(),
            stack,
            handle,
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
            nonblocking: AtomicBool::new(false),
        })
    }

    /// The socket in its stack's table.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.lock().stacks[self.stack.0]
            .udp_local_addr(self.handle)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
    }

    /// The connected peer; `NotConnected` before [`connect`](UdpSocket::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.lock().stacks[self.stack.0]
            .udp_peer_addr(self.handle)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Sets the peer: [`send`](UdpSocket::send) goes to it and only its
    /// datagrams are received from now on. Nothing is sent.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner.lock().stacks[self.stack.0].udp_connect(self.handle, addr)
    }

    /// Sends one datagram to `addr`; waits only while the socket's send
    /// queue is full.
    pub fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        self.wait(self.write_deadline(), |g| match g.failure(self.stack) {
            Some(gone) => Err(gone),
            None => g.stacks[self.stack.0].udp_send_to(self.handle, buf, addr),
        })
    }

    /// Sends one datagram to the connected peer (`NotConnected` without one).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.wait(self.write_deadline(), |g| match g.failure(self.stack) {
            Some(gone) => Err(gone),
            None => g.stacks[self.stack.0].udp_send(self.handle, buf),
        })
    }

    /// Receives one datagram and who sent it, waiting for one. A `buf`
    /// shorter than the datagram gets its first `buf.len()` bytes; the rest
    /// is discarded, as with std.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.wait(self.read_deadline(), |g| {
            g.stacks[self.stack.0].udp_recv_from(self.handle, buf)
        })
    }

    /// [`recv_from`](UdpSocket::recv_from) without the sender (on a connected
    /// socket, always the peer).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// How long a receive waits before WouldBlock (what Unix gives);
    /// `None` waits for ever. `Some(Duration::ZERO)` is `InvalidInput`, as
    /// with std.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        *lock_setting(&self.read_timeout) = nonzero(timeout)?;
        Ok(())
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock_setting(&self.read_timeout))
    }

    /// How long a send waits for room in the send queue before WouldBlock.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        *lock_setting(&self.write_timeout) = nonzero(timeout)?;
        Ok(())
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock_setting(&self.write_timeout))
    }

    /// In non-blocking mode a call that would wait says WouldBlock at once.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    fn read_deadline(&self) -> Option<Instant> {
        lock_setting(&self.read_timeout).map(|t| Instant::now() + t)
    }

    fn write_deadline(&self) -> Option<Instant> {
        lock_setting(&self.write_timeout).map(|t| Instant::now() + t)
    }

    /// Runs `op` as the socket's mode says: once (non-blocking), until a
    /// deadline (a timeout), or until it stops saying WouldBlock.
    fn wait<T>(
        &self,
        deadline: Option<Instant>,
        op: impl FnMut(&mut Shared) -> io::Result<T>,
    ) -> io::Result<T> {
        if self.nonblocking.load(Ordering::Relaxed) {
            blocking_until(&self.inner, self.stack, Some(Instant::now()), op)
        } else {
            blocking_until(&self.inner, self.stack, deadline, op)
        }
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.inner.lock().stacks[self.stack.0].close(self.handle, Instant::now());
        self.inner.wake();
    }
}

fn lock_setting<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// std refuses a zero timeout (it would mean "never wait" on some systems
/// and "wait for ever" on others).
fn nonzero(timeout: Option<Duration>) -> io::Result<Option<Duration>> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(timeout)
}
