//! The stack: addresses, the socket table, and `poll`, which moves packets
//! between a device and the sockets and runs their timers. Nothing here
//! blocks; the owner calls `poll` when the device is readable or
//! `poll_at` says a timer is due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use oxcat_tcp::{
    CloseReason, Config as TcpConfig, Connection, Flags, Header, IsnGenerator, Listener, Options,
    Payload, RecvError, SackBlocks, SendError, SeqNum, State,
};
use oxcat_wire::{
    icmpv4, icmpv6, ipv6, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Fragment, Ipv6Packet, Ipv6Repr, TcpFlags, TcpPacket, TcpRepr,
    Timestamps, UdpPacket, UdpRepr, UpperLayer,
};

use crate::device::{Device, Offloads, TxMeta};
use crate::reassembly::{
    Fragment, FragmentKey, Ipv6FragmentKey, Reassembled, Reassembler, MAX_DATAGRAM,
};
use crate::segment_template::SegmentTemplate;
use crate::trace_events;

/// Packets taken in between two rounds of sending (ACKs and data).
const ACK_BATCH: usize = 32;

/// The most packets one `poll` takes in (as Linux's NAPI polls a device for
/// at most 64): a flood cannot keep `poll` from returning, and the
/// application reads what arrived while it is still in the cache. With
/// 4096, a bulk receive over TUN took ~1,200 packets (1.7 MB) per poll into
/// the receive buffer before the application read any, and the stack spent
/// 450-570 ns per packet; with 128, 140-260 ns (bench/seed, rows 3c/3d).
/// What is left waiting stays readable on the device, so the next poll
/// comes at once.
const RX_BUDGET: usize = 128;

/// The shortest payload sent from where it lies (`Device::transmit_gather`)
/// rather than copied into the frame: below it the copy costs less than
/// the device's handling of one more piece.
const GATHER_MIN: usize = 512;

/// The socket tables' hasher: foldhash, seeded at random per table (as
/// std's SipHash is, so a peer cannot aim its 4-tuples at one bucket), at
/// a fraction of SipHash's cost (~100 instructions a lookup, several
/// lookups per handshake).
type Seeded = foldhash::fast::RandomState;

/// The two ends of a connection, as the stack demultiplexes by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FourTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The addresses and ports as a few whole words (`SocketAddr`'s own
/// `Hash` feeds the hasher field by field, four to six calls per address:
/// a 4-tuple cost about 230 instructions of SipHash, hashed some eight
/// times per handshake). Equal tuples give equal words, as `Eq` needs;
/// IPv6 flow labels and scope ids are left out (they never tell two
/// connections apart here).
impl std::hash::Hash for FourTuple {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let ports = u32::from(self.local.port()) << 16 | u32::from(self.remote.port());
        match (self.local.ip(), self.remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                state.write_u64(u64::from(u32::from(l)) << 32 | u64::from(u32::from(r)));
                state.write_u32(ports);
            }
            (l, r) => {
                let bits = |a: IpAddr| match a {
                    IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
                    IpAddr::V6(v6) => u128::from(v6),
                };
                state.write_u128(bits(l));
                state.write_u128(bits(r));
                state.write_u32(ports);
            }
        }
    }
}

/// A socket's index in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketHandle(usize);

impl SocketHandle {
    /// The socket's number in its stack's table (what a trace shows, as
    /// a descriptor number on the kernel's sockets).
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug, Clone)]
pub struct StackConfig {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub tcp: TcpConfig,
    /// Seeds the ISN generator (RFC 6528) and ephemeral port choice.
    pub seed: u64,
    /// Ephemeral ports for connects without a local port (Linux: 32768-60999).
    pub ephemeral_ports: (u16, u16),
    /// Bytes a UDP socket queues before dropping arrivals.
    pub udp_buffer: usize,
    /// The device's MTU: the MSS we announce is this less the IP and TCP headers.
    pub mtu: usize,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            ipv4: None,
            ipv6: None,
            tcp: TcpConfig::default(),
            seed: 0x0c0f_fee0,
            ephemeral_ports: (32768, 60999),
            udp_buffer: 256 * 1024,
            mtu: 1500,
        }
    }
}

/// Counters of what the stack saw and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub malformed: u64,
    pub bad_checksum: u64,
    pub not_for_us: u64,
    /// Fragments given up on (overlaps, timeouts, limits).
    pub fragments_dropped: u64,
    pub tcp_resets_sent: u64,
    pub udp_unreachable_sent: u64,
    pub udp_dropped_full: u64,
    pub echo_replies: u64,
    /// ICMP "fragmentation needed" / "packet too big" that lowered a connection's MSS.
    pub path_mtu_updates: u64,
}

enum Socket {
    Free,
    TcpListener {
        local: SocketAddr,
        listener: Box<Listener<FourTuple>>,
    },
    TcpStream {
        tuple: FourTuple,
        conn: Box<Connection>,
        /// The application closed its handle: the connection finishes on its own.
        orphan: bool,
        /// Its IP header and ports, built once for the segments it sends.
        template: Option<SegmentTemplate>,
    },
    Udp {
        local: SocketAddr,
        /// Set by `udp_connect`: only this peer's datagrams are taken in.
        peer: Option<SocketAddr>,
        /// An error the peer's ICMP reported (port unreachable: refused),
        /// for the next call to return once, as Linux's `sk_err`.
        pending_error: Option<io::ErrorKind>,
        queue: VecDeque<(SocketAddr, Vec<u8>)>,
        queued_bytes: usize,
        out: VecDeque<(SocketAddr, Vec<u8>)>,
    },
}

/// Datagrams a UDP socket may have waiting to go out before `udp_send_to`
/// says `WouldBlock` (Linux bounds them by SO_SNDBUF; a count keeps the
/// bookkeeping in one place).
const UDP_SEND_QUEUE: usize = 256;

/// The largest UDP payload over IPv4: a 16-bit total length less the IPv4
/// and UDP headers (what Linux allows before EMSGSIZE).
const UDP_MAX_PAYLOAD_V4: usize = 65535 - 20 - 8;
/// The largest UDP payload over IPv6: a 16-bit Payload Length (RFC 8200
/// §3, no jumbograms) less the UDP header.
const UDP_MAX_PAYLOAD_V6: usize = 65535 - 8;

/// What sending a TCP segment needs of the stack, borrowed apart from the
/// socket table (the segment's payload is borrowed from a socket).
struct TcpTx<'a> {
    buf: &'a mut Vec<u8>,
    stats: &'a mut StackStats,
    trace_log: &'a mut Option<Vec<(Instant, oxcat_trace::Event)>>,
    offloads: Option<Offloads>,
    /// The device sends a packet from its pieces (`Device::gathers`).
    gathers: bool,
    /// A burst's packets for such a device, headers built, not yet handed over.
    gathered: &'a mut Gathered,
}

/// The packets of one socket's burst for a device that gathers
/// (`Device::gathers`: a TUN's writev(2)), built and waiting to be handed
/// over: every segment's headers (checksum included) are built in one
/// run, then the packets go to the device one after another. Each write
/// to a TUN runs the kernel's receive path inside the call, which leaves
/// little of our code and data in the caches; interleaved, every segment
/// we built started cold (Linux batches its transmits for the same
/// reason: `xmit_more`). A full segment's payload is not copied here: it
/// is looked up in the send buffer again when its packet goes, where it
/// still lies (only an acknowledgment moves it, and none is taken in
/// between). Other packets (ACKs, short segments, SYNs) go at once when
/// nothing waits, else wait whole behind the rest, so everything leaves
/// in the order it was built.
#[derive(Default)]
struct Gathered {
    /// The headers (or whole packets), one after another.
    heads: Vec<u8>,
    /// Per packet: where its bytes end in `heads`, the first sequence
    /// number and length of the payload to send after them (0: the packet
    /// is whole), and what the device is to finish.
    packets: Vec<(usize, SeqNum, usize, Option<TxMeta>)>,
}

/// What `Gathered` keeps of its storage between bursts: the headers of
/// several hundred full segments.
const HEADS_KEPT: usize = 64 * 1024;

impl Gathered {
    fn push(&mut self, bytes: &[u8], seq: SeqNum, payload_len: usize, meta: Option<TxMeta>) {
        self.heads.extend_from_slice(bytes);
        self.packets
            .push((self.heads.len(), seq, payload_len, meta));
    }

    /// Hands the waiting packets to `dev`, in order, and forgets them.
    /// The connection counts them all as sent already, so one the device
    /// fails is lost as on a wire (TCP retransmits it) and the rest still
    /// go; the first error is returned. `conn` holds the payloads left in
    /// place (a listener's packets are all whole).
    #[inline(never)]
    fn flush(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        mut conn: Option<&mut Connection>,
    ) -> io::Result<()> {
        let mut start = 0;
        let mut result = Ok(());
        for &(end, seq, len, meta) in &self.packets {
            let head = &self.heads[start..end];
            start = end;
            let r = if len == 0 {
                match meta {
                    Some(meta) => dev.transmit_meta(now, head, meta),
                    None => dev.transmit(now, head),
                }
            } else {
                let Some(conn) = conn.as_deref_mut() else {
                    continue;
                };
                let payload = conn.sent_payload(seq, len);
                // The bytes the checksum was computed over, still in place;
                // anything else (never seen) would go out corrupt: not sent.
                debug_assert_eq!(payload.len(), len);
                if payload.len() != len {
                    continue;
                }
                let (a, b) = payload.parts();
                dev.transmit_gather(now, &[head, a, b], meta)
            };
            if result.is_ok() {
                result = r;
            }
        }
        self.packets.clear();
        self.heads.clear();
        if self.heads.capacity() > HEADS_KEPT {
            // A burst of whole packets (SACK blocks, offloaded sizes) grew
            // it: the next bursts need a few KB.
            self.heads.shrink_to(HEADS_KEPT);
        }
        result
    }
}

impl TcpTx<'_> {
    /// Builds the segment's packet in the stack's frame (from the
    /// connection's template if it has one and the segment fits it) and
    /// hands it to the device; `mss` is the MSS the segment was cut for (0:
    /// never cut further).
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        tuple: &FourTuple,
        template: Option<&SegmentTemplate>,
        h: &Header,
        payload: Payload<'_>,
        mss: usize,
    ) -> io::Result<()> {
        if let Some(log) = self.trace_log {
            let e = trace_events::segment(
                oxcat_trace::Direction::Out,
                tuple.local,
                tuple.remote,
                h,
                &payload.to_vec(),
            );
            log.push((now, e));
        }
        let offloaded = self.offloads.is_some_and(|o| o.tso_max > 0);
        let buf = &mut *self.buf;
        if self.gathers && payload.len() >= GATHER_MIN {
            // The headers in the frame, the payload sent from where it
            // lies in the send buffer: the device's own copy is the only one.
            if let Some(n) = template.and_then(|t| t.emit_headers(buf, h, payload, offloaded)) {
                self.stats.packets_out += 1;
                let meta = offloaded.then(|| tso_meta(tuple, n, payload.len(), mss));
                // Handed to the device once the burst is built (`Gathered`).
                self.gathered.push(&buf[..n], h.seq, payload.len(), meta);
                return Ok(());
            }
        }
        if buf.len() < payload.len() + 100 {
            buf.resize(payload.len() + 100, 0);
        }
        let built = match template.and_then(|t| t.emit(buf, h, payload, offloaded)) {
            Some(n) => Ok(n),
            None => tcp_packet(buf, tuple, h, payload, offloaded),
        };
        match built {
            Ok(n) => {
                self.stats.packets_out += 1;
                let meta =
                    offloaded.then(|| tso_meta(tuple, n - payload.len(), payload.len(), mss));
                if self.gathers && !self.gathered.packets.is_empty() {
                    // After the burst's packets built before it (`Gathered`).
                    self.gathered.push(&buf[..n], h.seq, 0, meta);
                    return Ok(());
                }
                match meta {
                    Some(meta) => dev.transmit_meta(now, &buf[..n], meta),
                    None => dev.transmit(now, &buf[..n]),
                }
            }
            Err(_) => Ok(()),
        }
    }
}

/// What an offloading device is to finish in a TCP packet whose headers
/// are `headers` bytes: the checksum, and for a segment longer than one
/// MSS's payload (`mss` 0: never), the cutting (TSO).
fn tso_meta(tuple: &FourTuple, headers: usize, payload: usize, mss: usize) -> TxMeta {
    let ip_header = if tuple.local.is_ipv4() { 20 } else { 40 };
    let tcp_header = headers - ip_header;
    let piece = mss.saturating_sub(tcp_header - 20);
    TxMeta {
        tcp_segment_size: (mss > 0 && piece > 0 && payload > piece).then_some(piece as u16),
        csum_start: Some(ip_header as u16),
    }
}

pub struct Stack {
    config: StackConfig,
    tcp_v4: Arc<TcpConfig>,
    tcp_v6: Arc<TcpConfig>,
    sockets: Vec<Socket>,
    free: Vec<usize>,
    tcp_conns: HashMap<FourTuple, usize, Seeded>,
    /// The connection the last segment in went to: the next one usually
    /// goes there too, found without hashing the 4-tuple (the table's
    /// keyed SipHash stays, against hash flooding).
    last_conn: Option<(FourTuple, usize)>,
    tcp_listeners: HashMap<SocketAddr, usize, Seeded>,
    udp_sockets: HashMap<SocketAddr, usize, Seeded>,
    isn: IsnGenerator,
    next_port: u16,
    stats: StackStats,
    /// Packets the stack itself owes (RSTs, ICMP), already built.
    control_out: VecDeque<Vec<u8>>,
    reassembler: Reassembler,
    /// IPv6 packets in fragments (RFC 8200 §4.5), apart from IPv4's: the
    /// keys differ and each family gets its own bound.
    reassembler_v6: Reassembler<Ipv6FragmentKey>,
    /// Identification for the next datagram we fragment (RFC 791 §3.2,
    /// RFC 8200 §4.5): a counter starting from the seed. RFC 7739 would
    /// have it unpredictable; seeded, runs stay reproducible, as with ISNs.
    next_fragment_ident: u32,
    /// Deadlines of sockets' timers, earliest first; entries may be stale (a
    /// socket's current deadline is checked when its entry comes up).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per socket, the earliest of its entries in `timers` (None: none
    /// counted). A deadline that moves later (a retransmission timer
    /// restarted by every ACK) pushes nothing: the earlier entry comes up,
    /// finds the timer not due, and the socket's real deadline goes on the
    /// heap then. Only a deadline earlier than this is pushed at once, so
    /// a busy connection keeps about one entry, not one per poll.
    scheduled: Vec<Option<Instant>>,
    /// Sockets that may have something to send: only they are visited, so a
    /// poll costs what happened, not how many sockets exist.
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    gathered: Gathered,
    /// Trace events since the owner last took them; None when not tracing.
    trace_log: Option<Vec<(Instant, oxcat_trace::Event)>>,
    /// What the device does for us, read at the first poll.
    offloads: Option<Offloads>,
    /// The packet being taken in has a transport checksum left to fill in
    /// (it came from the local kernel through an offloading device).
    rx_checksum_partial: bool,
}

/// Maps an engine's ending to what `std::net` would report.
pub fn close_error(reason: CloseReason) -> io::Error {
    let kind = match reason {
        CloseReason::Refused => io::ErrorKind::ConnectionRefused,
        CloseReason::Reset => io::ErrorKind::ConnectionReset,
        CloseReason::TimedOut => io::ErrorKind::TimedOut,
        CloseReason::Aborted => io::ErrorKind::ConnectionAborted,
        CloseReason::Normal => io::ErrorKind::NotConnected,
    };
    io::Error::from(kind)
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn to_engine_header(r: &TcpRepr) -> Header {
    let mut sack = SackBlocks::new();
    for &(l, rr) in r.sack_blocks.as_slice() {
        sack.push(SeqNum(l), SeqNum(rr));
    }
    Header {
        seq: SeqNum(r.seq),
        ack: SeqNum(r.ack),
        flags: Flags(r.flags.0),
        window: r.window,
        options: Options {
            mss: r.mss,
            window_scale: r.window_scale,
            sack_permitted: r.sack_permitted,
            sack,
            timestamps: r.timestamps.map(|t| (t.tsval, t.tsecr)),
        },
    }
}

/// The engine's header of a checked segment; None if an option is
/// malformed. Nearly every segment of an established connection has no
/// options but timestamps, laid out NOP, NOP, TS (RFC 7323 Appendix A, as
/// Linux and we send them), or none: those are read straight from the
/// bytes; anything else goes through `TcpRepr`'s option walk.
fn engine_header(tp: &TcpPacket<&[u8]>) -> Option<Header> {
    let options = tp.options();
    let timestamps = match options {
        [] => None,
        &[1, 1, 8, 10, a, b, c, d, e, f, g, h] => Some((
            u32::from_be_bytes([a, b, c, d]),
            u32::from_be_bytes([e, f, g, h]),
        )),
        _ => {
            return TcpRepr::parse_unverified(tp)
                .ok()
                .map(|r| to_engine_header(&r))
        }
    };
    Some(Header {
        seq: SeqNum(tp.seq_number()),
        ack: SeqNum(tp.ack_number()),
        flags: Flags(tp.flags().0),
        window: tp.window_len(),
        options: Options {
            timestamps,
            ..Options::default()
        },
    })
}

fn to_wire_repr(tuple: &FourTuple, h: &Header, payload_len: usize) -> TcpRepr {
    let mut r = TcpRepr::new(tuple.local.port(), tuple.remote.port(), TcpFlags(h.flags.0));
    r.seq = h.seq.0;
    r.ack = h.ack.0;
    r.window = h.window;
    r.mss = h.options.mss;
    r.window_scale = h.options.window_scale;
    r.sack_permitted = h.options.sack_permitted;
    if !h.options.sack.is_empty() {
        let mut blocks = [(0u32, 0u32); 4];
        let given = h.options.sack.as_slice();
        for (b, (l, rr)) in blocks.iter_mut().zip(given) {
            *b = (l.0, rr.0);
        }
        r.sack_blocks = oxcat_wire::SackBlocks::from_slice(&blocks[..given.len()]);
    }
    r.timestamps = h
        .options
        .timestamps
        .map(|(tsval, tsecr)| Timestamps { tsval, tsecr });
    r.payload_len = payload_len;
    r
}

/// An IP packet carrying one TCP segment from `tuple.local` to
/// `tuple.remote`, written at the start of `buf`; returns its length.
pub(crate) fn tcp_packet(
    buf: &mut [u8],
    tuple: &FourTuple,
    h: &Header,
    payload: Payload<'_>,
    partial: bool,
) -> oxcat_wire::Result<usize> {
    let repr = to_wire_repr(tuple, h, payload.len());
    let tcp_len = repr.header_len() + payload.len();
    let (head, tail) = payload.parts();
    match (tuple.local.ip(), tuple.remote.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let ip = Ipv4Repr::new(src, dst, IpProtocol::TCP, tcp_len);
            let hl = ip.buffer_len();
            let upper = buf
                .get_mut(hl..hl + tcp_len)
                .ok_or(oxcat_wire::Error::BufferTooSmall)?;
            if partial {
                repr.emit_partial_parts(upper, src, dst, head, tail)?;
            } else {
                repr.emit_parts(upper, src, dst, head, tail)?;
            }
            ip.emit(buf)?;
            Ok(hl + tcp_len)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let ip = Ipv6Repr::new(src, dst, IpProtocol::TCP, tcp_len);
            let hl = ip.buffer_len();
            let upper = buf
                .get_mut(hl..hl + tcp_len)
                .ok_or(oxcat_wire::Error::BufferTooSmall)?;
            if partial {
                repr.emit_partial_parts(upper, src, dst, head, tail)?;
            } else {
                repr.emit_parts(upper, src, dst, head, tail)?;
            }
            ip.emit(buf)?;
            Ok(hl + tcp_len)
        }
        _ => Err(oxcat_wire::Error::Unsupported),
    }
}

/// Cuts one transport datagram (`upper`, its header included) into IP
/// fragments of at most `mtu` bytes, building each in `buf` and handing it
/// to `emit`: IPv4 fragments with MF and the offset in the header (RFC 791
/// §3.2), IPv6 ones with a fragment header after the fixed header (RFC 8200
/// §4.5). Every piece but the last is a multiple of 8 bytes.
fn fragments(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    upper: &[u8],
    mtu: usize,
    ident: u32,
    emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let headers = match dst {
        IpAddr::V4(_) => 20,
        IpAddr::V6(_) => ipv6::HEADER_LEN + oxcat_wire::FRAGMENT_HEADER_LEN,
    };
    let piece = mtu.saturating_sub(headers) / 8 * 8;
    if piece == 0 {
        return Ok(());
    }
    for (index, chunk) in upper.chunks(piece).enumerate() {
        let offset = index * piece;
        let more = offset + chunk.len() < upper.len();
        let Ok(frag_offset) = u16::try_from(offset) else {
            return Ok(());
        };
        let built = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ip = Ipv4Repr {
                    dont_frag: false,
                    more_frags: more,
                    frag_offset,
                    // RFC 6864 §4.1: the field is 16 bits; the low half of ours.
                    ident: ident as u16,
                    ..Ipv4Repr::new(src, dst, IpProtocol::UDP, chunk.len())
                };
                ip.emit(buf).map(|_| 20)
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let fragment_len = oxcat_wire::FRAGMENT_HEADER_LEN + chunk.len();
                let ip = Ipv6Repr::new(src, dst, IpProtocol::IPV6_FRAG, fragment_len);
                ip.emit(buf)
                    .and_then(|_| {
                        let header = buf.get_mut(ipv6::HEADER_LEN..).unwrap_or_default();
                        oxcat_wire::emit_fragment_header(
                            header,
                            IpProtocol::UDP,
                            frag_offset,
                            more,
                            ident,
                        )
                    })
                    .map(|_| ipv6::HEADER_LEN + oxcat_wire::FRAGMENT_HEADER_LEN)
            }
            _ => Err(oxcat_wire::Error::Unsupported),
        };
        let Ok(header_len) = built else {
            return Ok(());
        };
        let Some(room) = buf.get_mut(header_len..header_len + chunk.len()) else {
            return Ok(());
        };
        oxcat_tcp::copy::copy(room, chunk);
        emit(&buf[..header_len + chunk.len()])?;
    }
    Ok(())
}

impl Stack {
    pub fn new(config: StackConfig, now: Instant) -> Stack {
        let span = u64::from(
            config
                .ephemeral_ports
                .1
                .saturating_sub(config.ephemeral_ports.0),
        )
        .max(1);
        let next_port = config.ephemeral_ports.0 + (config.seed % span) as u16;
        let next_fragment_ident = (config.seed ^ (config.seed >> 32)) as u32;
        Stack {
            tcp_v4: Stack::engine_config(&config, 20),
            tcp_v6: Stack::engine_config(&config, 40),
            isn: IsnGenerator::new(config.seed, now),
            next_port,
            config,
            sockets: Vec::new(),
            free: Vec::new(),
            tcp_conns: HashMap::default(),
            last_conn: None,
            tcp_listeners: HashMap::default(),
            udp_sockets: HashMap::default(),
            stats: StackStats::default(),
            control_out: VecDeque::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            scheduled: Vec::new(),
            // Linux: ipfrag_time 30 s; a few datagrams at a time is plenty for a host.
            reassembler: Reassembler::new(64, std::time::Duration::from_secs(30)),
            // RFC 8200 §4.5: abandoned "within 60 seconds" of the first fragment
            // (Linux: ip6frag_time 60 s).
            reassembler_v6: Reassembler::new(64, std::time::Duration::from_secs(60)),
            next_fragment_ident,
            rx_buf: vec![0u8; 65536],
            tx_buf: vec![0u8; 65536],
            gathered: Gathered::default(),
            trace_log: None,
            offloads: None,
            rx_checksum_partial: false,
        }
    }

    pub fn stats(&self) -> StackStats {
        // Fragments given up on in reassembly are the reassemblers' to count;
        // the stack counts the ones it drops before or after them.
        let mut stats = self.stats;
        stats.fragments_dropped +=
            self.reassembler.stats.dropped() + self.reassembler_v6.stats.dropped();
        stats
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// Records every segment, state change, timer, retransmission and queue
    /// event from now on (for connections opened after this call), for
    /// [`Stack::take_trace`]. Off by default: then nothing is recorded.
    pub fn set_tracing(&mut self, on: bool) {
        self.config.tcp.trace = on;
        self.tcp_v4 = Stack::engine_config(&self.config, 20);
        self.tcp_v6 = Stack::engine_config(&self.config, 40);
        self.trace_log = on.then(Vec::new);
    }

    /// A device that cuts TCP segments itself (TSO) gets segments of up to
    /// its limit from connections opened from now on. `poll` reads the
    /// device's offloads itself the first time; calling this with the
    /// device's before opening connections makes the first ones use them too.
    pub fn use_offloads(&mut self, offloads: Offloads) {
        self.offloads = Some(offloads);
        if offloads.tso_max > 0 {
            // Room for the largest IP (IPv6: 40) and TCP (60) headers.
            self.config.tcp.tso_max_payload = offloads.tso_max.saturating_sub(100);
            self.tcp_v4 = Stack::engine_config(&self.config, 20);
            self.tcp_v6 = Stack::engine_config(&self.config, 40);
        }
    }

    /// The trace events recorded since the last call, in the order recorded
    /// (each carries the instant it happened).
    pub fn take_trace(&mut self) -> Vec<(Instant, oxcat_trace::Event)> {
        match &mut self.trace_log {
            Some(log) => std::mem::take(log),
            None => Vec::new(),
        }
    }

    /// The engine's events of socket `i`, into the trace log.
    fn collect_engine_trace(&mut self, i: usize) {
        let Some(log) = &mut self.trace_log else {
            return;
        };
        match &mut self.sockets[i] {
            Socket::TcpStream { tuple, conn, .. } => {
                let t = *tuple;
                while let Some(e) = conn.poll_trace() {
                    log.extend(trace_events::engine(Some(t), t.local, e));
                }
            }
            Socket::TcpListener { local, listener } => {
                let l = *local;
                listener.drain_trace(|k, e| log.extend(trace_events::engine(k, l, e)));
            }
            _ => {}
        }
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.config.ipv4 == Some(a),
            IpAddr::V6(a) => self.config.ipv6 == Some(a),
        }
    }

    fn local_ip_for(&self, remote: IpAddr) -> io::Result<IpAddr> {
        match remote {
            IpAddr::V4(_) => self.config.ipv4.map(IpAddr::V4),
            IpAddr::V6(_) => self.config.ipv6.map(IpAddr::V6),
        }
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                "no address of that family",
            )
        })
    }

    /// The engine's configuration for a connection over `ip`: the MSS fits the MTU
    /// (RFC 9293 §3.7.1: MTU less 20 bytes of TCP header and the IP header).
    fn tcp_config_for(&self, ip: IpAddr) -> Arc<TcpConfig> {
        if ip.is_ipv4() {
            self.tcp_v4.clone()
        } else {
            self.tcp_v6.clone()
        }
    }

    /// The engine configuration for one IP version, shared by its connections.
    fn engine_config(config: &StackConfig, ip_header: usize) -> Arc<TcpConfig> {
        let fit = config.mtu.saturating_sub(ip_header + 20).clamp(536, 65495) as u16;
        Arc::new(TcpConfig {
            mss: config.tcp.mss.min(fit),
            ..config.tcp.clone()
        })
    }

    fn insert(&mut self, s: Socket) -> usize {
        let i = match self.free.pop() {
            Some(i) => {
                self.sockets[i] = s;
                i
            }
            None => {
                self.sockets.push(s);
                self.is_dirty.push(false);
                self.scheduled.push(None);
                self.sockets.len() - 1
            }
        };
        self.touch(i);
        i
    }

    /// Socket `i` may have something to send or a new deadline.
    fn touch(&mut self, i: usize) {
        if let Some(flag) = self.is_dirty.get_mut(i) {
            if !*flag {
                *flag = true;
                self.dirty.push(i);
            }
        }
    }

    /// The socket of a connection's 4-tuple.
    fn conn_index(&mut self, tuple: &FourTuple) -> Option<usize> {
        if let Some((t, i)) = &self.last_conn {
            if t == tuple {
                return Some(*i);
            }
        }
        let i = *self.tcp_conns.get(tuple)?;
        self.last_conn = Some((*tuple, i));
        Some(i)
    }

    fn deadline_of(&self, i: usize) -> Option<Instant> {
        match self.sockets.get(i)? {
            Socket::TcpStream { conn, .. } => conn.poll_timeout(),
            Socket::TcpListener { listener, .. } => listener.poll_timeout(),
            _ => None,
        }
    }

    fn release(&mut self, i: usize) {
        match std::mem::replace(&mut self.sockets[i], Socket::Free) {
            Socket::TcpStream { tuple, .. } => {
                self.tcp_conns.remove(&tuple);
                self.last_conn = None;
            }
            Socket::TcpListener { local, .. } => {
                self.tcp_listeners.remove(&local);
            }
            Socket::Udp { local, .. } => {
                self.udp_sockets.remove(&local);
            }
            Socket::Free => return,
        }
        self.scheduled[i] = None;
        self.free.push(i);
    }

    /// A port taken by a listener or a UDP socket (few: scanning is fine).
    fn port_bound(&self, port: u16) -> bool {
        self.tcp_listeners.keys().any(|a| a.port() == port)
            || self.udp_sockets.keys().any(|a| a.port() == port)
    }

    /// An ephemeral port for a connection to `remote`: like Linux, the same
    /// local port may serve connections to different remote endpoints, so
    /// only the 4-tuple must be new (an O(1) check per candidate).
    fn ephemeral_port_for(&mut self, local_ip: IpAddr, remote: SocketAddr) -> io::Result<u16> {
        let (lo, hi) = self.config.ephemeral_ports;
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if self.next_port >= hi {
                lo
            } else {
                self.next_port + 1
            };
            let tuple = FourTuple {
                local: SocketAddr::new(local_ip, p),
                remote,
            };
            if !self.tcp_conns.contains_key(&tuple) && !self.port_bound(p) {
                return Ok(p);
            }
        }
        Err(io::Error::from(io::ErrorKind::AddrInUse))
    }

    /// An ephemeral port no socket uses (for UDP binds).
    fn ephemeral_port(&mut self) -> io::Result<u16> {
        let (lo, hi) = self.config.ephemeral_ports;
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if self.next_port >= hi {
                lo
            } else {
                self.next_port + 1
            };
            if !self.port_bound(p) && !self.tcp_conns.keys().any(|t| t.local.port() == p) {
                return Ok(p);
            }
        }
        Err(io::Error::from(io::ErrorKind::AddrInUse))
    }

    // ----- the socket API (non-blocking) -----

    /// `bind` + `listen`. An unspecified address listens on every local address of its family.
    pub fn tcp_listen(
        &mut self,
        local: SocketAddr,
        backlog: usize,
        now: Instant,
    ) -> io::Result<SocketHandle> {
        self.tcp_listen_with(local, backlog, true, now)
    }

    /// `listen` with SO_REUSEADDR chosen: without it, a port that still has
    /// connections (TIME-WAIT ones included) cannot be listened on.
    pub fn tcp_listen_with(
        &mut self,
        local: SocketAddr,
        backlog: usize,
        reuse_addr: bool,
        now: Instant,
    ) -> io::Result<SocketHandle> {
        if !reuse_addr
            && self
                .tcp_conns
                .keys()
                .any(|t| t.local.port() == local.port())
        {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        if !local.ip().is_unspecified() && !self.is_local(local.ip()) {
            return Err(io::Error::from(io::ErrorKind::AddrNotAvailable));
        }
        if self.tcp_listeners.contains_key(&local) {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        let isn = IsnGenerator::new(self.config.seed ^ u64::from(local.port()), now);
        let listener = Box::new(Listener::new(
            self.tcp_config_for(local.ip()),
            backlog,
            isn,
            now,
        ));
        let i = self.insert(Socket::TcpListener { local, listener });
        self.tcp_listeners.insert(local, i);
        Ok(SocketHandle(i))
    }

    /// `connect`: starts the handshake; the socket is writable once it completes.
    pub fn tcp_connect(
        &mut self,
        remote: SocketAddr,
        local_port: Option<u16>,
        now: Instant,
    ) -> io::Result<SocketHandle> {
        let local_ip = self.local_ip_for(remote.ip())?;
        let port = match local_port {
            Some(p) => p,
            None => self.ephemeral_port_for(local_ip, remote)?,
        };
        let tuple = FourTuple {
            local: SocketAddr::new(local_ip, port),
            remote,
        };
        if self.tcp_conns.contains_key(&tuple) {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        let iss = self.isn.isn(now, &tuple);
        let conn = Box::new(Connection::connect(
            self.tcp_config_for(remote.ip()),
            now,
            iss,
        ));
        let i = self.insert(Socket::TcpStream {
            tuple,
            conn,
            orphan: false,
            template: SegmentTemplate::new(&tuple),
        });
        self.tcp_conns.insert(tuple, i);
        self.last_conn = None;
        Ok(SocketHandle(i))
    }

    /// `accept`: an established connection, if one is waiting.
    pub fn tcp_accept(
        &mut self,
        h: SocketHandle,
    ) -> io::Result<Option<(SocketHandle, SocketAddr)>> {
        let (tuple, conn) = match self.sockets.get_mut(h.0) {
            Some(Socket::TcpListener { listener, .. }) => match listener.accept_boxed() {
                Some(c) => c,
                None => return Ok(None),
            },
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        let remote = tuple.remote;
        let i = self.insert(Socket::TcpStream {
            tuple,
            conn,
            orphan: false,
            template: SegmentTemplate::new(&tuple),
        });
        self.tcp_conns.insert(tuple, i);
        self.last_conn = None;
        Ok(Some((SocketHandle(i), remote)))
    }

    fn stream(&mut self, h: SocketHandle) -> io::Result<&mut Connection> {
        self.touch(h.0);
        match self.sockets.get_mut(h.0) {
            Some(Socket::TcpStream { conn, .. }) => Ok(conn),
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    /// `send`: queues what fits; fewer bytes than given is normal (the notes' partial send).
    pub fn tcp_send(&mut self, h: SocketHandle, data: &[u8]) -> io::Result<usize> {
        let conn = self.stream(h)?;
        match conn.send(data) {
            Ok(n) => Ok(n),
            Err(SendError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(SendError::Shutdown) => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            Err(SendError::NotConnected) => Err(io::Error::from(io::ErrorKind::NotConnected)),
            Err(SendError::Closed(r)) => Err(close_error(r)),
        }
    }

    /// `recv`: `Ok(0)` is EOF.
    pub fn tcp_recv(&mut self, h: SocketHandle, buf: &mut [u8]) -> io::Result<usize> {
        let conn = self.stream(h)?;
        match conn.recv(buf) {
            Ok(n) => Ok(n),
            Err(RecvError::Finished) => Ok(0),
            Err(RecvError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(RecvError::Closed(r)) => Err(close_error(r)),
        }
    }

    pub fn tcp_shutdown_write(&mut self, h: SocketHandle, now: Instant) -> io::Result<()> {
        self.stream(h)?.shutdown_write(now);
        Ok(())
    }

    /// TCP_NODELAY.
    pub fn tcp_set_nodelay(&mut self, h: SocketHandle, nodelay: bool) -> io::Result<()> {
        self.stream(h)?.set_nodelay(nodelay);
        Ok(())
    }

    /// SO_KEEPALIVE with idle time, probe interval and probe count.
    pub fn tcp_set_keepalive(
        &mut self,
        h: SocketHandle,
        keepalive: Option<(std::time::Duration, std::time::Duration, u32)>,
        now: Instant,
    ) -> io::Result<()> {
        self.stream(h)?.set_keepalive(now, keepalive);
        Ok(())
    }

    /// SO_SNDBUF and SO_RCVBUF (setting the latter stops autotuning).
    pub fn tcp_set_buffers(
        &mut self,
        h: SocketHandle,
        send: Option<usize>,
        recv: Option<usize>,
    ) -> io::Result<()> {
        let conn = self.stream(h)?;
        if let Some(n) = send {
            conn.set_send_buffer(n);
        }
        if let Some(n) = recv {
            conn.set_recv_buffer(n);
        }
        Ok(())
    }

    /// `close` with SO_LINGER set to zero: the connection is reset at once
    /// (RST), buffered bytes are dropped.
    pub fn tcp_close_reset(&mut self, h: SocketHandle, now: Instant) {
        self.touch(h.0);
        if let Some(Socket::TcpStream { conn, orphan, .. }) = self.sockets.get_mut(h.0) {
            conn.abort(now);
            *orphan = true;
        }
    }

    /// Where a `connect` stands: `Ok` once established, `WouldBlock` during
    /// the handshake, the reason (refused, timed out, ...) if it failed.
    pub fn tcp_connect_result(&mut self, h: SocketHandle) -> io::Result<()> {
        let conn = self.stream(h)?;
        match conn.state() {
            State::SynSent | State::SynReceived => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            State::Closed => Err(conn
                .close_reason()
                .map(close_error)
                .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))),
            _ => Ok(()),
        }
    }

    pub fn tcp_state(&self, h: SocketHandle) -> Option<State> {
        match self.sockets.get(h.0) {
            Some(Socket::TcpStream { conn, .. }) => Some(conn.state()),
            Some(Socket::TcpListener { .. }) => Some(State::Listen),
            _ => None,
        }
    }

    /// The connection itself, for what the socket API does not cover (events, stats).
    pub fn tcp_connection(&mut self, h: SocketHandle) -> Option<&mut Connection> {
        self.stream(h).ok()
    }

    pub fn tcp_listener(&mut self, h: SocketHandle) -> Option<&mut Listener<FourTuple>> {
        self.touch(h.0);
        match self.sockets.get_mut(h.0) {
            Some(Socket::TcpListener { listener, .. }) => Some(listener),
            _ => None,
        }
    }

    pub fn tcp_endpoints(&self, h: SocketHandle) -> Option<FourTuple> {
        match self.sockets.get(h.0) {
            Some(Socket::TcpStream { tuple, .. }) => Some(*tuple),
            _ => None,
        }
    }

    /// `close`: the handle goes; the connection sends what is buffered, then
    /// FIN, and lingers until it is done (the notes' "Kernel continues
    /// sending the buffered bytes").
    pub fn close(&mut self, h: SocketHandle, now: Instant) {
        self.touch(h.0);
        match self.sockets.get_mut(h.0) {
            Some(Socket::TcpStream { conn, orphan, .. }) => {
                conn.close(now);
                *orphan = true;
                if conn.state() == State::Closed {
                    // Its last segment (a RST) still goes out in the next poll.
                }
            }
            Some(Socket::TcpListener { .. }) => self.release(h.0),
            Some(Socket::Udp { out, local, .. }) => {
                // Datagrams already sent (queued) still go, as the kernel's
                // have left by the time sendto returns: built now, they leave
                // with the stack's own packets in the next poll.
                let (local, pending) = (*local, std::mem::take(out));
                for (to, data) in pending {
                    let mut packets = Vec::new();
                    let _ = self.udp_packets(local, to, &data, &mut |p: &[u8]| {
                        packets.push(p.to_vec());
                        Ok(())
                    });
                    self.control_out.extend(packets);
                }
                self.release(h.0);
            }
            _ => {}
        }
    }

    /// `bind` for UDP. Port 0 picks an ephemeral port; an unspecified
    /// address takes datagrams to every local address of its family. As on
    /// Linux without SO_REUSEADDR, a port bound on an address of a family
    /// cannot be bound again on the same address or the unspecified one
    /// (`AddrInUse`).
    pub fn udp_bind(&mut self, local: SocketAddr) -> io::Result<SocketHandle> {
        let local = if local.port() == 0 {
            SocketAddr::new(local.ip(), self.ephemeral_port()?)
        } else {
            local
        };
        if !local.ip().is_unspecified() && !self.is_local(local.ip()) {
            return Err(io::Error::from(io::ErrorKind::AddrNotAvailable));
        }
        let clashes = |bound: &SocketAddr| {
            bound.port() == local.port()
                && bound.is_ipv4() == local.is_ipv4()
                && (bound.ip() == local.ip()
                    || bound.ip().is_unspecified()
                    || local.ip().is_unspecified())
        };
        if self.udp_sockets.keys().any(clashes) {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        let i = self.insert(Socket::Udp {
            local,
            peer: None,
            pending_error: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            out: VecDeque::new(),
        });
        self.udp_sockets.insert(local, i);
        Ok(SocketHandle(i))
    }

    pub fn udp_local_addr(&self, h: SocketHandle) -> Option<SocketAddr> {
        match self.sockets.get(h.0) {
            Some(Socket::Udp { local, .. }) => Some(*local),
            _ => None,
        }
    }

    /// The peer set by `udp_connect`, if any.
    pub fn udp_peer_addr(&self, h: SocketHandle) -> Option<SocketAddr> {
        match self.sockets.get(h.0) {
            Some(Socket::Udp { peer, .. }) => *peer,
            _ => None,
        }
    }

    /// Whether a socket bound to `local` can send to `to`, with the errors
    /// Linux gives: another family is EAFNOSUPPORT (as from an AF_INET
    /// socket; our IPv6 sockets are all IPV6_V6ONLY), port 0 EINVAL, no
    /// address of the family ENETUNREACH, more than fits a datagram
    /// EMSGSIZE (raw OS errors where std has no `ErrorKind` for them).
    fn udp_check_destination(
        &self,
        local: SocketAddr,
        to: SocketAddr,
        len: usize,
    ) -> io::Result<()> {
        if local.is_ipv4() != to.is_ipv4() {
            return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
        }
        if to.port() == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        self.local_ip_for(to.ip())?;
        let max = if to.is_ipv4() {
            UDP_MAX_PAYLOAD_V4
        } else {
            UDP_MAX_PAYLOAD_V6
        };
        if len > max {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        Ok(())
    }

    /// `connect` for UDP: sends without an address go to `peer`, and only
    /// `peer`'s datagrams are taken in (others are answered port
    /// unreachable, as Linux's lookup finds no socket for them). Datagrams
    /// from others already queued are dropped, so that every datagram
    /// received after the connect is the peer's.
    pub fn udp_connect(&mut self, h: SocketHandle, to: SocketAddr) -> io::Result<()> {
        let local = self
            .udp_local_addr(h)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.udp_check_destination(local, to, 0)?;
        if let Some(Socket::Udp {
            peer,
            queue,
            queued_bytes,
            ..
        }) = self.sockets.get_mut(h.0)
        {
            *peer = Some(to);
            queue.retain(|(from, _)| *from == to);
            *queued_bytes = queue.iter().map(|(_, data)| data.len()).sum();
        }
        Ok(())
    }

    /// `sendto`: queues one datagram; `WouldBlock` when the socket already
    /// has [`UDP_SEND_QUEUE`] waiting. Datagrams larger than the MTU go out
    /// in fragments.
    pub fn udp_send_to(
        &mut self,
        h: SocketHandle,
        data: &[u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        let local = self
            .udp_local_addr(h)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.udp_check_destination(local, to, data.len())?;
        self.touch(h.0);
        match self.sockets.get_mut(h.0) {
            Some(Socket::Udp {
                pending_error: error @ Some(_),
                ..
            }) => Err(io::Error::from(
                error.take().unwrap_or(io::ErrorKind::Other),
            )),
            Some(Socket::Udp { out, .. }) if out.len() >= UDP_SEND_QUEUE => {
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            }
            Some(Socket::Udp { out, .. }) => {
                out.push_back((to, data.to_vec()));
                Ok(data.len())
            }
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    /// `send` on a connected UDP socket; `NotConnected` without a peer.
    pub fn udp_send(&mut self, h: SocketHandle, data: &[u8]) -> io::Result<usize> {
        let peer = self
            .udp_peer_addr(h)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        self.udp_send_to(h, data, peer)
    }

    /// One datagram, boundaries kept; `WouldBlock` when none is waiting. A
    /// buffer shorter than the datagram gets its first bytes and the rest
    /// is lost, as with `recvfrom` without MSG_TRUNC.
    pub fn udp_recv_from(
        &mut self,
        h: SocketHandle,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        match self.sockets.get_mut(h.0) {
            Some(Socket::Udp {
                pending_error: error @ Some(_),
                ..
            }) => Err(io::Error::from(
                error.take().unwrap_or(io::ErrorKind::Other),
            )),
            Some(Socket::Udp {
                queue,
                queued_bytes,
                ..
            }) => match queue.pop_front() {
                Some((from, data)) => {
                    *queued_bytes -= data.len();
                    let n = data.len().min(buf.len());
                    oxcat_tcp::copy::copy(&mut buf[..n], &data[..n]);
                    Ok((n, from))
                }
                None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            },
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    // ----- time and packets -----

    /// Entries in the timer heap (stale ones included): about one per
    /// socket with a timer running, however busy. For tests and diagnostics.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// The earliest instant a timer needs `poll`.
    pub fn poll_at(&self) -> Option<Instant> {
        // A stale entry can only be earlier than the real deadline: at worst
        // one poll too many, never one too few.
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Takes in the waiting packets (at most `RX_BUDGET`, 128), runs due timers,
    /// sends what is owed. Returns whether anything happened.
    pub fn poll(&mut self, now: Instant, dev: &mut dyn Device) -> io::Result<bool> {
        if self.offloads.is_none() {
            self.use_offloads(dev.offloads());
        }
        let mut worked = false;
        let mut taken = 0usize;
        for _ in 0..RX_BUDGET {
            let mut buf = std::mem::take(&mut self.rx_buf);
            let got = dev.receive_meta(now, &mut buf);
            let (n, meta) = match got {
                Ok(Some(got)) => got,
                Ok(None) => {
                    self.rx_buf = buf;
                    break;
                }
                Err(e) => {
                    self.rx_buf = buf;
                    return Err(e);
                }
            };
            self.stats.packets_in += 1;
            self.rx_checksum_partial = meta.checksum_partial;
            self.ingress(now, &buf[..n]);
            self.rx_checksum_partial = false;
            self.rx_buf = buf;
            worked = true;
            taken += 1;
            if taken.is_multiple_of(ACK_BATCH) {
                // ACKs (RFC 5681 §4.2: at least every second full segment)
                // go out as segments come in, not once after a burst of
                // thousands: the sender's clock is our ACKs.
                self.egress(now, dev)?;
            }
        }
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.scheduled[i] == Some(t) {
                self.scheduled[i] = None;
            }
            match &mut self.sockets[i] {
                Socket::TcpStream { conn, .. } if conn.poll_timeout().is_some_and(|t| t <= now) => {
                    conn.handle_timeout(now);
                    worked = true;
                }
                Socket::TcpListener { listener, .. }
                    if listener.poll_timeout().is_some_and(|t| t <= now) =>
                {
                    listener.handle_timeout(now);
                    worked = true;
                }
                _ => {}
            }
            // Its next deadline goes back on the heap in egress.
            self.touch(i);
        }
        worked |= self.egress(now, dev)?;
        Ok(worked)
    }

    fn egress(&mut self, now: Instant, dev: &mut dyn Device) -> io::Result<bool> {
        let mut sent = false;
        while let Some(p) = self.control_out.pop_front() {
            dev.transmit(now, &p)?;
            self.stats.packets_out += 1;
            sent = true;
        }
        let mut finished = Vec::new();
        let dirty = std::mem::take(&mut self.dirty);
        let mut header = Header::default();
        for (k, &i) in dirty.iter().enumerate() {
            self.is_dirty[i] = false;
            if let Err(e) = self.egress_socket(now, dev, i, &mut header, &mut finished, &mut sent) {
                // This socket and the ones not visited yet stay on the list,
                // with their deadlines on the heap: a device that failed
                // once must not leave them without a timer or a next visit.
                for &j in &dirty[k..] {
                    self.is_dirty[j] = false;
                    self.touch(j);
                    self.schedule(j);
                }
                for j in finished {
                    self.release(j);
                }
                return Err(e);
            }
        }
        for i in finished {
            self.release(i);
        }
        // Keep the list's storage for the next round.
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        Ok(sent)
    }

    /// Puts socket `i`'s next deadline on the timer heap if it is earlier
    /// than the one there (a later one waits: see `scheduled`).
    #[inline(always)]
    fn schedule(&mut self, i: usize) {
        if let Some(t) = self.deadline_of(i) {
            if self.scheduled[i].is_none_or(|s| t < s) {
                self.timers.push(Reverse((t, i)));
                self.scheduled[i] = Some(t);
            }
        }
    }

    /// `egress` for socket `i`: what it owes, sent; a closed orphan noted
    /// in `finished`; its next deadline on the heap.
    fn egress_socket(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        i: usize,
        header: &mut Header,
        finished: &mut Vec<usize>,
        sent: &mut bool,
    ) -> io::Result<()> {
        let mut udp_out: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        debug_assert!(self.gathered.packets.is_empty());
        let mut tx = TcpTx {
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
            trace_log: &mut self.trace_log,
            offloads: self.offloads,
            gathers: dev.gathers(),
            gathered: &mut self.gathered,
        };
        match &mut self.sockets[i] {
            Socket::TcpStream {
                tuple,
                conn,
                orphan,
                template,
            } => {
                // Each segment straight from the send buffer into the
                // frame: no copy and no allocation between; a run of
                // full segments built from the one before (a burst). A
                // device that fails ends the burst (the rest stays
                // owed) and the poll with its error; to a gathering
                // device the burst is built first and then handed over
                // whole (`Gathered::flush`).
                let mss = conn.send_mss();
                let mut failed = None;
                let template = template.as_ref();
                conn.poll_transmit_burst(now, header, |h, payload| {
                    match tx.send(now, dev, tuple, template, h, payload, mss) {
                        Ok(()) => {
                            *sent = true;
                            true
                        }
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                });
                let flushed = match tx.gathered.packets.is_empty() {
                    true => Ok(()),
                    false => tx.gathered.flush(now, dev, Some(conn)),
                };
                if let Some(e) = failed {
                    return Err(e);
                }
                flushed?;
                if *orphan && conn.state() == State::Closed {
                    finished.push(i);
                }
            }
            Socket::TcpListener { listener, .. } => {
                while let Some((tuple, seg)) = listener.poll_transmit(now) {
                    let payload = Payload::new(&seg.payload, &[]);
                    tx.send(now, dev, &tuple, None, &seg.header, payload, 0)?;
                    *sent = true;
                }
                if !tx.gathered.packets.is_empty() {
                    tx.gathered.flush(now, dev, None)?;
                }
            }
            Socket::Udp { local, out, .. } => {
                while let Some((to, data)) = out.pop_front() {
                    udp_out.push((*local, to, data));
                }
            }
            Socket::Free => {}
        }
        if self.trace_log.is_some() {
            self.collect_engine_trace(i);
        }
        for (local, to, data) in udp_out {
            self.send_udp(now, dev, local, to, &data)?;
            *sent = true;
        }
        self.schedule(i);
        Ok(())
    }

    fn send_udp(
        &mut self,
        now: Instant,
        dev: &mut dyn Device,
        local: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        let mut sent = 0;
        let r = self.udp_packets(local, to, data, &mut |packet: &[u8]| {
            sent += 1;
            dev.transmit(now, packet)
        });
        self.stats.packets_out += sent;
        if r.is_ok() && self.trace_log.is_some() {
            // From the address it went out from (a wildcard-bound socket's
            // source is picked per destination, as `udp_packets` did).
            let from = match local.ip().is_unspecified() {
                true => self
                    .local_ip_for(to.ip())
                    .map_or(local, |ip| SocketAddr::new(ip, local.port())),
                false => local,
            };
            let n = data.len();
            if let Some(log) = &mut self.trace_log {
                log.push((
                    now,
                    oxcat_trace::Event::note(format!("udp out {from} > {to} len={n}")),
                ));
            }
        }
        r
    }

    /// Builds the IP packets carrying one UDP datagram from `local` to `to`
    /// and hands each to `emit`: one packet if it fits the MTU, else
    /// fragments, as a sending host makes them (RFC 791 §3.2; RFC 8200
    /// §4.5: the fragment header right after the fixed header, every
    /// fragment's data but the last a multiple of 8 bytes). A datagram the
    /// formats cannot carry is dropped (`udp_send_to` refused those).
    fn udp_packets(
        &mut self,
        local: SocketAddr,
        to: SocketAddr,
        data: &[u8],
        emit: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let src_ip = if local.ip().is_unspecified() {
            self.local_ip_for(to.ip())?
        } else {
            local.ip()
        };
        let repr = UdpRepr {
            src_port: local.port(),
            dst_port: to.port(),
            payload_len: data.len(),
        };
        let udp_len = 8 + data.len();
        let ip_header_len = if to.is_ipv4() { 20 } else { ipv6::HEADER_LEN };
        // RFC 8200 §5: every IPv6 link carries 1280 bytes; RFC 791: IPv4, 68.
        let mtu = self.config.mtu.max(if to.is_ipv4() { 68 } else { 1280 });
        let mut buf = std::mem::take(&mut self.tx_buf);
        let needed = (ip_header_len + udp_len).max(mtu);
        if buf.len() < needed {
            buf.resize(needed, 0);
        }
        let r = if ip_header_len + udp_len <= mtu {
            let total = match (src_ip, to.ip()) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => {
                    let ip = Ipv4Repr::new(src, dst, IpProtocol::UDP, udp_len);
                    ip.emit(&mut buf)
                        .and_then(|_| repr.emit(&mut buf[20..20 + udp_len], src, dst, data))
                        .map(|_| 20 + udp_len)
                }
                (IpAddr::V6(src), IpAddr::V6(dst)) => {
                    let ip = Ipv6Repr::new(src, dst, IpProtocol::UDP, udp_len);
                    let hl = ipv6::HEADER_LEN;
                    ip.emit(&mut buf)
                        .and_then(|_| repr.emit(&mut buf[hl..hl + udp_len], src, dst, data))
                        .map(|_| hl + udp_len)
                }
                _ => Err(oxcat_wire::Error::Unsupported),
            };
            match total {
                Ok(n) => emit(&buf[..n]),
                Err(_) => Ok(()),
            }
        } else {
            self.next_fragment_ident = self.next_fragment_ident.wrapping_add(1);
            let ident = self.next_fragment_ident;
            let mut datagram = vec![0u8; udp_len];
            let built = match (src_ip, to.ip()) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => repr.emit(&mut datagram, src, dst, data),
                (IpAddr::V6(src), IpAddr::V6(dst)) => repr.emit(&mut datagram, src, dst, data),
                _ => Err(oxcat_wire::Error::Unsupported),
            };
            match built {
                Ok(()) => fragments(&mut buf, src_ip, to.ip(), &datagram, mtu, ident, emit),
                Err(_) => Ok(()),
            }
        };
        self.tx_buf = buf;
        r
    }

    // ----- arriving packets -----

    fn ingress(&mut self, now: Instant, packet: &[u8]) {
        match packet.first().map(|b| b >> 4) {
            Some(4) => self.ingress_v4(now, packet),
            Some(6) => self.ingress_v6(now, packet),
            _ => self.stats.malformed += 1,
        }
    }

    fn ingress_v4(&mut self, now: Instant, packet: &[u8]) {
        let Ok(p) = Ipv4Packet::new_checked(packet) else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(ip) = Ipv4Repr::parse(&p) else {
            self.stats.bad_checksum += 1;
            return;
        };
        if !self.is_local(IpAddr::V4(ip.dst)) {
            self.stats.not_for_us += 1;
            return;
        }
        let whole;
        let payload = if ip.more_frags || ip.frag_offset != 0 {
            let key = FragmentKey {
                src: ip.src,
                dst: ip.dst,
                protocol: ip.protocol.0,
                ident: ip.ident,
            };
            match self.reassembler.add(
                now,
                key,
                usize::from(ip.frag_offset),
                ip.more_frags,
                p.payload(),
            ) {
                Some(datagram) => {
                    whole = datagram;
                    &whole[..]
                }
                // Incomplete so far, or given up on (counted by the reassembler).
                None => return,
            }
        } else {
            p.payload()
        };
        let (src, dst) = (IpAddr::V4(ip.src), IpAddr::V4(ip.dst));
        match ip.protocol {
            IpProtocol::TCP => self.ingress_tcp(now, src, dst, payload, packet),
            IpProtocol::UDP => self.ingress_udp(now, src, dst, payload, packet),
            IpProtocol::ICMP => self.ingress_icmpv4(now, ip.src, ip.dst, payload),
            _ => {}
        }
    }

    fn ingress_v6(&mut self, now: Instant, packet: &[u8]) {
        let Ok(p) = Ipv6Packet::new_checked(packet) else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(ip) = Ipv6Repr::parse(&p) else {
            self.stats.malformed += 1;
            return;
        };
        if !self.is_local(IpAddr::V6(ip.dst)) {
            self.stats.not_for_us += 1;
            return;
        }
        // RFC 7112 §5: a first fragment whose header chain does not reach the
        // upper layer fails this walk and is dropped like any broken chain.
        let Ok(upper) = p.upper_layer() else {
            self.stats.malformed += 1;
            return;
        };
        match upper.fragment {
            Some(fragment) => {
                if let Some(whole) = self.reassemble_v6(now, &p, &ip, &fragment) {
                    self.ingress_v6_reassembled(now, &whole);
                }
            }
            None => self.ingress_v6_upper(now, &ip, &upper, p.payload(), packet),
        }
    }

    /// The upper layer of an IPv6 packet that arrived whole or was
    /// reassembled: `payload` is what follows the fixed header.
    fn ingress_v6_upper(
        &mut self,
        now: Instant,
        ip: &Ipv6Repr,
        upper: &UpperLayer,
        payload: &[u8],
        packet: &[u8],
    ) {
        let Some(upper_bytes) = payload.get(upper.offset..) else {
            self.stats.malformed += 1;
            return;
        };
        let (src, dst) = (IpAddr::V6(ip.src), IpAddr::V6(ip.dst));
        match upper.protocol {
            IpProtocol::TCP => self.ingress_tcp(now, src, dst, upper_bytes, packet),
            IpProtocol::UDP => self.ingress_udp(now, src, dst, upper_bytes, packet),
            IpProtocol::ICMPV6 => self.ingress_icmpv6(now, ip.src, ip.dst, upper_bytes),
            _ => {}
        }
    }

    /// Adds one fragment (RFC 8200 §4.5); returns the reassembled packet,
    /// bytes as if it had arrived whole, once the last piece is in: the
    /// first fragment's unfragmentable part (its last Next Header field
    /// taken from the fragment header) and the fragments' data.
    fn reassemble_v6(
        &mut self,
        now: Instant,
        p: &Ipv6Packet<&[u8]>,
        ip: &Ipv6Repr,
        fragment: &Ipv6Fragment,
    ) -> Option<Vec<u8>> {
        let (Ok(head), Some(data)) = (
            p.unfragmentable_part(fragment),
            p.payload().get(fragment.data_offset()..),
        ) else {
            self.stats.malformed += 1;
            return None;
        };
        let Reassembled { header, payload } = if fragment.is_atomic() {
            // RFC 6946 §4: an atomic fragment is processed at once, apart from
            // any fragments queued under the same identification.
            Reassembled {
                header: head,
                payload: data.to_vec(),
            }
        } else {
            let key = Ipv6FragmentKey {
                src: ip.src,
                dst: ip.dst,
                ident: fragment.ident,
            };
            let piece = Fragment {
                offset: usize::from(fragment.offset),
                more: fragment.more_frags,
                data,
                header: &head,
                // RFC 8200 §4.5: the reassembled Payload Length, extension
                // headers before the fragment header included, fits 65,535.
                max_len: MAX_DATAGRAM.saturating_sub(fragment.header_offset),
            };
            // None: incomplete so far, or given up on (the reassembler counts).
            self.reassembler_v6.add_fragment(now, key, piece)?
        };
        let mut whole = header;
        whole.extend_from_slice(&payload);
        // The first fragment's unfragmentable part may be longer than the
        // later fragments' that the limit above was checked against.
        let Ok(payload_len) = u16::try_from(whole.len().saturating_sub(ipv6::HEADER_LEN)) else {
            self.stats.fragments_dropped += 1;
            return None;
        };
        Ipv6Packet::new_unchecked(&mut whole[..]).set_payload_len(payload_len);
        Some(whole)
    }

    /// A reassembled IPv6 packet, processed as one that arrived whole. A
    /// fragment header still in it (a fragment of a fragment) is dropped,
    /// not reassembled again: RFC 8200 §4.1 allows one of each extension
    /// header but destination options.
    fn ingress_v6_reassembled(&mut self, now: Instant, packet: &[u8]) {
        let Ok(p) = Ipv6Packet::new_checked(packet) else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(ip) = Ipv6Repr::parse(&p) else {
            self.stats.malformed += 1;
            return;
        };
        match p.upper_layer() {
            Ok(upper) if upper.fragment.is_none() => {
                self.ingress_v6_upper(now, &ip, &upper, p.payload(), packet)
            }
            Ok(_) => self.stats.fragments_dropped += 1,
            Err(_) => self.stats.malformed += 1,
        }
    }

    fn ingress_tcp(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        segment: &[u8],
        _packet: &[u8],
    ) {
        let Ok(tp) = TcpPacket::new_checked(segment) else {
            self.stats.malformed += 1;
            return;
        };
        let verified = match (src, dst) {
            // From the local kernel with its checksum left to fill in: nothing to verify.
            _ if self.rx_checksum_partial => true,
            (IpAddr::V4(s), IpAddr::V4(d)) => tp.verify_checksum(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => tp.verify_checksum(s, d),
            _ => return,
        };
        let Some(header) = verified.then(|| engine_header(&tp)).flatten() else {
            self.stats.bad_checksum += 1;
            return;
        };
        let payload = tp.payload();
        let tuple = FourTuple {
            local: SocketAddr::new(dst, tp.dst_port()),
            remote: SocketAddr::new(src, tp.src_port()),
        };
        if let Some(log) = &mut self.trace_log {
            let e = trace_events::segment(
                oxcat_trace::Direction::In,
                tuple.remote,
                tuple.local,
                &header,
                payload,
            );
            log.push((now, e));
        }
        if let Some(i) = self.conn_index(&tuple) {
            if let Socket::TcpStream { conn, .. } = &mut self.sockets[i] {
                // RFC 6191: a new SYN may take over a 4-tuple in TIME-WAIT.
                if conn.state() == State::TimeWait
                    && header.flags.syn()
                    && !header.flags.ack()
                    && conn.time_wait_allows_reuse(&header)
                {
                    self.release(i);
                } else {
                    conn.handle_segment(now, &header, payload);
                    self.touch(i);
                    return;
                }
            }
        }
        let listener = self
            .tcp_listeners
            .get(&tuple.local)
            .or_else(|| {
                self.tcp_listeners
                    .get(&SocketAddr::new(unspecified_like(dst), tuple.local.port()))
            })
            .copied();
        if let Some(i) = listener {
            if let Socket::TcpListener { listener, .. } = &mut self.sockets[i] {
                listener.handle_segment(now, tuple, &header, payload);
                self.touch(i);
                return;
            }
        }
        // No socket: RST (RFC 9293 §3.10.7.1), never in answer to a RST.
        if header.flags.rst() {
            return;
        }
        let (seq, ack, flags) = if header.flags.ack() {
            (header.ack, SeqNum(0), Flags::RST)
        } else {
            let len =
                payload.len() + usize::from(header.flags.syn()) + usize::from(header.flags.fin());
            (SeqNum(0), header.seq + len, Flags::RST | Flags::ACK)
        };
        let rst = Header {
            seq,
            ack,
            flags,
            window: 0,
            options: Options::default(),
        };
        let mut buf = vec![0u8; 80];
        let built = tcp_packet(&mut buf, &tuple, &rst, Payload::default(), false);
        if let Some(log) = &mut self.trace_log {
            let e = trace_events::segment(
                oxcat_trace::Direction::Out,
                tuple.local,
                tuple.remote,
                &rst,
                &[],
            );
            log.push((now, e));
        }
        if let Ok(n) = built {
            buf.truncate(n);
            self.control_out.push_back(buf);
            self.stats.tcp_resets_sent += 1;
        }
    }

    fn ingress_udp(
        &mut self,
        now: Instant,
        src: IpAddr,
        dst: IpAddr,
        datagram: &[u8],
        packet: &[u8],
    ) {
        let Ok(up) = UdpPacket::new_checked(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        let parsed = match (src, dst) {
            _ if self.rx_checksum_partial => UdpRepr::parse_unverified(&up),
            (IpAddr::V4(s), IpAddr::V4(d)) => UdpRepr::parse(&up, s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => UdpRepr::parse(&up, s, d),
            _ => return,
        };
        let Ok(repr) = parsed else {
            self.stats.bad_checksum += 1;
            return;
        };
        let local = SocketAddr::new(dst, repr.dst_port);
        let i = self
            .udp_sockets
            .get(&local)
            .or_else(|| {
                self.udp_sockets
                    .get(&SocketAddr::new(unspecified_like(dst), repr.dst_port))
            })
            .copied();
        let from = SocketAddr::new(src, repr.src_port);
        if let Some(log) = &mut self.trace_log {
            let n = up.payload().len();
            log.push((
                now,
                oxcat_trace::Event::note(format!("udp in  {from} > {local} len={n}")),
            ));
        }
        // A connected socket hears only its peer (Linux's lookup passes it
        // over for anyone else: port unreachable).
        let i = i.filter(|&i| match &self.sockets[i] {
            Socket::Udp {
                peer: Some(peer), ..
            } => *peer == from,
            _ => true,
        });
        let limit = self.config.udp_buffer;
        match i {
            Some(i) => {
                if let Socket::Udp {
                    queue,
                    queued_bytes,
                    ..
                } = &mut self.sockets[i]
                {
                    let data = up.payload();
                    if *queued_bytes + data.len() > limit {
                        self.stats.udp_dropped_full += 1;
                        return;
                    }
                    *queued_bytes += data.len();
                    queue.push_back((from, data.to_vec()));
                }
            }
            None => self.port_unreachable(src, dst, packet),
        }
    }

    /// An ICMP port unreachable quoting one of our UDP datagrams: a socket
    /// connected to where it went gets ConnectionRefused on its next call
    /// (RFC 1122 §4.1.3.3 passes ICMP errors to the application; Linux does
    /// so for connected sockets, which std reports as ECONNREFUSED).
    /// Unconnected sockets hear nothing, as on Linux without IP_RECVERR.
    fn udp_refused(&mut self, quoted_ip: &[u8]) {
        let (local_ip, remote_ip, upper) = match quoted_ip.first().map(|b| b >> 4) {
            Some(4) => {
                let Ok(p) = Ipv4Packet::new_checked_header(quoted_ip) else {
                    return;
                };
                if p.protocol() != IpProtocol::UDP {
                    return;
                }
                let upper = quoted_ip.get(p.header_len()..);
                (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()), upper)
            }
            Some(6) => {
                let Ok(p) = Ipv6Packet::new_checked_header(quoted_ip) else {
                    return;
                };
                // The quote may be cut short, but the headers up to UDP's are in it.
                let rest = quoted_ip.get(ipv6::HEADER_LEN..).unwrap_or_default();
                let Ok(chain) = oxcat_wire::walk_extension_headers(p.next_header(), rest) else {
                    return;
                };
                let first_fragment = chain.fragment.is_none_or(|f| f.offset == 0);
                if chain.protocol != IpProtocol::UDP || !first_fragment {
                    return;
                }
                let upper = rest.get(chain.offset..);
                (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()), upper)
            }
            _ => return,
        };
        let Some(&[s1, s2, d1, d2, ..]) = upper else {
            return;
        };
        let local = SocketAddr::new(local_ip, u16::from_be_bytes([s1, s2]));
        let remote = SocketAddr::new(remote_ip, u16::from_be_bytes([d1, d2]));
        let i = self
            .udp_sockets
            .get(&local)
            .or_else(|| {
                self.udp_sockets
                    .get(&SocketAddr::new(unspecified_like(local_ip), local.port()))
            })
            .copied();
        if let Some(Socket::Udp {
            peer: Some(peer),
            pending_error,
            ..
        }) = i.and_then(|i| self.sockets.get_mut(i))
        {
            if *peer == remote {
                *pending_error = Some(io::ErrorKind::ConnectionRefused);
            }
        }
    }

    /// ICMP port unreachable for a UDP datagram nobody listens for (RFC 1122 §3.2.2.1).
    fn port_unreachable(&mut self, src: IpAddr, dst: IpAddr, packet: &[u8]) {
        let quoted = &packet[..packet.len().min(548)];
        let mut buf = vec![0u8; 40 + 8 + quoted.len()];
        let built = match (dst, src) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let icmp = Icmpv4Repr::DstUnreachable {
                    code: icmpv4::unreachable::PORT,
                    next_hop_mtu: 0,
                    original: quoted,
                };
                let ip = Ipv4Repr::new(s, d, IpProtocol::ICMP, icmp.buffer_len());
                ip.emit(&mut buf)
                    .and_then(|_| icmp.emit(&mut buf[20..20 + icmp.buffer_len()]))
                    .map(|_| 20 + icmp.buffer_len())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let icmp = Icmpv6Repr::DstUnreachable {
                    code: icmpv6::unreachable::PORT,
                    original: quoted,
                };
                let ip = Ipv6Repr::new(s, d, IpProtocol::ICMPV6, icmp.buffer_len());
                ip.emit(&mut buf)
                    .and_then(|_| icmp.emit(&mut buf[40..40 + icmp.buffer_len()], s, d))
                    .map(|_| 40 + icmp.buffer_len())
            }
            _ => return,
        };
        if let Ok(n) = built {
            buf.truncate(n);
            self.control_out.push_back(buf);
            self.stats.udp_unreachable_sent += 1;
        }
    }

    /// Path MTU discovery (RFC 1191, RFC 8201): an ICMP "too big" quoting
    /// one of our TCP segments lowers that connection's MSS; the quoted
    /// header names the connection (source = us, destination = the peer).
    fn path_mtu(&mut self, now: Instant, quoted_ip: &[u8], mtu: usize) {
        let (local_ip, remote_ip, proto, header_len, upper) =
            match quoted_ip.first().map(|b| b >> 4) {
                Some(4) => {
                    let Ok(p) = Ipv4Packet::new_checked_header(quoted_ip) else {
                        return;
                    };
                    let hl = p.header_len();
                    (
                        IpAddr::V4(p.src_addr()),
                        IpAddr::V4(p.dst_addr()),
                        p.protocol(),
                        20,
                        quoted_ip.get(hl..),
                    )
                }
                Some(6) => {
                    let Ok(p) = Ipv6Packet::new_checked_header(quoted_ip) else {
                        return;
                    };
                    (
                        IpAddr::V6(p.src_addr()),
                        IpAddr::V6(p.dst_addr()),
                        p.next_header(),
                        40,
                        quoted_ip.get(40..),
                    )
                }
                _ => return,
            };
        let Some(upper) = upper else { return };
        if proto != IpProtocol::TCP || upper.len() < 4 {
            return;
        }
        let src_port = u16::from_be_bytes([upper[0], upper[1]]);
        let dst_port = u16::from_be_bytes([upper[2], upper[3]]);
        let tuple = FourTuple {
            local: SocketAddr::new(local_ip, src_port),
            remote: SocketAddr::new(remote_ip, dst_port),
        };
        if let Some(&i) = self.tcp_conns.get(&tuple) {
            if let Socket::TcpStream { conn, .. } = &mut self.sockets[i] {
                // RFC 1191 §3: never below 68 (IPv4) / 1280 (IPv6, RFC 8201); the MSS
                // is the MTU less the IP and TCP headers.
                let floor = if header_len == 20 { 68 } else { 1280 };
                let mss = mtu.max(floor).saturating_sub(header_len + 20);
                conn.reduce_mss(now, mss);
                self.stats.path_mtu_updates += 1;
                self.touch(i);
            }
        }
    }

    fn ingress_icmpv4(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) {
        let Ok(p) = Icmpv4Packet::new_checked(msg) else {
            self.stats.malformed += 1;
            return;
        };
        if let Ok(Icmpv4Repr::DstUnreachable {
            code: icmpv4::unreachable::FRAG_NEEDED,
            next_hop_mtu,
            original,
        }) = Icmpv4Repr::parse(&p)
        {
            self.path_mtu(now, original, usize::from(next_hop_mtu).max(68));
            return;
        }
        if let Ok(Icmpv4Repr::DstUnreachable {
            code: icmpv4::unreachable::PORT,
            original,
            ..
        }) = Icmpv4Repr::parse(&p)
        {
            self.udp_refused(original);
            return;
        }
        let Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv4Repr::parse(&p)
        else {
            return;
        };
        let reply = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let mut buf = vec![0u8; 20 + reply.buffer_len()];
        let ip = Ipv4Repr::new(dst, src, IpProtocol::ICMP, reply.buffer_len());
        if ip
            .emit(&mut buf)
            .and_then(|_| reply.emit(&mut buf[20..]))
            .is_ok()
        {
            self.control_out.push_back(buf);
            self.stats.echo_replies += 1;
        }
    }

    fn ingress_icmpv6(&mut self, now: Instant, src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) {
        let Ok(p) = Icmpv6Packet::new_checked(msg) else {
            self.stats.malformed += 1;
            return;
        };
        if let Ok(Icmpv6Repr::PacketTooBig { mtu, original }) = Icmpv6Repr::parse(&p, src, dst) {
            self.path_mtu(now, original, mtu as usize);
            return;
        }
        if let Ok(Icmpv6Repr::DstUnreachable {
            code: icmpv6::unreachable::PORT,
            original,
        }) = Icmpv6Repr::parse(&p, src, dst)
        {
            self.udp_refused(original);
            return;
        }
        let Ok(Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv6Repr::parse(&p, src, dst)
        else {
            return;
        };
        let reply = Icmpv6Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let mut buf = vec![0u8; 40 + reply.buffer_len()];
        let ip = Ipv6Repr::new(dst, src, IpProtocol::ICMPV6, reply.buffer_len());
        if ip
            .emit(&mut buf)
            .and_then(|_| reply.emit(&mut buf[40..], dst, src))
            .is_ok()
        {
            self.control_out.push_back(buf);
            self.stats.echo_replies += 1;
        }
    }
}

#[cfg(test)]
mod four_tuple_tests {
    use super::FourTuple;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::HashSet;
    use std::hash::{Hash, Hasher};

    /// The word-wise `Hash` tells apart tuples that differ in any address
    /// or port, in either order, v4, v6 and v4-mapped, and equal tuples
    /// hash alike (so a table finds them).
    #[test]
    fn tuples_that_differ_anywhere_hash_apart() {
        let t = |l: &str, r: &str| FourTuple {
            local: l.parse().expect("address"),
            remote: r.parse().expect("address"),
        };
        let all = [
            t("198.18.0.2:80", "198.18.0.1:4000"),
            t("198.18.0.2:80", "198.18.0.1:4001"),
            t("198.18.0.2:81", "198.18.0.1:4000"),
            t("198.18.0.1:4000", "198.18.0.2:80"),
            t("198.18.0.3:80", "198.18.0.1:4000"),
            t("198.18.0.2:80", "198.18.0.4:4000"),
            t("[fd00::2]:80", "[fd00::1]:4000"),
            t("[fd00::2]:80", "[fd00::1]:4001"),
            t("[fd00::1]:4000", "[fd00::2]:80"),
            t("[::ffff:198.18.0.2]:80", "[::ffff:198.18.0.1]:4000"),
        ];
        let hash = |x: &FourTuple| {
            let mut h = DefaultHasher::new();
            x.hash(&mut h);
            h.finish()
        };
        let distinct: HashSet<u64> = all.iter().map(hash).collect();
        assert_eq!(distinct.len(), all.len());
        for x in &all {
            let copy = t(&x.local.to_string(), &x.remote.to_string());
            assert_eq!(hash(x), hash(&copy));
        }
        let table: HashSet<FourTuple> = all.iter().copied().collect();
        assert!(all.iter().all(|x| table.contains(x)));
    }
}
