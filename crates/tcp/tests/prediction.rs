//! Header prediction is a shortcut, never a different behaviour: the same
//! exchange, run once with the shortcut and once with every segment forced
//! through the full receive path (`Config::header_prediction` off), gives
//! the same segments, events, trace events and connection state, step by
//! step, over clean and faulty links. So is the sending side's shortcut,
//! `poll_transmit_burst` (segments of a burst built from the one before):
//! the same exchanges sent with it and with one `poll_transmit` per
//! segment give the same log.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use oxcat_tcp::congestion::Algorithm;
use oxcat_tcp::{Config, Connection, Header, Segment, SeqNum, State};

/// xorshift64*: deterministic, seeded.
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
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
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
struct Scenario {
    seed: u64,
    loss: f64,
    dup: f64,
    reorder: f64,
    delay_ms: u64,
    jitter_ms: u64,
    client_bytes: usize,
    server_bytes: usize,
    /// The chance that an application skips reading in a step (the
    /// window then shrinks, closes and reopens).
    read_pause: f64,
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
        other.at.cmp(&self.at).then(other.order.cmp(&self.order))
    }
}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What one run shows: a line per observable thing, in order, and how
/// many segments each end took the shortcut for.
struct Run {
    log: Vec<String>,
    predicted: u64,
    burst_built: u64,
    delivered: (usize, usize),
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Everything the owner can see of a connection.
fn snapshot(c: &Connection, t0: Instant) -> String {
    format!(
        "{c:?} snd_wnd {} cwnd {} rto {:?} srtt {:?} readable {} queued {} capacity {} rcvbuf {} timeout {:?} closed {:?}",
        c.send_window(),
        c.congestion_window(),
        c.rto(),
        c.smoothed_rtt(),
        c.readable_len(),
        c.send_queued(),
        c.send_capacity(),
        c.recv_buffer_size(),
        c.poll_timeout().map(|t| t - t0),
        c.close_reason(),
    )
}

/// Events and trace events since the last look.
fn drain(c: &mut Connection, who: &str, log: &mut Vec<String>) {
    while let Some(e) = c.poll_event() {
        log.push(format!("{who} event {e:?}"));
    }
    while let Some(e) = c.poll_trace() {
        log.push(format!("{who} trace {e:?}"));
    }
}

/// Runs `sc`; `burst`: each end sends with `poll_transmit_burst` (else
/// one `poll_transmit` per segment).
fn run(t0: Instant, sc: Scenario, cfg: &Config, burst: bool) -> Run {
    let mut now = t0;
    let mut rng = Rng(sc.seed | 1);
    let mut app_rng = Rng(sc.seed.rotate_left(17) | 1);
    let mut heap = BinaryHeap::new();
    let mut order = 0u64;
    let mut log = Vec::new();
    let data = |n: usize, salt: u64| -> Vec<u8> {
        let mut r = Rng(sc.seed ^ salt | 1);
        (0..n).map(|_| r.next() as u8).collect()
    };
    let c_data = data(sc.client_bytes, 0xc1);
    let s_data = data(sc.server_bytes, 0x5e);
    let mut client = Connection::connect(cfg.clone(), now, SeqNum(sc.seed as u32 ^ 0x1234_5678));
    let mut server: Option<Connection> = None;
    let (mut c_sent, mut s_sent) = (0usize, 0usize);
    let (mut c_got, mut s_got) = (0usize, 0usize);
    let mut buf = vec![0u8; 32 * 1024];
    let limit = t0 + Duration::from_secs(4 * 3600);

    for _step in 0..400_000 {
        // Applications: each closes once its bytes are acknowledged and
        // the peer's have arrived (so both directions run in ESTABLISHED).
        for (conn, sent, data, got, expected, who) in [
            (
                Some(&mut client),
                &mut c_sent,
                &c_data,
                &mut c_got,
                sc.server_bytes,
                "C",
            ),
            (
                server.as_mut(),
                &mut s_sent,
                &s_data,
                &mut s_got,
                sc.client_bytes,
                "S",
            ),
        ] {
            let Some(conn) = conn else { continue };
            if *sent < data.len() {
                if let Ok(n) = conn.send(&data[*sent..]) {
                    *sent += n;
                }
            } else if conn.send_queued() == 0
                && *got >= expected
                && matches!(conn.state(), State::Established | State::CloseWait)
            {
                conn.shutdown_write(now);
            }
            if !app_rng.chance(sc.read_pause) {
                while let Ok(n) = conn.recv(&mut buf) {
                    *got += n;
                    log.push(format!("{who} read {n} sum {}", checksum(&buf[..n])));
                }
            }
        }
        // Transmit.
        for (conn, to_server) in [(Some(&mut client), true), (server.as_mut(), false)] {
            let Some(conn) = conn else { continue };
            let mut out: Vec<Segment> = Vec::new();
            if burst {
                let mut h = Header::default();
                conn.poll_transmit_burst(now, &mut h, |h, p| {
                    out.push(Segment {
                        header: *h,
                        payload: p.to_vec(),
                    });
                    true
                });
            } else {
                while let Some(seg) = conn.poll_transmit(now) {
                    out.push(seg);
                }
            }
            for seg in out {
                log.push(format!(
                    "{:?} {} {:?} len {} sum {}",
                    now - t0,
                    if to_server { "C>S" } else { "S>C" },
                    seg.header,
                    seg.payload.len(),
                    checksum(&seg.payload)
                ));
                if rng.chance(sc.loss) {
                    continue;
                }
                let copies = if rng.chance(sc.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let mut delay = sc.delay_ms + rng.below(sc.jitter_ms + 1);
                    if rng.chance(sc.reorder) {
                        delay += rng.below(3 * sc.delay_ms + 5);
                    }
                    order += 1;
                    heap.push(InFlight {
                        at: now + Duration::from_millis(delay),
                        order,
                        to_server,
                        header: seg.header,
                        payload: seg.payload.clone(),
                    });
                }
            }
        }
        drain(&mut client, "C", &mut log);
        if let Some(s) = server.as_mut() {
            drain(s, "S", &mut log);
        }
        let done = |c: &Connection| matches!(c.state(), State::Closed | State::TimeWait);
        if done(&client) && server.as_ref().is_some_and(done) {
            break;
        }

        // The clock moves to the next arrival or timeout.
        let next = [
            heap.peek().map(|p: &InFlight| p.at),
            client.poll_timeout(),
            server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next.filter(|&n| n <= limit) else {
            break;
        };
        now = now.max(next);
        while heap.peek().is_some_and(|p| p.at <= now) {
            let Some(p) = heap.pop() else { break };
            let (conn, who) = if p.to_server {
                match server.as_mut() {
                    Some(s) => (s, "S"),
                    None if p.header.flags.syn() => {
                        let s = Connection::accept_syn(
                            cfg.clone(),
                            now,
                            SeqNum(sc.seed as u32 ^ 0x8765_4321),
                            &p.header,
                        );
                        log.push(format!("S accepted {}", snapshot(&s, t0)));
                        server = Some(s);
                        continue;
                    }
                    None => continue,
                }
            } else {
                (&mut client, "C")
            };
            conn.handle_segment(now, &p.header, &p.payload);
            log.push(format!("{who} took {:?}: {}", p.header, snapshot(conn, t0)));
        }
        for conn in [Some(&mut client), server.as_mut()].into_iter().flatten() {
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
        }
    }
    log.push(format!("C end {}", snapshot(&client, t0)));
    if let Some(s) = &server {
        log.push(format!("S end {}", snapshot(s, t0)));
    }
    Run {
        predicted: client.predicted_segments()
            + server.as_ref().map_or(0, |s| s.predicted_segments()),
        burst_built: client.burst_segments() + server.as_ref().map_or(0, |s| s.burst_segments()),
        log,
        delivered: (s_got, c_got),
    }
}

/// Fails at the first line where two runs' logs differ.
fn same_logs(sc: Scenario, what: &str, a: &Run, b: &Run) {
    if let Some(i) = (0..a.log.len().max(b.log.len())).find(|&i| a.log.get(i) != b.log.get(i)) {
        let from = i.saturating_sub(6);
        panic!(
            "{sc:?}: {what}: the paths part at line {i}\n  before: {:#?}\n  with the shortcut: {:?}\n  full path only:    {:?}",
            &b.log[from..i],
            a.log.get(i),
            b.log.get(i)
        );
    }
    assert_eq!(a.delivered, b.delivered);
}

/// Runs `sc` with each shortcut and without, from the same instant, and
/// fails at the first line where the two differ: header prediction on and
/// off (traced), then bursts and one segment per call (untraced: a traced
/// connection builds every segment by the full path, for its trace events).
/// Returns how many segments each shortcut took (predicted, built in a burst).
fn same_with_and_without(sc: Scenario, cfg: Config) -> (u64, u64) {
    let t0 = Instant::now();
    let traced = |prediction| Config {
        header_prediction: prediction,
        trace: true,
        ..cfg.clone()
    };
    let fast = run(t0, sc, &traced(true), false);
    let full = run(t0, sc, &traced(false), false);
    assert_eq!(full.predicted, 0, "the switch turns the shortcut off");
    same_logs(sc, "header prediction", &fast, &full);

    let untraced = Config {
        trace: false,
        ..cfg
    };
    let burst = run(t0, sc, &untraced, true);
    let single = run(t0, sc, &untraced, false);
    assert_eq!(
        single.burst_built, 0,
        "poll_transmit builds every segment in full"
    );
    same_logs(sc, "bursts", &burst, &single);
    (fast.predicted, burst.burst_built)
}

const CLEAN: Scenario = Scenario {
    seed: 1,
    loss: 0.0,
    dup: 0.0,
    reorder: 0.0,
    delay_ms: 5,
    jitter_ms: 0,
    client_bytes: 400_000,
    server_bytes: 0,
    read_pause: 0.0,
};

#[test]
fn bulk_on_a_clean_link_is_mostly_predicted_and_unchanged() {
    let (predicted, built) = same_with_and_without(CLEAN, Config::default());
    // ~276 data segments (and an ACK per burst that arrives at once).
    assert!(predicted > 250, "only {predicted} segments predicted");
    // Slow start's bursts grow: most segments follow another in one.
    assert!(built > 150, "only {built} segments built in bursts");
}

#[test]
fn both_directions_at_once() {
    // Data segments that carry ACKs for the other direction's data.
    let sc = Scenario {
        server_bytes: 300_000,
        ..CLEAN
    };
    let (predicted, built) = same_with_and_without(sc, Config::default());
    assert!(predicted > 400, "only {predicted} segments predicted");
    assert!(built > 250, "only {built} segments built in bursts");
}

#[test]
fn a_slow_reader_and_small_buffers() {
    // Windows shrink, close (persist probes) and reopen (window updates).
    let sc = Scenario {
        seed: 3,
        client_bytes: 60_000,
        server_bytes: 20_000,
        read_pause: 0.9,
        ..CLEAN
    };
    let cfg = Config {
        recv_buffer: 4096,
        recv_buffer_initial: 4096,
        send_buffer: 4096,
        mss: 536,
        ..Config::default()
    };
    let (predicted, _) = same_with_and_without(sc, cfg);
    assert!(predicted > 20, "only {predicted} segments predicted");
}

#[test]
fn loss_reordering_and_duplicates() {
    let sc = Scenario {
        seed: 7,
        loss: 0.05,
        dup: 0.05,
        reorder: 0.2,
        delay_ms: 20,
        jitter_ms: 5,
        client_bytes: 200_000,
        server_bytes: 100_000,
        read_pause: 0.2,
    };
    same_with_and_without(sc, Config::default());
}

#[test]
fn without_options_and_with_keepalive() {
    let sc = Scenario {
        seed: 11,
        loss: 0.03,
        reorder: 0.1,
        ..CLEAN
    };
    let cfg = Config {
        sack: false,
        timestamps: false,
        window_scaling: false,
        congestion: Algorithm::NewReno,
        keepalive: Some((Duration::from_secs(1), Duration::from_millis(300), 5)),
        ..Config::default()
    };
    let (predicted, built) = same_with_and_without(sc, cfg);
    assert!(predicted > 100, "only {predicted} segments predicted");
    assert!(built > 50, "only {built} segments built in bursts");
}

#[test]
fn many_seeded_faulty_links() {
    let mut r = Rng(0x5eed);
    for seed in 0..48u64 {
        let sc = Scenario {
            seed,
            loss: r.below(20) as f64 / 100.0,
            dup: r.below(8) as f64 / 100.0,
            reorder: r.below(25) as f64 / 100.0,
            delay_ms: 1 + r.below(40),
            jitter_ms: r.below(10),
            client_bytes: r.below(60_000) as usize,
            server_bytes: r.below(30_000) as usize,
            read_pause: r.below(80) as f64 / 100.0,
        };
        let small = r.chance(0.3);
        let cfg = Config {
            sack: r.chance(0.7),
            timestamps: r.chance(0.7),
            recv_buffer: if small { 4096 } else { 256 * 1024 },
            recv_buffer_initial: if small { 4096 } else { 16 * 1024 },
            send_buffer: if small { 4096 } else { 64 * 1024 },
            mss: if small { 536 } else { 1460 },
            syn_retries: 20,
            data_retries: 40,
            ..Config::default()
        };
        same_with_and_without(sc, cfg);
    }
}

#[test]
fn data_in_whole_segments() {
    // Every write a multiple of the payload per segment (1448 with
    // timestamps), so a burst's last full segment carries PSH.
    let sc = Scenario {
        seed: 5,
        client_bytes: 1448 * 300,
        server_bytes: 1448 * 40,
        ..CLEAN
    };
    let cfg = Config {
        send_buffer: 1448 * 64,
        ..Config::default()
    };
    let (_, built) = same_with_and_without(sc, cfg);
    assert!(built > 150, "only {built} segments built in bursts");
}
