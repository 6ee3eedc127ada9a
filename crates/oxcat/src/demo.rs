//! `oxcat demo`: the notes' client/server exchange, run for real: first
//! over loopback on the kernel's sockets, every socket call traced; then on
//! oxcat's own TCP/IP stack (two stacks on a simulated link, see
//! `sim_demo`), every segment recorded; then the scenes and the figures.
//!
//! The kernel part's steps, in the notes' order: the server's socket/bind/listen; the
//! client's connect, which the kernel completes (the three-way handshake)
//! before the server calls accept; accept handing out a new descriptor and
//! ncat-style closing of the listening one; "Hello, Server!" / "Hello,
//! Client!"; a receive that returns fewer bytes than asked; and a close with
//! bytes still buffered, which the kernel delivers before the FIN.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use oxcat_stack::LinkConfig;
use oxcat_trace::mermaid::{connection_diagram, DiagramOptions};
use oxcat_trace::{Direction, Event, Sink, Stamped};
use rustix::event::PollFlags;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::sim_demo::{PcapOut, SharedPcap};
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
    // The notes' server blocks in recv until bytes arrive.
    c.set_nonblocking(false)?;
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

/// Who made a socket call and which: the host a stack run names, or the
/// role the kernel run puts before the call (`server socket(...)`).
fn role_and_call(e: &Stamped) -> Option<(&str, &str, Option<&str>)> {
    let Event::SocketCall { call, result } = &e.event else {
        return None;
    };
    let (role, rest) = match e.host.as_deref() {
        Some(h) => (h, call.as_str()),
        None => call.split_once(' ').unwrap_or(("", call)),
    };
    let name = rest.trim_start().split('(').next().unwrap_or("").trim();
    Some((role, name, result.as_deref()))
}

/// The notes' first diagram, drawn from the calls that really happened.
fn calls_diagram(events: &[Stamped]) -> String {
    let mut out = String::from(
        "sequenceDiagram\n    participant Client\n    participant Server\n    participant SocketServer as Server Socket\n    participant SocketClient as Client Socket\n",
    );
    let (mut said_hello, mut answered, mut connected) = (false, false, false);
    for e in events {
        let Some((role, name, result)) = role_and_call(e) else {
            continue;
        };
        let line = match (role, name) {
            ("server", "socket" | "bind" | "listen" | "accept" | "close") => {
                format!("    Server->>SocketServer: {name}()")
            }
            ("client", "socket") => "    Client->>SocketClient: socket()".to_string(),
            ("client", "connect") if !connected => {
                connected = true;
                "    Client->>SocketServer: connect()\n    Note over SocketClient,SocketServer: the stack does the 3-way handshake".to_string()
            }
            ("client", "write" | "send") if !said_hello => {
                said_hello = true;
                format!(
                    "    Client->>SocketServer: send('Hello, Server!') = {}",
                    result.unwrap_or("?")
                )
            }
            ("server", "recv" | "read") if said_hello && !answered => {
                "    SocketServer->>Server: recv()".to_string()
            }
            ("server", "write" | "send") if !answered => {
                answered = true;
                "    Server-->>Client: send('Hello, Client!')".to_string()
            }
            ("client", "recv" | "read") if answered => {
                "    Client->>SocketClient: recv()".to_string()
            }
            ("client", "close") => "    Client->>SocketClient: close()".to_string(),
            _ => continue,
        };
        if !out.ends_with(&format!("{line}\n")) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// With `--trace-format json` the events go to standard output as JSON
/// lines and everything else (headings, explanations, diagrams) to standard
/// error, so the output can be piped into `jq`.
static JSON_OUTPUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where a line of the demo goes.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "standard output",
            Stream::Stderr => "standard error",
        }
    }
}

/// Writes one line to `to`. A line that cannot be written ends the demo
/// (`Err(1)`, to be returned up to `main`), never a panic as `println!`'s
/// would: a reader that went away (`oxcat demo | head`, EPIPE) quietly, as
/// the tools in a pipeline do; any other failure (a full disk) with one
/// line saying so.
fn write_line(to: Stream, line: std::fmt::Arguments) -> Result<(), i32> {
    use std::io::Write;
    let written = match to {
        Stream::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
        Stream::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
    };
    written.map_err(|e| {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            complain(&format!(
                "cannot write to {}: {}",
                to.name(),
                crate::error::describe(&e)
            ));
        }
        1
    })
}

/// `oxcat: demo: <line>` on standard error. If even that cannot be
/// written there is no one left to tell: the exit status still says it.
fn complain(line: &str) {
    crate::msg::stderr_line(format_args!("{}: demo: {line}", crate::msg::prefix()));
}

/// The narrative: standard output, or standard error with `--trace-format
/// json`. Returns from the enclosing function with `Err(1)` when the line
/// cannot be written (see `write_line`).
macro_rules! say {
    () => {
        say!("")
    };
    ($($t:tt)*) => {
        write_line(
            if JSON_OUTPUT.load(std::sync::atomic::Ordering::Relaxed) {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            format_args!($($t)*),
        )?
    };
}

/// A line of the timeline (text or JSON): always standard output.
macro_rules! emit {
    ($($t:tt)*) => {
        write_line(Stream::Stdout, format_args!($($t)*))?
    };
}

/// The scene being shown; with `--trace-format json` every event line
/// carries it, as `"scene":N`.
static SCENE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A JSON string literal for `s`.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A scene begins: its heading, and with `--trace-format json` a
/// `{"scene":N,"t_us":0,"type":"scene",...}` line before its events, saying
/// which clock its `t_us` count on (each scene's start from 0).
fn begin_scene(n: u32, clock: &str, heading: &str) -> Result<(), i32> {
    SCENE.store(n, std::sync::atomic::Ordering::Relaxed);
    say!("{heading}\n");
    if JSON_OUTPUT.load(std::sync::atomic::Ordering::Relaxed) {
        let title = heading.trim_matches(|c| c == '=' || c == ' ');
        emit!(
            "{{\"scene\":{n},\"t_us\":0,\"type\":\"scene\",\"title\":{},\"clock\":\"{clock}\"}}",
            json_string(title)
        );
    }
    Ok(())
}

/// An event as a JSON line, with the scene it belongs to.
fn json_line(e: &Stamped) -> String {
    let scene = SCENE.load(std::sync::atomic::Ordering::Relaxed);
    let body = e.render_json();
    match body.strip_prefix('{') {
        Some(rest) => format!("{{\"scene\":{scene},{rest}"),
        None => body,
    }
}

/// `oxcat demo`'s flags.
#[derive(Parser, Debug)]
#[command(
    name = "oxcat demo",
    about = "The notes' client/server exchange, live: on the kernel's sockets over loopback, then on oxcat's own TCP/IP stack over a simulated link (no root, no network), with every socket call and segment, the notes' two diagrams drawn from the run, an accept-queue scene, a lossy-link scene, and the notes' timings measured."
)]
struct DemoArgs {
    /// Packet loss on the lossy-link scene's link, from 0 to 0.9 (at high
    /// loss TCP may give up, as Linux's does after its retries: the scene
    /// then shows that).
    #[arg(
        long,
        default_value_t = 0.1,
        value_name = "P",
        allow_negative_numbers = true
    )]
    loss: f64,
    /// One-way delay of the simulated link, in milliseconds (0 to 10000).
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "MS",
        allow_negative_numbers = true
    )]
    delay: f64,
    /// Seed of the simulated link (same seed, same run).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write packets to FILE (pcap, opens in Wireshark/tshark), as captured at the
    /// client's end: the userspace exchange's, then the lossy-link scene's (TCP stream
    /// 1); with --kernel, every packet on the TUN device.
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,
    /// Write the userspace exchange's segment diagram to FILE (Mermaid); with --kernel,
    /// the kernel run's.
    #[arg(long, value_name = "FILE")]
    mermaid: Option<std::path::PathBuf>,
    /// Timeline format: text, or json: every event of every scene on standard output,
    /// one JSON object a line with its "scene" number, each scene opened by a
    /// {"type":"scene"} line (t_us counts from the start of its scene); the narrative goes
    /// to standard error.
    #[arg(long = "trace-format", value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    trace_format: String,
    /// How many connections the timings are measured over (at least 10; the kernel's at
    /// most 500).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    runs: usize,
    /// Only measure and print the notes' figures.
    #[arg(long)]
    figures_only: bool,
    /// Instead: the exchange with the real Linux kernel as the server and our stack as
    /// the client, over a TUN device in a private network namespace (needs root).
    #[arg(long)]
    kernel: bool,
}

/// What the text timeline shows: everything but timer arming and window
/// changes (in the JSON form), and each segment once, where it left.
fn worth_showing(e: &Stamped) -> bool {
    match &e.event {
        Event::Segment(s) => s.dir == Direction::Out,
        Event::Timer { deadline_us, .. } => deadline_us.is_none(),
        Event::Congestion { .. } => false,
        _ => true,
    }
}

fn print_timeline(events: &[Stamped], json: bool) -> Result<(), i32> {
    for e in events {
        if json {
            emit!("{}", json_line(e));
        } else if worth_showing(e) {
            emit!("{}", e.render_text());
        }
    }
    Ok(())
}

fn demo_error(what: &str, e: &std::io::Error) -> i32 {
    complain(&format!("{what}: {}", crate::error::describe(e)));
    1
}

fn kernel_part(json: bool) -> Result<bool, i32> {
    let (events, fig) = run_exchange().map_err(|e| demo_error("the kernel exchange failed", &e))?;
    begin_scene(
        1,
        "real",
        "== 1. The notes' client/server exchange on the kernel's sockets (loopback) ==",
    )?;
    say!("Every socket call, with microseconds since the start:\n");
    print_timeline(&events, json)?;
    say!("\nWhat it shows:");
    say!("- connect() returned before the server called accept(): the kernel did the handshake alone.");
    say!(
        "- accept() returned {} µs after connect() returned (the connection waited in the accept queue).",
        fig.accept_returned.saturating_duration_since(fig.connect_returned).as_micros()
    );
    say!("- accept() gave a new descriptor; the listening one was then closed, as ncat does.");
    say!(
        "- recv() with an 8-byte buffer returned fewer bytes than asked {} time(s): keep reading until you have it all.",
        fig.short_reads
    );
    say!(
        "- the client called close() with bytes still queued; the server still received all {} of {} bytes, then EOF.",
        fig.drained, DRAIN_BYTES
    );
    say!("\nThe notes' first diagram, drawn from this run:\n");
    say!("```mermaid\n{}```\n", calls_diagram(&events));
    Ok(fig.drained == DRAIN_BYTES)
}

fn user_part(a: &DemoArgs, out: &mut Outputs, json: bool) -> Result<bool, i32> {
    use crate::sim_demo::{self, Sim};
    let delay = std::time::Duration::from_secs_f64(a.delay.max(0.0) / 1000.0);
    let link = LinkConfig {
        delay,
        ..LinkConfig::default()
    };
    let pcap = out.pcap.as_ref().map(|(_, p)| p.clone());
    let mut sim = Sim::new(link, a.seed, 0, pcap)
        .map_err(|e| demo_error("cannot start the simulated link", &e))?;
    let facts = sim_demo::exchange(&mut sim)
        .map_err(|e| demo_error("the userspace exchange failed", &e))?;
    let events = sim.sorted_events();
    begin_scene(
        2,
        "simulated",
        "== 2. The same exchange on oxcat's own TCP/IP stack ==",
    )?;
    say!(
        "Two stacks in this process, client {} and server {}, joined by a simulated link ({} ms each way). Times are simulated microseconds; `out` lines are segments as they left a stack.\n",
        sim_demo::CLIENT_IP,
        sim_demo::SERVER_IP,
        a.delay
    );
    print_timeline(&events, json)?;
    say!("\nWhat it shows:");
    say!(
        "- the handshake was done at {} µs by the stacks alone; the server application called accept() at {} µs, and the connection waited in the accept queue ({} waiting).",
        facts.handshake_done_at, facts.accept_at, facts.queued_before_accept
    );
    let shorts: Vec<String> = facts.short_recvs.iter().map(|n| n.to_string()).collect();
    say!(
        "- recv(8) on \"Hello, Server!\" returned 8, then {}: recv returns what is there, up to what you ask.",
        shorts.join(", ")
    );
    let partial: Vec<String> = facts
        .partial_sends
        .iter()
        .map(|(asked, took)| format!("send({asked}) = {took}"))
        .collect();
    say!(
        "- {}: send takes what fits in the send buffer; the rest is yours to send again.",
        partial.join(", ")
    );
    let fin = if facts.fin_at == facts.last_data_at {
        format!(
            "the FIN riding on the last data segment (at {} µs)",
            facts.fin_at
        )
    } else {
        format!(
            "the last data segment at {} µs, then the FIN at {} µs",
            facts.last_data_at, facts.fin_at
        )
    };
    say!(
        "- close() came with {} bytes still buffered; the stack sent them all, {fin}; the server read {} of {} bytes, then EOF.",
        facts.buffered_at_close, facts.drained, facts.drain_total
    );
    say!("\nThe notes' first diagram (socket calls), drawn from this run:\n");
    say!("```mermaid\n{}```\n", calls_diagram(&events));
    let diagram = connection_diagram(&events, &DiagramOptions::default()).unwrap_or_default();
    say!("The notes' second diagram (segments), drawn from this run:\n");
    say!("```mermaid\n{diagram}```\n");
    out.write_mermaid(&diagram)?;
    out.pcap_intact()?;
    if let Some((path, _)) = &out.pcap {
        say!(
            "(every packet of this exchange, as the client's end saw it, written to {}: try `tshark -r {}`; scene 4's packets follow)\n",
            path.display(),
            path.display()
        );
    }
    Ok(facts.drained == facts.drain_total && facts.fin_at >= facts.last_data_at)
}

/// The accept-queue scene's wait before the server's first accept().
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn queue_scene(a: &DemoArgs, json: bool) -> Result<bool, i32> {
    use crate::sim_demo::{self, secs, Sim};
    let link = LinkConfig {
        delay: std::time::Duration::from_secs_f64(a.delay.max(0.0) / 1000.0),
        ..LinkConfig::default()
    };
    let mut sim = Sim::new(link, a.seed, 3, None)
        .map_err(|e| demo_error("cannot start the simulated link", &e))?;
    let f = sim_demo::accept_queue_scene(&mut sim, 5, 2, QUEUE_WAIT)
        .map_err(|e| demo_error("the accept-queue scene failed", &e))?;
    begin_scene(
        3,
        "simulated",
        &format!(
            "== 3. Scene: a full accept queue (backlog 2, 5 clients, the first accept() after {}) ==",
            secs(f.first_accept_at)
        ),
    )?;
    for e in sim.sorted_events() {
        let shown = match &e.event {
            Event::Queue { .. }
            | Event::Note { .. }
            | Event::SocketCall { .. }
            | Event::Retransmit { .. } => true,
            Event::State { to, .. } => to == "Established",
            _ => false,
        };
        if json {
            emit!("{}", json_line(&e));
        } else if shown {
            emit!("{}", e.render_text());
        }
    }
    say!("\nWhat it shows:");
    say!(
        "- with backlog 2 the accept queue held {} connections (Linux admits backlog + 1); {} of {} clients believed they were connected.",
        f.in_queue, f.established_before_accept, f.clients
    );
    say!(
        "- the server dropped {} SYN(s) and {} final ACK(s) while the queue was full; it called accept() first at {}, and the retransmissions (the server's SYN-ACK, the clients' ACK) got the rest in once accept() had made room: {} of {} accepted, the last at {}.",
        f.syns_dropped,
        f.acks_dropped,
        secs(f.first_accept_at),
        f.accepted_in_the_end,
        f.clients,
        secs(f.last_accept_at)
    );
    say!();
    Ok(f.accepted_in_the_end == f.clients && f.syns_dropped + f.acks_dropped > 0)
}

/// A span of simulated time: `12 ms`, `3.4 s`, `128.0 s (2 min 8 s)`.
fn sim_span(us: u64) -> String {
    if us < 1_000_000 {
        format!("{} ms", us / 1000)
    } else if us < 120_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else {
        let s = us / 1_000_000;
        format!("{:.1} s ({} min {} s)", us as f64 / 1e6, s / 60, s % 60)
    }
}

/// Lines of the lossy scene's text timeline before the rest is only counted.
const LOSS_LINES_SHOWN: usize = 40;

fn loss_scene(a: &DemoArgs, out: &Outputs, json: bool) -> Result<bool, i32> {
    use crate::sim_demo::{self, LossEnd, Sim};
    let link = LinkConfig {
        loss: a.loss.clamp(0.0, 0.9),
        delay: std::time::Duration::from_secs_f64(a.delay.max(0.0) / 1000.0),
        reorder: 0.05,
        ..LinkConfig::default()
    };
    let pcap = out.pcap.as_ref().map(|(_, p)| p.clone());
    let mut sim = Sim::new(link, a.seed, 4, pcap)
        .map_err(|e| demo_error("cannot start the simulated link", &e))?;
    let f = sim_demo::lossy_scene(&mut sim, 32 * 1024)
        .map_err(|e| demo_error("the lossy-link scene failed", &e))?;
    begin_scene(
        4,
        "simulated",
        &format!(
            "== 4. Scene: a lossy link (loss {:.0}%, 5% reordered, {} ms each way, seed {}) ==",
            link.loss * 100.0,
            a.delay,
            a.seed
        ),
    )?;
    let events = sim.sorted_events();
    // The link knows what it dropped: no guessing from arrivals.
    let lost = sim.lost_segments(&events);
    let mut shown = 0;
    let mut not_shown = 0;
    for (i, e) in events.iter().enumerate() {
        if json {
            emit!("{}", json_line(e));
            if lost.contains(&i) {
                // The link's word, for a reader of the JSON: the diagram's cross.
                let note = Stamped {
                    micros: e.micros,
                    host: Some("link".into()),
                    event: Event::note("lost: the link dropped the segment on the line before"),
                };
                emit!("{}", json_line(&note));
            }
            continue;
        }
        let worth = match &e.event {
            Event::Retransmit { .. } | Event::SocketCall { .. } => true,
            Event::Timer { deadline_us, .. } => deadline_us.is_none(),
            Event::State { to, .. } => to == "Closed",
            _ => false,
        };
        if !worth {
            continue;
        }
        if shown < LOSS_LINES_SHOWN {
            emit!("{}", e.render_text());
            shown += 1;
        } else {
            not_shown += 1;
        }
    }
    if not_shown > 0 {
        say!("... and {not_shown} more such lines (--trace-format json has every event)");
    }
    let diagram = connection_diagram(
        &events,
        &DiagramOptions {
            max_arrows: 30,
            socket_calls: false,
            lost: Some(lost),
            ..DiagramOptions::default()
        },
    )
    .unwrap_or_default();
    say!("\nThe connection's segments (a cross marks a segment the link lost):\n");
    say!("```mermaid\n{diagram}```\n");
    say!("What it shows:");
    let causes: Vec<String> = [
        (f.fast, "in loss recovery (the receiver's duplicate ACKs carried SACK blocks for the data above a hole; once more than two segments' worth above it is SACKed, the sender counts it lost, RFC 6675, and resends it at once, without waiting for three duplicate ACKs)"),
        (f.timeout, "after the retransmission timer expired (200 ms at least, doubling each time; nothing else was coming back to tell)"),
        (f.probes, "as tail loss probes (RFC 8985: the last segment sent again to draw an ACK)"),
        (f.handshake, "of the handshake (a SYN or SYN-ACK sent again: its timer starts at 1 s)"),
    ]
    .into_iter()
    .filter(|&(n, _)| n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    let causes = if causes.is_empty() {
        String::new()
    } else {
        format!(": {}", causes.join("; "))
    };
    match &f.end {
        LossEnd::Delivered => say!(
            "- the link lost {} packets and held back {} (reordering); the stacks retransmitted {} time(s) on their own{causes}. The application never knew: {} bytes arrived {} in {} of simulated time.",
            f.lost,
            f.reordered,
            f.retransmissions(),
            f.bytes,
            if f.intact { "intact" } else { "DAMAGED" },
            sim_span(f.sim_us)
        ),
        LossEnd::GaveUp(what) => {
            let cfg = oxcat_tcp::Config::default();
            say!(
                "- the link lost {} packets and held back {} (reordering); the stacks retransmitted {} time(s){causes}, waiting twice as long after each unanswered try, until the client's stack gave up: {what}, after {} of simulated time. {} of {} bytes had arrived, {}. Linux gives up too: after {} SYN retransmissions (net.ipv4.tcp_syn_retries), and for data after tcp_retries2 = {}, which it turns into a time budget of about 15 minutes; our stack counts {} and {} retransmissions.",
                f.lost,
                f.reordered,
                f.retransmissions(),
                sim_span(f.sim_us),
                f.received,
                f.bytes,
                if f.intact { "intact and in order" } else { "DAMAGED" },
                cfg.syn_retries,
                cfg.data_retries,
                cfg.syn_retries,
                cfg.data_retries
            )
        }
    }
    if f.needless_late > 0 {
        say!(
            "- {} retransmission(s) were not needed, the original being only late: the link held it back (reordering), so it arrived after later segments. That left a hole at the receiver, whose ACKs then SACKed the data above it, and the sender cannot tell a late segment from a lost one.{}",
            f.needless_late,
            if f.lost == 0 {
                " The link lost nothing here: reordering alone caused them."
            } else {
                ""
            }
        );
    }
    if f.needless_unacked > 0 {
        say!(
            "- {} retransmission(s) were not needed, the receiver already having the bytes: the ACKs saying so were lost on the way back or still on their way, and a sender learns of an arrival only from an ACK.",
            f.needless_unacked
        );
    }
    out.pcap_intact()?;
    if let Some((path, _)) = &out.pcap {
        say!(
            "- (this scene's packets follow the exchange's in {}, as the client's end saw them: what the link lost on the way to the server is in it, what it lost on the way back is not; try `tshark -r {} -Y tcp.stream==1`)",
            path.display(),
            path.display()
        );
    }
    say!();
    Ok(f.intact)
}

fn kernel_tun_part(out: &mut Outputs, json: bool) -> Result<bool, i32> {
    let pcap = out.pcap.as_ref().map(|(_, p)| p.clone());
    let run = match crate::kernel_demo::run(pcap) {
        Ok(r) => r,
        Err(line) => {
            complain(&line);
            return Err(2);
        }
    };
    begin_scene(
        1,
        "real",
        "== The notes' exchange: the Linux kernel's server, oxcat's stack as the client, over TUN ==",
    )?;
    say!("A private network namespace with TUN device oxdemo0: the kernel is 198.18.0.1, our stack 198.18.0.2. `server` lines are the kernel-side program's system calls; `client` lines are our stack and the demo's calls on it (`out` = segments it sent, `in` = segments the kernel sent).\n");
    for e in &run.events {
        let shown = match &e.event {
            Event::Timer { deadline_us, .. } => deadline_us.is_none(),
            Event::Congestion { .. } => false,
            _ => true,
        };
        if json {
            emit!("{}", json_line(e));
        } else if shown {
            emit!("{}", e.render_text());
        }
    }
    say!("\nThe notes' first diagram, drawn from this run:\n");
    say!("```mermaid\n{}```\n", calls_diagram(&run.events));
    let diagram = connection_diagram(&run.events, &DiagramOptions::default()).unwrap_or_default();
    say!("The notes' second diagram (segments), drawn from this run:\n");
    say!("```mermaid\n{diagram}```\n");
    out.write_mermaid(&diagram)?;
    out.pcap_intact()?;
    if let Some((path, p)) = &out.pcap {
        let n = p.lock().map_or(0, |p| p.packets());
        say!(
            "({n} packets, every one our stack sent or received on oxdemo0, written to {}: try `tshark -r {}`)\n",
            path.display(),
            path.display()
        );
    }
    say!(
        "The kernel's server read {} of {} bytes after \"Hello, Server!\", then our FIN.",
        run.server_received,
        crate::kernel_demo::DRAIN
    );
    Ok(run.server_received == crate::kernel_demo::DRAIN)
}

fn figures_part(runs: usize) -> Result<(), i32> {
    use crate::figures::{self, human};
    let ours = figures::stack_syn_to_accept(runs)
        .map_err(|e| demo_error("measuring SYN-to-accept", &e))?;
    let kernel = figures::kernel_syn_to_accept(runs.min(500))
        .map_err(|e| demo_error("measuring the kernel", &e))?;
    let seg = figures::segment_cost(32 * 1024 * 1024)
        .map_err(|e| demo_error("measuring per-segment cost", &e))?;
    say!("== 5. The notes' figures, measured on this machine ==\n");
    say!("| what | the notes | measured (median, p99) |");
    say!("|---|---|---|");
    say!(
        "| SYN arrival to accept(), oxcat stack: server's processing (SYN in, SYN-ACK out, ACK in, accept) | 1.7 ms | {}, {} ({} runs) |",
        human(ours.server.median), human(ours.server.p99), ours.server.runs
    );
    say!(
        "| SYN arrival to accept(), oxcat stack: both stacks, zero-delay link | 1.7 ms | {}, {} |",
        human(ours.total.median),
        human(ours.total.p99)
    );
    say!(
        "| connect() call to accept() return, kernel over loopback | 1.7 ms | {}, {} ({} runs) |",
        human(kernel.median),
        human(kernel.p99),
        kernel.runs
    );
    say!(
        "| processing one segment, oxcat stack: receive + ACK | 200 µs | {} (mean over {} segments) |",
        human(seg.receive), seg.segments
    );
    say!(
        "| processing one segment, oxcat stack: send | 200 µs | {} |",
        human(seg.send)
    );
    say!("\nThe notes' figures include interrupts, the scheduler and waking a process; ours are the stack's own work, measured with a monotonic clock around its calls. Take them, too, with a pinch of salt.");
    Ok(())
}

/// The files `--pcap` and `--mermaid` name, created before anything runs,
/// so a path that cannot be written is reported first, not after the scenes.
struct Outputs {
    pcap: Option<(PathBuf, SharedPcap)>,
    mermaid: Option<(PathBuf, std::fs::File)>,
}

impl Outputs {
    fn open(a: &DemoArgs) -> Result<Outputs, i32> {
        let create = |path: &PathBuf| {
            std::fs::File::create(path)
                .map_err(|e| demo_error(&format!("cannot create {}", path.display()), &e))
        };
        let pcap = match &a.pcap {
            Some(path) => {
                let out = PcapOut::new(create(path)?)
                    .map_err(|e| demo_error(&format!("cannot write {}", path.display()), &e))?;
                Some((path.clone(), out))
            }
            None => None,
        };
        let mermaid = match &a.mermaid {
            Some(path) => Some((path.clone(), create(path)?)),
            None => None,
        };
        Ok(Outputs { pcap, mermaid })
    }

    /// Ends the demo (`Err(1)`, one line naming the file and the OS's
    /// reason) if a packet could not be written to the pcap file: a disk
    /// that filled up mid-run. The recording stopped there while the run
    /// went on (a capture is a witness, not part of the path), so this is
    /// asked after each scene that records, before saying what the file holds.
    fn pcap_intact(&self) -> Result<(), i32> {
        if let Some((path, pcap)) = &self.pcap {
            let pcap = pcap.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = pcap.failed() {
                return Err(demo_error(&format!("cannot write {}", path.display()), e));
            }
        }
        Ok(())
    }

    fn write_mermaid(&mut self, diagram: &str) -> Result<(), i32> {
        use std::io::Write;
        if let Some((path, file)) = &mut self.mermaid {
            file.write_all(diagram.as_bytes())
                .map_err(|e| demo_error(&format!("cannot write {}", path.display()), &e))?;
            say!("(diagram written to {})\n", path.display());
        }
        Ok(())
    }
}

fn usage_error(line: &str) -> i32 {
    complain(line);
    2
}

pub fn main(args: &[OsString]) -> i32 {
    let argv = std::iter::once(OsString::from("oxcat demo")).chain(args.iter().cloned());
    use clap::{CommandFactory, FromArgMatches};
    let parsed = DemoArgs::command()
        .try_get_matches_from(argv)
        .and_then(|m| DemoArgs::from_arg_matches(&m).map(|a| (a, m)));
    let (a, matches) = match parsed {
        Ok(am) => am,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let help = e.to_string();
                return match write_line(Stream::Stdout, format_args!("{}", help.trim_end())) {
                    Ok(()) => 0,
                    Err(code) => code,
                };
            }
            let first = e.to_string();
            let line = first.lines().next().unwrap_or("bad arguments");
            return usage_error(line.trim_start_matches("error: "));
        }
    };
    for (flag, value, range) in [
        ("loss", a.loss, (0.0..=0.9, "0 to 0.9")),
        ("delay", a.delay, (0.0..=10_000.0, "0 to 10000 ms")),
    ] {
        if !range.0.contains(&value) {
            // As the user wrote it: `--loss 2.00` is not echoed as `2`.
            let given = matches
                .get_raw(flag)
                .and_then(|mut v| v.next())
                .map_or_else(|| value.to_string(), |v| v.to_string_lossy().into_owned());
            return usage_error(&format!("--{flag} {given} is out of range ({})", range.1));
        }
    }
    if a.runs < 10 {
        return usage_error(&format!(
            "--runs must be at least 10 (a median and a 99th percentile need a sample), not {}",
            a.runs
        ));
    }
    if a.kernel {
        // The kernel run has no simulated link and measures no figures.
        let given =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let unused: Vec<String> = ["loss", "delay", "seed", "runs", "figures_only"]
            .into_iter()
            .filter(|id| given(id))
            .map(|id| format!("--{}", id.replace('_', "-")))
            .collect();
        if !unused.is_empty() {
            let verb = if unused.len() == 1 { "does" } else { "do" };
            return usage_error(&format!(
                "{} {verb} not apply to --kernel (the real kernel over TUN: no simulated link, no figures)",
                unused.join(", ")
            ));
        }
    }
    if a.figures_only && !a.kernel && (a.pcap.is_some() || a.mermaid.is_some()) {
        return usage_error(
            "--pcap and --mermaid record the exchange, which --figures-only does not run",
        );
    }
    let json = a.trace_format == "json";
    JSON_OUTPUT.store(json, std::sync::atomic::Ordering::Relaxed);
    let mut out = match Outputs::open(&a) {
        Ok(o) => o,
        Err(code) => return code,
    };
    if a.kernel {
        return match kernel_tun_part(&mut out, json)
            .and_then(|good| out.pcap_intact().map(|()| good))
        {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(code) => code,
        };
    }
    let mut ok = true;
    if !a.figures_only {
        for scene in 1..=4 {
            let result = match scene {
                1 => kernel_part(json),
                2 => user_part(&a, &mut out, json),
                3 => queue_scene(&a, json),
                _ => loss_scene(&a, &out, json),
            };
            match result.and_then(|good| out.pcap_intact().map(|()| good)) {
                Ok(good) => ok &= good,
                Err(code) => return code,
            }
        }
    }
    if let Err(code) = figures_part(a.runs) {
        return code;
    }
    if ok {
        0
    } else {
        1
    }
}
