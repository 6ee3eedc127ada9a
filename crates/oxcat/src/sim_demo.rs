//! `oxcat demo`, on oxcat's own TCP/IP stack: two stacks joined by a
//! simulated link in this process, no root, no network. The notes'
//! exchange is replayed step by step with every segment recorded, then the
//! scenes: a full accept queue, a lossy link, and the notes' two figures
//! measured.
//!
//! The exchange and the scenes run on a simulated clock (the link's delay
//! is simulated time, so the run is instant and the same every time for a
//! seed); the figures are measured on the real clock.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use oxcat_stack::{
    sim_link, Device, LinkConfig, PcapTap, SimPort, SocketHandle, Stack, StackConfig,
};
use oxcat_tcp::State;
use oxcat_trace::{Event, Stamped};

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_PORT: u16 = 1234;

/// Two stacks, a link between them, a simulated clock, and everything recorded.
pub struct Sim {
    pub client: Stack,
    pub server: Stack,
    client_port: Box<dyn Device>,
    server_port: SimPort,
    start: Instant,
    pub now: Instant,
    pub events: Vec<Stamped>,
}

/// A stack at `ip` with its ISNs and ports seeded by `seed`.
pub fn stack_config(ip: Ipv4Addr, seed: u64) -> StackConfig {
    StackConfig {
        ipv4: Some(ip),
        seed,
        ..StackConfig::default()
    }
}

impl Sim {
    /// A client (198.18.0.2) and a server (198.18.0.1) on a link; with
    /// `pcap`, every packet on the link is written there (seen from the client's end).
    pub fn new(link: LinkConfig, seed: u64, pcap: Option<&Path>) -> io::Result<Sim> {
        let start = Instant::now();
        let (c, s) = sim_link(link, seed);
        let client_port: Box<dyn Device> = match pcap {
            Some(p) => Box::new(PcapTap::create(c, p, start)?),
            None => Box::new(c),
        };
        let mut client = Stack::new(stack_config(CLIENT_IP, seed ^ 0x005e_edc1), start);
        let mut server = Stack::new(stack_config(SERVER_IP, seed ^ 0x005e_ed5e), start);
        client.set_tracing(true);
        server.set_tracing(true);
        Ok(Sim {
            client,
            server,
            client_port,
            server_port: s,
            start,
            now: start,
            events: Vec::new(),
        })
    }

    /// Microseconds of simulated time since the start.
    pub fn micros(&self) -> u64 {
        self.now.saturating_duration_since(self.start).as_micros() as u64
    }

    fn push(&mut self, at: Instant, host: &str, event: Event) {
        self.events.push(Stamped {
            micros: at.saturating_duration_since(self.start).as_micros() as u64,
            host: Some(host.to_string()),
            event,
        });
    }

    /// A socket call made by the application on `host`'s side, now.
    pub fn call(&mut self, host: &str, call: impl Into<String>, result: impl Into<String>) {
        let e = Event::SocketCall {
            call: call.into(),
            result: Some(result.into()),
        };
        self.push(self.now, host, e);
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let e = Event::note(text);
        self.events.push(Stamped::new(self.micros(), e));
    }

    fn collect(&mut self) {
        for (at, e) in self.client.take_trace() {
            self.push(at, "client", e);
        }
        for (at, e) in self.server.take_trace() {
            self.push(at, "server", e);
        }
    }

    /// Polls both stacks at the current time.
    pub fn poll(&mut self) -> io::Result<()> {
        self.client.poll(self.now, self.client_port.as_mut())?;
        self.server.poll(self.now, &mut self.server_port)?;
        self.collect();
        Ok(())
    }

    /// Moves the clock to the next thing due.
    pub fn advance(&mut self) {
        let next = [
            self.client_port.poll_at(),
            self.server_port.poll_at(),
            self.client.poll_at(),
            self.server.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        self.now = match next {
            Some(t) => self.now.max(t),
            None => self.now + Duration::from_millis(1),
        };
    }

    /// Runs until `done` holds or `limit` of simulated time has passed;
    /// returns whether `done` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Sim) -> bool,
    ) -> io::Result<bool> {
        let deadline = self.now + limit;
        // Bounded twice: by simulated time and by steps.
        for _ in 0..1_000_000 {
            self.poll()?;
            if done(self) {
                return Ok(true);
            }
            if self.now > deadline {
                return Ok(false);
            }
            self.advance();
        }
        Ok(false)
    }

    /// Events in time order (stable: what happened at one instant keeps its order).
    pub fn sorted_events(&self) -> Vec<Stamped> {
        let mut v = self.events.clone();
        v.sort_by_key(|e| e.micros);
        v
    }
}

fn server_addr() -> SocketAddr {
    SocketAddr::from((SERVER_IP, SERVER_PORT))
}

fn state(stack: &Stack, h: SocketHandle) -> Option<State> {
    stack.tcp_state(h)
}

fn fail(what: &str) -> io::Error {
    io::Error::other(format!("the simulated exchange stalled: {what}"))
}

/// What the exchange showed, for the summary printed after the timeline.
pub struct ExchangeFacts {
    pub queued_before_accept: usize,
    pub handshake_done_at: u64,
    pub accept_at: u64,
    pub short_recvs: Vec<usize>,
    pub partial_sends: Vec<(usize, usize)>,
    pub buffered_at_close: usize,
    pub drained: usize,
    pub drain_total: usize,
    pub last_data_at: u64,
    pub fin_at: u64,
}

/// Bytes the client sends, then closes with part of them still buffered.
pub const DRAIN_BYTES: usize = 64 * 1024;
/// The client's send buffer in the exchange: small, so `send` takes part of what it is given.
const SMALL_SEND_BUFFER: usize = 16 * 1024;

/// The notes' exchange, step by step.
pub fn exchange(sim: &mut Sim) -> io::Result<ExchangeFacts> {
    let limit = Duration::from_secs(30);
    sim.note("server: socket(), bind(), listen() - the stack will now answer SYNs on its own");
    let listener = sim.server.tcp_listen(
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)),
        5,
        sim.now,
    )?;
    sim.call("server", "socket(AF_INET, SOCK_STREAM)", "3");
    sim.call("server", format!("bind(3, {})", server_addr()), "0");
    sim.call("server", "listen(3, 5)", "0");

    sim.call("client", "socket(AF_INET, SOCK_STREAM)", "3");
    let client = sim.client.tcp_connect(server_addr(), None, sim.now)?;
    sim.call(
        "client",
        format!("connect(3, {})", server_addr()),
        "EINPROGRESS (the stack sends the SYN)",
    );
    let ok = sim.run_until(limit, |s| {
        state(&s.client, client) == Some(State::Established)
            && s.server
                .tcp_listener(listener)
                .is_some_and(|l| l.accept_queue_len() > 0)
    })?;
    if !ok {
        return Err(fail("handshake"));
    }
    let queued = sim
        .server
        .tcp_listener(listener)
        .map_or(0, |l| l.accept_queue_len());
    let handshake_done_at = sim.micros();
    sim.call("client", "connect(3) completes", "0 (ESTABLISHED)");
    sim.note(format!(
        "the 3-way handshake is done; the server application has not called accept(): {queued} connection waits in its accept queue"
    ));

    // The server's accept() comes a little later: the connection waited for it.
    sim.now += Duration::from_millis(2);
    let Some((conn, peer)) = sim.server.tcp_accept(listener)? else {
        return Err(fail("accept"));
    };
    let accept_at = sim.micros();
    sim.call(
        "server",
        "accept(3)",
        format!("4 (a new socket for {peer})"),
    );
    sim.server.close(listener, sim.now);
    sim.call(
        "server",
        "close(3)",
        "0 (the listening socket; ncat keeps one client)",
    );

    let hello = b"Hello, Server!";
    let n = sim.client.tcp_send(client, hello)?;
    sim.call("client", "send(3, \"Hello, Server!\", 14)", n.to_string());
    let ok = sim.run_until(limit, |s| {
        s.server
            .tcp_connection(conn)
            .is_some_and(|c| c.readable_len() >= hello.len())
    })?;
    if !ok {
        return Err(fail("Hello, Server!"));
    }
    let mut short_recvs = Vec::new();
    let mut got = Vec::new();
    while got.len() < hello.len() {
        let mut small = [0u8; 8];
        let n = sim.server.tcp_recv(conn, &mut small)?;
        if n == 0 {
            break;
        }
        if n < small.len() {
            short_recvs.push(n);
        }
        got.extend_from_slice(&small[..n]);
        sim.call(
            "server",
            "recv(4, buf, 8)",
            format!("{n} \"{}\"", String::from_utf8_lossy(&small[..n])),
        );
    }
    let n = sim.server.tcp_send(conn, b"Hello, Client!")?;
    sim.call("server", "send(4, \"Hello, Client!\", 14)", n.to_string());
    let ok = sim.run_until(limit, |s| {
        s.client
            .tcp_connection(client)
            .is_some_and(|c| c.readable_len() >= 14)
    })?;
    if !ok {
        return Err(fail("Hello, Client!"));
    }
    let mut buf = [0u8; 64];
    let n = sim.client.tcp_recv(client, &mut buf)?;
    sim.call(
        "client",
        "recv(3, buf, 64)",
        format!("{n} \"{}\"", String::from_utf8_lossy(&buf[..n])),
    );

    // A bulk send into a small send buffer: send() takes what fits.
    sim.client
        .tcp_set_buffers(client, Some(SMALL_SEND_BUFFER), None)?;
    sim.note(format!(
        "client: send {DRAIN_BYTES} bytes through a {SMALL_SEND_BUFFER}-byte send buffer, then close() at once"
    ));
    let data: Vec<u8> = (0..DRAIN_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    let mut off = 0;
    let mut partial_sends = Vec::new();
    while off < data.len() {
        match sim.client.tcp_send(client, &data[off..]) {
            Ok(n) => {
                sim.call(
                    "client",
                    format!("send(3, buf, {})", data.len() - off),
                    format!(
                        "{n}{}",
                        if n < data.len() - off {
                            " (partial)"
                        } else {
                            ""
                        }
                    ),
                );
                partial_sends.push((data.len() - off, n));
                off += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if off >= data.len() / 2 {
            break;
        }
        let ok = sim.run_until(limit, |s| {
            s.client
                .tcp_connection(client)
                .is_some_and(|c| c.send_capacity() > 0)
        })?;
        if !ok {
            return Err(fail("send buffer room"));
        }
    }
    // The rest goes in as the buffer drains; the last call is followed by close().
    while off < data.len() {
        let ok = sim.run_until(limit, |s| {
            s.client
                .tcp_connection(client)
                .is_some_and(|c| c.send_capacity() > 0)
        })?;
        if !ok {
            return Err(fail("send buffer room"));
        }
        let n = sim.client.tcp_send(client, &data[off..]).or_else(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        off += n;
    }
    let buffered_at_close = sim
        .client
        .tcp_connection(client)
        .map_or(0, |c| c.send_queued());
    sim.client.close(client, sim.now);
    sim.call(
        "client",
        "close(3)",
        format!("0 ({buffered_at_close} bytes still in the send buffer: the stack keeps sending them, then the FIN)"),
    );

    let mut drained = 0;
    let mut big = vec![0u8; 64 * 1024];
    let mut received = Vec::new();
    let mut reads = 0;
    let ok = sim.run_until(limit, |s| loop {
        match s.server.tcp_recv(conn, &mut big) {
            Ok(0) => return true,
            Ok(n) => {
                drained += n;
                reads += 1;
                received.extend_from_slice(&big[..n]);
            }
            Err(_) => return false,
        }
    })?;
    if !ok {
        return Err(fail("drain before FIN"));
    }
    sim.call(
        "server",
        "recv(4, buf, 65536) ...",
        format!("{drained} bytes in {reads} calls, then 0 (EOF: the client's FIN)"),
    );
    sim.server.close(conn, sim.now);
    sim.call("server", "close(4)", "0");
    sim.run_until(limit, |s| {
        !matches!(
            state(&s.server, conn),
            Some(State::LastAck | State::CloseWait | State::Closing)
        )
    })?;
    let events = sim.sorted_events();
    let (last_data_at, fin_at) = data_then_fin(&events);
    if received != data {
        return Err(io::Error::other(
            "the server received other bytes than the client sent",
        ));
    }
    Ok(ExchangeFacts {
        queued_before_accept: queued,
        handshake_done_at,
        accept_at,
        short_recvs,
        partial_sends,
        buffered_at_close,
        drained,
        drain_total: DRAIN_BYTES,
        last_data_at,
        fin_at,
    })
}

/// When the client's last data segment and its FIN left (µs).
fn data_then_fin(events: &[Stamped]) -> (u64, u64) {
    let mut last_data = 0;
    let mut fin = 0;
    for e in events {
        if let (Some("client"), Event::Segment(s)) = (e.host.as_deref(), &e.event) {
            if s.dir == oxcat_trace::Direction::Out {
                if s.len > 0 {
                    last_data = e.micros;
                }
                if s.flags & 0x01 != 0 && fin == 0 {
                    fin = e.micros;
                }
            }
        }
    }
    (last_data, fin)
}

/// What the accept-queue scene showed.
pub struct QueueFacts {
    pub established_before_accept: usize,
    pub in_queue: usize,
    pub syns_dropped: u64,
    pub acks_dropped: u64,
    pub accepted_in_the_end: usize,
    pub clients: usize,
}

/// The notes' warning: a bounded accept queue that nobody drains drops new
/// connections. Backlog 2 (Linux admits backlog + 1), 5 clients.
pub fn accept_queue_scene(sim: &mut Sim, clients: usize, backlog: usize) -> io::Result<QueueFacts> {
    let listener = sim.server.tcp_listen(
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)),
        backlog,
        sim.now,
    )?;
    sim.call("server", format!("listen(3, {backlog})"), "0");
    sim.note(format!(
        "{clients} clients connect; the server does not call accept() for 5 seconds"
    ));
    let mut handles = Vec::new();
    for _ in 0..clients {
        handles.push(sim.client.tcp_connect(server_addr(), None, sim.now)?);
    }
    sim.run_until(Duration::from_secs(5), |_| false)?;
    let in_queue = sim
        .server
        .tcp_listener(listener)
        .map_or(0, |l| l.accept_queue_len());
    let established_before_accept = handles
        .iter()
        .filter(|h| state(&sim.client, **h) == Some(State::Established))
        .count();
    sim.note(format!(
        "after 5 s: {in_queue} connections in the accept queue; the rest were dropped and are being retried"
    ));
    sim.note("the server now calls accept() for every connection that arrives");
    let mut accepted = 0;
    let ok = sim.run_until(Duration::from_secs(60), |s| {
        while let Ok(Some((_, peer))) = s.server.tcp_accept(listener) {
            accepted += 1;
            s.call("server", "accept(3)", format!("a new socket for {peer}"));
        }
        accepted >= clients
    })?;
    if !ok {
        return Err(fail("the queued clients were never accepted"));
    }
    let stats = sim
        .server
        .tcp_listener(listener)
        .map(|l| l.stats())
        .unwrap_or_default();
    Ok(QueueFacts {
        established_before_accept,
        in_queue,
        syns_dropped: stats.syns_dropped_accept_full,
        acks_dropped: stats.acks_dropped_accept_full,
        accepted_in_the_end: accepted,
        clients,
    })
}

/// What the lossy-link scene showed.
pub struct LossFacts {
    pub bytes: usize,
    pub intact: bool,
    pub lost: u64,
    pub retransmissions: usize,
    pub sim_ms: u64,
}

/// A transfer over a link that loses, delays and reorders packets: the
/// stacks retransmit on their own and the bytes arrive intact.
pub fn lossy_scene(sim: &mut Sim, bytes: usize) -> io::Result<LossFacts> {
    let start = sim.micros();
    let listener = sim.server.tcp_listen(
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)),
        5,
        sim.now,
    )?;
    let client = sim.client.tcp_connect(server_addr(), None, sim.now)?;
    sim.call(
        "client",
        format!("connect(3, {})", server_addr()),
        "EINPROGRESS",
    );
    let data: Vec<u8> = (0..bytes).map(|i| b'A' + (i * 7 % 26) as u8).collect();
    let mut off = 0;
    let mut conn = None;
    let mut got = Vec::new();
    let mut closed = false;
    let mut buf = vec![0u8; 65536];
    let ok = sim.run_until(Duration::from_secs(600), |s| {
        if conn.is_none() {
            if let Ok(Some((c, _))) = s.server.tcp_accept(listener) {
                conn = Some(c);
            }
        }
        if state(&s.client, client) == Some(State::Established) && off < data.len() {
            if let Ok(n) = s.client.tcp_send(client, &data[off..]) {
                off += n;
            }
        }
        if off == data.len() && !closed {
            closed = true;
            s.client.close(client, s.now);
        }
        if let Some(c) = conn {
            loop {
                match s.server.tcp_recv(c, &mut buf) {
                    Ok(0) => return true,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
        false
    })?;
    if !ok {
        return Err(fail("the lossy transfer did not finish"));
    }
    let retransmissions = sim
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::Retransmit { .. }))
        .count();
    Ok(LossFacts {
        bytes,
        intact: got == data,
        lost: sim.client_link_lost(),
        retransmissions,
        sim_ms: (sim.micros() - start) / 1000,
    })
}

impl Sim {
    /// Packets the link dropped (both directions).
    fn client_link_lost(&self) -> u64 {
        self.server_port.stats().lost
    }
}
