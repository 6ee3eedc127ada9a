//! The socket calls oxcat makes on the kernel's stack, each one traced
//! (`--trace`) with its arguments and result. Tracing is a relaxed atomic
//! load when off: no formatting, no lock.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use oxcat_trace::{Sink, Tracer};
use rustix::event::{PollFd, PollFlags};
use socket2::{Domain, SockAddr, Socket, Type};

static TRACE_ON: AtomicBool = AtomicBool::new(false);
static TRACER: Mutex<Option<Tracer>> = Mutex::new(None);

/// Turns tracing on, writing the timeline to `sink`.
pub fn start_trace(sink: Sink) {
    *TRACER.lock().unwrap_or_else(|p| p.into_inner()) = Some(Tracer::new(sink));
    TRACE_ON.store(true, Ordering::Relaxed);
}

/// Turns tracing off and hands back the tracer (with its kept events).
pub fn stop_trace() -> Option<Tracer> {
    TRACE_ON.store(false, Ordering::Relaxed);
    let mut t = TRACER.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = t.as_mut() {
        t.flush();
    }
    t
}

fn with_tracer(f: impl FnOnce(&mut Tracer)) {
    if tracing() {
        if let Some(t) = TRACER.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f(t);
        }
    }
}

/// Events recorded up to `window` late (our stack's, handed over by a
/// thread in batches) still come out in time order: see `Tracer::set_reorder`.
pub fn reorder_trace(window: Duration) {
    with_tracer(|t| t.set_reorder(window));
    REORDER_MICROS.store(window.as_micros() as u64, Ordering::Relaxed);
}

/// The window `reorder_trace` set, while it holds (0: events go out as
/// recorded).
static REORDER_MICROS: AtomicU64 = AtomicU64::new(0);

/// Writes the held events whose window has passed.
pub fn release_trace() {
    with_tracer(Tracer::release);
}

/// Writes every held event and holds none from now on (the run is ending:
/// a call recorded after this, on the way out, is written at once).
pub fn end_reorder_trace() {
    REORDER_MICROS.store(0, Ordering::Relaxed);
    with_tracer(Tracer::end_reorder);
}

#[inline]
pub fn tracing() -> bool {
    TRACE_ON.load(Ordering::Relaxed)
}

thread_local! {
    /// Who makes the calls on this thread ("server", "client"), when several share a trace.
    static ROLE: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Names the calls this thread makes on the shared timeline.
pub fn set_role(role: &'static str) {
    ROLE.with(|r| r.set(Some(role)));
}

/// Records one call; `call` and `result` are only built when tracing.
pub fn record(call: impl FnOnce() -> String, result: impl FnOnce() -> Option<String>) {
    record_as(ROLE.with(|r| r.get()), call, result);
}

/// [`record`] for a call made by `role` (as if on a thread named so):
/// `--stack user` shows the calls on our stack as `stack accept(#2) = #4`.
pub fn record_as(
    role: Option<&str>,
    call: impl FnOnce() -> String,
    result: impl FnOnce() -> Option<String>,
) {
    if tracing() {
        record_call(None, role, call, result);
    }
}

/// The instant a call starts, when tracing: for [`record_as_from`].
pub fn call_start() -> Option<std::time::Instant> {
    tracing().then(std::time::Instant::now)
}

/// [`record_as`] stamped with when the call started (`start`, from
/// [`call_start`]), as strace stamps a call: the segments a `send` on our
/// stack makes go out inside the call, and come after it on the timeline.
/// Only while the timeline holds events back (`reorder_trace`) and the call
/// took well under that window; otherwise (a send that waited on a slow
/// peer) it is stamped on return, as it would be written after events
/// stamped later.
pub fn record_as_from(
    start: Option<std::time::Instant>,
    role: &str,
    call: impl FnOnce() -> String,
    result: impl FnOnce() -> Option<String>,
) {
    let Some(start) = start else {
        return;
    };
    if tracing() {
        let window = std::time::Duration::from_micros(REORDER_MICROS.load(Ordering::Relaxed));
        let at = (start.elapsed() < window / 2).then_some(start);
        record_call(at, Some(role), call, result);
    }
}

fn record_call(
    at: Option<std::time::Instant>,
    role: Option<&str>,
    call: impl FnOnce() -> String,
    result: impl FnOnce() -> Option<String>,
) {
    let call = match role {
        Some(role) => format!("{role:<6} {}", call()),
        None => call(),
    };
    let result = result();
    let mut guard = TRACER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = guard.as_mut() {
        match at {
            Some(at) => t.record_at(at, None, oxcat_trace::Event::SocketCall { call, result }),
            None => t.call(call, result),
        }
    }
}

/// Records an event of our stack's, stamped with when it happened there.
pub fn record_at(at: std::time::Instant, event: oxcat_trace::Event) {
    if tracing() {
        let mut guard = TRACER.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = guard.as_mut() {
            t.record_at(at, None, event);
        }
    }
}

/// Records a remark on the timeline.
pub fn note(text: impl FnOnce() -> String) {
    if tracing() {
        let mut guard = TRACER.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = guard.as_mut() {
            t.record(oxcat_trace::Event::note(text()));
        }
    }
}

/// A call's result as the trace shows it: `ok`'s text, or `-1 ECONN... (...)`.
pub fn outcome<T>(r: &io::Result<T>, ok: impl FnOnce(&T) -> String) -> Option<String> {
    Some(match r {
        Ok(v) => ok(v),
        Err(e) => format!("-1 {}", errno_name(e)),
    })
}

/// `ECONNREFUSED (Connection refused)`, as strace shows errors.
pub fn errno_name(e: &io::Error) -> String {
    let errno = e
        .raw_os_error()
        .or_else(|| crate::error::errno_of_kind(e.kind()));
    let name = match errno {
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::EINPROGRESS) => "EINPROGRESS",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(libc::EADDRINUSE) => "EADDRINUSE",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENETUNREACH) => "ENETUNREACH",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EAFNOSUPPORT) => "EAFNOSUPPORT",
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
        Some(libc::ENOTCONN) => "ENOTCONN",
        Some(libc::ECONNABORTED) => "ECONNABORTED",
        _ => "E?",
    };
    format!("{name} ({})", crate::error::describe(e))
}

/// `127.0.0.1:80`, `[::1]:80`, or a Unix socket's path; a `--stack user`
/// bridge socket as the address it stands for.
pub fn show_addr(a: &SockAddr) -> String {
    if let Some(sa) = crate::user_stack::real_addr(a) {
        return sa.to_string();
    }
    if let Some(p) = a.as_pathname() {
        return p.display().to_string();
    }
    if a.is_unnamed() {
        return "(unnamed)".into();
    }
    "(unknown)".into()
}

fn domain_name(d: Domain) -> &'static str {
    if d == Domain::IPV4 {
        "AF_INET"
    } else if d == Domain::IPV6 {
        "AF_INET6"
    } else if d == Domain::UNIX {
        "AF_UNIX"
    } else {
        "AF_?"
    }
}

fn type_name(t: Type) -> &'static str {
    if t == Type::STREAM {
        "SOCK_STREAM"
    } else if t == Type::DGRAM {
        "SOCK_DGRAM"
    } else {
        "SOCK_?"
    }
}

pub fn socket(domain: Domain, ty: Type) -> io::Result<Socket> {
    let r = Socket::new(domain, ty, None);
    record(
        || format!("socket({}, {})", domain_name(domain), type_name(ty)),
        || outcome(&r, |s| s.as_raw_fd().to_string()),
    );
    r
}

pub fn bind(s: &Socket, addr: &SockAddr) -> io::Result<()> {
    let r = s.bind(addr);
    record(
        || format!("bind({}, {})", s.as_raw_fd(), show_addr(addr)),
        || outcome(&r, |_| "0".into()),
    );
    r
}

pub fn listen(s: &Socket, backlog: i32) -> io::Result<()> {
    let r = s.listen(backlog);
    record(
        || format!("listen({}, {backlog})", s.as_raw_fd()),
        || outcome(&r, |_| "0".into()),
    );
    r
}

/// `accept4`, the new socket already non-blocking and close-on-exec.
pub fn accept(s: &Socket) -> io::Result<(Socket, SockAddr)> {
    let r = s.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    record(
        || format!("accept({})", s.as_raw_fd()),
        || {
            outcome(&r, |(c, a)| {
                format!("{} from {}", c.as_raw_fd(), show_addr(a))
            })
        },
    );
    r
}

/// Starts a connect on a non-blocking socket: `Ok(true)` when it completed
/// at once, `Ok(false)` when it is in progress.
pub fn connect_start(s: &Socket, addr: &SockAddr) -> io::Result<bool> {
    let r = s.connect(addr);
    let r = match r {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            record(
                || format!("connect({}, {})", s.as_raw_fd(), show_addr(addr)),
                || Some("-1 EINPROGRESS".into()),
            );
            return Ok(false);
        }
        Err(e) => Err(e),
    };
    record(
        || format!("connect({}, {})", s.as_raw_fd(), show_addr(addr)),
        || outcome(&r, |_| "0".into()),
    );
    r
}

/// The result of a connect in progress (SO_ERROR), once the socket is writable.
pub fn connect_result(s: &Socket) -> io::Result<()> {
    let r = match s.take_error() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(e) => Err(e),
    };
    record(
        || format!("getsockopt({}, SO_ERROR)", s.as_raw_fd()),
        || outcome(&r, |_| "0".into()),
    );
    r
}

pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    let r = rustix::net::shutdown(fd, rustix::net::Shutdown::Write).map_err(io::Error::from);
    record(
        || format!("shutdown({}, SHUT_WR)", fd.as_raw_fd()),
        || outcome(&r, |_| "0".into()),
    );
    r
}

/// Closes a socket (by dropping it), traced. The call is stamped as it is
/// made: what the kernel does after it (draining, FIN) comes later.
pub fn close<T: AsRawFd>(s: T) {
    let fd = s.as_raw_fd();
    record(|| format!("close({fd})"), || Some("0".into()));
    drop(s);
}

/// Waits for readiness; `timeout` None waits forever. EINTR counts as "nothing ready".
pub fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let ts = timeout.map(|d| rustix::event::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    });
    let r = match rustix::event::poll(fds, ts.as_ref()) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::INTR) => Ok(0),
        Err(e) => Err(io::Error::from(e)),
    };
    record(
        || {
            let list: Vec<String> = fds
                .iter()
                .map(|p| p.as_fd().as_raw_fd().to_string())
                .collect();
            format!("poll([{}])", list.join(", "))
        },
        || outcome(&r, |n| n.to_string()),
    );
    r
}

pub fn pollfd<'a>(fd: &'a impl AsFd, flags: PollFlags) -> PollFd<'a> {
    PollFd::new(fd, flags)
}

/// `read` on a socket, traced (data bytes themselves are not shown).
pub fn sock_read(fd: RawFd, r: &io::Result<usize>, asked: usize) {
    record(
        || format!("read({fd}, {asked})"),
        || outcome(r, |n| n.to_string()),
    );
}

/// `write` on a socket, traced.
pub fn sock_write(fd: RawFd, r: &io::Result<usize>, len: usize) {
    record(
        || format!("write({fd}, {len})"),
        || outcome(r, |n| n.to_string()),
    );
}
