//! The async API (feature `tokio`): accept().await and AsyncRead/AsyncWrite
//! over two stacks on a simulated link.
#![cfg(feature = "tokio")]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use oxcat_stack::{
    sim_link, AsyncTcpListener, AsyncTcpStream, Device, LinkConfig, Runtime, Stack, StackConfig,
    StackId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Stacks A (0) and B (1) on a simulated link, driven by one runtime.
fn runtime(link: LinkConfig, seed: u64) -> Runtime {
    Runtime::start(move || {
        let now = Instant::now();
        let (pa, pb) = sim_link(link, seed);
        let cfg = |ip| StackConfig {
            ipv4: Some(ip),
            ..StackConfig::default()
        };
        vec![
            (Stack::new(cfg(A), now), Box::new(pa) as Box<dyn Device>),
            (Stack::new(cfg(B), now), Box::new(pb) as Box<dyn Device>),
        ]
    })
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn echo_over_the_async_api() {
    let rt = runtime(
        LinkConfig {
            delay: Duration::from_millis(1),
            ..LinkConfig::default()
        },
        5,
    );
    let addr = SocketAddr::new(IpAddr::V4(B), 7);
    let listener = AsyncTcpListener::bind(&rt, StackId(1), addr, 8).unwrap();
    let server = async {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(&got).await.unwrap();
        s.shutdown().await.unwrap();
    };
    let data: Vec<u8> = (0..200_000).map(|i| (i % 249) as u8).collect();
    let client = async {
        let mut c = AsyncTcpStream::connect(&rt, StackId(0), addr)
            .await
            .unwrap();
        c.write_all(&data).await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) = tokio::join!(server, client);
    assert!(
        back == data,
        "{} bytes echoed of {}",
        back.len(),
        data.len()
    );
}

/// A task waiting on accept costs nothing: the stack thread is not woken
/// by every try (the task and the thread used to ping-pong, ~100,000
/// rounds a second, a whole CPU). Its idle tick is 100 ms; the wait lasts
/// 400 ms; the bound leaves room for any scheduling.
#[tokio::test(flavor = "current_thread")]
async fn a_waiting_accept_does_not_spin_the_stack_thread() {
    let rt = runtime(LinkConfig::default(), 6);
    let listener =
        AsyncTcpListener::bind(&rt, StackId(1), SocketAddr::new(IpAddr::V4(B), 7), 8).unwrap();
    let before = rt.rounds();
    let r = tokio::time::timeout(Duration::from_millis(400), listener.accept()).await;
    assert!(r.is_err(), "nobody connected");
    let rounds = rt.rounds() - before;
    assert!(
        rounds < 40,
        "stack rounds while a task waited 400 ms: {rounds}"
    );
}

/// The device of one stack goes away: a task waiting on it (an accept)
/// is woken with the device's error rather than left pending for ever.
#[tokio::test(flavor = "current_thread")]
async fn a_device_that_goes_away_fails_a_waiting_task() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let gone = Arc::new(AtomicBool::new(false));
    let rt = common::vanishing_runtime(gone.clone(), 9, A, B);
    let listener =
        AsyncTcpListener::bind(&rt, StackId(0), SocketAddr::new(IpAddr::V4(A), 81), 8).unwrap();
    let waiting = async {
        let r = listener.accept().await;
        r.map(|_| ()).expect_err("no connection can come")
    };
    let flip = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        gone.store(true, Ordering::Relaxed);
    };
    let (e, ()) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(waiting, flip)
    })
    .await
    .expect("the waiting accept was never woken");
    assert_eq!(e.raw_os_error(), Some(libc::EBADFD));
}
