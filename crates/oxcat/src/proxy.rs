//! `--proxy`, `--proxy-type`, `--proxy-auth`, `--proxy-dns`: reaching the
//! target through an HTTP (CONNECT), SOCKS4/4a or SOCKS5 proxy, as ncat does.
//!
//! The connection to the proxy is made by connect mode's own path (so `-w`,
//! `-4`/`-6`, `-s`/`-p` and `--stack user` apply to it); the handshake then
//! runs on that socket, and the socket is handed back as if it were
//! connected to the target: relaying, `-e`, `-z` (and TLS, which starts
//! after the handshake) work on it unchanged. The handshake reads no byte
//! past the proxy's answer (an HTTP answer is peeked at, then only its head
//! is consumed), so whatever the target sends first stays in the socket for
//! the mode that follows.
//!
//! The listening side (`-l --proxy-type http`) is in `http_proxy.rs`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Instant;

use rustix::event::PollFlags;
use socket2::{Socket, Type};

use crate::cli::{Args, Family};
use crate::error::{describe, Failure};
use crate::{sys, verbose};

/// ncat's default port for an HTTP proxy, and for `-l --proxy-type http`.
pub const DEFAULT_HTTP_PORT: u16 = 3128;
/// ncat's default port for SOCKS4 and SOCKS5 proxies.
pub const DEFAULT_SOCKS_PORT: u16 = 1080;

/// The environment variable ncat reads credentials from when `--proxy-auth`
/// is not given (so they stay out of process listings).
const AUTH_ENV: &str = "NCAT_PROXY_AUTH";

/// The largest HTTP answer head (status line and header) we read from a proxy:
/// ncat's limits, 1 KiB for the status line and 10 KiB for the header.
const MAX_HTTP_HEAD: usize = 1024 + 10 * 1024;

/// ncat's SOCKS4 request buffer: the user id and (SOCKS4a) the host name,
/// each NUL-terminated, must fit in it.
const SOCKS4_DATA_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Http,
    Socks4,
    Socks5,
}

impl ProxyKind {
    fn default_port(self) -> u16 {
        match self {
            ProxyKind::Http => DEFAULT_HTTP_PORT,
            ProxyKind::Socks4 | ProxyKind::Socks5 => DEFAULT_SOCKS_PORT,
        }
    }
}

/// `--proxy-dns`: where the target's name is resolved. ncat's bits: `local`
/// resolves here (failing if it cannot), `remote` hands names to the proxy,
/// `both` tries here first, `none` takes only address literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyDns {
    pub local: bool,
    pub remote: bool,
}

/// Connect mode through a proxy.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    pub kind: ProxyKind,
    /// The proxy's host as given (brackets removed), resolved when connecting.
    pub host: String,
    pub port: u16,
    /// `user:pass` (HTTP Basic, SOCKS5 RFC 1929) or a SOCKS4 user id.
    pub auth: Option<String>,
    pub dns: ProxyDns,
}

/// Listen mode as an HTTP proxy (`-l --proxy-type http`).
#[derive(Debug, Clone)]
pub struct ProxyServer {
    /// Credentials clients must present (HTTP Basic), if any.
    pub auth: Option<String>,
}

/// Reads the proxy flags as ncat does: which mode they ask for, and ncat's
/// refusals (exit 2) for the combinations it refuses.
pub fn from_args(
    args: &Args,
    listen: bool,
) -> Result<(Option<ProxyClient>, Option<ProxyServer>), Failure> {
    let dns = match args.proxy_dns.as_deref() {
        None | Some("remote") => ProxyDns {
            local: false,
            remote: true,
        },
        Some("local") => ProxyDns {
            local: true,
            remote: false,
        },
        Some("both") => ProxyDns {
            local: true,
            remote: true,
        },
        Some("none") => ProxyDns {
            local: false,
            remote: false,
        },
        Some(_) => return Err(Failure::usage("Invalid proxy DNS type")),
    };
    if args.proxy.is_none() && args.proxy_type.is_none() {
        return Ok((None, None));
    }
    if args.unixsock {
        return Err(Failure::usage(
            "Proxy option not supported when using Unix domain sockets",
        ));
    }
    let auth = args
        .proxy_auth
        .clone()
        .or_else(|| std::env::var(AUTH_ENV).ok());
    let Some(addr) = args.proxy.as_deref() else {
        // --proxy-type alone: only listen mode's HTTP proxy server takes it.
        let kind = args.proxy_type.as_deref().unwrap_or("http");
        if !listen {
            return Err(Failure::usage(
                "Proxy type (--proxy-type) specified without proxy address (--proxy)",
            ));
        }
        if kind != "http" {
            return Err(Failure::usage(format!(
                "Invalid proxy type \"{kind}\"; Ncat proxy server only supports \"http\""
            )));
        }
        if args.telnet {
            return Err(Failure::usage(
                "Invalid option combination: --telnet has no effect with --proxy-type",
            ));
        }
        // ncat's proxy server ignores these silently; refusing says so.
        if args.udp {
            return Err(Failure::usage(
                "Invalid option combination: --proxy-type http serves TCP only, not -u",
            ));
        }
        if args.exec.is_some() || args.sh_exec.is_some() {
            return Err(Failure::usage(
                "Invalid option combination: --proxy-type http and -e/-c",
            ));
        }
        return Ok((None, Some(ProxyServer { auth })));
    };
    let kind = match args.proxy_type.as_deref().unwrap_or("http") {
        "http" => ProxyKind::Http,
        // ncat takes "4" and "5" too (and then, in 7.93, fails to use them).
        "socks4" | "4" => ProxyKind::Socks4,
        "socks5" | "5" => ProxyKind::Socks5,
        other => {
            return Err(Failure::usage(format!("Invalid proxy type \"{other}\"")));
        }
    };
    let (host, port) = parse_proxy_addr(addr, kind.default_port())?;
    if listen {
        return Err(Failure::usage("Invalid option combination: --proxy and -l"));
    }
    if args.udp {
        // ncat quietly carries -u over the proxy's TCP connection instead.
        return Err(Failure::usage(
            "Invalid option combination: --proxy and -u (proxies carry TCP only)",
        ));
    }
    Ok((
        Some(ProxyClient {
            kind,
            host,
            port,
            auth,
            dns,
        }),
        None,
    ))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (more than
/// one colon: no port), as ncat splits `--proxy`.
fn parse_proxy_addr(text: &str, default_port: u16) -> Result<(String, u16), Failure> {
    let (host, rest) = if let Some(inner) = text.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return Err(Failure::usage(format!(
                "Invalid proxy IPv6 address \"{text}\""
            )));
        };
        (&inner[..end], &inner[end + 1..])
    } else {
        (text, text)
    };
    // The port follows the one colon left (after the brackets, if any).
    let port_text = match rest.find(':') {
        Some(i) if !rest[i + 1..].contains(':') => Some((i, &rest[i + 1..])),
        _ => None,
    };
    let Some((colon, port_text)) = port_text else {
        return Ok((host.to_string(), default_port));
    };
    // ncat reads the port with strtol: an empty one is 0 (and refused later).
    let port = if port_text.is_empty() {
        Some(0)
    } else if port_text.bytes().all(|b| b.is_ascii_digit()) {
        port_text.parse::<u16>().ok()
    } else {
        None
    };
    let Some(port) = port else {
        return Err(Failure::usage(format!(
            "Invalid proxy port number \"{port_text}\""
        )));
    };
    let host = if text.starts_with('[') {
        host
    } else {
        &text[..colon]
    };
    Ok((host.to_string(), port))
}

/// The proxy's addresses (`-4`/`-6`, `-n` apply). A name that does not
/// resolve is a network failure (exit 1), in ncat's words.
fn resolve_proxy(p: &ProxyClient, family: Family, nodns: bool) -> Result<Vec<SocketAddr>, Failure> {
    let fail =
        |why: &str| Failure::network(format!("Could not resolve proxy \"{}\": {why}", p.host));
    let found: Vec<SocketAddr> = if let Ok(ip) = p.host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, p.port)]
    } else if nodns || p.host.is_empty() {
        return Err(fail("Name or service not known"));
    } else {
        match (p.host.as_str(), p.port).to_socket_addrs() {
            Ok(it) => it.collect(),
            Err(e) => {
                let text = describe(&e);
                return Err(fail(text.rsplit(": ").next().unwrap_or(&text)));
            }
        }
    };
    let admitted: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| family.admits(&a.ip()))
        .collect();
    if admitted.is_empty() {
        return Err(fail("Address family for hostname not supported"));
    }
    Ok(admitted)
}

/// How the target travels in the request: an address resolved here, or a
/// name the proxy resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Addr(IpAddr),
    Name(String),
}

/// Resolves the target as `--proxy-dns` says; `family` is `-4`/`-6` (SOCKS4: IPv4).
fn resolve_target(host: &str, family: Family, dns: ProxyDns) -> Result<Target, Failure> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let literal = bare.parse::<IpAddr>().ok();
    let local = match literal {
        Some(ip) if family.admits(&ip) => Some(ip),
        Some(_) => None,
        None if dns.local => (bare, 0u16)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.find(|a| family.admits(&a.ip())))
            .map(|a| a.ip()),
        None => None,
    };
    match local {
        Some(ip) => {
            if literal.is_none() {
                verbose!(1, "Host {host} locally resolved to {ip}.");
            }
            Ok(Target::Addr(ip))
        }
        None if dns.remote => {
            verbose!(1, "Host {host} will be resolved by the proxy.");
            Ok(Target::Name(bare.to_string()))
        }
        None => Err(Failure::network(format!(
            "Error: Failed to resolve host {host} locally"
        ))),
    }
}

/// Connects to `host:port` through the proxy. Returns the socket (the
/// tunnel open), the proxy's address and, on our stack, the local address.
pub fn connect(
    cfg: &crate::cli::Config,
    p: &ProxyClient,
    host: &str,
    port: u16,
) -> Result<(Socket, SocketAddr, Option<SocketAddr>), Failure> {
    if p.kind == ProxyKind::Socks4
        && host
            .trim_matches(['[', ']'])
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    {
        return Err(Failure::network(
            "Error: IPv6 addresses are not supported with Socks4",
        ));
    }
    let addrs = resolve_proxy(p, cfg.family, cfg.nodns)?;
    let mut last = None;
    let mut connected = None;
    for (i, addr) in addrs.iter().enumerate() {
        match crate::connect::connect_one(cfg, *addr, Type::STREAM) {
            Ok((s, local)) => {
                connected = Some((s, *addr, local));
                break;
            }
            Err(e) => {
                if i + 1 < addrs.len() {
                    verbose!(1, "Connection to {addr} failed: {}.", describe(&e));
                    verbose!(1, "Trying next address...");
                }
                last = Some((e, *addr));
            }
        }
    }
    let Some((sock, addr, local)) = connected else {
        let Some((e, addr)) = last else {
            return Err(Failure::network("No address to connect to"));
        };
        return Err(Failure::network(format!(
            "Proxy connection failed: {} (proxy {})",
            describe(&e),
            crate::msg::show_socket(&addr)
        )));
    };
    // ncat waits for a proxy's answers without a limit; -w, when given, bounds them.
    let deadline = cfg.wait.map(|w| Instant::now() + w);
    let wire = Wire {
        sock: &sock,
        deadline,
    };
    match p.kind {
        ProxyKind::Http => http_connect(&wire, p, cfg.family, host, port)?,
        ProxyKind::Socks4 => {
            proxy_banner(&addr);
            socks4_connect(&wire, p, host, port)?
        }
        ProxyKind::Socks5 => {
            proxy_banner(&addr);
            socks5_connect(&wire, p, cfg.family, host, port)?
        }
    }
    Ok((sock, addr, local))
}

/// ncat's -v line once a SOCKS proxy is reached (without a final period, as ncat prints it).
fn proxy_banner(addr: &SocketAddr) {
    if crate::msg::verbosity() >= 1 {
        crate::msg::say_raw(&format!(
            "Connected to proxy {}",
            crate::msg::show_socket(addr)
        ));
    }
}

/// Blocking-style I/O on the non-blocking socket, each wait bounded by the deadline.
struct Wire<'a> {
    sock: &'a Socket,
    deadline: Option<Instant>,
}

impl Wire<'_> {
    fn wait(&self, flags: PollFlags) -> io::Result<()> {
        loop {
            let left = match self.deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "TIMEOUT"));
                    }
                    Some(left)
                }
                None => None,
            };
            let mut fds = [sys::pollfd(self.sock, flags)];
            if sys::poll(&mut fds, left)? > 0 {
                return Ok(());
            }
        }
    }

    fn write_all(&self, data: &[u8]) -> io::Result<()> {
        let mut off = 0;
        while off < data.len() {
            let r = rustix::io::write(self.sock, &data[off..]).map_err(io::Error::from);
            sys::sock_write(self.sock.as_raw_fd(), &r, data.len() - off);
            match r {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::OUT)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes (at least one); 0 is EOF.
    fn read_some(&self, buf: &mut [u8], peek: bool) -> io::Result<usize> {
        loop {
            let flags = if peek {
                rustix::net::RecvFlags::PEEK
            } else {
                rustix::net::RecvFlags::empty()
            };
            let r = rustix::net::recv(self.sock, &mut *buf, flags)
                .map(|(n, _)| n)
                .map_err(io::Error::from);
            if !peek {
                sys::sock_read(self.sock.as_raw_fd(), &r, buf.len());
            }
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::IN)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        let mut off = 0;
        while off < buf.len() {
            match self.read_some(&mut buf[off..], false)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => off += n,
            }
        }
        Ok(())
    }

    /// Reads an HTTP answer's head, up to and including the blank line that
    /// ends it, and not one byte more: what follows belongs to the target.
    /// Returns what was read; at EOF or past `max`, what there was so far
    /// with `complete` false.
    fn read_http_head(&self, max: usize) -> io::Result<(Vec<u8>, bool)> {
        let mut head: Vec<u8> = Vec::new();
        let mut peeked = vec![0u8; 4096];
        loop {
            let room = (max - head.len()).min(peeked.len());
            if room == 0 {
                return Ok((head, false));
            }
            let n = self.read_some(&mut peeked[..room], true)?;
            if n == 0 {
                return Ok((head, false));
            }
            // Where the head ends, searching across what we already hold.
            let from = head.len().saturating_sub(3);
            let mut joined = head[from..].to_vec();
            joined.extend_from_slice(&peeked[..n]);
            let end = find_head_end(&joined).map(|e| e - (head.len() - from));
            let take = end.unwrap_or(n);
            let start = head.len();
            head.resize(start + take, 0);
            self.read_exact(&mut head[start..])?;
            if end.is_some() {
                return Ok((head, true));
            }
        }
    }
}

/// The index just past the blank line that ends an HTTP head (CRLF CRLF, or
/// bare LF LF as ncat also accepts), if `buf` holds it.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    for i in 0..buf.len() {
        if buf[i] != b'\n' {
            continue;
        }
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
}

/// RFC 4648 base64 (with padding), for HTTP Basic credentials (RFC 7617).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The CONNECT request (RFC 9110 §9.3.6), with Basic credentials when given.
fn http_connect_request(target: &Target, port: u16, auth: Option<&str>) -> String {
    let authority = match target {
        Target::Addr(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Target::Addr(ip) => format!("{ip}:{port}"),
        Target::Name(n) if n.contains(':') => format!("[{n}]:{port}"),
        Target::Name(n) => format!("{n}:{port}"),
    };
    let mut req = format!("CONNECT {authority} HTTP/1.0\r\n");
    if let Some(a) = auth {
        req.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(a.as_bytes())
        ));
    }
    req.push_str("\r\n");
    req
}

/// The status code of an HTTP status line (`HTTP/1.1 200 Connection established`), or -1.
fn http_status_code(line: &str) -> i64 {
    let line = line.trim_end_matches(['\r', '\n']);
    let parse = || -> Option<i64> {
        let rest = line.strip_prefix("HTTP/")?;
        let (version, rest) = rest.split_once(' ')?;
        let (major, minor) = version.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return None;
        }
        let code: String = rest
            .trim_start_matches(' ')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        code.parse().ok()
    };
    parse().unwrap_or(-1)
}

/// HTTP CONNECT. ncat first asks without credentials and repeats with them
/// after a 407; we send Basic credentials with the first request (one
/// connection instead of two; Digest-only proxies are not supported).
fn http_connect(
    wire: &Wire<'_>,
    p: &ProxyClient,
    family: Family,
    host: &str,
    port: u16,
) -> Result<(), Failure> {
    let target = resolve_target(host, family, p.dns)?;
    let req = http_connect_request(&target, port, p.auth.as_deref());
    wire.write_all(req.as_bytes())
        .map_err(|e| Failure::network(format!("Error sending proxy request: {}", describe(&e))))?;
    let (head, complete) = wire.read_http_head(MAX_HTTP_HEAD).map_err(|e| {
        Failure::network(format!(
            "Error reading proxy response Status-Line: {}",
            describe(&e)
        ))
    })?;
    let text = String::from_utf8_lossy(&head);
    let Some(first_end) = text.find('\n') else {
        return Err(Failure::network("Error reading proxy response Status-Line"));
    };
    if !complete {
        return Err(Failure::network("Error reading proxy response header"));
    }
    let code = http_status_code(&text[..first_end]);
    verbose!(2, "DEBUG: Proxy returned status code {code}.");
    if code != 200 {
        return Err(Failure::network(format!(
            "Proxy returned status code {code}"
        )));
    }
    Ok(())
}

/// SOCKS4 (and SOCKS4a for names the proxy resolves): one request, one 8-byte answer.
fn socks4_connect(wire: &Wire<'_>, p: &ProxyClient, host: &str, port: u16) -> Result<(), Failure> {
    let user = p.auth.as_deref().unwrap_or("");
    if user.len() >= SOCKS4_DATA_MAX {
        return Err(Failure::network("Error: username is too long"));
    }
    let target = resolve_target(host, Family::V4, p.dns)?;
    let req = socks4_request(&target, port, user)?;
    wire.write_all(&req)
        .map_err(|e| Failure::network(format!("Error: sending proxy request: {}", describe(&e))))?;
    let mut reply = [0u8; 8];
    wire.read_exact(&mut reply)
        .map_err(|e| handshake_failure("Error: short response from proxy", &e))?;
    // 90: request granted; 91, 92, 93: rejected or failed.
    if reply[1] != 90 {
        return Err(Failure::network("Proxy connection failed"));
    }
    Ok(())
}

fn socks4_request(target: &Target, port: u16, user: &str) -> Result<Vec<u8>, Failure> {
    let mut req = vec![4, 1];
    req.extend_from_slice(&port.to_be_bytes());
    match target {
        Target::Addr(IpAddr::V4(ip)) => {
            req.extend_from_slice(&ip.octets());
            req.extend_from_slice(user.as_bytes());
            req.push(0);
        }
        Target::Addr(IpAddr::V6(_)) => {
            return Err(Failure::network(
                "Error: IPv6 addresses are not supported with Socks4",
            ))
        }
        Target::Name(name) => {
            // SOCKS4a: the address 0.0.0.x (x nonzero) says a name follows the user id.
            if user.len() + 1 + name.len() >= SOCKS4_DATA_MAX {
                return Err(Failure::network("Error: host name is too long"));
            }
            req.extend_from_slice(&Ipv4Addr::new(0, 0, 0, 1).octets());
            req.extend_from_slice(user.as_bytes());
            req.push(0);
            req.extend_from_slice(name.as_bytes());
            req.push(0);
        }
    }
    Ok(req)
}

/// SOCKS5 (RFC 1928), with username/password authentication (RFC 1929)
/// offered when credentials are given.
fn socks5_connect(
    wire: &Wire<'_>,
    p: &ProxyClient,
    family: Family,
    host: &str,
    port: u16,
) -> Result<(), Failure> {
    // RFC 1928 §3: VER, NMETHODS, METHODS (0: none, 2: username/password).
    let greeting: &[u8] = if p.auth.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    wire.write_all(greeting)
        .map_err(|e| Failure::network(format!("Error: proxy request: {}", describe(&e))))?;
    let mut choice = [0u8; 2];
    wire.read_exact(&mut choice)
        .map_err(|e| handshake_failure("Error: malformed connect response from proxy", &e))?;
    if choice[0] != 5 {
        return Err(Failure::network(
            "Error: wrong SOCKS version in connect response",
        ));
    }
    match choice[1] {
        0 => verbose!(1, "No authentication needed."),
        2 => {
            verbose!(1, "Doing username and password authentication.");
            let Some(auth) = p.auth.as_deref() else {
                return Err(Failure::network(
                    "Error: proxy selected invalid authentication method",
                ));
            };
            socks5_authenticate(wire, auth)?;
        }
        0xff => {
            return Err(Failure::network(
                "Error: no acceptable authentication method proposed",
            ))
        }
        _ => {
            return Err(Failure::network(
                "Error: proxy selected invalid authentication method",
            ))
        }
    }
    let target = resolve_target(host, family, p.dns)?;
    let req = socks5_request(&target, port)?;
    wire.write_all(&req)
        .map_err(|e| Failure::network(format!("Error: sending proxy request: {}", describe(&e))))?;
    // RFC 1928 §6: VER, REP, RSV, ATYP, BND.ADDR, BND.PORT.
    let mut reply = [0u8; 4];
    wire.read_exact(&mut reply)
        .map_err(|e| handshake_failure("Error: malformed request response from proxy", &e))?;
    if reply[0] != 5 {
        return Err(Failure::network(
            "Error: wrong SOCKS version in request response",
        ));
    }
    if reply[1] != 0 {
        return Err(Failure::network(socks5_reply_text(reply[1])));
    }
    verbose!(1, "connection succeeded.");
    let bound = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            wire.read_exact(&mut len).map_err(|e| {
                handshake_failure("Error: malformed request response from proxy", &e)
            })?;
            usize::from(len[0]) + 2
        }
        _ => return Err(Failure::network("Error: invalid proxy bind address type")),
    };
    let mut rest = vec![0u8; bound];
    wire.read_exact(&mut rest)
        .map_err(|e| handshake_failure("Error: malformed request response from proxy", &e))?;
    Ok(())
}

/// RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD; the answer's STATUS 0 is success.
fn socks5_authenticate(wire: &Wire<'_>, auth: &str) -> Result<(), Failure> {
    let Some((user, pass)) = auth.split_once(':') else {
        return Err(Failure::network("Error: invalid username:password combo"));
    };
    if user.len() > 255 {
        return Err(Failure::network("Error: username length exceeds 255"));
    }
    if pass.len() > 255 {
        return Err(Failure::network("Error: password length exceeds 255"));
    }
    let mut msg = vec![1, user.len() as u8];
    msg.extend_from_slice(user.as_bytes());
    msg.push(pass.len() as u8);
    msg.extend_from_slice(pass.as_bytes());
    wire.write_all(&msg)
        .map_err(|e| handshake_failure("Error: sending proxy authentication", &e))?;
    let mut status = [0u8; 2];
    wire.read_exact(&mut status)
        .map_err(|e| handshake_failure("Error: malformed proxy authentication response", &e))?;
    if status != [1, 0] {
        return Err(Failure::network("Error: authentication failed"));
    }
    Ok(())
}

fn socks5_request(target: &Target, port: u16) -> Result<Vec<u8>, Failure> {
    let mut req = vec![5, 1, 0];
    match target {
        Target::Addr(IpAddr::V4(ip)) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
        }
        Target::Addr(IpAddr::V6(ip)) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
        }
        Target::Name(name) => {
            if name.len() > 255 {
                return Err(Failure::network("Error: hostname length exceeds 255"));
            }
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

/// A failed read or write during a handshake, in ncat's words; a timeout
/// (`-w`) says so.
fn handshake_failure(words: &str, e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::TimedOut {
        Failure::network(format!("{words}: TIMEOUT"))
    } else {
        Failure::network(words)
    }
}

/// RFC 1928 §6's reply codes, in ncat's words.
fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        1 => "Error: general SOCKS server failure",
        2 => "Error: connection not allowed by ruleset",
        3 => "Error: Network unreachable",
        4 => "Error: Host unreachable",
        5 => "Error: Connection refused",
        6 => "Error: TTL expired",
        7 => "Error: Command not supported",
        8 => "Error: Address type not supported",
        _ => "Error: unassigned value in the reply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses_split_as_ncat_splits_them() {
        let ok = |t: &str, d: u16| parse_proxy_addr(t, d).unwrap();
        assert_eq!(ok("127.0.0.1:8080", 3128), ("127.0.0.1".into(), 8080));
        assert_eq!(ok("proxy", 1080), ("proxy".into(), 1080));
        assert_eq!(ok("[::1]:8080", 3128), ("::1".into(), 8080));
        assert_eq!(ok("[::1]", 3128), ("::1".into(), 3128));
        assert_eq!(ok("::1", 3128), ("::1".into(), 3128));
        assert_eq!(ok("h:", 3128), ("h".into(), 0));
        for bad in ["h:abc", "h:99999", "[::1", "h:-1"] {
            let e = parse_proxy_addr(bad, 3128).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(parse_proxy_addr("[::1", 1)
            .unwrap_err()
            .to_string()
            .contains("Invalid proxy IPv6 address"));
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        // RFC 4648 §10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        // RFC 7617 §2's example.
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn connect_requests() {
        let t = Target::Name("example.org".into());
        assert_eq!(
            http_connect_request(&t, 443, None),
            "CONNECT example.org:443 HTTP/1.0\r\n\r\n"
        );
        let t = Target::Addr("::1".parse().unwrap());
        assert_eq!(
            http_connect_request(&t, 80, Some("u:p")),
            "CONNECT [::1]:80 HTTP/1.0\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
    }

    #[test]
    fn status_codes() {
        assert_eq!(http_status_code("HTTP/1.0 200 OK\r\n"), 200);
        assert_eq!(
            http_status_code("HTTP/1.1 407 Proxy Authentication Required"),
            407
        );
        assert_eq!(http_status_code("HTTP/1.1  504"), 504);
        assert_eq!(http_status_code("SOCKS 200"), -1);
        assert_eq!(http_status_code("HTTP/x 200"), -1);
    }

    #[test]
    fn socks_requests() {
        let ip = Target::Addr("127.0.0.1".parse().unwrap());
        assert_eq!(
            socks4_request(&ip, 80, "joe").unwrap(),
            [4, 1, 0, 80, 127, 0, 0, 1, b'j', b'o', b'e', 0]
        );
        let name = Target::Name("h".into());
        assert_eq!(
            socks4_request(&name, 80, "").unwrap(),
            [4, 1, 0, 80, 0, 0, 0, 1, 0, b'h', 0]
        );
        assert_eq!(
            socks5_request(&name, 443).unwrap(),
            [5, 1, 0, 3, 1, b'h', 1, 187]
        );
        let v6 = Target::Addr("::1".parse().unwrap());
        let r = socks5_request(&v6, 1).unwrap();
        assert_eq!(&r[..4], &[5, 1, 0, 4]);
        assert_eq!(r.len(), 4 + 16 + 2);
        assert!(socks4_request(&v6, 1, "").is_err());
    }

    #[test]
    fn head_ends() {
        assert_eq!(find_head_end(b"HTTP/1.0 200 OK\r\n\r\nrest"), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.0 200 OK\n\nrest"), Some(17));
        assert_eq!(find_head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n"), None);
    }

    #[test]
    fn target_resolution_follows_proxy_dns() {
        let remote = ProxyDns {
            local: false,
            remote: true,
        };
        let none = ProxyDns {
            local: false,
            remote: false,
        };
        let local = ProxyDns {
            local: true,
            remote: false,
        };
        assert_eq!(
            resolve_target("127.0.0.1", Family::Any, none).unwrap(),
            Target::Addr("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            resolve_target("[::1]", Family::Any, remote).unwrap(),
            Target::Addr("::1".parse().unwrap())
        );
        assert_eq!(
            resolve_target("localhost", Family::Any, remote).unwrap(),
            Target::Name("localhost".into())
        );
        assert!(resolve_target("localhost", Family::Any, none).is_err());
        assert!(matches!(
            resolve_target("localhost", Family::V4, local).unwrap(),
            Target::Addr(IpAddr::V4(_))
        ));
        let e = resolve_target("no-such-host.invalid", Family::Any, local).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("Failed to resolve host"), "{e}");
    }
}
