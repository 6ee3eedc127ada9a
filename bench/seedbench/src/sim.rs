//! Our stack on the simulated link: two stacks in one process joined by
//! `sim_link` with zero delay, so only processing is measured (the link
//! itself still costs a `Vec` per packet, a copy in and out and a heap
//! push/pop). The same method as `oxcat demo`'s figures
//! (crates/oxcat/src/figures.rs), with blocks so a spread can be given.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use oxcat_stack::{sim_link, LinkConfig, Stack, StackConfig};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn zero_delay() -> LinkConfig {
    LinkConfig {
        delay: Duration::ZERO,
        ..LinkConfig::default()
    }
}

fn config(ip: Ipv4Addr, seed: u64) -> StackConfig {
    StackConfig {
        ipv4: Some(ip),
        seed,
        ..StackConfig::default()
    }
}

/// Per handshake, in nanoseconds.
pub struct Handshakes {
    /// From the server's poll that takes in the SYN to `accept` returning:
    /// server SYN → SYN-ACK, client SYN-ACK → ACK, server ACK → accept queue, accept.
    pub total: Vec<f64>,
    /// The server's part: its poll for the SYN, its poll for the ACK, the accept.
    pub server: Vec<f64>,
}

pub fn handshakes(runs: usize, warmup: usize) -> io::Result<Handshakes> {
    let now0 = Instant::now();
    let (mut cp, mut sp) = sim_link(zero_delay(), 1);
    let mut client = Stack::new(config(CLIENT_IP, 11), now0);
    let mut server = Stack::new(config(SERVER_IP, 12), now0);
    let target = SocketAddr::from((SERVER_IP, 7000));
    let listener = server.tcp_listen(SocketAddr::from((SERVER_IP, 7000)), 128, now0)?;
    let mut out = Handshakes {
        total: Vec::with_capacity(runs),
        server: Vec::with_capacity(runs),
    };
    for i in 0..warmup + runs {
        let c = client.tcp_connect(target, None, Instant::now())?;
        client.poll(Instant::now(), &mut cp)?; // the SYN goes onto the link
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
                "sim link: the handshake did not complete in three steps",
            ));
        };
        if i >= warmup {
            out.total.push((t3 - t0).as_nanos() as f64);
            out.server.push(((t1 - t0) + (t3 - t2)).as_nanos() as f64);
        }
        // Both ends reset at once (RST), so the tables stay small.
        client.tcp_close_reset(c, Instant::now());
        server.tcp_close_reset(s, Instant::now());
        client.poll(Instant::now(), &mut cp)?;
        server.poll(Instant::now(), &mut sp)?;
        client.poll(Instant::now(), &mut cp)?;
    }
    Ok(out)
}

/// Per-segment cost in blocks of about `BLOCK` segments, in nanoseconds.
pub struct SegmentCost {
    /// Receiver's time in `poll` per segment it took in (receive, in-order
    /// delivery, ACK every second segment).
    pub receive: Vec<f64>,
    /// Sender's time in `poll` per packet it sent (ACKs in, segments out).
    pub send: Vec<f64>,
    pub segments: u64,
    pub payload_per_segment: f64,
}

const BLOCK: u64 = 256;

pub fn segment_cost(bytes: usize) -> io::Result<SegmentCost> {
    let now0 = Instant::now();
    let (mut cp, mut sp) = sim_link(zero_delay(), 2);
    let mut client = Stack::new(config(CLIENT_IP, 21), now0);
    let mut server = Stack::new(config(SERVER_IP, 22), now0);
    let target = SocketAddr::from((SERVER_IP, 7001));
    let listener = server.tcp_listen(SocketAddr::from((SERVER_IP, 7001)), 8, now0)?;
    let c = client.tcp_connect(target, None, now0)?;
    let data = vec![0x5au8; 64 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    let mut conn = None;
    // The first quarter warms up (buffers grow, pages fault in, the window opens).
    let warmup = bytes / 4;
    let mut out = SegmentCost {
        receive: Vec::new(),
        send: Vec::new(),
        segments: 0,
        payload_per_segment: 0.0,
    };
    let (mut rx_ns, mut rx_n, mut tx_ns, mut tx_n) = (0u64, 0u64, 0u64, 0u64);
    let (mut counted_bytes, mut counted_from, mut rx_total) = (0usize, None, 0u64);
    for _ in 0..10_000_000 {
        if got >= bytes {
            break;
        }
        let counting = got >= warmup;
        if counting && counted_from.is_none() {
            counted_from = Some(got);
        }
        if sent < bytes {
            if let Ok(n) = client.tcp_send(c, &data[..data.len().min(bytes - sent)]) {
                sent += n;
            }
        }
        let out_before = client.stats().packets_out;
        let in_before = server.stats().packets_in;
        let t0 = Instant::now();
        client.poll(t0, &mut cp)?;
        let t1 = Instant::now();
        server.poll(t1, &mut sp)?;
        let t2 = Instant::now();
        if counting {
            tx_ns += (t1 - t0).as_nanos() as u64;
            rx_ns += (t2 - t1).as_nanos() as u64;
            tx_n += client.stats().packets_out - out_before;
            let took = server.stats().packets_in - in_before;
            rx_n += took;
            rx_total += took;
            if rx_n >= BLOCK {
                out.receive.push(rx_ns as f64 / rx_n as f64);
                (rx_ns, rx_n) = (0, 0);
            }
            if tx_n >= BLOCK {
                out.send.push(tx_ns as f64 / tx_n as f64);
                (tx_ns, tx_n) = (0, 0);
            }
        }
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
        if let Some(from) = counted_from {
            counted_bytes = got - from;
        }
    }
    if got < bytes {
        return Err(io::Error::other(
            "sim link: the measured transfer did not finish",
        ));
    }
    out.segments = rx_total;
    if rx_total > 0 {
        out.payload_per_segment = counted_bytes as f64 / rx_total as f64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_and_a_transfer_complete() {
        let h = handshakes(5, 1).unwrap();
        assert_eq!((h.total.len(), h.server.len()), (5, 5));
        assert!(h.total.iter().zip(&h.server).all(|(t, s)| t >= s));
        let s = segment_cost(4 << 20).unwrap();
        assert!(!s.receive.is_empty() && !s.send.is_empty());
        assert!((s.payload_per_segment - 1448.0).abs() < 50.0);
    }
}
