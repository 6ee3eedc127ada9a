//! Fuzz one `oxcat_tcp::Connection`.
//!
//! The input picks a configuration and a starting state. The state is
//! reached through a scripted, well-formed exchange with a second
//! `Connection` acting as the peer (so sequence numbers, options and windows
//! are real), then a sequence of operations runs: forged segments (mostly
//! near the live sequence numbers, sometimes anywhere), app calls, time
//! advances, and deliveries to and from the peer.
//!
//! Invariants checked after every step:
//! - no panic inside the engine;
//! - `poll_transmit` returns `None` within `MAX_TRANSMITS` calls;
//! - every segment's payload is at most `send_mss()` bytes;
//! - a RST carries no payload;
//! - once Closed, the connection emits nothing but (at most) one RST, ever;
//! - after `handle_timeout(t)` with every due deadline fired, `poll_timeout()`
//!   is `None` or later than `t` (else an event loop spins forever).

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use oxcat_tcp::congestion::Algorithm;
use oxcat_tcp::{Config, Connection, Flags, Header, Options, SackBlocks, Segment, SeqNum, State};

const MAX_TRANSMITS: usize = 10_000;
const MAX_PAYLOAD: usize = 3000;
const MAX_OPS: usize = 64;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    LastAck,
    Closing,
    TimeWait,
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    mss: u16,
    recv_buffer: u8,
    send_buffer: u8,
    window_scaling: bool,
    timestamps: bool,
    sack: bool,
    nodelay: bool,
    keepalive: bool,
    newreno: bool,
    initial_window: u8,
    retries: u8,
}

impl Cfg {
    fn build(&self) -> Config {
        let sizes = [
            1usize,
            100,
            1000,
            4096,
            8192,
            65535,
            65536,
            256 * 1024,
            1 << 20,
            4 << 20,
        ];
        Config {
            // Keep the MSS sane but include tiny and odd values.
            mss: [1, 64, 536, 1000, 1460, 9000, self.mss.max(1)][usize::from(self.mss % 7)],
            recv_buffer: sizes[usize::from(self.recv_buffer) % sizes.len()],
            send_buffer: sizes[usize::from(self.send_buffer) % sizes.len()],
            window_scaling: self.window_scaling,
            timestamps: self.timestamps,
            sack: self.sack,
            nodelay: self.nodelay,
            keepalive: self
                .keepalive
                .then(|| (Duration::from_secs(7), Duration::from_secs(1), 3)),
            congestion: if self.newreno {
                Algorithm::NewReno
            } else {
                Algorithm::Cubic
            },
            initial_window: u32::from(self.initial_window % 12),
            syn_retries: u32::from(self.retries % 8),
            data_retries: u32::from(self.retries % 16),
            trace: self.retries & 0x80 != 0,
            ..Config::default()
        }
    }
}

/// A 32-bit value near something the connection knows, or anywhere.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    /// Base + small offset (the common case).
    Near(i16),
    /// Base + a large offset (window edges, wrap-around).
    Far(i32),
    Abs(u32),
}

impl Num {
    fn resolve(self, base: u32) -> u32 {
        match self {
            Num::Near(d) => base.wrapping_add(d as i32 as u32),
            Num::Far(d) => base.wrapping_add(d as u32),
            Num::Abs(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct SegSpec {
    seq: Num,
    ack: Num,
    /// Which of the connection's numbers `ack` is relative to.
    ack_base_una: bool,
    flags: u8,
    window: u16,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    sack: Vec<(Num, Num)>,
    timestamps: Option<(Num, Num)>,
    payload_len: u16,
    fill: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Segment(SegSpec),
    Send(u16),
    /// The application hands over its own buffers (`send_bytes`, no copy):
    /// `len` bytes cut into 1..=16 slices, each offered once.
    SendBytes {
        len: u16,
        pieces: u8,
    },
    Recv(u16),
    ShutdownWrite,
    Close,
    Abort,
    /// `handle_timeout` at the next deadline.
    TimeoutAtDeadline,
    /// Time passes by this many ms, then `handle_timeout`.
    Advance(u32),
    /// Time passes a lot (past PAWS' 24 days, keepalive, TIME-WAIT).
    AdvanceSecs(u32),
    /// Deliver what is in flight to the peer (dropping some by mask) and the
    /// peer's answers back to the connection.
    PeerExchange {
        drop_mask: u16,
        reverse: bool,
    },
    /// The peer does something.
    PeerSend(u16),
    PeerRecv,
    PeerShutdown,
    /// Deliver a segment the connection already sent, once more (duplicate).
    Replay(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    start: Start,
    cfg: Cfg,
    peer_cfg: Cfg,
    /// The fuzzed connection opened actively (else it is the server).
    active: bool,
    /// Both ends send with `poll_transmit_burst` (else one `poll_transmit`
    /// per segment).
    burst: bool,
    iss: u32,
    peer_iss: u32,
    ops: Vec<Op>,
}

/// What we learned about the connection from what it sent.
struct Track {
    /// Highest SEQ+LEN it sent (≈ SND.MAX).
    snd_max: u32,
    /// Lowest unacknowledged as far as the peer acked (≈ SND.UNA).
    snd_una: u32,
    /// The last ACK it sent (≈ RCV.NXT).
    rcv_nxt: u32,
    /// The last TSval it sent and the last one the peer sent.
    ts_mine: u32,
    ts_peer: u32,
    /// Segments it sent (for replays), bounded.
    sent: Vec<Segment>,
    /// Once Closed: what it sent since.
    closed_rsts: usize,
}

struct World {
    now: Instant,
    conn: Connection,
    peer: Connection,
    to_peer: Vec<Segment>,
    to_conn: Vec<Segment>,
    track: Track,
    burst: bool,
}

fn drain(c: &mut Connection, now: Instant, burst: bool) -> Vec<Segment> {
    let mut out = Vec::new();
    if burst {
        let mut h = Header::default();
        loop {
            let before = out.len();
            c.poll_transmit_burst(now, &mut h, |h, p| {
                out.push(Segment {
                    header: *h,
                    payload: p.to_vec(),
                });
                out.len() <= MAX_TRANSMITS
            });
            assert!(
                out.len() <= MAX_TRANSMITS,
                "poll_transmit_burst did not terminate ({MAX_TRANSMITS} segments) in {:?}",
                c.state()
            );
            if out.len() == before {
                return out;
            }
        }
    }
    loop {
        match c.poll_transmit(now) {
            Some(s) => {
                out.push(s);
                assert!(
                    out.len() <= MAX_TRANSMITS,
                    "poll_transmit did not terminate ({MAX_TRANSMITS} segments) in {:?}",
                    c.state()
                );
            }
            None => return out,
        }
    }
}

impl World {
    /// Drains the fuzzed connection and checks the per-segment invariants.
    fn drain_conn(&mut self) {
        let was_closed = self.conn.state() == State::Closed;
        let segs = drain(&mut self.conn, self.now, self.burst);
        let mss = self.conn.send_mss();
        for s in &segs {
            let h = &s.header;
            assert!(
                s.payload.len() <= mss,
                "payload {} > send MSS {} in {:?}: {:?}",
                s.payload.len(),
                mss,
                self.conn.state(),
                s
            );
            if h.flags.rst() {
                assert!(s.payload.is_empty(), "RST with payload: {s:?}");
            }
            if was_closed || self.conn.state() == State::Closed {
                assert!(
                    h.flags.rst(),
                    "Closed connection sent a non-RST segment: {s:?}"
                );
                self.track.closed_rsts += 1;
                assert!(
                    self.track.closed_rsts <= 1,
                    "Closed connection sent more than one RST: {s:?}"
                );
            }
            if !h.flags.rst() {
                let end = h.seq.0.wrapping_add(s.seq_len() as u32);
                if (end.wrapping_sub(self.track.snd_max) as i32) > 0 {
                    self.track.snd_max = end;
                }
                if h.flags.ack() {
                    self.track.rcv_nxt = h.ack.0;
                }
                if let Some((v, _)) = h.options.timestamps {
                    self.track.ts_mine = v;
                }
            }
            if self.track.sent.len() < 64 {
                self.track.sent.push(s.clone());
            }
        }
        self.to_peer.extend(segs);
    }

    fn drain_peer(&mut self) {
        let segs = drain(&mut self.peer, self.now, self.burst);
        self.to_conn.extend(segs);
    }

    fn feed_conn(&mut self, h: &Header, payload: &[u8]) {
        if h.flags.ack() && (h.ack.0.wrapping_sub(self.track.snd_una) as i32) > 0 {
            self.track.snd_una = h.ack.0;
        }
        if let Some((v, _)) = h.options.timestamps {
            self.track.ts_peer = v;
        }
        self.conn.handle_segment(self.now, h, payload);
    }

    /// Moves everything in flight, both ways, `drop_mask` bit i dropping the
    /// i-th segment to the peer.
    fn exchange(&mut self, drop_mask: u16, reverse: bool) {
        self.drain_conn();
        let to_peer = std::mem::take(&mut self.to_peer);
        for (i, s) in to_peer.into_iter().enumerate() {
            if i < 16 && drop_mask & (1 << i) != 0 {
                continue;
            }
            self.peer.handle_segment(self.now, &s.header, &s.payload);
        }
        self.drain_peer();
        let mut to_conn = std::mem::take(&mut self.to_conn);
        if reverse {
            to_conn.reverse();
        }
        for s in to_conn {
            self.feed_conn(&s.header, &s.payload);
        }
        self.drain_conn();
    }

    /// Setup only: exchange everything until `done`, moving time to the next
    /// deadline when nothing moves.
    fn run_until(&mut self, what: &str, done: impl Fn(&World) -> bool) {
        for _ in 0..200 {
            if done(self) {
                return;
            }
            let before = self.to_peer.len() + self.to_conn.len();
            self.drain_conn();
            self.drain_peer();
            let moved = self.to_peer.len() + self.to_conn.len() != before || before > 0;
            self.exchange(0, false);
            if done(self) {
                return;
            }
            if !moved {
                let next = [self.conn.poll_timeout(), self.peer.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(t) = next else { break };
                self.now = self.now.max(t);
                self.conn.handle_timeout(self.now);
                self.peer.handle_timeout(self.now);
            }
        }
        panic!(
            "setup: could not reach {what} with a well-formed exchange: conn {:?} {:?}, peer {:?} {:?}",
            self.conn.state(),
            self.conn.close_reason(),
            self.peer.state(),
            self.peer.close_reason()
        );
    }

    fn timeout(&mut self) {
        let now = self.now;
        self.conn.handle_timeout(now);
        if let Some(t) = self.conn.poll_timeout() {
            assert!(
                t > now,
                "poll_timeout {:?} not after handle_timeout({:?}) in {:?}",
                t,
                now,
                self.conn.state()
            );
        }
        self.peer.handle_timeout(now);
    }
}

fn build_segment(w: &World, spec: &SegSpec) -> (Header, Vec<u8>) {
    let t = &w.track;
    let seq = SeqNum(spec.seq.resolve(t.rcv_nxt));
    let ack_base = if spec.ack_base_una {
        t.snd_una
    } else {
        t.snd_max
    };
    let ack = SeqNum(spec.ack.resolve(ack_base));
    let mut sack = SackBlocks::new();
    for (l, r) in spec.sack.iter().take(4) {
        let l = l.resolve(t.snd_una);
        sack.push(SeqNum(l), SeqNum(r.resolve(l)));
    }
    let options = Options {
        mss: spec.mss,
        window_scale: spec.window_scale,
        sack_permitted: spec.sack_permitted,
        sack,
        timestamps: spec
            .timestamps
            .map(|(v, e)| (v.resolve(t.ts_peer), e.resolve(t.ts_mine))),
    };
    let h = Header {
        seq,
        ack,
        flags: Flags(spec.flags),
        window: spec.window,
        options,
    };
    let len = usize::from(spec.payload_len) % (MAX_PAYLOAD + 1);
    let payload: Vec<u8> = (0..len).map(|i| spec.fill.wrapping_add(i as u8)).collect();
    (h, payload)
}

fn setup(input: &Input, now: Instant) -> World {
    let cfg = input.cfg.build();
    let peer_cfg = input.peer_cfg.build();
    let (conn, peer) = match (input.start, input.active) {
        (Start::SynSent, _) => {
            let c = Connection::connect(cfg, now, SeqNum(input.iss));
            // A peer that never hears of it (only forged segments reach it).
            let p = Connection::connect(peer_cfg, now, SeqNum(input.peer_iss));
            (c, p)
        }
        (Start::SynReceived, _) | (_, false) => {
            let mut p = Connection::connect(peer_cfg, now, SeqNum(input.peer_iss));
            let syn = p.poll_transmit(now).expect("a fresh connect owes a SYN");
            let c = Connection::accept_syn(cfg, now, SeqNum(input.iss), &syn.header);
            (c, p)
        }
        (_, true) => {
            let mut c = Connection::connect(cfg, now, SeqNum(input.iss));
            let syn = c.poll_transmit(now).expect("a fresh connect owes a SYN");
            let p = Connection::accept_syn(peer_cfg, now, SeqNum(input.peer_iss), &syn.header);
            (c, p)
        }
    };
    let track = Track {
        snd_max: input.iss,
        snd_una: input.iss,
        rcv_nxt: 0,
        ts_mine: 0,
        ts_peer: 0,
        sent: Vec::new(),
        closed_rsts: 0,
    };
    let mut w = World {
        now,
        conn,
        peer,
        to_peer: Vec::new(),
        to_conn: Vec::new(),
        track,
        burst: input.burst,
    };
    w.track.rcv_nxt = if input.start == Start::SynSent {
        input.peer_iss
    } else {
        w.conn.irs().0.wrapping_add(1)
    };
    if input.start != Start::SynSent && input.start != Start::SynReceived {
        w.run_until("ESTABLISHED", |w| {
            w.conn.state() == State::Established && w.peer.state() == State::Established
        });
    }
    match input.start {
        Start::SynSent | Start::SynReceived | Start::Established => {}
        Start::FinWait1 => {
            // Our FIN goes out and stays in flight.
            w.conn.shutdown_write(w.now);
            w.drain_conn();
        }
        Start::FinWait2 => {
            w.conn.shutdown_write(w.now);
            w.run_until("FIN-WAIT-2", |w| w.conn.state() == State::FinWait2);
        }
        Start::CloseWait => {
            w.peer.shutdown_write(w.now);
            w.run_until("CLOSE-WAIT", |w| {
                w.conn.state() == State::CloseWait && w.peer.state() == State::FinWait2
            });
        }
        Start::LastAck => {
            w.peer.shutdown_write(w.now);
            w.run_until("CLOSE-WAIT", |w| {
                w.conn.state() == State::CloseWait && w.peer.state() == State::FinWait2
            });
            w.conn.shutdown_write(w.now);
            w.drain_conn();
        }
        Start::Closing => {
            // Simultaneous close: the FINs cross.
            w.conn.shutdown_write(w.now);
            w.peer.shutdown_write(w.now);
            w.drain_conn();
            w.drain_peer();
            for s in std::mem::take(&mut w.to_conn) {
                w.feed_conn(&s.header, &s.payload);
            }
            w.drain_conn();
            assert_eq!(
                w.conn.state(),
                State::Closing,
                "setup: crossing FINs did not give CLOSING"
            );
        }
        Start::TimeWait => {
            w.conn.shutdown_write(w.now);
            w.run_until("FIN-WAIT-2", |w| w.conn.state() == State::FinWait2);
            w.peer.shutdown_write(w.now);
            w.run_until("TIME-WAIT", |w| w.conn.state() == State::TimeWait);
        }
    }
    w.drain_conn();
    w
}

fn run(input: Input) {
    let t0 = Instant::now();
    let mut w = setup(&input, t0);
    let mut buf = vec![0u8; 70_000];
    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Segment(spec) => {
                let (h, payload) = build_segment(&w, spec);
                w.feed_conn(&h, &payload);
            }
            Op::Send(n) => {
                let n = usize::from(*n);
                let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
                let _ = w.conn.send(&data);
            }
            Op::SendBytes { len, pieces } => {
                let len = usize::from(*len);
                let data =
                    oxcat_tcp::Bytes::from((0..len).map(|i| (i * 3) as u8).collect::<Vec<u8>>());
                let step = len.div_ceil(usize::from(*pieces % 16) + 1).max(1);
                for at in (0..len).step_by(step) {
                    let mut chunk = data.slice(at..(at + step).min(len));
                    let _ = w.conn.send_bytes(&mut chunk);
                }
            }
            Op::Recv(n) => {
                let n = usize::from(*n).min(buf.len());
                let _ = w.conn.recv(&mut buf[..n]);
            }
            Op::ShutdownWrite => w.conn.shutdown_write(w.now),
            Op::Close => w.conn.close(w.now),
            Op::Abort => w.conn.abort(w.now),
            Op::TimeoutAtDeadline => {
                if let Some(t) = w.conn.poll_timeout() {
                    w.now = w.now.max(t);
                }
                w.timeout();
            }
            Op::Advance(ms) => {
                w.now += Duration::from_millis(u64::from(*ms % 200_000));
                w.timeout();
            }
            Op::AdvanceSecs(s) => {
                w.now += Duration::from_secs(u64::from(*s % (50 * 24 * 3600)));
                w.timeout();
            }
            Op::PeerExchange { drop_mask, reverse } => w.exchange(*drop_mask, *reverse),
            Op::PeerSend(n) => {
                let data: Vec<u8> = (0..usize::from(*n)).map(|i| (i * 7) as u8).collect();
                let _ = w.peer.send(&data);
                w.drain_peer();
            }
            Op::PeerRecv => {
                while let Ok(n) = w.peer.recv(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                w.drain_peer();
            }
            Op::PeerShutdown => {
                w.peer.shutdown_write(w.now);
                w.drain_peer();
            }
            Op::Replay(i) => {
                if !w.track.sent.is_empty() {
                    let s = w.track.sent[usize::from(*i) % w.track.sent.len()].clone();
                    w.peer.handle_segment(w.now, &s.header, &s.payload);
                    w.drain_peer();
                }
            }
        }
        w.drain_conn();
        // Keep the in-flight queues bounded.
        if w.to_peer.len() > 256 {
            w.to_peer.drain(..128);
        }
        if w.to_conn.len() > 256 {
            w.to_conn.drain(..128);
        }
        while w.conn.poll_event().is_some() {}
        while w.conn.poll_trace().is_some() {}
    }
}

fuzz_target!(|input: Input| run(input));
