//! UDP through the blocking, std::net-shaped API (and, with the `tokio`
//! feature, the async one): two stacks on a simulated link, one stack
//! thread, real time.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use oxcat_stack::{sim_link, Device, LinkConfig, Runtime, Stack, StackConfig, StackId, UdpSocket};

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const STACK_A: StackId = StackId(0);
const STACK_B: StackId = StackId(1);

fn runtime() -> Runtime {
    Runtime::start(|| {
        let now = Instant::now();
        let (pa, pb) = sim_link(
            LinkConfig {
                delay: Duration::from_millis(1),
                ..LinkConfig::default()
            },
            17,
        );
        let cfg = |v4, v6, seed| StackConfig {
            ipv4: Some(v4),
            ipv6: Some(v6),
            seed,
            ..StackConfig::default()
        };
        vec![
            (
                Stack::new(cfg(A4, A6, 1), now),
                Box::new(pa) as Box<dyn Device>,
            ),
            (
                Stack::new(cfg(B4, B6, 2), now),
                Box::new(pb) as Box<dyn Device>,
            ),
        ]
    })
    .expect("runtime")
}

fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Waits at most this long for anything that should arrive: a test that
/// fails does so with an error, not a hang.
const PATIENCE: Duration = Duration::from_secs(10);

fn patient(socket: &UdpSocket) -> &UdpSocket {
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// An echo server on B, a client on A, over IPv4 and IPv6: every datagram
/// comes back from the server's address, whole.
#[test]
fn echo_between_two_stacks() {
    let rt = runtime();
    for (server_ip, client_ip) in [(IpAddr::V4(B4), IpAddr::V4(A4)), (B6.into(), A6.into())] {
        let server = UdpSocket::bind(&rt, STACK_B, addr(server_ip, 7)).unwrap();
        let client = UdpSocket::bind(&rt, STACK_A, addr(client_ip, 0)).unwrap();
        let client_addr = client.local_addr().unwrap();
        assert_eq!(client_addr.ip(), client_ip);
        assert_ne!(client_addr.port(), 0, "an ephemeral port");
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = [0u8; 2048];
                for _ in 0..3 {
                    let (n, from) = patient(&server).recv_from(&mut buf).unwrap();
                    assert_eq!(from, client_addr);
                    server.send_to(&buf[..n], from).unwrap();
                }
            });
            let mut buf = [0u8; 2048];
            for message in [&b"one"[..], b"", &[0xab; 1400]] {
                assert_eq!(
                    client.send_to(message, addr(server_ip, 7)).unwrap(),
                    message.len()
                );
                let (n, from) = patient(&client).recv_from(&mut buf).unwrap();
                assert_eq!(from, addr(server_ip, 7));
                assert_eq!(&buf[..n], message);
            }
        });
    }
}

/// Datagrams are messages: three sends are three receives of the same
/// sizes, never merged or split.
#[test]
fn datagram_boundaries_are_kept() {
    let rt = runtime();
    let server = UdpSocket::bind(&rt, STACK_B, addr(B4, 5000)).unwrap();
    let client = UdpSocket::bind(&rt, STACK_A, addr(A4, 5001)).unwrap();
    let messages: [&[u8]; 3] = [b"first", b"the second one", b"3"];
    for m in messages {
        client.send_to(m, addr(B4, 5000)).unwrap();
    }
    let mut buf = [0u8; 1024];
    for m in messages {
        let (n, from) = patient(&server).recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], m);
        assert_eq!(from, addr(A4, 5001));
    }
}

/// As with std: a buffer shorter than the datagram takes its first bytes
/// and the rest of that datagram is gone; the next receive is the next
/// datagram.
#[test]
fn a_short_buffer_truncates_the_datagram() {
    let rt = runtime();
    let server = UdpSocket::bind(&rt, STACK_B, addr(B6, 5000)).unwrap();
    let client = UdpSocket::bind(&rt, STACK_A, addr(A6, 0)).unwrap();
    client.send_to(b"0123456789", addr(B6, 5000)).unwrap();
    client.send_to(b"next", addr(B6, 5000)).unwrap();
    let mut short = [0u8; 4];
    assert_eq!(patient(&server).recv(&mut short).unwrap(), 4);
    assert_eq!(&short, b"0123");
    let mut buf = [0u8; 64];
    let n = server.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"next");
}

/// Datagrams larger than the link's MTU leave in fragments and are
/// reassembled (IPv4 and IPv6); one larger than a datagram can be is
/// refused with EMSGSIZE, as Linux does.
#[test]
fn large_datagrams_go_in_fragments() {
    let rt = runtime();
    for (server_ip, client_ip, largest) in [
        (IpAddr::V4(B4), IpAddr::V4(A4), 65507),
        (B6.into(), A6.into(), 65527),
    ] {
        let server = UdpSocket::bind(&rt, STACK_B, addr(server_ip, 6000)).unwrap();
        let client = UdpSocket::bind(&rt, STACK_A, addr(client_ip, 0)).unwrap();
        let mut buf = vec![0u8; 70_000];
        for size in [1473, 20_000, largest] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            client.send_to(&data, addr(server_ip, 6000)).unwrap();
            let n = patient(&server).recv(&mut buf).unwrap();
            assert!(buf[..n] == data[..], "{n} bytes of {size} over {server_ip}");
        }
        let e = client
            .send_to(&vec![0u8; largest + 1], addr(server_ip, 6000))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
    }
    let stats = rt.with_stack(STACK_B, |s| s.stats());
    assert_eq!(stats.fragments_dropped, 0, "{stats:?}");
}

/// `connect` sets where `send` goes and filters what `recv` hears: a
/// stranger's datagram is not received (and is answered port
/// unreachable); the peer's is.
#[test]
fn a_connected_socket_hears_only_its_peer() {
    let rt = runtime();
    let server = UdpSocket::bind(&rt, STACK_B, addr(B4, 4000)).unwrap();
    let peer = UdpSocket::bind(&rt, STACK_A, addr(A4, 4001)).unwrap();
    let stranger = UdpSocket::bind(&rt, STACK_A, addr(A4, 4002)).unwrap();
    assert_eq!(
        server.peer_addr().unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_eq!(
        server.send(b"nobody").unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    server.connect(addr(A4, 4001)).unwrap();
    assert_eq!(server.peer_addr().unwrap(), addr(A4, 4001));
    let unreachable_before = rt.with_stack(STACK_B, |s| s.stats().udp_unreachable_sent);
    stranger
        .send_to(b"from a stranger", addr(B4, 4000))
        .unwrap();
    // The stranger's datagram is answered before the peer's is sent.
    let deadline = Instant::now() + PATIENCE;
    while rt.with_stack(STACK_B, |s| s.stats().udp_unreachable_sent) == unreachable_before {
        assert!(Instant::now() < deadline, "no port unreachable");
        std::thread::sleep(Duration::from_millis(1));
    }
    peer.send_to(b"from the peer", addr(B4, 4000)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = patient(&server).recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"from the peer"[..], addr(A4, 4001)));
    // `send` goes to the peer without an address.
    server.send(b"reply").unwrap();
    let (n, from) = patient(&peer).recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"reply"[..], addr(B4, 4000)));
    // Nothing else is waiting: the stranger's datagram was never queued.
    server.set_nonblocking(true).unwrap();
    assert_eq!(
        server.recv(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

/// As std on Linux: a connected socket that sent to a closed port hears
/// of it (ICMP port unreachable) as ConnectionRefused, once; an
/// unconnected one hears nothing.
#[test]
fn a_closed_port_refuses_a_connected_socket() {
    let rt = runtime();
    for (closed, client_ip) in [(addr(B4, 9), IpAddr::V4(A4)), (addr(B6, 9), A6.into())] {
        let client = UdpSocket::bind(&rt, STACK_A, addr(client_ip, 0)).unwrap();
        client.connect(closed).unwrap();
        client.send(b"anyone?").unwrap();
        let mut buf = [0u8; 16];
        let e = patient(&client).recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{closed}");
        // Reported once: the next call waits as usual.
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let e = client.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{closed}");

        let unconnected = UdpSocket::bind(&rt, STACK_A, addr(client_ip, 0)).unwrap();
        unconnected.send_to(b"anyone?", closed).unwrap();
        unconnected
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let e = unconnected.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{closed}");
    }
}

/// SO_RCVTIMEO as std on Unix: a receive that waits longer than the
/// timeout fails with WouldBlock; a zero timeout is refused; non-blocking
/// mode says WouldBlock at once.
#[test]
fn read_timeout_and_nonblocking() {
    let rt = runtime();
    let socket = UdpSocket::bind(&rt, STACK_B, addr(B4, 0)).unwrap();
    assert_eq!(socket.read_timeout().unwrap(), None);
    let timeout = Duration::from_millis(100);
    socket.set_read_timeout(Some(timeout)).unwrap();
    assert_eq!(socket.read_timeout().unwrap(), Some(timeout));
    let mut buf = [0u8; 16];
    let started = Instant::now();
    let e = socket.recv_from(&mut buf).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(
        waited >= timeout && waited < timeout * 20,
        "waited {waited:?}"
    );
    assert_eq!(
        socket
            .set_read_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    socket.set_read_timeout(None).unwrap();
    socket.set_nonblocking(true).unwrap();
    let started = Instant::now();
    assert_eq!(
        socket.recv(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Binding errors std would give: a port already bound (on the address, or
/// through the unspecified address) is AddrInUse; an address the stack
/// does not have is AddrNotAvailable. Dropping the socket frees the port.
#[test]
fn bind_errors_and_drop_frees_the_port() {
    let rt = runtime();
    let first = UdpSocket::bind(&rt, STACK_B, addr(B4, 53)).unwrap();
    for clash in [addr(B4, 53), addr(Ipv4Addr::UNSPECIFIED, 53)] {
        let e = UdpSocket::bind(&rt, STACK_B, clash).err().expect("in use");
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{clash}");
    }
    // Another family, or another port, is free.
    let _v6 = UdpSocket::bind(&rt, STACK_B, addr(B6, 53)).unwrap();
    let _other = UdpSocket::bind(&rt, STACK_B, addr(B4, 54)).unwrap();
    let e = UdpSocket::bind(&rt, STACK_B, addr(A4, 53))
        .err()
        .expect("not ours");
    assert_eq!(e.kind(), ErrorKind::AddrNotAvailable);
    drop(first);
    let again = UdpSocket::bind(&rt, STACK_B, addr(Ipv4Addr::UNSPECIFIED, 53)).unwrap();
    assert_eq!(again.local_addr().unwrap(), addr(Ipv4Addr::UNSPECIFIED, 53));
    // Sending errors: another family, port 0.
    let e = again.send_to(b"x", addr(A6, 9)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EAFNOSUPPORT), "{e}");
    let e = again.send_to(b"x", addr(A4, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

/// What was sent before the socket is dropped still goes, as the kernel's
/// datagrams have left by the time `sendto` returns.
#[test]
fn datagrams_sent_before_drop_still_arrive() {
    let rt = runtime();
    let server = UdpSocket::bind(&rt, STACK_B, addr(B6, 9999)).unwrap();
    let client = UdpSocket::bind(&rt, STACK_A, addr(A6, 0)).unwrap();
    for i in 0..10u8 {
        client.send_to(&[i; 3000], addr(B6, 9999)).unwrap();
    }
    drop(client);
    let mut buf = [0u8; 4096];
    for i in 0..10u8 {
        let n = patient(&server).recv(&mut buf).unwrap();
        assert_eq!(n, 3000);
        assert!(buf[..n].iter().all(|&b| b == i), "datagram {i}");
    }
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::*;
    use oxcat_stack::AsyncUdpSocket;

    /// The async socket: an echo server task and a client task on one
    /// current-thread runtime, over IPv6 and IPv4; connect + send/recv too.
    #[tokio::test(flavor = "current_thread")]
    async fn async_udp_echo() {
        let rt = runtime();
        for (server_ip, client_ip) in [(IpAddr::V6(B6), IpAddr::V6(A6)), (B4.into(), A4.into())] {
            let server = AsyncUdpSocket::bind(&rt, STACK_B, addr(server_ip, 7)).unwrap();
            let client = AsyncUdpSocket::bind(&rt, STACK_A, addr(client_ip, 0)).unwrap();
            let client_addr = client.local_addr().unwrap();
            let serve = async {
                let mut buf = vec![0u8; 8192];
                for _ in 0..4 {
                    let (n, from) = server.recv_from(&mut buf).await.unwrap();
                    assert_eq!(from, client_addr);
                    server.send_to(&buf[..n], from).await.unwrap();
                }
            };
            let talk = async {
                let mut buf = vec![0u8; 8192];
                let mut back = Vec::new();
                for size in [1, 100, 5000] {
                    let data = vec![size as u8; size];
                    client.send_to(&data, addr(server_ip, 7)).await.unwrap();
                    let (n, from) = client.recv_from(&mut buf).await.unwrap();
                    assert_eq!(from, addr(server_ip, 7));
                    back.push(buf[..n].to_vec() == data);
                }
                client.connect(addr(server_ip, 7)).await.unwrap();
                assert_eq!(client.peer_addr().unwrap(), addr(server_ip, 7));
                client.send(b"connected").await.unwrap();
                let n = client.recv(&mut buf).await.unwrap();
                back.push(&buf[..n] == b"connected");
                back
            };
            let ((), back) = tokio::join!(serve, talk);
            assert_eq!(back, [true; 4]);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_bind_errors() {
        let rt = runtime();
        let _first = AsyncUdpSocket::bind(&rt, STACK_A, addr(A4, 53)).unwrap();
        let e = AsyncUdpSocket::bind(&rt, STACK_A, addr(A4, 53))
            .err()
            .expect("in use");
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
    }
}
