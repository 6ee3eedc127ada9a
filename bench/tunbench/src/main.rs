//! tunbench: issue 5's benchmark, run by `bench/tun`.
//!
//! Over a Linux TUN device in a private network namespace (kernel
//! 198.18.0.1/24 on `oxt0`, the userspace stack 198.18.0.2), with the
//! kernel's own std::net sockets as the peer, it measures oxcat's stack
//! (crates/stack) and smoltcp 0.12 alike:
//!
//!   - bulk throughput, stack -> kernel and kernel -> stack (Gbit/s);
//!   - 1-byte request/response: round trips per second, kernel client,
//!     stack server;
//!   - connection rate: connections per second a kernel client opens to a
//!     listener on the stack (connect, shutdown write, read EOF, close).
//!
//! and the same three kernel <-> kernel over the veth pair bench/tun made
//! between two namespaces (`--veth NS_A NS_B`, 198.18.1.1 -> 198.18.1.2).
//! Prints one table with the ratios and the targets.

mod crash;
mod kernel;
mod netns;
mod pattern;
mod user;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxcat_stack::{Runtime, StackId, Tun};

use crate::kernel::ConnTally;
use crate::netns::{KERNEL_TUN, STACK_TUN, VETH_B};
use crate::user::{Ours, Settings, Smol, UserStack};

const BULK_PORT: u16 = 5001;
const RR_PORT: u16 = 5002;
const CONN_PORT: u16 = 5003;
/// Request/response: round trips before the timed ones.
const RR_WARMUP: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
struct Opts {
    bytes: u64,
    verify_bytes: u64,
    runs: usize,
    secs: Duration,
    threads: usize,
    backlog: usize,
    timeout: Duration,
    settings: Settings,
    veth: Option<(String, String)>,
    tests: Vec<String>,
    peers: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: tunbench [--bytes N] [--verify-bytes N] [--runs N] [--seconds S] \
         [--threads T] [--backlog N] [--buffer BYTES] [--timestamps on|off] [--timeout S] \
         [--veth NS_A NS_B] [--tests bulk,bulk-to,bulk-from,rr,conn] [--peers oxcat,oxcat-rt,oxcat-tso,smoltcp,veth]\n\
         needs root (network namespaces, a TUN device); run through bench/tun"
    );
    std::process::exit(2);
}

fn parse() -> Opts {
    let mut o = Opts {
        bytes: 1 << 30,
        verify_bytes: 16 << 20,
        runs: 3,
        secs: Duration::from_secs(3),
        threads: 4,
        backlog: 64,
        timeout: Duration::from_secs(120),
        settings: Settings {
            buffer: 4 << 20,
            mtu: 1500,
            timestamps: true,
        },
        veth: None,
        tests: vec!["bulk".into(), "rr".into(), "conn".into()],
        peers: vec![
            "oxcat".into(),
            "oxcat-rt".into(),
            "oxcat-tso".into(),
            "smoltcp".into(),
            "veth".into(),
        ],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        fn num<T: std::str::FromStr>(s: String) -> T {
            s.parse().unwrap_or_else(|_| usage())
        }
        match flag.as_str() {
            "--bytes" => o.bytes = num(val()),
            "--verify-bytes" => o.verify_bytes = num(val()),
            "--runs" => o.runs = num(val()),
            "--seconds" => o.secs = Duration::from_secs_f64(num(val())),
            "--threads" => o.threads = num(val()),
            "--backlog" => o.backlog = num(val()),
            "--buffer" => o.settings.buffer = num(val()),
            "--timestamps" => {
                o.settings.timestamps = match val().as_str() {
                    "on" => true,
                    "off" => false,
                    _ => usage(),
                }
            }
            "--timeout" => o.timeout = Duration::from_secs_f64(num(val())),
            "--veth" => {
                let a = val();
                let b = val();
                o.veth = Some((a, b));
            }
            "--tests" => o.tests = val().split(',').map(str::to_string).collect(),
            "--peers" => o.peers = val().split(',').map(str::to_string).collect(),
            _ => usage(),
        }
    }
    if o.bytes == 0 || o.threads == 0 || o.settings.buffer < 4096 {
        usage();
    }
    o
}

/// Sets its flag when dropped: "this side has finished (or failed)".
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn joined<T>(r: std::thread::Result<io::Result<T>>) -> io::Result<T> {
    r.unwrap_or_else(|_| Err(crash::error()))
}

/// One run's figure, and for a userspace stack the CPU its thread spent
/// per unit of work (bulk: Gbit/s per CPU-second, i.e. what one fully busy
/// core would move; request/response and connections: microseconds each).
#[derive(Clone, Copy, Debug)]
struct Measured {
    value: f64,
    cpu: Option<f64>,
}

impl Measured {
    fn plain(value: f64) -> Measured {
        Measured { value, cpu: None }
    }
}

fn gbits(bytes: u64, from: Instant, to: Instant) -> io::Result<f64> {
    let secs = to.saturating_duration_since(from).as_secs_f64();
    if secs <= 0.0 {
        return Err(io::Error::other("transfer took no time"));
    }
    Ok(bytes as f64 * 8.0 / secs / 1e9)
}

fn check_count(got: u64, want: u64) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(io::Error::other(format!("received {got} of {want} bytes")))
    }
}

// ------------------------------------------------------------------ over TUN

/// One bulk transfer between a userspace stack and the kernel over the TUN.
/// The kernel listens; the stack connects; then one side sends `bytes` and
/// closes. Time runs from the first byte queued to EOF at the receiver.
/// `offloads`: the TUN is opened with `Tun::open_offloaded` (IFF_VNET_HDR,
/// TSO4/6 and checksum offload), which oxcat's stack uses when it is there.
fn tun_bulk<S: UserStack>(
    make: fn(Tun, Settings) -> S,
    o: &Opts,
    to_kernel: bool,
    bytes: u64,
    check: bool,
    offloads: bool,
) -> io::Result<Measured> {
    netns::with_tun(S::kernel_advmss(o.settings), offloads, |tun| {
        let deadline = Instant::now() + o.timeout;
        let at = SocketAddrV4::new(KERNEL_TUN, BULK_PORT);
        let listener = kernel::listen(at)?;
        let mut stack = make(tun, o.settings);
        let mut cpu = Duration::ZERO;
        let kernel_done = AtomicBool::new(false);
        let stack_failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let kernel_side = scope.spawn(|| {
                let _done = SetOnDrop(&kernel_done);
                let mut s = kernel::accept(&listener, deadline, &stack_failed)?;
                if to_kernel {
                    kernel::recv_all(&mut s, check, deadline)
                } else {
                    kernel::send_all(&mut s, bytes, deadline).map(|start| (bytes, start))
                }
            });
            let stack_side = (|| {
                let h = user::connect(&mut stack, at, deadline)?;
                let cpu0 = user::thread_cpu();
                let r = if to_kernel {
                    let stop = || kernel_done.load(Ordering::Relaxed);
                    user::send_all(&mut stack, h, bytes, deadline, stop).map(|t| (bytes, t))
                } else {
                    user::recv_all(&mut stack, h, check, deadline)
                };
                cpu = user::thread_cpu() - cpu0;
                r
            })();
            if stack_side.is_err() {
                stack_failed.store(true, Ordering::Relaxed);
            }
            let kernel_side = joined(kernel_side.join());
            let (stack_n, stack_t) = stack_side?;
            let (kernel_n, kernel_t) = kernel_side?;
            let value = if to_kernel {
                check_count(kernel_n, bytes)?;
                gbits(bytes, stack_t, kernel_t)?
            } else {
                check_count(stack_n, bytes)?;
                gbits(bytes, kernel_t, stack_t)?
            };
            Ok(Measured {
                value,
                cpu: (!cpu.is_zero()).then(|| bytes as f64 * 8.0 / cpu.as_secs_f64() / 1e9),
            })
        })
    })
}

/// The same bulk transfer through oxcat's blocking API (`Runtime`): a stack
/// thread polls, this thread reads or writes a `TcpStream`, handing over
/// through the runtime's mutex and condition variable. For comparing the
/// two ways of driving the stack; the table's oxcat figures use the direct
/// loop (`user::drive`). Blocking reads have no timeout of their own; the
/// kernel side's deadline closes its socket, which ends them.
fn tun_bulk_runtime(o: &Opts, to_kernel: bool, bytes: u64, check: bool) -> io::Result<Measured> {
    use std::io::{Read, Write};
    netns::with_tun(Ours::kernel_advmss(o.settings), false, |tun| {
        let deadline = Instant::now() + o.timeout;
        let at = SocketAddrV4::new(KERNEL_TUN, BULK_PORT);
        let listener = kernel::listen(at)?;
        let settings = o.settings;
        let rt = Runtime::start(move || {
            let mut tun = tun;
            tun.set_mtu(settings.mtu);
            let stack = oxcat_stack::Stack::new(user::ours_config(settings), Instant::now());
            vec![(stack, Box::new(tun) as Box<dyn oxcat_stack::Device>)]
        })?;
        let stack_failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let kernel_side = scope.spawn(|| {
                let mut s = kernel::accept(&listener, deadline, &stack_failed)?;
                if to_kernel {
                    kernel::recv_all(&mut s, check, deadline)
                } else {
                    kernel::send_all(&mut s, bytes, deadline).map(|start| (bytes, start))
                }
            });
            let stack_side = (|| -> io::Result<(u64, Instant)> {
                let mut s = oxcat_stack::TcpStream::connect_timeout(
                    &rt,
                    StackId(0),
                    at.into(),
                    Duration::from_secs(5),
                )?;
                if to_kernel {
                    let start = Instant::now();
                    let mut sent = 0u64;
                    while sent < bytes {
                        let n = s.write(pattern::slice(sent, bytes - sent))?;
                        sent += n as u64;
                    }
                    s.shutdown_write()?;
                    // Keep the stream open until the kernel has read it all.
                    s.wait_sent(o.timeout)?;
                    Ok((bytes, start))
                } else {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut got = 0u64;
                    loop {
                        let n = s.read(&mut buf)?;
                        if n == 0 {
                            return Ok((got, Instant::now()));
                        }
                        if check && !pattern::matches(got, &buf[..n]) {
                            return Err(io::Error::other("stack received wrong bytes"));
                        }
                        got += n as u64;
                    }
                }
            })();
            if stack_side.is_err() {
                stack_failed.store(true, Ordering::Relaxed);
            }
            let kernel_side = joined(kernel_side.join());
            let (stack_n, stack_t) = stack_side?;
            let (kernel_n, kernel_t) = kernel_side?;
            if to_kernel {
                check_count(kernel_n, bytes)?;
                gbits(bytes, stack_t, kernel_t).map(Measured::plain)
            } else {
                check_count(stack_n, bytes)?;
                gbits(bytes, kernel_t, stack_t).map(Measured::plain)
            }
        })
    })
}

/// Request/response: the stack echoes, a kernel client pings one byte at a time.
fn tun_rr<S: UserStack>(make: fn(Tun, Settings) -> S, o: &Opts) -> io::Result<Measured> {
    netns::with_tun(S::kernel_advmss(o.settings), false, |tun| {
        let deadline = Instant::now() + o.timeout;
        let mut stack = make(tun, o.settings);
        let l = stack.listen(RR_PORT, 8)?;
        let kernel_done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let client = scope.spawn(|| {
                let _done = SetOnDrop(&kernel_done);
                let mut s = kernel::connect(SocketAddrV4::new(STACK_TUN, RR_PORT), true)?;
                kernel::ping_pong(&mut s, RR_WARMUP, o.secs)
            });
            let cpu0 = user::thread_cpu();
            let echoed = user::echo(&mut stack, l, deadline, || {
                kernel_done.load(Ordering::Relaxed)
            });
            let cpu = user::thread_cpu() - cpu0;
            let rate = joined(client.join())?;
            let echoed = echoed?;
            Ok(Measured {
                value: rate,
                cpu: (echoed > 0).then(|| cpu.as_secs_f64() * 1e6 / echoed as f64),
            })
        })
    })
}

/// What a connection-rate run measured.
#[derive(Clone, Copy, Debug)]
struct ConnResult {
    per_sec: f64,
    errors: u64,
}

/// Runs `o.threads` kernel client threads against `to` for `o.secs`; each
/// thread first calls `setup` (to enter a namespace). Returns the rate and
/// sets `all_done` when the last thread has finished.
fn conn_clients(
    o: &Opts,
    to: SocketAddrV4,
    setup: &(dyn Fn() -> io::Result<()> + Sync),
    all_done: &AtomicBool,
) -> io::Result<ConnResult> {
    let tally = ConnTally::default();
    let left = AtomicUsize::new(o.threads);
    let start = Instant::now();
    let end = start + o.secs;
    let finished: Vec<io::Result<Instant>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..o.threads)
            .map(|_| {
                scope.spawn(|| {
                    let r = setup().map(|()| {
                        kernel::conn_client(to, end, &tally);
                        Instant::now()
                    });
                    if left.fetch_sub(1, Ordering::Relaxed) == 1 {
                        all_done.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err(crash::error())))
            .collect()
    });
    let mut last = start;
    for f in finished {
        last = last.max(f?);
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    if errors >= kernel::MAX_CONN_ERRORS {
        return Err(io::Error::other(format!(
            "{errors} failed connections ({ok} succeeded)"
        )));
    }
    Ok(ConnResult {
        per_sec: ok as f64 / (last - start).as_secs_f64(),
        errors,
    })
}

fn tun_conn<S: UserStack>(
    make: fn(Tun, Settings) -> S,
    o: &Opts,
) -> io::Result<(ConnResult, Option<f64>)> {
    netns::with_tun(S::kernel_advmss(o.settings), false, |tun| {
        let deadline = Instant::now() + o.timeout;
        let mut stack = make(tun, o.settings);
        let l = stack.listen(CONN_PORT, o.backlog)?;
        let clients_done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let clients = scope.spawn(|| {
                conn_clients(
                    o,
                    SocketAddrV4::new(STACK_TUN, CONN_PORT),
                    &|| Ok(()),
                    &clients_done,
                )
            });
            let cpu0 = user::thread_cpu();
            let served = user::serve_conns(&mut stack, l, deadline, || {
                clients_done.load(Ordering::Relaxed)
            });
            let cpu = user::thread_cpu() - cpu0;
            let r = joined(clients.join())?;
            let served = served?;
            Ok((
                r,
                (served > 0).then(|| cpu.as_secs_f64() * 1e6 / served as f64),
            ))
        })
    })
}

// ------------------------------------------------------------------ over veth

/// Runs `server` in namespace B and `client` in namespace A; the client
/// starts once the server says it listens. `stop` is set when the client
/// has finished (or failed), for servers that run until told.
fn veth_pair<T: Send, U: Send>(
    (ns_a, ns_b): &(String, String),
    server: impl FnOnce(&mpsc::Sender<()>, &AtomicBool) -> io::Result<T> + Send,
    client: impl FnOnce() -> io::Result<U> + Send,
) -> io::Result<(T, U)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let stop = AtomicBool::new(false);
    let stop = &stop;
    std::thread::scope(|scope| {
        let srv = scope.spawn(|| {
            netns::enter(ns_b)?;
            server(&ready_tx, stop)
        });
        let cli = scope.spawn(move || {
            let _stop = SetOnDrop(stop);
            netns::enter(ns_a)?;
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| io::Error::other("the veth server did not start"))?;
            client()
        });
        let c = joined(cli.join());
        let s = joined(srv.join());
        Ok((s?, c?))
    })
}

fn veth_bulk(o: &Opts, ns: &(String, String), bytes: u64, check: bool) -> io::Result<f64> {
    let deadline = Instant::now() + o.timeout;
    let at = SocketAddrV4::new(VETH_B, BULK_PORT);
    let ((n, end), start) = veth_pair(
        ns,
        |ready, stop| {
            let l = kernel::listen(at)?;
            let _ = ready.send(());
            let mut s = kernel::accept(&l, deadline, stop)?;
            kernel::recv_all(&mut s, check, deadline)
        },
        || {
            let mut s = kernel::connect(at, false)?;
            kernel::send_all(&mut s, bytes, deadline)
        },
    )?;
    check_count(n, bytes)?;
    gbits(bytes, start, end)
}

fn veth_rr(o: &Opts, ns: &(String, String)) -> io::Result<f64> {
    let deadline = Instant::now() + o.timeout;
    let at = SocketAddrV4::new(VETH_B, RR_PORT);
    let ((), rate) = veth_pair(
        ns,
        |ready, stop| {
            let l = kernel::listen(at)?;
            let _ = ready.send(());
            let mut s = kernel::accept(&l, deadline, stop)?;
            s.set_nodelay(true)?;
            kernel::echo(&mut s, deadline)
        },
        || {
            let mut s = kernel::connect(at, true)?;
            kernel::ping_pong(&mut s, RR_WARMUP, o.secs)
        },
    )?;
    Ok(rate)
}

fn veth_conn(o: &Opts, ns: &(String, String)) -> io::Result<ConnResult> {
    let deadline = Instant::now() + o.timeout;
    let at = SocketAddrV4::new(VETH_B, CONN_PORT);
    let ns_a = ns.0.clone();
    let clients_done = AtomicBool::new(false);
    let (_, r) = veth_pair(
        ns,
        |ready, _| {
            let l = kernel::listen(at)?;
            let _ = ready.send(());
            kernel::conn_server(&l, deadline, &clients_done)
        },
        || conn_clients(o, at, &|| netns::enter(&ns_a), &clients_done),
    )?;
    Ok(r)
}

// ------------------------------------------------------------------ report

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Peer {
    Oxcat,
    /// oxcat through its blocking API (bulk only).
    OxcatRuntime,
    /// oxcat over a TUN with offloads (bulk only).
    OxcatOffloads,
    Smoltcp,
    Veth,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Oxcat => "oxcat",
            Peer::OxcatRuntime => "oxcat-rt",
            Peer::OxcatOffloads => "oxcat-tso",
            Peer::Smoltcp => "smoltcp",
            Peer::Veth => "veth",
        }
    }
}

const PEERS: [Peer; 5] = [
    Peer::Oxcat,
    Peer::OxcatRuntime,
    Peer::OxcatOffloads,
    Peer::Smoltcp,
    Peer::Veth,
];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Metric {
    BulkToKernel,
    BulkFromKernel,
    RoundTrips,
    Connections,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::BulkToKernel => "bulk stack->kernel (Gbit/s)",
            Metric::BulkFromKernel => "bulk kernel->stack (Gbit/s)",
            Metric::RoundTrips => "1-byte request/response (round trips/s)",
            Metric::Connections => "connections/s (kernel client)",
        }
    }

    /// Whether `--tests` asks for this metric ("bulk" covers both directions,
    /// "bulk-to" and "bulk-from" one each).
    fn wanted(self, tests: &[String]) -> bool {
        let names: &[&str] = match self {
            Metric::BulkToKernel => &["bulk", "bulk-to"],
            Metric::BulkFromKernel => &["bulk", "bulk-from"],
            Metric::RoundTrips => &["rr"],
            Metric::Connections => &["conn"],
        };
        tests.iter().any(|t| names.contains(&t.as_str()))
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Metric::BulkToKernel | Metric::BulkFromKernel => format!("{v:.3}"),
            _ => format!("{v:.0}"),
        }
    }

    fn is_bulk(self) -> bool {
        matches!(self, Metric::BulkToKernel | Metric::BulkFromKernel)
    }

    /// The CPU figure: Gbit/s per CPU-second for bulk, microseconds per
    /// round trip or connection otherwise.
    fn fmt_cpu(self, v: f64) -> String {
        if self.is_bulk() {
            format!("{v:.2}")
        } else {
            format!("{v:.1}")
        }
    }

    /// oxcat's CPU advantage: > 1 means oxcat needs less CPU for the work.
    fn cpu_ratio(self, ox: Option<f64>, other: Option<f64>) -> Option<f64> {
        if self.is_bulk() {
            ratio(ox, other)
        } else {
            ratio(other, ox)
        }
    }
}

const METRICS: [Metric; 4] = [
    Metric::BulkToKernel,
    Metric::BulkFromKernel,
    Metric::RoundTrips,
    Metric::Connections,
];

#[derive(Default)]
struct Results {
    values: HashMap<(Metric, Peer), Vec<f64>>,
    /// The stack thread's CPU per unit of work, per run (see `Measured`).
    cpu: HashMap<(Metric, Peer), Vec<f64>>,
    failed: HashMap<(Metric, Peer), String>,
    /// Runs that ended in a panic of the stack under test.
    crashes: HashMap<(Metric, Peer), usize>,
    conn_errors: HashMap<Peer, u64>,
}

impl Results {
    fn record(&mut self, m: Metric, p: Peer, r: io::Result<Measured>) {
        if self.failed.contains_key(&(m, p)) {
            return;
        }
        match r {
            Ok(v) => {
                eprintln!(
                    "tunbench: {:?} {:?}: {} (cpu {})",
                    m,
                    p,
                    m.fmt(v.value),
                    cell(v.cpu, |c| m.fmt_cpu(c))
                );
                self.values.entry((m, p)).or_default().push(v.value);
                if let Some(c) = v.cpu {
                    self.cpu.entry((m, p)).or_default().push(c);
                }
            }
            // smoltcp 0.12 panics now and then while receiving a bulk
            // transfer ("attempt to subtract sequence numbers with
            // underflow" in Socket::window_to_update; smoltcp issue #1048,
            // fixed in 0.13.1 by PR #1079). Such a run is counted and
            // shown as "crash"; the median is taken over the other runs.
            Err(e) if crash::is_crash(&e) => {
                eprintln!("tunbench: {:?} {:?}: CRASHED: {e}", m, p);
                *self.crashes.entry((m, p)).or_default() += 1;
            }
            Err(e) => {
                eprintln!("tunbench: {:?} {:?}: FAILED: {e}", m, p);
                self.failed.insert((m, p), e.to_string());
            }
        }
    }

    fn median(&self, m: Metric, p: Peer) -> Option<f64> {
        self.median_of(&self.values, m, p)
    }

    fn median_cpu(&self, m: Metric, p: Peer) -> Option<f64> {
        self.median_of(&self.cpu, m, p)
    }

    fn median_of(
        &self,
        map: &HashMap<(Metric, Peer), Vec<f64>>,
        m: Metric,
        p: Peer,
    ) -> Option<f64> {
        if self.failed.contains_key(&(m, p)) {
            return None;
        }
        let mut v = map.get(&(m, p))?.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// A ratio as "1.23x".
fn times(v: f64) -> String {
    format!("{v:.2}x")
}

fn cell(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_string(), f)
}

fn print_report(o: &Opts, res: &Results) -> bool {
    println!(
        "{:<42} {:>9} {:>9} {:>9} {:>7} {:>7} | {:>7} {:>7} {:>7}  runs: oxcat | smoltcp | veth",
        "metric", "oxcat", "smoltcp", "veth", "ox/smol", "ox/veth", "cpu ox", "cpu sm", "ox/sm"
    );
    let mut all_ok = true;
    for m in METRICS {
        if !m.wanted(&o.tests) {
            continue;
        }
        let ox = res.median(m, Peer::Oxcat);
        let sm = res.median(m, Peer::Smoltcp);
        // veth is measured one way (A -> B); both bulk rows compare with it.
        let ve = match m {
            Metric::BulkFromKernel => res.median(Metric::BulkToKernel, Peer::Veth),
            _ => res.median(m, Peer::Veth),
        };
        let mut runs = |p: Peer, mm: Metric| -> String {
            if let Some(e) = res.failed.get(&(mm, p)) {
                all_ok = false;
                return format!("FAILED ({e})");
            }
            let mut text = res
                .values
                .get(&(mm, p))
                .map(|v| v.iter().map(|x| m.fmt(*x)).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "-".into());
            if let Some(n) = res.crashes.get(&(mm, p)) {
                text.push_str(&format!(" +{n} crash"));
                if !res.values.contains_key(&(mm, p)) {
                    // Not one run completed.
                    all_ok = false;
                }
            }
            text
        };
        let veth_metric = if m == Metric::BulkFromKernel {
            Metric::BulkToKernel
        } else {
            m
        };
        let runs_text = format!(
            "{} | {} | {}",
            runs(Peer::Oxcat, m),
            runs(Peer::Smoltcp, m),
            if o.veth.is_some() {
                runs(Peer::Veth, veth_metric)
            } else {
                "not run".into()
            }
        );
        let cpu_ox = res.median_cpu(m, Peer::Oxcat);
        let cpu_sm = res.median_cpu(m, Peer::Smoltcp);
        println!(
            "{:<42} {:>9} {:>9} {:>9} {:>7} {:>7} | {:>7} {:>7} {:>7}  {}",
            m.label(),
            cell(ox, |v| m.fmt(v)),
            cell(sm, |v| m.fmt(v)),
            cell(ve, |v| m.fmt(v)),
            cell(ratio(ox, sm), |v| format!("{v:.2}")),
            cell(ratio(ox, ve), |v| format!("{v:.2}")),
            cell(cpu_ox, |v| m.fmt_cpu(v)),
            cell(cpu_sm, |v| m.fmt_cpu(v)),
            cell(m.cpu_ratio(cpu_ox, cpu_sm), |v| format!("{v:.2}")),
            runs_text
        );
    }
    println!(
        "# cpu: the stack thread's CPU time (user+sys, including the kernel's work inside its TUN \
         reads and writes), median of the runs;"
    );
    println!(
        "#   bulk in Gbit/s per CPU-second (higher is better), request/response and connections in \
         us each (lower is better); cpu ox/sm > 1: oxcat needs less CPU"
    );
    // The bulk-only variants of oxcat, each on a line of its own.
    for (variant, what) in [
        (
            Peer::OxcatRuntime,
            "oxcat through its blocking API (Runtime: stack thread + this thread)",
        ),
        (
            Peer::OxcatOffloads,
            "oxcat over a TUN with offloads (IFF_VNET_HDR, TSO, checksum; smoltcp has none)",
        ),
    ] {
        if !res
            .values
            .keys()
            .chain(res.failed.keys())
            .any(|(_, p)| *p == variant)
        {
            continue;
        }
        let mut line = |m: Metric| -> String {
            let runs = match res.failed.get(&(m, variant)) {
                Some(e) => {
                    all_ok = false;
                    format!("FAILED ({e})")
                }
                None => res
                    .values
                    .get(&(m, variant))
                    .map(|v| v.iter().map(|x| m.fmt(*x)).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default(),
            };
            let v = res.median(m, variant);
            format!(
                "{} Gbit/s ({} oxcat plain, {} smoltcp; cpu {}; runs {runs})",
                cell(v, |v| m.fmt(v)),
                cell(ratio(v, res.median(m, Peer::Oxcat)), times),
                cell(ratio(v, res.median(m, Peer::Smoltcp)), times),
                cell(res.median_cpu(m, variant), |v| m.fmt_cpu(v)),
            )
        };
        println!("# {what}:");
        println!("#   stack->kernel {}", line(Metric::BulkToKernel));
        println!("#   kernel->stack {}", line(Metric::BulkFromKernel));
    }
    if Metric::Connections.wanted(&o.tests) {
        let errs: Vec<String> = [Peer::Oxcat, Peer::Smoltcp, Peer::Veth]
            .iter()
            .map(|p| format!("{p:?} {}", res.conn_errors.get(p).copied().unwrap_or(0)))
            .collect();
        println!(
            "# failed connects during the connection-rate runs (all runs): {}",
            errs.join(", ")
        );
    }
    if Metric::BulkToKernel.wanted(&o.tests) || Metric::BulkFromKernel.wanted(&o.tests) {
        println!("#");
        println!("# targets of issue 5:");
        let dirs = [Metric::BulkToKernel, Metric::BulkFromKernel];
        let veth = res.median(Metric::BulkToKernel, Peer::Veth);
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "n/a",
        };
        // Both directions must meet a target.
        let both = |f: &dyn Fn(Metric) -> Option<bool>| -> Option<bool> {
            let a = f(Metric::BulkToKernel)?;
            let b = f(Metric::BulkFromKernel)?;
            Some(a && b)
        };
        for (p, what) in [
            (Peer::Oxcat, "plain TUN, neither stack with offloads"),
            (Peer::OxcatOffloads, "oxcat with offloads, smoltcp without"),
        ] {
            let r = |m: Metric| ratio(res.median(m, p), res.median(m, Peer::Smoltcp));
            let text: Vec<String> = dirs
                .iter()
                .map(|&m| cell(r(m), |v| format!("{v:.2}x")))
                .collect();
            println!(
                "#   bulk >= 3x smoltcp ({what}): stack->kernel {}, kernel->stack {}: {}",
                text[0],
                text[1],
                verdict(both(&|m| r(m).map(|v| v >= 3.0)))
            );
        }
        let against_veth = |p: Peer| -> Vec<String> {
            dirs.iter()
                .map(|&m| {
                    let v = res.median(m, p);
                    format!(
                        "{} Gbit/s = {} of veth",
                        cell(v, |v| format!("{v:.2}")),
                        cell(ratio(v, veth), |v| format!("{:.0}%", v * 100.0))
                    )
                })
                .collect()
        };
        let tso = against_veth(Peer::OxcatOffloads);
        let meets = |m: Metric| {
            let v = res.median(m, Peer::OxcatOffloads)?;
            Some(v >= 10.0 || ratio(Some(v), veth).is_some_and(|r| r >= 0.5))
        };
        println!(
            "#   with offloads >= 10 Gbit/s or >= 50% of veth: stack->kernel {}, kernel->stack {}: {}",
            tso[0],
            tso[1],
            verdict(both(&meets))
        );
        let plain = against_veth(Peer::Oxcat);
        println!(
            "#     without offloads: stack->kernel {}, kernel->stack {}",
            plain[0], plain[1]
        );
    }
    all_ok
}

// ------------------------------------------------------------------ main

fn make_ours(tun: Tun, s: Settings) -> Ours {
    Ours::new(tun, s)
}

fn make_smol(tun: Tun, s: Settings) -> Smol {
    Smol::new(tun, s)
}

fn run_bulk(o: &Opts, p: Peer, to_kernel: bool, bytes: u64, check: bool) -> io::Result<Measured> {
    match p {
        Peer::Oxcat => tun_bulk(make_ours, o, to_kernel, bytes, check, false),
        Peer::OxcatRuntime => tun_bulk_runtime(o, to_kernel, bytes, check),
        Peer::OxcatOffloads => tun_bulk(make_ours, o, to_kernel, bytes, check, true),
        Peer::Smoltcp => tun_bulk(make_smol, o, to_kernel, bytes, check, false),
        Peer::Veth => match &o.veth {
            Some(ns) => veth_bulk(o, ns, bytes, check).map(Measured::plain),
            None => Err(io::Error::other("no veth namespaces given")),
        },
    }
}

fn main() -> ExitCode {
    let o = parse();
    crash::install_hook();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("tunbench: needs root (network namespaces and a TUN device)");
        return ExitCode::FAILURE;
    }
    let wants = |m: Metric| m.wanted(&o.tests);
    let peers: Vec<Peer> = PEERS
        .into_iter()
        .filter(|p| *p != Peer::Veth || o.veth.is_some())
        .filter(|p| o.peers.iter().any(|x| x == p.name()))
        .collect();
    let mut res = Results::default();

    // Content check: every path must carry verify_bytes intact each way
    // before it is timed, so a broken stack cannot look fast.
    if o.verify_bytes > 0 {
        for &p in &peers {
            let dirs: &[bool] = if p == Peer::Veth {
                &[true]
            } else {
                &[true, false]
            };
            for &to_kernel in dirs {
                let m = if to_kernel {
                    Metric::BulkToKernel
                } else {
                    Metric::BulkFromKernel
                };
                let veth_bulk = p == Peer::Veth && wants(Metric::BulkFromKernel);
                if !(wants(m) || veth_bulk) {
                    continue;
                }
                match run_bulk(&o, p, to_kernel, o.verify_bytes, true) {
                    Ok(_) => eprintln!(
                        "tunbench: verify {p:?} {m:?}: {} bytes intact",
                        o.verify_bytes
                    ),
                    // A panic says nothing about the bytes: the timed runs
                    // count crashes (see `Results::record`).
                    Err(e) if crash::is_crash(&e) => {
                        eprintln!("tunbench: verify {p:?} {m:?}: CRASHED: {e}");
                        *res.crashes.entry((m, p)).or_default() += 1;
                    }
                    Err(e) => {
                        eprintln!("tunbench: verify {p:?} {m:?}: FAILED: {e}");
                        res.failed
                            .insert((m, p), format!("content check failed: {e}"));
                    }
                }
            }
        }
    }

    // Timed runs, round-robin over the peers so drifting load hits all alike.
    for run in 1..=o.runs {
        eprintln!("tunbench: run {run}/{}", o.runs);
        for &p in &peers {
            // veth is measured one way, for both bulk rows.
            let veth_bulk = p == Peer::Veth && wants(Metric::BulkFromKernel);
            if (wants(Metric::BulkToKernel) || veth_bulk)
                && !res.failed.contains_key(&(Metric::BulkToKernel, p))
            {
                res.record(
                    Metric::BulkToKernel,
                    p,
                    run_bulk(&o, p, true, o.bytes, false),
                );
            }
            if wants(Metric::BulkFromKernel)
                && p != Peer::Veth
                && !res.failed.contains_key(&(Metric::BulkFromKernel, p))
            {
                res.record(
                    Metric::BulkFromKernel,
                    p,
                    run_bulk(&o, p, false, o.bytes, false),
                );
            }
            if wants(Metric::RoundTrips) {
                let r = match (p, &o.veth) {
                    (Peer::Oxcat, _) => tun_rr(make_ours, &o),
                    (Peer::Smoltcp, _) => tun_rr(make_smol, &o),
                    (Peer::Veth, Some(ns)) => veth_rr(&o, ns).map(Measured::plain),
                    (Peer::Veth, None) | (Peer::OxcatRuntime | Peer::OxcatOffloads, _) => continue,
                };
                res.record(Metric::RoundTrips, p, r);
            }
            if wants(Metric::Connections) {
                let r = match (p, &o.veth) {
                    (Peer::Oxcat, _) => tun_conn(make_ours, &o),
                    (Peer::Smoltcp, _) => tun_conn(make_smol, &o),
                    (Peer::Veth, Some(ns)) => veth_conn(&o, ns).map(|c| (c, None)),
                    (Peer::Veth, None) | (Peer::OxcatRuntime | Peer::OxcatOffloads, _) => continue,
                };
                if let Ok((c, _)) = &r {
                    *res.conn_errors.entry(p).or_default() += c.errors;
                }
                let r = r.map(|(c, cpu)| Measured {
                    value: c.per_sec,
                    cpu,
                });
                res.record(Metric::Connections, p, r);
            }
        }
    }

    if print_report(&o, &res) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
