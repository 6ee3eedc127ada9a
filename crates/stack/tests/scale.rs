//! Many concurrent connections between two stacks on the simulated link:
//! they all open, stay idle, and cost little memory each.
//! `OXCAT_SCALE_CONNS` sets how many (default 5 000, which keeps the test
//! command quick; the figure in the notes is from 100 000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use oxcat_stack::{sim_link, Device, LinkConfig, Stack, StackConfig};
use oxcat_tcp::State;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

#[test]
fn many_idle_connections() {
    let n: usize = std::env::var("OXCAT_SCALE_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let t0 = Instant::now();
    let mut now = t0;
    let (mut pa, mut pb) = sim_link(
        LinkConfig {
            delay: Duration::from_millis(1),
            ..LinkConfig::default()
        },
        3,
    );
    let cfg = |ip| StackConfig {
        ipv4: Some(ip),
        ..StackConfig::default()
    };
    let mut a = Stack::new(cfg(A), now);
    let mut b = Stack::new(cfg(B), now);
    // 28 232 ephemeral ports per server port: spread over enough ports.
    let ports: Vec<u16> = (0..n.div_ceil(20_000)).map(|i| 8000 + i as u16).collect();
    let listeners: Vec<_> = ports
        .iter()
        .map(|&p| {
            b.tcp_listen(SocketAddr::new(IpAddr::V4(B), p), 65536, now)
                .unwrap()
        })
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    let wall = Instant::now();
    let clients: Vec<_> = (0..n)
        .map(|i| {
            a.tcp_connect(
                SocketAddr::new(IpAddr::V4(B), ports[i % ports.len()]),
                None,
                now,
            )
            .unwrap()
        })
        .collect();
    let mut accepted = Vec::with_capacity(n);
    for _ in 0..1_000_000 {
        a.poll(now, &mut pa).unwrap();
        b.poll(now, &mut pb).unwrap();
        for &l in &listeners {
            while let Ok(Some((h, _))) = b.tcp_accept(l) {
                accepted.push(h);
            }
        }
        if accepted.len() == n {
            break;
        }
        let next = [pa.poll_at(), pb.poll_at(), a.poll_at(), b.poll_at()]
            .into_iter()
            .flatten()
            .min();
        now = next.map_or(now + Duration::from_millis(1), |t| t.max(now));
    }
    let took = wall.elapsed();
    assert_eq!(accepted.len(), n, "all connections accepted");
    let established = clients
        .iter()
        .filter(|&&c| a.tcp_state(c) == Some(State::Established))
        .count();
    assert_eq!(established, n);
    // Let the last ACKs settle, then measure.
    for _ in 0..10 {
        a.poll(now, &mut pa).unwrap();
        b.poll(now, &mut pb).unwrap();
        now += Duration::from_millis(50);
    }
    let per_conn = (LIVE.load(Ordering::Relaxed) - before) as f64 / (2 * n) as f64;
    eprintln!(
        "SCALE {n} connections opened in {:.2} s wall ({:.0}/s); heap per idle connection end: {:.0} bytes",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        per_conn
    );
    assert!(
        per_conn < 4096.0,
        "idle connections cost {per_conn:.0} bytes each"
    );
}
