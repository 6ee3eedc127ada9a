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
mod speed;
mod stats;
mod timed;
mod tun;

use std::collections::BTreeMap;
use std::io;
use std::process::ExitCode;

use stats::{human, spread};
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
    "3c  kernel -> our stack, time in poll / packets in (blocks of 256), empty polls and our read/write(2) of the TUN",
    "    included, and with them the kernel's own TCP work done inside our write(2) of an ACK (it sends its next segments)",
    "3d  3c's transfer repeated with the device timed: less the device's calls and one clock read per call",
    "3e  our stack -> kernel, time in poll / packets out (ACKs in, segments built, TUN writes: the kernel's receive path",
    "    runs inside our write(2)); 3f: 3e repeated with the device timed, less the device's calls",
    "3k/3l 3d/3f's transfers on a TUN with offloads (IFF_VNET_HDR, TSO and checksum: the kernel hands us and takes",
    "    segments of up to 64 KB and cuts or joins them itself), the stack's own time per 1448 bytes of payload",
    "    delivered (3k) or acknowledged (3l): what a full-size segment costs us when the device batches them, as",
    "    Linux's GRO/TSO do for its own stack; not per packet on the wire, so shown and not used for the target",
    "3g-3j in-memory peer: blocks of 32 segments timed as a whole (one `now` per block), the application's",
    "    recv/send copies outside the timing; less the peer's own calls (measured alone each round, as 3d/3f",
    "    leave out the TUN's system calls); the figures with the peer's calls in are printed below",
];

struct Args {
    mode: String,
    rounds: usize,
    sim_runs: usize,
    tun_runs: usize,
    kernel_runs: usize,
    sim_bytes: usize,
    tun_bytes: usize,
    null_blocks: usize,
    /// Only this in-memory case (hs: the handshakes; rx1, rx32, tx2, tx32), for profiling.
    null_case: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        mode: "all".into(),
        rounds: 3,
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
            "--rounds" => a.rounds = number("--rounds")?.min(20),
            "--sim-runs" => a.sim_runs = number("--sim-runs")?,
            "--tun-runs" => a.tun_runs = number("--tun-runs")?,
            "--kernel-runs" => a.kernel_runs = number("--kernel-runs")?,
            "--sim-bytes" => a.sim_bytes = number("--sim-bytes")?,
            "--tun-bytes" => a.tun_bytes = number("--tun-bytes")?,
            "--null-blocks" => a.null_blocks = number("--null-blocks")?,
            "--null-case" => {
                a.null_case = Some(
                    it.next()
                        .filter(|c| ["hs", "rx1", "rx32", "tx2", "tx32"].contains(&c.as_str()))
                        .ok_or("--null-case needs hs, rx1, rx32, tx2 or tx32")?,
                )
            }
            "-h" | "--help" => {
                return Err("usage: seedbench [all|sim|tun|kernel|null] [--rounds N] \
                            [--sim-runs N] [--tun-runs N] [--kernel-runs N] [--sim-bytes B] \
                            [--tun-bytes B] [--null-blocks N] [--null-case hs|rx1|rx32|tx2|tx32]"
                    .into())
            }
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(a)
}

struct Section {
    title: &'static str,
    notes_ns: f64,
    target_ns: Option<f64>,
}

const SECTIONS: [Section; 3] = [
    Section {
        title: "SYN-to-accept (notes: 1.7 ms from the SYN's interrupt to accepting)",
        notes_ns: NOTES_SYN_TO_ACCEPT_NS,
        target_ns: None,
    },
    Section {
        title: "Our stack's processing within SYN-to-accept (target < 5 µs)",
        notes_ns: NOTES_SYN_TO_ACCEPT_NS,
        target_ns: Some(TARGET_PROCESSING_NS),
    },
    Section {
        title: "Per segment (notes: 200 µs per packet interrupt; target < 200 ns)",
        notes_ns: NOTES_PACKET_NS,
        target_ns: Some(TARGET_SEGMENT_NS),
    },
];

/// One line of the table.
struct RowSpec {
    id: &'static str,
    section: usize,
    label: &'static str,
    /// The row isolates our stack's own cost, so it judges the target
    /// (rows that include a device's or the link's cost are shown, not judged).
    judged: bool,
}

const fn row(id: &'static str, section: usize, label: &'static str, judged: bool) -> RowSpec {
    RowSpec {
        id,
        section,
        label,
        judged,
    }
}

const ROWS: &[RowSpec] = &[
    row(
        "1a",
        0,
        "our stack, sim link: SYN in -> accept returns",
        false,
    ),
    row(
        "1b",
        0,
        "our stack, TUN, kernel client: SYN in -> accept returns",
        false,
    ),
    row(
        "1c",
        0,
        "our stack, TUN: kernel connect() call -> our accept",
        false,
    ),
    row(
        "1d",
        0,
        "kernel loopback: connect() call -> accept() returns",
        false,
    ),
    row(
        "2a",
        1,
        "sim link: server's SYN poll + ACK poll + accept",
        false,
    ),
    row(
        "2b",
        1,
        "TUN: polls SYN..ACK + accept, incl. TUN read/write",
        false,
    ),
    row(
        "2c",
        1,
        "TUN: the same less the device calls (stack's own)",
        true,
    ),
    row(
        "2d",
        1,
        "in-memory peer: SYN poll + ACK poll + accept",
        true,
    ),
    row(
        "3a",
        2,
        "sim link: receive + ACK, per segment in (incl. link)",
        false,
    ),
    row(
        "3b",
        2,
        "sim link: send, per packet out (incl. link)",
        false,
    ),
    row(
        "3c",
        2,
        "TUN: receive + ACK, per packet in (incl. syscalls)",
        false,
    ),
    row(
        "3d",
        2,
        "TUN: receive + ACK, less device calls (stack's own)",
        true,
    ),
    row("3e", 2, "TUN: send, per packet out (incl. syscalls)", false),
    row("3f", 2, "TUN: send, less device calls (stack's own)", true),
    row(
        "3k",
        2,
        "TUN+offloads: receive, per 1448 B of payload (own)",
        false,
    ),
    row(
        "3l",
        2,
        "TUN+offloads: send, per 1448 B of payload (own)",
        false,
    ),
    row(
        "3g",
        2,
        "in-memory: receive + ACK, 1 segment/poll, less peer",
        true,
    ),
    row(
        "3h",
        2,
        "in-memory: receive + ACK, 32 segments/poll, less peer",
        true,
    ),
    row(
        "3i",
        2,
        "in-memory: send, 2 segments/poll (1 ACK in), less peer",
        true,
    ),
    row(
        "3j",
        2,
        "in-memory: send, 32 segments/poll (1 ACK in), less peer",
        true,
    ),
];

/// Every row's samples, one vector per round, or why there are none.
#[derive(Default)]
struct Results {
    rows: BTreeMap<&'static str, Result<Vec<Vec<f64>>, String>>,
    details: Vec<String>,
}

impl Results {
    /// One round's samples for row `id` (an error sticks).
    fn add(&mut self, id: &'static str, round: Result<Vec<f64>, String>) {
        let entry = self.rows.entry(id).or_insert_with(|| Ok(Vec::new()));
        match (entry, round) {
            (Ok(rounds), Ok(v)) => rounds.push(v),
            (entry @ Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    }

    fn set_err(&mut self, ids: &[&'static str], why: &str) {
        for id in ids {
            self.rows.insert(id, Err(why.to_string()));
        }
    }
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

/// The rounds' medians in the unit `human` picks for `like`.
fn round_medians(rounds: &[Vec<f64>], like: f64) -> String {
    let (div, unit, decimals) = if like >= 1e6 {
        (1e6, "ms", 2)
    } else if like >= 1e4 {
        (1e3, "µs", 1)
    } else if like >= 1e3 {
        (1e3, "µs", 2)
    } else {
        (1.0, "ns", 0)
    };
    let values: Vec<String> = rounds
        .iter()
        .filter_map(|r| spread(r.clone()))
        .map(|s| format!("{:.*}", decimals, s.median / div))
        .collect();
    format!("{} {unit}", values.join(" "))
}

/// Widths of the id and label columns.
const HEADER_FORMAT_WIDTHS: (usize, usize) = (4, 58);

fn print_table(results: &Results) {
    let (idw, lw) = HEADER_FORMAT_WIDTHS;
    println!(
        "{:<idw$}{:<lw$}{:>10}{:>10}{:>8}{:>9}{:>9}{:>10}{:>7}  per-round medians",
        "", "figure", "median", "p99", "n", "notes", "notes/", "target", "met?"
    );
    println!(
        "{:<idw$}{:<lw$}{:>10}{:>10}{:>8}{:>9}{:>9}{:>10}{:>7}",
        "", "", "", "", "", "", "median", "", ""
    );
    for (i, s) in SECTIONS.iter().enumerate() {
        println!("{}", s.title);
        for r in ROWS.iter().filter(|r| r.section == i) {
            let value = results
                .rows
                .get(r.id)
                .cloned()
                .unwrap_or_else(|| Err("not run".into()));
            let all = value.as_ref().map(|rounds| rounds.concat());
            match (&value, all.map(spread)) {
                (Ok(rounds), Ok(Some(v))) => {
                    let target = s
                        .target_ns
                        .map_or("-".into(), |t| format!("< {}", human(t)));
                    let met = match s.target_ns {
                        None => "-",
                        Some(t) => match (v.median < t, r.judged) {
                            (true, true) => "yes",
                            (false, true) => "NO",
                            (true, false) => "(yes)",
                            (false, false) => "(no)",
                        },
                    };
                    println!(
                        "{:<idw$}{:<lw$}{:>10}{:>10}{:>8}{:>9}{:>9}{:>10}{:>7}  {}",
                        r.id,
                        r.label,
                        human(v.median),
                        human(v.p99),
                        v.n,
                        human(s.notes_ns),
                        ratio(s.notes_ns, v.median),
                        target,
                        met,
                        round_medians(rounds, v.median)
                    );
                }
                (Err(why), _) => println!("{:<idw$}{:<lw$}  {why}", r.id, r.label),
                _ => println!("{:<idw$}{:<lw$}  no samples", r.id, r.label),
            }
        }
    }
}

/// One line per target: met or not, judged on the rows that isolate our stack.
fn print_verdicts(results: &Results) {
    for (i, s) in SECTIONS.iter().enumerate() {
        let Some(target) = s.target_ns else { continue };
        let mut judged = Vec::new();
        let mut all_met = true;
        for r in ROWS.iter().filter(|r| r.section == i && r.judged) {
            if let Some(Ok(rounds)) = results.rows.get(r.id) {
                if let Some(v) = spread(rounds.concat()) {
                    all_met &= v.median < target;
                    judged.push(format!("{} {}", r.id, human(v.median)));
                }
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

/// Round `round`'s share of `total` split over `rounds` (the shares add up to `total`).
fn share(total: usize, rounds: usize, round: usize) -> usize {
    (total / rounds + usize::from(round < total % rounds)).max(1)
}

fn err_string(e: io::Error) -> String {
    format!("FAILED: {e}")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// What the TUN part measures in one round.
struct TunRound {
    /// `speed::probe` at the round's start.
    speed: f64,
    plain: tun::Handshakes,
    timed: tun::Handshakes,
    traced: tun::Handshakes,
    receive: tun::Bulk,
    receive_timed: tun::Bulk,
    send: tun::Bulk,
    send_timed: tun::Bulk,
    /// The same two transfers on a TUN with offloads (64 KB segments both
    /// ways), device timed, counted per full segment's worth of payload.
    offloaded_receive: tun::Bulk,
    offloaded_send: tun::Bulk,
}

/// All rounds of the TUN part in one private namespace, fresh ports each time.
fn run_tun(a: &Args, clock_ns: f64) -> io::Result<Vec<TunRound>> {
    let rounds = a.rounds;
    let (total_runs, total_bytes) = (a.tun_runs, a.tun_bytes);
    let offloaded = tun::with_tun(true, move |t| {
        let mut dev = Timed::new(t, false);
        let mut out = Vec::with_capacity(rounds);
        for round in 0..rounds {
            eprintln!("seedbench: TUN with offloads, round {}/{rounds}", round + 1);
            let bytes = share(total_bytes, rounds, round);
            let port = 8000 + 10 * round as u16;
            let count = tun::Count::FullSegments;
            out.push((
                tun::bulk_receive(&mut dev, true, count, bytes, port, clock_ns)?,
                tun::bulk_send(&mut dev, true, count, bytes, port + 1, clock_ns)?,
            ));
        }
        Ok(out)
    })?;
    let mut offloaded = offloaded.into_iter();
    tun::with_tun(false, move |t| {
        let mut dev = Timed::new(t, false);
        use tun::Pass;
        let mut out = Vec::with_capacity(rounds);
        for round in 0..rounds {
            eprintln!("seedbench: TUN round {}/{rounds}", round + 1);
            let runs = share(total_runs, rounds, round);
            let warm = (runs / 20).max(20);
            let traced_runs = (runs / 10).max(20);
            let bytes = share(total_bytes, rounds, round);
            let port = 7000 + 10 * round as u16;
            let packets = tun::Count::Packets;
            let mut offloaded_round = offloaded
                .next()
                .ok_or_else(|| io::Error::other("TUN with offloads: a round missing"))?;
            out.push(TunRound {
                speed: speed::probe(),
                plain: tun::handshakes(&mut dev, Pass::Plain, runs, warm, port, clock_ns)?,
                timed: tun::handshakes(
                    &mut dev,
                    Pass::DeviceTimed,
                    runs,
                    warm,
                    port + 1,
                    clock_ns,
                )?,
                traced: tun::handshakes(
                    &mut dev,
                    Pass::Traced,
                    traced_runs,
                    warm,
                    port + 2,
                    clock_ns,
                )?,
                receive: tun::bulk_receive(&mut dev, false, packets, bytes, port + 3, clock_ns)?,
                receive_timed: tun::bulk_receive(
                    &mut dev,
                    true,
                    packets,
                    bytes,
                    port + 4,
                    clock_ns,
                )?,
                send: tun::bulk_send(&mut dev, false, packets, bytes, port + 5, clock_ns)?,
                send_timed: tun::bulk_send(&mut dev, true, packets, bytes, port + 6, clock_ns)?,
                offloaded_receive: std::mem::take(&mut offloaded_round.0),
                offloaded_send: std::mem::take(&mut offloaded_round.1),
            });
        }
        Ok(out)
    })
}

const TUN_ROWS: [&str; 11] = [
    "1b", "1c", "2b", "2c", "3c", "3d", "3e", "3f", "3k", "3l", "tun",
];

fn tun_details(results: &mut Results, rounds: &[TunRound]) {
    let per_handshake = |pick: fn(&TunRound) -> &tun::Handshakes| {
        let n: usize = rounds.iter().map(|r| pick(r).processing.len()).sum();
        let polls: u64 = rounds.iter().map(|r| pick(r).polls).sum();
        polls as f64 / n.max(1) as f64
    };
    results.details.push(format!(
        "1b/2b: {:.2} polls per handshake from the SYN's poll to the accepting one (2c's pass: {:.2})",
        per_handshake(|r| &r.plain),
        per_handshake(|r| &r.timed)
    ));
    let traced: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r.traced.syn_to_accept.iter().copied())
        .collect();
    let agrees: u64 = rounds.iter().map(|r| r.traced.trace_agrees).sum();
    if let Some(s) = spread(traced) {
        results.details.push(format!(
            "1b with the stack's trace on (the SYN's instant taken from the trace): median {}, p99 {} \
             over {} runs; the trace's SYN instant was the poll's `now` in {agrees} of {}",
            human(s.median),
            human(s.p99),
            s.n,
            s.n
        ));
    }
    type Pick = fn(&TunRound) -> &tun::Bulk;
    let bulks: [(&str, Pick); 6] = [
        ("3c (kernel -> stack)", |r| &r.receive),
        ("3d (kernel -> stack, device timed)", |r| &r.receive_timed),
        ("3e (stack -> kernel)", |r| &r.send),
        ("3f (stack -> kernel, device timed)", |r| &r.send_timed),
        ("3k (kernel -> stack, offloads, device timed)", |r| {
            &r.offloaded_receive
        }),
        ("3l (stack -> kernel, offloads, device timed)", |r| {
            &r.offloaded_send
        }),
    ];
    for (name, pick) in bulks {
        let (mut bytes, mut seconds, mut packets, mut polls) = (0u64, 0f64, 0u64, 0u64);
        for r in rounds {
            let b = pick(r);
            bytes += b.bytes;
            seconds += b.seconds;
            packets += b.packets;
            polls += b.polls;
        }
        results.details.push(format!(
            "{name}: {} MiB in {:.2} s ({:.2} Gbit/s), {packets} packets counted, {:.1} per poll",
            bytes >> 20,
            seconds,
            bytes as f64 * 8.0 / seconds / 1e9,
            packets as f64 / polls.max(1) as f64
        ));
    }
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
    let rounds = a.rounds;
    let mut results = Results::default();

    let clock_ns = timed::clock_read_ns();
    println!(
        "# clock: Instant::now() costs {clock_ns:.1} ns here (clocksource {})",
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    );
    println!(
        "# runs, in {rounds} interleaved rounds (pooled; per-round medians at the end of each line): \
         sim link and in-memory {} handshakes, TUN {} (+10% traced), kernel loopback {};",
        a.sim_runs, a.tun_runs, a.kernel_runs,
    );
    println!(
        "#   bulk: sim link {} MiB, TUN {} MiB each way twice; in-memory {} blocks of {} segments per case",
        a.sim_bytes >> 20,
        a.tun_bytes >> 20,
        a.null_blocks,
        null::BLOCK_SEGMENTS
    );

    let mut sim_segments = (0u64, 0f64);
    let mut null_device = [(0f64, 0f64, 0u64); 4];
    // Per case, the blocks' figures with the peer's calls in (every round).
    let mut null_with_peer: [Vec<f64>; 4] = Default::default();
    const NULL_CASES: [(&str, &str, bool, usize); 4] = [
        ("3g", "rx1", true, 1),
        ("3h", "rx32", true, 32),
        ("3i", "tx2", false, 2),
        ("3j", "tx32", false, 32),
    ];
    let mut speeds = Vec::with_capacity(rounds);
    for round in 0..rounds {
        eprintln!("seedbench: round {}/{rounds}", round + 1);
        speeds.push(speed::probe());
        let sim_runs = share(a.sim_runs, rounds, round);
        let kernel_runs = share(a.kernel_runs, rounds, round);
        let null_blocks = share(a.null_blocks, rounds, round);
        if want("sim") {
            match sim::handshakes(sim_runs, (sim_runs / 20).max(20)) {
                Ok(h) => {
                    results.add("1a", Ok(h.total));
                    results.add("2a", Ok(h.server));
                }
                Err(e) => results.set_err(&["1a", "2a"], &err_string(e)),
            }
            match sim::segment_cost(share(a.sim_bytes, rounds, round)) {
                Ok(s) => {
                    sim_segments.0 += s.segments;
                    sim_segments.1 += s.payload_per_segment * s.segments as f64;
                    results.add("3a", Ok(s.receive));
                    results.add("3b", Ok(s.send));
                }
                Err(e) => results.set_err(&["3a", "3b"], &err_string(e)),
            }
        }
        if want("kernel") {
            let r = kernel::loopback_syn_to_accept(kernel_runs, (kernel_runs / 20).max(20));
            results.add("1d", r.map_err(err_string));
        }
        if want("null") {
            if a.null_case.as_ref().is_none_or(|c| c == "hs") {
                let r = null::handshakes(sim_runs, (sim_runs / 20).max(20));
                results.add("2d", r.map_err(err_string));
            }
            let warm = (null_blocks / 10).max(100);
            for (k, &(id, name, receive, per_poll)) in NULL_CASES.iter().enumerate() {
                if a.null_case.as_ref().is_some_and(|c| c != name) {
                    continue;
                }
                let r = if receive {
                    null::receive_cost(per_poll, null_blocks, warm)
                } else {
                    null::send_cost(per_poll, null_blocks, warm)
                };
                match r {
                    Ok(n) => {
                        null_device[k].0 += n.device_per_segment * n.segments as f64;
                        null_device[k].1 += n.stack_packets_per_segment * n.segments as f64;
                        null_device[k].2 += n.segments;
                        null_with_peer[k].extend_from_slice(&n.per_segment);
                        results.add(id, Ok(n.stack_alone()));
                    }
                    Err(e) => results.add(id, Err(err_string(e))),
                }
            }
        }
    }
    if !want("sim") {
        results.set_err(
            &["1a", "2a", "3a", "3b"],
            &format!("not run (mode {})", a.mode),
        );
    }
    if !want("kernel") {
        results.set_err(&["1d"], &format!("not run (mode {})", a.mode));
    }
    if !want("null") || a.null_case.is_some() {
        for id in ["2d", "3g", "3h", "3i", "3j"] {
            results
                .rows
                .entry(id)
                .or_insert_with(|| Err("not run".into()));
        }
    }
    if sim_segments.0 > 0 {
        results.details.push(format!(
            "3a/3b: {} segments counted ({:.0} payload bytes each), blocks of ~256 packets",
            sim_segments.0,
            sim_segments.1 / sim_segments.0 as f64
        ));
    }

    // --- TUN with the real kernel
    let mut tun_speeds: Vec<String> = Vec::new();
    if !want("tun") {
        results.set_err(&TUN_ROWS, &format!("not run (mode {})", a.mode));
    } else if !is_root() {
        results.set_err(
            &TUN_ROWS,
            "skipped: needs root (private network namespace, TUN device)",
        );
    } else {
        eprintln!("seedbench: TUN (private network namespace) ...");
        match run_tun(&a, clock_ns) {
            Ok(rs) => {
                for r in &rs {
                    results.add("1b", Ok(r.plain.syn_to_accept.clone()));
                    results.add("1c", Ok(r.plain.connect_to_accept.clone()));
                    results.add("2b", Ok(r.plain.processing.clone()));
                    results.add("2c", Ok(r.timed.processing_own.clone()));
                    results.add("3c", Ok(r.receive.per_packet.clone()));
                    results.add("3d", Ok(r.receive_timed.own_per_packet.clone()));
                    results.add("3e", Ok(r.send.per_packet.clone()));
                    results.add("3f", Ok(r.send_timed.own_per_packet.clone()));
                    results.add("3k", Ok(r.offloaded_receive.own_per_packet.clone()));
                    results.add("3l", Ok(r.offloaded_send.own_per_packet.clone()));
                }
                tun_details(&mut results, &rs);
                tun_speeds = rs.iter().map(|r| format!("{:.0}", r.speed)).collect();
            }
            Err(e) => results.set_err(&TUN_ROWS, &err_string(e)),
        }
    }

    results.details.push(format!(
        "CPU phase check, at the start of each round: ns to copy and checksum 1448 bytes (lower = faster; \
         on this shared VM the same work takes up to ~2x as long for minutes at a time, and every row with it): \
         rounds {}{}",
        speeds
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" "),
        if tun_speeds.is_empty() {
            String::new()
        } else {
            format!("; TUN rounds {}", tun_speeds.join(" "))
        }
    ));
    for (k, &(_, name, receive, per_poll)) in NULL_CASES.iter().enumerate() {
        let (device, packets, segments) = null_device[k];
        if segments == 0 {
            continue;
        }
        let n = segments as f64;
        let with_peer =
            spread(std::mem::take(&mut null_with_peer[k])).map_or(f64::NAN, |s| s.median);
        results.details.push(format!(
            "in-memory {name} ({} {per_poll}/poll): {segments} segments; the peer's own calls cost {:.1} ns \
             per segment (left out above); with them in, the median is {:.0} ns; the stack sent {:.2} packets \
             per segment",
            if receive { "receive" } else { "send" },
            device / n,
            with_peer,
            packets / n
        ));
    }

    print_table(&results);
    print_verdicts(&results);
    for line in LEGEND {
        println!("# {line}");
    }
    for d in &results.details {
        println!("# {d}");
    }
    let failed = results
        .rows
        .values()
        .any(|r| matches!(r, Err(e) if e.starts_with("FAILED")));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, rounds) in [(20_000, 3), (2_000, 3), (7, 7), (5, 2), (64 << 20, 3)] {
            let sum: usize = (0..rounds).map(|r| share(total, rounds, r)).sum();
            assert_eq!(sum, total);
        }
    }
}
