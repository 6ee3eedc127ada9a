//! `--pcap` and `--mermaid` on the kernel's stack: the run's own packets,
//! captured from the interface.
//!
//! The kernel's sockets show oxcat no segments, so a packet socket
//! (`AF_PACKET`, `SOCK_DGRAM`: each packet from its IP header on, the same
//! LINKTYPE_RAW packets the user stack's files hold) watches the interface,
//! and a thread writes what belongs to this run:
//!
//! - connect mode: each connection by its four-tuple. The capture learns
//!   the remote end before `connect()` and the local end right after, so
//!   the SYN that `connect()` sends is in the file; packets to the remote
//!   end that arrive in between wait until the local end is known;
//! - listen mode: everything to and from the listening address and port,
//!   registered between `bind()` and `listen()`, so with `-k` every client,
//!   handshake included.
//!
//! A classic BPF program on the socket passes only IPv4/IPv6 TCP and UDP
//! with one of the run's ports (behind IPv6 extension headers too), so a
//! busy host does not flood the thread; the thread then checks each packet
//! exactly. Later fragments of a datagram carry no ports: the filter passes
//! them and the thread keeps those whose first fragment it kept. On
//! loopback the kernel shows every packet twice (leaving, then arriving);
//! the copy that leaves is kept.
//!
//! The packets are whole (snap length 256 KiB, as tcpdump's), so the file
//! opens in Wireshark with the payload. The kernel queues them for the
//! thread in a 64 MiB socket buffer; should the thread still fall behind,
//! the kernel drops and oxcat says how many at the end, as tcpdump does.
//!
//! At the end of the run (or on SIGINT/SIGTERM) the thread waits for the
//! last packets of each TCP connection (what the kernel sends after
//! `close()`, the FINs and their ACKs; at most [`DRAIN_LIMIT`]), then
//! closes the filter and takes everything still queued, writes the Mermaid
//! diagram and flushes the file.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oxcat_trace::mermaid::{connection_diagram, DiagramOptions};
use oxcat_trace::{Direction, Event, Segment, Stamped};
use oxcat_wire::{
    walk_extension_headers, IpProtocol, Ipv4Packet, Ipv6Packet, TcpFlags, TcpOption, TcpOptions,
    TcpPacket, UdpPacket,
};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::Failure;
use crate::sys;

/// The most of one packet kept (and the file's snap length): loopback's
/// GSO packets reach 64 KiB, a GRO'd one somewhat more.
const SNAPLEN: usize = 256 * 1024;
/// At the end, most packets taken from the closed socket's queue (its
/// buffer holds far fewer): a bound, should the kernel keep queueing.
const MAX_LEFT: u64 = 1 << 22;
/// Packets waiting for their connection's local end to be known.
const MAX_HELD: usize = 4096;
/// At the end: stop once every TCP connection seen has closed (or was
/// reset) and the socket has been quiet this long...
const DRAIN_QUIET: Duration = Duration::from_millis(30);
/// ...or after this long in any case (the kernel sends what a closed
/// socket still holds, and its FIN, after oxcat is done with it).
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// Segments of the diagram's connection kept from its start and its end.
const DIAGRAM_HEAD: usize = 1000;
const DIAGRAM_TAIL: usize = 1000;

/// `--pcap`/`--mermaid` without `--stack user`.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub pcap: Option<PathBuf>,
    pub mermaid: Option<PathBuf>,
}

impl CaptureConfig {
    /// The flag to name in messages.
    fn flag(&self) -> &'static str {
        if self.pcap.is_some() {
            "--pcap"
        } else {
            "--mermaid"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn of(sock: &Socket) -> Proto {
        match sock.r#type() {
            Ok(Type::DGRAM) => Proto::Udp,
            _ => Proto::Tcp,
        }
    }
}

/// A packet's transport protocol and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow {
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
}

/// Which packets belong to the run.
#[derive(Debug, Clone, Default)]
struct Watch {
    /// Listening (TCP) or bound (UDP) local addresses; the IP may be a wildcard.
    listening: Vec<(Proto, SocketAddr)>,
    /// Connections, as (local, remote).
    connections: Vec<(Proto, SocketAddr, SocketAddr)>,
    /// Remote ends being connected to, whose local end is not known yet.
    dialing: Vec<(Proto, SocketAddr)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The run's packet; `outgoing`: sent by oxcat's side.
    Ours {
        outgoing: bool,
    },
    /// Perhaps the run's: it waits until the connection's local end is known.
    Undecided,
    NotOurs,
}

/// Whether a local address `bound` (IP perhaps unspecified) covers `end`.
fn covers(bound: SocketAddr, end: SocketAddr) -> bool {
    bound.port() == end.port()
        && (bound.ip() == end.ip()
            || (bound.ip().is_unspecified() && bound.is_ipv4() == end.is_ipv4()))
}

impl Watch {
    /// `sent`: Some(true) for a packet seen leaving the host, Some(false)
    /// arriving, None on loopback (where both ends are the host's).
    fn judge(&self, f: &Flow, sent: Option<bool>) -> Verdict {
        for &(proto, local, remote) in &self.connections {
            if proto == f.proto {
                if f.src == local && f.dst == remote {
                    return Verdict::Ours { outgoing: true };
                }
                if f.src == remote && f.dst == local {
                    return Verdict::Ours { outgoing: false };
                }
            }
        }
        for &(proto, local) in &self.listening {
            if proto != f.proto {
                continue;
            }
            // A wildcard listener's port may also be the remote port of
            // someone else's connection: the direction tells them apart.
            if sent != Some(true) && covers(local, f.dst) {
                return Verdict::Ours { outgoing: false };
            }
            if sent != Some(false) && covers(local, f.src) {
                return Verdict::Ours { outgoing: true };
            }
        }
        if self
            .dialing
            .iter()
            .any(|&(proto, remote)| proto == f.proto && (f.dst == remote || f.src == remote))
        {
            return Verdict::Undecided;
        }
        Verdict::NotOurs
    }

    /// The ports the BPF program lets through.
    fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .listening
            .iter()
            .map(|(_, a)| a.port())
            .chain(self.connections.iter().map(|(_, _, r)| r.port()))
            .chain(self.dialing.iter().map(|(_, r)| r.port()))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// Where the packet socket listens: nowhere yet, loopback only, or every interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Interfaces {
    None,
    Loopback,
    All,
}

/// The interfaces a connection to `remote` crosses: loopback for the
/// host's own addresses, else any.
fn interfaces_to(remote: IpAddr) -> Interfaces {
    if remote.is_loopback() {
        return Interfaces::Loopback;
    }
    // An address the host has can be bound; the kernel routes it over loopback.
    if !remote.is_unspecified() && std::net::UdpSocket::bind((remote, 0)).is_ok() {
        return Interfaces::Loopback;
    }
    Interfaces::All
}

/// The interfaces a listener at `local` hears clients on.
fn interfaces_at(local: IpAddr) -> Interfaces {
    if local.is_loopback() {
        Interfaces::Loopback
    } else {
        Interfaces::All
    }
}

struct Capture {
    socket: Socket,
    watch: Mutex<Watch>,
    /// Bumped after every change of `watch`.
    generation: AtomicU64,
    /// The interfaces and the BPF ports now set on the socket.
    setup: Mutex<Setup>,
    flag: &'static str,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();

/// What the packet socket is set to.
struct Setup {
    interfaces: Interfaces,
    /// The ports the filter passes.
    ports: Option<Vec<u16>>,
    /// At the end: the filter passes nothing, for good.
    closed: bool,
}

/// Opens the packet socket and the files and starts the capture thread.
/// Without CAP_NET_RAW: one line saying so, exit 2.
pub fn start(cfg: &CaptureConfig) -> Result<(), Failure> {
    let flag = cfg.flag();
    // Protocol 0: no packet arrives before the filter is set and the
    // socket bound with ETH_P_ALL (at the first address the run uses).
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(0))).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                "needs CAP_NET_RAW to capture the connection's packets on the kernel's stack (run as root, or `setcap cap_net_raw+ep` on oxcat)".to_string()
            }
            Some(libc::EAFNOSUPPORT) => "this kernel has no packet sockets (AF_PACKET)".to_string(),
            _ => crate::error::describe(&e),
        };
        Failure::usage(format!("{flag}: {why}"))
    })?;
    let setup_err = |what: &str, e: io::Error| Failure::io(format!("{flag}: {what}"), &e);
    attach_filter(&socket, &[]).map_err(|e| setup_err("setting the packet filter", e))?;
    set_int_option(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
        .map_err(|e| setup_err("kernel timestamps", e))?;
    // A deep queue: a fast transfer must not outrun the thread. 32 MiB
    // (the kernel doubles it for its own accounting): with the default
    // 208 KiB a 256 MiB loopback transfer lost half its packets; with this,
    // none in a release build on a busy 2-CPU machine (libpcap's default
    // 2 MiB ring lost 5% to 44%, 64 MiB none). Beyond rmem_max needs
    // CAP_NET_ADMIN; without it, what the host allows.
    if set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 32 << 20).is_err() {
        let _ = socket.set_recv_buffer_size(32 << 20);
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| setup_err("fcntl", e))?;
    let pcap = match &cfg.pcap {
        Some(path) => {
            let file = File::create(path).map_err(|e| {
                Failure::io(
                    format!("Unable to open pcap file \"{}\"", path.display()),
                    &e,
                )
            })?;
            let header = PcapHeader {
                datalink: DataLink::RAW,
                snaplen: SNAPLEN as u32,
                ts_resolution: TsResolution::NanoSecond,
                ..PcapHeader::default()
            };
            let writer = PcapWriter::with_header(BufWriter::new(file), header).map_err(|e| {
                Failure::io(
                    format!("Unable to write pcap file \"{}\"", path.display()),
                    &io::Error::other(e),
                )
            })?;
            Some((path.clone(), writer))
        }
        None => None,
    };
    let capture = Capture {
        socket,
        watch: Mutex::new(Watch::default()),
        generation: AtomicU64::new(0),
        setup: Mutex::new(Setup {
            interfaces: Interfaces::None,
            ports: None,
            closed: false,
        }),
        flag,
        stop: AtomicBool::new(false),
        thread: Mutex::new(None),
    };
    if CAPTURE.set(capture).is_err() {
        return Err(Failure::network(format!("{flag}: capture started twice")));
    }
    let c = CAPTURE
        .get()
        .ok_or_else(|| Failure::network(format!("{flag}: capture not started")))?;
    let recorder = Recorder {
        pcap,
        written: 0,
        write_failed: false,
        diagram: cfg.mermaid.clone().map(|p| (p, DiagramKeeper::default())),
        clock: Clock::now(),
        watch: Watch::default(),
        generation: u64::MAX,
        held: Vec::new(),
        recent: VecDeque::new(),
        fragmented: VecDeque::new(),
        not_held: 0,
        endings: Endings::default(),
    };
    let thread = std::thread::Builder::new()
        .name("oxcat-capture".into())
        .spawn(move || capture_loop(c, recorder))
        .map_err(|e| setup_err("capture thread", e))?;
    *lock(&c.thread) = Some(thread);
    finish_on_signal().map_err(|e| setup_err("signal handler", e))?;
    Ok(())
}

/// Ends the capture: what the kernel still holds is written, then the
/// diagram, and the file is flushed. A second caller (the signal thread
/// and the main thread at once) waits for the first to be done.
pub fn finish() {
    let Some(c) = CAPTURE.get() else { return };
    let mut thread = lock(&c.thread);
    if let Some(t) = thread.take() {
        c.stop.store(true, Ordering::Release);
        let _ = t.join();
    }
}

/// On SIGINT/SIGTERM (how a `-k` server usually ends) the files are
/// completed before the process goes.
fn finish_on_signal() -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("oxcat-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                finish();
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

/// `connect()` on a kernel socket (non-blocking: true when already
/// connected), with the capture told the remote end before and the local
/// end after, so the SYN is in the file.
pub fn connect_start(sock: &Socket, addr: SocketAddr) -> io::Result<bool> {
    let target = SockAddr::from(addr);
    let Some(c) = CAPTURE.get() else {
        return sys::connect_start(sock, &target);
    };
    let proto = Proto::of(sock);
    c.change(interfaces_to(addr.ip()), |w| w.dialing.push((proto, addr)));
    let started = sys::connect_start(sock, &target);
    // The kernel chose the local end in connect(); it stays readable even
    // when the attempt has already been refused.
    let local = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .filter(|l| l.port() != 0);
    c.change(Interfaces::None, |w| {
        if let Some(i) = w.dialing.iter().position(|d| *d == (proto, addr)) {
            w.dialing.remove(i);
        }
        if let Some(local) = local {
            w.connections.push((proto, local, addr));
        }
    });
    started
}

/// A kernel socket was bound to listen (TCP) or receive (UDP): its packets
/// are the run's. Called before `listen()`, so no handshake is missed.
pub fn listening(sock: &Socket) {
    let Some(c) = CAPTURE.get() else { return };
    let Some(local) = sock.local_addr().ok().and_then(|a| a.as_socket()) else {
        return;
    };
    let proto = Proto::of(sock);
    c.change(interfaces_at(local.ip()), |w| {
        if !w.listening.contains(&(proto, local)) {
            w.listening.push((proto, local));
        }
    });
}

impl Capture {
    /// Changes what the run watches; the socket listens on at least
    /// `interfaces` and its filter passes the watched ports before this returns.
    fn change(&self, interfaces: Interfaces, f: impl FnOnce(&mut Watch)) {
        let mut watch = lock(&self.watch);
        f(&mut watch);
        let ports = watch.ports();
        let mut setup = lock(&self.setup);
        if setup.ports.as_ref() != Some(&ports) && !setup.closed {
            if let Err(e) = attach_filter(&self.socket, &ports) {
                self.warn(&format!("setting the packet filter: {}", describe(&e)));
            }
            setup.ports = Some(ports);
        }
        if interfaces > setup.interfaces && !setup.closed {
            if let Err(e) = bind_interfaces(&self.socket, interfaces) {
                self.warn(&format!(
                    "listening on the interfaces: {}; the capture misses packets",
                    describe(&e)
                ));
            }
            setup.interfaces = interfaces;
        }
        drop(setup);
        drop(watch);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn warn(&self, text: &str) {
        crate::msg::say(&format!("{}: {text}", self.flag));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn describe(e: &io::Error) -> String {
    crate::error::describe(e)
}

/// The kernel's wall clock of a packet, on the run's `Instant` clock too.
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall: Duration,
    instant: Instant,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            wall: wall_now(),
            instant: Instant::now(),
        }
    }

    fn instant_of(&self, stamp: Duration) -> Instant {
        self.instant + stamp.saturating_sub(self.wall)
    }

    fn micros_of(&self, stamp: Duration) -> u64 {
        stamp.saturating_sub(self.wall).as_micros() as u64
    }
}

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A packet the kernel handed over, and what its link layer says.
#[derive(Debug, Clone, Copy)]
struct Received {
    /// Bytes in the buffer.
    len: usize,
    /// The packet's length (more than `len` when cut at the snap length).
    orig_len: usize,
    ifindex: i32,
    /// The device type (ARPHRD_*): loopback shows each packet twice.
    hatype: u16,
    pkttype: u8,
    /// The EtherType.
    protocol: u16,
    /// The kernel's timestamp (wall clock).
    stamp: Option<Duration>,
}

const ARPHRD_LOOPBACK: u16 = 772;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

impl Received {
    fn loopback(&self) -> bool {
        self.hatype == ARPHRD_LOOPBACK
    }

    /// Whether the capture keeps this copy: IP only, and on loopback the
    /// copy leaving (the same packet arrives a moment later).
    fn wanted(&self) -> bool {
        matches!(self.protocol, ETH_P_IP | ETH_P_IPV6)
            && (!self.loopback() || self.pkttype == PACKET_OUTGOING)
    }

    /// Leaving (true), arriving (false), or on loopback, where both ends are ours (None).
    fn sent(&self) -> Option<bool> {
        (!self.loopback()).then_some(self.pkttype == PACKET_OUTGOING)
    }
}

/// A packet that waits for its connection's local end.
struct Held {
    meta: Received,
    data: Vec<u8>,
    flow: Flow,
}

/// The capture thread's state: the files being written.
struct Recorder {
    pcap: Option<(PathBuf, PcapWriter<BufWriter<File>>)>,
    written: u64,
    write_failed: bool,
    diagram: Option<(PathBuf, DiagramKeeper)>,
    clock: Clock,
    /// The thread's copy of the run's watch, and the generation it is from.
    watch: Watch,
    generation: u64,
    held: Vec<Held>,
    /// (interface, digest) of the last packets kept: a packet that crosses
    /// two interfaces (a bridge and its port) is kept once.
    recent: VecDeque<(i32, u64)>,
    /// Datagrams whose first fragment was kept: their later fragments
    /// (which carry no ports) are kept too.
    fragmented: VecDeque<(FragmentKey, Flow, bool)>,
    /// Packets of the run that could not wait for their connection's local
    /// end (more than MAX_HELD waiting).
    not_held: u64,
    /// The TCP connections seen, and whether they have ended.
    endings: Endings,
}

/// Recent fragmented datagrams remembered.
const MAX_FRAGMENTED: usize = 64;

fn capture_loop(c: &'static Capture, mut rec: Recorder) {
    let mut buf = vec![0u8; SNAPLEN];
    let mut stopping_since: Option<Instant> = None;
    loop {
        if stopping_since.is_none() && c.stop.load(Ordering::Acquire) {
            stopping_since = Some(Instant::now());
        }
        let wait = match stopping_since {
            Some(since) if since.elapsed() >= DRAIN_LIMIT => Duration::ZERO,
            Some(_) => DRAIN_QUIET,
            None => Duration::from_millis(100),
        };
        let mut fds = [sys::pollfd(&c.socket, rustix::event::PollFlags::IN)];
        let ready = rustix::event::poll(&mut fds, Some(&timespec(wait))).unwrap_or(0);
        let mut got = 0;
        // Bounded per wake-up, so a stop request is seen during a flood.
        while got < 1024 {
            match receive(c.socket.as_fd(), &mut buf) {
                Ok(Some(meta)) => {
                    got += 1;
                    rec.take(c, meta, &buf[..meta.len]);
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        if let Some(since) = stopping_since {
            let quiet = ready == 0 && got == 0;
            if (quiet && !rec.endings.any_open()) || since.elapsed() >= DRAIN_LIMIT {
                break;
            }
        }
    }
    // Close the gate, then take everything still queued: a thread that
    // fell behind a fast transfer writes all it was given, and the loop
    // ends because nothing new enters the queue.
    {
        let mut setup = lock(&c.setup);
        setup.closed = true;
        if let Err(e) = attach_filter(&c.socket, &[]) {
            c.warn(&format!("setting the packet filter: {}", describe(&e)));
        }
    }
    let mut left = 0u64;
    while let Ok(Some(meta)) = receive(c.socket.as_fd(), &mut buf) {
        rec.take(c, meta, &buf[..meta.len]);
        left += 1;
        if left > MAX_LEFT {
            c.warn(
                "packets kept arriving after the filter closed; the file may miss the last ones",
            );
            break;
        }
    }
    rec.refresh(c);
    rec.finish(c);
}

fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

impl Recorder {
    /// Takes the latest watch, and decides the packets that waited for it.
    fn refresh(&mut self, c: &Capture) {
        let generation = c.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.watch = lock(&c.watch).clone();
        let held = std::mem::take(&mut self.held);
        for h in held {
            match self.watch.judge(&h.flow, h.meta.sent()) {
                Verdict::Ours { outgoing } => self.record(&h.meta, &h.data, &h.flow, outgoing),
                Verdict::Undecided => self.held.push(h),
                Verdict::NotOurs => {}
            }
        }
    }

    fn take(&mut self, c: &Capture, meta: Received, data: &[u8]) {
        if !meta.wanted() {
            return;
        }
        let Some((flow, _)) = decode(data) else {
            self.take_later_fragment(&meta, data);
            return;
        };
        self.refresh(c);
        match self.watch.judge(&flow, meta.sent()) {
            Verdict::Ours { outgoing } => {
                if !self.seen_elsewhere(&meta, data) {
                    self.record(&meta, data, &flow, outgoing);
                }
            }
            Verdict::Undecided if self.held.len() < MAX_HELD => self.held.push(Held {
                meta,
                data: data.to_vec(),
                flow,
            }),
            Verdict::Undecided => self.not_held += 1,
            Verdict::NotOurs => {}
        }
    }

    /// A fragment past the first one: kept when its datagram's first
    /// fragment was (fragments leave in order, the first one first).
    fn take_later_fragment(&mut self, meta: &Received, data: &[u8]) {
        let Some((key, false)) = fragment_of(data) else {
            return;
        };
        let Some(&(_, flow, outgoing)) = self.fragmented.iter().find(|(k, _, _)| *k == key) else {
            return;
        };
        if !self.seen_elsewhere(meta, data) {
            self.record(meta, data, &flow, outgoing);
        }
    }

    /// Whether the same packet was just kept from another interface.
    fn seen_elsewhere(&mut self, meta: &Received, data: &[u8]) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        // The headers and the length tell packets apart; no need to hash 64 KiB.
        data[..data.len().min(96)].hash(&mut h);
        meta.orig_len.hash(&mut h);
        let digest = h.finish();
        if self
            .recent
            .iter()
            .any(|&(ifindex, d)| d == digest && ifindex != meta.ifindex)
        {
            return true;
        }
        if self.recent.len() == 32 {
            self.recent.pop_front();
        }
        self.recent.push_back((meta.ifindex, digest));
        false
    }

    fn record(&mut self, meta: &Received, data: &[u8], flow: &Flow, outgoing: bool) {
        let stamp = meta.stamp.unwrap_or_else(wall_now);
        if let Some((key, true)) = fragment_of(data) {
            if self.fragmented.len() == MAX_FRAGMENTED {
                self.fragmented.pop_front();
            }
            self.fragmented.push_back((key, *flow, outgoing));
        }
        if let Some((path, writer)) = self.pcap.as_mut() {
            if !self.write_failed {
                let packet = PcapPacket::new(stamp, meta.orig_len.max(data.len()) as u32, data);
                match writer.write_packet(&packet) {
                    Ok(_) => self.written += 1,
                    Err(e) => {
                        self.write_failed = true;
                        crate::msg::say(&format!(
                            "Unable to write pcap file \"{}\": {e}",
                            path.display()
                        ));
                    }
                }
            }
        }
        if flow.proto == Proto::Tcp {
            self.endings.see(data, flow);
        }
        let tracing = sys::tracing();
        if !tracing && self.diagram.is_none() {
            return;
        }
        let dir = if outgoing {
            Direction::Out
        } else {
            Direction::In
        };
        let Some(segment) = segment(data, flow, dir) else {
            return;
        };
        if let Some((_, keeper)) = self.diagram.as_mut() {
            keeper.keep(Stamped::new(
                self.clock.micros_of(stamp),
                Event::Segment(segment.clone()),
            ));
        }
        if tracing {
            sys::record_at(self.clock.instant_of(stamp), Event::Segment(segment));
        }
    }

    fn finish(mut self, c: &Capture) {
        if let Some((path, writer)) = self.pcap.take() {
            let flushed = writer.into_writer().flush();
            if let (Err(e), false) = (flushed, self.write_failed) {
                crate::msg::say(&format!(
                    "Unable to write pcap file \"{}\": {}",
                    path.display(),
                    describe(&e)
                ));
            }
            crate::verbose!(
                1,
                "{} packets of this run written to {}.",
                self.written,
                path.display()
            );
        }
        if let Some((path, keeper)) = self.diagram.take() {
            if let Err(e) = std::fs::write(&path, keeper.diagram()) {
                crate::msg::say(&format!(
                    "Unable to write Mermaid file \"{}\": {}",
                    path.display(),
                    describe(&e)
                ));
            }
        }
        // As tcpdump ends: "N packets dropped by kernel", here only when
        // there were some, and also without -v: the file has a gap.
        if let Some(drops) = dropped(&c.socket).filter(|&d| d > 0) {
            c.warn(&format!(
                "{drops} packets dropped by kernel (the capture fell behind the transfer); the file misses them"
            ));
        }
        if self.not_held > 0 {
            c.warn(&format!(
                "{} packets not kept (too many waiting for their connection's local port); the file misses them",
                self.not_held
            ));
        }
    }
}

/// Whether the TCP connections seen have ended: both FINs acknowledged,
/// or a reset. A socket oxcat closed may still hold data the kernel sends
/// afterwards, then the FIN; the capture waits for them.
#[derive(Default)]
struct Endings {
    /// By the connection's ends, the lower address first.
    conns: HashMap<(SocketAddr, SocketAddr), Ending>,
    /// How many of them have not ended.
    open: usize,
}

#[derive(Debug, Default)]
struct Ending {
    /// For each end (the lower address first): the sequence number just
    /// past its FIN, once sent.
    fin_end: [Option<u32>; 2],
    /// For each end: whether the other end acknowledged its FIN.
    fin_acked: [bool; 2],
    reset: bool,
}

impl Ending {
    fn done(&self) -> bool {
        self.reset || self.fin_acked == [true, true]
    }
}

/// Connections remembered; beyond, the ended ones are forgotten.
const MAX_ENDINGS: usize = 4096;

impl Endings {
    fn see(&mut self, packet: &[u8], flow: &Flow) {
        let Some(t) = decode(packet).and_then(|(_, tr)| TcpPacket::new_checked(tr).ok()) else {
            return;
        };
        let from = usize::from(flow.src > flow.dst);
        let key = if from == 0 {
            (flow.src, flow.dst)
        } else {
            (flow.dst, flow.src)
        };
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= MAX_ENDINGS {
                self.conns.retain(|_, c| !c.done());
                if self.conns.len() >= MAX_ENDINGS {
                    return;
                }
            }
            self.conns.insert(key, Ending::default());
            self.open += 1;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let was_done = c.done();
        let flags = t.flags();
        if flags.contains(TcpFlags::RST) {
            c.reset = true;
        }
        if flags.contains(TcpFlags::FIN) {
            // RFC 9293 §3.4: the FIN takes the sequence number after the data.
            let len = t.payload().len() as u32;
            c.fin_end[from] = Some(t.seq_number().wrapping_add(len).wrapping_add(1));
        }
        if flags.contains(TcpFlags::ACK) {
            if let Some(end) = c.fin_end[1 - from] {
                // At or past the FIN, in sequence space (RFC 9293 §3.4).
                if (t.ack_number().wrapping_sub(end) as i32) >= 0 {
                    c.fin_acked[1 - from] = true;
                }
            }
        }
        if c.done() && !was_done {
            self.open -= 1;
        }
    }

    fn any_open(&self) -> bool {
        self.open > 0
    }
}

/// The segments the diagram is drawn from: the first connection whose SYN
/// was seen, its head and its tail.
#[derive(Default)]
struct DiagramKeeper {
    /// (client, server) of the first SYN.
    conn: Option<(SocketAddr, SocketAddr)>,
    head: Vec<Stamped>,
    tail: VecDeque<Stamped>,
    unseen: usize,
}

impl DiagramKeeper {
    fn keep(&mut self, e: Stamped) {
        let Event::Segment(s) = &e.event else { return };
        match self.conn {
            None if s.flags & 0x12 == 0x02 => self.conn = Some((s.src, s.dst)),
            None => return,
            Some((a, b)) => {
                if !((s.src == a && s.dst == b) || (s.src == b && s.dst == a)) {
                    return;
                }
            }
        }
        if self.head.len() < DIAGRAM_HEAD {
            self.head.push(e);
            return;
        }
        self.tail.push_back(e);
        if self.tail.len() > DIAGRAM_TAIL {
            self.tail.pop_front();
            self.unseen += 1;
        }
    }

    fn diagram(&self) -> String {
        let events: Vec<Stamped> = self.head.iter().chain(&self.tail).cloned().collect();
        let opts = DiagramOptions {
            unseen_segments: self.unseen,
            ..DiagramOptions::default()
        };
        connection_diagram(&events, &opts).unwrap_or_else(|| {
            "sequenceDiagram\n    Note over oxcat: no TCP connection in this run\n".into()
        })
    }
}

/// The flow of an IPv4 or IPv6 packet carrying TCP or UDP, and its
/// transport bytes (in a first fragment, the start of them); None for
/// anything else, however malformed, and for a later fragment.
fn decode(packet: &[u8]) -> Option<(Flow, &[u8])> {
    let (src, dst, proto, transport, fragment) = match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            // Later fragments carry no transport header.
            if ip.frag_offset() != 0 {
                return None;
            }
            let body = packet.get(ip.header_len()..usize::from(ip.total_len()))?;
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.protocol(),
                body,
                ip.more_frags(),
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            let payload = packet.get(40..40 + usize::from(ip.payload_len()))?;
            let upper = walk_extension_headers(ip.next_header(), payload).ok()?;
            if upper.fragment.is_some_and(|f| f.offset != 0) {
                return None;
            }
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                upper.protocol,
                payload.get(upper.offset..)?,
                upper.fragment.is_some(),
            )
        }
        _ => return None,
    };
    if fragment {
        // The first fragment: the header's length fields cover the whole
        // datagram, so only the ports are read.
        let proto = match proto {
            IpProtocol::TCP => Proto::Tcp,
            IpProtocol::UDP => Proto::Udp,
            _ => return None,
        };
        let ports = transport.first_chunk::<4>()?;
        let flow = Flow {
            proto,
            src: SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
            dst: SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
        };
        return Some((flow, transport));
    }
    let (proto, sport, dport) = match proto {
        IpProtocol::TCP => {
            let t = TcpPacket::new_checked(transport).ok()?;
            (Proto::Tcp, t.src_port(), t.dst_port())
        }
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(transport).ok()?;
            (Proto::Udp, u.src_port(), u.dst_port())
        }
        _ => return None,
    };
    let flow = Flow {
        proto,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
    };
    Some((flow, transport))
}

/// What identifies the fragments of one datagram: source, destination,
/// protocol and identification (RFC 791 §3.2); for IPv6 the fragment
/// header's identification (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    /// IPv4's protocol; 0 for IPv6.
    proto: u8,
    ident: u32,
}

/// The datagram a fragment belongs to, and whether this is its first
/// fragment; None for a whole packet.
fn fragment_of(packet: &[u8]) -> Option<(FragmentKey, bool)> {
    match packet.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).ok()?;
            if !ip.more_frags() && ip.frag_offset() == 0 {
                return None;
            }
            let key = FragmentKey {
                src: IpAddr::V4(ip.src_addr()),
                dst: IpAddr::V4(ip.dst_addr()),
                proto: ip.protocol().0,
                ident: u32::from(ip.ident()),
            };
            Some((key, ip.frag_offset() == 0))
        }
        6 => {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            if matches!(ip.next_header(), IpProtocol::TCP | IpProtocol::UDP) {
                return None;
            }
            let payload = packet.get(40..40 + usize::from(ip.payload_len()))?;
            let fragment = walk_extension_headers(ip.next_header(), payload)
                .ok()?
                .fragment?;
            let key = FragmentKey {
                src: IpAddr::V6(ip.src_addr()),
                dst: IpAddr::V6(ip.dst_addr()),
                proto: 0,
                ident: fragment.ident,
            };
            Some((key, fragment.offset == 0))
        }
        _ => None,
    }
}

/// A TCP packet as the trace's segment event (None for UDP).
fn segment(packet: &[u8], flow: &Flow, dir: Direction) -> Option<Segment> {
    if flow.proto != Proto::Tcp {
        return None;
    }
    let (_, transport) = decode(packet)?;
    let t = TcpPacket::new_checked(transport).ok()?;
    let payload = t.payload();
    Some(Segment {
        dir,
        src: flow.src,
        dst: flow.dst,
        flags: t.flags().0,
        seq: t.seq_number(),
        ack: t.ack_number(),
        window: t.window_len(),
        len: payload.len(),
        options: options_text(t.options()),
        preview: payload
            .iter()
            .take(24)
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect(),
    })
}

/// The options as tcpdump prints them, in the order they came.
fn options_text(options: &[u8]) -> String {
    let mut parts = Vec::new();
    for o in TcpOptions::new(options) {
        match o {
            Ok(TcpOption::Mss(m)) => parts.push(format!("mss {m}")),
            Ok(TcpOption::SackPermitted) => parts.push("sackOK".into()),
            Ok(TcpOption::Timestamps(ts)) => {
                parts.push(format!("TS val {} ecr {}", ts.tsval, ts.tsecr))
            }
            Ok(TcpOption::WindowScale(w)) => parts.push(format!("wscale {w}")),
            Ok(TcpOption::Sack(blocks)) => {
                let b: String = blocks.iter().map(|(l, r)| format!("{{{l}:{r}}}")).collect();
                parts.push(format!("sack {} {b}", blocks.len()));
            }
            Ok(TcpOption::Unknown { kind, .. }) => parts.push(format!("opt-{kind}")),
            Ok(TcpOption::NoOp) | Ok(TcpOption::EndOfList) => {}
            Err(_) => parts.push("bad option".into()),
        }
    }
    parts.join(",")
}

/// Classic BPF (linux/filter.h): IPv4/IPv6 TCP and UDP to or from one of
/// `ports`, on loopback only the copy leaving; no ports: nothing.
///
/// IPv6 extension headers (hop-by-hop, routing, destination options,
/// fragment, authentication) are walked, unrolled, up to `V6_HEADERS`
/// deep; a longer chain passes to the thread, which walks it exactly (ESP
/// hides the ports: dropped). Later fragments (IPv4 and IPv6) carry no
/// ports: they pass, and the thread keeps those of a datagram whose first
/// fragment it kept.
mod bpf {
    pub const LD_W_ABS: u16 = 0x20;
    pub const LD_H_ABS: u16 = 0x28;
    pub const LD_B_ABS: u16 = 0x30;
    pub const LD_H_IND: u16 = 0x48;
    pub const LD_B_IND: u16 = 0x50;
    pub const LD_MEM: u16 = 0x60;
    pub const LDX_B_MSH: u16 = 0xb1;
    pub const LDX_IMM: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const ADD_K: u16 = 0x04;
    pub const ADD_X: u16 = 0x0c;
    pub const LSH_K: u16 = 0x64;
    pub const TAX: u16 = 0x07;
    pub const TXA: u16 = 0x87;
    pub const JA: u16 = 0x05;
    pub const JEQ_K: u16 = 0x15;
    pub const JSET_K: u16 = 0x45;
    pub const RET_K: u16 = 0x06;
    /// Loads from past this offset read the packet's metadata (SKF_AD_OFF).
    pub const AD: u32 = (-0x1000i32) as u32;
    pub const AD_PROTOCOL: u32 = AD;
    pub const AD_PKTTYPE: u32 = AD + 4;
    pub const AD_HATYPE: u32 = AD + 28;
    /// More ports than this are not filtered in the kernel (8-bit jump
    /// offsets); the capture thread still checks every packet.
    pub const MAX_PORTS: usize = 48;
    /// IPv6 extension headers the program walks before passing the packet
    /// on undecided.
    pub const V6_HEADERS: usize = 4;

    /// Where a jump goes: the next instruction with this label (every
    /// jump in classic BPF goes forward, so labels may repeat).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum To {
        Next,
        Ip,
        V6,
        Step,
        ExtHeader,
        AuthHeader,
        Fragment,
        Transport,
        Ports,
        Accept,
        Drop,
    }

    /// One instruction with symbolic jumps, perhaps the target of a label.
    struct Op {
        label: Option<To>,
        code: u16,
        jt: To,
        jf: To,
        k: u32,
    }

    fn op(code: u16, k: u32) -> Op {
        Op {
            label: None,
            code,
            jt: To::Next,
            jf: To::Next,
            k,
        }
    }

    fn jump(code: u16, k: u32, jt: To, jf: To) -> Op {
        Op {
            label: None,
            code,
            jt,
            jf,
            k,
        }
    }

    fn at(label: To, o: Op) -> Op {
        Op {
            label: Some(label),
            ..o
        }
    }

    /// The program, as (code, jt, jf, k).
    pub fn program(ports: &[u16]) -> Vec<(u16, u8, u8, u32)> {
        if ports.is_empty() {
            return vec![(RET_K, 0, 0, 0)];
        }
        let snaplen = super::SNAPLEN as u32;
        let mut ops = vec![
            // Loopback shows each packet leaving, then arriving: keep the first.
            op(LD_W_ABS, AD_HATYPE),
            jump(JEQ_K, super::ARPHRD_LOOPBACK.into(), To::Next, To::Ip),
            op(LD_W_ABS, AD_PKTTYPE),
            jump(JEQ_K, super::PACKET_OUTGOING.into(), To::Ip, To::Drop),
            at(To::Ip, op(LD_W_ABS, AD_PROTOCOL)),
            jump(JEQ_K, super::ETH_P_IPV6.into(), To::V6, To::Next),
            jump(JEQ_K, super::ETH_P_IP.into(), To::Next, To::Drop),
            // IPv4: TCP or UDP; X = the header's length. A later fragment
            // passes (the thread knows whose datagram it belongs to).
            op(LD_B_ABS, 9),
            jump(JEQ_K, 6, To::Transport, To::Next),
            jump(JEQ_K, 17, To::Next, To::Drop),
            at(To::Transport, op(LD_H_ABS, 6)),
            jump(JSET_K, 0x1fff, To::Accept, To::Next),
            op(LDX_B_MSH, 0),
            jump(JA, 0, To::Ports, To::Ports),
            at(To::Drop, op(RET_K, 0)),
            at(To::Accept, op(RET_K, snaplen)),
            // IPv6: A = the next header's type, X = where it starts.
            at(To::V6, op(LD_B_ABS, 6)),
            op(LDX_IMM, 40),
        ];
        for step in 0..=V6_HEADERS {
            let first = ops.len();
            ops.extend([
                jump(JEQ_K, 6, To::Transport, To::Next),
                jump(JEQ_K, 17, To::Transport, To::Next),
                jump(JEQ_K, 44, To::Fragment, To::Next),
                // RFC 8200 §4.3-4.6: hop-by-hop (0), routing (43),
                // destination options (60); length in 8-octet units past the first 8.
                jump(JEQ_K, 0, To::ExtHeader, To::Next),
                jump(JEQ_K, 43, To::ExtHeader, To::Next),
                jump(JEQ_K, 60, To::ExtHeader, To::Next),
                jump(JEQ_K, 51, To::AuthHeader, To::Drop),
                at(To::Transport, jump(JA, 0, To::Ports, To::Ports)),
                at(To::Drop, op(RET_K, 0)),
                at(To::Accept, op(RET_K, snaplen)),
                at(To::ExtHeader, op(LD_B_IND, 0)),
                op(ST, 0),
                op(LD_B_IND, 1),
                op(ADD_K, 1),
                op(LSH_K, 3),
                op(ADD_X, 0),
                op(TAX, 0),
                op(LD_MEM, 0),
                jump(JA, 0, To::Step, To::Step),
                // RFC 4302 §2.2: AH's length counts 4-octet units, minus 2.
                at(To::AuthHeader, op(LD_B_IND, 0)),
                op(ST, 0),
                op(LD_B_IND, 1),
                op(ADD_K, 2),
                op(LSH_K, 2),
                op(ADD_X, 0),
                op(TAX, 0),
                op(LD_MEM, 0),
                jump(JA, 0, To::Step, To::Step),
                // RFC 8200 §4.5: 8 bytes; a nonzero offset is a later fragment.
                at(To::Fragment, op(LD_H_IND, 2)),
                jump(JSET_K, 0xfff8, To::Accept, To::Next),
                op(LD_B_IND, 0),
                op(ST, 0),
                op(TXA, 0),
                op(ADD_K, 8),
                op(TAX, 0),
                op(LD_MEM, 0),
            ]);
            if step > 0 {
                ops[first].label = Some(To::Step);
            }
        }
        // Still an extension header: the thread walks the rest.
        ops.push(at(To::Step, op(RET_K, snaplen)));
        if ports.len() > MAX_PORTS {
            ops.push(at(To::Ports, op(RET_K, snaplen)));
        } else {
            // The source port, then the destination port, against each port.
            for offset in [0u32, 2] {
                let load = op(LD_H_IND, offset);
                ops.push(if offset == 0 {
                    at(To::Ports, load)
                } else {
                    load
                });
                for &p in ports {
                    ops.push(jump(JEQ_K, p.into(), To::Accept, To::Next));
                }
            }
        }
        ops.push(at(To::Drop, op(RET_K, 0)));
        ops.push(at(To::Accept, op(RET_K, snaplen)));
        assemble(&ops)
    }

    /// Resolves the labels into the offsets from the next instruction: a
    /// jump goes to the first instruction after it with the label.
    fn assemble(ops: &[Op]) -> Vec<(u16, u8, u8, u32)> {
        let rel = |from: usize, to: To| -> u32 {
            match to {
                To::Next => 0,
                label => ops[from + 1..]
                    .iter()
                    .position(|o| o.label == Some(label))
                    .map_or(u32::MAX, |t| t as u32),
            }
        };
        ops.iter()
            .enumerate()
            .map(|(i, o)| {
                if o.code == JA {
                    (o.code, 0, 0, rel(i, o.jt))
                } else {
                    // Every label is within MAX_PORTS * 2 + 30 instructions
                    // of its jumps (checked by the tests): offsets fit.
                    let jt = u8::try_from(rel(i, o.jt)).unwrap_or(u8::MAX);
                    let jf = u8::try_from(rel(i, o.jf)).unwrap_or(u8::MAX);
                    (o.code, jt, jf, o.k)
                }
            })
            .collect()
    }
}

fn attach_filter(sock: &Socket, ports: &[u16]) -> io::Result<()> {
    let program: Vec<socket2::SockFilter> = bpf::program(ports)
        .into_iter()
        .map(|(code, jt, jf, k)| socket2::SockFilter::new(code, jt, jf, k))
        .collect();
    sock.attach_filter(&program)
}

fn set_int_option(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the pointer and length describe `value`, a live c_int.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds the packet socket to every protocol (ETH_P_ALL, so packets
/// leaving are seen too) on loopback or on every interface.
fn bind_interfaces(sock: &Socket, which: Interfaces) -> io::Result<()> {
    let ifindex = match which {
        Interfaces::None => return Ok(()),
        Interfaces::All => 0,
        Interfaces::Loopback => {
            rustix::net::netdevice::name_to_index(sock, "lo").map_err(io::Error::from)? as i32
        }
    };
    // SAFETY: sockaddr_ll is plain data, for which all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: the pointer and length describe `addr`, a live sockaddr_ll.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One packet from the (non-blocking) packet socket into `buf`, with its
/// link-layer address and the kernel's timestamp; None when none is waiting.
fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Received>> {
    // SAFETY: sockaddr_ll and msghdr are plain data, for which all zeroes is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` refers to a live buffer of the length
    // given beside it; MSG_TRUNC makes the result the packet's full length.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    let orig_len = n as usize;
    let mut stamp = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // within `msg_controllen`; the timespec is read unaligned from a
    // message whose type says it holds one.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                if ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec) {
                    stamp = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some(Received {
        len: orig_len.min(buf.len()),
        orig_len,
        ifindex: addr.sll_ifindex,
        hatype: addr.sll_hatype,
        pkttype: addr.sll_pkttype,
        protocol: u16::from_be(addr.sll_protocol),
        stamp,
    }))
}

/// Packets the kernel dropped because the socket's queue was full.
fn dropped(sock: &Socket) -> Option<u32> {
    // SAFETY: tpacket_stats is plain data; the pointer and length describe it.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: as above; the kernel writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(stats.tp_drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 packet around a TCP (6) or UDP (17) header and payload.
    fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], transport: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p.extend(src);
        p.extend(dst);
        p.extend(transport);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    fn v6(proto: u8, src: u8, dst: u8, transport: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend((transport.len() as u16).to_be_bytes());
        p.extend([proto, 64]);
        p.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, src]);
        p.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, dst]);
        p.extend(transport);
        p
    }

    fn tcp(sport: u16, dport: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(sport.to_be_bytes());
        t.extend(dport.to_be_bytes());
        t.extend(1000u32.to_be_bytes());
        t.extend(2000u32.to_be_bytes());
        t.push((((20 + options.len()) / 4) as u8) << 4);
        t.push(flags);
        t.extend(512u16.to_be_bytes());
        t.extend([0, 0, 0, 0]);
        t.extend(options);
        t.extend(payload);
        t
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend(sport.to_be_bytes());
        u.extend(dport.to_be_bytes());
        u.extend(((8 + payload.len()) as u16).to_be_bytes());
        u.extend([0, 0]);
        u.extend(payload);
        u
    }

    /// What the kernel tells a filter about a packet.
    #[derive(Clone, Copy)]
    struct Meta {
        protocol: u16,
        pkttype: u8,
        hatype: u16,
    }

    const ETHER_IN: Meta = Meta {
        protocol: ETH_P_IP,
        pkttype: 0,
        hatype: 1,
    };

    /// Classic BPF, the instructions the program uses: what it returns for `pkt`.
    fn run_bpf(prog: &[(u16, u8, u8, u32)], pkt: &[u8], m: Meta) -> u32 {
        let byte = |at: u32| pkt.get(at as usize).map(|&b| u32::from(b));
        let half = |at: u32| Some(byte(at)? << 8 | byte(at + 1)?);
        let (mut a, mut x, mut pc, mut mem) = (0u32, 0u32, 0usize, [0u32; 16]);
        for _ in 0..prog.len() {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            let loaded = match code {
                bpf::LD_W_ABS if k == bpf::AD_PROTOCOL => Some(u32::from(m.protocol)),
                bpf::LD_W_ABS if k == bpf::AD_PKTTYPE => Some(u32::from(m.pkttype)),
                bpf::LD_W_ABS if k == bpf::AD_HATYPE => Some(u32::from(m.hatype)),
                bpf::LD_H_ABS => half(k),
                bpf::LD_B_ABS => byte(k),
                bpf::LD_H_IND => half(x + k),
                bpf::LD_B_IND => byte(x + k),
                bpf::LD_MEM => Some(mem[k as usize]),
                bpf::ST => {
                    mem[k as usize] = a;
                    None
                }
                bpf::ADD_K => Some(a.wrapping_add(k)),
                bpf::ADD_X => Some(a.wrapping_add(x)),
                bpf::LSH_K => Some(a << k),
                bpf::TAX => {
                    x = a;
                    None
                }
                bpf::TXA => Some(x),
                bpf::LDX_B_MSH => {
                    x = 4 * (byte(k).unwrap_or(0) & 0xf);
                    None
                }
                bpf::LDX_IMM => {
                    x = k;
                    None
                }
                bpf::JA => {
                    pc += k as usize;
                    None
                }
                bpf::JEQ_K => {
                    pc += usize::from(if a == k { jt } else { jf });
                    None
                }
                bpf::JSET_K => {
                    pc += usize::from(if a & k != 0 { jt } else { jf });
                    None
                }
                bpf::RET_K => return k,
                other => panic!("instruction {other:#x} not in the interpreter"),
            };
            if matches!(
                code,
                bpf::LD_W_ABS
                    | bpf::LD_H_ABS
                    | bpf::LD_B_ABS
                    | bpf::LD_H_IND
                    | bpf::LD_B_IND
                    | bpf::LD_MEM
                    | bpf::ADD_K
                    | bpf::ADD_X
                    | bpf::LSH_K
                    | bpf::TXA
            ) {
                // A load past the end ends the program: drop (as the kernel does).
                match loaded {
                    Some(v) => a = v,
                    None => return 0,
                }
            }
        }
        panic!("the program ran off its end");
    }

    #[test]
    fn bpf_passes_the_runs_ports_and_one_copy_on_loopback() {
        let prog = bpf::program(&[5555, 7000]);
        let keep = SNAPLEN as u32;
        let to = v4(
            6,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &tcp(40000, 5555, 0x02, &[], b""),
        );
        let from = v4(
            6,
            [10, 0, 0, 2],
            [10, 0, 0, 1],
            &tcp(7000, 40000, 0x12, &[], b""),
        );
        let other = v4(
            6,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &tcp(40000, 80, 0x02, &[], b""),
        );
        assert_eq!(run_bpf(&prog, &to, ETHER_IN), keep);
        assert_eq!(run_bpf(&prog, &from, ETHER_IN), keep);
        assert_eq!(run_bpf(&prog, &other, ETHER_IN), 0);
        // Loopback: the copy leaving is kept, the one arriving dropped.
        let lo = |pkttype| Meta {
            pkttype,
            hatype: ARPHRD_LOOPBACK,
            ..ETHER_IN
        };
        assert_eq!(run_bpf(&prog, &to, lo(PACKET_OUTGOING)), keep);
        assert_eq!(run_bpf(&prog, &to, lo(0)), 0);
        // Not IP, ICMP: dropped.
        let arp = Meta {
            protocol: 0x0806,
            ..ETHER_IN
        };
        assert_eq!(run_bpf(&prog, &to, arp), 0);
        let icmp = v4(
            1,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &tcp(40000, 5555, 0, &[], b""),
        );
        assert_eq!(run_bpf(&prog, &icmp, ETHER_IN), 0);
        // A later fragment has no ports: it passes, the thread decides.
        let mut fragment = other.clone();
        fragment[6..8].copy_from_slice(&[0, 10]);
        assert_eq!(run_bpf(&prog, &fragment, ETHER_IN), keep);
        // IPv4 options move the ports: the header length is read.
        let mut with_options = to.clone();
        with_options[0] = 0x46;
        with_options.splice(20..20, [1, 1, 1, 0]);
        assert_eq!(run_bpf(&prog, &with_options, ETHER_IN), keep);
        let mut shifted = other.clone();
        shifted[0] = 0x46;
        shifted.splice(20..20, [0x15, 0xb3, 0x15, 0xb3]); // 5555 where IHL=5 would look
        assert_eq!(run_bpf(&prog, &shifted, ETHER_IN), 0);
        // IPv6, TCP and UDP.
        let six = Meta {
            protocol: ETH_P_IPV6,
            ..ETHER_IN
        };
        assert_eq!(
            run_bpf(&prog, &v6(17, 1, 2, &udp(5353, 5555, b"x")), six),
            keep
        );
        assert_eq!(
            run_bpf(&prog, &v6(6, 1, 2, &tcp(1, 80, 0x02, &[], b"")), six),
            0
        );
        assert_eq!(run_bpf(&prog, &v6(58, 1, 2, &udp(5555, 5555, b"")), six), 0);
        // Truncated: dropped, not misread.
        assert_eq!(run_bpf(&prog, &to[..21], ETHER_IN), 0);
        // Nothing watched yet: nothing passes.
        assert_eq!(run_bpf(&bpf::program(&[]), &to, ETHER_IN), 0);
        // Too many ports for 8-bit jumps: every TCP/UDP packet passes to the thread.
        let many: Vec<u16> = (1..=60).collect();
        assert_eq!(run_bpf(&bpf::program(&many), &other, ETHER_IN), keep);
        let most: Vec<u16> = (5500..5548).collect();
        assert_eq!(run_bpf(&bpf::program(&most), &other, ETHER_IN), 0);
        let mut last = other.clone();
        last[22..24].copy_from_slice(&5547u16.to_be_bytes());
        assert_eq!(run_bpf(&bpf::program(&most), &last, ETHER_IN), keep);
    }

    /// An IPv6 packet whose extension headers are `chain`, each (type,
    /// length in bytes, a multiple of 8); a fragment header (44) says
    /// "first fragment, more follow".
    fn v6_ext(chain: &[(u8, usize)], proto: u8, transport: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, &(kind, len)) in chain.iter().enumerate() {
            let mut h = vec![0u8; len];
            h[0] = chain.get(i + 1).map_or(proto, |h| h.0);
            h[1] = if kind == 51 {
                (len / 4 - 2) as u8
            } else {
                (len / 8 - 1) as u8
            };
            if kind == 44 {
                h[3] = 1;
                h[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
            }
            body.extend(h);
        }
        body.extend(transport);
        v6(chain.first().map_or(proto, |h| h.0), 1, 2, &body)
    }

    #[test]
    fn bpf_walks_ipv6_extension_headers() {
        let prog = bpf::program(&[5555, 7000]);
        let keep = SNAPLEN as u32;
        let six = Meta {
            protocol: ETH_P_IPV6,
            ..ETHER_IN
        };
        let to = |port, proto| {
            if proto == 6 {
                tcp(40000, port, 0x02, &[], b"")
            } else {
                udp(40000, port, b"datagram")
            }
        };
        let (ours, theirs) = (tcp(40000, 5555, 0x02, &[], b""), to(80, 6));
        let (hop, route, dest, frag, auth) = ((0, 8), (43, 24), (60, 16), (44, 8), (51, 24));
        for chain in [
            &[hop][..],
            &[dest],
            &[route, dest],
            &[frag],
            &[auth],
            &[hop, auth, dest],
            &[hop, dest, route, frag],
        ] {
            for proto in [6, 17] {
                let p = v6_ext(chain, proto, &to(5555, proto));
                assert_eq!(run_bpf(&prog, &p, six), keep, "{chain:?} {proto}");
                // The thread reads the same flow.
                let (flow, _) = decode(&p).unwrap();
                assert_eq!(flow.dst, sa("[fd00::2]:5555"), "{chain:?} {proto}");
                let p = v6_ext(chain, proto, &to(80, proto));
                assert_eq!(run_bpf(&prog, &p, six), 0, "{chain:?} {proto}");
            }
        }
        // Longer chains than the program walks pass to the thread.
        let deep = v6_ext(&[hop, dest, route, dest, frag], 6, &theirs);
        assert_eq!(run_bpf(&prog, &deep, six), keep);
        // No next header, ICMPv6, ESP behind the headers: dropped.
        for proto in [59, 58, 50] {
            assert_eq!(run_bpf(&prog, &v6_ext(&[hop], proto, &ours), six), 0);
        }
        // A truncated header: dropped, not misread.
        let cut = v6_ext(&[route], 6, &ours);
        assert_eq!(run_bpf(&prog, &cut[..50], six), 0);
        // A later fragment: no ports to read, it passes; the thread keeps it
        // when it kept the first.
        let first = v6_ext(&[frag], 17, &udp(40000, 5555, &[7; 32]));
        let mut later = first.clone();
        later[40 + 2..40 + 4].copy_from_slice(&(185u16 << 3).to_be_bytes());
        later.truncate(48 + 16);
        later[4..6].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(run_bpf(&prog, &later, six), keep);
        assert!(decode(&later).is_none());
        let (key, is_first) = fragment_of(&first).unwrap();
        assert!(is_first);
        assert_eq!(fragment_of(&later), Some((key, false)));
        assert_eq!(key.ident, 0xdead_beef);
        assert_eq!(fragment_of(&v6(17, 1, 2, &udp(1, 2, b"x"))), None);
        // IPv4 alike: the first fragment's ports, then a later one by its ident.
        let mut first4 = v4(
            17,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &udp(40000, 5555, &[1; 64]),
        );
        first4[4..6].copy_from_slice(&77u16.to_be_bytes());
        first4[6] |= 0x20; // More Fragments
        first4.truncate(20 + 16);
        first4[2..4].copy_from_slice(&36u16.to_be_bytes());
        let (flow, _) = decode(&first4).unwrap();
        assert_eq!(flow.dst, sa("10.0.0.2:5555"));
        let mut later4 = first4.clone();
        later4[6..8].copy_from_slice(&2u16.to_be_bytes());
        assert!(decode(&later4).is_none());
        let (key4, true) = fragment_of(&first4).unwrap() else {
            panic!("not a first fragment")
        };
        assert_eq!(fragment_of(&later4), Some((key4, false)));
    }

    #[test]
    fn every_jump_of_the_program_lands_inside_it() {
        for n in [1, 2, bpf::MAX_PORTS, bpf::MAX_PORTS + 1] {
            let ports: Vec<u16> = (1..=n as u16).collect();
            let prog = bpf::program(&ports);
            assert!(prog.len() < 4096);
            for (i, &(code, jt, jf, k)) in prog.iter().enumerate() {
                let left = prog.len() - i - 1;
                if code == bpf::JA {
                    assert!((k as usize) < left, "{n} ports: JA at {i}");
                } else if code & 0x07 == 0x05 {
                    assert!(usize::from(jt.max(jf)) < left.min(255), "{n} ports: {i}");
                }
            }
            assert_eq!(prog.last().map(|i| i.0), Some(bpf::RET_K));
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn decode_reads_the_flow_and_never_panics() {
        let p = v4(
            6,
            [127, 0, 0, 1],
            [127, 0, 0, 2],
            &tcp(1, 2, 0x18, &[], b"hi"),
        );
        let (flow, transport) = decode(&p).unwrap();
        assert_eq!(
            flow,
            Flow {
                proto: Proto::Tcp,
                src: sa("127.0.0.1:1"),
                dst: sa("127.0.0.2:2")
            }
        );
        assert_eq!(transport.len(), 22);
        let p6 = v6(17, 1, 2, &udp(53, 5353, b"q"));
        let (flow, _) = decode(&p6).unwrap();
        assert_eq!(
            (flow.proto, flow.src, flow.dst),
            (Proto::Udp, sa("[fd00::1]:53"), sa("[fd00::2]:5353"))
        );
        for packet in [&p, &p6] {
            for cut in 0..packet.len() {
                let _ = decode(&packet[..cut]);
            }
        }
        assert!(
            decode(&p[..p.len() - 1]).is_none(),
            "total length past the end"
        );
        let mut x = 0x2545f4914f6cdd1du64;
        for _ in 0..20000 {
            let junk: Vec<u8> = (0..(x % 80) as usize)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly plausible first bytes, so the parsers get exercised.
                    if i == 0 {
                        [0x45, 0x60, 0x46, 0x4f][(x % 4) as usize]
                    } else {
                        x as u8
                    }
                })
                .collect();
            let _ = decode(&junk);
            let f = Flow {
                proto: Proto::Tcp,
                src: sa("1.1.1.1:1"),
                dst: sa("2.2.2.2:2"),
            };
            let _ = segment(&junk, &f, Direction::In);
            x = x.wrapping_add(1);
        }
    }

    #[test]
    fn the_watch_decides_by_tuple_listener_and_direction() {
        let mut w = Watch::default();
        let syn = Flow {
            proto: Proto::Tcp,
            src: sa("127.0.0.1:40000"),
            dst: sa("127.0.0.1:5555"),
        };
        assert_eq!(w.judge(&syn, None), Verdict::NotOurs);
        w.dialing.push((Proto::Tcp, sa("127.0.0.1:5555")));
        assert_eq!(w.judge(&syn, None), Verdict::Undecided);
        w.dialing.clear();
        w.connections
            .push((Proto::Tcp, sa("127.0.0.1:40000"), sa("127.0.0.1:5555")));
        assert_eq!(w.judge(&syn, None), Verdict::Ours { outgoing: true });
        let back = Flow {
            src: syn.dst,
            dst: syn.src,
            ..syn
        };
        assert_eq!(w.judge(&back, None), Verdict::Ours { outgoing: false });
        let udp = Flow {
            proto: Proto::Udp,
            ..syn
        };
        assert_eq!(w.judge(&udp, None), Verdict::NotOurs);
        let another = Flow {
            src: sa("127.0.0.1:40001"),
            ..syn
        };
        assert_eq!(w.judge(&another, None), Verdict::NotOurs);

        let mut l = Watch::default();
        l.listening.push((Proto::Tcp, sa("0.0.0.0:80")));
        l.listening.push((Proto::Tcp, sa("[::1]:80")));
        let client = Flow {
            proto: Proto::Tcp,
            src: sa("192.0.2.7:5000"),
            dst: sa("192.0.2.1:80"),
        };
        assert_eq!(
            l.judge(&client, Some(false)),
            Verdict::Ours { outgoing: false }
        );
        // Leaving the host to someone's port 80: another program's connection.
        assert_eq!(l.judge(&client, Some(true)), Verdict::NotOurs);
        let reply = Flow {
            src: client.dst,
            dst: client.src,
            ..client
        };
        assert_eq!(
            l.judge(&reply, Some(true)),
            Verdict::Ours { outgoing: true }
        );
        let v6 = Flow {
            proto: Proto::Tcp,
            src: sa("[::1]:6000"),
            dst: sa("[::1]:80"),
        };
        assert_eq!(l.judge(&v6, None), Verdict::Ours { outgoing: false });
        let v6_elsewhere = Flow {
            dst: sa("[fd00::1]:80"),
            ..v6
        };
        assert_eq!(l.judge(&v6_elsewhere, Some(false)), Verdict::NotOurs);
        assert_eq!(l.ports(), vec![80]);
    }

    #[test]
    fn segments_read_like_the_user_stacks() {
        // MSS 1460, NOP, NOP, SACK-permitted... as Linux lays a SYN's options out.
        let options = [
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let p = v4(
            6,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &tcp(1, 2, 0x02, &options, b""),
        );
        let (flow, _) = decode(&p).unwrap();
        let s = segment(&p, &flow, Direction::Out).unwrap();
        assert_eq!(
            (s.flags, s.seq, s.ack, s.window, s.len),
            (2, 1000, 2000, 512, 0)
        );
        assert_eq!(s.options, "mss 1460,sackOK,TS val 7 ecr 0,wscale 7");
        let d = v4(
            6,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            &tcp(1, 2, 0x18, &[], b"Hi\n\x00!"),
        );
        let s = segment(&d, &decode(&d).unwrap().0, Direction::In).unwrap();
        assert_eq!((s.len, s.preview.as_str()), (5, "Hi..!"));
        let u = v4(17, [10, 0, 0, 1], [10, 0, 0, 2], &udp(1, 2, b"x"));
        assert!(segment(&u, &decode(&u).unwrap().0, Direction::In).is_none());
    }

    fn seg_event(src: &str, dst: &str, flags: u8, seq: u32) -> Stamped {
        Stamped::new(
            0,
            Event::Segment(Segment {
                dir: Direction::Out,
                src: sa(src),
                dst: sa(dst),
                flags,
                seq,
                ack: 0,
                window: 1,
                len: 0,
                options: String::new(),
                preview: String::new(),
            }),
        )
    }

    #[test]
    fn the_diagram_keeps_the_first_connections_head_and_tail() {
        let (c, s, other) = ("10.0.0.1:4000", "10.0.0.2:80", "10.0.0.3:4001");
        let mut k = DiagramKeeper::default();
        assert!(k.diagram().contains("no TCP connection"));
        k.keep(seg_event(s, c, 0x10, 1)); // before any SYN: not drawable
        k.keep(seg_event(c, s, 0x02, 0));
        k.keep(seg_event(other, s, 0x02, 0)); // a second connection
        let n = DIAGRAM_HEAD + DIAGRAM_TAIL + 500;
        for i in 0..n {
            k.keep(seg_event(c, s, 0x10, i as u32));
        }
        assert_eq!(k.head.len(), DIAGRAM_HEAD);
        assert_eq!(k.tail.len(), DIAGRAM_TAIL);
        assert_eq!(k.unseen, 501);
        let d = k.diagram();
        assert!(d.contains("participant C as Client[10.0.0.1:4000]"), "{d}");
        assert!(!d.contains("10.0.0.3"), "{d}");
        // All n + 1 segments: 40 drawn, the rest in the note.
        assert!(
            d.contains(&format!("... {} more segments not drawn", n + 1 - 40)),
            "{d}"
        );
    }

    #[test]
    fn a_connection_ends_with_both_fins_acknowledged_or_a_reset() {
        let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let seg = |from_client: bool, flags: u8, seq: u32, ack: u32, payload: &[u8]| {
            let (src, dst, sp, dp) = if from_client {
                (c, s, 4000, 80)
            } else {
                (s, c, 80, 4000)
            };
            let mut t = tcp(sp, dp, flags, &[], payload);
            t[4..8].copy_from_slice(&seq.to_be_bytes());
            t[8..12].copy_from_slice(&ack.to_be_bytes());
            v4(6, src, dst, &t)
        };
        let mut e = Endings::default();
        let see = |e: &mut Endings, p: Vec<u8>| {
            let flow = decode(&p).unwrap().0;
            e.see(&p, &flow);
        };
        assert!(!e.any_open());
        see(&mut e, seg(true, 0x02, 100, 0, b""));
        assert!(e.any_open());
        // The client's data and FIN (seq 101..106, FIN 106), acknowledged.
        see(&mut e, seg(true, 0x19, 101, 500, b"hello"));
        see(&mut e, seg(false, 0x10, 500, 106, b""));
        assert!(e.any_open(), "the server's FIN is still to come");
        // The server's FIN (seq 500, wrapping nothing) before its ACK: open.
        see(&mut e, seg(false, 0x11, 500, 107, b""));
        assert!(e.any_open());
        see(&mut e, seg(true, 0x10, 107, 501, b""));
        assert!(!e.any_open());
        // Another connection, reset: ended too; sequence numbers that wrap.
        let mut r = Endings::default();
        see(&mut r, seg(true, 0x11, u32::MAX, 7, b""));
        see(&mut r, seg(false, 0x10, 7, 0, b""));
        assert!(r.any_open());
        see(&mut r, seg(false, 0x14, 7, 0, b""));
        assert!(!r.any_open());
    }

    #[test]
    fn interfaces_follow_the_addresses() {
        assert_eq!(
            interfaces_to("127.0.0.1".parse().unwrap()),
            Interfaces::Loopback
        );
        assert_eq!(interfaces_to("::1".parse().unwrap()), Interfaces::Loopback);
        // TEST-NET-1: never one of the host's addresses.
        assert_eq!(interfaces_to("192.0.2.1".parse().unwrap()), Interfaces::All);
        assert_eq!(interfaces_at("0.0.0.0".parse().unwrap()), Interfaces::All);
        assert_eq!(interfaces_at("::1".parse().unwrap()), Interfaces::Loopback);
    }
}
