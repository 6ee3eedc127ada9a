//! Fuzz the userspace stack (`oxcat_stack::Stack`) with forged packets.
//!
//! Stack A (the target: 198.18.0.2, fd00::2) has a TCP listener on port 80
//! (v4 and v6), a UDP socket on port 53, and an established connection from
//! stack B (198.18.0.1) that keeps exchanging data; both run over a plain
//! in-memory wire. Between polls the input injects packets into A: raw
//! bytes, or IPv4/IPv6 packets built around TCP segments (seq/ack near the
//! live connection's numbers, arbitrary flags, window, options and payload,
//! checksum right or wrong), UDP datagrams, ICMP/ICMPv6 errors quoting one of
//! A's own packets (path MTU, unreachable), and IP fragments with arbitrary
//! offsets; packets may come marked as checksum-offloaded. A's application
//! sends, reads, shuts down, closes and accepts; time moves on by up to
//! minutes.
//!
//! Invariants (a failed one is a crash): no panic (debug assertions and
//! overflow checks on); `poll` never returns an error from our devices;
//! after at most 8 polls at the same instant, `poll_at()` is `None` or later
//! than now (a timer that keeps coming due at once would spin an event loop);
//! every packet A sends is a well-formed IPv4/IPv6 packet no larger than the
//! MTU, its TCP/UDP checksum right.

#![no_main]

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use oxcat_stack::{Device, Offloads, RxMeta, SocketHandle, Stack, StackConfig};
use oxcat_wire::{
    Checksum, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpFlags, TcpPacket, TcpRepr,
    UdpPacket,
};

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const MTU: usize = 1500;

/// One end of the in-memory wire: what arrived for this stack, and
/// (with `marks`) whether each arrival comes checksum-offloaded.
#[derive(Default)]
struct Port {
    inbox: VecDeque<(Vec<u8>, bool)>,
    sent: Vec<Vec<u8>>,
    offloaded: bool,
    /// Takes full segments as pieces (`Device::transmit_gather`, joined by
    /// its default).
    gathers: bool,
}

impl Device for Port {
    fn mtu(&self) -> usize {
        MTU
    }
    fn receive(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.receive_meta(now, buf)?.map(|(n, _)| n))
    }
    fn receive_meta(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, RxMeta)>> {
        let Some((p, partial)) = self.inbox.pop_front() else {
            return Ok(None);
        };
        if buf.len() < p.len() {
            // The stack's buffer is sized for the MTU; a longer forged
            // packet is cut, as a device would.
            let n = buf.len();
            buf.copy_from_slice(&p[..n]);
            return Ok(Some((
                n,
                RxMeta {
                    checksum_partial: partial,
                },
            )));
        }
        buf[..p.len()].copy_from_slice(&p);
        Ok(Some((
            p.len(),
            RxMeta {
                checksum_partial: partial,
            },
        )))
    }
    fn transmit(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.sent.push(packet.to_vec());
        Ok(())
    }
    fn gathers(&self) -> bool {
        self.gathers
    }
    fn offloads(&self) -> Offloads {
        if self.offloaded {
            Offloads { tso_max: 65535 }
        } else {
            Offloads::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Bytes as a packet.
    Raw(Vec<u8>, bool),
    Tcp(TcpForge),
    Udp {
        v6: bool,
        to_port: u16,
        from_port: u16,
        payload: Vec<u8>,
        checksum: ChecksumChoice,
    },
    /// An ICMP error quoting one of A's recent packets (cut at `cut`).
    IcmpError {
        v6: bool,
        icmp_type: u8,
        code: u8,
        mtu: u16,
        which: u8,
        cut: u16,
        flip: Option<(u16, u8)>,
    },
    /// An IPv4 fragment of a UDP or TCP datagram.
    Fragment {
        ident: u16,
        offset: u16,
        more: bool,
        protocol: bool,
        payload: Vec<u8>,
    },
    /// Time passes (ms).
    Wait(u16),
    /// A's application.
    Send(u16),
    Recv(u16),
    ShutdownWrite,
    Close,
    Accept,
    UdpRecv,
    UdpSend {
        v6: bool,
        port: u16,
        len: u16,
    },
    /// B's application sends (keeps the real connection busy).
    PeerSend(u16),
    /// Deliver what each stack sent to the other (`drop_mask` drops some).
    Exchange {
        drop_mask: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum ChecksumChoice {
    Right,
    Wrong(u16),
    Zero,
    Offloaded,
}

#[derive(Arbitrary, Debug)]
struct TcpForge {
    v6: bool,
    /// 0: the live connection's ports; 1: the listener; else arbitrary.
    ports: u8,
    src_port: u16,
    dst_port: u16,
    /// Relative to what A expects next / last sent, or absolute.
    seq_delta: i32,
    ack_delta: i32,
    absolute: bool,
    flags: u8,
    window: u16,
    options: Vec<u8>,
    payload_len: u16,
    checksum: ChecksumChoice,
}

struct World {
    a: Stack,
    b: Stack,
    pa: Port,
    pb: Port,
    now: Instant,
    listener: SocketHandle,
    listener6: SocketHandle,
    udp: SocketHandle,
    /// A's end of the live connection, and B's.
    conn_a: Option<SocketHandle>,
    conn_b: SocketHandle,
    accepted: Vec<SocketHandle>,
    /// The live connection's ports (B's, A's).
    ports: (u16, u16),
    /// From A's last TCP segment to B: its seq and ack.
    last: (u32, u32),
    buf: Vec<u8>,
}

fn poll_a(w: &mut World) {
    let mut spins = 0;
    loop {
        w.a.poll(w.now, &mut w.pa)
            .expect("poll of an in-memory device");
        check_sent(w);
        match w.a.poll_at() {
            Some(t) if t <= w.now => {
                spins += 1;
                assert!(
                    spins < 8,
                    "poll_at stays at or before now after {spins} polls"
                );
            }
            _ => break,
        }
    }
}

fn poll_b(w: &mut World) {
    for _ in 0..8 {
        w.b.poll(w.now, &mut w.pb)
            .expect("poll of an in-memory device");
        if w.b.poll_at().is_none_or(|t| t > w.now) {
            break;
        }
    }
}

/// A's packets are well-formed; remember its latest segment's numbers.
fn check_sent(w: &mut World) {
    // With offloads the device cuts large segments and fills checksums in.
    let whole = !w.pa.offloaded;
    for p in &w.pa.sent {
        assert!(
            !whole || p.len() <= MTU,
            "A sent {} bytes over an MTU of {MTU}",
            p.len()
        );
        match p.first().map(|b| b >> 4) {
            Some(4) => {
                let ip = Ipv4Packet::new_checked(&p[..]).expect("A's IPv4 packet is well-formed");
                let repr = Ipv4Repr::parse(&ip).expect("A's IPv4 header checksum");
                if repr.more_frags || repr.frag_offset != 0 {
                    continue;
                }
                check_transport(
                    repr.protocol,
                    ip.payload(),
                    IpAddr::V4(repr.src),
                    IpAddr::V4(repr.dst),
                    whole,
                    &mut w.last,
                );
            }
            Some(6) => {
                let ip = Ipv6Packet::new_checked(&p[..]).expect("A's IPv6 packet is well-formed");
                let repr = Ipv6Repr::parse(&ip).expect("A's IPv6 header");
                check_transport(
                    repr.next_header,
                    ip.payload(),
                    IpAddr::V6(repr.src),
                    IpAddr::V6(repr.dst),
                    whole,
                    &mut w.last,
                );
            }
            v => panic!("A sent a packet of IP version {v:?}"),
        }
    }
}

fn check_transport(
    proto: IpProtocol,
    data: &[u8],
    src: IpAddr,
    dst: IpAddr,
    summed: bool,
    last: &mut (u32, u32),
) {
    match (proto, src, dst) {
        (IpProtocol::TCP, IpAddr::V4(s), IpAddr::V4(d)) => {
            let t = TcpPacket::new_checked(data).expect("A's TCP segment is well-formed");
            assert!(!summed || t.verify_checksum(s, d), "A's TCP checksum");
            *last = (t.seq_number(), t.ack_number());
        }
        (IpProtocol::TCP, IpAddr::V6(s), IpAddr::V6(d)) => {
            let t = TcpPacket::new_checked(data).expect("A's TCP segment is well-formed");
            assert!(!summed || t.verify_checksum(s, d), "A's TCP checksum");
        }
        (IpProtocol::UDP, IpAddr::V4(s), IpAddr::V4(d)) => {
            let u = UdpPacket::new_checked(data).expect("A's UDP datagram is well-formed");
            assert!(!summed || u.verify_checksum(s, d), "A's UDP checksum");
        }
        (IpProtocol::UDP, IpAddr::V6(s), IpAddr::V6(d)) => {
            let u = UdpPacket::new_checked(data).expect("A's UDP datagram is well-formed");
            assert!(!summed || u.verify_checksum(s, d), "A's UDP checksum");
        }
        _ => {}
    }
}

fn setup(offloaded: bool, gathers: bool) -> World {
    let now = Instant::now();
    let cfg = |v4, v6, seed| StackConfig {
        ipv4: Some(v4),
        ipv6: Some(v6),
        seed,
        ..StackConfig::default()
    };
    let mut a = Stack::new(cfg(A4, A6, 1), now);
    let mut b = Stack::new(cfg(B4, B6, 2), now);
    let listener6 = a
        .tcp_listen(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 80), 4, now)
        .unwrap();
    let listener = a
        .tcp_listen(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 80), 4, now)
        .unwrap();
    let udp = a.udp_bind(SocketAddr::new(A4.into(), 53)).unwrap();
    let conn_b = b
        .tcp_connect(SocketAddr::new(A4.into(), 80), Some(40000), now)
        .unwrap();
    let mut w = World {
        a,
        b,
        pa: Port {
            offloaded,
            gathers,
            ..Port::default()
        },
        pb: Port::default(),
        now,
        listener,
        listener6,
        udp,
        conn_a: None,
        conn_b,
        accepted: Vec::new(),
        ports: (40000, 80),
        last: (0, 0),
        buf: vec![0u8; 70000],
    };
    for _ in 0..8 {
        exchange(&mut w, 0);
    }
    w.conn_a = w.a.tcp_accept(w.listener).ok().flatten().map(|(h, _)| h);
    assert!(
        w.conn_a.is_some(),
        "the live connection was not accepted in setup: a {:?} b {:?} b state {:?} inbox {} {}",
        w.a.stats(),
        w.b.stats(),
        w.b.tcp_state(w.conn_b),
        w.pa.inbox.len(),
        w.pb.inbox.len()
    );
    assert_ne!(w.last, (0, 0), "A sent no segment in setup");
    w
}

fn exchange(w: &mut World, drop_mask: u8) {
    poll_b(w);
    poll_a(w);
    // A's packets with offloads carry partial checksums (the device would
    // finish them): B takes them as a checksum-offloaded arrival.
    let partial = w.pa.offloaded;
    for (i, p) in w.pa.sent.drain(..).enumerate() {
        if drop_mask >> (i % 8) & 1 == 0 {
            w.pb.inbox.push_back((p, partial));
        }
    }
    for (i, p) in w.pb.sent.drain(..).enumerate() {
        if drop_mask >> ((i + 4) % 8) & 1 == 0 {
            w.pa.inbox.push_back((p, false));
        }
    }
    poll_a(w);
    poll_b(w);
}

fn ip_packet(v6: bool, proto: IpProtocol, upper: &[u8]) -> Vec<u8> {
    if v6 {
        let ip = Ipv6Repr::new(B6, A6, proto, upper.len());
        let mut p = vec![0u8; ip.buffer_len() + upper.len()];
        ip.emit(&mut p).unwrap();
        p[ip.buffer_len()..].copy_from_slice(upper);
        p
    } else {
        let ip = Ipv4Repr::new(B4, A4, proto, upper.len());
        let mut p = vec![0u8; ip.buffer_len() + upper.len()];
        ip.emit(&mut p).unwrap();
        p[ip.buffer_len()..].copy_from_slice(upper);
        p
    }
}

/// Sets the transport checksum at `at` in `upper` as chosen; returns
/// whether the packet goes in marked checksum-offloaded.
fn apply_checksum(
    v6: bool,
    proto: IpProtocol,
    upper: &mut [u8],
    at: usize,
    choice: &ChecksumChoice,
) -> bool {
    if upper.len() < at + 2 {
        return false;
    }
    upper[at..at + 2].fill(0);
    let mut sum = if v6 {
        let mut s = Checksum::new();
        s.add_bytes(&B6.octets()).add_bytes(&A6.octets());
        s.add_u16((upper.len() >> 16) as u16)
            .add_u16(upper.len() as u16)
            .add_u16(u16::from(proto.0));
        s
    } else {
        let mut s = Checksum::new();
        s.add_bytes(&B4.octets()).add_bytes(&A4.octets());
        s.add_u16(u16::from(proto.0)).add_u16(upper.len() as u16);
        s
    };
    let pseudo = sum.sum();
    sum.add_bytes(upper);
    let right = sum.finish();
    match choice {
        ChecksumChoice::Right => upper[at..at + 2].copy_from_slice(&right.to_be_bytes()),
        ChecksumChoice::Wrong(x) => {
            upper[at..at + 2].copy_from_slice(&(right ^ x.max(&1)).to_be_bytes())
        }
        ChecksumChoice::Zero => {}
        ChecksumChoice::Offloaded => {
            upper[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            return true;
        }
    }
    false
}

fn forge_tcp(w: &World, f: &TcpForge) -> (Vec<u8>, bool) {
    let (sp, dp) = match f.ports % 4 {
        0 => w.ports,
        1 => (f.src_port, 80),
        _ => (f.src_port, f.dst_port),
    };
    let mut r = TcpRepr::new(sp, dp, TcpFlags(f.flags));
    let (seq, ack) = if f.absolute {
        (f.seq_delta as u32, f.ack_delta as u32)
    } else {
        // A's ack is the next byte it expects of B; its seq what B acks.
        (
            w.last.1.wrapping_add(f.seq_delta as u32),
            w.last.0.wrapping_add(f.ack_delta as u32),
        )
    };
    r.seq = seq;
    r.ack = ack;
    r.window = f.window;
    let payload_len = usize::from(f.payload_len) % 1600;
    r.payload_len = payload_len;
    // Header with no options from the repr; the forged options go in raw.
    let opts: Vec<u8> = f.options.iter().copied().take(40).collect();
    let opt_len = opts.len().div_ceil(4) * 4;
    let header_len = 20 + opt_len;
    let mut upper = vec![0u8; header_len + payload_len];
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    r.payload_len = payload_len;
    let mut scratch = vec![0u8; 20 + payload_len];
    if r.emit(&mut scratch, B4, A4, &payload).is_err() {
        return (Vec::new(), false);
    }
    upper[..20].copy_from_slice(&scratch[..20]);
    upper[12] = ((header_len / 4) as u8) << 4 | (upper[12] & 0x0f);
    upper[20..20 + opts.len()].copy_from_slice(&opts);
    upper[header_len..].copy_from_slice(&payload);
    let partial = apply_checksum(f.v6, IpProtocol::TCP, &mut upper, 16, &f.checksum);
    (ip_packet(f.v6, IpProtocol::TCP, &upper), partial)
}

fn run(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    // Bit 0: an offloading device (as `bool` reads it); bit 1: a gathering one.
    let mode = u.arbitrary::<u8>()?;
    let mut w = setup(mode & 1 == 1, mode & 2 == 2);
    let mut rounds = 0;
    while !u.is_empty() && rounds < 64 {
        rounds += 1;
        let op: Op = u.arbitrary()?;
        match op {
            Op::Raw(bytes, partial) => w.pa.inbox.push_back((bytes, partial)),
            Op::Tcp(f) => {
                let (p, partial) = forge_tcp(&w, &f);
                if !p.is_empty() {
                    w.pa.inbox.push_back((p, partial));
                }
            }
            Op::Udp {
                v6,
                to_port,
                from_port,
                payload,
                checksum,
            } => {
                let to = if to_port % 2 == 0 { 53 } else { to_port };
                let mut upper = vec![0u8; 8 + payload.len().min(2000)];
                upper[..2].copy_from_slice(&from_port.to_be_bytes());
                upper[2..4].copy_from_slice(&to.to_be_bytes());
                let len = upper.len() as u16;
                upper[4..6].copy_from_slice(&len.to_be_bytes());
                let n = upper.len() - 8;
                upper[8..].copy_from_slice(&payload[..n]);
                let partial = apply_checksum(v6, IpProtocol::UDP, &mut upper, 6, &checksum);
                w.pa.inbox
                    .push_back((ip_packet(v6, IpProtocol::UDP, &upper), partial));
            }
            Op::IcmpError {
                v6,
                icmp_type,
                code,
                mtu,
                which,
                cut,
                flip,
            } => {
                let quoted =
                    w.pb.inbox
                        .iter()
                        .rev()
                        .nth(usize::from(which) % 4)
                        .map(|(p, _)| p.clone());
                let mut quoted = quoted.unwrap_or_default();
                quoted.truncate(usize::from(cut) % 1400 + 1);
                if let Some((at, x)) = flip {
                    if !quoted.is_empty() {
                        let i = usize::from(at) % quoted.len();
                        quoted[i] ^= x;
                    }
                }
                let mut upper = vec![0u8; 8 + quoted.len()];
                upper[0] = if icmp_type % 3 == 0 {
                    icmp_type
                } else if v6 {
                    [1, 2, 3][usize::from(code) % 3]
                } else {
                    3
                };
                upper[1] = code;
                if v6 {
                    upper[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
                } else {
                    upper[6..8].copy_from_slice(&mtu.to_be_bytes());
                }
                upper[8..].copy_from_slice(&quoted);
                let proto = if v6 {
                    IpProtocol::ICMPV6
                } else {
                    IpProtocol::ICMP
                };
                if v6 {
                    apply_checksum(true, proto, &mut upper, 2, &ChecksumChoice::Right);
                } else {
                    let mut s = Checksum::new();
                    s.add_bytes(&upper);
                    let c = s.finish();
                    upper[2..4].copy_from_slice(&c.to_be_bytes());
                }
                w.pa.inbox.push_back((ip_packet(v6, proto, &upper), false));
            }
            Op::Fragment {
                ident,
                offset,
                more,
                protocol,
                payload,
            } => {
                let proto = if protocol {
                    IpProtocol::UDP
                } else {
                    IpProtocol::TCP
                };
                let payload = &payload[..payload.len().min(1400)];
                let mut p = ip_packet(false, proto, payload);
                p[4..6].copy_from_slice(&ident.to_be_bytes());
                let frag = (offset & 0x1fff) | if more { 0x2000 } else { 0 };
                p[6..8].copy_from_slice(&frag.to_be_bytes());
                p[10..12].fill(0);
                let mut s = Checksum::new();
                s.add_bytes(&p[..20]);
                let c = s.finish();
                p[10..12].copy_from_slice(&c.to_be_bytes());
                w.pa.inbox.push_back((p, false));
            }
            Op::Wait(ms) => {
                w.now += Duration::from_millis(u64::from(ms) * 8);
            }
            Op::Send(n) => {
                if let Some(h) = w.conn_a {
                    let data = vec![0x61u8; usize::from(n) % 20000];
                    let _ = w.a.tcp_send(h, &data);
                }
            }
            Op::Recv(n) => {
                if let Some(h) = w.conn_a {
                    let n = usize::from(n).clamp(1, w.buf.len());
                    let _ = w.a.tcp_recv(h, &mut w.buf[..n]);
                }
                for &h in &w.accepted {
                    let _ = w.a.tcp_recv(h, &mut w.buf[..4096]);
                }
            }
            Op::ShutdownWrite => {
                if let Some(h) = w.conn_a {
                    let _ = w.a.tcp_shutdown_write(h, w.now);
                }
            }
            Op::Close => {
                if let Some(h) = w.conn_a.take() {
                    w.a.close(h, w.now);
                }
            }
            Op::Accept => {
                let got = match w.a.tcp_accept(w.listener) {
                    Ok(Some(c)) => Some(c),
                    _ => w.a.tcp_accept(w.listener6).ok().flatten(),
                };
                if let Some((h, _)) = got {
                    if w.accepted.len() < 16 {
                        w.accepted.push(h);
                    } else {
                        w.a.close(h, w.now);
                    }
                }
            }
            Op::UdpRecv => {
                let _ = w.a.udp_recv_from(w.udp, &mut w.buf[..2048]);
            }
            Op::UdpSend { v6, port, len } => {
                let to: IpAddr = if v6 { B6.into() } else { B4.into() };
                let data = vec![7u8; usize::from(len) % 4000];
                let _ = w.a.udp_send_to(w.udp, &data, SocketAddr::new(to, port));
            }
            Op::PeerSend(n) => {
                let data = vec![0x62u8; usize::from(n) % 20000];
                let _ = w.b.tcp_send(w.conn_b, &data);
                let _ = w.b.tcp_recv(w.conn_b, &mut w.buf[..65536]);
            }
            Op::Exchange { drop_mask } => exchange(&mut w, drop_mask),
        }
        poll_a(&mut w);
        // What A sent to the forged packets goes nowhere but is checked.
        if w.pa.sent.len() > 256 {
            w.pa.sent.clear();
        }
    }
    // Let everything play out for a while: timers fire, nothing spins.
    for _ in 0..16 {
        w.now += Duration::from_millis(250);
        exchange(&mut w, 0);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
