//! Two engines through a simulated link with loss, duplication, reordering
//! and delay, under a fake clock: every byte arrives exactly once and in
//! order, in both directions, and both ends finish cleanly.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use oxcat_tcp::{
    Bytes, Config, Connection, Header, IsnGenerator, Listener, RecvError, SendError, SeqNum, State,
};
use proptest::prelude::*;

/// xorshift64*: deterministic, seeded, good enough for fault injection.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// True with probability `p` (0..=1).
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Faults {
    loss: f64,
    dup: f64,
    reorder: f64,
    delay_ms: u64,
    jitter_ms: u64,
}

#[derive(PartialEq, Eq)]
struct InFlight {
    at: Instant,
    order: u64,
    to_server: bool,
    header: Header,
    payload: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // A min-heap on (at, order).
        other.at.cmp(&self.at).then(other.order.cmp(&self.order))
    }
}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct Link {
    heap: BinaryHeap<InFlight>,
    rng: Rng,
    faults: Faults,
    order: u64,
    sent: u64,
    lost: u64,
    verbose: bool,
    t0: Instant,
}

impl Link {
    fn send(&mut self, now: Instant, to_server: bool, header: Header, payload: Vec<u8>) {
        self.sent += 1;
        if self.verbose {
            eprintln!(
                "{:>10.3} {} {:?} len {}",
                (now - self.t0).as_secs_f64() * 1000.0,
                if to_server { "C>S" } else { "S>C" },
                header,
                payload.len()
            );
        }
        if self.rng.chance(self.faults.loss) {
            self.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.faults.delay_ms + self.rng.below(self.faults.jitter_ms + 1);
            if self.rng.chance(self.faults.reorder) {
                delay += self.rng.below(3 * self.faults.delay_ms + 5);
            }
            self.order += 1;
            self.heap.push(InFlight {
                at: now + Duration::from_millis(delay),
                order: self.order,
                to_server,
                header,
                payload: payload.clone(),
            });
        }
    }
}

struct Outcome {
    client_got: Vec<u8>,
    server_got: Vec<u8>,
    client_state: State,
    server_state: Option<State>,
    reasons: String,
    server_recv_buffer: usize,
    segments: u64,
    lost: u64,
    /// Tail loss probes both ends sent.
    loss_probes: u64,
    elapsed: Duration,
}

/// How an application hands its bytes to the engine.
#[derive(Clone, Copy, Debug)]
enum Writes {
    /// `send(&[u8])` of everything not yet taken.
    Copied,
    /// Chunks of random sizes (a few bytes to more than a buffer), each a
    /// `Bytes` slice of the data given to `send_bytes`, or now and then
    /// copied with `send`: the two mixed on one connection.
    Owned { seed: u64 },
}

/// One side's application writing its data.
struct Writer {
    data: Bytes,
    /// Bytes cut into chunks so far.
    next: usize,
    /// What is left of the current chunk (the engine took the rest).
    chunk: Bytes,
    copy_chunk: bool,
    rng: Option<Rng>,
}

impl Writer {
    fn new(data: &[u8], writes: Writes) -> Writer {
        Writer {
            data: Bytes::copy_from_slice(data),
            next: 0,
            chunk: Bytes::new(),
            copy_chunk: false,
            rng: match writes {
                Writes::Copied => None,
                Writes::Owned { seed } => Some(Rng(seed | 1)),
            },
        }
    }

    fn done(&self) -> bool {
        self.next == self.data.len() && self.chunk.is_empty()
    }

    /// Hands over what the connection takes.
    fn write(&mut self, conn: &mut Connection) {
        let Some(rng) = self.rng.as_mut() else {
            if let Ok(n) = conn.send(&self.data[self.next..]) {
                self.next += n;
            }
            return;
        };
        loop {
            if self.chunk.is_empty() {
                if self.next == self.data.len() {
                    return;
                }
                let size = 1 + match rng.below(4) {
                    0 => rng.below(40),
                    1 => rng.below(1600),
                    2 => rng.below(6000),
                    _ => rng.below(30_000),
                } as usize;
                let size = size.min(self.data.len() - self.next);
                self.chunk = self.data.slice(self.next..self.next + size);
                self.next += size;
                self.copy_chunk = rng.chance(0.25);
            }
            let before = self.chunk.clone();
            let taken = if self.copy_chunk {
                conn.send(&self.chunk).inspect(|&n| {
                    let _ = self.chunk.split_to(n);
                })
            } else {
                conn.send_bytes(&mut self.chunk)
            };
            match taken {
                Ok(n) => assert_eq!(before.len() - self.chunk.len(), n, "taken from the front"),
                Err(e) => {
                    assert!(
                        self.chunk == before && self.chunk.as_ptr() == before.as_ptr(),
                        "a refused chunk is the caller's again, unchanged"
                    );
                    assert_eq!(e, SendError::WouldBlock);
                    return;
                }
            }
        }
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

fn run(seed: u64, faults: Faults, c_len: usize, s_len: usize, cfg: Config) -> Outcome {
    run_with(seed, faults, c_len, s_len, cfg, Writes::Copied, None)
}

/// Everything `conn` may send now: with `poll_transmit_burst` (`burst`) or
/// one `poll_transmit` per segment.
fn transmit(
    conn: &mut Connection,
    now: Instant,
    burst: bool,
    mut send: impl FnMut(Header, Vec<u8>),
) {
    if burst {
        let mut h = Header::default();
        conn.poll_transmit_burst(now, &mut h, |h, p| {
            send(*h, p.to_vec());
            true
        });
    } else {
        while let Some(seg) = conn.poll_transmit(now) {
            send(seg.header, seg.payload);
        }
    }
}

/// `run` with the applications writing as `writes` says, and the client's
/// ISS given (else one made from the seed).
fn run_with(
    seed: u64,
    faults: Faults,
    c_len: usize,
    s_len: usize,
    cfg: Config,
    writes: Writes,
    iss: Option<SeqNum>,
) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let mut link = Link {
        heap: BinaryHeap::new(),
        rng: Rng(seed | 1),
        faults,
        order: 0,
        sent: 0,
        verbose: std::env::var_os("SIM_TRACE").is_some(),
        t0,
        lost: 0,
    };
    let c_data = pattern(c_len, seed ^ 0xc1);
    let s_data = pattern(s_len, seed ^ 0x5e);
    let server_writes = match writes {
        Writes::Owned { seed } => Writes::Owned { seed: !seed },
        w => w,
    };
    let burst = matches!(writes, Writes::Owned { .. });
    let mut c_writer = Writer::new(&c_data, writes);
    let mut s_writer = Writer::new(&s_data, server_writes);
    let iss = iss.unwrap_or(SeqNum((seed as u32).wrapping_mul(2654435761)));
    let mut client = Connection::connect(cfg.clone(), now, iss);
    let mut listener: Listener<u8> = Listener::new(cfg.clone(), 4, IsnGenerator::new(seed, t0), t0);
    let mut server: Option<Connection> = None;
    let (mut c_shut, mut s_shut) = (false, false);
    let (mut client_got, mut server_got) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65536];
    // Simulated time is free: heavy loss with backed-off timers (up to 120 s) may need hours.
    let limit = t0 + Duration::from_secs(48 * 3600);

    for _step in 0..2_000_000 {
        // Applications: write what fits, read what is there, shut down when done.
        if !c_writer.done() {
            c_writer.write(&mut client);
        } else if !c_shut && matches!(client.state(), State::Established | State::CloseWait) {
            client.shutdown_write(now);
            c_shut = true;
        }
        while let Ok(n) = client.recv(&mut buf) {
            client_got.extend_from_slice(&buf[..n]);
        }
        if let Some(s) = server.as_mut() {
            if !s_writer.done() {
                s_writer.write(s);
            } else if !s_shut && matches!(s.state(), State::Established | State::CloseWait) {
                s.shutdown_write(now);
                s_shut = true;
            }
            while let Ok(n) = s.recv(&mut buf) {
                server_got.extend_from_slice(&buf[..n]);
            }
        }

        // Transmit (the cases writing with `send_bytes` send in bursts).
        transmit(&mut client, now, burst, |h, p| link.send(now, true, h, p));
        while let Some((_, seg)) = listener.poll_transmit(now) {
            link.send(now, false, seg.header, seg.payload);
        }
        if let Some(s) = server.as_mut() {
            transmit(s, now, burst, |h, p| link.send(now, false, h, p));
        }

        let client_done = matches!(client.state(), State::Closed | State::TimeWait);
        let server_done = server
            .as_ref()
            .is_some_and(|s| matches!(s.state(), State::Closed | State::TimeWait));
        let reads_done = matches!(
            client.recv(&mut buf),
            Err(RecvError::Finished) | Err(RecvError::Closed(_))
        ) && server.as_mut().is_some_and(|s| {
            matches!(
                s.recv(&mut buf),
                Err(RecvError::Finished) | Err(RecvError::Closed(_))
            )
        });
        if client_done && server_done && reads_done {
            break;
        }

        // Advance the clock to the next thing that happens.
        let next = [
            link.heap.peek().map(|p| p.at),
            client.poll_timeout(),
            listener.poll_timeout(),
            server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            if link.verbose {
                eprintln!(
                    "no more events: client {client:?} timeout {:?}; server {:?}",
                    client.poll_timeout(),
                    server
                        .as_ref()
                        .map(|s| (format!("{s:?}"), s.poll_timeout()))
                );
            }
            break;
        };
        if next > limit {
            if link.verbose {
                eprintln!(
                    "past the limit: client {client:?} timeout {:?}",
                    client.poll_timeout().map(|t| t - t0)
                );
            }
            break;
        }
        now = now.max(next);

        while link.heap.peek().is_some_and(|p| p.at <= now) {
            let Some(p) = link.heap.pop() else { break };
            if p.to_server {
                match server.as_mut() {
                    Some(s) => s.handle_segment(now, &p.header, &p.payload),
                    None => {
                        listener.handle_segment(now, 1, &p.header, &p.payload);
                        if let Some((_, c)) = listener.accept() {
                            server = Some(c);
                        }
                    }
                }
            } else {
                client.handle_segment(now, &p.header, &p.payload);
            }
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        if listener.poll_timeout().is_some_and(|t| t <= now) {
            listener.handle_timeout(now);
            if server.is_none() {
                if let Some((_, c)) = listener.accept() {
                    server = Some(c);
                }
            }
        }
        if let Some(s) = server.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }
    Outcome {
        client_got,
        server_got,
        client_state: client.state(),
        server_state: server.as_ref().map(|s| s.state()),
        server_recv_buffer: server.as_ref().map_or(0, |s| s.recv_buffer_size()),
        reasons: format!(
            "client {:?} {:?}, server {:?}, chunked c {} s {}",
            client.state(),
            client.close_reason(),
            server.as_ref().map(|s| (s.state(), s.close_reason())),
            c_writer.next,
            s_writer.next,
        ),
        segments: link.sent,
        loss_probes: client.loss_probes() + server.as_ref().map_or(0, |s| s.loss_probes()),
        lost: link.lost,
        elapsed: now - t0,
    }
}

fn check(o: &Outcome, c_len: usize, s_len: usize, seed: u64) {
    let c_data = pattern(c_len, seed ^ 0xc1);
    let s_data = pattern(s_len, seed ^ 0x5e);
    assert_eq!(
        o.server_got.len(),
        c_data.len(),
        "client->server length; {}",
        o.reasons
    );
    assert!(o.server_got == c_data, "client->server bytes differ");
    assert_eq!(
        o.client_got.len(),
        s_data.len(),
        "server->client length; {}",
        o.reasons
    );
    assert!(o.client_got == s_data, "server->client bytes differ");
    assert!(
        matches!(o.client_state, State::Closed | State::TimeWait),
        "client ended in {:?}",
        o.client_state
    );
    assert!(
        matches!(o.server_state, Some(State::Closed | State::TimeWait)),
        "server ended in {:?}",
        o.server_state
    );
}

const CLEAN: Faults = Faults {
    loss: 0.0,
    dup: 0.0,
    reorder: 0.0,
    delay_ms: 10,
    jitter_ms: 0,
};

#[test]
fn clean_link_moves_a_megabyte_each_way() {
    let o = run(1, CLEAN, 1 << 20, 1 << 20, Config::default());
    check(&o, 1 << 20, 1 << 20, 1);
    // 1 MiB at 10 ms one-way: slow start from IW10 needs a handful of round trips, not seconds.
    assert!(
        o.elapsed < Duration::from_secs(5),
        "took {:?} of simulated time",
        o.elapsed
    );
    // Autotuning: the server's buffer grew past its 64 KiB start with the measured bandwidth·RTT.
    assert!(
        o.server_recv_buffer > 64 * 1024,
        "receive buffer stayed at {}",
        o.server_recv_buffer
    );
    // No loss, so no retransmissions: data segments plus (delayed) ACKs, well under two per MSS.
    let data_segments = 2 * (1u64 << 20) / 1460;
    assert!(
        o.segments < 2 * data_segments,
        "{} segments for {data_segments} data segments",
        o.segments
    );
}

/// A lossy, duplicating, reordering link with delay and jitter.
const LOSSY: Faults = Faults {
    loss: 0.1,
    dup: 0.05,
    reorder: 0.2,
    delay_ms: 20,
    jitter_ms: 5,
};

#[test]
fn lossy_link_delivers_everything() {
    let f = LOSSY;
    let o = run(7, f, 300_000, 200_000, Config::default());
    check(&o, 300_000, 200_000, 7);
    assert!(o.loss_probes > 0, "no tail loss probe went out");
}

/// Tail loss probes with early retransmit (RFC 8985 §7, RFC 5827) against
/// the retransmission timeout alone: short transfers (a few segments each
/// way) over a lossy link, where a lost tail otherwise waits for the RTO,
/// finish sooner in simulated time summed over the seeds, and deliver the
/// same bytes.
#[test]
fn tail_loss_probes_finish_short_transfers_sooner() {
    let f = Faults {
        loss: 0.15,
        dup: 0.0,
        reorder: 0.0,
        delay_ms: 20,
        jitter_ms: 2,
    };
    let without = Config {
        tail_loss_probe: false,
        early_retransmit: false,
        ..Config::default()
    };
    let (mut with_total, mut without_total, mut probes) = (Duration::ZERO, Duration::ZERO, 0);
    for seed in 0..60u64 {
        let a = run(seed, f, 6_000, 3_000, Config::default());
        check(&a, 6_000, 3_000, seed);
        let b = run(seed, f, 6_000, 3_000, without.clone());
        check(&b, 6_000, 3_000, seed);
        assert_eq!(b.loss_probes, 0);
        with_total += a.elapsed;
        without_total += b.elapsed;
        probes += a.loss_probes;
    }
    eprintln!("probes {probes}: with {with_total:?}, without {without_total:?}");
    assert!(probes > 0, "no tail loss probe went out");
    assert!(
        with_total < without_total,
        "with probes {with_total:?}, without {without_total:?}"
    );
}

#[test]
fn without_options_newreno_still_delivers() {
    let cfg = Config {
        sack: false,
        timestamps: false,
        window_scaling: false,
        congestion: oxcat_tcp::congestion::Algorithm::NewReno,
        ..Config::default()
    };
    let f = Faults {
        loss: 0.05,
        dup: 0.02,
        reorder: 0.1,
        delay_ms: 15,
        jitter_ms: 3,
    };
    let o = run(11, f, 200_000, 50_000, cfg);
    check(&o, 200_000, 50_000, 11);
}

proptest! {
    // 48 cases by default; PROPTEST_CASES=20000 for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        .. ProptestConfig::default()
    })]

    #[test]
    fn any_faults_deliver_exactly_once_in_order(
        seed in any::<u64>(),
        loss in 0.0f64..0.3,
        dup in 0.0f64..0.1,
        reorder in 0.0f64..0.3,
        delay_ms in 1u64..60,
        jitter_ms in 0u64..20,
        c_len in 0usize..40_000,
        s_len in 0usize..40_000,
        sack in any::<bool>(),
        timestamps in any::<bool>(),
        small_buffers in any::<bool>(),
        owned_writes in any::<bool>(),
    ) {
        let faults = Faults { loss, dup, reorder, delay_ms, jitter_ms };
        // Up to 30% loss: with Linux's retry counts a handshake can legitimately time
        // out (about one run in a few thousand); more retries keep the property about
        // delivery, not about giving up.
        let mut cfg = Config { sack, timestamps, syn_retries: 20, data_retries: 40, ..Config::default() };
        if small_buffers {
            cfg.recv_buffer = 4096;
            cfg.recv_buffer_initial = 4096;
            cfg.send_buffer = 4096;
            cfg.mss = 536;
        }
        // Half the cases write with `send_bytes` (chunks of random sizes, some copied).
        let writes = if owned_writes { Writes::Owned { seed: seed ^ 0x0b } } else { Writes::Copied };
        let o = run_with(seed, faults, c_len, s_len, cfg, writes, None);
        check(&o, c_len, s_len, seed);
    }
}

/// Lossy, duplicating, reordering link; `send_bytes` of random-sized chunks
/// mixed with `send`, both ways; the client's ISS `iss`.
fn owned_writes_through_faults(seed: u64, cfg: Config, iss: Option<SeqNum>) -> Outcome {
    let f = LOSSY;
    let (c_len, s_len) = (300_000, 200_000);
    let o = run_with(seed, f, c_len, s_len, cfg, Writes::Owned { seed }, iss);
    check(&o, c_len, s_len, seed);
    assert!(
        o.lost > 20,
        "segments were lost (and so resent): {}",
        o.lost
    );
    o
}

/// Retransmissions (SACK-based, RFC 6675, and by timeout) resend bytes
/// lent from the application's chunks: every byte arrives once, in order.
#[test]
fn owned_chunks_survive_loss_with_sack() {
    owned_writes_through_faults(21, Config::default(), None);
}

/// The same without SACK (NewReno's one segment per partial ACK) and
/// without timestamps.
#[test]
fn owned_chunks_survive_loss_with_newreno() {
    let cfg = Config {
        sack: false,
        timestamps: false,
        congestion: oxcat_tcp::congestion::Algorithm::NewReno,
        ..Config::default()
    };
    owned_writes_through_faults(22, cfg, None);
}

/// Chunks up to 30 KB through a 4 KB send buffer (taken a part at a
/// time), MSS 536, the client's sequence numbers wrapping past 2^32 early.
#[test]
fn owned_chunks_larger_than_the_buffer_across_the_sequence_wrap() {
    let cfg = Config {
        recv_buffer: 4096,
        recv_buffer_initial: 4096,
        send_buffer: 4096,
        mss: 536,
        syn_retries: 20,
        data_retries: 40,
        ..Config::default()
    };
    owned_writes_through_faults(23, cfg, Some(SeqNum(u32::MAX - 50_000)));
}

#[test]
#[ignore = "debugging aid"]
fn replay_clean() {
    let o = run(1, CLEAN, 1 << 20, 1 << 20, Config::default());
    check(&o, 1 << 20, 1 << 20, 1);
    eprintln!("took {:?}", o.elapsed);
}

#[test]
#[ignore = "debugging aid: SIM_TRACE=1 SIM_SEED=n SIM_ARGS=loss,dup,reorder,delay_ms,jitter_ms,c_len,s_len,sack,ts,small cargo test -p oxcat-tcp --test sim replay -- --ignored --nocapture"]
fn replay() {
    let seed: u64 = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let args = std::env::var("SIM_ARGS")
        .unwrap_or_else(|_| "0.1,0,0,10,0,10000,10000,true,true,false".into());
    let a: Vec<&str> = args.split(',').collect();
    let f = Faults {
        loss: a[0].parse().unwrap(),
        dup: a[1].parse().unwrap(),
        reorder: a[2].parse().unwrap(),
        delay_ms: a[3].parse().unwrap(),
        jitter_ms: a[4].parse().unwrap(),
    };
    let (c_len, s_len): (usize, usize) = (a[5].parse().unwrap(), a[6].parse().unwrap());
    let mut cfg = Config {
        sack: a[7] == "true",
        timestamps: a[8] == "true",
        ..Config::default()
    };
    if a[9] == "true" {
        cfg.recv_buffer = 4096;
        cfg.recv_buffer_initial = 4096;
        cfg.send_buffer = 4096;
        cfg.mss = 536;
    }
    let o = run(seed, f, c_len, s_len, cfg);
    eprintln!("elapsed {:?}; {}", o.elapsed, o.reasons);
    check(&o, c_len, s_len, seed);
}
