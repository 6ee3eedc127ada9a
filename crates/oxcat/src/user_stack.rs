//! `--stack user`: every CLI mode on oxcat's own TCP/IP stack, over a TUN
//! device whose other side is the kernel.
//!
//! The stack runs on its own thread (`oxcat_stack::Runtime`). The CLI's
//! modes are written against file descriptors (poll, splice, a program's
//! relay), so each connection of our stack is bridged to a
//! Unix socket that the CLI uses exactly as it uses a kernel socket:
//!
//! - a connection: a Unix stream pair; two pump threads move bytes between
//!   our stack and the bridge end, and carry EOF across as a half-close
//!   (FIN) both ways;
//! - a listener: a Unix listening socket in the abstract namespace; each
//!   connection our stack accepts connects to it from a socket whose own
//!   abstract name carries the remote address (`oxcat.PID.N|198.18.0.1:40000`),
//!   so `accept` and `recvfrom` on the CLI side learn who the peer is;
//! - UDP: Unix datagram sockets named the same way, one per remote sender.
//!
//! [`real_addr`] turns such a name back into the IP address and port.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxcat_stack::{
    Device, PcapTap, Runtime, Stack, StackConfig, StackId, TcpListener, TcpStream, Tun, UdpSocket,
};
use oxcat_trace::mermaid::{connection_diagram, DiagramOptions};
use oxcat_trace::Stamped;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::cli::UserStackConfig;
use crate::error::Failure;
use crate::sys::outcome;

/// How long a closed connection may take to deliver its last bytes and FIN
/// before oxcat exits anyway (the kernel lingers in the background; a
/// process that is its own stack has to stay for it).
const LINGER: Duration = Duration::from_secs(30);

/// How long `--trace` holds events back to write them in time order: the
/// stack's come in batches every 2 ms, later when the machine is loaded.
const REORDER_WINDOW: Duration = Duration::from_millis(250);

/// A UDP socket of ours that the CLI listens on.
struct UdpListener {
    udp: Arc<UdpSocket>,
    /// The CLI socket new senders' datagrams go to.
    newest: Mutex<SockAddr>,
}

/// A sender's thread (see [`UserStack::sender_socket`]), kept for `finish`.
/// Its socket is not kept alive by this: a sender whose port closed has
/// its socket closed, so that the CLI's next send there is refused.
struct SenderThread {
    sock: std::sync::Weak<Socket>,
    cut: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The Unix socket that stands for one remote sender on a UDP listener.
struct Sender {
    sock: Arc<Socket>,
    /// Set before `sock` is shut down: its thread stops.
    cut: Arc<AtomicBool>,
    /// The CLI socket its datagrams go to.
    to: SockAddr,
}

pub struct UserStack {
    rt: Runtime,
    id: StackId,
    start: Instant,
    /// Threads that carry the CLI's bytes into our stack: joined before exit.
    outbound: Mutex<Vec<JoinHandle<()>>>,
    /// Threads that carry a connection's bytes from our stack to the CLI.
    inbound: Mutex<Vec<JoinHandle<()>>>,
    /// The TUN device went away and that has been said (the run then ends
    /// with exit status 1).
    gone_reported: AtomicBool,
    /// The CLI is on its way out (`finish`): the device watch leaves the
    /// exit to it. Set under `EXITING`.
    finishing: AtomicBool,
    /// The threads that carry what the CLI sends a UDP listener's senders,
    /// with their socket and stop flag: drained and joined before exit, so
    /// that a datagram written just before the run ends (a program's last
    /// answer under `-u -l -e`) still goes out.
    udp_senders: Mutex<Vec<SenderThread>>,
    /// Listeners the CLI closed (by their Unix name): their accept thread stops.
    closed_listeners: Mutex<HashMap<Vec<u8>, Arc<AtomicBool>>>,
    /// UDP sockets of ours the CLI listens on, by the Unix name of the
    /// newest CLI socket on each.
    udp_listeners: Mutex<HashMap<Vec<u8>, Arc<UdpListener>>>,
    trace_pump: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    /// Events kept for --mermaid.
    kept: Arc<Mutex<Vec<Stamped>>>,
    mermaid: Option<std::path::PathBuf>,
    names: AtomicU64,
}

static USER: OnceLock<UserStack> = OnceLock::new();

/// The user stack, when `--stack user` started one.
pub fn get() -> Option<&'static UserStack> {
    USER.get()
}

fn ip_cmd(args: &[String]) -> Result<(), Failure> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Failure::io("--stack user: running `ip` (iproute2)", &e))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(Failure::usage(format!(
        "--stack user: `ip {}` failed: {}",
        args.join(" "),
        err.lines().next().unwrap_or("").trim()
    )))
}

/// Whether interface `name` exists in this network namespace (an ioctl on
/// a socket, as `if_nametoindex` does: /sys/class/net can show another
/// namespace's interfaces, e.g. under `unshare --net` without a new sysfs).
fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated name; the call only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

fn open_tun(cfg: &UserStackConfig) -> Result<(Tun, bool), Failure> {
    let existed = interface_exists(&cfg.tun);
    let opened = if std::env::var_os("OXCAT_TUN_NO_OFFLOAD").is_some() {
        Tun::open(&cfg.tun)
    } else {
        Tun::open_offloaded(&cfg.tun)
    };
    let tun = opened.map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EACCES) => "no permission to open /dev/net/tun (run as root, or give this user read and write access to it)".to_string(),
            Some(libc::EPERM) if existed => format!(
                "not allowed to attach to it (it belongs to another user or group: `ip tuntap add dev {} mode tun user USER` sets its owner)",
                cfg.tun
            ),
            Some(libc::EPERM) => format!(
                "needs CAP_NET_ADMIN to create it (run as root, or create it first with `ip tuntap add dev {} mode tun user $USER` and configure it)",
                cfg.tun
            ),
            Some(libc::ENOENT) | Some(libc::ENODEV) => "this system has no /dev/net/tun".to_string(),
            Some(libc::EBUSY) => "another process has it open".to_string(),
            // TUNSETIFF on a name that exists as another kind of interface.
            Some(libc::EINVAL) if existed => {
                "an interface of that name exists and is not a TUN device".to_string()
            }
            _ => crate::error::describe(&e),
        };
        Failure::usage(format!("--stack user: cannot open TUN device {}: {why}", cfg.tun))
    })?;
    // (An existing interface's MTU: `Tun::open` asks the interface.)
    if !existed {
        // Ours: the kernel's side gets its addresses; the interface goes when we exit.
        for (ip, len) in &cfg.kernel_addrs {
            let mut a = vec!["addr".to_string(), "add".to_string(), format!("{ip}/{len}")];
            a.extend(["dev".to_string(), cfg.tun.clone()]);
            if ip.is_ipv6() {
                a.insert(0, "-6".to_string());
                a.push("nodad".to_string());
            }
            ip_cmd(&a)?;
        }
        ip_cmd(&["link".into(), "set".into(), cfg.tun.clone(), "up".into()])?;
        let v6: Vec<Ipv6Addr> = cfg
            .kernel_addrs
            .iter()
            .filter_map(|(ip, _)| match ip {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect();
        wait_ipv6_usable(&cfg.tun, &v6);
    }
    Ok((tun, !existed))
}

/// Waits (at most 2 s) until the kernel's IPv6 addresses on `dev` are no
/// longer tentative. Even with `nodad`, the kernel finishes bringing an
/// address up in a work item after `ip link set up` returns; a packet to
/// it before then is dropped (our first datagram was, now and then).
fn wait_ipv6_usable(dev: &str, addrs: &[Ipv6Addr]) {
    const IFA_F_TENTATIVE: u32 = 0x40;
    if addrs.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
        let usable = |a: &Ipv6Addr| {
            let hex: String = a.octets().iter().map(|b| format!("{b:02x}")).collect();
            table.lines().any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() >= 6
                    && f[0] == hex
                    && f[5] == dev
                    && u32::from_str_radix(f[4], 16).is_ok_and(|flags| flags & IFA_F_TENTATIVE == 0)
            })
        };
        if addrs.iter().all(usable) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts our stack on the TUN device. `trace`: send its events to the
/// `--trace` timeline.
pub fn start(cfg: &UserStackConfig, trace: bool) -> Result<(), Failure> {
    let (tun, created) = open_tun(cfg)?;
    let start = Instant::now();
    let seed = start.elapsed().as_nanos() as u64
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut stack = Stack::new(
        StackConfig {
            ipv4: cfg.ipv4,
            ipv6: cfg.ipv6,
            seed,
            mtu: tun.mtu(),
            ..StackConfig::default()
        },
        start,
    );
    let tracing = trace || cfg.mermaid.is_some();
    stack.set_tracing(tracing);
    let device: Box<dyn Device + Send> = match &cfg.pcap {
        Some(p) => {
            let tap = PcapTap::create(tun, p, start).map_err(|e| {
                Failure::io(format!("Unable to open pcap file \"{}\"", p.display()), &e)
            })?;
            let shown = p.display().to_string();
            Box::new(tap.on_stop(move |e| {
                crate::msg::say(&format!(
                    "--pcap {shown}: {}; recording stopped, the connection goes on",
                    crate::error::describe(e)
                ))
            }))
        }
        None => Box::new(tun),
    };
    let rt = Runtime::start(move || vec![(stack, device as Box<dyn Device>)])
        .map_err(|e| Failure::io("--stack user: starting the stack thread", &e))?;
    let us = UserStack {
        rt,
        id: StackId(0),
        start,
        outbound: Mutex::new(Vec::new()),
        inbound: Mutex::new(Vec::new()),
        gone_reported: AtomicBool::new(false),
        finishing: AtomicBool::new(false),
        udp_senders: Mutex::new(Vec::new()),
        closed_listeners: Mutex::new(HashMap::new()),
        udp_listeners: Mutex::new(HashMap::new()),
        trace_pump: Mutex::new(None),
        stop: Arc::new(AtomicBool::new(false)),
        kept: Arc::new(Mutex::new(Vec::new())),
        mermaid: cfg.mermaid.clone(),
        names: AtomicU64::new(0),
    };
    if USER.set(us).is_err() {
        return Err(Failure::network("--stack user: started twice"));
    }
    let us = get().ok_or_else(|| Failure::network("--stack user: not started"))?;
    if created {
        crate::verbose!(
            1,
            "Created TUN device {}; our stack is {}.",
            cfg.tun,
            show_ips(cfg)
        );
    }
    watch_device(&cfg.tun)?;
    if tracing {
        // The stack's events reach the timeline in batches (every 2 ms,
        // below): held back a while, they and the socket calls come out in
        // the order they happened.
        crate::sys::reorder_trace(REORDER_WINDOW);
        let stop = us.stop.clone();
        let keep = cfg.mermaid.is_some();
        let pump = std::thread::Builder::new()
            .name("oxcat-trace".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(2));
                    us.forward_trace(keep);
                    crate::sys::release_trace();
                }
                us.forward_trace(keep);
            })
            .map_err(|e| Failure::io("--stack user: trace thread", &e))?;
        *lock(&us.trace_pump) = Some(pump);
        finish_on_signal().map_err(|e| Failure::io("--stack user: signal handler", &e))?;
    }
    Ok(())
}

/// How long, once the TUN is gone, the CLI gets to write out what our
/// stack had received before the process ends (see `watch_device`).
const GONE_GRACE: Duration = Duration::from_secs(1);

/// If the TUN device goes away (its interface deleted, its namespace gone),
/// nothing can be sent or received any more: say so in one line and end
/// the run with exit status 1, instead of waiting for ever. The bytes our
/// stack had received are handed to the CLI first (the connections' pumps
/// read them, then end them); a run that does not then end by itself (a
/// listener, `-k`) ends after `GONE_GRACE`.
fn watch_device(name: &str) -> Result<(), Failure> {
    let name = name.to_string();
    std::thread::Builder::new()
        .name("oxcat-device".into())
        .spawn(move || {
            let Some(us) = get() else { return };
            let Some(e) = us.rt.wait_failure(us.id) else {
                return;
            };
            // Not eprintln: a closed stderr must not turn this into a panic.
            let _ = writeln!(
                io::stderr(),
                "{}: --stack user: the TUN device {name} is gone ({}).",
                crate::msg::prefix(),
                crate::error::describe(&e)
            );
            us.gone_reported.store(true, Ordering::Release);
            // The pumps hand the CLI what had arrived and wait until it
            // has read it (as long as it takes: a slow reader of our
            // stdout loses nothing).
            let pumps = std::mem::take(&mut *lock(&us.inbound));
            let relayed = !pumps.is_empty();
            for t in pumps {
                let _ = t.join();
            }
            // The CLI ends a connection it saw end by itself (and then
            // exits with status 1, `device_gone`); a listener or `-k` would
            // wait on: give it the time to write out what it read.
            if relayed {
                let until = Instant::now() + GONE_GRACE;
                while !us.finishing.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // One exit: the CLI's own, if it got there first, else this one.
            let _exiting = lock(&EXITING);
            if us.finishing.load(Ordering::Relaxed) {
                return;
            }
            write_records(us);
            std::process::exit(1);
        })
        .map(|_| ())
        .map_err(|e| Failure::io("--stack user: device watch thread", &e))
}

/// Taken by whoever ends the process: the device watch or the CLI.
static EXITING: Mutex<()> = Mutex::new(());

/// Whether our stack's TUN device went away (for the pumps).
fn us_device_gone() -> bool {
    get().is_some_and(|us| us.rt.failure(us.id).is_some())
}

/// Waits until the CLI has read everything sent on `sock` (our end of a
/// bridge: its bytes count against it until the other end takes them),
/// or that end is closed.
fn wait_consumed(sock: &Socket) {
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) stores an int through the pointer.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        if r != 0 || queued <= 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the run lost its TUN device; the one line saying so is out
/// when this returns true.
pub fn device_gone() -> bool {
    let Some(us) = get() else { return false };
    if us.rt.failure(us.id).is_none() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !us.gone_reported.load(Ordering::Acquire) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn show_ips(cfg: &UserStackConfig) -> String {
    let mut v = Vec::new();
    if let Some(a) = cfg.ipv4 {
        v.push(a.to_string());
    }
    if let Some(a) = cfg.ipv6 {
        v.push(a.to_string());
    }
    v.join(" and ")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for the bytes the CLI handed our stack to be delivered (bounded),
/// then writes the Mermaid diagram. Called once, before exit.
pub fn finish() {
    let Some(us) = get() else { return };
    {
        let _exiting = lock(&EXITING);
        us.finishing.store(true, Ordering::Relaxed);
    }
    let threads = std::mem::take(&mut *lock(&us.outbound));
    for t in threads {
        let _ = t.join();
    }
    let senders = std::mem::take(&mut *lock(&us.udp_senders));
    let udp = !senders.is_empty();
    for s in senders {
        // Shut down for reading, its thread still takes what is queued, then
        // reads 0 and stops.
        s.cut.store(true, Ordering::Relaxed);
        if let Some(sock) = s.sock.upgrade() {
            let _ = sock.shutdown(std::net::Shutdown::Read);
        }
        let _ = s.thread.join();
    }
    if udp {
        us.settle();
    }
    write_records(us);
}

/// On SIGINT/SIGTERM (how a `-k` server usually ends): the trace and the
/// diagram are completed before the process goes, as ncat's would be.
fn finish_on_signal() -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("oxcat-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                if let Some(us) = get() {
                    write_records(us);
                }
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

fn write_records(us: &UserStack) {
    us.stop.store(true, Ordering::Relaxed);
    if let Some(t) = lock(&us.trace_pump).take() {
        let _ = t.join();
    }
    crate::sys::end_reorder_trace();
    if let Some(path) = &us.mermaid {
        let mut events = lock(&us.kept).clone();
        events.sort_by_key(|e| e.micros);
        let diagram =
            connection_diagram(&events, &DiagramOptions::default()).unwrap_or_else(|| {
                "sequenceDiagram\n    Note over oxcat: no TCP connection in this run\n".into()
            });
        if let Err(e) = std::fs::write(path, diagram) {
            crate::msg::say(&format!(
                "Unable to write Mermaid file \"{}\": {}",
                path.display(),
                crate::error::describe(&e)
            ));
        }
    }
}

impl UserStack {
    /// A thread that carries bytes from our stack to the CLI: if the TUN
    /// goes away, the run waits for it (see `watch_device`).
    fn keep_inbound(&self, thread: JoinHandle<()>) {
        let mut threads = lock(&self.inbound);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }

    /// Datagrams handed to our stack wait in its queue for the stack
    /// thread's next poll: before exit, give it the moment it needs (until
    /// nothing has gone out for 20 ms, at most a second).
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut last = self.rt.with_stack(self.id, |s| s.stats().packets_out);
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.rt.with_stack(self.id, |s| s.stats().packets_out);
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
    }

    fn forward_trace(&self, keep: bool) {
        let events = self.rt.with_stack(self.id, |s| s.take_trace());
        for (at, e) in events {
            if keep {
                lock(&self.kept).push(Stamped {
                    micros: at.saturating_duration_since(self.start).as_micros() as u64,
                    host: None,
                    event: e.clone(),
                });
            }
            crate::sys::record_at(at, e);
        }
    }

    /// A fresh abstract Unix name carrying `addr` (and the local end of a
    /// connection, when there is one): `\0oxcat.PID.N|addr|local`.
    fn name_for(&self, addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<SockAddr> {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        let mut name = format!("\0oxcat.{}.{n}|{addr}", std::process::id());
        if let Some(l) = local {
            name.push_str(&format!("|{l}"));
        }
        SockAddr::unix(name)
    }

    /// Connects to `addr` over our stack; the returned Unix socket (non-blocking)
    /// stands for the connection, and the local address is ours on the TUN.
    pub fn connect_tcp(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<(Socket, SocketAddr)> {
        refuse_loopback(addr)?;
        stack_call(|| format!("connect({addr})"), || None);
        let r = TcpStream::connect_timeout(&self.rt, self.id, addr, timeout);
        stack_call(
            || format!("connect({addr})"),
            || {
                outcome(&r, |s| {
                    let local = s
                        .local_addr()
                        .map_or_else(|_| "?".into(), |a| a.to_string());
                    format!("#{} from {local}", s.handle().index())
                })
            },
        );
        let stream = r?;
        let local = stream.local_addr()?;
        let (app, bridge) = Socket::pair(Domain::UNIX, Type::STREAM, None)?;
        app.set_nonblocking(true)?;
        self.bridge_stream(stream, bridge)?;
        Ok((app, local))
    }

    /// Two pumps between a connection of ours and its Unix bridge. The
    /// calls they make on our stack (recv, send, shutdown; close when both
    /// are done) are the connection's socket calls in the trace.
    fn bridge_stream(&self, stream: TcpStream, bridge: Socket) -> io::Result<()> {
        let h = stream.handle().index();
        let stream = Arc::new(stream);
        let bridge = Arc::new(bridge);
        let (s, b) = (stream.clone(), bridge.clone());
        // The pump that ends last records the close (the stream goes with it).
        let pumps = Arc::new(std::sync::atomic::AtomicUsize::new(2));
        let last_out = pumps.clone();
        let done = move |pumps: &std::sync::atomic::AtomicUsize| {
            if pumps.fetch_sub(1, Ordering::AcqRel) == 1 {
                stack_call(|| format!("close(#{h})"), || Some("0".into()));
            }
        };
        let inbound = std::thread::Builder::new()
            .name("oxcat-in".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let r = (&*s).read(&mut buf);
                    stack_call(
                        || format!("recv(#{h}, {})", buf.len()),
                        || outcome(&r, |n| n.to_string()),
                    );
                    match r {
                        Ok(0) => {
                            // The peer's FIN: EOF for the CLI, which may still send.
                            let _ = b.shutdown(std::net::Shutdown::Write);
                            break;
                        }
                        Ok(n) => {
                            if (&*b).write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Err(_) if us_device_gone() => {
                            // The TUN went away: what arrived is in the
                            // bridge; EOF after it, and stay until the CLI
                            // has read it (the run ends after that).
                            let _ = b.shutdown(std::net::Shutdown::Write);
                            wait_consumed(&b);
                            let _ = b.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                        Err(_) => {
                            // Reset or timed out: the CLI sees the connection end.
                            let _ = b.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                }
                done(&pumps);
            })?;
        self.keep_inbound(inbound);
        let out = std::thread::Builder::new()
            .name("oxcat-out".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match (&*bridge).read(&mut buf) {
                        Ok(0) | Err(_) => {
                            // The CLI is done sending: FIN after the buffered bytes,
                            // and stay until they are delivered.
                            let start = crate::sys::call_start();
                            let r = stream.shutdown_write();
                            crate::sys::record_as_from(
                                start,
                                "stack",
                                || format!("shutdown(#{h}, SHUT_WR)"),
                                || outcome(&r, |_| "0".into()),
                            );
                            let _ = stream.wait_sent(LINGER);
                            break;
                        }
                        Ok(n) => {
                            let start = crate::sys::call_start();
                            let r = (&*stream).write_all(&buf[..n]);
                            crate::sys::record_as_from(
                                start,
                                "stack",
                                || format!("send(#{h}, {n})"),
                                || outcome(&r, |_| n.to_string()),
                            );
                            if r.is_err() {
                                break;
                            }
                        }
                    }
                }
                drop(stream);
                done(&last_out);
            })?;
        let mut threads = lock(&self.outbound);
        threads.retain(|t| !t.is_finished());
        threads.push(out);
        Ok(())
    }

    /// A listening socket on our stack at `addr`; the returned Unix listener
    /// (non-blocking) hands the CLI each accepted connection.
    pub fn listen_tcp(&self, addr: SocketAddr, backlog: usize) -> io::Result<Socket> {
        let r = TcpListener::bind(&self.rt, self.id, addr, backlog);
        match &r {
            Ok(l) => {
                let n = l.handle().index();
                let family = if addr.is_ipv4() {
                    "AF_INET"
                } else {
                    "AF_INET6"
                };
                stack_call(
                    || format!("socket({family}, SOCK_STREAM)"),
                    || Some(format!("#{n}")),
                );
                stack_call(|| format!("bind(#{n}, {addr})"), || Some("0".into()));
                stack_call(|| format!("listen(#{n}, {backlog})"), || Some("0".into()));
            }
            Err(_) => stack_call(
                || format!("bind+listen({addr}, {backlog})"),
                || outcome(&r, |_| "0".into()),
            ),
        }
        let listener = r?;
        let ln = listener.handle().index();
        let name = self.name_for(addr, None)?;
        let unix = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        unix.bind(&name)?;
        unix.listen(backlog.min(i32::MAX as usize) as i32)?;
        unix.set_nonblocking(true)?;
        let closed = Arc::new(AtomicBool::new(false));
        lock(&self.closed_listeners).insert(name_bytes(&name), closed.clone());
        std::thread::Builder::new()
            .name("oxcat-accept".into())
            .spawn(move || {
                let Some(us) = get() else { return };
                while !closed.load(Ordering::Relaxed) {
                    let (stream, peer) = match listener.accept_timeout(Duration::from_millis(200)) {
                        Ok(c) => c,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(_) => return,
                    };
                    stack_call(
                        || format!("accept(#{ln})"),
                        || Some(format!("#{} from {peer}", stream.handle().index())),
                    );
                    let local = stream.local_addr().ok();
                    let handed = us.name_for(peer, local).and_then(|own| {
                        let c = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                        c.bind(&own)?;
                        c.connect(&name)?;
                        Ok(c)
                    });
                    match handed {
                        Ok(c) => {
                            let _ = us.bridge_stream(stream, c);
                        }
                        // The CLI stopped listening: no more connections.
                        Err(_) => return,
                    }
                }
            })?;
        Ok(unix)
    }

    /// The CLI closed a listener it got from [`listen_tcp`]: stop accepting.
    pub fn forget_listener(&self, sock: &Socket) {
        if let Ok(a) = sock.local_addr() {
            if let Some(flag) = lock(&self.closed_listeners).get(&name_bytes(&a)) {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    /// A UDP "connection" to `addr`: a Unix seqpacket pair (message
    /// boundaries and EOF both kept), pumped to and from a UDP socket of ours.
    pub fn connect_udp(&self, addr: SocketAddr) -> io::Result<(Socket, SocketAddr)> {
        refuse_loopback(addr)?;
        let any = match addr {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let udp = Arc::new(UdpSocket::bind(&self.rt, self.id, any)?);
        udp.connect(addr)?;
        let local = udp.local_addr()?;
        let (app, bridge) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)?;
        app.set_nonblocking(true)?;
        let bridge = Arc::new(bridge);
        let (u, b) = (udp.clone(), bridge.clone());
        let inbound = std::thread::Builder::new()
            .name("oxcat-udp-in".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = u.recv(&mut buf) {
                    if b.send(&buf[..n]).is_err() {
                        return;
                    }
                }
                if us_device_gone() {
                    wait_consumed(&b);
                }
            })?;
        self.keep_inbound(inbound);
        let out = std::thread::Builder::new()
            .name("oxcat-udp-out".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match (&*bridge).read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let _ = udp.send(&buf[..n]);
                        }
                    }
                }
            })?;
        lock(&self.outbound).push(out);
        Ok((app, local))
    }

    /// A UDP socket of ours bound at `addr`; the returned Unix datagram socket
    /// receives each sender's datagrams from a socket named for that sender,
    /// so `recvfrom` tells the CLI who sent, and what the CLI sends back to
    /// that name goes to that sender.
    ///
    /// A sender's datagrams keep going to the CLI socket its first one went
    /// to, as long as that socket takes them: `-u -l -k -e` connects that
    /// socket to the sender, hands it to a program and asks
    /// [`UserStack::rebind_udp`] for a new one that new senders reach, as
    /// it does on the kernel's sockets (a connected UDP socket and an
    /// unconnected one on the same address).
    pub fn bind_udp(&self, addr: SocketAddr) -> io::Result<Socket> {
        let udp = Arc::new(UdpSocket::bind(&self.rt, self.id, addr)?);
        let (unix, name) = self.udp_cli_socket(udp.local_addr()?)?;
        let listener = Arc::new(UdpListener {
            udp: udp.clone(),
            newest: Mutex::new(name.clone()),
        });
        lock(&self.udp_listeners).insert(name_bytes(&name), listener.clone());
        let inbound = std::thread::Builder::new()
            .name("oxcat-udp-listen".into())
            .spawn(move || {
                let Some(us) = get() else { return };
                let mut senders: HashMap<SocketAddr, Sender> = HashMap::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let (n, from) = match udp.recv_from(&mut buf) {
                        Ok(got) => got,
                        // The peer the CLI connected to (connect_udp_listener)
                        // answered with ICMP port unreachable: its socket goes, so
                        // that the CLI's next send there is refused, as on the
                        // kernel's sockets.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            if let Some(gone) =
                                udp.peer_addr().ok().and_then(|p| senders.remove(&p))
                            {
                                gone.cut.store(true, Ordering::Relaxed);
                                let _ = gone.sock.shutdown(std::net::Shutdown::Both);
                            }
                            continue;
                        }
                        Err(_) => {
                            if us_device_gone() {
                                // Until the CLI has read what each sender passed on.
                                for s in senders.values() {
                                    wait_consumed(&s.sock);
                                }
                            }
                            return;
                        }
                    };
                    let Sender { sock: peer, to, .. } = match senders.entry(from) {
                        Entry::Occupied(known) => known.into_mut(),
                        Entry::Vacant(new) => match us.sender_socket(&udp, from) {
                            Ok((sock, cut)) => new.insert(Sender {
                                sock,
                                cut,
                                to: lock(&listener.newest).clone(),
                            }),
                            Err(_) => continue,
                        },
                    };
                    match peer.send_to(&buf[..n], to) {
                        // The CLI socket it went to is gone (its program ended) or
                        // belongs to another sender now: it is a new sender again.
                        Err(e)
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::ECONNREFUSED | libc::EPERM | libc::ENOENT)
                            ) =>
                        {
                            let current = lock(&listener.newest).clone();
                            if name_bytes(&current) != name_bytes(to) {
                                *to = current;
                                let _ = peer.send_to(&buf[..n], to);
                            }
                        }
                        // A CLI that stopped reading drops datagrams, as a full socket would.
                        _ => {}
                    }
                }
            })?;
        self.keep_inbound(inbound);
        Ok(unix)
    }

    /// A new CLI socket on the UDP socket of ours that `old` (from
    /// [`UserStack::bind_udp`]) stands for: new senders' datagrams go to it
    /// from now on; senders `old` has seen keep going to `old`.
    pub fn rebind_udp(&self, old: &Socket) -> io::Result<Socket> {
        let old_name = old.local_addr()?;
        let mut all = lock(&self.udp_listeners);
        // Only the newest CLI socket is ever rebound.
        let listener = all
            .remove(&name_bytes(&old_name))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let local = real_addr(&old_name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let (unix, name) = self.udp_cli_socket(local)?;
        all.insert(name_bytes(&name), listener.clone());
        *lock(&listener.newest) = name;
        Ok(unix)
    }

    /// The CLI connected `cli` (its socket from [`UserStack::bind_udp`]) to
    /// `peer`: so is our UDP socket, as the kernel's is, so that the peer's
    /// ICMP port unreachable reaches it (RFC 1122 §4.1.3.3: UDP passes ICMP
    /// errors up) and other senders' datagrams are dropped.
    pub fn connect_udp_listener(&self, cli: &Socket, peer: SocketAddr) -> io::Result<()> {
        let name = cli.local_addr()?;
        let listener = lock(&self.udp_listeners)
            .get(&name_bytes(&name))
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        listener.udp.connect(peer)
    }

    /// A CLI socket (and its name) on the UDP socket of ours bound at `local`.
    fn udp_cli_socket(&self, local: SocketAddr) -> io::Result<(Socket, SockAddr)> {
        let name = self.name_for(local, None)?;
        let unix = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
        unix.bind(&name)?;
        unix.set_nonblocking(true)?;
        Ok((unix, name))
    }

    /// The Unix socket that stands for remote sender `from`, and the thread
    /// that carries what the CLI sends it back to `from` over UDP.
    fn sender_socket(
        &self,
        udp: &Arc<UdpSocket>,
        from: SocketAddr,
    ) -> io::Result<(Arc<Socket>, Arc<AtomicBool>)> {
        let s = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
        s.bind(&self.name_for(from, udp.local_addr().ok())?)?;
        let s = Arc::new(s);
        let cut = Arc::new(AtomicBool::new(false));
        let (back, udp, stop) = (s.clone(), udp.clone(), cut.clone());
        let thread = std::thread::Builder::new()
            .name("oxcat-udp-peer".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match (&*back).read(&mut buf) {
                        // A shut-down socket reads 0 (else it is an empty datagram).
                        Ok(0) if stop.load(Ordering::Relaxed) => return,
                        Ok(n) => {
                            let _ = udp.send_to(&buf[..n], from);
                        }
                        Err(_) => return,
                    }
                }
            })?;
        let mut kept = lock(&self.udp_senders);
        kept.retain(|t| !t.thread.is_finished());
        kept.push(SenderThread {
            sock: Arc::downgrade(&s),
            cut: cut.clone(),
            thread,
        });
        Ok((s, cut))
    }
}

/// Records a call on our stack in the trace: `stack  accept(#1) = #2 from
/// 198.18.0.1:40000` (numbers are the sockets' places in the stack's table,
/// as descriptors are on the kernel's sockets).
fn stack_call(call: impl FnOnce() -> String, result: impl FnOnce() -> Option<String>) {
    crate::sys::record_as(Some("stack"), call, result);
}

/// Our stack reaches hosts over the TUN device only; the kernel's loopback is not there.
fn refuse_loopback(addr: SocketAddr) -> io::Result<()> {
    if addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "{} is the kernel's loopback; with --stack user, reach the kernel at its TUN address (default 198.18.0.1 or fd00::1)",
                addr.ip()
            ),
        ));
    }
    Ok(())
}

fn name_bytes(a: &SockAddr) -> Vec<u8> {
    a.as_abstract_namespace()
        .map(<[u8]>::to_vec)
        .or_else(|| a.as_pathname().map(|p| p.as_os_str().as_bytes().to_vec()))
        .unwrap_or_default()
}

/// The addresses a bridge socket's name carries, after `oxcat.PID.N|`.
fn carried(a: &SockAddr) -> Option<Vec<SocketAddr>> {
    let name = a.as_abstract_namespace()?;
    let text = std::str::from_utf8(name).ok()?;
    let (head, rest) = text.split_once('|')?;
    if !head.starts_with("oxcat.") {
        return None;
    }
    rest.split('|').map(|p| p.parse().ok()).collect()
}

/// The IP address and port a socket stands for: its own, or the remote
/// one a bridge socket's name carries (what `Connection from ...` and
/// --allow/--deny need).
pub fn real_addr(a: &SockAddr) -> Option<SocketAddr> {
    a.as_socket().or_else(|| carried(a)?.first().copied())
}

/// The local end of a connection of ours, carried by its peer's bridge name.
pub fn real_local(peer: &SockAddr) -> Option<SocketAddr> {
    carried(peer)?.get(1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_carry_the_address() {
        for addr in ["198.18.0.1:40000", "[fd00::1]:1234"] {
            let a: SocketAddr = addr.parse().unwrap();
            let name = SockAddr::unix(format!("\0oxcat.1.2|{a}")).unwrap();
            assert_eq!(real_addr(&name), Some(a));
            assert_eq!(real_local(&name), None);
            let both = SockAddr::unix(format!("\0oxcat.1.3|{a}|198.18.0.2:1234")).unwrap();
            assert_eq!(real_addr(&both), Some(a));
            assert_eq!(real_local(&both), Some("198.18.0.2:1234".parse().unwrap()));
        }
        let other = SockAddr::unix("\0someone-else").unwrap();
        assert_eq!(real_addr(&other), None);
        let path = SockAddr::unix("/tmp/x.sock").unwrap();
        assert_eq!(real_addr(&path), None);
    }
}
