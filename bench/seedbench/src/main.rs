//! bench/seed: issue 6's benchmark. The project's seed notes say "From
//! receiving interrupt for SYN to accepting the connection: 1.7 ms" and
//! "Processing a packet interrupt: 200 microseconds". This measures, beside
//! them:
//!
//! 1. SYN-to-accept: our stack on the simulated link, our stack over TUN
//!    with the real kernel as the client, and kernel loopback;
//! 2. our stack's processing part of it (target < 5 µs);
//! 3. per-segment cost on our stack (target < 200 ns): simulated link, TUN,
//!    and an in-memory peer that costs nearly nothing.
//!
//! `seedbench [all|sim|tun|kernel|null] [--sim-runs N] [--tun-runs N]
//! [--kernel-runs N] [--sim-bytes B] [--tun-bytes B] [--null-blocks N]`.
//! The TUN part needs root (a private network namespace); without it that
//! part is reported as skipped.

mod kernel;
mod null;
mod sim;
mod stats;
mod timed;
mod tun;

use std::io;
use std::process::ExitCode;

use stats::{human, spread, Spread};
use timed::Timed;

const NOTES_SYN_TO_ACCEPT_NS: f64 = 1.7e6;
const NOTES_PACKET_NS: f64 = 200e3;
const TARGET_PROCESSING_NS: f64 = 5e3;
const TARGET_SEGMENT_NS: f64 = 200.0;

/// What each row includes.
const LEGEND: &[&str] = &[
    "met? in parentheses: the row includes a device's or the link's cost; shown, not used to judge the target",
    "what each row includes:",
    "1a  server stack's poll that takes in the SYN -> its accept returns: server SYN->SYN-ACK, client SYN-ACK->ACK,",
    "    server ACK->accept queue, accept; the simulated link's Vec per packet and copies; zero link delay",
    "1b  the poll that reads the SYN from the TUN (its `now`) -> accept returns: our read/write(2) of the TUN, the kernel",
    "    client's SYN-ACK processing (inside our write), the ACK's read, our processing; not the wake-up before the SYN poll",
    "1c  kernel client thread's connect() call -> our accept returns: 1b plus the kernel sending the SYN and our wake-up",
    "1d  connect() call -> accept() returns on 127.0.0.1, server thread already blocked in accept (as oxcat demo)",
    "2a  server stack only: its SYN poll + ACK poll + accept (sim link's receive/transmit included)",
    "2b  time inside Stack::poll from the SYN's poll to the ACK's + the accept, TUN read(2)/write(2) included",
    "2c  2b less the time inside the device's calls, and less one clock read per device call (the bracket's cost)",
    "2d  the same polls and accept with the in-memory peer: Linux-like SYN (MSS, SACK, TS, wscale 7), our SYN-ACK, ACK",
    "3a  receiver's time in poll / segments it took in (parse, checksum, in-order delivery, ACK every 2nd), link included",
    "3b  sender's time in poll / packets it sent (ACKs in, segments built and out), link included; as oxcat demo",
    "3c  kernel -> our stack, time in poll / packets in, empty polls and read/write(2) of the TUN included (blocks of 256)",
    "3d  3c's run repeated with the device timed: less the device's calls and one clock read per call",
    "3e  our stack -> kernel, time in poll / packets out (ACK processing, segments, TUN writes); 3f: less the device",
    "3g-3j in-memory peer: blocks of 32 segments timed as a whole (one `now` per block), the application's",
    "    recv/send copies outside the timing; the peer's own cost per segment is included and printed below",
];

struct Args {
    mode: String,
    sim_runs: usize,
    tun_runs: usize,
    kernel_runs: usize,
    sim_bytes: usize,
    tun_bytes: usize,
    null_blocks: usize,
    /// Only this in-memory case (rx1, rx32, tx2, tx32), for profiling.
    null_case: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        mode: "all".into(),
        sim_runs: 20_000,
        tun_runs: 2_000,
        kernel_runs: 20_000,
        sim_bytes: 64 << 20,
        tun_bytes: 64 << 20,
        null_blocks: 20_000,
        null_case: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{name} needs a positive integer"))
        };
        match arg.as_str() {
            "all" | "sim" | "tun" | "kernel" | "null" => a.mode = arg,
            "--sim-runs" => a.sim_runs = number("--sim-runs")?,
            "--tun-runs" => a.tun_runs = number("--tun-runs")?,
            "--kernel-runs" => a.kernel_runs = number("--kernel-runs")?,
            "--sim-bytes" => a.sim_bytes = number("--sim-bytes")?,
            "--tun-bytes" => a.tun_bytes = number("--tun-bytes")?,
            "--null-blocks" => a.null_blocks = number("--null-blocks")?,
            "--null-case" => {
                a.null_case = Some(
                    it.next()
                        .filter(|c| ["rx1", "rx32", "tx2", "tx32"].contains(&c.as_str()))
                        .ok_or("--null-case needs rx1, rx32, tx2 or tx32")?,
                )
            }
            "-h" | "--help" => {
                return Err("usage: seedbench [all|sim|tun|kernel|null] [--sim-runs N] \
                            [--tun-runs N] [--kernel-runs N] [--sim-bytes B] [--tun-bytes B] \
                            [--null-blocks N] [--null-case rx1|rx32|tx2|tx32]"
                    .into())
            }
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(a)
}

/// One line of the table.
struct Row {
    id: &'static str,
    label: &'static str,
    value: Result<Spread, String>,
    /// The row isolates our stack's own cost, so it judges the target
    /// (rows that include a device's or link's cost are shown, not judged).
    judged: bool,
}

impl Row {
    fn new(id: &'static str, label: &'static str, value: Result<Vec<f64>, String>) -> Row {
        Row {
            id,
            label,
            value: value.and_then(|v| spread(v).ok_or_else(|| "no samples".to_string())),
            judged: false,
        }
    }

    /// A row that judges the target.
    fn judged(mut self) -> Row {
        self.judged = true;
        self
    }
}

struct Section {
    title: &'static str,
    notes_ns: f64,
    target_ns: Option<f64>,
    rows: Vec<Row>,
}

fn ratio(notes: f64, v: f64) -> String {
    let r = notes / v;
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

fn print_sections(sections: &[Section]) {
    println!(
        "{:<4}{:<58}{:>10}{:>10}{:>8}{:>9}{:>9}{:>9}{:>6}",
        "", "figure", "median", "p99", "n", "notes", "notes/", "target", "met?"
    );
    println!(
        "{:<4}{:<58}{:>10}{:>10}{:>8}{:>9}{:>9}{:>9}{:>6}",
        "", "", "", "", "", "", "median", "", ""
    );
    for s in sections {
        println!("{}", s.title);
        for r in &s.rows {
            match &r.value {
                Ok(v) => {
                    let target = s
                        .target_ns
                        .map_or("-".into(), |t| format!("< {}", human(t)));
                    let met = match (s.target_ns, r.judged) {
                        (None, _) => "-",
                        (Some(t), true) => {
                            if v.median < t {
                                "yes"
                            } else {
                                "NO"
                            }
                        }
                        (Some(t), false) => {
                            if v.median < t {
                                "(yes)"
                            } else {
                                "(no)"
                            }
                        }
                    };
                    println!(
                        "{:<4}{:<58}{:>10}{:>10}{:>8}{:>9}{:>9}{:>9}{:>6}",
                        r.id,
                        r.label,
                        human(v.median),
                        human(v.p99),
                        v.n,
                        human(s.notes_ns),
                        ratio(s.notes_ns, v.median),
                        target,
                        met
                    );
                }
                Err(why) => println!("{:<4}{:<58}  {why}", r.id, r.label),
            }
        }
    }
}

/// One line per target: met or not, judged on the rows that isolate our stack.
fn print_verdicts(sections: &[Section]) {
    for s in sections {
        let Some(target) = s.target_ns else { continue };
        let mut judged = Vec::new();
        let mut all_met = true;
        for r in s.rows.iter().filter(|r| r.judged) {
            if let Ok(v) = &r.value {
                all_met &= v.median < target;
                judged.push(format!("{} {}", r.id, human(v.median)));
            }
        }
        if judged.is_empty() {
            println!(
                "# target < {}: no row that isolates our stack was measured",
                human(target)
            );
        } else {
            println!(
                "# target < {}: {} (medians of the rows that isolate our stack: {})",
                human(target),
                if all_met { "met" } else { "NOT met" },
                judged.join(", ")
            );
        }
    }
}

fn err_string(e: io::Error) -> String {
    format!("FAILED: {e}")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Everything the TUN part measures (in one private namespace).
struct TunResults {
    plain: tun::Handshakes,
    timed: tun::Handshakes,
    traced: tun::Handshakes,
    receive: tun::Bulk,
    receive_timed: tun::Bulk,
    send: tun::Bulk,
    send_timed: tun::Bulk,
}

fn run_tun(a: &Args, clock_ns: f64) -> io::Result<TunResults> {
    let warm = (a.tun_runs / 20).max(20);
    let traced_runs = (a.tun_runs / 10).max(50);
    let bytes = a.tun_bytes;
    tun::with_tun(move |t| {
        let mut dev = Timed::new(t, false);
        use tun::Pass;
        let plain = tun::handshakes(&mut dev, Pass::Plain, a.tun_runs, warm, 7000, clock_ns)?;
        let timed = tun::handshakes(
            &mut dev,
            Pass::DeviceTimed,
            a.tun_runs,
            warm,
            7001,
            clock_ns,
        )?;
        let traced = tun::handshakes(&mut dev, Pass::Traced, traced_runs, warm, 7002, clock_ns)?;
        let receive = tun::bulk_receive(&mut dev, false, bytes, 7100, clock_ns)?;
        let receive_timed = tun::bulk_receive(&mut dev, true, bytes, 7101, clock_ns)?;
        let send = tun::bulk_send(&mut dev, false, bytes, 7200, clock_ns)?;
        let send_timed = tun::bulk_send(&mut dev, true, bytes, 7201, clock_ns)?;
        Ok(TunResults {
            plain,
            timed,
            traced,
            receive,
            receive_timed,
            send,
            send_timed,
        })
    })
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("seedbench: {e}");
            return ExitCode::from(2);
        }
    };
    let want = |part: &str| a.mode == "all" || a.mode == part;
    let not_run = || Err::<Vec<f64>, String>(format!("not run (mode {})", a.mode));
    let mut failed = false;
    let mut details: Vec<String> = Vec::new();

    let clock_ns = timed::clock_read_ns();
    println!(
        "# clock: Instant::now() costs {clock_ns:.1} ns here (clocksource {})",
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    );
    println!(
        "# runs: sim link {} handshakes, TUN {} (+{} traced), kernel loopback {}; \
         bulk: sim link {} MiB, TUN {} MiB each way; in-memory {} blocks of {} segments",
        a.sim_runs,
        a.tun_runs,
        (a.tun_runs / 10).max(50),
        a.kernel_runs,
        a.sim_bytes >> 20,
        a.tun_bytes >> 20,
        a.null_blocks,
        null::BLOCK_SEGMENTS
    );

    // --- simulated link
    let (sim_total, sim_server, sim_rx, sim_tx) = if want("sim") {
        eprintln!("seedbench: simulated link ...");
        let hs = sim::handshakes(a.sim_runs, a.sim_runs / 20).map_err(err_string);
        let seg = sim::segment_cost(a.sim_bytes).map_err(err_string);
        if let Ok(s) = &seg {
            details.push(format!(
                "3a/3b: {} segments counted ({:.0} payload bytes each), blocks of ~256 packets",
                s.segments, s.payload_per_segment
            ));
        }
        let (total, server) = match hs {
            Ok(h) => (Ok(h.total), Ok(h.server)),
            Err(e) => (Err(e.clone()), Err(e)),
        };
        let (rx, tx) = match seg {
            Ok(s) => (Ok(s.receive), Ok(s.send)),
            Err(e) => (Err(e.clone()), Err(e)),
        };
        (total, server, rx, tx)
    } else {
        (not_run(), not_run(), not_run(), not_run())
    };

    // --- kernel loopback
    let kernel_lo = if want("kernel") {
        eprintln!("seedbench: kernel loopback ...");
        kernel::loopback_syn_to_accept(a.kernel_runs, (a.kernel_runs / 20).max(20))
            .map_err(err_string)
    } else {
        not_run()
    };

    // --- in-memory peer
    let mut null_rows: Vec<Result<Vec<f64>, String>> = Vec::new();
    let null_hs;
    if want("null") {
        eprintln!("seedbench: in-memory peer ...");
        null_hs = if a.null_case.is_some() {
            not_run()
        } else {
            null::handshakes(a.sim_runs, a.sim_runs / 20).map_err(err_string)
        };
        let warm = (a.null_blocks / 10).max(100);
        let cases: [(bool, usize); 4] = [(true, 1), (true, 32), (false, 2), (false, 32)];
        for (receive, per_poll) in cases {
            let name = format!("{}{per_poll}", if receive { "rx" } else { "tx" });
            if a.null_case.as_ref().is_some_and(|c| *c != name) {
                null_rows.push(not_run());
                continue;
            }
            let r = if receive {
                null::receive_cost(per_poll, a.null_blocks, warm)
            } else {
                null::send_cost(per_poll, a.null_blocks, warm)
            };
            match r {
                Ok(n) => {
                    let median = spread(n.per_segment.clone()).map_or(f64::NAN, |s| s.median);
                    details.push(format!(
                        "in-memory {} {per_poll}/poll: {} segments; the device's own calls {:.1} ns/segment \
                         (included), so the stack alone ~{:.0} ns; stack sent {:.2} packets/segment",
                        if receive { "receive" } else { "send" },
                        n.segments,
                        n.device_per_segment,
                        median - n.device_per_segment,
                        n.stack_packets_per_segment
                    ));
                    null_rows.push(Ok(n.per_segment));
                }
                Err(e) => null_rows.push(Err(err_string(e))),
            }
        }
    } else {
        null_hs = not_run();
        for _ in 0..4 {
            null_rows.push(not_run());
        }
    }

    // --- TUN with the real kernel
    let tun_results = if !want("tun") {
        Err(format!("not run (mode {})", a.mode))
    } else if !is_root() {
        Err("skipped: needs root (private network namespace, TUN device)".to_string())
    } else {
        eprintln!("seedbench: TUN (private network namespace) ...");
        run_tun(&a, clock_ns).map_err(err_string)
    };
    if let Ok(t) = &tun_results {
        let n = t.plain.syn_to_accept.len().max(1) as f64;
        details.push(format!(
            "1b/2b: {:.2} polls per handshake from the SYN's poll to the accepting one",
            t.plain.polls as f64 / n
        ));
        let traced = spread(t.traced.syn_to_accept.clone());
        if let Some(s) = traced {
            details.push(format!(
                "1b with the stack's trace on (SYN instant taken from the trace): median {}, p99 {} over {} runs; \
                 the trace's SYN instant was the poll's `now` in {} of {}",
                human(s.median),
                human(s.p99),
                s.n,
                t.traced.trace_agrees,
                s.n
            ));
        }
        for (name, b) in [
            ("3c (kernel -> stack)", &t.receive),
            ("3d", &t.receive_timed),
            ("3e (stack -> kernel)", &t.send),
            ("3f", &t.send_timed),
        ] {
            details.push(format!(
                "{name}: {} MiB in {:.2} s ({:.2} Gbit/s), {} packets counted, {:.1} per poll",
                b.bytes >> 20,
                b.seconds,
                b.bytes as f64 * 8.0 / b.seconds / 1e9,
                b.packets,
                b.packets as f64 / b.polls.max(1) as f64
            ));
        }
    }
    let tun_get = |f: &dyn Fn(&TunResults) -> Vec<f64>| -> Result<Vec<f64>, String> {
        match &tun_results {
            Ok(t) => Ok(f(t)),
            Err(e) => Err(e.clone()),
        }
    };

    let mut null_iter = null_rows.into_iter();
    let mut next_null = || null_iter.next().unwrap_or_else(|| Err("missing".into()));
    let sections = vec![
        Section {
            title: "SYN-to-accept (notes: 1.7 ms from the SYN's interrupt to accepting)",
            notes_ns: NOTES_SYN_TO_ACCEPT_NS,
            target_ns: None,
            rows: vec![
                Row::new(
                    "1a",
                    "our stack, sim link: SYN in -> accept returns",
                    sim_total,
                ),
                Row::new(
                    "1b",
                    "our stack, TUN, kernel client: SYN in -> accept returns",
                    tun_get(&|t| t.plain.syn_to_accept.clone()),
                ),
                Row::new(
                    "1c",
                    "our stack, TUN: kernel connect() call -> our accept",
                    tun_get(&|t| t.plain.connect_to_accept.clone()),
                ),
                Row::new(
                    "1d",
                    "kernel loopback: connect() call -> accept() returns",
                    kernel_lo,
                ),
            ],
        },
        Section {
            title: "Our stack's processing within SYN-to-accept (target < 5 µs)",
            notes_ns: NOTES_SYN_TO_ACCEPT_NS,
            target_ns: Some(TARGET_PROCESSING_NS),
            rows: vec![
                Row::new(
                    "2a",
                    "sim link: server's SYN poll + ACK poll + accept",
                    sim_server,
                ),
                Row::new(
                    "2b",
                    "TUN: polls SYN..ACK + accept, incl. TUN read/write",
                    tun_get(&|t| t.plain.processing.clone()),
                ),
                Row::new(
                    "2c",
                    "TUN: the same less the device calls (stack's own)",
                    tun_get(&|t| t.timed.processing_own.clone()),
                )
                .judged(),
                Row::new(
                    "2d",
                    "in-memory peer: SYN poll + ACK poll + accept",
                    null_hs,
                )
                .judged(),
            ],
        },
        Section {
            title: "Per segment (notes: 200 µs per packet interrupt; target < 200 ns)",
            notes_ns: NOTES_PACKET_NS,
            target_ns: Some(TARGET_SEGMENT_NS),
            rows: vec![
                Row::new(
                    "3a",
                    "sim link: receive + ACK, per segment in (incl. link)",
                    sim_rx,
                ),
                Row::new("3b", "sim link: send, per packet out (incl. link)", sim_tx),
                Row::new(
                    "3c",
                    "TUN: receive + ACK, per packet in (incl. syscalls)",
                    tun_get(&|t| t.receive.per_packet.clone()),
                ),
                Row::new(
                    "3d",
                    "TUN: receive + ACK, less device calls (stack's own)",
                    tun_get(&|t| t.receive_timed.own_per_packet.clone()),
                )
                .judged(),
                Row::new(
                    "3e",
                    "TUN: send, per packet out (incl. syscalls)",
                    tun_get(&|t| t.send.per_packet.clone()),
                ),
                Row::new(
                    "3f",
                    "TUN: send, less device calls (stack's own)",
                    tun_get(&|t| t.send_timed.own_per_packet.clone()),
                )
                .judged(),
                Row::new(
                    "3g",
                    "in-memory peer: receive + ACK, 1 segment per poll",
                    next_null(),
                )
                .judged(),
                Row::new(
                    "3h",
                    "in-memory peer: receive + ACK, 32 segments per poll",
                    next_null(),
                )
                .judged(),
                Row::new(
                    "3i",
                    "in-memory peer: send, 2 segments per poll (1 ACK in)",
                    next_null(),
                )
                .judged(),
                Row::new(
                    "3j",
                    "in-memory peer: send, 32 segments per poll (1 ACK in)",
                    next_null(),
                )
                .judged(),
            ],
        },
    ];
    print_sections(&sections);
    print_verdicts(&sections);
    for s in &sections {
        for r in &s.rows {
            if let Err(e) = &r.value {
                if e.starts_with("FAILED") {
                    failed = true;
                }
            }
        }
    }
    for line in LEGEND {
        println!("# {line}");
    }
    for d in &details {
        println!("# {d}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
