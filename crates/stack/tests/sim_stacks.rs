//! Two stacks in one process over the simulated link: the notes' claims
//! and the socket calls, under a fake clock.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use oxcat_stack::{sim_link, Device, LinkConfig, SimPort, SocketHandle, Stack, StackConfig};
use oxcat_tcp::State;
use oxcat_wire::{Ipv4Packet, TcpPacket};

struct Pair {
    a: Stack,
    b: Stack,
    /// Side a's port takes full segments as pieces (as a TUN's writev
    /// does), side b's as one packet: every exchange runs both of the
    /// stack's ways of sending.
    pa: Gathering,
    pb: SimPort,
    now: Instant,
}

/// A port that says it gathers: the stack hands it a full segment as its
/// headers and the payload where it lies, and it counts them and sends the
/// joined packet on.
struct Gathering {
    port: SimPort,
    gathered: usize,
    /// Every IPv4 TCP segment with data that went out, in order: its
    /// sequence number, payload length, and whether it came in pieces.
    data_out: Vec<(u32, usize, bool)>,
    /// The device call this many calls from now fails (1: the next).
    fail_in: Option<usize>,
}

impl Gathering {
    /// Whether this call is the one to fail (then it sends nothing).
    fn fails(&mut self) -> bool {
        match self.fail_in {
            Some(1) => {
                self.fail_in = None;
                true
            }
            Some(n) => {
                self.fail_in = Some(n - 1);
                false
            }
            None => false,
        }
    }

    /// Checks every IPv4 TCP packet's checksum (a payload read from the
    /// wrong place would show here first) and logs the ones with data.
    fn log(&mut self, packet: &[u8], pieces: bool) {
        if packet.first().map(|b| b >> 4) != Some(4) || packet.get(9) != Some(&6) {
            return;
        }
        let ip = Ipv4Packet::new_checked(packet).expect("an IPv4 packet");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("a TCP segment");
        assert!(
            tcp.verify_checksum(ip.src_addr(), ip.dst_addr()),
            "a TCP segment went out with a bad checksum (pieces: {pieces})"
        );
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let tcp = &packet[ihl..];
        let len = total - ihl - usize::from(tcp[12] >> 4) * 4;
        if len > 0 {
            let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            self.data_out.push((seq, len, pieces));
        }
    }
}

impl std::ops::Deref for Gathering {
    type Target = SimPort;
    fn deref(&self) -> &SimPort {
        &self.port
    }
}

impl std::ops::DerefMut for Gathering {
    fn deref_mut(&mut self) -> &mut SimPort {
        &mut self.port
    }
}

impl Device for Gathering {
    fn mtu(&self) -> usize {
        self.port.mtu()
    }
    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        self.port.receive(now, buf)
    }
    fn transmit(&mut self, now: Instant, packet: &[u8]) -> std::io::Result<()> {
        if self.fails() {
            return Err(std::io::Error::other("injected device failure"));
        }
        self.log(packet, false);
        self.port.transmit(now, packet)
    }
    fn poll_at(&self) -> Option<Instant> {
        self.port.poll_at()
    }
    fn gathers(&self) -> bool {
        true
    }
    fn transmit_gather(
        &mut self,
        now: Instant,
        parts: &[&[u8]],
        _meta: Option<oxcat_stack::TxMeta>,
    ) -> std::io::Result<()> {
        if self.fails() {
            return Err(std::io::Error::other("injected device failure"));
        }
        self.gathered += 1;
        let packet = parts.concat();
        self.log(&packet, true);
        self.port.transmit(now, &packet)
    }
}

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

fn pair(link: LinkConfig, seed: u64) -> Pair {
    let now = Instant::now();
    let (pa, pb) = sim_link(link, seed);
    let cfg = |v4, v6, s| StackConfig {
        ipv4: Some(v4),
        ipv6: Some(v6),
        seed: s,
        ..StackConfig::default()
    };
    Pair {
        a: Stack::new(cfg(A4, A6, seed ^ 1), now),
        b: Stack::new(cfg(B4, B6, seed ^ 2), now),
        pa: Gathering {
            port: pa,
            gathered: 0,
            data_out: Vec::new(),
            fail_in: None,
        },
        pb,
        now,
    }
}

impl Pair {
    /// Polls both stacks, then moves the clock to the next event (bounded).
    fn step(&mut self) {
        self.a.poll(self.now, &mut self.pa).unwrap();
        self.b.poll(self.now, &mut self.pb).unwrap();
        let next = [
            self.pa.poll_at(),
            self.pb.poll_at(),
            self.a.poll_at(),
            self.b.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(t) = next {
            self.now = self.now.max(t);
        } else {
            self.now += Duration::from_millis(1);
        }
    }

    fn run_until(&mut self, what: &str, mut cond: impl FnMut(&mut Pair) -> bool) {
        for _ in 0..2_000_000 {
            if cond(self) {
                return;
            }
            self.step();
        }
        panic!(
            "never happened: {what}; clock {:?}; a {:?}; b {:?}; link {:?}; next a {:?} b {:?}",
            self.now.elapsed(),
            self.a.stats(),
            self.b.stats(),
            self.pa.stats(),
            self.a
                .poll_at()
                .map(|t| t.saturating_duration_since(self.now)),
            self.b
                .poll_at()
                .map(|t| t.saturating_duration_since(self.now))
        );
    }
}

fn sockaddr(ip: impl Into<std::net::IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn exchange(link: LinkConfig, seed: u64, v6: bool, size: usize) {
    let mut p = pair(link, seed);
    let (server_ip, any): (std::net::IpAddr, std::net::IpAddr) = if v6 {
        (B6.into(), Ipv6Addr::UNSPECIFIED.into())
    } else {
        (B4.into(), Ipv4Addr::UNSPECIFIED.into())
    };
    let now = p.now;
    let l = p.b.tcp_listen(sockaddr(any, 5000), 8, now).unwrap();
    let c =
        p.a.tcp_connect(sockaddr(server_ip, 5000), None, now)
            .unwrap();
    let up: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let down: Vec<u8> = (0..size).map(|i| (i * 13 % 253) as u8).collect();
    let mut server: Option<SocketHandle> = None;
    let (mut up_sent, mut down_sent) = (0, 0);
    let (mut up_got, mut down_got) = (Vec::new(), Vec::new());
    let (mut up_shut, mut down_shut) = (false, false);
    let mut buf = vec![0u8; 65536];
    let (mut up_eof, mut down_eof) = (false, false);
    let mut most_timers = 0;
    p.run_until("both directions delivered and EOF seen", |p| {
        let now = p.now;
        most_timers = most_timers.max(p.a.timer_entries().max(p.b.timer_entries()));
        if server.is_none() {
            server = p.b.tcp_accept(l).unwrap().map(|(h, _)| h);
        }
        if up_sent < up.len() {
            if let Ok(n) = p.a.tcp_send(c, &up[up_sent..]) {
                up_sent += n;
            }
        } else if !up_shut {
            p.a.tcp_shutdown_write(c, now).unwrap();
            up_shut = true;
        }
        loop {
            match p.a.tcp_recv(c, &mut buf) {
                Ok(0) => {
                    down_eof = true;
                    break;
                }
                Ok(n) => down_got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("client recv: {e}"),
            }
        }
        if let Some(s) = server {
            if down_sent < down.len() {
                if let Ok(n) = p.b.tcp_send(s, &down[down_sent..]) {
                    down_sent += n;
                }
            } else if !down_shut {
                p.b.tcp_shutdown_write(s, now).unwrap();
                down_shut = true;
            }
            loop {
                match p.b.tcp_recv(s, &mut buf) {
                    Ok(0) => {
                        up_eof = true;
                        break;
                    }
                    Ok(n) => up_got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("server recv: {e}"),
                }
            }
        }
        up_eof && down_eof
    });
    assert!(
        up_got == up,
        "client->server bytes differ ({} of {})",
        up_got.len(),
        up.len()
    );
    assert!(
        down_got == down,
        "server->client bytes differ ({} of {})",
        down_got.len(),
        down.len()
    );
    // Two sockets a side (listener, connection): a deadline that moves
    // later pushes nothing, so the heap stays a few entries, not one per
    // poll (it held thousands when every poll pushed).
    // Side a sent full segments as pieces (not those carrying SACK blocks,
    // which a lossy link brings: the general path builds them), side b
    // every one as a whole packet.
    assert!(
        size < 65536 || p.pa.gathered >= size / 1500 / 4,
        "{} segments gathered for {size} bytes",
        p.pa.gathered
    );
    eprintln!("most timer heap entries on one side: {most_timers}");
    assert!(most_timers <= 8, "timer heap grew to {most_timers} entries");
}

#[test]
fn tcp_over_ipv4_clean_link() {
    exchange(LinkConfig::default(), 1, false, 1 << 20);
}

#[test]
fn tcp_over_ipv6_clean_link() {
    exchange(LinkConfig::default(), 2, true, 1 << 20);
}

#[test]
fn tcp_over_a_bad_link() {
    let link = LinkConfig {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.1,
        corrupt: 0.01,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    exchange(link, 3, false, 300_000);
    exchange(link, 4, true, 300_000);
}

/// The notes: "The protocol stack of Linux does the handshaking without
/// involving the application" — the connection is ESTABLISHED on both ends
/// before the server calls accept.
#[test]
fn handshake_completes_before_accept() {
    let mut p = pair(LinkConfig::default(), 5);
    let now = p.now;
    let l = p.b.tcp_listen(sockaddr(B4, 80), 2, now).unwrap();
    let c = p.a.tcp_connect(sockaddr(B4, 80), None, now).unwrap();
    p.run_until("client established", |p| {
        p.a.tcp_state(c) == Some(State::Established)
    });
    for _ in 0..10 {
        p.step();
    }
    assert_eq!(
        p.b.tcp_listener(l).unwrap().accept_queue_len(),
        1,
        "waiting in the accept queue"
    );
    let (s, from) = p.b.tcp_accept(l).unwrap().expect("accept returns at once");
    assert_eq!(from.ip(), std::net::IpAddr::from(A4));
    assert_eq!(p.b.tcp_state(s), Some(State::Established));
}

/// The notes: "size of accept queue is bounded. If we don't accept the
/// ready connections, new connections would be dropped" — and they get in
/// later, once the server accepts.
#[test]
fn full_accept_queue_drops_then_admits() {
    let mut p = pair(LinkConfig::default(), 6);
    let now = p.now;
    let l = p.b.tcp_listen(sockaddr(B4, 80), 1, now).unwrap();
    let clients: Vec<SocketHandle> = (0..5)
        .map(|_| p.a.tcp_connect(sockaddr(B4, 80), None, now).unwrap())
        .collect();
    // Two seconds without accept: the queue fills, later handshakes wait.
    let t0 = p.now;
    p.run_until("two seconds pass", |p| p.now >= t0 + Duration::from_secs(2));
    let est = clients
        .iter()
        .filter(|&&c| p.a.tcp_state(c) == Some(State::Established))
        .count();
    let queued = p.b.tcp_listener(l).unwrap().accept_queue_len();
    assert_eq!(queued, 2, "backlog 1 holds two (Linux: backlog + 1)");
    let stats = p.b.tcp_listener(l).unwrap().stats();
    assert!(
        stats.syns_dropped_accept_full + stats.acks_dropped_accept_full > 0,
        "{stats:?}"
    );
    assert!(est >= 2, "the queued ones are established for the clients");
    // Accept as they come: all five get in, through SYN retransmissions.
    let mut accepted = 0;
    p.run_until("all five accepted", |p| {
        while let Ok(Some(_)) = p.b.tcp_accept(l) {
            accepted += 1;
        }
        accepted == 5
    });
}

#[test]
fn rst_for_a_closed_port_refuses_the_connect() {
    let mut p = pair(LinkConfig::default(), 7);
    let now = p.now;
    let c = p.a.tcp_connect(sockaddr(B4, 9), None, now).unwrap();
    p.run_until("refused", |p| p.a.tcp_state(c) == Some(State::Closed));
    let mut buf = [0u8; 4];
    assert_eq!(
        p.a.tcp_recv(c, &mut buf).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    assert_eq!(p.b.stats().tcp_resets_sent, 1);
}

/// A burst to a device that gathers is built whole before its packets go
/// (full segments as pieces, the rest as packets): they still leave in
/// the order they were built, the short last segment after the full ones,
/// and arrive intact.
#[test]
fn a_gathered_burst_leaves_in_order() {
    let mut p = pair(LinkConfig::default(), 11);
    let (c, s) = connected(&mut p, 81);
    let data: Vec<u8> = (0..2 * 1448 + 100).map(|i| (i * 31 % 251) as u8).collect();
    assert_eq!(p.a.tcp_send(c, &data).unwrap(), data.len());
    p.pa.data_out.clear();
    let now = p.now;
    p.a.poll(now, &mut p.pa).unwrap();
    let out = p.pa.data_out.clone();
    let lens: Vec<(usize, bool)> = out.iter().map(|&(_, len, g)| (len, g)).collect();
    assert_eq!(lens, [(1448, true), (1448, true), (100, false)], "{out:?}");
    assert!(
        out.windows(2)
            .all(|w| w[1].0 == w[0].0.wrapping_add(w[0].1 as u32)),
        "not in sequence order: {out:?}"
    );
    let mut got = Vec::new();
    p.run_until("the burst read", |p| {
        read_into(p, s, &mut got);
        got.len() >= data.len()
    });
    assert!(got == data, "bytes differ");
}

/// Reads what socket `h` of stack b has into `got`.
fn read_into(p: &mut Pair, h: SocketHandle, got: &mut Vec<u8>) {
    let mut buf = vec![0u8; 16384];
    while let Ok(n) = p.b.tcp_recv(h, &mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// A connection from a to b (nodelay on a's side): (a's socket, b's).
fn connected(p: &mut Pair, port: u16) -> (SocketHandle, SocketHandle) {
    let now = p.now;
    let l = p.b.tcp_listen(sockaddr(B4, port), 4, now).unwrap();
    let c = p.a.tcp_connect(sockaddr(B4, port), None, now).unwrap();
    p.a.tcp_set_nodelay(c, true).unwrap();
    let mut s = None;
    p.run_until("connected and accepted", |p| {
        if s.is_none() {
            s = p.b.tcp_accept(l).unwrap().map(|(h, _)| h);
        }
        s.is_some() && p.a.tcp_state(c) == Some(State::Established)
    });
    (c, s.unwrap())
}

/// The device fails one packet in the middle of a gathered burst: that
/// packet is lost as on a wire (the poll reports the error), the rest of
/// the burst still goes, and TCP retransmits the lost one.
#[test]
fn a_failed_write_in_a_gathered_burst_loses_that_packet_only() {
    let mut p = pair(LinkConfig::default(), 12);
    let data: Vec<u8> = (0..3 * 1448 + 100).map(|i| (i * 17 % 253) as u8).collect();
    let (c, s) = connected(&mut p, 82);
    assert_eq!(p.a.tcp_send(c, &data).unwrap(), data.len());
    p.pa.data_out.clear();
    p.pa.fail_in = Some(2);
    let now = p.now;
    let err =
        p.a.poll(now, &mut p.pa)
            .expect_err("the device's failure is reported");
    assert!(err.to_string().contains("injected"), "{err}");
    let lens: Vec<usize> = p.pa.data_out.iter().map(|&(_, len, _)| len).collect();
    assert_eq!(lens, [1448, 1448, 100], "the burst less its second packet");
    let mut got = Vec::new();
    p.run_until("every byte, the lost packet's resent", |p| {
        read_into(p, s, &mut got);
        got.len() >= data.len()
    });
    assert!(got == data, "bytes differ");
}

/// A device error while the stack sends for one socket must not strand
/// the others (or that one) without a timer or a next visit: every byte of
/// both connections still arrives.
#[test]
fn a_device_error_strands_no_socket() {
    let mut p = pair(LinkConfig::default(), 13);
    let one: Vec<u8> = (0..3000).map(|i| (i * 7 % 251) as u8).collect();
    let two: Vec<u8> = (0..3000).map(|i| (i * 11 % 241) as u8).collect();
    let (c1, s1) = connected(&mut p, 83);
    let (c2, s2) = connected(&mut p, 84);
    // Both owe data at the failing poll.
    assert_eq!(p.a.tcp_send(c1, &one).unwrap(), one.len());
    assert_eq!(p.a.tcp_send(c2, &two).unwrap(), two.len());
    p.pa.fail_in = Some(1);
    let now = p.now;
    assert!(p.a.poll(now, &mut p.pa).is_err());
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    for _ in 0..20_000 {
        read_into(&mut p, s1, &mut got1);
        read_into(&mut p, s2, &mut got2);
        if got1.len() >= one.len() && got2.len() >= two.len() {
            break;
        }
        p.step();
    }
    assert!(
        got1 == one,
        "first connection: {} of {} bytes",
        got1.len(),
        one.len()
    );
    assert!(
        got2 == two,
        "second connection: {} of {} bytes",
        got2.len(),
        two.len()
    );
}

/// The notes: close() with buffered bytes — "Kernel continues sending the
/// buffered bytes", then the FIN.
#[test]
fn close_drains_buffered_bytes_then_fin() {
    let mut p = pair(
        LinkConfig {
            delay: Duration::from_millis(5),
            ..LinkConfig::default()
        },
        8,
    );
    let now = p.now;
    let l = p.b.tcp_listen(sockaddr(B4, 80), 4, now).unwrap();
    let c = p.a.tcp_connect(sockaddr(B4, 80), None, now).unwrap();
    p.run_until("connected", |p| {
        p.a.tcp_state(c) == Some(State::Established)
    });
    let data = vec![0x5a; 200_000];
    let mut queued = 0;
    while queued < data.len() {
        match p.a.tcp_send(c, &data[queued..]) {
            Ok(n) => queued += n,
            Err(_) => break,
        }
    }
    assert!(
        queued > 100_000,
        "a large send is taken, perhaps partly: {queued}"
    );
    let now = p.now;
    p.a.close(c, now);
    let mut s = None;
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    p.run_until("all bytes then EOF", |p| {
        if s.is_none() {
            s = p.b.tcp_accept(l).unwrap().map(|(h, _)| h);
        }
        let Some(s) = s else { return false };
        loop {
            match p.b.tcp_recv(s, &mut buf) {
                Ok(0) => return true,
                Ok(n) => got += n,
                Err(_) => return false,
            }
        }
    });
    assert_eq!(got, queued);
}

#[test]
fn udp_keeps_datagram_boundaries_and_unreachable_ports_answer() {
    let mut p = pair(LinkConfig::default(), 9);
    let sa = p.a.udp_bind(sockaddr(A4, 0)).unwrap();
    let sb = p.b.udp_bind(sockaddr(B4, 53)).unwrap();
    p.a.udp_send_to(sa, b"one", sockaddr(B4, 53)).unwrap();
    p.a.udp_send_to(sa, b"two three", sockaddr(B4, 53)).unwrap();
    p.a.udp_send_to(sa, b"nobody", sockaddr(B4, 54)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    p.run_until("two datagrams", |p| {
        while let Ok((n, from)) = p.b.udp_recv_from(sb, &mut buf) {
            assert_eq!(from.ip(), std::net::IpAddr::from(A4));
            got.push(buf[..n].to_vec());
        }
        got.len() == 2
    });
    assert_eq!(got, vec![b"one".to_vec(), b"two three".to_vec()]);
    p.run_until("port unreachable sent", |p| {
        p.b.stats().udp_unreachable_sent == 1
    });
}

#[test]
#[ignore = "debugging aid"]
fn bad_link_variants() {
    let base = LinkConfig {
        delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    for (name, link) in [
        ("loss", LinkConfig { loss: 0.05, ..base }),
        (
            "dup",
            LinkConfig {
                duplicate: 0.02,
                ..base
            },
        ),
        (
            "reorder",
            LinkConfig {
                reorder: 0.1,
                ..base
            },
        ),
        (
            "corrupt",
            LinkConfig {
                corrupt: 0.01,
                ..base
            },
        ),
        (
            "jitter",
            LinkConfig {
                jitter: Duration::from_millis(5),
                ..base
            },
        ),
    ] {
        eprintln!("variant {name}");
        exchange(link, 3, false, 300_000);
        eprintln!("variant {name} ok");
    }
}

/// RFC 791 §3.2: a UDP datagram sent in three fragments, out of order,
/// arrives whole.
#[test]
fn fragmented_udp_datagram_is_reassembled() {
    use oxcat_wire::{IpProtocol, Ipv4Repr, UdpRepr};
    let mut p = pair(LinkConfig::default(), 10);
    let sb = p.b.udp_bind(sockaddr(B4, 4000)).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
    let mut udp = vec![0u8; 8 + data.len()];
    UdpRepr {
        src_port: 999,
        dst_port: 4000,
        payload_len: data.len(),
    }
    .emit(&mut udp, A4, B4, &data)
    .unwrap();
    let now = p.now;
    for (offset, end) in [(1480usize, 2960usize), (2960, udp.len()), (0, 1480)] {
        let piece = &udp[offset..end];
        let mut ip = Ipv4Repr::new(A4, B4, IpProtocol::UDP, piece.len());
        ip.dont_frag = false;
        ip.ident = 0x4242;
        ip.more_frags = end < udp.len();
        ip.frag_offset = offset as u16;
        let mut pkt = vec![0u8; 20 + piece.len()];
        ip.emit(&mut pkt).unwrap();
        pkt[20..].copy_from_slice(piece);
        p.pa.transmit(now, &pkt).unwrap();
    }
    let mut buf = vec![0u8; 4096];
    let mut got = None;
    p.run_until("the datagram", |p| {
        if let Ok((n, from)) = p.b.udp_recv_from(sb, &mut buf) {
            got = Some((buf[..n].to_vec(), from));
        }
        got.is_some()
    });
    let (bytes, from) = got.unwrap();
    assert_eq!(from, sockaddr(A4, 999));
    assert!(bytes == data, "{} bytes back", bytes.len());
}

/// Socket options: TCP_NODELAY sends a small write at once even with data
/// unacknowledged; SO_LINGER 0 resets; SO_REUSEADDR off refuses a port that
/// still has a connection; SO_RCVBUF limits the window.
#[test]
fn socket_options() {
    let mut p = pair(
        LinkConfig {
            delay: Duration::from_millis(50),
            ..LinkConfig::default()
        },
        11,
    );
    let now = p.now;
    let l = p.b.tcp_listen(sockaddr(B4, 7), 4, now).unwrap();
    let c = p.a.tcp_connect(sockaddr(B4, 7), None, now).unwrap();
    p.run_until("connected", |p| {
        p.a.tcp_state(c) == Some(State::Established)
    });
    let mut s = None;
    p.run_until("accepted", |p| {
        s = p.b.tcp_accept(l).unwrap().map(|(h, _)| h);
        s.is_some()
    });
    let s = s.unwrap();
    // Nagle: the second small write waits for the first's ACK (50 ms away) ...
    p.a.tcp_send(c, b"one").unwrap();
    p.a.tcp_send(c, b"two").unwrap();
    let sent_before = p.a.stats().packets_out;
    p.a.poll(p.now, &mut p.pa).unwrap();
    assert_eq!(
        p.a.stats().packets_out,
        sent_before + 1,
        "Nagle holds the second small segment"
    );
    // ... with TCP_NODELAY it goes at once.
    p.a.tcp_set_nodelay(c, true).unwrap();
    p.a.tcp_send(c, b"three").unwrap();
    p.a.poll(p.now, &mut p.pa).unwrap();
    assert_eq!(
        p.a.stats().packets_out,
        sent_before + 2,
        "nodelay sends the small segment"
    );
    // SO_REUSEADDR off: the port has a connection.
    let now = p.now;
    let e =
        p.b.tcp_listen_with(sockaddr(B4, 7), 4, false, now)
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    // SO_RCVBUF: a 2000-byte buffer caps what the peer may send.
    p.b.tcp_set_buffers(s, None, Some(2000)).unwrap();
    p.a.tcp_set_buffers(c, Some(8), None).unwrap();
    // SO_LINGER 0: close resets.
    let now = p.now;
    p.a.tcp_close_reset(c, now);
    let mut buf = [0u8; 64];
    p.run_until(
        "reset seen",
        |p| matches!(p.b.tcp_recv(s, &mut buf), Err(e) if e.kind() == ErrorKind::ConnectionReset),
    );
}

/// RFC 1191: an ICMP "fragmentation needed" (as a router on a narrower path
/// sends) lowers the connection's MSS; the transfer goes on over the
/// narrower link.
#[test]
fn path_mtu_discovery_from_icmp_frag_needed() {
    use oxcat_wire::{icmpv4, Icmpv4Repr, IpProtocol, Ipv4Repr};
    let mut p = pair(LinkConfig::default(), 12);
    let now = p.now;
    let l = p.b.tcp_listen(sockaddr(B4, 80), 4, now).unwrap();
    let c = p.a.tcp_connect(sockaddr(B4, 80), None, now).unwrap();
    p.run_until("connected", |p| {
        p.a.tcp_state(c) == Some(State::Established)
    });
    let tuple = p.a.tcp_endpoints(c).unwrap();
    assert!(p.a.tcp_connection(c).unwrap().send_mss() > 1400);
    // The path narrows to 1000 bytes; a router says so, quoting our header.
    p.pa.set_config(LinkConfig {
        mtu: 1000,
        ..LinkConfig::default()
    });
    let mut quoted = vec![0u8; 28];
    Ipv4Repr::new(A4, B4, IpProtocol::TCP, 1460)
        .emit(&mut quoted)
        .unwrap();
    quoted[20..22].copy_from_slice(&tuple.local.port().to_be_bytes());
    quoted[22..24].copy_from_slice(&80u16.to_be_bytes());
    let icmp = Icmpv4Repr::DstUnreachable {
        code: icmpv4::unreachable::FRAG_NEEDED,
        next_hop_mtu: 1000,
        original: &quoted,
    };
    let mut pkt = vec![0u8; 20 + icmp.buffer_len()];
    Ipv4Repr::new(B4, A4, IpProtocol::ICMP, icmp.buffer_len())
        .emit(&mut pkt)
        .unwrap();
    icmp.emit(&mut pkt[20..]).unwrap();
    let now = p.now;
    p.pb.transmit(now, &pkt).unwrap();
    p.run_until("MSS lowered", |p| p.a.stats().path_mtu_updates == 1);
    assert_eq!(p.a.tcp_connection(c).unwrap().send_mss(), 960);
    // 100 KB still arrive over the 1000-byte path.
    let data = vec![7u8; 100_000];
    let mut sent = 0;
    let mut s = None;
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    p.run_until("100 KB through the narrow path", |p| {
        if sent < data.len() {
            if let Ok(n) = p.a.tcp_send(c, &data[sent..]) {
                sent += n;
            }
        }
        if s.is_none() {
            s = p.b.tcp_accept(l).unwrap().map(|(h, _)| h);
        }
        if let Some(s) = s {
            while let Ok(n) = p.b.tcp_recv(s, &mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        got == data.len()
    });
    assert_eq!(
        p.pa.stats().too_big,
        0,
        "nothing was sent too big after the ICMP"
    );
}
