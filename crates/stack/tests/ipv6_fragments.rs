//! IPv6 reassembly (RFC 8200 §4.5) between two stacks on the simulated
//! link, under a fake clock: fragmented UDP and TCP arrive whole; overlaps
//! (RFC 5722) and fragments that wait too long are dropped.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use oxcat_stack::{sim_link, Device, LinkConfig, SimPort, SocketHandle, Stack, StackConfig};
use oxcat_wire::{ipv6, IpProtocol, Ipv6Packet, Ipv6Repr, UdpRepr};

const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// A device that fragments every IPv6 packet longer than `threshold` as a
/// sending host does (RFC 8200 §4.5), and sends the fragments last first,
/// so the receiver always reassembles out of order.
struct Fragmenting<D> {
    inner: D,
    threshold: usize,
    next_ident: u32,
    fragmented: u64,
}

impl<D: Device> Device for Fragmenting<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        self.inner.receive(now, buf)
    }
    fn transmit(&mut self, now: Instant, packet: &[u8]) -> std::io::Result<()> {
        if packet.len() <= self.threshold || packet.first().map(|b| b >> 4) != Some(6) {
            return self.inner.transmit(now, packet);
        }
        self.next_ident = self.next_ident.wrapping_add(1);
        self.fragmented += 1;
        let piece = (self.threshold - 48) / 8 * 8;
        for fragment in fragment_v6(packet, self.next_ident, piece).iter().rev() {
            self.inner.transmit(now, fragment)?;
        }
        Ok(())
    }
    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }
}

/// Splits a whole IPv6 packet into fragments of `piece` bytes of data
/// (a multiple of 8). The unfragmentable part is the fixed header and a
/// hop-by-hop header if there is one; the fragment header goes after it
/// and takes over the Next Header value that followed.
fn fragment_v6(packet: &[u8], ident: u32, piece: usize) -> Vec<Vec<u8>> {
    let p = Ipv6Packet::new_checked(packet).expect("a whole IPv6 packet");
    let payload = p.payload();
    let (unfragmentable_ext, next_header) = if p.next_header() == IpProtocol::HOP_BY_HOP {
        let len = (usize::from(payload[1]) + 1) * 8;
        (&payload[..len], IpProtocol(payload[0]))
    } else {
        (&payload[..0], p.next_header())
    };
    let fragmentable = &payload[unfragmentable_ext.len()..];
    fragments_of(
        &packet[..ipv6::HEADER_LEN],
        unfragmentable_ext,
        next_header,
        fragmentable,
        ident,
        &chunks(fragmentable.len(), piece),
    )
}

/// Byte ranges of `len` bytes cut into pieces of `piece`.
fn chunks(len: usize, piece: usize) -> Vec<(usize, usize)> {
    (0..len)
        .step_by(piece)
        .map(|s| (s, (s + piece).min(len)))
        .collect()
}

/// Fragment packets carrying `fragmentable[s..e]` for each range given
/// (ranges may overlap or leave gaps: tests want both). `fixed` is the
/// original fixed header; `unfragmentable_ext` one extension header to
/// put before the fragment header (its Next Header field is set here to
/// name the fragment header), or nothing.
fn fragments_of(
    fixed: &[u8],
    unfragmentable_ext: &[u8],
    next_header: IpProtocol,
    fragmentable: &[u8],
    ident: u32,
    ranges: &[(usize, usize)],
) -> Vec<Vec<u8>> {
    let total = fragmentable.len();
    ranges
        .iter()
        .map(|&(s, e)| {
            let mut out = fixed.to_vec();
            let mut ext = unfragmentable_ext.to_vec();
            if ext.is_empty() {
                out[6] = IpProtocol::IPV6_FRAG.0;
            } else {
                ext[0] = IpProtocol::IPV6_FRAG.0;
            }
            out.extend_from_slice(&ext);
            let more = u16::from(e < total);
            let offset_flags = (s as u16) | more;
            out.push(next_header.0);
            out.push(0);
            out.extend_from_slice(&offset_flags.to_be_bytes());
            out.extend_from_slice(&ident.to_be_bytes());
            out.extend_from_slice(&fragmentable[s..e]);
            let payload_len = (out.len() - ipv6::HEADER_LEN) as u16;
            Ipv6Packet::new_unchecked(&mut out[..]).set_payload_len(payload_len);
            out
        })
        .collect()
}

/// A whole IPv6 packet carrying a UDP datagram from A to B.
fn udp_packet(src_port: u16, dst_port: u16, data: &[u8]) -> Vec<u8> {
    let udp_len = 8 + data.len();
    let mut packet = vec![0u8; ipv6::HEADER_LEN + udp_len];
    Ipv6Repr::new(A6, B6, IpProtocol::UDP, udp_len)
        .emit(&mut packet)
        .unwrap();
    UdpRepr {
        src_port,
        dst_port,
        payload_len: data.len(),
    }
    .emit(&mut packet[ipv6::HEADER_LEN..], A6, B6, data)
    .unwrap();
    packet
}

struct Pair<DA, DB> {
    a: Stack,
    b: Stack,
    da: DA,
    db: DB,
    now: Instant,
}

fn stacks(now: Instant) -> (Stack, Stack) {
    let cfg = |v6, seed| StackConfig {
        ipv6: Some(v6),
        seed,
        ..StackConfig::default()
    };
    (Stack::new(cfg(A6, 1), now), Stack::new(cfg(B6, 2), now))
}

fn pair(link: LinkConfig) -> Pair<SimPort, SimPort> {
    let now = Instant::now();
    let (da, db) = sim_link(link, 6);
    let (a, b) = stacks(now);
    Pair { a, b, da, db, now }
}

impl<DA: Device, DB: Device> Pair<DA, DB> {
    /// Polls both stacks, then moves the clock to the next event.
    fn step(&mut self) {
        self.a.poll(self.now, &mut self.da).unwrap();
        self.b.poll(self.now, &mut self.db).unwrap();
        let next = [
            self.da.poll_at(),
            self.db.poll_at(),
            self.a.poll_at(),
            self.b.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        self.now = next.map_or(self.now + Duration::from_millis(1), |t| self.now.max(t));
    }

    fn run_until(&mut self, what: &str, mut cond: impl FnMut(&mut Self) -> bool) {
        for _ in 0..1_000_000 {
            if cond(self) {
                return;
            }
            self.step();
        }
        panic!(
            "never happened: {what}; a {:?}; b {:?}",
            self.a.stats(),
            self.b.stats()
        );
    }

    /// Runs for `steps` rounds, collecting what arrives on `socket` of B.
    fn collect(&mut self, socket: SocketHandle, steps: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..steps {
            self.step();
            while let Ok((n, from)) = self.b.udp_recv_from(socket, &mut buf) {
                got.push((buf[..n].to_vec(), from));
            }
        }
        got
    }
}

fn sockaddr(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(ip), port)
}

/// RFC 8200 §4.5: a UDP datagram in three fragments, out of order, with a
/// hop-by-hop header in the unfragmentable part, arrives whole; the
/// reassembled packet's hop-by-hop header names UDP.
#[test]
fn fragmented_udp_over_ipv6_is_reassembled() {
    let mut p = pair(LinkConfig::default());
    let sb = p.b.udp_bind(sockaddr(B6, 4000)).unwrap();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let whole = udp_packet(999, 4000, &data);
    let udp = &whole[ipv6::HEADER_LEN..];
    // Hop-by-hop with a PadN option, 8 bytes; its Next Header is set per fragment.
    let hop_by_hop = [0, 0, 1, 4, 0, 0, 0, 0];
    let mut fixed = whole[..ipv6::HEADER_LEN].to_vec();
    fixed[6] = IpProtocol::HOP_BY_HOP.0;
    let fragments = fragments_of(
        &fixed,
        &hop_by_hop,
        IpProtocol::UDP,
        udp,
        0xfeed,
        &[(1440, 2880), (2880, udp.len()), (0, 1440)],
    );
    let now = p.now;
    for f in &fragments {
        assert!(f.len() <= 1500);
        p.da.transmit(now, f).unwrap();
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
    assert_eq!(from, sockaddr(A6, 999));
    assert!(bytes == data, "{} bytes back", bytes.len());
    let stats = p.b.stats();
    assert_eq!(stats.fragments_dropped, 0, "{stats:?}");
    assert_eq!(stats.malformed, 0, "{stats:?}");
    assert_eq!(stats.udp_unreachable_sent, 0, "{stats:?}");
}

/// A fragmented datagram to a port nobody listens on is answered, once
/// reassembled, with port unreachable quoting the reassembled packet (no
/// fragment header in it).
#[test]
fn reassembled_datagram_to_a_closed_port_is_unreachable() {
    let mut p = pair(LinkConfig::default());
    let whole = udp_packet(999, 9, &[7u8; 2000]);
    let now = p.now;
    for f in fragment_v6(&whole, 77, 1024) {
        p.da.transmit(now, &f).unwrap();
    }
    p.run_until("port unreachable", |p| {
        p.b.stats().udp_unreachable_sent == 1
    });
}

/// TCP over IPv6 both ways through senders that fragment every segment
/// longer than 600 bytes (and send the pieces last first), over a link that
/// also duplicates and reorders: every byte arrives, in order, once.
#[test]
fn tcp_over_ipv6_through_fragmenting_senders() {
    let now = Instant::now();
    let link = LinkConfig {
        duplicate: 0.02,
        reorder: 0.05,
        delay: Duration::from_millis(2),
        ..LinkConfig::default()
    };
    let (pa, pb) = sim_link(link, 9);
    let (a, b) = stacks(now);
    let fragmenting = |inner| Fragmenting {
        inner,
        threshold: 600,
        next_ident: 0,
        fragmented: 0,
    };
    let mut p = Pair {
        a,
        b,
        da: fragmenting(pa),
        db: fragmenting(pb),
        now,
    };
    let l =
        p.b.tcp_listen(sockaddr(Ipv6Addr::UNSPECIFIED, 80), 4, now)
            .unwrap();
    let c = p.a.tcp_connect(sockaddr(B6, 80), None, now).unwrap();
    let up: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut server = None;
    let (mut sent, mut echoed) = (0, 0);
    let (mut at_server, mut back) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65536];
    p.run_until("the bytes there and back", |p| {
        if server.is_none() {
            server = p.b.tcp_accept(l).unwrap().map(|(h, _)| h);
        }
        if sent < up.len() {
            if let Ok(n) = p.a.tcp_send(c, &up[sent..]) {
                sent += n;
            }
        }
        if let Some(s) = server {
            match p.b.tcp_recv(s, &mut buf) {
                Ok(n) => at_server.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("server recv: {e}"),
            }
            if echoed < at_server.len() {
                if let Ok(n) = p.b.tcp_send(s, &at_server[echoed..]) {
                    echoed += n;
                }
            }
        }
        match p.a.tcp_recv(c, &mut buf) {
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("client recv: {e}"),
        }
        back.len() >= up.len()
    });
    assert!(at_server == up, "{} bytes at the server", at_server.len());
    assert!(back == up, "{} bytes back", back.len());
    assert!(p.da.fragmented > 100, "{} fragmented", p.da.fragmented);
    assert!(p.db.fragmented > 100, "{} fragmented", p.db.fragmented);
    // Duplicated fragments are dropped alone; nothing overlapped.
    for stats in [p.a.stats(), p.b.stats()] {
        assert_eq!(stats.malformed, 0, "{stats:?}");
    }
}

/// RFC 5722 §4: a fragment overlapping another discards the whole
/// datagram, the fragments already queued and any that come later; a
/// clean copy under a new identification still gets through.
#[test]
fn overlapping_fragments_drop_the_datagram() {
    let mut p = pair(LinkConfig::default());
    let sb = p.b.udp_bind(sockaddr(B6, 4000)).unwrap();
    let data = vec![0x5a; 2000];
    let whole = udp_packet(999, 4000, &data);
    let (fixed, udp) = whole.split_at(ipv6::HEADER_LEN);
    let overlapping = fragments_of(
        fixed,
        &[],
        IpProtocol::UDP,
        udp,
        1,
        // The second piece starts 8 bytes inside the first.
        &[(0, 1024), (1016, udp.len())],
    );
    let now = p.now;
    for f in &overlapping {
        p.da.transmit(now, f).unwrap();
    }
    let got = p.collect(sb, 50);
    assert!(got.is_empty(), "an overlapped datagram was delivered");
    assert_eq!(p.b.stats().fragments_dropped, 1, "{:?}", p.b.stats());
    // The datagram is gone: the missing range, sent now, does not complete it.
    let rest = fragments_of(fixed, &[], IpProtocol::UDP, udp, 1, &[(1024, udp.len())]);
    let now = p.now;
    p.da.transmit(now, &rest[0]).unwrap();
    assert!(p.collect(sb, 50).is_empty());
    // A clean copy under a new identification arrives.
    let now = p.now;
    for f in fragment_v6(&whole, 2, 1024) {
        p.da.transmit(now, &f).unwrap();
    }
    let got = p.collect(sb, 50);
    assert_eq!(got.len(), 1);
    assert!(got[0].0 == data);
}

/// RFC 8200 §4.5: reassembly is abandoned 60 seconds after the first
/// fragment arrived; the pieces that come after that never make the
/// datagram, and the loss is counted.
#[test]
fn fragments_that_wait_too_long_are_dropped() {
    let mut p = pair(LinkConfig::default());
    let sb = p.b.udp_bind(sockaddr(B6, 4000)).unwrap();
    let whole = udp_packet(999, 4000, &[1u8; 3000]);
    let fragments = fragment_v6(&whole, 3, 1448);
    assert_eq!(fragments.len(), 3);
    let now = p.now;
    p.da.transmit(now, &fragments[0]).unwrap();
    assert!(p.collect(sb, 10).is_empty());
    // 61 seconds later, the rest.
    p.now += Duration::from_secs(61);
    let now = p.now;
    for f in &fragments[1..] {
        p.da.transmit(now, f).unwrap();
    }
    assert!(p.collect(sb, 50).is_empty(), "delivered after the timeout");
    assert_eq!(p.b.stats().fragments_dropped, 1, "{:?}", p.b.stats());
    // Within the time, the same three pieces (new identification) arrive whole.
    let fragments = fragment_v6(&whole, 4, 1448);
    let now = p.now;
    p.da.transmit(now, &fragments[0]).unwrap();
    p.now += Duration::from_secs(59);
    let now = p.now;
    for f in &fragments[1..] {
        p.da.transmit(now, f).unwrap();
    }
    assert_eq!(p.collect(sb, 50).len(), 1);
}

/// RFC 6946: an atomic fragment (offset 0, M clear) is processed at once,
/// apart from fragments queued under the same identification, which it
/// neither completes nor disturbs.
#[test]
fn atomic_fragment_is_delivered_alone() {
    let mut p = pair(LinkConfig::default());
    let sb = p.b.udp_bind(sockaddr(B6, 4000)).unwrap();
    let big = udp_packet(999, 4000, &[2u8; 2000]);
    let big_fragments = fragment_v6(&big, 5, 1024);
    let small = udp_packet(999, 4000, b"atomic");
    let atomic = fragment_v6(&small, 5, 1024);
    assert_eq!(atomic.len(), 1);
    let now = p.now;
    p.da.transmit(now, &big_fragments[0]).unwrap();
    p.da.transmit(now, &atomic[0]).unwrap();
    p.da.transmit(now, &big_fragments[1]).unwrap();
    let got = p.collect(sb, 50);
    let sizes: Vec<usize> = got.iter().map(|(d, _)| d.len()).collect();
    assert_eq!(sizes, [6, 2000]);
    assert_eq!(got[0].0, b"atomic");
    assert_eq!(p.b.stats().fragments_dropped, 0);
}

/// RFC 8200 §4.5: a fragment that is not the last must be a multiple of 8
/// bytes long; one that is not drops the datagram, so the last fragment
/// alone never completes it.
#[test]
fn a_middle_fragment_of_odd_length_drops_the_datagram() {
    let mut p = pair(LinkConfig::default());
    let sb = p.b.udp_bind(sockaddr(B6, 4000)).unwrap();
    let whole = udp_packet(999, 4000, &[3u8; 100]);
    let (fixed, udp) = whole.split_at(ipv6::HEADER_LEN);
    let fragments = fragments_of(fixed, &[], IpProtocol::UDP, udp, 6, &[(0, 52), (56, 108)]);
    let now = p.now;
    for f in &fragments {
        p.da.transmit(now, f).unwrap();
    }
    assert!(p.collect(sb, 50).is_empty());
    assert!(p.b.stats().fragments_dropped >= 1, "{:?}", p.b.stats());
}
