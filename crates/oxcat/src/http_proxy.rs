//! `-l --proxy-type http`: oxcat as an HTTP proxy, as ncat's is.
//!
//! Each client gets a thread (ncat forks a process) and is served one
//! request: `CONNECT host:port` opens a tunnel (RFC 9110 §9.3.6), and `GET`,
//! `HEAD` and `POST` with an absolute `http://` URI are forwarded to the
//! origin server as HTTP/1.0 with `Connection: close` (RFC 9112 §3.2.2),
//! hop-by-hop fields removed (RFC 9110 §7.6.1). Other methods get 405.
//! With `--proxy-auth user:pass`, a request without those Basic credentials
//! (RFC 7617) gets 407. Like ncat's, the server keeps accepting clients with
//! or without `-k`, and stdin and stdout take no part. The answers are
//! ncat's, byte for byte (`HTTP/1.0 504 Gateway Timeout`, ...). With
//! `--ssl` the clients speak TLS to the proxy (`curl -x https://...`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::PollFlags;
use socket2::{Socket, Type};

use crate::cli::Config;
use crate::error::Failure;
use crate::proxy::{base64, ProxyServer};
use crate::{sys, verbose};

/// ncat's limits on what it holds in memory for one request or answer.
const MAX_REQUEST_LINE: usize = 1024;
const MAX_STATUS_LINE: usize = 1024;
const MAX_HEADER: usize = 10 * 1024;

/// Serves until killed. `listeners`: the listening sockets and how they are shown.
pub fn serve(
    cfg: &Config,
    server: &ProxyServer,
    listeners: Vec<(Socket, String)>,
) -> Result<i32, Failure> {
    let ctx = Arc::new(Context {
        cfg: cfg.clone(),
        expected_auth: server.auth.as_deref().map(|a| base64(a.as_bytes())),
    });
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let mut fds: Vec<_> = listeners
            .iter()
            .map(|(s, _)| sys::pollfd(s, PollFlags::IN))
            .collect();
        sys::poll(&mut fds, None).map_err(|e| Failure::io("poll", &e))?;
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.revents().is_empty())
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        for i in ready {
            let (listener, shown) = &listeners[i];
            loop {
                let (conn, peer) = match sys::accept(listener) {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) =>
                    {
                        // Out of descriptors: let running clients finish some.
                        std::thread::sleep(Duration::from_millis(50));
                        break;
                    }
                    Err(e) => return Err(Failure::io(format!("accept on {shown}"), &e)),
                };
                // ncat's proxy closes refused clients without a word.
                if !crate::listen::is_admitted(cfg, &peer) {
                    sys::close(conn);
                    continue;
                }
                // ncat's proxy ignores -m; an explicit -m bounds the clients served at once.
                if cfg.max_conns_given && active.load(Ordering::Relaxed) >= cfg.max_conns {
                    verbose!(
                        1,
                        "New connection denied: connection limit reached ({})",
                        cfg.max_conns
                    );
                    sys::close(conn);
                    continue;
                }
                if let Some(p) = crate::user_stack::real_addr(&peer) {
                    verbose!(2, "DEBUG: Connection from {}.", crate::msg::show_socket(&p));
                }
                // --ssl: an HTTPS-speaking proxy, as ncat's is; the handshake runs
                // on the connection's own thread.
                let Ok(conn) = crate::tls::accept(conn, &peer) else {
                    continue;
                };
                active.fetch_add(1, Ordering::Relaxed);
                let (ctx, done) = (ctx.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("oxcat-proxy".into())
                    .spawn(move || {
                        handle_client(&ctx, conn);
                        done.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }
}

struct Context {
    cfg: Config,
    /// `user:pass` base64-encoded, as it arrives in a Basic credential.
    expected_auth: Option<String>,
}

/// ncat's answers for the requests it does not carry out.
fn status_text(code: u16) -> &'static str {
    match code {
        200 => "HTTP/1.0 200 OK\r\n\r\n",
        400 => "HTTP/1.0 400 Bad Request\r\n\r\n",
        403 => "HTTP/1.0 403 Forbidden\r\n\r\n",
        // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
        405 => "HTTP/1.0 405 Method Not Allowed\r\nAllow: CONNECT, GET, HEAD, POST\r\n\r\n",
        413 => "HTTP/1.0 413 Request Entity Too Large\r\n\r\n",
        501 => "HTTP/1.0 501 Not Implemented\r\n\r\n",
        504 => "HTTP/1.0 504 Gateway Timeout\r\n\r\n",
        _ => "HTTP/1.0 500 Internal Server Error\r\n\r\n",
    }
}

/// RFC 9110 §11.7.1: the challenge a client without the right credentials gets.
const PROXY_AUTHENTICATE: &str = "HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"Ncat\"\r\n\r\n";

/// A socket read through a buffer, so a request's head can be taken line by
/// line and whatever came after it (a body, a tunnel's first bytes) kept.
struct Buffered {
    sock: Socket,
    buf: Vec<u8>,
    start: usize,
}

enum LineError {
    /// The line (or the header) is longer than allowed.
    TooLong,
    /// EOF or an error before the line ended.
    Broken,
}

impl Buffered {
    fn new(sock: Socket) -> Self {
        Buffered {
            sock,
            buf: Vec::new(),
            start: 0,
        }
    }

    fn held(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let mut chunk = [0u8; 8192];
        loop {
            match (&self.sock).read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One line, with its LF; `max` bounds its length (ncat: length >= max is too long).
    fn read_line(&mut self, max: usize) -> Result<Vec<u8>, LineError> {
        loop {
            if let Some(i) = self.held().iter().position(|&b| b == b'\n') {
                if i + 1 >= max {
                    return Err(LineError::TooLong);
                }
                let line = self.held()[..=i].to_vec();
                self.start += i + 1;
                return Ok(line);
            }
            if self.held().len() >= max {
                return Err(LineError::TooLong);
            }
            match self.fill() {
                Ok(0) | Err(_) => return Err(LineError::Broken),
                Ok(_) => {}
            }
        }
    }

    /// Header lines up to the blank line, as one text (the blank line included).
    fn read_header(&mut self) -> Result<Vec<u8>, LineError> {
        let mut header = Vec::new();
        loop {
            let line = self.read_line(MAX_HEADER)?;
            if header.len() + line.len() >= MAX_HEADER {
                return Err(LineError::TooLong);
            }
            let blank = line == b"\n" || line == b"\r\n";
            header.extend_from_slice(&line);
            if blank {
                return Ok(header);
            }
        }
    }

    /// Reads into `out`, from what is held first; 0 is EOF.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.held().is_empty() && self.fill()? == 0 {
            return Ok(0);
        }
        let n = self.held().len().min(out.len());
        out[..n].copy_from_slice(&self.held()[..n]);
        self.start += n;
        Ok(n)
    }
}

fn handle_client(ctx: &Context, conn: Socket) {
    let _ = conn.set_nonblocking(false);
    let mut client = Buffered::new(conn);
    if let Err(code) = serve_request(ctx, &mut client) {
        let _ = (&client.sock).write_all(status_text(code).as_bytes());
    }
}

/// One request, start to end. An error code is answered with ncat's status
/// line; `Ok` means the answer (or the tunnel) is done, or cannot be given.
fn serve_request(ctx: &Context, client: &mut Buffered) -> Result<(), u16> {
    // RFC 9112 §2.2: empty lines before the request line are ignored.
    let line = loop {
        match client.read_line(MAX_REQUEST_LINE) {
            Ok(l) if l == b"\n" || l == b"\r\n" => continue,
            Ok(l) => break l,
            Err(LineError::TooLong) => return Err(413),
            Err(LineError::Broken) => {
                verbose!(2, "DEBUG: Error reading Request-Line.");
                return Err(400);
            }
        }
    };
    let line = String::from_utf8_lossy(&line).into_owned();
    verbose!(2, "DEBUG: Request-Line: {}", line.trim_end());
    let request = parse_request_line(&line).inspect_err(|_| {
        verbose!(2, "DEBUG: Error parsing Request-Line.");
    })?;
    if !matches!(request.method.as_str(), "CONNECT" | "GET" | "HEAD" | "POST") {
        return Err(405);
    }
    let header = match client.read_header() {
        Ok(h) => h,
        Err(LineError::TooLong) => return Err(413),
        Err(LineError::Broken) => return Err(400),
    };
    let mut fields = parse_header(&String::from_utf8_lossy(&header))?;
    let content_length = content_length(&fields)?;
    if let Some(expected) = &ctx.expected_auth {
        if !has_basic_credentials(&fields, expected) {
            let _ = (&client.sock).write_all(PROXY_AUTHENTICATE.as_bytes());
            return Ok(());
        }
    }
    if request.method == "CONNECT" {
        return tunnel(ctx, client, &request.target);
    }
    if request.target.scheme != "http" {
        verbose!(
            2,
            "DEBUG: Unknown scheme in URI: {}.",
            request.target.scheme
        );
        return Err(400);
    }
    if request.method == "POST" && content_length.is_none() {
        // Without Content-Length (a chunked body) we could not tell where the body ends.
        return Err(400);
    }
    remove_hop_by_hop(&mut fields, false)?;
    let port = request.target.port.unwrap_or(80);
    let target = connect_target(ctx, &request.target.host, port, true)?;
    let host_field = if port == 80 {
        show_host(&request.target.host)
    } else {
        format!("{}:{port}", show_host(&request.target.host))
    };
    set_field(&mut fields, "Host", &host_field);
    set_field(&mut fields, "Connection", "close");
    forward(
        client,
        target,
        &request,
        &fields,
        content_length.unwrap_or(0),
    )
}

/// `host` as it goes into a Host field or an authority: IPv6 in brackets.
fn show_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Resolves and connects to the origin server (or a tunnel's end); every
/// failure is ncat's 504. `check_loop`: refuse requests for ourselves.
fn connect_target(ctx: &Context, host: &str, port: u16, check_loop: bool) -> Result<Socket, u16> {
    let cfg = &ctx.cfg;
    let addrs = crate::resolve::resolve(host, port, cfg.family, cfg.nodns).map_err(|_| {
        verbose!(2, "DEBUG: Can't resolve name \"{host}\".");
        504u16
    })?;
    // RFC 9110 §7.3.3 (was RFC 2616 §5.1.2): a proxy must recognize requests
    // for itself, or it would loop.
    if check_loop && port == cfg.port && addrs.iter().any(|a| is_local(a.ip())) {
        verbose!(2, "DEBUG: Proxy loop detected: {host}:{port}");
        return Err(403);
    }
    for addr in &addrs {
        match crate::connect::connect_one(cfg, *addr, Type::STREAM) {
            Ok((sock, _)) => {
                let _ = sock.set_nonblocking(false);
                return Ok(sock);
            }
            Err(_) => verbose!(2, "DEBUG: Can't connect to {}.", show_addr(addr)),
        }
    }
    Err(504)
}

fn show_addr(a: &SocketAddr) -> String {
    crate::msg::show_socket(a)
}

/// Whether `ip` is one of this host's addresses.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// CONNECT: answer 200 once the target is reached, then carry bytes both
/// ways until both sides are done, passing each side's EOF on as a half-close.
fn tunnel(ctx: &Context, client: &mut Buffered, target: &Uri) -> Result<(), u16> {
    let Some(port) = target.port else {
        verbose!(2, "DEBUG: No port number in CONNECT URI.");
        return Err(400);
    };
    verbose!(2, "DEBUG: CONNECT to {}:{port}.", target.host);
    let server = connect_target(ctx, &target.host, port, false)?;
    if (&client.sock)
        .write_all(status_text(200).as_bytes())
        .is_err()
    {
        return Ok(());
    }
    // What the client sent after its request already belongs to the target.
    let early = client.held().to_vec();
    client.start = client.buf.len();
    if !early.is_empty() && (&server).write_all(&early).is_err() {
        return Ok(());
    }
    let (Ok(client_in), Ok(server_out)) = (client.sock.try_clone(), server.try_clone()) else {
        return Ok(());
    };
    let down = std::thread::Builder::new()
        .name("oxcat-tunnel".into())
        .spawn(move || pump(&server, &client_in));
    pump(&client.sock, &server_out);
    if let Ok(t) = down {
        let _ = t.join();
    }
    Ok(())
}

/// Copies `from` to `to` until EOF, then half-closes `to`; on an error both
/// sockets are shut down so the other direction ends too.
fn pump(from: &Socket, to: &Socket) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match (&*from).read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if (&*to).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// GET, HEAD, POST: the request (and its body) to the origin server, its
/// answer back to the client. Once the origin server has the request, a
/// failure can only end the exchange.
fn forward(
    client: &mut Buffered,
    server: Socket,
    request: &Request,
    fields: &[(String, String)],
    body_length: u64,
) -> Result<(), u16> {
    let mut head = format!(
        "{} {} HTTP/1.0\r\n",
        request.method,
        if request.target.path.is_empty() {
            "/".to_string()
        } else if request.target.path.starts_with('/') {
            request.target.path.clone()
        } else {
            format!("/{}", request.target.path)
        }
    );
    for (name, value) in fields {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if (&server).write_all(head.as_bytes()).is_err() {
        return Err(504);
    }
    let mut left = body_length;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match client.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                left -= n as u64;
                if (&server).write_all(&buf[..n]).is_err() {
                    return Err(504);
                }
            }
        }
    }

    let mut origin = Buffered::new(server);
    let Ok(status) = origin.read_line(MAX_STATUS_LINE) else {
        verbose!(2, "DEBUG: Error reading Status-Line.");
        return Ok(());
    };
    let Some((code, phrase)) = parse_status_line(&String::from_utf8_lossy(&status)) else {
        verbose!(2, "DEBUG: Error parsing Status-Line.");
        return Ok(());
    };
    let Ok(header) = origin.read_header() else {
        return Ok(());
    };
    let Ok(mut fields) = parse_header(&String::from_utf8_lossy(&header)) else {
        return Ok(());
    };
    let Ok(length) = content_length(&fields) else {
        return Ok(());
    };
    if remove_hop_by_hop(&mut fields, true).is_err() {
        return Ok(());
    }
    set_field(&mut fields, "Connection", "close");
    let mut head = format!("HTTP/1.0 {code} {phrase}\r\n");
    for (name, value) in &fields {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if (&client.sock).write_all(head.as_bytes()).is_err() {
        return Ok(());
    }
    // RFC 9110 §6.4.1: no body after HEAD, 1xx, 204 or 304.
    if request.method == "HEAD" || (100..200).contains(&code) || code == 204 || code == 304 {
        return Ok(());
    }
    // A body of Content-Length bytes, or (without one) all until the origin closes.
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match origin.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                left -= n as u64;
                if (&client.sock).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
struct Uri {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    target: Uri,
}

/// RFC 9110 §5.6.2: token characters.
fn is_token_char(c: char) -> bool {
    !c.is_control() && !"()<>@,;:\\\"/[]?={} \t".contains(c)
}

/// `METHOD URI [HTTP/x.y]`: CONNECT takes an authority (`host:port`),
/// the others an absolute URI (RFC 9112 §3.2). Errors are 400.
fn parse_request_line(line: &str) -> Result<Request, u16> {
    let line = line.trim_end_matches(['\r', '\n']).trim_start_matches(' ');
    let method_end = line.find(|c: char| !is_token_char(c)).unwrap_or(line.len());
    let method = &line[..method_end];
    if method.is_empty() {
        return Err(400);
    }
    let rest = line[method_end..].trim_start_matches(' ');
    let uri_end = rest.find(' ').unwrap_or(rest.len());
    let uri = &rest[..uri_end];
    if uri.is_empty() {
        return Err(400);
    }
    let target = if method == "CONNECT" {
        parse_authority(uri).map(|(host, port)| Uri {
            scheme: String::new(),
            host,
            port,
            path: String::new(),
        })
    } else {
        parse_uri(uri)
    }
    .ok_or(400u16)?;
    let version = rest[uri_end..].trim_start_matches(' ');
    // No version is HTTP/0.9; otherwise it must read HTTP/<digits>.<digits>.
    if !version.is_empty() {
        let ok = version.strip_prefix("HTTP/").and_then(|v| {
            let (major, minor) = v.split_once('.')?;
            let minor_digits: String = minor.chars().take_while(char::is_ascii_digit).collect();
            (!major.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && !minor_digits.is_empty())
            .then_some(())
        });
        ok.ok_or(400u16)?;
    }
    Ok(Request {
        method: method.to_string(),
        target,
    })
}

/// RFC 3986 §3: `scheme://authority/path?query`; the scheme is lowercased,
/// the path (with the query) is kept as it is for the origin server.
fn parse_uri(text: &str) -> Option<Uri> {
    let colon = text.find(':')?;
    let scheme = &text[..colon];
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let rest = text[colon + 1..].strip_prefix("//")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, port) = parse_authority(&rest[..end])?;
    Some(Uri {
        scheme: scheme.to_ascii_lowercase(),
        host,
        port,
        path: rest[end..].to_string(),
    })
}

/// RFC 3986 §3.2: `host[:port]` or `[v6][:port]`; user information is refused
/// (a proxy has no use for it), the host is percent-decoded.
fn parse_authority(text: &str) -> Option<(String, Option<u16>)> {
    if text.contains('@') {
        return None;
    }
    let (host, port_text) = if let Some(inner) = text.strip_prefix('[') {
        let end = inner.find(']')?;
        let after = &inner[end + 1..];
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        (&inner[..end], after.strip_prefix(':'))
    } else {
        match text.rfind(':') {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        }
    };
    let port = match port_text {
        None | Some("") => None,
        Some(p) => {
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            match p.parse::<u16>() {
                Ok(n) if n >= 1 => Some(n),
                _ => return None,
            }
        }
    };
    Some((percent_decode(host)?, port))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 9112 §5: `name: value` lines; a line starting with a space or tab
/// continues the previous value (obsolete folding, §5.2). Whitespace runs in
/// a value become one space, as ncat normalizes them. Errors are 400.
fn parse_header(text: &str) -> Result<Vec<(String, String)>, u16> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        let (words, name) = if line.starts_with([' ', '\t']) {
            let Some(last) = fields.last() else {
                return Err(400);
            };
            (line, last.0.clone())
        } else {
            let Some(colon) = line.find(':') else {
                return Err(400);
            };
            let name = &line[..colon];
            if name.is_empty() || !name.chars().all(is_token_char) {
                return Err(400);
            }
            (&line[colon + 1..], name.to_string())
        };
        if words.chars().any(|c| c.is_control() && c != '\t') {
            return Err(400);
        }
        let value = words
            .split([' ', '\t'])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                if !value.is_empty() {
                    if !last.1.is_empty() {
                        last.1.push(' ');
                    }
                    last.1.push_str(&value);
                }
            }
        } else {
            fields.push((name, value));
        }
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let name = name.to_string();
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
        .map(|(_, v)| v.as_str())
}

/// The first Content-Length (RFC 9110 §8.6), if any; a malformed one is 400.
fn content_length(fields: &[(String, String)]) -> Result<Option<u64>, u16> {
    match field(fields, "Content-Length").next() {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse().map(Some).map_err(|_| 400)
        }
        Some(_) => Err(400),
    }
}

/// Replaces every field called `name` with one at the end.
fn set_field(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    fields.push((name.to_string(), value.to_string()));
}

/// RFC 9110 §7.6.1: fields that only concern one hop, and those the
/// Connection field names. An answer keeps Transfer-Encoding: its body is
/// passed on as it comes (ncat drops the field and so garbles chunked bodies).
fn remove_hop_by_hop(fields: &mut Vec<(String, String)>, answer: bool) -> Result<(), u16> {
    let mut named: Vec<String> = Vec::new();
    for value in field(fields, "Connection") {
        for token in value.split(',') {
            let token = token.trim_matches(' ');
            if token.is_empty() || !token.chars().all(is_token_char) {
                return Err(400);
            }
            named.push(token.to_string());
        }
    }
    let mut hop = vec![
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailers",
        "Upgrade",
    ];
    if !answer {
        hop.push("Transfer-Encoding");
    }
    fields.retain(|(n, _)| {
        !hop.iter().any(|h| n.eq_ignore_ascii_case(h))
            && !named.iter().any(|h| n.eq_ignore_ascii_case(h))
    });
    Ok(())
}

/// Whether a Proxy-Authorization field carries `Basic <expected>` (RFC 7617 §2).
fn has_basic_credentials(fields: &[(String, String)], expected: &str) -> bool {
    field(fields, "Proxy-Authorization").any(|v| {
        let mut parts = v.splitn(2, ' ');
        let scheme = parts.next().unwrap_or("");
        let token = parts.next().unwrap_or("").trim_matches(' ');
        scheme.eq_ignore_ascii_case("Basic") && token == expected
    })
}

/// `HTTP/x.y code phrase`: the code and the phrase.
fn parse_status_line(line: &str) -> Option<(u16, String)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix("HTTP/")?;
    let (version, rest) = rest.split_once(' ')?;
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    let rest = rest.trim_start_matches(' ');
    let code_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let code = rest[..code_end].parse().ok()?;
    Some((code, rest[code_end..].trim_start_matches(' ').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = parse_request_line("GET http://Example.org:8080/a?b=c HTTP/1.1\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.target,
            Uri {
                scheme: "http".into(),
                host: "Example.org".into(),
                port: Some(8080),
                path: "/a?b=c".into()
            }
        );
        let r = parse_request_line("CONNECT [::1]:443 HTTP/1.0\r\n").unwrap();
        assert_eq!((r.target.host.as_str(), r.target.port), ("::1", Some(443)));
        let r = parse_request_line("CONNECT host HTTP/1.0\r\n").unwrap();
        assert_eq!(
            r.target.port, None,
            "a CONNECT without a port is refused later"
        );
        let r = parse_request_line("HEAD HTTP://h HTTP/1.0\n").unwrap();
        assert_eq!(
            (r.target.scheme.as_str(), r.target.path.as_str()),
            ("http", "")
        );
        // ncat's 400s: a relative URI, user information, a bad version, no URI.
        for bad in [
            "GET /x HTTP/1.0",
            "GET http://u:p@h/ HTTP/1.0",
            "GET http://h/ FOO/1.0",
            "GET",
            "GET http://h:0/ HTTP/1.0",
            "CONNECT h:99999 HTTP/1.0",
            "",
        ] {
            assert_eq!(parse_request_line(bad), Err(400), "{bad:?}");
        }
        // An unknown method parses: the 405 comes after.
        assert_eq!(
            parse_request_line("FOO http://h/ HTTP/1.0").unwrap().method,
            "FOO"
        );
    }

    #[test]
    fn headers_and_hop_by_hop_fields() {
        let text = "Host: h\r\nConnection: keep-alive, X-Foo\r\nX-Foo: 1\r\nKeep-Alive: 5\r\nX-Long: a\r\n  b\r\nProxy-Authorization: Basic dTpw\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut f = parse_header(text).unwrap();
        assert_eq!(field(&f, "x-long").next(), Some("a b"));
        assert!(has_basic_credentials(&f, "dTpw"));
        assert!(!has_basic_credentials(&f, "dTpx"));
        remove_hop_by_hop(&mut f, false).unwrap();
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Host", "X-Long"]);
        set_field(&mut f, "host", "h:81");
        assert_eq!(f.last().unwrap(), &("host".to_string(), "h:81".to_string()));
        assert_eq!(parse_header("No colon\r\n\r\n"), Err(400));
        assert_eq!(parse_header("Bad Name: x\r\n\r\n"), Err(400));
        assert_eq!(
            content_length(&parse_header("Content-Length: 12\r\n").unwrap()),
            Ok(Some(12))
        );
        assert_eq!(
            content_length(&parse_header("Content-Length: x\r\n").unwrap()),
            Err(400)
        );
        let mut answer =
            parse_header("Transfer-Encoding: chunked\r\nConnection: close\r\n").unwrap();
        remove_hop_by_hop(&mut answer, true).unwrap();
        assert_eq!(field(&answer, "Transfer-Encoding").next(), Some("chunked"));
    }

    #[test]
    fn status_lines_and_answers() {
        assert_eq!(
            parse_status_line("HTTP/1.1 404 Not Found\r\n"),
            Some((404, "Not Found".to_string()))
        );
        assert_eq!(
            parse_status_line("HTTP/1.0 200\r\n"),
            Some((200, String::new()))
        );
        assert_eq!(parse_status_line("ICY 200 OK\r\n"), None);
        assert_eq!(status_text(504), "HTTP/1.0 504 Gateway Timeout\r\n\r\n");
        assert!(status_text(405).contains("Allow: CONNECT, GET, HEAD, POST\r\n"));
    }

    #[test]
    fn loop_detection_knows_local_addresses() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("::1".parse().unwrap()));
        // TEST-NET-1 (RFC 5737) is nobody's address here.
        assert!(!is_local("192.0.2.1".parse().unwrap()));
    }
}
