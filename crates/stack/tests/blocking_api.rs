//! The blocking, std::net-shaped API: two stacks on a simulated link, one
//! stack thread, client and server on their own threads, real time.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

mod common;

use oxcat_stack::{
    sim_link, Device, LinkConfig, Runtime, Stack, StackConfig, StackId, TcpListener, TcpStream,
};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn runtime(link: LinkConfig) -> Runtime {
    Runtime::start(move || {
        let now = Instant::now();
        let (pa, pb) = sim_link(link, 42);
        let cfg = |ip| StackConfig {
            ipv4: Some(ip),
            ..StackConfig::default()
        };
        vec![
            (Stack::new(cfg(A), now), Box::new(pa) as Box<dyn Device>),
            (Stack::new(cfg(B), now), Box::new(pb) as Box<dyn Device>),
        ]
    })
    .expect("runtime")
}

#[test]
fn hello_server_hello_client() {
    let rt = runtime(LinkConfig {
        delay: Duration::from_millis(2),
        ..LinkConfig::default()
    });
    let listener =
        TcpListener::bind(&rt, StackId(1), SocketAddr::new(IpAddr::V4(B), 1234), 8).unwrap();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            let (mut conn, from) = listener.accept().unwrap();
            assert_eq!(from.ip(), IpAddr::V4(A));
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            conn.write_all(b"Hello, Client!").unwrap();
            conn.shutdown_write().unwrap();
            got
        });
        let mut c =
            TcpStream::connect(&rt, StackId(0), SocketAddr::new(IpAddr::V4(B), 1234)).unwrap();
        assert_eq!(c.peer_addr().unwrap(), SocketAddr::new(IpAddr::V4(B), 1234));
        c.write_all(b"Hello, Server!").unwrap();
        c.shutdown_write().unwrap();
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"Hello, Client!");
        assert_eq!(server.join().unwrap(), b"Hello, Server!");
    });
}

#[test]
fn a_megabyte_over_a_lossy_link_and_partial_writes() {
    let link = LinkConfig {
        loss: 0.02,
        delay: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    let rt = runtime(link);
    let listener =
        TcpListener::bind(&rt, StackId(1), SocketAddr::new(IpAddr::V4(B), 80), 8).unwrap();
    let data: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            got
        });
        let mut c =
            TcpStream::connect(&rt, StackId(0), SocketAddr::new(IpAddr::V4(B), 80)).unwrap();
        // One write of a megabyte takes what fits in the send buffer: less than asked.
        let first = c.write(&data).unwrap();
        assert!(first > 0 && first < data.len(), "a partial write: {first}");
        c.write_all(&data[first..]).unwrap();
        drop(c); // close: the buffered bytes still go, then FIN
        let got = server.join().unwrap();
        assert!(got == data, "{} of {} bytes", got.len(), data.len());
    });
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let rt = runtime(LinkConfig::default());
    let e = TcpStream::connect(&rt, StackId(0), SocketAddr::new(IpAddr::V4(B), 9))
        .err()
        .expect("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// Waiting costs nothing: an accept with no client and a connect nobody
/// answers sleep until something happens, rather than waking the stack
/// thread on every try (the two used to ping-pong: ~100,000 rounds a
/// second, a whole CPU). The stack thread's idle tick is 100 ms, and each
/// wait here lasts 400 ms; the bound leaves room for any scheduling.
#[test]
fn waiting_calls_do_not_spin_the_stack_thread() {
    let rt = runtime(LinkConfig {
        loss: 1.0, // nothing arrives: the connect stays unanswered
        ..LinkConfig::default()
    });
    let listener =
        TcpListener::bind(&rt, StackId(1), SocketAddr::new(IpAddr::V4(B), 1234), 8).unwrap();
    let before = rt.rounds();
    let r = listener.accept_timeout(Duration::from_millis(400));
    assert!(r.is_err(), "nobody connected");
    let idle_accept = rt.rounds() - before;
    let before = rt.rounds();
    let r = TcpStream::connect_timeout(
        &rt,
        StackId(0),
        SocketAddr::new(IpAddr::V4(B), 1234),
        Duration::from_millis(400),
    );
    assert!(r.is_err(), "every packet is lost");
    let unanswered_connect = rt.rounds() - before;
    assert!(
        idle_accept < 40 && unanswered_connect < 40,
        "stack rounds while waiting 400 ms: accept {idle_accept}, connect {unanswered_connect}"
    );
}

/// The device of one stack goes away: calls on that stack that would wait
/// fail with its error at once instead of waiting for ever, bytes already
/// received are still read first, a send fails (its bytes could never
/// leave), the other stack is untouched, and the stack thread no longer
/// polls the dead device (it used to spin on a descriptor always ready).
#[test]
fn a_device_that_goes_away_fails_calls_on_its_stack_only() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let gone = Arc::new(AtomicBool::new(false));
    let rt = common::vanishing_runtime(gone.clone(), 7, A, B);
    let server = TcpListener::bind(&rt, StackId(1), SocketAddr::new(IpAddr::V4(B), 80), 8).unwrap();
    let ours = TcpListener::bind(&rt, StackId(0), SocketAddr::new(IpAddr::V4(A), 81), 8).unwrap();
    let mut c = TcpStream::connect(&rt, StackId(0), SocketAddr::new(IpAddr::V4(B), 80)).unwrap();
    let (mut s, _) = server.accept().unwrap();
    s.write_all(b"tail").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.with_stack(StackId(0), |st| {
        st.tcp_connection(c.handle())
            .map_or(0, |k| k.readable_len())
    }) < 4
    {
        assert!(Instant::now() < deadline, "the bytes never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(rt.failure(StackId(0)).is_none());
    gone.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.failure(StackId(0)).is_none() {
        assert!(Instant::now() < deadline, "the device's loss never noticed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let e = rt.wait_failure(StackId(0)).expect("the failure is seen");
    assert_eq!(e.raw_os_error(), Some(libc::EBADFD));
    assert!(
        rt.failure(StackId(1)).is_none(),
        "only stack 0's device went"
    );
    // No spinning on the dead device's descriptor: the idle tick only.
    let rounds = rt.rounds();
    std::thread::sleep(Duration::from_millis(400));
    let idle = rt.rounds() - rounds;
    assert!(
        idle < 40,
        "{idle} stack rounds in 400 ms with nothing to do"
    );
    // A send on the dead stack fails at once; the other stack waits as before.
    let sent = (&c).write(b"lost");
    assert_eq!(sent.map_err(|e| e.raw_os_error()), Err(Some(libc::EBADFD)));
    let other = server.accept_timeout(Duration::from_millis(100));
    assert_eq!(
        other.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::WouldBlock),
        "stack 1 still waits for a connection"
    );
    // Calls that would wait: on threads, so a hang fails the test rather than stalling it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let tx2 = tx.clone();
        scope.spawn(move || {
            let mut buf = [0u8; 16];
            let first = c.read(&mut buf).map(|n| buf[..n].to_vec());
            let second = c.read(&mut buf);
            let _ = tx2.send(("read", format!("{first:?} then {second:?}")));
        });
        let tx3 = tx.clone();
        let ours = &ours;
        scope.spawn(move || {
            let r = ours.accept().map(|_| ());
            let _ = tx3.send(("accept", format!("{r:?}")));
        });
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..2 {
            let (what, r) = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
                panic!("a call still waits after the device went away: {seen:?}")
            });
            seen.insert(what, r);
        }
        let read = &seen["read"];
        assert!(
            read.starts_with("Ok([116, 97, 105, 108]) then Err(") && read.contains("77"),
            "the buffered bytes, then the device's error: {read}"
        );
        assert!(seen["accept"].contains("77"), "{}", seen["accept"]);
    });
}
