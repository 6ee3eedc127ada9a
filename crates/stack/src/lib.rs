//! oxcat's userspace TCP/IP stack: IPv4 and IPv6 over a layer-3 device
//! (a Linux TUN device, or a simulated link joining two stacks in one
//! process), with TCP (the `oxcat-tcp` engine) and UDP sockets.
//!
//! `Stack::poll(now, &mut device)` moves packets and runs timers; nothing
//! in it blocks. The socket calls (`tcp_listen`, `tcp_connect`,
//! `tcp_accept`, `tcp_send`, `tcp_recv`, `close`, `udp_*`) are
//! non-blocking and report `io::ErrorKind`s as `std::net` does. On top of
//! them, one stack thread drives a blocking API shaped like `std::net`
//! ([`TcpListener`], [`TcpStream`], [`UdpSocket`]) and, with the `tokio`
//! feature, an async one (`AsyncTcpListener`, `AsyncTcpStream`,
//! `AsyncUdpSocket`).
//!
//! IPv4 and IPv6 fragments are reassembled ([`reassembly`]); UDP datagrams
//! larger than the MTU are sent in fragments.

#[cfg(feature = "tokio")]
pub mod asynchronous;
pub mod blocking;
pub mod device;
pub mod impaired;
pub mod pcap_tap;
pub mod reassembly;
mod segment_template;
pub mod sim_link;
pub mod stack;
mod trace_events;
pub mod tun;

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket};
pub use blocking::{Runtime, StackId, TcpListener, TcpStream, UdpSocket};
pub use device::{Device, Offloads, RxMeta, TxMeta};
pub use impaired::Impaired;
pub use pcap_tap::{PcapFile, PcapTap, Recorder, Tap};
pub use sim_link::{sim_link, LinkConfig, LinkStats, SimPort};
pub use stack::{close_error, FourTuple, SocketHandle, Stack, StackConfig, StackStats};
pub use tun::Tun;
