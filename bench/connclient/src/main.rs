//! connclient: opens many short TCP connections to one address and reports
//! connections per second.
//!
//! Each connection: connect, optionally write a small payload, shut down the
//! write side, read until the server closes (EOF), close. The run stops after
//! `--conns` completed connections or `--seconds`, whichever comes first.
//! std only, so it builds offline.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    addr: SocketAddr,
    conns: u64,
    seconds: f64,
    threads: usize,
    payload: usize,
    io_timeout: Duration,
    max_errors: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: connclient HOST:PORT [--conns N] [--seconds S] [--threads T] \
         [--payload BYTES] [--timeout-ms MS] [--max-errors N]\n\
         defaults: --conns 20000 --seconds 30 --threads 4 --payload 16 \
         --timeout-ms 5000 --max-errors 100"
    );
    std::process::exit(2);
}

fn parse() -> Opts {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next() else { usage() };
    let addr = match target.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => usage(),
    };
    let mut o = Opts {
        addr,
        conns: 20_000,
        seconds: 30.0,
        threads: 4,
        payload: 16,
        io_timeout: Duration::from_millis(5000),
        max_errors: 100,
    };
    while let Some(flag) = args.next() {
        let val = args.next().unwrap_or_else(|| usage());
        let bad = || -> ! { usage() };
        match flag.as_str() {
            "--conns" => o.conns = val.parse().unwrap_or_else(|_| bad()),
            "--seconds" => o.seconds = val.parse().unwrap_or_else(|_| bad()),
            "--threads" => o.threads = val.parse().unwrap_or_else(|_| bad()),
            "--payload" => o.payload = val.parse().unwrap_or_else(|_| bad()),
            "--timeout-ms" => {
                o.io_timeout = Duration::from_millis(val.parse().unwrap_or_else(|_| bad()))
            }
            "--max-errors" => o.max_errors = val.parse().unwrap_or_else(|_| bad()),
            _ => usage(),
        }
    }
    if o.threads == 0 || o.conns == 0 || o.seconds.is_nan() || o.seconds <= 0.0 {
        usage();
    }
    o
}

/// One short connection. Returns Err on any failure, including a server that
/// does not close within the I/O timeout.
fn one(addr: &SocketAddr, payload: &[u8], timeout: Duration) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    if !payload.is_empty() {
        s.write_all(payload)?;
    }
    s.shutdown(Shutdown::Write)?;
    // Wait for the server to close its side; discard anything it sends.
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf)? {
            0 => return Ok(()),
            _ => continue,
        }
    }
}

fn main() -> ExitCode {
    let o = parse();
    let payload: Arc<Vec<u8>> = Arc::new(vec![b'x'; o.payload]);
    let claimed = Arc::new(AtomicU64::new(0)); // connections handed out
    let done = Arc::new(AtomicU64::new(0)); // connections completed
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Duration::from_secs_f64(o.seconds);
    let first_err: Arc<std::sync::Mutex<Option<String>>> = Arc::default();

    let start = Instant::now();
    let handles: Vec<_> = (0..o.threads)
        .map(|_| {
            let (payload, claimed, done, errors, stop, first_err) = (
                payload.clone(),
                claimed.clone(),
                done.clone(),
                errors.clone(),
                stop.clone(),
                first_err.clone(),
            );
            let (addr, conns, timeout, max_errors) = (o.addr, o.conns, o.io_timeout, o.max_errors);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if claimed.fetch_add(1, Ordering::Relaxed) >= conns {
                        break;
                    }
                    if start.elapsed() >= deadline {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    match one(&addr, &payload, timeout) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            first_err
                                .lock()
                                .unwrap()
                                .get_or_insert_with(|| e.to_string());
                            if errors.fetch_add(1, Ordering::Relaxed) + 1 >= max_errors {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let (done, errors) = (done.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let rate = done as f64 / secs;
    // stdout: "<connections per second> <completed connections>"; details on stderr.
    eprintln!(
        "connclient: {done} ok, {errors} errors in {secs:.3} s ({} threads, {} B payload)",
        o.threads, o.payload
    );
    if let Some(e) = first_err.lock().unwrap().as_ref() {
        eprintln!("connclient: first error: {e}");
    }
    println!("{rate:.1} {done}");
    if errors >= o.max_errors || done == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
