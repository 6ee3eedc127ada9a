//! `oxcat demo`, on oxcat's own TCP/IP stack: two stacks joined by a
//! simulated link in this process, no root, no network. The notes'
//! exchange is replayed step by step with every segment recorded, then the
//! scenes: a full accept queue, a lossy link, and the notes' two figures
//! measured.
//!
//! The exchange and the scenes run on a simulated clock (the link's delay
//! is simulated time, so the run is instant and the same every time for a
//! seed); the figures are measured on the real clock.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oxcat_stack::{
    sim_link, Device, LinkConfig, Recorder, SimPort, SocketHandle, Stack, StackConfig, Tap,
};
use oxcat_tcp::State;
use oxcat_trace::{Direction, Event, Stamped};
use oxcat_wire::{IpProtocol, Ipv4Packet, TcpPacket};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_PORT: u16 = 1234;

/// The demo's pcap file (LINKTYPE_RAW: bare IP packets, as on a TUN
/// device), shared by the runs that record into it: the userspace exchange
/// and the lossy-link scene go into one file, one after the other, each
/// run's clock starting where the file's last packet left off.
pub struct PcapOut {
    writer: PcapWriter<File>,
    /// Timestamp of the current run's start, since the Unix epoch.
    base: Duration,
    start: Instant,
    /// The latest timestamp written.
    last: Duration,
    packets: u64,
    /// The first write that failed (a disk that filled up): the file ends
    /// there, nothing more is written to it, and the demo reports it.
    failed: Option<io::Error>,
}

/// A pcap file more than one device writes to.
pub type SharedPcap = Arc<Mutex<PcapOut>>;

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl PcapOut {
    /// Writes the pcap header to `file` (created, empty, by the caller).
    pub fn new(file: File) -> io::Result<SharedPcap> {
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let writer =
            PcapWriter::with_header(file, header).map_err(oxcat_stack::pcap_tap::io_error)?;
        let now = wall_now();
        Ok(Arc::new(Mutex::new(PcapOut {
            writer,
            base: now,
            start: Instant::now(),
            last: now,
            packets: 0,
            failed: None,
        })))
    }

    /// A new run begins, its clock at `start`: its packets are stamped
    /// from now on the wall clock, or a second after the file's last
    /// packet if that is later (a simulated run can end in the future).
    pub fn begin(&mut self, start: Instant) {
        self.start = start;
        self.base = if self.packets == 0 {
            wall_now()
        } else {
            wall_now().max(self.last + Duration::from_secs(1))
        };
    }

    /// Writes one packet; after a failed write, writes nothing more (the
    /// file may end in part of a packet) and answers with that error again.
    fn record(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(same_error(e));
        }
        let ts = self.base + now.saturating_duration_since(self.start);
        self.last = self.last.max(ts);
        let p = PcapPacket::new(ts, packet.len() as u32, packet);
        if let Err(e) = self.writer.write_packet(&p) {
            let e = oxcat_stack::pcap_tap::io_error(e);
            let again = same_error(&e);
            self.failed = Some(e);
            return Err(again);
        }
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Why the file stopped taking packets, if it did: the taps recording
    /// into it let the packets go on (a capture is a witness, not part of
    /// the path), so this is where the failure is seen.
    pub fn failed(&self) -> Option<&io::Error> {
        self.failed.as_ref()
    }
}

/// `e` again (`io::Error` is not `Clone`): the OS's error by its number,
/// so it reads the same.
fn same_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(n) => io::Error::from_raw_os_error(n),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Records into the shared pcap file, when there is one.
pub struct ToShared(Option<SharedPcap>);

impl Recorder for ToShared {
    fn record(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        match &self.0 {
            Some(p) => p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(now, packet),
            None => Ok(()),
        }
    }
}

/// A device whose packets, both ways, are also written to the shared pcap
/// file (when there is one): what a capture at that end of the link sees.
pub type Tapped<D> = Tap<D, ToShared>;

/// `inner`, recorded into `pcap` from `start` (the run's clock) on.
pub fn tapped<D>(inner: D, pcap: Option<SharedPcap>, start: Instant) -> Tapped<D> {
    if let Some(p) = &pcap {
        p.lock().unwrap_or_else(|e| e.into_inner()).begin(start);
    }
    Tap::new(inner, ToShared(pcap))
}

/// A packet the link dropped, as it was put on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkDrop {
    /// When, in µs since the run's start (as the trace stamps events).
    micros: u64,
    key: SegmentKey,
    /// How many packets alike in every field of `key` this end had already
    /// put on the link at that instant: a retransmission can leave in the
    /// same instant as its original, with the same timestamp option, and
    /// the link may drop the one and deliver the other.
    ordinal: usize,
}

/// Packets the link dropped (TCP ones: the trace knows no others).
type Drops = Rc<RefCell<Vec<LinkDrop>>>;

/// One end of the simulated link, noting each packet the link drops (lost,
/// or larger than its MTU) the moment it is put on the wire: the link's own
/// word on what it lost, where a trace of the two stacks could only infer it
/// (and gets it wrong when nothing at all arrived, or a late copy arrives
/// after a lost one).
pub struct LinkEnd {
    port: SimPort,
    drops: Drops,
    /// The run's start, for the µs the trace stamps events with.
    start: Instant,
    /// The packets this end put on the link in the current µs: how many
    /// of each (forgotten when the clock moves on).
    sent_now: (u64, HashMap<SegmentKey, usize>),
}

impl LinkEnd {
    fn new(port: SimPort, drops: Drops, start: Instant) -> LinkEnd {
        LinkEnd {
            port,
            drops,
            start,
            sent_now: (0, HashMap::new()),
        }
    }

    fn dropped_so_far(&self) -> u64 {
        let s = self.port.stats();
        s.lost + s.too_big
    }

    /// How many packets with `key` this end already put on the link at
    /// `micros`, counting this one in for the next.
    fn ordinal(&mut self, micros: u64, key: SegmentKey) -> usize {
        if self.sent_now.0 != micros {
            self.sent_now = (micros, HashMap::new());
        }
        let n = self.sent_now.1.entry(key).or_default();
        *n += 1;
        *n - 1
    }
}

impl Device for LinkEnd {
    fn mtu(&self) -> usize {
        self.port.mtu()
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.port.receive(now, buf)
    }

    fn transmit(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        let micros = now.saturating_duration_since(self.start).as_micros() as u64;
        let sent = packet_key(packet).map(|key| (key, self.ordinal(micros, key)));
        let before = self.dropped_so_far();
        self.port.transmit(now, packet)?;
        if self.dropped_so_far() > before {
            if let Some((key, ordinal)) = sent {
                self.drops.borrow_mut().push(LinkDrop {
                    micros,
                    key,
                    ordinal,
                });
            }
        }
        Ok(())
    }

    fn poll_at(&self) -> Option<Instant> {
        self.port.poll_at()
    }
}

/// What identifies a segment in a trace: its endpoints, control bits,
/// numbers and payload length.
type SegmentKey = (SocketAddr, SocketAddr, u8, u32, u32, usize);

fn segment_key(s: &oxcat_trace::Segment) -> SegmentKey {
    (s.src, s.dst, s.flags, s.seq, s.ack, s.len)
}

/// The key of a TCP/IPv4 packet as put on the link; None for anything else.
fn packet_key(packet: &[u8]) -> Option<SegmentKey> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.protocol() != IpProtocol::TCP {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((
        SocketAddr::from((ip.src_addr(), tcp.src_port())),
        SocketAddr::from((ip.dst_addr(), tcp.dst_port())),
        tcp.flags().0,
        tcp.seq_number(),
        tcp.ack_number(),
        tcp.payload().len(),
    ))
}

/// Two stacks, a link between them, a simulated clock, and everything recorded.
pub struct Sim {
    pub client: Stack,
    pub server: Stack,
    client_port: Tapped<LinkEnd>,
    server_port: LinkEnd,
    drops: Drops,
    start: Instant,
    pub now: Instant,
    pub events: Vec<Stamped>,
}

/// At most this many steps in one `run_until`, whatever the simulated time:
/// each step polls both stacks, so this bounds the real time a run takes.
const MAX_STEPS: usize = 2_000_000;

/// At most this many steps at one instant of simulated time. The stacks
/// settle within a few dozen (each step is a round trip on a link with no
/// delay); stacks that keep each other busy without the clock moving are
/// stuck, and saying so beats spinning through `MAX_STEPS`.
const MAX_STEPS_AT_ONE_INSTANT: usize = 10_000;

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
    /// `pcap`, every packet on the link is written there (seen from the
    /// client's end). `run` tells the runs of one seed apart: each gives
    /// the stacks other ISNs and the client another port, as a new
    /// connection would have (0 for the exchange).
    pub fn new(link: LinkConfig, seed: u64, run: u64, pcap: Option<SharedPcap>) -> io::Result<Sim> {
        let start = Instant::now();
        let (c, s) = sim_link(link, seed);
        let drops = Drops::default();
        let c = LinkEnd::new(c, drops.clone(), start);
        let s = LinkEnd::new(s, drops.clone(), start);
        let client_port = tapped(c, pcap, start);
        let salt = run.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut client = Stack::new(stack_config(CLIENT_IP, seed ^ 0x005e_edc1 ^ salt), start);
        let mut server = Stack::new(stack_config(SERVER_IP, seed ^ 0x005e_ed5e ^ salt), start);
        client.set_tracing(true);
        server.set_tracing(true);
        Ok(Sim {
            client,
            server,
            client_port,
            server_port: s,
            drops,
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

    /// Polls both stacks at the current time; returns whether either did
    /// anything (took in a packet, ran a timer, sent).
    pub fn poll(&mut self) -> io::Result<bool> {
        let client = self.client.poll(self.now, &mut self.client_port)?;
        let server = self.server.poll(self.now, &mut self.server_port)?;
        self.collect();
        Ok(client || server)
    }

    /// Moves the clock to the next thing due, but not past `until`.
    pub fn advance(&mut self, until: Instant) {
        let next = [
            self.client_port.poll_at(),
            self.server_port.poll_at(),
            self.client.poll_at(),
            self.server.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        let next = match next {
            Some(t) => self.now.max(t),
            None => self.now + Duration::from_millis(1),
        };
        self.now = if self.now < until {
            next.min(until)
        } else {
            next
        };
    }

    /// Runs until `done` holds or `limit` of simulated time has passed;
    /// returns whether `done` held. When it did not, the clock stands at
    /// `limit` from now, or short of it if `MAX_STEPS` ran out first. Stacks
    /// still busy after `MAX_STEPS_AT_ONE_INSTANT` steps at one instant are
    /// a livelock: an error.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Sim) -> bool,
    ) -> io::Result<bool> {
        let deadline = self.now + limit;
        let (mut instant, mut steps_here) = (self.now, 0);
        // Bounded three times: by simulated time, by steps, and by steps
        // at one instant.
        for _ in 0..MAX_STEPS {
            if self.now != instant {
                (instant, steps_here) = (self.now, 0);
            }
            steps_here += 1;
            if steps_here > MAX_STEPS_AT_ONE_INSTANT {
                return Err(io::Error::other(format!(
                    "the simulation livelocked: {MAX_STEPS_AT_ONE_INSTANT} steps at {} µs of simulated time, the stacks still busy and the clock not moving on",
                    self.micros()
                )));
            }
            self.poll()?;
            if done(self) {
                return Ok(true);
            }
            // What `done` asked of the stacks (a send, a close) goes out
            // when it was asked, and what that sets going at this instant
            // (on a link with no delay, the peer's answer) is handled at
            // this instant too: the clock moves on only once both stacks are
            // idle. `poll_at` names only timers and the link; moving on
            // earlier would hold the application's bytes back until the next
            // of those (a whole second, to a handshake timer, on a link with
            // no delay).
            if self.poll()? {
                continue;
            }
            if self.now >= deadline {
                return Ok(false);
            }
            self.advance(deadline);
        }
        Ok(false)
    }

    /// Lets `span` of simulated time pass, the stacks doing what falls due.
    pub fn run_for(&mut self, span: Duration) -> io::Result<()> {
        self.run_until(span, |_| false).map(|_| ())
    }

    /// Events in time order (stable: what happened at one instant keeps its order).
    pub fn sorted_events(&self) -> Vec<Stamped> {
        let mut v = self.events.clone();
        v.sort_by_key(|e| e.micros);
        v
    }

    /// The segments the link dropped, as indices into `events` (this run's,
    /// as [`Sim::sorted_events`] orders them): each the event of the segment
    /// leaving its stack, at the instant it was put on the link.
    pub fn lost_segments(&self, events: &[Stamped]) -> HashSet<usize> {
        lost_departures(events, &self.drops.borrow())
    }
}

/// The departures in `events` of the packets in `drops`. Copies alike in
/// every field that leave at the same instant (an original and its
/// retransmission, on a link with no delay) are told apart by their order:
/// the stack traces each as it hands it to the link, so the n-th such
/// departure in `events` is the n-th such packet put on the link.
fn lost_departures(events: &[Stamped], drops: &[LinkDrop]) -> HashSet<usize> {
    let mut departures: HashMap<(u64, SegmentKey), Vec<usize>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Event::Segment(s) = &e.event {
            if s.dir == Direction::Out {
                departures
                    .entry((e.micros, segment_key(s)))
                    .or_default()
                    .push(i);
            }
        }
    }
    drops
        .iter()
        .filter_map(|d| departures.get(&(d.micros, d.key))?.get(d.ordinal).copied())
        .collect()
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
    /// When the server first called accept(), µs since the scene began.
    pub first_accept_at: u64,
    /// When the last client was accepted, µs since the scene began.
    pub last_accept_at: u64,
}

/// Simulated µs as seconds, the way the timeline prints them: `5.000 s`.
pub fn secs(us: u64) -> String {
    format!("{}.{:03} s", us / 1_000_000, us % 1_000_000 / 1000)
}

/// The notes' warning: a bounded accept queue that nobody drains drops new
/// connections. Backlog 2 (Linux admits backlog + 1), `clients` clients,
/// and a server that waits `wait` before its first accept().
pub fn accept_queue_scene(
    sim: &mut Sim,
    clients: usize,
    backlog: usize,
    wait: Duration,
) -> io::Result<QueueFacts> {
    let t0 = sim.micros();
    let listener = sim.server.tcp_listen(
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)),
        backlog,
        sim.now,
    )?;
    sim.call("server", format!("listen(3, {backlog})"), "0");
    sim.note(format!(
        "{clients} clients connect; the server does not call accept() for {}",
        secs(wait.as_micros() as u64)
    ));
    let mut handles = Vec::new();
    for _ in 0..clients {
        handles.push(sim.client.tcp_connect(server_addr(), None, sim.now)?);
    }
    sim.run_for(wait)?;
    let in_queue = sim
        .server
        .tcp_listener(listener)
        .map_or(0, |l| l.accept_queue_len());
    let established_before_accept = handles
        .iter()
        .filter(|h| state(&sim.client, **h) == Some(State::Established))
        .count();
    let first_accept_at = sim.micros() - t0;
    sim.note(format!(
        "{} later: {in_queue} connections in the accept queue; the rest were dropped and are being retried",
        secs(first_accept_at)
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
        first_accept_at,
        last_accept_at: sim.micros() - t0,
    })
}

/// How the lossy-link scene ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossEnd {
    /// Every byte arrived, then the FIN (EOF).
    Delivered,
    /// The client's stack gave up (as Linux's does after tcp_syn_retries
    /// or tcp_retries2): what the application saw.
    GaveUp(String),
}

/// What the lossy-link scene showed.
pub struct LossFacts {
    pub bytes: usize,
    /// Bytes the server read.
    pub received: usize,
    /// What the server read is exactly what was sent, or its beginning.
    pub intact: bool,
    pub end: LossEnd,
    /// Packets the link dropped and held back (both directions).
    pub lost: u64,
    pub reordered: u64,
    /// Retransmissions, by cause.
    pub fast: usize,
    pub timeout: usize,
    pub probes: usize,
    /// SYNs and SYN-ACKs sent again (after the timer, or to a repeated SYN).
    pub handshake: usize,
    /// Data retransmissions that were not needed: an earlier copy of the
    /// same bytes reached the other end, late (held back by the link) ...
    pub needless_late: usize,
    /// ... or in time, its ACKs lost or still on their way.
    pub needless_unacked: usize,
    /// Simulated µs until the bytes had all arrived or the stack gave up.
    pub sim_us: u64,
}

impl LossFacts {
    pub fn retransmissions(&self) -> usize {
        self.fast + self.timeout + self.probes + self.handshake
    }
}

/// A transfer over a link that loses, delays and reorders packets: the
/// stacks retransmit on their own and the bytes arrive intact, or, when
/// the link loses too much, the client's stack gives up as Linux's would
/// (6 SYN retransmissions, 15 of data). Simulated time is cheap: the scene
/// runs until one or the other happens (a day at most), in bounded steps.
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
    let mut end = None;
    let mut connected = false;
    let ok = sim.run_until(Duration::from_secs(24 * 3600), |s| {
        if conn.is_none() {
            if let Ok(Some((c, _))) = s.server.tcp_accept(listener) {
                conn = Some(c);
            }
        }
        if let Some(c) = conn {
            loop {
                match s.server.tcp_recv(c, &mut buf) {
                    Ok(0) => {
                        end = Some(LossEnd::Delivered);
                        return true;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
        if !connected {
            match s.client.tcp_connect_result(client) {
                Ok(()) => {
                    connected = true;
                    s.call("client", "connect(3) completes", "0 (ESTABLISHED)");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    s.call("client", "connect(3)", errno_of(&e));
                    end = Some(LossEnd::GaveUp(format!(
                        "connect() failed with {}",
                        errno_of(&e)
                    )));
                    return true;
                }
            }
        }
        if connected && off < data.len() {
            match s.client.tcp_send(client, &data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    s.call(
                        "client",
                        format!("send(3, buf, {})", data.len() - off),
                        errno_of(&e),
                    );
                    end = Some(LossEnd::GaveUp(format!("send() failed with {}", errno_of(&e))));
                    return true;
                }
            }
        }
        if off == data.len() && !closed {
            closed = true;
            s.client.close(client, s.now);
            s.call("client", "close(3)", "0");
        }
        // After close() the application hears no more from its socket:
        // if the stack gives up now, only the trace tells.
        if closed && matches!(state(&s.client, client), None | Some(State::Closed)) {
            end = Some(LossEnd::GaveUp(
                "the application had already called close(), so no call was left to report ETIMEDOUT"
                    .into(),
            ));
            return true;
        }
        false
    })?;
    let Some(end) = end.filter(|_| ok) else {
        return Err(fail("the lossy transfer did not finish"));
    };
    let sim_us = sim.micros() - start;
    if end == LossEnd::Delivered {
        // The notes' server closes too; the scene ends when both FINs are
        // acknowledged (or a minute on), so segments still on the link
        // (a needless retransmission, say) arrive and are counted.
        if let Some(c) = conn {
            sim.server.close(c, sim.now);
            sim.call("server", "close(4)", "0");
            sim.run_until(Duration::from_secs(60), |s| {
                matches!(
                    state(&s.client, client),
                    None | Some(State::TimeWait | State::Closed)
                ) && matches!(state(&s.server, c), None | Some(State::Closed))
            })?;
        }
    }
    let events = sim.sorted_events();
    let (fast, timeout, probes) = retransmissions_by_cause(&events);
    let (needless_late, needless_unacked) =
        needless_retransmissions(&events, &sim.lost_segments(&events));
    let stats = sim.server_port.port.stats();
    Ok(LossFacts {
        bytes,
        received: got.len(),
        intact: data.starts_with(&got),
        end,
        lost: stats.lost,
        reordered: stats.reordered,
        fast,
        timeout,
        probes,
        handshake: handshake_retransmissions(&events),
        needless_late,
        needless_unacked,
        sim_us,
    })
}

/// The errno a socket call on the kernel would report for what our stack
/// says, as strace shows it: `-1 ETIMEDOUT (Connection timed out)`.
fn errno_of(e: &io::Error) -> String {
    let errno = match e.kind() {
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        io::ErrorKind::ConnectionReset => libc::ECONNRESET,
        io::ErrorKind::ConnectionRefused => libc::ECONNREFUSED,
        io::ErrorKind::BrokenPipe => libc::EPIPE,
        _ => return format!("-1 ({e})"),
    };
    format!(
        "-1 {}",
        crate::sys::errno_name(&io::Error::from_raw_os_error(errno))
    )
}

/// Retransmissions in `events`: fast (loss recovery), after a timeout, and loss probes.
fn retransmissions_by_cause(events: &[Stamped]) -> (usize, usize, usize) {
    let (mut fast, mut timeout, mut probes) = (0, 0, 0);
    for e in events {
        if let Event::Retransmit {
            fast: f, probe: p, ..
        } = e.event
        {
            if p {
                probes += 1;
            } else if f {
                fast += 1;
            } else {
                timeout += 1;
            }
        }
    }
    (fast, timeout, probes)
}

/// SYNs and SYN-ACKs that went out more than once (the engine reports
/// data retransmissions only).
fn handshake_retransmissions(events: &[Stamped]) -> usize {
    let mut syns: HashMap<(String, u32), usize> = HashMap::new();
    for e in events {
        if let Event::Segment(s) = &e.event {
            if s.dir == Direction::Out && s.flags & 0x02 != 0 {
                *syns
                    .entry((e.host.clone().unwrap_or_default(), s.seq))
                    .or_default() += 1;
            }
        }
    }
    syns.values().map(|n| n - 1).sum()
}

/// Data retransmissions that were not needed, as (late, unacknowledged):
/// copies of bytes an earlier copy of which the link delivered. `late`: no
/// earlier copy had arrived when this one left (the link held one back,
/// so it came after later segments); `unacknowledged`: one had, but the
/// ACKs saying so were lost or still on their way. A copy the link dropped
/// (`lost`: indices into `events` of departures, from
/// [`Sim::lost_segments`]) was not late, and resending it was needed.
///
/// Copies are told apart by where they sit in `events`, not by their
/// contents: two copies sent in the same millisecond (a link with no delay)
/// carry the same timestamp option and may be alike byte for byte. An
/// arrival recorded before a copy left belongs to an earlier copy.
pub fn needless_retransmissions(events: &[Stamped], lost: &HashSet<usize>) -> (usize, usize) {
    // (sender, seq) -> (index of its departure, delivered) of each copy sent, in order.
    let mut copies: HashMap<(&str, u32), Vec<(usize, bool)>> = HashMap::new();
    // (sender, seq) -> indices of its arrivals, in order.
    let mut arrivals: HashMap<(&str, u32), Vec<usize>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let Event::Segment(s) = &e.event else {
            continue;
        };
        if s.len == 0 {
            continue;
        }
        let host = e.host.as_deref().unwrap_or("");
        match s.dir {
            Direction::Out => copies
                .entry((host, s.seq))
                .or_default()
                .push((i, !lost.contains(&i))),
            Direction::In => {
                let sender = if host == "client" { "server" } else { "client" };
                arrivals.entry((sender, s.seq)).or_default().push(i);
            }
        }
    }
    let (mut late, mut unacknowledged) = (0, 0);
    for (key, sent) in &copies {
        let arrived = arrivals.get(key).map_or(&[][..], Vec::as_slice);
        for (n, &(left, _)) in sent.iter().enumerate().skip(1) {
            if !sent[..n].iter().any(|&(_, delivered)| delivered) {
                continue; // every copy before was lost: this one was needed
            }
            if arrived.iter().any(|&at| at < left) {
                unacknowledged += 1;
            } else {
                late += 1;
            }
        }
    }
    (late, unacknowledged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "198.18.0.2:40000";
    const S: &str = "198.18.0.1:1234";

    /// A data segment seq 1000, 100 bytes, `dir` at `host`; every copy alike
    /// (sent in the same millisecond, the same timestamp).
    fn data(host: &str, dir: Direction) -> Stamped {
        Stamped {
            micros: 1_000_000,
            host: Some(host.to_string()),
            event: Event::Segment(oxcat_trace::Segment {
                dir,
                src: C.parse().unwrap(),
                dst: S.parse().unwrap(),
                flags: 0x10,
                seq: 1000,
                ack: 1,
                window: 512,
                len: 100,
                options: "TS val 7 ecr 3".into(),
                preview: String::new(),
            }),
        }
    }

    /// The packet `data` describes, as put on the link.
    fn packet() -> Vec<u8> {
        let mut p = vec![0u8; 140];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&140u16.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 18, 0, 2]);
        p[16..20].copy_from_slice(&[198, 18, 0, 1]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&1234u16.to_be_bytes());
        p[24..28].copy_from_slice(&1000u32.to_be_bytes());
        p[28..32].copy_from_slice(&1u32.to_be_bytes());
        p[32] = 0x50;
        p[33] = 0x10;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p
    }

    /// On a link with no delay a retransmission can leave in the same
    /// instant as its original, alike byte for byte. When the link
    /// delivers the original and drops the retransmission, the
    /// retransmission is the one lost (it was counted the original, and
    /// the retransmission taken for a needed one).
    #[test]
    fn of_two_copies_alike_the_one_the_link_dropped_is_lost() {
        let start = Instant::now();
        let at = start + Duration::from_secs(1);
        let link = LinkConfig {
            loss: 0.5,
            delay: Duration::ZERO,
            ..LinkConfig::default()
        };
        // A seed whose link takes the first packet and drops the second.
        let drops = (0..1000)
            .find_map(|seed| {
                let drops = Drops::default();
                let mut end = LinkEnd::new(sim_link(link, seed).0, drops.clone(), start);
                end.transmit(at, &packet()).ok()?;
                if !drops.borrow().is_empty() {
                    return None;
                }
                end.transmit(at, &packet()).ok()?;
                let d = drops.borrow().clone();
                (d.len() == 1).then_some(d)
            })
            .expect("a seed in 1000 that delivers one packet and drops the next");
        assert_eq!(drops[0].ordinal, 1, "{drops:?}");
        let out = || data("client", Direction::Out);
        let arrival = || data("server", Direction::In);
        let ev = [out(), out(), arrival()];
        let lost = lost_departures(&ev, &drops);
        assert_eq!(lost, HashSet::from([1]));
        // The original arrived: its retransmission was not needed.
        let (late, unacked) = needless_retransmissions(&ev, &lost);
        assert_eq!(late + unacked, 1);
        // Of three alike, the third dropped.
        let third = [LinkDrop {
            ordinal: 2,
            ..drops[0]
        }];
        assert_eq!(
            lost_departures(&[out(), arrival(), out(), out()], &third),
            HashSet::from([3])
        );
    }

    /// Stacks that keep each other busy without the clock moving (here an
    /// application that connects again at every step) end the run with an
    /// error naming the livelock, at the instant it happened, not after
    /// MAX_STEPS.
    #[test]
    fn stacks_that_never_settle_at_one_instant_are_a_livelock() {
        let link = LinkConfig {
            delay: Duration::ZERO,
            ..LinkConfig::default()
        };
        let mut sim = Sim::new(link, 1, 0, None).unwrap();
        sim.client.set_tracing(false);
        sim.server.set_tracing(false);
        let mut connects = 0;
        let r = sim.run_until(Duration::from_secs(1), |s| {
            connects += 1;
            let _ = s.client.tcp_connect(server_addr(), None, s.now);
            false
        });
        let e = r.expect_err("a livelock");
        assert_eq!(
            e.to_string(),
            "the simulation livelocked: 10000 steps at 0 µs of simulated time, the stacks still busy and the clock not moving on"
        );
        assert_eq!(connects, MAX_STEPS_AT_ONE_INSTANT);
        assert_eq!(sim.micros(), 0);
    }

    #[test]
    fn a_retransmission_of_a_lost_copy_was_needed() {
        let out = || data("client", Direction::Out);
        let arrival = || data("server", Direction::In);
        // The original lost, the retransmission arrives.
        let ev = [out(), out(), arrival()];
        assert_eq!(needless_retransmissions(&ev, &HashSet::from([0])), (0, 0));
        // The original held back: it arrives after the retransmission left.
        let ev = [out(), out(), arrival(), arrival()];
        assert_eq!(needless_retransmissions(&ev, &HashSet::new()), (1, 0));
        // The original arrived before the retransmission left: its ACK did not.
        let ev = [out(), arrival(), out(), arrival()];
        assert_eq!(needless_retransmissions(&ev, &HashSet::new()), (0, 1));
        // Lost twice, then through: both retransmissions were needed.
        let ev = [out(), out(), out(), arrival()];
        assert_eq!(
            needless_retransmissions(&ev, &HashSet::from([0, 1])),
            (0, 0)
        );
    }
}
