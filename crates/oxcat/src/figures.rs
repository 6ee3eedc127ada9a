//! The notes' two figures, measured on the real clock: "from receiving the
//! SYN to accepting the connection: 1.7 ms" and "processing a packet: 200
//! µs". On our stack (two stacks on a zero-delay simulated link, so only
//! processing is measured) and, for SYN-to-accept, on the kernel's loopback.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxcat_stack::{sim_link, LinkConfig, Stack};

use crate::sim_demo::{stack_config, CLIENT_IP, SERVER_IP};

/// Median and 99th percentile of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: Duration,
    pub p99: Duration,
    pub runs: usize,
}

fn spread(mut v: Vec<Duration>) -> Spread {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Spread {
        median: at(0.5),
        p99: at(0.99),
        runs: v.len(),
    }
}

/// SYN-to-accept on our stack: from the server stack taking in the SYN to
/// `accept` returning the connection. `total` is the whole span (both
/// stacks' processing of SYN, SYN-ACK and ACK, no link delay); `server`
/// is the server stack's own part (its three polls and the accept).
pub struct StackSynToAccept {
    pub total: Spread,
    pub server: Spread,
}

pub fn stack_syn_to_accept(runs: usize) -> io::Result<StackSynToAccept> {
    let now0 = Instant::now();
    let link = LinkConfig {
        delay: Duration::ZERO,
        ..LinkConfig::default()
    };
    let (mut cp, mut sp) = sim_link(link, 1);
    let mut client = Stack::new(stack_config(CLIENT_IP, 11), now0);
    let mut server = Stack::new(stack_config(SERVER_IP, 12), now0);
    let target = SocketAddr::from((SERVER_IP, 7000));
    let listener = server.tcp_listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7000)), 128, now0)?;
    let mut totals = Vec::with_capacity(runs);
    let mut servers = Vec::with_capacity(runs);
    for _ in 0..runs {
        let c = client.tcp_connect(target, None, Instant::now())?;
        // The SYN goes onto the link.
        client.poll(Instant::now(), &mut cp)?;
        let t0 = Instant::now();
        server.poll(t0, &mut sp)?; // SYN in, SYN-ACK out
        let t1 = Instant::now();
        client.poll(t1, &mut cp)?; // SYN-ACK in, ACK out
        let t2 = Instant::now();
        server.poll(t2, &mut sp)?; // ACK in: into the accept queue
        let accepted = server.tcp_accept(listener)?;
        let t3 = Instant::now();
        let Some((s, _)) = accepted else {
            return Err(io::Error::other(
                "the handshake did not complete in three steps",
            ));
        };
        totals.push(t3 - t0);
        servers.push((t1 - t0) + (t3 - t2));
        // Close both ends at once (RST) so the table stays small.
        client.tcp_close_reset(c, Instant::now());
        server.tcp_close_reset(s, Instant::now());
        client.poll(Instant::now(), &mut cp)?;
        server.poll(Instant::now(), &mut sp)?;
        client.poll(Instant::now(), &mut cp)?;
    }
    Ok(StackSynToAccept {
        total: spread(totals),
        server: spread(servers),
    })
}

/// Per-segment cost on our stack: a bulk transfer over a zero-delay link;
/// the receiver's time in `poll` per segment it took in (receive, reassemble
/// in order, ACK), and the sender's per segment it sent.
pub struct SegmentCost {
    pub receive: Duration,
    pub send: Duration,
    pub segments: u64,
}

pub fn segment_cost(bytes: usize) -> io::Result<SegmentCost> {
    let now0 = Instant::now();
    let link = LinkConfig {
        delay: Duration::ZERO,
        ..LinkConfig::default()
    };
    let (mut cp, mut sp) = sim_link(link, 2);
    let mut client = Stack::new(stack_config(CLIENT_IP, 21), now0);
    let mut server = Stack::new(stack_config(SERVER_IP, 22), now0);
    let target = SocketAddr::from((SERVER_IP, 7001));
    let listener = server.tcp_listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7001)), 8, now0)?;
    let c = client.tcp_connect(target, None, now0)?;
    let data = vec![0x5au8; 64 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    let mut conn = None;
    let (mut rx_time, mut tx_time) = (Duration::ZERO, Duration::ZERO);
    // The first quarter warms up (buffers grow, pages fault in); it is not counted.
    let warmup = bytes / 4;
    let (mut rx_before, mut tx_before) = (0, 0);
    let mut counting = false;
    for _ in 0..10_000_000 {
        if got >= bytes {
            break;
        }
        if !counting && got >= warmup {
            counting = true;
            rx_time = Duration::ZERO;
            tx_time = Duration::ZERO;
            rx_before = server.stats().packets_in;
            tx_before = client.stats().packets_out;
        }
        let now = Instant::now();
        if sent < bytes {
            if let Ok(n) = client.tcp_send(c, &data[..data.len().min(bytes - sent)]) {
                sent += n;
            }
        }
        client.poll(now, &mut cp)?;
        let t1 = Instant::now();
        server.poll(t1, &mut sp)?;
        let t2 = Instant::now();
        tx_time += t1 - now;
        rx_time += t2 - t1;
        if conn.is_none() {
            conn = server.tcp_accept(listener)?.map(|(h, _)| h);
        }
        if let Some(h) = conn {
            while let Ok(n) = server.tcp_recv(h, &mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
    }
    if got < bytes {
        return Err(io::Error::other("the measured transfer did not finish"));
    }
    let rx = (server.stats().packets_in - rx_before).max(1);
    let tx = (client.stats().packets_out - tx_before).max(1);
    Ok(SegmentCost {
        receive: rx_time / rx as u32,
        send: tx_time / tx as u32,
        segments: rx,
    })
}

/// The kernel's SYN-to-accept over loopback, seen from user space: from the
/// client's `connect()` call to the server's `accept()` returning, with the
/// server already waiting in accept (the SYN arrives within microseconds of
/// the call, so this bounds the notes' figure from above).
pub fn kernel_syn_to_accept(runs: usize) -> io::Result<Spread> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel::<Instant>();
    let server = std::thread::spawn(move || -> io::Result<()> {
        for _ in 0..runs {
            let (s, _) = listener.accept()?;
            let _ = tx.send(Instant::now());
            drop(s);
        }
        Ok(())
    });
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        // Give the server time to be back in accept().
        std::thread::sleep(Duration::from_micros(200));
        let t0 = Instant::now();
        let c = TcpStream::connect(addr)?;
        let t1 = rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| io::Error::other("the server did not accept"))?;
        v.push(t1.saturating_duration_since(t0));
        drop(c);
    }
    server
        .join()
        .map_err(|_| io::Error::other("server thread failed"))??;
    Ok(spread(v))
}

/// A duration the way people read it: `1.7 ms`, `3.2 µs`, `150 ns`.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_median_and_p99() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let s = spread(v);
        assert_eq!(s.median, Duration::from_micros(51));
        assert_eq!(s.p99, Duration::from_micros(99));
        assert_eq!(s.runs, 100);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(Duration::from_micros(1700)), "1.70 ms");
        assert_eq!(human(Duration::from_nanos(3200)), "3.2 µs");
        assert_eq!(human(Duration::from_nanos(150)), "150 ns");
    }
}
