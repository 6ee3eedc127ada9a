//! `-e`, `-c` and `--lua-exec`: a program in place of stdin/stdout, with
//! ncat's `NCAT_*` variables set.
//!
//! As ncat's `netexec` does, the program runs on two pipes and oxcat stays
//! in between, relaying: what arrives on the connection is written to the
//! program's stdin, and what the program writes is read from its stdout and
//! sent. The connection itself is never handed to the program. With UDP
//! this is what keeps datagrams whole for a program that reads its input a
//! byte or a line at a time (a shell's `read`, `head -n1`): reading a
//! datagram socket takes a whole datagram per `read`, and the rest of it
//! would be lost. Each datagram received becomes one write to the pipe;
//! each read of the program's output (at most [`DATAGRAM_CHUNK`] bytes)
//! becomes one datagram.
//!
//! What ncat 7.93 does, and so what this does (checked side by side):
//!
//! - the session ends when the program has exited and its output has
//!   ended; until then what arrives is its input, even after it closed its
//!   stdout. oxcat then closes the connection and exits 0, whatever the
//!   program's exit status;
//! - with UDP it also ends on an empty datagram or an error on the socket
//!   (a peer whose port is closed: ICMP port unreachable), quietly, exit 0;
//! - `-C` applies to the program's output, `--recv-only` drops it (the
//!   program still gets what arrives), `--send-only` changes nothing, `-t`
//!   answers Telnet options, `-d` waits after each receive, `-o`/`-x` log
//!   both directions; `-i` does not apply.
//!
//! One difference, kept on purpose: when a TCP peer half-closes, ncat drops
//! the session at once, and what the program would still answer is lost.
//! oxcat closes the program's stdin instead (it sees EOF, as it did when
//! oxcat handed it the socket) and sends what it writes until it exits.
//! And a datagram larger than 8 KiB reaches the program whole (ncat's gets
//! its first 8192 bytes).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::PollFlags;

use crate::cli::{Config, ExecCommand};
use crate::error::Failure;
use crate::relay::{telnet_refusals, CrlfState};
use crate::session_log::{Direction, SessionLog};
use crate::sys;

/// ncat reads its program's output 8 KiB at a time (`DEFAULT_TCP_BUF_LEN`);
/// over UDP each read is sent as one datagram, so this is the largest
/// datagram a program's output becomes.
pub const DATAGRAM_CHUNK: usize = 8192;
/// What a read from a stream (either side) asks for: not observable, only
/// fewer system calls.
const STREAM_CHUNK: usize = 64 * 1024;
/// The largest datagram that can arrive.
const DATAGRAM_MAX: usize = 65536;

/// The two ends of a connection, as the child sees them in its environment.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub proto: &'static str,
}

/// How the bytes between the connection and the program are treated: the
/// flags that act on them in ncat's exec mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relaying {
    /// The connection keeps message boundaries (UDP, Unix datagram).
    pub datagram: bool,
    /// `-C`: the program's LF becomes CRLF.
    pub crlf: bool,
    /// `--recv-only`: the program's output is read and dropped.
    pub recv_only: bool,
    /// `-t`: Telnet options from the peer are refused.
    pub telnet: bool,
    /// `-d`: ncat waits this long after each receive.
    pub delay: Option<Duration>,
}

impl Relaying {
    pub fn new(cfg: &Config) -> Self {
        Relaying {
            datagram: cfg.udp,
            crlf: cfg.crlf,
            recv_only: cfg.recv_only,
            telnet: cfg.telnet,
            delay: cfg.delay,
        }
    }
}

fn command(exec: &ExecCommand) -> Result<Command, Failure> {
    match exec {
        ExecCommand::Shell(line) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(line);
            Ok(c)
        }
        ExecCommand::Lua(script) => {
            // A process of its own, as ncat forks one: this binary, running the script.
            let me = std::env::current_exe().map_err(|e| Failure::io("current_exe", &e))?;
            let mut c = Command::new(me);
            c.arg(crate::lua::RUN_FLAG).arg(script);
            Ok(c)
        }
        ExecCommand::Direct(line) => {
            let mut words = line.split_whitespace();
            let program = words
                .next()
                .ok_or_else(|| Failure::usage("Empty command given to --exec"))?;
            let mut c = Command::new(program);
            c.args(words);
            Ok(c)
        }
    }
}

/// A started program and our ends of its pipes (non-blocking).
struct Program {
    child: Child,
    stdin: OwnedFd,
    stdout: OwnedFd,
    /// Readable once the program has exited (a pidfd); None when the
    /// kernel has no pidfd, and then its stdout's EOF stands for its exit.
    exit: Option<OwnedFd>,
}

/// Starts the program on two pipes, with the `NCAT_*` variables for `ends`.
fn spawn(exec: &ExecCommand, ends: Endpoints) -> Result<Program, Failure> {
    let mut cmd = command(exec)?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    if let Some(r) = ends.remote {
        cmd.env("NCAT_REMOTE_ADDR", r.ip().to_string())
            .env("NCAT_REMOTE_PORT", r.port().to_string());
    }
    if let Some(l) = ends.local {
        cmd.env("NCAT_LOCAL_ADDR", l.ip().to_string())
            .env("NCAT_LOCAL_PORT", l.port().to_string());
    }
    cmd.env("NCAT_PROTO", ends.proto);
    let name = match exec {
        ExecCommand::Shell(l) | ExecCommand::Direct(l) => l.clone(),
        ExecCommand::Lua(p) => p.display().to_string(),
    };
    if crate::msg::verbosity() >= 2 {
        // ncat's -vv line, word for word (no final period).
        let how = match exec {
            ExecCommand::Shell(_) => "Executing with shell",
            ExecCommand::Lua(_) => "Executing as lua script",
            ExecCommand::Direct(_) => "Executing",
        };
        crate::msg::say_raw(&format!("DEBUG: {how}: {name}"));
    }
    let mut child = cmd.spawn().map_err(|e| {
        Failure::network(format!(
            "Unable to execute \"{name}\": {}",
            crate::error::describe(&e)
        ))
    })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(Failure::network("the program's pipes are missing"));
    };
    let stdin = OwnedFd::from(stdin);
    let stdout = OwnedFd::from(stdout);
    // Only our ends: the program's own ends stay blocking, as programs expect.
    for fd in [&stdin, &stdout] {
        rustix::io::ioctl_fionbio(fd, true).map_err(|e| Failure::io("fcntl", &e.into()))?;
    }
    let exit = rustix::process::pidfd_open(
        rustix::process::Pid::from_child(&child),
        rustix::process::PidfdFlags::empty(),
    )
    .ok();
    Ok(Program {
        child,
        stdin,
        stdout,
        exit,
    })
}

/// Runs the program for one connection, relaying until the session ends;
/// then returns 0, as ncat does whatever the program's exit status.
///
/// A program that cannot be started is reported in one line, and the run
/// still ends with 0, as ncat's does (its forked child fails, not ncat).
pub fn run(
    exec: &ExecCommand,
    conn: OwnedFd,
    ends: Endpoints,
    how: Relaying,
    log: &mut Option<SessionLog>,
) -> Result<i32, Failure> {
    let program = match spawn(exec, ends) {
        Ok(p) => p,
        Err(f) => {
            crate::msg::say(&f.to_string());
            return Ok(0);
        }
    };
    let Program {
        mut child,
        stdin,
        stdout,
        exit,
    } = program;
    relay(&conn, stdin, stdout, exit, how, log);
    sys::close(conn);
    // Reaped if it is already done; otherwise it runs on, as ncat's does.
    let _ = child.try_wait();
    Ok(0)
}

/// One connection's program under `-k`, relayed on a thread of its own (ncat
/// forks a process for it).
pub struct Session {
    relaying: Arc<AtomicBool>,
}

impl Session {
    /// The relay is over (the connection no longer counts against `-m`).
    pub fn finished(&self) -> bool {
        !self.relaying.load(Ordering::Acquire)
    }
}

/// Starts the program for one connection under `-k`; the relay runs on its
/// own thread, which then waits for the program so it leaves no zombie.
pub fn start(
    exec: &ExecCommand,
    conn: OwnedFd,
    ends: Endpoints,
    how: Relaying,
) -> Result<Session, Failure> {
    let Program {
        mut child,
        stdin,
        stdout,
        exit,
    } = spawn(exec, ends)?;
    let relaying = Arc::new(AtomicBool::new(true));
    let flag = relaying.clone();
    std::thread::Builder::new()
        .name("exec relay".into())
        .spawn(move || {
            relay(&conn, stdin, stdout, exit, how, &mut None);
            sys::close(conn);
            flag.store(false, Ordering::Release);
            let _ = child.wait();
        })
        .map_err(|e| Failure::io("thread", &e))?;
    Ok(Session { relaying })
}

/// Bytes read from one side and not yet all written to the other.
#[derive(Default)]
struct Held {
    buf: Vec<u8>,
    at: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }
    fn rest(&self) -> &[u8] {
        &self.buf[self.at..]
    }
    fn set(&mut self, data: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(data);
        self.at = 0;
    }
    fn clear(&mut self) {
        self.buf.clear();
        self.at = 0;
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// ncat's caretaker loop: the connection's bytes to the program's stdin, the
/// program's output to the connection, until the session ends (see the
/// module's notes).
fn relay(
    conn: &OwnedFd,
    to_program: OwnedFd,
    from_program: OwnedFd,
    mut exit: Option<OwnedFd>,
    how: Relaying,
    log: &mut Option<SessionLog>,
) {
    let _ = rustix::io::ioctl_fionbio(conn, true);
    let conn_fd = conn.as_raw_fd();
    let mut to_program = Some(to_program);
    let mut from_program = Some(from_program);
    // The connection still has bytes to give (a stream until its EOF).
    let mut conn_open = true;
    let mut inbound = Held::default(); // connection -> program
    let mut outbound = Held::default(); // program -> connection
    let mut crlf = how.crlf.then(CrlfState::default);
    let mut buf = vec![
        0u8;
        if how.datagram {
            DATAGRAM_MAX
        } else {
            STREAM_CHUNK
        }
    ];

    loop {
        // A stream's EOF, all of it delivered: the program sees EOF too.
        if !conn_open && inbound.is_empty() && to_program.is_some() {
            to_program = None;
        }
        // The program is done when it has exited and its output has ended
        // (a child of its own may still hold its stdout). Until then what
        // arrives is still its input, even after it closed its stdout: in
        // ncat the program inherits a second descriptor of its stdout pipe
        // (and of the socket), so ncat's loop runs until it exits.
        if from_program.is_none() && outbound.is_empty() && exit.is_none() {
            break;
        }

        let mut conn_flags = PollFlags::empty();
        if conn_open && inbound.is_empty() {
            conn_flags |= PollFlags::IN;
        }
        if !outbound.is_empty() {
            conn_flags |= PollFlags::OUT;
        }
        let mut fds = Vec::with_capacity(4);
        let mut slots = [usize::MAX; 4];
        if !conn_flags.is_empty() {
            slots[0] = fds.len();
            fds.push(sys::pollfd(conn, conn_flags));
        }
        if let (Some(p), true) = (&from_program, outbound.is_empty()) {
            slots[1] = fds.len();
            fds.push(sys::pollfd(p, PollFlags::IN));
        }
        if let (Some(p), false) = (&to_program, inbound.is_empty()) {
            slots[2] = fds.len();
            fds.push(sys::pollfd(p, PollFlags::OUT));
        }
        if let Some(e) = &exit {
            slots[3] = fds.len();
            fds.push(sys::pollfd(e, PollFlags::IN));
        }
        match sys::poll(&mut fds, None) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        let ready = |slot: usize| slot != usize::MAX && !fds[slot].revents().is_empty();
        // The program's stdin (slot 2) needs no flag: a write is tried
        // whenever bytes wait for it.
        let (conn_ready, program_out_ready) = (ready(slots[0]), ready(slots[1]));
        let exited = ready(slots[3]);
        drop(fds);
        if exited {
            exit = None;
        }

        // The program's output -> the connection.
        if program_out_ready {
            if let Some(p) = &from_program {
                let want = if how.datagram {
                    DATAGRAM_CHUNK
                } else {
                    STREAM_CHUNK
                };
                match rustix::io::read(p, &mut buf[..want]).map_err(io::Error::from) {
                    Ok(0) => from_program = None,
                    Ok(n) if how.recv_only => {
                        let _ = n; // ncat reads it and sends nothing
                    }
                    Ok(n) => match crlf.as_mut() {
                        Some(c) => {
                            let mut converted = Vec::with_capacity(n + n / 8);
                            c.convert(&buf[..n], &mut converted);
                            outbound.set(&converted);
                        }
                        None => outbound.set(&buf[..n]),
                    },
                    Err(e) if would_block(&e) => {}
                    Err(_) => from_program = None,
                }
            }
        }
        if !outbound.is_empty() {
            let chunk = outbound.rest();
            let r = rustix::io::write(conn, chunk).map_err(io::Error::from);
            sys::sock_write(conn_fd, &r, chunk.len());
            match r {
                Ok(n) => {
                    if let Some(l) = log.as_mut() {
                        l.record(Direction::Sent, &chunk[..n]);
                    }
                    if how.datagram {
                        outbound.clear(); // one read of the output, one datagram
                    } else {
                        outbound.at += n;
                    }
                }
                Err(e) if would_block(&e) => {}
                // The peer is gone (reset, or its port is closed): the end.
                Err(_) => break,
            }
        }

        // The connection -> the program.
        if conn_ready && conn_open && inbound.is_empty() {
            let r = rustix::io::read(conn, &mut buf).map_err(io::Error::from);
            sys::sock_read(conn_fd, &r, buf.len());
            match r {
                // ncat ends the session on an empty datagram as on EOF.
                Ok(0) if how.datagram => break,
                Ok(0) => conn_open = false,
                Ok(n) => {
                    let data = &buf[..n];
                    if how.telnet {
                        let answer = telnet_refusals(data);
                        if !answer.is_empty() {
                            // A few bytes on a socket with room: one write.
                            let r = rustix::io::write(conn, &answer).map_err(io::Error::from);
                            sys::sock_write(conn_fd, &r, answer.len());
                        }
                    }
                    if let Some(l) = log.as_mut() {
                        l.record(Direction::Received, data);
                    }
                    if let Some(d) = how.delay {
                        std::thread::sleep(d);
                    }
                    // A program that stopped reading gets nothing more.
                    if to_program.is_some() {
                        inbound.set(data);
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            }
        }
        if !inbound.is_empty() {
            if let Some(p) = &to_program {
                match rustix::io::write(p, inbound.rest()).map_err(io::Error::from) {
                    Ok(n) => inbound.at += n,
                    Err(e) if would_block(&e) => {}
                    // The program closed its stdin (EPIPE): what arrives is dropped.
                    Err(_) => {
                        to_program = None;
                        inbound.clear();
                    }
                }
            } else {
                inbound.clear();
            }
        }
    }
    if !how.datagram {
        // Anything still unsent is gone; the FIN tells the peer.
        let _ = sys::shutdown_write(conn.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};

    fn datagrams_until(sock: &Socket, len: usize) -> Vec<Vec<u8>> {
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.iter().map(Vec::len).sum::<usize>() < len {
            let n = std::io::Read::read(&mut &*sock, &mut buf).expect("a datagram in time");
            got.push(buf[..n].to_vec());
        }
        got
    }

    /// Each datagram is one write to the program's stdin, so a shell's
    /// byte-at-a-time `read` sees every line; each read of its output is
    /// one datagram; its exit status is not ours.
    /// `command` run on a datagram socket pair as a UDP session: the
    /// session's thread and the peer's end.
    fn udp_session(command: &str) -> (std::thread::JoinHandle<Result<i32, Failure>>, Socket) {
        let (ours, theirs) = Socket::pair(Domain::UNIX, Type::DGRAM, None).unwrap();
        let exec = ExecCommand::Shell(command.into());
        let ends = Endpoints {
            local: None,
            remote: None,
            proto: "UDP",
        };
        let how = Relaying {
            datagram: true,
            ..Relaying::default()
        };
        let session =
            std::thread::spawn(move || run(&exec, OwnedFd::from(ours), ends, how, &mut None));
        (session, theirs)
    }

    #[test]
    fn datagrams_reach_a_line_reader_whole() {
        let (session, theirs) =
            udp_session(r#"while read l; do echo "got:$l"; [ "$l" = end ] && exit 3; done"#);
        for d in [&b"a\n"[..], b"b\nc\n", b"en", b"d\n"] {
            theirs.send(d).unwrap();
        }
        let want = b"got:a\ngot:b\ngot:c\ngot:end\n";
        let got = datagrams_until(&theirs, want.len());
        assert_eq!(got.concat(), want);
        assert!(got.iter().all(|d| d.ends_with(b"\n")), "{got:?}");
        assert_eq!(session.join().unwrap().unwrap(), 0);
    }

    /// Output larger than a chunk leaves in datagrams of at most 8 KiB.
    #[test]
    fn output_leaves_in_8k_datagrams() {
        let (session, theirs) = udp_session("dd if=/dev/zero bs=20000 count=1 2>/dev/null");
        let got = datagrams_until(&theirs, 20000);
        assert_eq!(got.concat(), vec![0u8; 20000]);
        assert!(
            got.iter().all(|d| d.len() <= DATAGRAM_CHUNK),
            "{:?}",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(session.join().unwrap().unwrap(), 0);
    }
}
