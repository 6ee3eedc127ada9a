//! TUN with IFF_VNET_HDR and offloads against the real kernel, in a private
//! network namespace (198.18.0.0/24): the kernel hands our stack TCP
//! segments of up to 64 KB with checksums left to fill in, and takes 64 KB
//! segments of ours that it cuts itself. Bytes must arrive exact both ways,
//! and the large segments must really have crossed. Needs root; skips with
//! a visible message otherwise, fails instead under OXCAT_REQUIRE_ROOT_TESTS=1.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use oxcat_stack::{Device, Runtime, Stack, StackConfig, StackId, TcpListener, TcpStream, Tun};
use oxcat_trace::{Direction, Event};

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("OXCAT_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: needs root, and OXCAT_REQUIRE_ROOT_TESTS=1 forbids skipping");
    }
    eprintln!("SKIPPED {test}: needs root (network namespace and TUN)");
    false
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn offloaded_tun_carries_64k_segments_both_ways() {
    if !root_or_skip("offloaded_tun_carries_64k_segments_both_ways") {
        return;
    }
    let (seen_in, seen_out) = std::thread::spawn(|| {
        // SAFETY: unshare(CLONE_NEWNET) changes only this thread's network namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        ip(&["link", "set", "lo", "up"]);
        let tun = Tun::open_offloaded("oxoff0").expect("open TUN with offloads");
        assert!(tun.offloads().tso_max > 0);
        ip(&["addr", "add", "198.18.0.1/24", "dev", "oxoff0"]);
        ip(&["link", "set", "oxoff0", "up"]);
        let rt = Runtime::start(move || {
            let now = std::time::Instant::now();
            let mut stack = Stack::new(
                StackConfig {
                    ipv4: Some(Ipv4Addr::new(198, 18, 0, 2)),
                    ..StackConfig::default()
                },
                now,
            );
            stack.set_tracing(true);
            vec![(stack, Box::new(tun) as Box<dyn Device>)]
        })
        .expect("runtime");
        let id = StackId(0);
        let size = 16 << 20;
        let down = pattern(size, 7);
        let up = pattern(size, 9);

        // kernel -> our stack
        let listener = TcpListener::bind(&rt, id, "198.18.0.2:7000".parse().unwrap(), 4).unwrap();
        let sent = down.clone();
        let kernel_client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect_timeout(
                &"198.18.0.2:7000".parse().unwrap(),
                Duration::from_secs(5),
            )
            .expect("kernel connects");
            s.write_all(&sent).unwrap();
        });
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        kernel_client.join().unwrap();
        assert!(
            got == down,
            "kernel -> stack: bytes differ ({} of {})",
            got.len(),
            size
        );

        // our stack -> kernel
        let kl = std::net::TcpListener::bind("198.18.0.1:7001").unwrap();
        let kernel_server = std::thread::spawn(move || {
            let (mut s, _) = kl.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut v = Vec::new();
            s.read_to_end(&mut v).unwrap();
            v
        });
        let mut c = TcpStream::connect(&rt, id, SocketAddr::from(([198, 18, 0, 1], 7001))).unwrap();
        c.write_all(&up).unwrap();
        c.shutdown_write().unwrap();
        c.wait_sent(Duration::from_secs(20)).unwrap();
        let received = kernel_server.join().unwrap();
        assert!(
            received == up,
            "stack -> kernel: bytes differ ({} of {})",
            received.len(),
            size
        );

        let events = rt.with_stack(id, |s| s.take_trace());
        let big = |dir: Direction| {
            events
                .iter()
                .filter(|(_, e)| matches!(e, Event::Segment(s) if s.dir == dir && s.len > 1500))
                .count()
        };
        (big(Direction::In), big(Direction::Out))
    })
    .join()
    .expect("namespace thread");
    assert!(
        seen_in > 0,
        "the kernel handed us no segment larger than the MTU"
    );
    assert!(seen_out > 0, "we sent no segment larger than the MTU");
}
