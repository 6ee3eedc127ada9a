//! Fuzz `oxcat_tcp::Listener`: segments from a handful of peers (keys) to a
//! listener with a small backlog, interleaved with `accept` and time.
//!
//! Segments are built mostly relative to what the listener last sent each
//! key (its SYN-ACK: so handshakes complete, cookies validate, RSTs land in
//! the window), sometimes with arbitrary numbers.
//!
//! Invariants: no panic; accept queue ≤ backlog + 1; SYN queue ≤
//! max(backlog, 8)·2; `poll_transmit` terminates; segments to a key carry
//! no payload (SYN-ACKs, RSTs, ACKs); accepted connections
//! are past the handshake (not SYN-RECEIVED; Closed is allowed: a queued
//! connection takes segments and may be reset, as in Linux); `handle_timeout(t)`
//! leaves no deadline at or before `t`.

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use oxcat_tcp::{
    Config, Connection, Flags, Header, IsnGenerator, Listener, Options, SackBlocks, SeqNum, State,
};

const MAX_TRANSMITS: usize = 10_000;
const KEYS: u8 = 24;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Near(i8),
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
enum Kind {
    /// A plain SYN with the key's client ISN.
    Syn,
    /// The ACK completing the handshake (to the SYN-ACK or cookie last sent).
    FinalAck,
    /// Anything.
    Raw(u8),
}

#[derive(Arbitrary, Debug)]
struct SegSpec {
    key: u8,
    kind: Kind,
    seq: Num,
    ack: Num,
    window: u16,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    sack: Option<(u32, u32)>,
    timestamps: Option<(u32, u32)>,
    payload_len: u16,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Segment(SegSpec),
    Accept,
    AdvanceMs(u16),
    AdvanceSecs(u16),
    TimeoutAtDeadline,
    /// Drive an accepted connection: it gets an arbitrary segment.
    PokeAccepted(u8, SegSpec),
}

#[derive(Arbitrary, Debug)]
struct Input {
    backlog: u8,
    seed: u64,
    timestamps: bool,
    sack: bool,
    window_scaling: bool,
    syn_retries: u8,
    ops: Vec<Op>,
}

#[derive(Clone, Copy, Default)]
struct KeyTrack {
    /// Client ISN the key uses.
    client_isn: u32,
    /// The seq of the last SYN-ACK the listener sent the key.
    server_isn: u32,
}

fn check_segment(seg: &oxcat_tcp::Segment) {
    assert!(
        seg.payload.is_empty(),
        "listener sent a segment with payload: {seg:?}"
    );
    // (Half-open connections also send pure ACKs: challenge ACKs and ACKs
    // for unacceptable segments in SYN-RECEIVED, RFC 9293 §3.10.7.4.)
}

fn run(input: Input) {
    let t0 = Instant::now();
    let mut now = t0;
    let backlog = usize::from(input.backlog % 5);
    let config = Config {
        timestamps: input.timestamps,
        sack: input.sack,
        window_scaling: input.window_scaling,
        syn_retries: u32::from(input.syn_retries % 4),
        ..Config::default()
    };
    let mut l: Listener<u8> = Listener::new(config, backlog, IsnGenerator::new(input.seed, t0), t0);
    let mut keys = [KeyTrack::default(); KEYS as usize];
    for (i, k) in keys.iter_mut().enumerate() {
        k.client_isn = (i as u32).wrapping_mul(0x9e37_79b9);
    }
    let mut accepted: Vec<(u8, Connection)> = Vec::new();

    let build = |keys: &[KeyTrack], spec: &SegSpec| -> (u8, Header, Vec<u8>) {
        let key = spec.key % KEYS;
        let k = keys[usize::from(key)];
        let (flags, seq_base, ack_base) = match spec.kind {
            Kind::Syn => (Flags::SYN, k.client_isn, 0),
            Kind::FinalAck => (
                Flags::ACK,
                k.client_isn.wrapping_add(1),
                k.server_isn.wrapping_add(1),
            ),
            Kind::Raw(f) => (
                Flags(f),
                k.client_isn.wrapping_add(1),
                k.server_isn.wrapping_add(1),
            ),
        };
        let mut sack = SackBlocks::new();
        if let Some((a, b)) = spec.sack {
            sack.push(SeqNum(a), SeqNum(b));
        }
        let h = Header {
            seq: SeqNum(spec.seq.resolve(seq_base)),
            ack: SeqNum(spec.ack.resolve(ack_base)),
            flags,
            window: spec.window,
            options: Options {
                mss: spec.mss,
                window_scale: spec.window_scale,
                sack_permitted: spec.sack_permitted,
                sack,
                timestamps: spec.timestamps,
            },
        };
        let payload = vec![0x5a; usize::from(spec.payload_len) % 1600];
        (key, h, payload)
    };

    let check = |l: &mut Listener<u8>, keys: &mut [KeyTrack], now: Instant| {
        let mut n = 0;
        while let Some((key, seg)) = l.poll_transmit(now) {
            n += 1;
            assert!(
                n <= MAX_TRANSMITS,
                "Listener::poll_transmit did not terminate"
            );
            check_segment(&seg);
            if seg.header.flags.syn() {
                keys[usize::from(key)].server_isn = seg.header.seq.0;
            }
        }
        assert!(
            l.accept_queue_len() <= backlog + 1,
            "accept queue {} > backlog {} + 1",
            l.accept_queue_len(),
            backlog
        );
        assert!(
            l.syn_queue_len() <= backlog.max(8) * 2,
            "SYN queue {} over its bound",
            l.syn_queue_len()
        );
    };

    for op in input.ops.iter().take(128) {
        match op {
            Op::Segment(spec) => {
                let (key, h, payload) = build(&keys, spec);
                l.handle_segment(now, key, &h, &payload);
            }
            Op::Accept => {
                if let Some((key, c)) = l.accept() {
                    assert!(
                        // Closed is possible: a queued connection takes segments and may be reset (as in Linux).
                        !matches!(
                            c.state(),
                            State::SynReceived | State::Listen | State::SynSent
                        ),
                        "accept() returned a connection in {:?}",
                        c.state()
                    );
                    if accepted.len() < 8 {
                        accepted.push((key, c));
                    }
                }
            }
            Op::AdvanceMs(ms) => {
                now += Duration::from_millis(u64::from(*ms));
                l.handle_timeout(now);
            }
            Op::AdvanceSecs(s) => {
                now += Duration::from_secs(u64::from(*s % 600));
                l.handle_timeout(now);
            }
            Op::TimeoutAtDeadline => {
                if let Some(t) = l.poll_timeout() {
                    now = now.max(t);
                }
                l.handle_timeout(now);
                if let Some(t) = l.poll_timeout() {
                    assert!(
                        t > now,
                        "Listener::poll_timeout {t:?} not after handle_timeout({now:?})"
                    );
                }
            }
            Op::PokeAccepted(i, spec) => {
                if !accepted.is_empty() {
                    let (_, h, payload) = build(&keys, spec);
                    let idx = usize::from(*i) % accepted.len();
                    let c = &mut accepted[idx].1;
                    c.handle_segment(now, &h, &payload);
                    c.handle_timeout(now);
                    let mut n = 0;
                    while let Some(seg) = c.poll_transmit(now) {
                        n += 1;
                        assert!(
                            n <= MAX_TRANSMITS,
                            "Connection::poll_transmit did not terminate"
                        );
                        assert!(seg.payload.len() <= c.send_mss());
                    }
                }
            }
        }
        check(&mut l, &mut keys, now);
    }
}

fuzz_target!(|input: Input| run(input));
