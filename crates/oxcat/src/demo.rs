//! `oxcat demo`: the notes' client/server exchange, run for real over
//! loopback on the kernel's sockets, every socket call traced.
//!
//! Scenes, in the notes' order: the server's socket/bind/listen; the
//! client's connect, which the kernel completes (the three-way handshake)
//! before the server calls accept; accept handing out a new descriptor and
//! ncat-style closing of the listening one; "Hello, Server!" / "Hello,
//! Client!"; a receive that returns fewer bytes than asked; and a close with
//! bytes still buffered, which the kernel delivers before the FIN.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxcat_trace::{Event, Sink, Stamped};
use rustix::event::PollFlags;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::sys;

/// `oxcat demo` alone, or followed by flags: a host named "demo" with a
/// port is still a connect.
pub fn is_demo_invocation(rest: &[OsString]) -> bool {
    rest.len() == 1
        || rest
            .get(1)
            .is_some_and(|a| a.to_string_lossy().starts_with('-'))
}

/// Bytes the client leaves in its send buffer when it calls close().
const DRAIN_BYTES: usize = 256 * 1024;

fn send_all(sock: &Socket, data: &[u8]) -> std::io::Result<()> {
    let mut off = 0;
    while off < data.len() {
        let r = rustix::io::write(sock, &data[off..]).map_err(std::io::Error::from);
        sys::sock_write(sock.as_raw_fd(), &r, data.len() - off);
        off += r?;
    }
    Ok(())
}

fn recv_some(sock: &Socket, buf: &mut [u8]) -> std::io::Result<usize> {
    let asked = buf.len();
    let r = rustix::io::read(sock, buf).map_err(std::io::Error::from);
    sys::sock_read(sock.as_raw_fd(), &r, asked);
    r
}

struct Figures {
    connect_returned: Instant,
    accept_returned: Instant,
    short_reads: usize,
    drained: usize,
}

fn server(
    listening: mpsc::Sender<SocketAddr>,
    go_accept: mpsc::Receiver<()>,
) -> std::io::Result<(Instant, usize, usize)> {
    sys::set_role("server");
    let l = sys::socket(Domain::IPV4, Type::STREAM)?;
    l.set_reuse_address(true)?;
    sys::bind(
        &l,
        &SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
    )?;
    sys::listen(&l, 10)?;
    let addr = l
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let _ = listening.send(addr);
    // Wait until the client's connect() has returned: the handshake is done
    // and the connection sits in the accept queue, with no help from us.
    let _ = go_accept.recv();
    sys::note(|| {
        "server: the handshake is complete; the connection waits in the accept queue".into()
    });
    let mut fds = [sys::pollfd(&l, PollFlags::IN)];
    sys::poll(&mut fds, Some(Duration::from_secs(5)))?;
    let (c, _) = sys::accept(&l)?;
    let accepted = Instant::now();
    sys::close(l);

    // Read "Hello, Server!" with a small buffer: recv returns what is there, up to the size asked.
    let mut msg = Vec::new();
    let mut small = [0u8; 8];
    let mut short_reads = 0;
    while !msg.ends_with(b"!") {
        let n = recv_some(&c, &mut small)?;
        if n == 0 {
            break;
        }
        if n < small.len() {
            short_reads += 1;
        }
        msg.extend_from_slice(&small[..n]);
    }
    send_all(&c, b"Hello, Client!")?;
    // The client closed with bytes still buffered: they all arrive, then EOF.
    let mut drained = 0;
    let mut big = vec![0u8; 64 * 1024];
    loop {
        let n = recv_some(&c, &mut big)?;
        if n == 0 {
            break;
        }
        drained += n;
    }
    sys::close(c);
    Ok((accepted, short_reads, drained))
}

fn client(addr: SocketAddr, connected: mpsc::Sender<()>) -> std::io::Result<Instant> {
    sys::set_role("client");
    let s = sys::socket(Domain::IPV4, Type::STREAM)?;
    sys::connect_start(&s, &SockAddr::from(addr))?;
    let returned = Instant::now();
    let _ = connected.send(());
    send_all(&s, b"Hello, Server!")?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < b"Hello, Client!".len() {
        let n = recv_some(&s, &mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    // Queue a burst and close at once: the kernel keeps sending, then sends FIN.
    sys::note(|| format!("client: send {DRAIN_BYTES} bytes, then close() at once"));
    send_all(&s, &vec![b'x'; DRAIN_BYTES])?;
    sys::close(s);
    Ok(returned)
}

fn run_exchange() -> std::io::Result<(Vec<Stamped>, Figures)> {
    sys::start_trace(Sink::Memory(Vec::new()));
    let (listening_tx, listening_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let srv = std::thread::spawn(move || server(listening_tx, go_rx));
    let addr = listening_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| std::io::Error::other("the server did not start"))?;
    let (conn_tx, conn_rx) = mpsc::channel();
    let cli = std::thread::spawn(move || client(addr, conn_tx));
    let _ = conn_rx.recv_timeout(Duration::from_secs(5));
    let _ = go_tx.send(());
    let connect_returned = cli
        .join()
        .map_err(|_| std::io::Error::other("client thread failed"))??;
    let (accept_returned, short_reads, drained) = srv
        .join()
        .map_err(|_| std::io::Error::other("server thread failed"))??;
    let events = sys::stop_trace()
        .map(|mut t| t.take_events())
        .unwrap_or_default();
    Ok((
        events,
        Figures {
            connect_returned,
            accept_returned,
            short_reads,
            drained,
        },
    ))
}

/// The notes' first diagram, drawn from the calls that really happened.
fn mermaid(events: &[Stamped]) -> String {
    let mut out = String::from(
        "sequenceDiagram\n    participant Client\n    participant Server\n    participant SocketServer as Server Socket\n    participant SocketClient as Client Socket\n",
    );
    let mut said_hello = false;
    for e in events {
        let Event::SocketCall { call, result } = &e.event else {
            continue;
        };
        let (role, rest) = call.split_once(' ').unwrap_or(("", call));
        let rest = rest.trim_start();
        let name = rest.split('(').next().unwrap_or("");
        let line = match (role, name) {
            ("server", "socket" | "bind" | "listen" | "accept") => format!("    Server->>SocketServer: {name}()"),
            ("server", "close") => "    Server->>SocketServer: close()".to_string(),
            ("client", "socket") => "    Client->>SocketClient: socket()".to_string(),
            ("client", "connect") => "    Client->>SocketServer: connect()\n    Note over SocketClient,SocketServer: kernel does the 3-way handshake".to_string(),
            ("client", "write") if !said_hello => {
                said_hello = true;
                format!("    Client->>SocketServer: send(\"Hello, Server!\") = {}", result.as_deref().unwrap_or("?"))
            }
            ("server", "write") => "    SocketServer-->>Client: send(\"Hello, Client!\")".to_string(),
            ("client", "close") => "    Client->>SocketClient: close()".to_string(),
            _ => continue,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

pub fn main(args: &[OsString]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("Usage: oxcat demo\n\nRuns the notes' client/server exchange over loopback with every socket call traced,\nthen prints the sequence diagram drawn from the run and the measured timings.");
        return 0;
    }
    if let Some(a) = args.first() {
        eprintln!(
            "{}: demo: unknown argument \"{}\". Try oxcat demo --help.",
            crate::msg::prefix(),
            a.to_string_lossy()
        );
        return 2;
    }
    let (events, fig) = match run_exchange() {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "{}: demo failed: {}",
                crate::msg::prefix(),
                crate::error::describe(&e)
            );
            return 1;
        }
    };
    println!("== The notes' client/server exchange, live over loopback (kernel sockets) ==\n");
    println!("Every socket call, with microseconds since the start:\n");
    for e in &events {
        println!("{}", e.render_text());
    }
    println!("\n== What it shows ==");
    println!("- connect() returned before the server called accept(): the kernel did the handshake alone.");
    println!(
        "- accept() returned {} µs after connect() returned (the connection waited in the accept queue).",
        fig.accept_returned.saturating_duration_since(fig.connect_returned).as_micros()
    );
    println!("- accept() gave a new descriptor; the listening one was then closed, as ncat does.");
    println!(
        "- recv() with an 8-byte buffer returned fewer bytes than asked {} time(s): keep reading until you have it all.",
        fig.short_reads
    );
    println!(
        "- the client called close() with bytes still queued; the server still received all {} of {} bytes, then EOF.",
        fig.drained, DRAIN_BYTES
    );
    println!("\n== Sequence diagram of this run (Mermaid) ==\n");
    println!("```mermaid\n{}```", mermaid(&events));
    if fig.drained != DRAIN_BYTES {
        return 1;
    }
    0
}
