//! Listen mode: `oxcat -l [HOST] [PORT]`, one client (then the listening
//! sockets are closed, as ncat does) or, with `-k`, many.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::addrset::admitted;
use crate::cli::{Config, Family};
use crate::connect::{relay_options, Unlink};
use crate::error::{describe, Failure};
use crate::exec::{self, Endpoints};
use crate::relay;
use crate::resolve::resolve;
use crate::session_log::{Direction, SessionLog};
use crate::sys;

/// ncat's listen backlog for a single client (what its `listen(3, 10)` shows).
const BACKLOG_ONE: i32 = 10;
/// With -k, a deeper queue so bursts of clients are not dropped.
const BACKLOG_MANY: i32 = 1024;

struct Listener {
    sock: Socket,
    shown: String,
}

fn bind_addresses(cfg: &Config) -> Result<Vec<SocketAddr>, Failure> {
    match &cfg.host {
        Some(h) => resolve(h, cfg.port, cfg.family, cfg.nodns),
        None => {
            // No address: both stacks, IPv6 first as ncat binds them.
            let mut v = Vec::new();
            if cfg.family != Family::V4 {
                v.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), cfg.port));
            }
            if cfg.family != Family::V6 {
                v.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cfg.port));
            }
            Ok(v)
        }
    }
}

fn bind_failure(addr: &str, e: &io::Error) -> Failure {
    // ncat treats a listener it cannot open as a usage error (exit 2).
    Failure::usage(format!("bind to {addr}: {}", describe(e)))
}

/// Opens a listening (TCP) or bound (UDP) socket on every address.
/// Why a wildcard address could not be opened on this machine (no IPv6):
/// skipped quietly when the user named no address.
fn family_missing(e: &io::Error, addr: &SocketAddr) -> bool {
    e.raw_os_error() == Some(libc::EAFNOSUPPORT)
        || (addr.is_ipv6() && e.raw_os_error() == Some(libc::EADDRNOTAVAIL))
}

/// One socket bound (and, for TCP, listening) on `addr`, as ncat sets it up:
/// SO_REUSEADDR, IPv6 sockets IPv6-only.
fn bind_inet(cfg: &Config, ty: Type, addr: SocketAddr) -> io::Result<Socket> {
    let sock = sys::socket(Domain::for_address(addr), ty)?;
    let _ = sock.set_reuse_address(true);
    if addr.is_ipv6() {
        let _ = sock.set_only_v6(true);
    }
    sys::bind(&sock, &SockAddr::from(addr))?;
    // --pcap: captured from before the first SYN can arrive.
    crate::capture::listening(&sock);
    if ty == Type::STREAM {
        let backlog = if cfg.keep_open {
            BACKLOG_MANY
        } else {
            BACKLOG_ONE
        };
        sys::listen(&sock, backlog)?;
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// `bind_inet` on our stack (`--stack user`): the socket is the Unix end of a bridge.
fn bind_user(cfg: &Config, ty: Type, addr: SocketAddr) -> io::Result<Socket> {
    let Some(us) = crate::user_stack::get() else {
        return bind_inet(cfg, ty, addr);
    };
    if ty == Type::DGRAM {
        us.bind_udp(addr)
    } else {
        let backlog = if cfg.keep_open {
            BACKLOG_MANY
        } else {
            BACKLOG_ONE
        };
        us.listen_tcp(addr, backlog as usize)
    }
}

fn open_inet(cfg: &Config, ty: Type) -> Result<Vec<Listener>, Failure> {
    let addrs = bind_addresses(cfg)?;
    let explicit = cfg.host.is_some() || cfg.family != Family::Any;
    let mut out = Vec::new();
    for addr in addrs {
        let shown = crate::msg::show_socket(&addr);
        let sock = match bind_user(cfg, ty, addr) {
            Ok(s) => s,
            Err(e) if !explicit && family_missing(&e, &addr) => continue,
            Err(e) => return Err(bind_failure(&shown, &e)),
        };
        if crate::msg::verbosity() >= 1 {
            crate::msg::say_raw(&format!("Listening on {shown}"));
        }
        out.push(Listener { sock, shown });
    }
    if out.is_empty() {
        return Err(Failure::network("Unable to open any listening socket"));
    }
    Ok(out)
}

fn open_unix(cfg: &Config, ty: Type) -> Result<(Vec<Listener>, Unlink), Failure> {
    let path = PathBuf::from(cfg.host.as_deref().unwrap_or(""));
    let addr = SockAddr::unix(&path)
        .map_err(|e| Failure::io(format!("socket path {}", path.display()), &e))?;
    let sock = sys::socket(Domain::UNIX, ty).map_err(|e| Failure::io("socket", &e))?;
    let shown = path.display().to_string();
    sys::bind(&sock, &addr).map_err(|e| bind_failure(&shown, &e))?;
    let unlink = Unlink(path);
    if ty == Type::STREAM {
        let backlog = if cfg.keep_open {
            BACKLOG_MANY
        } else {
            BACKLOG_ONE
        };
        sys::listen(&sock, backlog).map_err(|e| Failure::io(format!("listen on {shown}"), &e))?;
    }
    sock.set_nonblocking(true)
        .map_err(|e| Failure::io("fcntl", &e))?;
    if crate::msg::verbosity() >= 1 {
        crate::msg::say_raw(&format!("Listening on {shown}"));
    }
    Ok((vec![Listener { sock, shown }], unlink))
}

/// `--vsock -l [CID] PORT`: listens on every context id (VMADDR_CID_ANY,
/// which ncat shows as 4294967295) unless one is given.
fn open_vsock(cfg: &Config, ty: Type) -> Result<Vec<Listener>, Failure> {
    let cid = match cfg.host.as_deref() {
        Some(h) => crate::connect::parse_cid(h)?,
        None => u32::MAX,
    };
    let shown = format!("{cid}:{}", cfg.port);
    let sock = sys::socket(Domain::VSOCK, ty).map_err(|e| Failure::io("socket", &e))?;
    let _ = sock.set_reuse_address(true);
    sys::bind(&sock, &SockAddr::vsock(cid, u32::from(cfg.port)))
        .map_err(|e| bind_failure(&shown, &e))?;
    if ty == Type::STREAM {
        let backlog = if cfg.keep_open {
            BACKLOG_MANY
        } else {
            BACKLOG_ONE
        };
        sys::listen(&sock, backlog).map_err(|e| Failure::io(format!("listen on {shown}"), &e))?;
    }
    sock.set_nonblocking(true)
        .map_err(|e| Failure::io("fcntl", &e))?;
    if crate::msg::verbosity() >= 1 {
        crate::msg::say_raw(&format!("Listening on {shown}"));
    }
    Ok(vec![Listener { sock, shown }])
}

fn announce_listening(cfg: &Config) {
    if cfg.test {
        crate::msg::stderr_line(format_args!("NCAT TEST: LISTEN"));
    }
}

pub fn run(cfg: &Config, log: &mut Option<SessionLog>) -> Result<i32, Failure> {
    if cfg.max_conns_given && !cfg.keep_open {
        crate::msg::say_raw("Warning: Maximum connections ignored, since it does not take effect without -k or --broker.");
    }
    // --ssl: the certificate first (ncat announces a temporary one before listening).
    crate::tls::start_server(cfg)?;
    let ty = if cfg.udp { Type::DGRAM } else { Type::STREAM };
    let (listeners, _unlink) = if cfg.unix {
        let (l, u) = open_unix(cfg, ty)?;
        (l, Some(u))
    } else if cfg.vsock {
        (open_vsock(cfg, ty)?, None)
    } else {
        (open_inet(cfg, ty)?, None)
    };
    announce_listening(cfg);
    if let Some(server) = &cfg.http_proxy {
        let socks = listeners.into_iter().map(|l| (l.sock, l.shown)).collect();
        return crate::http_proxy::serve(cfg, server, socks);
    }
    if cfg.broker {
        let socks = listeners.into_iter().map(|l| (l.sock, l.shown)).collect();
        return crate::broker::serve(cfg, socks, log);
    }
    let result = match (cfg.udp, cfg.keep_open) {
        (false, false) => serve_one(cfg, listeners, log),
        (false, true) => serve_many(cfg, listeners, log),
        (true, _) => serve_datagrams(cfg, listeners, log),
    };
    // In listen mode ncat ends an idle session as it ends on bad usage: exit 2.
    result.map_err(|f| match f {
        Failure::Network(m) if m.starts_with("Idle timeout") => Failure::Usage(m),
        other => other,
    })
}

fn peer_ip(addr: &SockAddr) -> Option<IpAddr> {
    crate::user_stack::real_addr(addr).map(|s| s.ip())
}

pub(crate) fn is_admitted(cfg: &Config, addr: &SockAddr) -> bool {
    match peer_ip(addr) {
        Some(ip) => admitted(&ip, cfg.allow.as_ref(), cfg.deny.as_ref()),
        None => true, // Unix sockets have no address to check
    }
}

fn proto(cfg: &Config) -> &'static str {
    if cfg.udp {
        "UDP"
    } else {
        "TCP"
    }
}

fn endpoints(cfg: &Config, conn: &Socket, peer: &SockAddr) -> Endpoints {
    Endpoints {
        local: crate::user_stack::real_local(peer).or_else(|| {
            conn.local_addr()
                .ok()
                .and_then(|a| crate::user_stack::real_addr(&a))
        }),
        remote: crate::user_stack::real_addr(peer),
        proto: proto(cfg),
    }
}

/// Waits for readability on all listeners; returns the indexes that are ready.
fn wait_listeners(listeners: &[Listener]) -> Result<Vec<usize>, Failure> {
    loop {
        let mut fds: Vec<_> = listeners
            .iter()
            .map(|l| sys::pollfd(&l.sock, PollFlags::IN))
            .collect();
        let n = sys::poll(&mut fds, None).map_err(|e| Failure::io("poll", &e))?;
        if n > 0 {
            return Ok(fds
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.revents().is_empty())
                .map(|(i, _)| i)
                .collect());
        }
    }
}

/// One client: accept, close the listeners, relay.
fn serve_one(
    cfg: &Config,
    listeners: Vec<Listener>,
    log: &mut Option<SessionLog>,
) -> Result<i32, Failure> {
    let (conn, peer) = 'accepted: loop {
        for i in wait_listeners(&listeners)? {
            match sys::accept(&listeners[i].sock) {
                Ok((conn, peer)) => {
                    announce_connection(&peer, true);
                    if is_admitted(cfg, &peer) {
                        break 'accepted (conn, peer);
                    }
                    // Unlike ncat 7.93, which then hangs, keep listening for an allowed client.
                    deny_message("not allowed");
                    sys::close(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => return Err(Failure::io(format!("accept on {}", listeners[i].shown), &e)),
            }
        }
    };
    for l in listeners {
        close_listener(l.sock);
    }
    let ends = endpoints(cfg, &conn, &peer);
    // --ssl: the handshake; a failed one ends the run (reported under -v), as in ncat.
    let Ok(mut conn) = crate::tls::accept_stream(conn, &peer) else {
        return Ok(1);
    };
    if let Some(command) = &cfg.exec {
        let conn = crate::connect::into_socket(conn)?;
        return exec::run(
            command,
            OwnedFd::from(conn),
            ends,
            exec::Relaying::new(cfg),
            log,
        );
    }
    relay::relay_stream(&mut conn, &relay_options(cfg, false), log)?;
    conn.close();
    Ok(0)
}

/// Closes a listening socket; on our stack the listener behind it stops too.
fn close_listener(sock: Socket) {
    if let Some(us) = crate::user_stack::get() {
        us.forget_listener(&sock);
    }
    sys::close(sock);
}

/// ncat's -v lines for a new client: the address, then (TCP) address and port.
pub(crate) fn announce_connection(peer: &SockAddr, with_port: bool) {
    if crate::msg::verbosity() == 0 {
        return;
    }
    match crate::user_stack::real_addr(peer) {
        Some(s) => {
            crate::msg::say(&format!("Connection from {}.", s.ip()));
            if with_port {
                crate::msg::say(&format!("Connection from {}.", crate::msg::show_socket(&s)));
            }
        }
        None => match peer.as_vsock_address() {
            Some((cid, port)) => crate::msg::say(&format!("Connection from {cid}:{port}.")),
            None => crate::msg::say("Connection from a client on Unix domain socket."),
        },
    }
}

pub(crate) fn deny_message(why: &str) {
    if crate::msg::verbosity() >= 1 {
        crate::msg::say_raw(&format!("New connection denied: {why}"));
    }
}

struct Client {
    sock: Socket,
}

enum ClientState {
    Open,
    Gone,
    StdoutGone,
}

/// Reads what a (non-blocking) client has sent, until it would block or
/// reaches EOF, and writes it to stdout; with `-t`, answers the Telnet
/// options it offers (as the relay does for one client).
fn drain_client(
    sock: &Socket,
    buf: &mut [u8],
    cfg: &Config,
    log: &mut Option<SessionLog>,
    stdout: BorrowedFd<'_>,
) -> ClientState {
    loop {
        let r = rustix::io::read(sock, &mut *buf).map_err(io::Error::from);
        sys::sock_read(sock.as_raw_fd(), &r, buf.len());
        match r {
            Ok(0) => return ClientState::Gone,
            Ok(n) => {
                if cfg.telnet {
                    let answer = relay::telnet_refusals(&buf[..n]);
                    if !answer.is_empty() {
                        // A few bytes on a socket with room: one write.
                        let r = rustix::io::write(sock, &answer).map_err(io::Error::from);
                        sys::sock_write(sock.as_raw_fd(), &r, answer.len());
                    }
                }
                if !cfg.send_only {
                    if let Some(l) = log.as_mut() {
                        l.record(Direction::Received, &buf[..n]);
                    }
                    if write_all_fd(stdout, &buf[..n]).is_err() {
                        return ClientState::StdoutGone;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ClientState::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ClientState::Gone,
        }
    }
}

/// Writes all of `data` to a non-blocking socket, waiting for room as needed.
pub(crate) fn write_all_sock(sock: &Socket, data: &[u8]) -> io::Result<()> {
    let mut off = 0;
    while off < data.len() {
        let r = rustix::io::write(sock, &data[off..]).map_err(io::Error::from);
        sys::sock_write(sock.as_raw_fd(), &r, data.len() - off);
        match r {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [sys::pollfd(sock, PollFlags::OUT)];
                sys::poll(&mut fds, Some(Duration::from_secs(1)))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_all_fd(fd: impl AsFd, data: &[u8]) -> io::Result<()> {
    let mut off = 0;
    while off < data.len() {
        match rustix::io::write(&fd, &data[off..]) {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = [rustix::event::PollFd::new(&fd, PollFlags::OUT)];
                let _ = rustix::event::poll(&mut fds, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Many clients (`-k`): stdin goes to every client, every client's bytes go to
/// stdout; with `-e`/`-c`, each client gets its own program instead.
fn serve_many(
    cfg: &Config,
    listeners: Vec<Listener>,
    log: &mut Option<SessionLog>,
) -> Result<i32, Failure> {
    let stdin = rustix::stdio::stdin();
    let stdout = rustix::stdio::stdout();
    let mut clients: Vec<Client> = Vec::new();
    let mut children: Vec<exec::Session> = Vec::new();
    let mut stdin_open = !cfg.recv_only && cfg.exec.is_none();
    let mut buf = vec![0u8; 256 * 1024];
    let mut crlf_last_cr = false;
    let mut last_activity = Instant::now();

    loop {
        children.retain(|c| !c.finished());

        let mut fds = Vec::with_capacity(listeners.len() + clients.len() + 1);
        for l in &listeners {
            fds.push(sys::pollfd(&l.sock, PollFlags::IN));
        }
        let stdin_slot = if stdin_open && !clients.is_empty() {
            fds.push(sys::pollfd(&stdin, PollFlags::IN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let first_client = fds.len();
        for c in &clients {
            fds.push(sys::pollfd(&c.sock, PollFlags::IN));
        }
        let mut timeout = if children.is_empty() {
            None
        } else {
            Some(Duration::from_millis(100))
        };
        // -i ends the session when connected clients stay silent (never while nobody is connected).
        if let (Some(idle), false) = (cfg.idle_timeout, clients.is_empty()) {
            let left = idle.saturating_sub(last_activity.elapsed());
            if left.is_zero() {
                return Err(Failure::network(format!(
                    "Idle timeout expired ({} ms)",
                    idle.as_millis()
                )));
            }
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        let n = sys::poll(&mut fds, timeout).map_err(|e| Failure::io("poll", &e))?;
        if n == 0 {
            continue;
        }
        last_activity = Instant::now();
        let listener_ready: Vec<bool> = fds[..listeners.len()]
            .iter()
            .map(|f| !f.revents().is_empty())
            .collect();
        let stdin_ready = stdin_slot.is_some_and(|s| !fds[s].revents().is_empty());
        let client_ready: Vec<bool> = fds[first_client..]
            .iter()
            .map(|f| !f.revents().is_empty())
            .collect();
        drop(fds);

        // Bytes from clients go to stdout (or nowhere with --send-only).
        let mut gone = Vec::new();
        for (i, ready) in client_ready.iter().enumerate() {
            if *ready {
                match drain_client(&clients[i].sock, &mut buf, cfg, log, stdout) {
                    ClientState::Open => {}
                    ClientState::Gone => gone.push(i),
                    ClientState::StdoutGone => return Ok(0),
                }
            }
        }
        for i in gone.into_iter().rev() {
            let c = clients.swap_remove(i);
            crate::verbose!(2, "DEBUG: Closing fd {}", c.sock.as_raw_fd());
            sys::close(c.sock);
        }

        // stdin goes to every client.
        if stdin_ready {
            match rustix::io::read(stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    if !cfg.no_shutdown {
                        for c in clients.iter_mut() {
                            let _ = sys::shutdown_write(c.sock.as_fd());
                        }
                    }
                }
                Ok(n) => {
                    let data = if cfg.crlf {
                        let mut out = Vec::with_capacity(n + n / 8);
                        for &b in &buf[..n] {
                            if b == b'\n' && !crlf_last_cr {
                                out.push(b'\r');
                            }
                            out.push(b);
                            crlf_last_cr = b == b'\r';
                        }
                        out
                    } else {
                        buf[..n].to_vec()
                    };
                    if let Some(l) = log.as_mut() {
                        l.record(Direction::Sent, &data);
                    }
                    let mut failed = Vec::new();
                    for (i, c) in clients.iter().enumerate() {
                        if write_all_sock(&c.sock, &data).is_err() {
                            failed.push(i);
                        }
                    }
                    for i in failed.into_iter().rev() {
                        let c = clients.swap_remove(i);
                        sys::close(c.sock);
                    }
                    if let Some(d) = cfg.delay {
                        std::thread::sleep(d);
                    }
                }
            }
        }

        // New clients.
        for (li, ready) in listener_ready.iter().enumerate() {
            if !ready {
                continue;
            }
            loop {
                let (conn, peer) = match sys::accept(&listeners[li].sock) {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) =>
                    {
                        break
                    }
                    Err(e) => {
                        return Err(Failure::io(
                            format!("accept on {}", listeners[li].shown),
                            &e,
                        ))
                    }
                };
                announce_connection(&peer, true);
                if !is_admitted(cfg, &peer) {
                    deny_message("not allowed");
                    sys::close(conn);
                    continue;
                }
                if clients.len() + children.len() >= cfg.max_conns {
                    deny_message(&format!("connection limit reached ({})", cfg.max_conns));
                    sys::close(conn);
                    continue;
                }
                let ends = endpoints(cfg, &conn, &peer);
                // --ssl: the handshake runs on the connection's own thread.
                let Ok(conn) = crate::tls::accept(conn, &peer) else {
                    continue;
                };
                if let Some(command) = &cfg.exec {
                    let how = exec::Relaying::new(cfg);
                    match exec::start(command, OwnedFd::from(conn), ends, how) {
                        Ok(session) => children.push(session),
                        Err(e) => crate::msg::say(&e.to_string()),
                    }
                    continue;
                }
                if !stdin_open && !cfg.no_shutdown && !cfg.recv_only {
                    let _ = sys::shutdown_write(conn.as_fd());
                }
                // A short-lived client's bytes and FIN are often already here:
                // take them now rather than after another poll.
                match drain_client(&conn, &mut buf, cfg, log, stdout) {
                    ClientState::Open => clients.push(Client { sock: conn }),
                    ClientState::Gone => sys::close(conn),
                    ClientState::StdoutGone => return Ok(0),
                }
            }
        }
    }
}

/// UDP and Unix-datagram listeners: the first datagram's sender becomes the
/// peer (the socket is connected to it), then relay as in connect mode. With
/// `-k`, datagrams from every sender go to stdout and stdin goes to the most
/// recent sender.
fn serve_datagrams(
    cfg: &Config,
    listeners: Vec<Listener>,
    log: &mut Option<SessionLog>,
) -> Result<i32, Failure> {
    if cfg.keep_open {
        if let Some(command) = &cfg.exec {
            return serve_datagram_programs(cfg, listeners, command);
        }
    }
    let mut buf = vec![0u8; 65536];
    // With a program, the first datagram is only peeked at, as ncat does:
    // it stays queued for the program.
    let peek = cfg.exec.is_some();
    let (idx, peer, n) = 'first: loop {
        for i in wait_listeners(&listeners)? {
            let sock = &listeners[i].sock;
            let r = match peek {
                true => sock.peek_from(as_uninit(&mut buf)),
                false => sock.recv_from(as_uninit(&mut buf)),
            };
            match r {
                Ok((n, peer)) => {
                    sys::record(
                        || format!("recvfrom({})", sock.as_raw_fd()),
                        || Some(format!("{n} from {}", sys::show_addr(&peer))),
                    );
                    if !is_admitted(cfg, &peer) {
                        deny_message("not allowed");
                        if peek {
                            let _ = sock.recv(as_uninit(&mut buf)); // drop it
                        }
                        continue;
                    }
                    break 'first (i, peer, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Failure::io("recvfrom", &e)),
            }
        }
    };
    if !cfg.send_only && !peek {
        if let Some(l) = log.as_mut() {
            l.record(Direction::Received, &buf[..n]);
        }
        if write_all_fd(rustix::stdio::stdout(), &buf[..n]).is_err() {
            return Ok(0);
        }
    }
    let mut listeners = listeners;
    let sock = listeners.swap_remove(idx).sock;
    for l in listeners {
        close_listener(l.sock);
    }
    announce_connection(&peer, false);
    let has_address = peer.as_socket().is_some()
        || peer.as_pathname().is_some()
        || crate::user_stack::real_addr(&peer).is_some();
    if has_address {
        sys::connect_start(&sock, &peer).map_err(|e| Failure::io("connect", &e))?;
        if let (Some(us), Some(p)) = (
            crate::user_stack::get(),
            crate::user_stack::real_addr(&peer),
        ) {
            // Our stack's UDP socket is connected too, for the peer's ICMP errors.
            let _ = us.connect_udp_listener(&sock, p);
        }
    }
    if let Some(command) = &cfg.exec {
        let ends = endpoints(cfg, &sock, &peer);
        return exec::run(
            command,
            OwnedFd::from(sock),
            ends,
            exec::Relaying::new(cfg),
            log,
        );
    }
    let mut opts = relay_options(cfg, true);
    if !has_address {
        // An unnamed Unix datagram client cannot be answered.
        opts.recv_only = true;
    }
    relay::relay(sock.as_fd(), &opts, log)?;
    Ok(0)
}

/// socket2's recv_from takes `MaybeUninit` bytes; an initialised buffer is a valid one.
fn as_uninit(buf: &mut [u8]) -> &mut [std::mem::MaybeUninit<u8>] {
    // SAFETY: u8 and MaybeUninit<u8> have the same layout, and the buffer is
    // initialised, so viewing it as possibly-uninitialised loses nothing; socket2
    // only writes initialised bytes into it.
    unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) }
}

/// `-u -l -k -e`: each new sender gets its own program. As ncat does it, the
/// bound socket that received the sender's first datagram is connected to
/// that sender and handed to the program (the datagram still queued on it),
/// and a fresh socket is bound to the same address for the next sender.
fn serve_datagram_programs(
    cfg: &Config,
    mut listeners: Vec<Listener>,
    command: &crate::cli::ExecCommand,
) -> Result<i32, Failure> {
    let mut children: Vec<exec::Session> = Vec::new();
    let mut peek = [0u8; 1];
    loop {
        children.retain(|c| !c.finished());
        let mut fds: Vec<_> = listeners
            .iter()
            .map(|l| sys::pollfd(&l.sock, PollFlags::IN))
            .collect();
        let timeout = (!children.is_empty()).then(|| Duration::from_millis(100));
        if sys::poll(&mut fds, timeout).map_err(|e| Failure::io("poll", &e))? == 0 {
            continue;
        }
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.revents().is_empty())
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        for i in ready {
            let sock = &listeners[i].sock;
            let peer = match sock.peek_sender() {
                Ok(p) => p,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(Failure::io("recvfrom", &e)),
            };
            if crate::user_stack::real_addr(&peer).is_none() {
                let _ = sock.recv(as_uninit(&mut peek));
                continue;
            }
            announce_connection(&peer, false);
            let full = children.len() >= cfg.max_conns;
            if full || !is_admitted(cfg, &peer) {
                deny_message(&if full {
                    format!("connection limit reached ({})", cfg.max_conns)
                } else {
                    "not allowed".to_string()
                });
                let _ = sock.recv(as_uninit(&mut peek)); // drop the datagram
                continue;
            }
            let local = sock
                .local_addr()
                .ok()
                .and_then(|a| crate::user_stack::real_addr(&a))
                .ok_or_else(|| Failure::network("UDP socket has no local address"))?;
            // Bind the next listener first, so the address is never unowned.
            let next = match crate::user_stack::get() {
                // Our stack keeps its one UDP socket there; the new listener is
                // a new way into it.
                Some(us) => us.rebind_udp(sock),
                None => bind_inet(cfg, Type::DGRAM, local),
            }
            .map_err(|e| bind_failure(&listeners[i].shown, &e))?;
            let conn = std::mem::replace(&mut listeners[i].sock, next);
            sys::connect_start(&conn, &peer).map_err(|e| Failure::io("connect", &e))?;
            let ends = endpoints(cfg, &conn, &peer);
            let how = exec::Relaying::new(cfg);
            match exec::start(command, OwnedFd::from(conn), ends, how) {
                Ok(session) => children.push(session),
                Err(e) => crate::msg::say(&e.to_string()),
            }
        }
    }
}
