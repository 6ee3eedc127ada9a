//! The byte-moving loop between stdin/stdout and one connected socket: one
//! thread, one `poll(2)`, two one-way pumps.
//!
//! Each pump moves bytes from a source to a sink. Where both ends allow it
//! (pipes, files, sockets) it moves them with `splice(2)` through a pipe of
//! its own, so the bytes never enter user space; otherwise (ttys, datagram
//! sockets, or when the bytes must be seen for `-C`, `-o`, `-x`) it copies
//! through a large buffer. A pump waits on its source only while it has
//! room and on its sink only while it holds bytes, so poll never spins and
//! neither direction can block the other.
//!
//! Half-close follows ncat: at EOF on stdin the socket's write side is shut
//! down (unless `--no-shutdown`) and receiving goes on; at the socket's EOF
//! the remaining bytes are written to stdout and the relay ends (unless it
//! was asked to keep running half-open).
//!
//! With `--ssl` the socket side is a TLS session (`tls::Session`) run in
//! this same loop: the socket pump reads ciphertext and hands stdout the
//! plaintext, the stdin pump's bytes are encrypted and written to the
//! socket; stdin's EOF becomes close_notify and then the FIN.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::pipe::SpliceFlags;

use crate::error::Failure;
use crate::session_log::{Direction, SessionLog};
use crate::sys;
use crate::tls::{Session, Stream};

/// Bytes a copying pump holds at most.
const COPY_BUFFER: usize = 256 * 1024;
/// What a splicing pump asks its pipe to hold.
const PIPE_SIZE: usize = 1024 * 1024;
/// ncat reads stdin in 8 KiB pieces in datagram mode; each piece is one datagram.
const DATAGRAM_READ: usize = 8192;
/// The largest datagram we may receive.
const DATAGRAM_MAX: usize = 65536;

#[derive(Debug, Clone, Default)]
pub struct RelayOptions {
    pub send_only: bool,
    pub recv_only: bool,
    pub no_shutdown: bool,
    pub crlf: bool,
    pub delay: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// Keep sending stdin after the socket's EOF (ncat's `-k` in connect mode).
    pub keep_half_open: bool,
    /// The socket keeps message boundaries (UDP, Unix datagram).
    pub datagram: bool,
    /// Stop at stdin EOF even without --send-only (UDP, which has no EOF to wait for).
    pub quit_on_stdin_eof: bool,
    /// `-t`: refuse the Telnet options the peer offers or asks for.
    pub telnet: bool,
}

/// ncat's `-t`: the Telnet commands at the start of what arrived are
/// answered, DO/DONT with WONT and WILL/WONT with DONT (RFC 854: refusing
/// every option leaves a plain NVT); the bytes themselves still go to stdout
/// unchanged, as ncat's do.
pub fn telnet_refusals(data: &[u8]) -> Vec<u8> {
    const IAC: u8 = 255;
    let mut out = Vec::new();
    let mut at = 0;
    while data.get(at) == Some(&IAC) {
        let (Some(&cmd), Some(&opt)) = (data.get(at + 1), data.get(at + 2)) else {
            break;
        };
        let answer = match cmd {
            251 | 252 => 254, // WILL/WONT -> DONT
            253 | 254 => 252, // DO/DONT -> WONT
            _ => break,
        };
        out.extend_from_slice(&[IAC, answer, opt]);
        at += 3;
    }
    out
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub sent: u64,
    pub received: u64,
}

/// A pipe used to splice between two descriptors.
struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    held: usize,
    capacity: usize,
}

impl SplicePipe {
    fn new() -> io::Result<Self> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        let capacity = match rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE) {
            Ok(n) => n,
            Err(_) => rustix::pipe::fcntl_getpipe_size(&write).unwrap_or(65536),
        };
        Ok(SplicePipe {
            read,
            write,
            held: 0,
            capacity,
        })
    }
}

enum Engine {
    Splice(SplicePipe),
    Copy {
        buf: Vec<u8>,
        start: usize,
        end: usize,
    },
}

/// Carries `-C`: a LF not preceded by CR becomes CRLF, across chunk borders.
#[derive(Default)]
pub(crate) struct CrlfState {
    last_was_cr: bool,
}

impl CrlfState {
    pub(crate) fn convert(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if b == b'\n' && !self.last_was_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.last_was_cr = b == b'\r';
        }
    }
}

struct Pump<'a> {
    src: BorrowedFd<'a>,
    dst: BorrowedFd<'a>,
    engine: Engine,
    /// The source has not yet reached EOF.
    src_open: bool,
    /// Source or sink failed for good, or all is delivered after EOF.
    finished: bool,
    datagram_src: bool,
    datagram_dst: bool,
    /// Bytes delivered to the sink.
    moved: u64,
    direction: Direction,
    crlf: Option<CrlfState>,
    /// `-t` on what arrives from the socket (`src`): answer its Telnet options.
    telnet: bool,
}

/// Whether splice can work between these two descriptors: neither may be a
/// terminal, and datagrams need their boundaries, which a pipe loses.
fn splice_candidate(fd: BorrowedFd<'_>) -> bool {
    match rustix::fs::fstat(fd) {
        Ok(st) => {
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            matches!(
                kind,
                rustix::fs::FileType::Fifo
                    | rustix::fs::FileType::RegularFile
                    | rustix::fs::FileType::Socket
            ) || (kind == rustix::fs::FileType::CharacterDevice && !rustix::termios::isatty(fd))
        }
        Err(_) => false,
    }
}

enum Step {
    Progress,
    WouldBlock,
}

impl<'a> Pump<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        src: BorrowedFd<'a>,
        dst: BorrowedFd<'a>,
        datagram_src: bool,
        datagram_dst: bool,
        must_copy: bool,
        direction: Direction,
        crlf: bool,
    ) -> Self {
        let want_splice = !must_copy
            && !datagram_src
            && !datagram_dst
            && splice_candidate(src)
            && splice_candidate(dst);
        let engine = match want_splice.then(SplicePipe::new) {
            Some(Ok(p)) => Engine::Splice(p),
            _ => Engine::Copy {
                buf: Vec::new(),
                start: 0,
                end: 0,
            },
        };
        Pump {
            src,
            dst,
            engine,
            src_open: true,
            finished: false,
            datagram_src,
            datagram_dst,
            moved: 0,
            direction,
            crlf: crlf.then(CrlfState::default),
            telnet: false,
        }
    }

    fn held(&self) -> usize {
        match &self.engine {
            Engine::Splice(p) => p.held,
            Engine::Copy { start, end, .. } => end - start,
        }
    }

    fn wants_read(&self) -> bool {
        !self.finished
            && self.src_open
            && match &self.engine {
                Engine::Splice(p) => p.held < p.capacity,
                Engine::Copy { start, end, .. } => start == end,
            }
    }

    fn wants_write(&self) -> bool {
        !self.finished && self.held() > 0
    }

    /// All bytes read have been delivered and the source is at EOF.
    fn drained(&self) -> bool {
        self.finished || (!self.src_open && self.held() == 0)
    }

    fn fall_back_to_copy(&mut self) -> io::Result<()> {
        if let Engine::Splice(p) = &mut self.engine {
            // Take back whatever the pipe holds, then copy from now on.
            let mut buf = vec![0u8; p.held.max(COPY_BUFFER)];
            let mut end = 0;
            while end < p.held {
                match rustix::io::read(&p.read, &mut buf[end..p.held]) {
                    Ok(0) => break,
                    Ok(n) => end += n,
                    Err(e) => return Err(e.into()),
                }
            }
            self.engine = Engine::Copy { buf, start: 0, end };
        }
        Ok(())
    }

    /// Reads once from the source (through `tls` when it is the socket).
    fn read_step(&mut self, tls: Option<&mut Session>) -> io::Result<Step> {
        let src_fd = self.src.as_raw_fd();
        let sock_src = self.direction == Direction::Received;
        let mut tls = tls.filter(|_| sock_src);
        match &mut self.engine {
            Engine::Splice(p) => {
                let room = p.capacity - p.held;
                let r = rustix::pipe::splice(
                    self.src,
                    None,
                    &p.write,
                    None,
                    room,
                    SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
                )
                .map_err(io::Error::from);
                sys::record(
                    || format!("splice({src_fd} -> pipe, {room})"),
                    || Some(show(&r)),
                );
                match r {
                    Ok(0) => {
                        self.src_open = false;
                        Ok(Step::Progress)
                    }
                    Ok(n) => {
                        p.held += n;
                        Ok(Step::Progress)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) && p.held == 0 => {
                        self.fall_back_to_copy()?;
                        self.read_step(tls)
                    }
                    Err(e) => Err(e),
                }
            }
            Engine::Copy { buf, start, end } => {
                let want = if self.datagram_src {
                    DATAGRAM_MAX
                } else if self.datagram_dst {
                    DATAGRAM_READ
                } else {
                    COPY_BUFFER
                };
                if buf.len() < want {
                    buf.resize(want, 0);
                }
                let r = match tls.as_deref_mut() {
                    // The session traces its socket reads itself.
                    Some(t) => t.read_plain(self.src, &mut buf[..want]),
                    None => {
                        let r =
                            rustix::io::read(self.src, &mut buf[..want]).map_err(io::Error::from);
                        if sock_src {
                            sys::sock_read(src_fd, &r, want);
                        }
                        r
                    }
                };
                match r {
                    Ok(0) if !self.datagram_src => {
                        self.src_open = false;
                        Ok(Step::Progress)
                    }
                    Ok(n) => {
                        *start = 0;
                        *end = n;
                        if self.telnet {
                            let answer = telnet_refusals(&buf[..n]);
                            match (answer.is_empty(), tls) {
                                (true, _) => {}
                                (false, Some(t)) => t.send_now(self.src, &answer),
                                (false, None) => {
                                    // A few bytes on a socket with room: one write.
                                    let r = rustix::io::write(self.src, &answer)
                                        .map_err(io::Error::from);
                                    sys::sock_write(src_fd, &r, answer.len());
                                }
                            }
                        }
                        if let Some(c) = self.crlf.as_mut() {
                            let mut converted = Vec::with_capacity(n + n / 8);
                            c.convert(&buf[..n], &mut converted);
                            *end = converted.len();
                            *buf = converted;
                        }
                        Ok(Step::Progress)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::WouldBlock),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Writes once to the sink (through `tls` when it is the socket).
    fn write_step(
        &mut self,
        log: &mut Option<SessionLog>,
        tls: Option<&mut Session>,
    ) -> io::Result<Step> {
        let dst_fd = self.dst.as_raw_fd();
        let sock_dst = self.direction == Direction::Sent;
        match &mut self.engine {
            Engine::Splice(p) => {
                let r = rustix::pipe::splice(
                    &p.read,
                    None,
                    self.dst,
                    None,
                    p.held,
                    SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
                )
                .map_err(io::Error::from);
                let held = p.held;
                sys::record(
                    || format!("splice(pipe -> {dst_fd}, {held})"),
                    || Some(show(&r)),
                );
                match r {
                    Ok(n) => {
                        p.held -= n;
                        self.moved += n as u64;
                        Ok(Step::Progress)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        self.fall_back_to_copy()?;
                        self.write_step(log, tls)
                    }
                    Err(e) => Err(e),
                }
            }
            Engine::Copy { buf, start, end } => {
                let chunk = &buf[*start..*end];
                let r = match tls.filter(|_| sock_dst) {
                    // The session traces its socket writes itself.
                    Some(t) => t.write_plain(self.dst, chunk),
                    None => {
                        let r = rustix::io::write(self.dst, chunk).map_err(io::Error::from);
                        if sock_dst {
                            sys::sock_write(dst_fd, &r, chunk.len());
                        }
                        r
                    }
                };
                match r {
                    Ok(n) => {
                        if let Some(l) = log.as_mut() {
                            l.record(self.direction, &chunk[..n]);
                        }
                        *start += n;
                        self.moved += n as u64;
                        Ok(Step::Progress)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::WouldBlock),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::WouldBlock),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

fn show(r: &io::Result<usize>) -> String {
    match r {
        Ok(n) => n.to_string(),
        Err(e) => format!("-1 {}", sys::errno_name(e)),
    }
}

/// A socket error that ends a stream the way EOF does (the peer went away).
fn is_peer_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNRESET) | Some(libc::EPIPE))
}

/// Moves bytes between stdin/stdout and `sock` until the session ends.
pub fn relay(
    sock: BorrowedFd<'_>,
    opts: &RelayOptions,
    log: &mut Option<SessionLog>,
) -> Result<Stats, Failure> {
    relay_on(sock, None, opts, log)
}

/// `relay` on a connection that may be a TLS session; the session is ended
/// (close_notify, FIN) before returning, however the relay ended.
pub fn relay_stream(
    stream: &mut Stream,
    opts: &RelayOptions,
    log: &mut Option<SessionLog>,
) -> Result<Stats, Failure> {
    match stream {
        Stream::Plain(sock) => relay_on(sock.as_fd(), None, opts, log),
        Stream::Tls(sock, session) => {
            let result = relay_on(sock.as_fd(), Some(session), opts, log);
            session.finish(sock.as_fd());
            result
        }
    }
}

fn relay_on(
    sock: BorrowedFd<'_>,
    mut tls: Option<&mut Session>,
    opts: &RelayOptions,
    log: &mut Option<SessionLog>,
) -> Result<Stats, Failure> {
    let stdin = rustix::stdio::stdin();
    let stdout = rustix::stdio::stdout();
    // With TLS the bytes must pass through user space anyway.
    let must_copy = log.is_some() || tls.is_some();

    let mut up = Pump::new(
        stdin,
        sock,
        false,
        opts.datagram,
        must_copy || opts.crlf,
        Direction::Sent,
        opts.crlf,
    );
    let mut down = Pump::new(
        sock,
        stdout,
        opts.datagram,
        false,
        must_copy || opts.telnet,
        Direction::Received,
        false,
    );
    down.telnet = opts.telnet;
    if !opts.recv_only && matches!(up.engine, Engine::Copy { .. }) {
        grow_pipe(stdin);
    }
    if opts.recv_only {
        up.src_open = false;
        up.finished = true;
    }
    if opts.send_only {
        // ncat never reads the socket with --send-only: received bytes stay
        // unread, and only stdin's EOF ends the session.
        down.src_open = false;
        down.finished = true;
    }
    // When the peer's EOF comes first, a terminal on stdin means an
    // interactive session: it ends, as ncat 7.96+ does. A file or a pipe on
    // stdin still holds bytes someone meant to send: they are sent (the peer
    // may only have half-closed) until stdin's EOF or until the peer refuses.
    let stdin_interactive = rustix::termios::isatty(stdin);
    let keep_half_open = opts.keep_half_open || (!stdin_interactive && !opts.datagram);
    let mut up_closed = opts.recv_only; // write side already dealt with
    let mut peer_eof_told = false;
    // --send-only over TLS: what the peer sends is still read, and dropped,
    // so that its protocol messages (session tickets, key updates) are taken
    // in and unread bytes do not turn our close into a reset that discards
    // what we have not sent yet.
    let mut tls_dropping = opts.send_only && tls.is_some();
    let mut last_activity = Instant::now();

    loop {
        // Settle the ends of each direction before waiting.
        if up.drained() && !up_closed {
            up_closed = true;
            crate::verbose!(2, "DEBUG: EOF on stdin");
            if !opts.datagram && !opts.no_shutdown && !opts.recv_only {
                match tls.as_deref_mut() {
                    // close_notify, then (once all is sent) the FIN.
                    Some(t) => t.close_write(sock),
                    // A peer that already left makes shutdown fail; nothing is lost then.
                    None => {
                        let _ = sys::shutdown_write(sock);
                    }
                }
            }
        }
        let down_done = down.drained();
        if down_done && !peer_eof_told && !opts.send_only {
            peer_eof_told = true;
            crate::verbose!(2, "DEBUG: EOF from the peer");
        }
        // TLS: bytes the session holds for the peer (and its FIN) still count.
        let tls_sending = tls.as_deref().is_some_and(Session::wants_write);
        if up_closed && (down_done || opts.send_only || opts.quit_on_stdin_eof) && !tls_sending {
            break;
        }
        if down_done && !opts.send_only && !keep_half_open {
            break;
        }

        let up_read = up.wants_read();
        let up_write = up.wants_write();
        let down_read = down.wants_read();
        let down_write = down.wants_write();

        let mut fds = Vec::with_capacity(3);
        let mut slots = [usize::MAX; 4];
        if up_read {
            slots[0] = fds.len();
            fds.push(sys::pollfd(&stdin, PollFlags::IN));
        }
        // A TLS session may hold input already read from the socket.
        let buffered = down_read && tls.as_deref().is_some_and(Session::input_pending);
        // The socket: one entry for both directions.
        let mut sock_flags = PollFlags::empty();
        if up_write || tls_sending {
            sock_flags |= PollFlags::OUT;
        }
        if (down_read && !buffered) || tls_dropping {
            sock_flags |= PollFlags::IN;
        }
        if !sock_flags.is_empty() {
            slots[1] = fds.len();
            fds.push(sys::pollfd(&sock, sock_flags));
        }
        if down_write {
            slots[2] = fds.len();
            fds.push(sys::pollfd(&stdout, PollFlags::OUT));
        }
        if fds.is_empty() && !buffered {
            break;
        }
        let timeout = match buffered {
            true => Some(Duration::ZERO),
            false => opts
                .idle_timeout
                .map(|t| t.saturating_sub(last_activity.elapsed())),
        };
        let n = sys::poll(&mut fds, timeout).map_err(|e| Failure::io("poll", &e))?;
        if n == 0 && !buffered {
            if let Some(t) = opts.idle_timeout {
                if last_activity.elapsed() >= t {
                    return Err(Failure::network(format!(
                        "Idle timeout expired ({} ms)",
                        t.as_millis()
                    )));
                }
            }
            continue;
        }
        let ready = |slot: usize, fds: &[rustix::event::PollFd<'_>]| {
            slot != usize::MAX && !fds[slot].revents().is_empty()
        };
        let stdin_ready = ready(slots[0], &fds);
        let sock_ready = ready(slots[1], &fds) || buffered;
        let stdout_ready = ready(slots[2], &fds);
        drop(fds);
        last_activity = Instant::now();

        if let (true, Some(t)) = (sock_ready, tls.as_deref_mut()) {
            if tls_sending {
                // A failure shows in the next write of stdin's bytes, if any.
                let _ = t.flush(sock);
            }
            if tls_dropping {
                tls_dropping = t.drop_input(sock);
            }
        }
        // stdin -> socket
        if stdin_ready {
            match up.read_step(None) {
                Ok(_) => {}
                // A stdin that cannot be read ends like EOF.
                Err(_) => up.src_open = false,
            }
        }
        if (sock_ready || stdin_ready) && up.wants_write() {
            pump_writes(&mut up, log, opts.delay, tls.as_deref_mut())
                .map_err(|e| socket_failure(&e))?;
        }
        // socket -> stdout
        if sock_ready && down.wants_read() {
            loop {
                match down.read_step(tls.as_deref_mut()) {
                    Ok(Step::Progress) => {}
                    Ok(Step::WouldBlock) => break,
                    Err(e) if is_peer_gone(&e) => {
                        down.src_open = false;
                        break;
                    }
                    Err(e) => return Err(socket_failure(&e)),
                }
                if down.wants_write() {
                    if let Err(e) = pump_writes(&mut down, log, opts.delay, None) {
                        // stdout is gone (EPIPE): nothing more can be delivered.
                        down.finished = true;
                        if e.kind() != io::ErrorKind::BrokenPipe {
                            return Err(Failure::io("write to stdout", &e));
                        }
                        break;
                    }
                    if down.wants_write() {
                        break; // stdout is full: wait for it
                    }
                }
                if !down.wants_read() {
                    break;
                }
            }
        }
        if stdout_ready && down.wants_write() {
            if let Err(e) = pump_writes(&mut down, log, None, None) {
                down.finished = true;
                if e.kind() != io::ErrorKind::BrokenPipe {
                    return Err(Failure::io("write to stdout", &e));
                }
            }
        }
    }
    Ok(Stats {
        sent: up.moved,
        received: down.moved,
    })
}

/// A pipe or FIFO on stdin that a copying pump reads is grown to PIPE_SIZE
/// (as far as the kernel allows; nothing changes otherwise). With the
/// default 64 KiB the writer and we take turns for every 64 KiB: a bulk
/// `--ssl` send from a pipe cost about one context switch per 64 KiB on
/// each end. With 1 MiB both ends switch 4-5 times less, and use a little
/// less CPU (bench/tls, 512 MiB, 15 runs each on a busy 2-core machine:
/// median 2.96 CPU s/GiB for both ends instead of 3.22, with much overlap).
/// Reads still return whatever is there, so nothing waits longer.
fn grow_pipe(fd: BorrowedFd<'_>) {
    let is_fifo = rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
    });
    if is_fifo && rustix::pipe::fcntl_getpipe_size(fd).is_ok_and(|n| n < PIPE_SIZE) {
        let _ = rustix::pipe::fcntl_setpipe_size(fd, PIPE_SIZE);
    }
}

/// Writes until the pump is empty or the sink would block.
fn pump_writes(
    p: &mut Pump<'_>,
    log: &mut Option<SessionLog>,
    delay: Option<Duration>,
    mut tls: Option<&mut Session>,
) -> io::Result<()> {
    while p.wants_write() {
        match p.write_step(log, tls.as_deref_mut())? {
            Step::Progress => {}
            Step::WouldBlock => break,
        }
        if p.datagram_dst {
            // One read from stdin is one datagram: the write above sent it whole.
            if let Engine::Copy { start, end, .. } = &mut p.engine {
                *start = *end;
            }
        }
    }
    if let Some(d) = delay {
        if p.held() == 0 {
            std::thread::sleep(d);
        }
    }
    Ok(())
}

fn socket_failure(e: &io::Error) -> Failure {
    Failure::network(crate::error::describe(e))
}

#[cfg(test)]
mod telnet_tests {
    use super::telnet_refusals;

    #[test]
    fn refuses_leading_options_only() {
        assert_eq!(
            telnet_refusals(&[255, 253, 1, 255, 251, 3, b'a', 255, 254, 5]),
            vec![255, 252, 1, 255, 254, 3]
        );
        assert_eq!(telnet_refusals(&[255, 252, 9]), vec![255, 254, 9]);
        assert!(telnet_refusals(b"plain").is_empty());
        assert!(
            telnet_refusals(&[255, 253]).is_empty(),
            "a cut command waits"
        );
        assert!(
            telnet_refusals(&[255, 241, 1]).is_empty(),
            "not an option command"
        );
    }
}
