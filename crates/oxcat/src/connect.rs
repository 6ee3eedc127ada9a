//! Connect mode: `oxcat HOST PORT`, `oxcat -u HOST PORT`, `oxcat -U PATH`.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::event::PollFlags;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::cli::Config;
use crate::error::{describe, Failure};
use crate::exec::{self, Endpoints};
use crate::relay::{self, RelayOptions};
use crate::resolve::resolve;
use crate::session_log::SessionLog;
use crate::tls::Stream;
use crate::{sys, verbose};

/// ncat gives up on a connection attempt after 10 s unless `-w` says otherwise.
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn relay_options(cfg: &Config, datagram: bool) -> RelayOptions {
    RelayOptions {
        send_only: cfg.send_only,
        recv_only: cfg.recv_only,
        no_shutdown: cfg.no_shutdown,
        crlf: cfg.crlf,
        delay: cfg.delay,
        idle_timeout: cfg.idle_timeout,
        keep_half_open: cfg.keep_open && !cfg.listen,
        datagram,
        quit_on_stdin_eof: false,
        telnet: cfg.telnet,
    }
}

/// Connects a non-blocking socket, waiting at most `-w`; with `--stack
/// user`, over our stack (the socket is then its Unix bridge). Returns the
/// local address when it is not the socket's own.
pub(crate) fn connect_one(
    cfg: &Config,
    addr: SocketAddr,
    ty: Type,
) -> Result<(Socket, Option<SocketAddr>), std::io::Error> {
    if let Some(us) = crate::user_stack::get() {
        let (sock, local) = if ty == Type::DGRAM {
            us.connect_udp(addr)?
        } else {
            us.connect_tcp(addr, cfg.wait.unwrap_or(DEFAULT_CONNECT_TIMEOUT))?
        };
        return Ok((sock, Some(local)));
    }
    connect_kernel(cfg, addr, ty).map(|s| (s, None))
}

fn connect_kernel(cfg: &Config, addr: SocketAddr, ty: Type) -> Result<Socket, std::io::Error> {
    let sock = sys::socket(Domain::for_address(addr), ty)?;
    sock.set_nonblocking(true)?;
    if cfg.source_addr.is_some() || cfg.source_port.is_some() {
        let ip = match &cfg.source_addr {
            Some(s) => s.parse().map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad source address")
            })?,
            None if addr.is_ipv4() => std::net::IpAddr::from([0u8; 4]),
            None => std::net::IpAddr::from([0u16; 8]),
        };
        sock.set_reuse_address(true)?;
        sys::bind(
            &sock,
            &SockAddr::from(SocketAddr::new(ip, cfg.source_port.unwrap_or(0))),
        )?;
    }
    if crate::capture::connect_start(&sock, addr)? {
        return Ok(sock);
    }
    let mut fds = [sys::pollfd(&sock, PollFlags::OUT)];
    let start = Instant::now();
    loop {
        let left = Some(
            cfg.wait
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
                .saturating_sub(start.elapsed()),
        );
        if left.is_some_and(|l| l.is_zero()) {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TIMEOUT"));
        }
        if sys::poll(&mut fds, left)? > 0 {
            break;
        }
    }
    sys::connect_result(&sock)?;
    Ok(sock)
}

fn start_stats() -> Instant {
    Instant::now()
}

fn report_stats(stats: relay::Stats, start: Instant) {
    verbose!(
        1,
        "{} bytes sent, {} bytes received in {:.2} seconds.",
        stats.sent,
        stats.received,
        start.elapsed().as_secs_f64()
    );
}

pub fn run(cfg: &Config, log: &mut Option<SessionLog>) -> Result<i32, Failure> {
    if cfg.unix {
        return run_unix(cfg, log);
    }
    if cfg.vsock {
        return run_vsock(cfg, log);
    }
    let host = cfg.host.as_deref().unwrap_or("localhost");
    if let Some(src) = &cfg.source_addr {
        if src.parse::<std::net::IpAddr>().is_err() {
            return Err(Failure::usage(format!(
                "Could not resolve source address \"{src}\""
            )));
        }
    }
    if crate::user_stack::get().is_some()
        && (cfg.source_addr.is_some() || cfg.source_port.is_some())
    {
        return Err(Failure::usage(
            "-s/-p with --stack user: our stack picks its own address and port",
        ));
    }
    // TLS is set up before connecting, as ncat does: a bad trust file fails first.
    let tls = crate::tls::Client::new(cfg)?;
    // Through a proxy: its handshake done, the socket stands for the target.
    let mut connected = match &cfg.proxy {
        Some(p) => Some(crate::proxy::connect(cfg, p, host, cfg.port)?),
        None => None,
    };
    let addrs = match connected {
        Some(_) => Vec::new(),
        None => resolve(host, cfg.port, cfg.family, cfg.nodns)?,
    };
    let ty = if cfg.udp { Type::DGRAM } else { Type::STREAM };

    let mut last_err = None;
    for (i, addr) in addrs.iter().enumerate() {
        match connect_one(cfg, *addr, ty) {
            Ok((s, local)) => {
                connected = Some((s, *addr, local));
                break;
            }
            Err(e) => {
                if i + 1 < addrs.len() {
                    verbose!(1, "Connection to {addr} failed: {}.", describe(&e));
                    verbose!(1, "Trying next address...");
                }
                last_err = Some((e, *addr));
            }
        }
    }
    let (sock, addr, user_local) = match connected {
        Some(c) => c,
        None => {
            let Some((e, addr)) = last_err else {
                return Err(Failure::network("No address to connect to"));
            };
            if cfg.zero_io && crate::msg::verbosity() == 0 {
                // A port check (-z) fails quietly, as ncat's does: the exit code says it.
                return Ok(1);
            }
            return Err(connect_failure(&e, &crate::msg::show_socket(&addr)));
        }
    };
    let start = start_stats();
    // Taken before TLS may put its bridge in the socket's place.
    let local = user_local.or_else(|| sock.local_addr().ok().and_then(|a| a.as_socket()));
    let mut stream = match &tls {
        // The handshake is done (and reported, "SSL connection to ...") first, as in ncat.
        Some(t) => {
            // Through a proxy, ncat names the target as given, not the proxy.
            let target = match &cfg.proxy {
                Some(_) => format!("{host}:{}", cfg.port),
                None => crate::msg::show_socket(&addr),
            };
            t.handshake(sock, &target, cfg.wait)?
        }
        None => {
            if cfg.proxy.is_none() {
                verbose!(1, "Connected to {}.", crate::msg::show_socket(&addr));
            }
            Stream::Plain(sock)
        }
    };
    if cfg.zero_io {
        return zero_io_probe(cfg, into_socket(stream)?, start);
    }
    if let Some(command) = &cfg.exec {
        let ends = Endpoints {
            local,
            remote: Some(addr),
            proto: if cfg.udp { "UDP" } else { "TCP" },
        };
        let conn = OwnedFd::from(into_socket(stream)?);
        return exec::run(command, conn, ends, exec::Relaying::new(cfg), log);
    }
    let mut opts = relay_options(cfg, cfg.udp);
    // UDP has no EOF to wait for: ncat quits when stdin ends.
    opts.quit_on_stdin_eof = cfg.udp;
    let stats = relay::relay_stream(&mut stream, &opts, log)?;
    report_stats(stats, start);
    stream.close();
    Ok(0)
}

/// The connection as a descriptor, for what needs one (`-e`, `-z`).
pub(crate) fn into_socket(stream: Stream) -> Result<Socket, Failure> {
    stream
        .into_socket()
        .map_err(|e| Failure::io("socketpair", &e))
}

/// `-z`: a TCP connection that opened is the answer. For UDP, as ncat does,
/// send one zero byte and wait a moment for the ICMP port-unreachable that
/// a closed port answers with.
fn zero_io_probe(cfg: &Config, sock: Socket, start: Instant) -> Result<i32, Failure> {
    let mut sent = 0;
    if cfg.udp {
        let r = rustix::io::write(&sock, &[0u8]).map_err(std::io::Error::from);
        sys::sock_write(sock.as_raw_fd(), &r, 1);
        sent = 1;
        let mut fds = [sys::pollfd(&sock, PollFlags::IN)];
        let wait = cfg
            .idle_timeout
            .unwrap_or(std::time::Duration::from_secs(2));
        if sys::poll(&mut fds, Some(wait)).map_err(|e| Failure::io("poll", &e))? > 0 {
            let mut b = [0u8; 1];
            if let Err(e) = rustix::io::read(&sock, &mut b) {
                let e = std::io::Error::from(e);
                if crate::msg::verbosity() == 0 {
                    return Ok(1);
                }
                return Err(Failure::network(describe(&e)));
            }
        }
        verbose!(1, "UDP packet sent successfully");
    }
    sys::close(sock);
    verbose!(
        1,
        "{sent} bytes sent, 0 bytes received in {:.2} seconds.",
        start.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// A failed connect in ncat's words (`Connection refused`, `TIMEOUT`), with the target.
pub fn connect_failure(e: &std::io::Error, target: &str) -> Failure {
    if e.kind() == std::io::ErrorKind::TimedOut {
        Failure::network(format!("Connection to {target} failed: TIMEOUT"))
    } else {
        Failure::network(format!("Connection to {target} failed: {}", describe(e)))
    }
}

/// A unique path for the client end of a Unix datagram socket, so the
/// server has an address to answer to (ncat does the same).
fn datagram_client_path() -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("oxcat.{}.{n}.sock", std::process::id()))
}

/// Removes a socket file when the run ends.
pub struct Unlink(pub PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A vsock context id as ncat reads it (a number; VMADDR_CID_ANY is -1).
pub fn parse_cid(text: &str) -> Result<u32, Failure> {
    text.parse::<u32>()
        .or_else(|_| {
            text.parse::<i64>()
                .ok()
                .filter(|&v| v == -1)
                .map(|_| u32::MAX)
                .ok_or(())
        })
        .map_err(|_| Failure::usage(format!("Invalid CID \"{text}\"")))
}

/// `--vsock CID PORT`: a stream (or, with -u, datagram) vsock socket to a
/// virtual machine's context id, connected within `-w`.
fn run_vsock(cfg: &Config, log: &mut Option<SessionLog>) -> Result<i32, Failure> {
    let host = cfg.host.as_deref().unwrap_or("");
    let cid = parse_cid(host)?;
    let target = SockAddr::vsock(cid, u32::from(cfg.port));
    let ty = if cfg.udp { Type::DGRAM } else { Type::STREAM };
    let shown = format!("{cid}:{}", cfg.port);
    let connect = || -> std::io::Result<Socket> {
        let sock = sys::socket(Domain::VSOCK, ty)?;
        sock.set_nonblocking(true)?;
        if sys::connect_start(&sock, &target)? {
            return Ok(sock);
        }
        let mut fds = [sys::pollfd(&sock, PollFlags::OUT)];
        let wait = cfg.wait.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        if sys::poll(&mut fds, Some(wait))? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TIMEOUT"));
        }
        sys::connect_result(&sock)?;
        Ok(sock)
    };
    let sock = match connect() {
        Ok(s) => s,
        Err(_) if cfg.zero_io && crate::msg::verbosity() == 0 => return Ok(1),
        Err(e) => return Err(connect_failure(&e, &shown)),
    };
    verbose!(1, "Connected to {shown}.");
    serve_addressless(cfg, sock, log)
}

/// The session on a connected socket without an IP address (Unix, vsock):
/// `-z` ends here, `-e`/`-c` get it, or the relay moves the bytes.
fn serve_addressless(
    cfg: &Config,
    sock: Socket,
    log: &mut Option<SessionLog>,
) -> Result<i32, Failure> {
    let start = start_stats();
    if cfg.zero_io {
        return Ok(0);
    }
    if let Some(command) = &cfg.exec {
        let ends = Endpoints {
            local: None,
            remote: None,
            proto: if cfg.udp { "UDP" } else { "TCP" },
        };
        return exec::run(
            command,
            OwnedFd::from(sock),
            ends,
            exec::Relaying::new(cfg),
            log,
        );
    }
    let mut opts = relay_options(cfg, cfg.udp);
    // A datagram socket has no EOF to wait for: quit when stdin ends, as ncat does.
    opts.quit_on_stdin_eof = cfg.udp;
    let stats = relay::relay(sock.as_fd(), &opts, log)?;
    report_stats(stats, start);
    Ok(0)
}

fn run_unix(cfg: &Config, log: &mut Option<SessionLog>) -> Result<i32, Failure> {
    let path = Path::new(cfg.host.as_deref().unwrap_or(""));
    let ty = if cfg.udp { Type::DGRAM } else { Type::STREAM };
    let target = SockAddr::unix(path)
        .map_err(|e| Failure::io(format!("socket path {}", path.display()), &e))?;
    let sock = sys::socket(Domain::UNIX, ty).map_err(|e| Failure::io("socket", &e))?;
    let mut _client_path = None;
    if cfg.udp {
        let own = datagram_client_path();
        let own_addr = SockAddr::unix(&own).map_err(|e| Failure::io("socket path", &e))?;
        sys::bind(&sock, &own_addr)
            .map_err(|e| Failure::io(format!("bind {}", own.display()), &e))?;
        _client_path = Some(Unlink(own));
    }
    sys::connect_start(&sock, &target)
        .map_err(|e| connect_failure(&e, &path.display().to_string()))?;
    sock.set_nonblocking(true)
        .map_err(|e| Failure::io("fcntl", &e))?;
    verbose!(1, "Connected to {}.", path.display());
    // The client's own socket file goes when the session ends.
    let result = serve_addressless(cfg, sock, log);
    drop(_client_path);
    result
}
