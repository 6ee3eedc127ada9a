//! Our stack with a device that costs nearly nothing: the peer is a script
//! in the same thread that hands the stack pre-built packets (a template
//! copied into the stack's buffer, with sequence number, timestamps and
//! checksum patched in) and reads only a few fields of what the stack
//! sends. What remains in `Stack::poll` is the stack's own work: IP and TCP
//! parsing, checksum verification, demultiplexing, the engine, building and
//! checksumming the answer.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use oxcat_stack::{Device, SocketHandle, Stack, StackConfig};
use oxcat_wire::{Checksum, IpProtocol, Ipv4Repr, TcpFlags, TcpPacket, TcpRepr, Timestamps};

/// The scripted peer (the kernel's place on the TUN runs).
pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Our stack.
pub const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const PORT: u16 = 7000;
const MTU: usize = 1500;
/// A full-size payload with timestamps on: MSS 1460 less 12 bytes of options.
pub const PAYLOAD: usize = 1448;
/// Segments per timed block of polls in the per-segment measurements.
pub const BLOCK_SEGMENTS: usize = 32;

fn wire_error(e: oxcat_wire::Error) -> io::Error {
    io::Error::other(format!("building a packet: {e}"))
}

/// One IPv4 packet from the peer to us.
fn build(repr: &TcpRepr, payload: &[u8]) -> io::Result<Vec<u8>> {
    let tcp_len = repr.header_len() + payload.len();
    let ip = Ipv4Repr::new(PEER, OURS, IpProtocol::TCP, tcp_len);
    let mut buf = vec![0u8; 20 + tcp_len];
    ip.emit(&mut buf).map_err(wire_error)?;
    repr.emit(&mut buf[20..], PEER, OURS, payload)
        .map_err(wire_error)?;
    Ok(buf)
}

/// Offset of the timestamps option's value within a TCP header.
fn timestamps_at(tcp: &[u8]) -> Option<usize> {
    let header_len = usize::from(tcp.get(12)? >> 4) * 4;
    let mut i = 20;
    while i < header_len.min(tcp.len()) {
        match tcp[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1)?);
                if kind == 8 && len == 10 {
                    return Some(i + 2);
                }
                if len < 2 {
                    return None;
                }
                i += len;
            }
        }
    }
    None
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A packet from the peer whose sequence number, acknowledgment number and
/// timestamps are patched per copy; the TCP checksum is redone over the
/// header only (the payload's share of the sum is computed once).
#[derive(Clone)]
pub struct Template {
    bytes: Vec<u8>,
    tcp_header_len: usize,
    ts_at: usize,
    /// Pseudo-header plus payload, summed once.
    base_sum: u16,
}

impl Template {
    fn new(repr: &TcpRepr, payload: &[u8]) -> io::Result<Template> {
        let mut bytes = build(repr, payload)?;
        let tcp_header_len = repr.header_len();
        let ts_at = 20
            + timestamps_at(&bytes[20..])
                .ok_or_else(|| io::Error::other("template without timestamps"))?;
        bytes[36] = 0;
        bytes[37] = 0;
        let tcp_len = (tcp_header_len + payload.len()) as u16;
        let mut sum = Checksum::new();
        sum.add_bytes(&PEER.octets())
            .add_bytes(&OURS.octets())
            .add_u16(u16::from(IpProtocol::TCP.0))
            .add_u16(tcp_len)
            .add_bytes(payload);
        Ok(Template {
            bytes,
            tcp_header_len,
            ts_at,
            base_sum: sum.sum(),
        })
    }

    /// Writes the packet into `buf` with the given fields.
    fn write(&self, buf: &mut [u8], seq: u32, ack: u32, tsval: u32, tsecr: u32) -> usize {
        let n = self.bytes.len();
        let p = &mut buf[..n];
        p.copy_from_slice(&self.bytes);
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[self.ts_at..self.ts_at + 4].copy_from_slice(&tsval.to_be_bytes());
        p[self.ts_at + 4..self.ts_at + 8].copy_from_slice(&tsecr.to_be_bytes());
        let sum = Checksum::new()
            .add_u16(self.base_sum)
            .add_bytes(&p[20..20 + self.tcp_header_len])
            .finish();
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        n
    }
}

/// The peer's view of one connection after the handshake.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub port: u16,
    /// The peer's next sequence number.
    pub seq: u32,
    /// What the peer acknowledges: our next sequence number.
    pub ack: u32,
    /// The peer's next timestamp value.
    pub tsval: u32,
    /// Our latest timestamp value, to echo.
    pub tsecr: u32,
    /// The right edge of the window our stack last advertised (the peer
    /// sends nothing beyond it, as a real sender would).
    pub window_edge: u32,
    /// Our stack's window scale (from its SYN-ACK).
    pub their_window_scale: u8,
}

/// The handshake's device: one queued packet in, the last small packet out kept.
pub struct Scripted {
    pending: Option<Vec<u8>>,
    last_out: [u8; 128],
    last_out_len: usize,
    pub sent: u64,
}

impl Default for Scripted {
    fn default() -> Self {
        Scripted {
            pending: None,
            last_out: [0; 128],
            last_out_len: 0,
            sent: 0,
        }
    }
}

impl Device for Scripted {
    fn mtu(&self) -> usize {
        MTU
    }

    fn receive(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.pending.take().map(|p| {
            buf[..p.len()].copy_from_slice(&p);
            p.len()
        }))
    }

    fn transmit(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.sent += 1;
        if packet.len() <= self.last_out.len() {
            self.last_out[..packet.len()].copy_from_slice(packet);
            self.last_out_len = packet.len();
        }
        Ok(())
    }
}

/// Times of one handshake's processing, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct HandshakeTimes {
    /// The poll that takes in the SYN and sends the SYN-ACK.
    pub syn_poll: f64,
    /// The poll that takes in the final ACK, plus the `accept` that returns it.
    pub ack_poll_and_accept: f64,
}

/// A Linux-like handshake from `port`: SYN with MSS 1460, SACK permitted,
/// timestamps and (if given) window scale; our SYN-ACK; the ACK.
pub fn handshake(
    stack: &mut Stack,
    dev: &mut Scripted,
    listener: SocketHandle,
    port: u16,
    window_scale: Option<u8>,
    window: u16,
) -> io::Result<(SocketHandle, Peer, HandshakeTimes)> {
    let iss = 0x1000_0000u32.wrapping_add(u32::from(port).wrapping_mul(7919));
    let tsval = 1_000_000u32.wrapping_add(u32::from(port));
    let mut syn = TcpRepr::new(port, PORT, TcpFlags::SYN);
    syn.seq = iss;
    syn.window = 64240;
    syn.mss = Some(1460);
    syn.sack_permitted = true;
    syn.timestamps = Some(Timestamps { tsval, tsecr: 0 });
    syn.window_scale = window_scale;
    dev.pending = Some(build(&syn, &[])?);
    dev.last_out_len = 0;
    let t0 = Instant::now();
    stack.poll(t0, dev)?;
    let t1 = Instant::now();
    let out = &dev.last_out[..dev.last_out_len];
    let synack = TcpPacket::new_checked(out.get(20..).unwrap_or(&[]))
        .and_then(|p| TcpRepr::parse_unverified(&p))
        .map_err(|e| io::Error::other(format!("no SYN-ACK from the stack: {e}")))?;
    if synack.flags != (TcpFlags::SYN | TcpFlags::ACK) || synack.ack != iss.wrapping_add(1) {
        return Err(io::Error::other(format!(
            "expected a SYN-ACK for {iss}, got {synack:?}"
        )));
    }
    let their_ts = synack.timestamps.map_or(0, |t| t.tsval);
    let mut ack = TcpRepr::new(port, PORT, TcpFlags::ACK);
    ack.seq = iss.wrapping_add(1);
    ack.ack = synack.seq.wrapping_add(1);
    ack.window = window;
    ack.timestamps = Some(Timestamps {
        tsval: tsval + 1,
        tsecr: their_ts,
    });
    dev.pending = Some(build(&ack, &[])?);
    let t2 = Instant::now();
    stack.poll(t2, dev)?;
    let accepted = stack.tcp_accept(listener)?;
    let t3 = Instant::now();
    let Some((h, _)) = accepted else {
        return Err(io::Error::other("the handshake did not complete"));
    };
    let peer = Peer {
        port,
        seq: iss.wrapping_add(1),
        ack: synack.seq.wrapping_add(1),
        tsval: tsval + 2,
        tsecr: their_ts,
        // RFC 7323 §2.2: the window in a SYN-ACK is never scaled.
        window_edge: iss.wrapping_add(1).wrapping_add(u32::from(synack.window)),
        their_window_scale: if window_scale.is_some() {
            synack.window_scale.unwrap_or(0)
        } else {
            0
        },
    };
    let times = HandshakeTimes {
        syn_poll: (t1 - t0).as_nanos() as f64,
        ack_poll_and_accept: (t3 - t2).as_nanos() as f64,
    };
    Ok((h, peer, times))
}

fn stack(now: Instant) -> io::Result<(Stack, SocketHandle)> {
    let mut stack = Stack::new(
        StackConfig {
            ipv4: Some(OURS),
            ..StackConfig::default()
        },
        now,
    );
    let listener = stack.tcp_listen(SocketAddr::from((OURS, PORT)), 128, now)?;
    Ok((stack, listener))
}

/// Processing of `runs` handshakes (after `warmup`), each from a new port,
/// each connection reset (RST) after the accept, untimed.
pub fn handshakes(runs: usize, warmup: usize) -> io::Result<Vec<f64>> {
    let (mut stack, listener) = stack(Instant::now())?;
    let mut dev = Scripted::default();
    let mut out = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let port = 10_000 + (i % 50_000) as u16;
        let (h, _, t) = handshake(&mut stack, &mut dev, listener, port, Some(7), 502)?;
        if i >= warmup {
            out.push(t.syn_poll + t.ack_poll_and_accept);
        }
        stack.tcp_close_reset(h, Instant::now());
        stack.poll(Instant::now(), &mut dev)?;
    }
    Ok(out)
}

/// The peer sending full-size data segments, `per_poll` of them each time
/// the stack polls (then "nothing more"), never beyond the window the stack
/// advertised; it reads the acknowledgment and window of what the stack sends.
#[derive(Clone)]
pub struct DataSource {
    template: Template,
    peer: Peer,
    per_poll: usize,
    given: usize,
    /// Hand the stack nothing (a poll that only lets it send).
    pub paused: bool,
    pub delivered: u64,
    pub sent_by_stack: u64,
}

impl DataSource {
    pub fn new(peer: Peer, per_poll: usize) -> io::Result<DataSource> {
        let mut r = TcpRepr::new(peer.port, PORT, TcpFlags::ACK);
        r.window = 502;
        r.timestamps = Some(Timestamps { tsval: 0, tsecr: 0 });
        r.payload_len = PAYLOAD;
        let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 7 + 3) as u8).collect();
        Ok(DataSource {
            template: Template::new(&r, &payload)?,
            peer,
            per_poll,
            given: 0,
            paused: false,
            delivered: 0,
            sent_by_stack: 0,
        })
    }
}

impl Device for DataSource {
    fn mtu(&self) -> usize {
        MTU
    }

    fn receive(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let p = &mut self.peer;
        let beyond_window = (p
            .seq
            .wrapping_add(PAYLOAD as u32)
            .wrapping_sub(p.window_edge) as i32)
            > 0;
        if self.given == self.per_poll || self.paused || beyond_window {
            self.given = 0;
            return Ok(None);
        }
        self.given += 1;
        let n = self.template.write(buf, p.seq, p.ack, p.tsval, p.tsecr);
        p.seq = p.seq.wrapping_add(PAYLOAD as u32);
        p.tsval = p.tsval.wrapping_add(1);
        self.delivered += 1;
        Ok(Some(n))
    }

    fn transmit(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        self.sent_by_stack += 1;
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let tcp = &packet[ihl..];
        let window = u32::from(u16::from_be_bytes([tcp[14], tcp[15]]));
        let edge = be32(tcp, 8).wrapping_add(window << self.peer.their_window_scale);
        // RFC 9293 §3.8.6.2.1: the right edge does not move left.
        if (edge.wrapping_sub(self.peer.window_edge) as i32) > 0 {
            self.peer.window_edge = edge;
        }
        Ok(())
    }
}

/// The peer receiving: it reads sequence number, length and timestamp of
/// every segment the stack sends and, at the stack's next poll, hands it
/// one ACK for everything sent so far with a window of `window` bytes
/// (no window scaling), so the stack can send `window / 1448` segments
/// per poll.
#[derive(Clone)]
pub struct AckSink {
    template: Template,
    peer: Peer,
    owed: bool,
    pub data_segments: u64,
    pub full_segments: u64,
    pub other_packets: u64,
    pub acks_given: u64,
    pub data_bytes: u64,
    /// The first data segment the stack sent, kept for the device-only timing.
    sample: Option<Vec<u8>>,
}

impl AckSink {
    pub fn new(peer: Peer, window: u16) -> io::Result<AckSink> {
        let mut r = TcpRepr::new(peer.port, PORT, TcpFlags::ACK);
        r.window = window;
        r.timestamps = Some(Timestamps { tsval: 0, tsecr: 0 });
        Ok(AckSink {
            template: Template::new(&r, &[])?,
            peer,
            owed: false,
            data_segments: 0,
            full_segments: 0,
            other_packets: 0,
            acks_given: 0,
            data_bytes: 0,
            sample: None,
        })
    }
}

impl Device for AckSink {
    fn mtu(&self) -> usize {
        MTU
    }

    fn receive(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if !self.owed {
            return Ok(None);
        }
        self.owed = false;
        self.acks_given += 1;
        let p = &mut self.peer;
        let n = self.template.write(buf, p.seq, p.ack, p.tsval, p.tsecr);
        p.tsval = p.tsval.wrapping_add(1);
        Ok(Some(n))
    }

    fn transmit(&mut self, _now: Instant, packet: &[u8]) -> io::Result<()> {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let tcp = &packet[ihl..];
        let header_len = usize::from(tcp[12] >> 4) * 4;
        let len = total - ihl - header_len;
        if len == 0 {
            self.other_packets += 1;
            return Ok(());
        }
        self.data_segments += 1;
        self.data_bytes += len as u64;
        if self.sample.is_none() {
            self.sample = Some(packet.to_vec());
        }
        if len == PAYLOAD {
            self.full_segments += 1;
        }
        let end = be32(tcp, 4).wrapping_add(len as u32);
        if (end.wrapping_sub(self.peer.ack) as i32) > 0 {
            self.peer.ack = end;
        }
        if let Some(at) = timestamps_at(tcp) {
            self.peer.tsecr = be32(tcp, at);
        }
        self.owed = true;
        Ok(())
    }
}

/// Per-segment cost with the in-memory peer, in nanoseconds per segment:
/// one value per block of `BLOCK_SEGMENTS` segments (timed as a whole: one
/// clock read per block, the polls of a block share one `now`).
pub struct NullSegments {
    pub per_segment: Vec<f64>,
    /// What the device's own calls cost per segment (measured alone, the
    /// same calls in the same pattern), included in `per_segment`; hot in
    /// the cache there, so if anything less than they cost in place.
    pub device_per_segment: f64,
    /// Packets the stack sent per segment (ACKs when receiving; data
    /// segments plus anything else when sending).
    pub stack_packets_per_segment: f64,
    pub segments: u64,
}

impl NullSegments {
    /// The blocks' figures less the peer's own calls: the stack's own cost,
    /// as the TUN rows leave out the device's system calls.
    pub fn stack_alone(&self) -> Vec<f64> {
        self.per_segment
            .iter()
            .map(|v| v - self.device_per_segment)
            .collect()
    }
}

/// Receive + ACK: the peer sends `per_poll` full-size segments per poll;
/// after each block the application reads everything (untimed) and the
/// byte count is checked.
pub fn receive_cost(per_poll: usize, blocks: usize, warmup: usize) -> io::Result<NullSegments> {
    let (mut stack, listener) = stack(Instant::now())?;
    let mut scripted = Scripted::default();
    let (h, peer, _) = handshake(&mut stack, &mut scripted, listener, 40_000, Some(7), 502)?;
    let mut dev = DataSource::new(peer, per_poll)?;
    let calibration = dev.clone();
    let polls = BLOCK_SEGMENTS / per_poll;
    let block_bytes = polls * per_poll * PAYLOAD;
    let mut buf = vec![0u8; 256 * 1024];
    let mut per_segment = Vec::with_capacity(blocks);
    let (mut segments, mut acks) = (0u64, 0u64);
    for b in 0..warmup + blocks {
        let sent_before = dev.sent_by_stack;
        let now = Instant::now();
        for _ in 0..polls {
            stack.poll(now, &mut dev)?;
        }
        let ns = now.elapsed().as_nanos() as f64;
        let acks_in_block = dev.sent_by_stack - sent_before;
        let mut got = 0;
        while let Ok(n) = stack.tcp_recv(h, &mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        if got != block_bytes {
            return Err(io::Error::other(format!(
                "in-memory receive: {got} bytes arrived of {block_bytes} in a block \
                 (the window did not stay open)"
            )));
        }
        // Untimed: the window update the read allows goes out before the
        // peer sends on (a real sender would wait for it).
        dev.paused = true;
        stack.poll(Instant::now(), &mut dev)?;
        dev.paused = false;
        if b >= warmup {
            per_segment.push(ns / (polls * per_poll) as f64);
            segments += (polls * per_poll) as u64;
            acks += acks_in_block;
        }
    }
    // The device alone, the same calls: per_poll packets, then "none".
    let mut dev = calibration;
    let total = segments.max(1);
    let t = Instant::now();
    let mut done = 0u64;
    while done < total {
        // As if the stack kept the window open (a store the real peer does in transmit).
        dev.peer.window_edge = dev.peer.seq.wrapping_add(1 << 20);
        let mut got = 0;
        while let Some(n) = dev.receive(t, &mut buf)? {
            std::hint::black_box(&buf[..n]);
            got += 1;
        }
        if got == 0 {
            return Err(io::Error::other(
                "in-memory receive: the device alone gave nothing",
            ));
        }
        done += got;
    }
    let device_per_segment = t.elapsed().as_nanos() as f64 / done as f64;
    Ok(NullSegments {
        per_segment,
        device_per_segment,
        stack_packets_per_segment: acks as f64 / segments.max(1) as f64,
        segments,
    })
}

/// Send: before each block the application tops the stack's unsent data up
/// to a block's worth (untimed); in each poll the stack takes the peer's ACK
/// for what it sent last time and sends `per_poll` full-size segments (the
/// peer's window allows exactly that many). The warm-up lets slow start
/// open the congestion window past `per_poll`.
pub fn send_cost(per_poll: usize, blocks: usize, warmup: usize) -> io::Result<NullSegments> {
    let window = u16::try_from(per_poll * PAYLOAD)
        .map_err(|_| io::Error::other("per_poll too large for an unscaled window"))?;
    let (mut stack, listener) = stack(Instant::now())?;
    let mut scripted = Scripted::default();
    let (h, peer, _) = handshake(&mut stack, &mut scripted, listener, 40_001, None, window)?;
    let mut dev = AckSink::new(peer, window)?;
    let calibration = dev.clone();
    let polls = BLOCK_SEGMENTS / per_poll;
    let block_bytes = polls * per_poll * PAYLOAD;
    let data = vec![0x5au8; block_bytes];
    let mut per_segment = Vec::with_capacity(blocks);
    let (mut segments, mut packets, mut queued) = (0u64, 0u64, 0u64);
    for b in 0..warmup + blocks {
        while queued - dev.data_bytes < block_bytes as u64 {
            let want = block_bytes - (queued - dev.data_bytes) as usize;
            match stack.tcp_send(h, &data[..want]) {
                Ok(n) if n > 0 => queued += n as u64,
                other => {
                    return Err(io::Error::other(format!(
                        "in-memory send: the send buffer took no more ({other:?})"
                    )))
                }
            }
        }
        let (data_before, full_before, other_before) =
            (dev.data_segments, dev.full_segments, dev.other_packets);
        let now = Instant::now();
        for _ in 0..polls {
            stack.poll(now, &mut dev)?;
        }
        let ns = now.elapsed().as_nanos() as f64;
        let sent = dev.data_segments - data_before;
        let full = dev.full_segments - full_before;
        if b >= warmup {
            if sent != (polls * per_poll) as u64 || full != sent {
                return Err(io::Error::other(format!(
                    "in-memory send: {sent} segments ({full} full-size) in a block, expected {}",
                    polls * per_poll
                )));
            }
            per_segment.push(ns / sent as f64);
            segments += sent;
            packets += sent + dev.other_packets - other_before;
        }
    }
    // The device alone: per poll one ACK in, per_poll data segments out.
    let packet = dev
        .sample
        .take()
        .ok_or_else(|| io::Error::other("in-memory send: no segment to sample"))?;
    let mut dev = calibration;
    dev.sample = Some(Vec::new());
    let mut buf = vec![0u8; 2048];
    let t = Instant::now();
    let mut done = 0u64;
    while done < segments.max(1) {
        dev.owed = true;
        std::hint::black_box(dev.receive(t, &mut buf)?);
        for _ in 0..per_poll {
            dev.transmit(t, std::hint::black_box(&packet))?;
        }
        done += per_poll as u64;
    }
    let device_per_segment = t.elapsed().as_nanos() as f64 / done as f64;
    Ok(NullSegments {
        per_segment,
        device_per_segment,
        stack_packets_per_segment: packets as f64 / segments.max(1) as f64,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcat_wire::Ipv4Packet;

    #[test]
    fn patched_packets_carry_valid_checksums() {
        let peer = Peer {
            port: 40_000,
            seq: 0xffff_f000,
            ack: 2,
            tsval: 3,
            tsecr: 4,
            window_edge: 0x0010_0000,
            their_window_scale: 7,
        };
        let mut dev = DataSource::new(peer, 2).unwrap();
        let mut buf = vec![0u8; 2048];
        let now = Instant::now();
        for i in 0..2u32 {
            let n = dev.receive(now, &mut buf).unwrap().unwrap();
            let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
            assert!(ip.verify_checksum());
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            let r = TcpRepr::parse(&tcp, PEER, OURS).unwrap();
            assert_eq!(r.seq, 0xffff_f000u32.wrapping_add(i * PAYLOAD as u32));
            assert_eq!(r.ack, 2);
            assert_eq!(
                r.timestamps,
                Some(Timestamps {
                    tsval: 3 + i,
                    tsecr: 4
                })
            );
            assert_eq!(r.payload_len, PAYLOAD);
        }
        // Two per poll, then "nothing more".
        assert!(dev.receive(now, &mut buf).unwrap().is_none());
    }

    #[test]
    fn every_measurement_runs_against_the_stack() {
        assert_eq!(handshakes(5, 1).unwrap().len(), 5);
        for per_poll in [1, 32] {
            let r = receive_cost(per_poll, 5, 2).unwrap();
            assert_eq!(r.per_segment.len(), 5);
            assert_eq!(r.segments, 5 * BLOCK_SEGMENTS as u64);
            // The peer's calls cost something, and the judged figures are
            // the blocks' less exactly that.
            assert!(r.device_per_segment > 0.0);
            let alone = r.stack_alone();
            assert_eq!(alone.len(), 5);
            for (a, w) in alone.iter().zip(&r.per_segment) {
                assert_eq!(*a, w - r.device_per_segment);
            }
        }
        for per_poll in [2, 32] {
            let r = send_cost(per_poll, 5, 20).unwrap();
            assert_eq!(r.segments, 5 * BLOCK_SEGMENTS as u64);
            assert!(r.stack_packets_per_segment >= 1.0);
        }
    }
}
