//! `oxcat demo --kernel` (root): the notes' exchange with the real Linux
//! kernel as the server and our stack as the client, over a TUN device in
//! a private network namespace this run creates (198.18.0.0/24 only; the
//! namespace and the device go when the run ends).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use oxcat_stack::{Device, SocketHandle, Stack, StackConfig, Tun};
use oxcat_tcp::State;
use oxcat_trace::{Event, Sink, Stamped};
use socket2::{Domain, SockAddr, Type};

use crate::sim_demo::{tapped, SharedPcap, Tapped};
use crate::sys;

const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 1234;
const TUN_NAME: &str = "oxdemo0";
pub const DRAIN: usize = 64 * 1024;

fn ip(args: &[&str]) -> io::Result<()> {
    let st = std::process::Command::new("ip").args(args).status()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("`ip {}` failed", args.join(" "))))
    }
}

/// The kernel's side: the notes' server, every call traced as "server".
fn kernel_server(listening: std::sync::mpsc::Sender<()>) -> io::Result<usize> {
    sys::set_role("server");
    let l = sys::socket(Domain::IPV4, Type::STREAM)?;
    l.set_reuse_address(true)?;
    sys::bind(&l, &SockAddr::from(SocketAddr::from((KERNEL_IP, PORT))))?;
    sys::listen(&l, 5)?;
    let _ = listening.send(());
    l.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (c, _) = sys::accept(&l)?;
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    sys::close(l);
    // Reads and writes go to the accepted socket, not the listening one.
    let fd = c.as_raw_fd();
    let mut c = std::net::TcpStream::from(c);
    let mut got = Vec::new();
    while got.len() < 14 {
        let mut small = [0u8; 8];
        let n = c.read(&mut small)?;
        sys::record(
            || format!("read({fd}, buf, 8)"),
            || Some(format!("{n} \"{}\"", String::from_utf8_lossy(&small[..n]))),
        );
        if n == 0 {
            break;
        }
        got.extend_from_slice(&small[..n]);
    }
    c.write_all(b"Hello, Client!")?;
    sys::record(
        || format!("write({fd}, \"Hello, Client!\", 14)"),
        || Some("14".into()),
    );
    let mut total = 0;
    let mut big = vec![0u8; 65536];
    loop {
        let n = c.read(&mut big)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    sys::record(
        || format!("read({fd}, buf, 65536) ..."),
        || Some(format!("{total} bytes, then 0 (EOF: our FIN)")),
    );
    sys::close(c);
    Ok(total)
}

/// Our side, driven here: poll the stack, wait on the TUN fd or the next timer.
struct Client {
    stack: Stack,
    /// The TUN device, its packets also written to the pcap file when there is one.
    tun: Tapped<Tun>,
    events: Vec<(Instant, Event)>,
}

impl Client {
    fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Stack) -> bool,
    ) -> io::Result<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            self.stack.poll(Instant::now(), &mut self.tun)?;
            self.events.extend(self.stack.take_trace());
            if done(&mut self.stack) {
                return Ok(true);
            }
            let wait = self
                .stack
                .poll_at()
                .map_or(Duration::from_millis(5), |t| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_millis(5));
            let fd = self.tun.inner().fd();
            let mut fds = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let ts = rustix::event::Timespec::try_from(wait).unwrap_or_default();
            let _ = rustix::event::poll(&mut fds, Some(&ts));
        }
        Ok(false)
    }

    fn call(&mut self, call: String, result: String) {
        self.events.push((
            Instant::now(),
            Event::SocketCall {
                call,
                result: Some(result),
            },
        ));
    }
}

/// What the run showed.
pub struct KernelRun {
    pub events: Vec<Stamped>,
    pub server_received: usize,
}

fn exchange(tun: Tun, pcap: Option<SharedPcap>) -> io::Result<KernelRun> {
    sys::start_trace(Sink::Memory(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || kernel_server(tx));
    rx.recv_timeout(Duration::from_secs(5))
        .map_err(|_| io::Error::other("the kernel's server did not start"))?;
    let now = Instant::now();
    let mut stack = Stack::new(
        StackConfig {
            ipv4: Some(OUR_IP),
            mtu: tun.mtu(),
            ..StackConfig::default()
        },
        now,
    );
    stack.set_tracing(true);
    let mut me = Client {
        stack,
        tun: tapped(tun, pcap, now),
        events: Vec::new(),
    };
    let target = SocketAddr::from((KERNEL_IP, PORT));
    let h: SocketHandle = me.stack.tcp_connect(target, None, Instant::now())?;
    me.call(
        format!("connect(3, {target})"),
        "EINPROGRESS (our stack sends the SYN)".into(),
    );
    if !me.run_until(Duration::from_secs(10), |s| {
        s.tcp_state(h) == Some(State::Established)
    })? {
        return Err(io::Error::other(
            "the handshake with the kernel did not complete",
        ));
    }
    me.call("connect(3) completes".into(), "0 (ESTABLISHED)".into());
    let n = me.stack.tcp_send(h, b"Hello, Server!")?;
    me.call("send(3, \"Hello, Server!\", 14)".into(), n.to_string());
    me.run_until(Duration::from_secs(10), |s| {
        s.tcp_connection(h).is_some_and(|c| c.readable_len() >= 14)
    })?;
    let mut buf = [0u8; 64];
    let n = me.stack.tcp_recv(h, &mut buf).unwrap_or(0);
    me.call(
        "recv(3, buf, 64)".into(),
        format!("{n} \"{}\"", String::from_utf8_lossy(&buf[..n])),
    );
    let data = vec![b'k'; DRAIN];
    let mut off = 0;
    while off < data.len() {
        if let Ok(n) = me.stack.tcp_send(h, &data[off..]) {
            off += n;
        }
        if off < data.len()
            && !me.run_until(Duration::from_secs(10), |s| {
                s.tcp_connection(h).is_some_and(|c| c.send_capacity() > 0)
            })?
        {
            return Err(io::Error::other("the kernel stopped taking data"));
        }
    }
    let queued = me.stack.tcp_connection(h).map_or(0, |c| c.send_queued());
    me.stack.close(h, Instant::now());
    me.call(
        "close(3)".into(),
        format!("0 ({queued} bytes still buffered)"),
    );
    me.run_until(Duration::from_secs(10), |s| {
        !matches!(
            s.tcp_state(h),
            Some(State::FinWait1 | State::FinWait2 | State::Closing | State::Established)
        )
    })?;
    let server_received = server
        .join()
        .map_err(|_| io::Error::other("the kernel's server thread failed"))??;
    let tracer = sys::stop_trace().ok_or_else(|| io::Error::other("no trace"))?;
    let start = tracer.start();
    let mut events: Vec<Stamped> = tracer.events().to_vec();
    for (at, e) in me.events {
        events.push(Stamped {
            micros: at.saturating_duration_since(start).as_micros() as u64,
            host: Some("client".into()),
            event: e,
        });
    }
    events.sort_by_key(|e| e.micros);
    Ok(KernelRun {
        events,
        server_received,
    })
}

/// Runs the exchange in a private namespace on its own thread; with
/// `pcap`, every packet our stack sends or receives on the TUN device is
/// written there.
pub fn run(pcap: Option<SharedPcap>) -> Result<KernelRun, String> {
    std::thread::spawn(move || -> Result<KernelRun, String> {
        // SAFETY: unshare(CLONE_NEWNET) changes only this thread's network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let e = io::Error::last_os_error();
            return Err(format!(
                "--kernel needs root (a private network namespace and a TUN device): unshare: {}",
                crate::error::describe(&e)
            ));
        }
        let setup = || -> io::Result<Tun> {
            ip(&["link", "set", "lo", "up"])?;
            let tun = Tun::open(TUN_NAME)?;
            ip(&["addr", "add", "198.18.0.1/24", "dev", TUN_NAME])?;
            ip(&["link", "set", TUN_NAME, "up"])?;
            Ok(tun)
        };
        let tun = setup().map_err(|e| {
            format!(
                "--kernel: setting up TUN {TUN_NAME}: {}",
                crate::error::describe(&e)
            )
        })?;
        exchange(tun, pcap).map_err(|e| format!("--kernel: {}", crate::error::describe(&e)))
    })
    .join()
    .map_err(|_| "--kernel: the run failed".to_string())?
}
