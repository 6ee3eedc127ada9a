//! The pcap tap: a run's packets, opened by the real tshark without errors.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use oxcat_stack::{sim_link, Device, LinkConfig, PcapTap, SocketHandle, Stack, StackConfig};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark is installed by scripts/test (Debian package tshark)");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stacks A and B, B listening on port 5000 (`l`), A connecting to it (`c`).
fn connecting(now: Instant) -> (Stack, Stack, SocketHandle, SocketHandle) {
    let cfg = |ip| StackConfig {
        ipv4: Some(ip),
        ..StackConfig::default()
    };
    let (mut a, mut b) = (Stack::new(cfg(A), now), Stack::new(cfg(B), now));
    let l = b
        .tcp_listen(SocketAddr::new(IpAddr::V4(B), 5000), 4, now)
        .unwrap();
    let c = a
        .tcp_connect(SocketAddr::new(IpAddr::V4(B), 5000), None, now)
        .unwrap();
    (a, b, l, c)
}

/// Both stacks polled at `now`; returns when the next thing is due.
fn step(
    now: Instant,
    (a, pa): (&mut Stack, &mut impl Device),
    (b, pb): (&mut Stack, &mut impl Device),
) -> Instant {
    a.poll(now, pa).unwrap();
    b.poll(now, pb).unwrap();
    let next = [pa.poll_at(), pb.poll_at(), a.poll_at(), b.poll_at()]
        .into_iter()
        .flatten()
        .min();
    next.map_or(now + Duration::from_millis(1), |t| t.max(now))
}

#[test]
fn a_tcp_exchange_decodes_in_tshark() {
    let dir = tempfile_dir();
    let path = dir.join("run.pcap");
    let t0 = Instant::now();
    let mut now = t0;
    let (pa, mut pb) = sim_link(
        LinkConfig {
            delay: Duration::from_millis(3),
            ..LinkConfig::default()
        },
        9,
    );
    let mut pa = PcapTap::create(pa, &path, t0).unwrap();
    let (mut a, mut b, l, c) = connecting(now);
    let data = vec![0x42u8; 20_000];
    let (mut sent, mut shut, mut server, mut got, mut eof) = (0, false, None, 0, false);
    let mut buf = vec![0u8; 65536];
    for _ in 0..100_000 {
        if sent < data.len() {
            if let Ok(n) = a.tcp_send(c, &data[sent..]) {
                sent += n;
            }
        } else if !shut {
            a.tcp_shutdown_write(c, now).unwrap();
            shut = true;
        }
        if server.is_none() {
            server = b.tcp_accept(l).unwrap().map(|(h, _)| h);
        }
        if let Some(s) = server {
            loop {
                match b.tcp_recv(s, &mut buf) {
                    Ok(0) => {
                        if !eof {
                            b.tcp_shutdown_write(s, now).unwrap();
                        }
                        eof = true;
                        break;
                    }
                    Ok(n) => got += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        if eof && matches!(a.tcp_recv(c, &mut buf), Ok(0)) {
            break;
        }
        now = step(now, (&mut a, &mut pa), (&mut b, &mut pb));
    }
    assert_eq!(
        got,
        data.len(),
        "a {:?} b {:?} link {:?}",
        a.stats(),
        b.stats(),
        pb.stats()
    );
    let recorded = pa.packets();
    drop(pa);
    let p = path.to_str().unwrap();
    let malformed = tshark(&[
        "-r",
        p,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= error",
    ]);
    assert!(
        malformed.trim().is_empty(),
        "tshark found problems:\n{malformed}"
    );
    let all = tshark(&["-r", p, "-Y", "tcp"]);
    assert_eq!(
        all.lines().count() as u64,
        recorded,
        "every recorded packet is TCP"
    );
    let syns = tshark(&["-r", p, "-Y", "tcp.flags.syn == 1"]);
    assert_eq!(syns.lines().count(), 2, "SYN and SYN-ACK:\n{syns}");
    let bytes = tshark(&[
        "-r",
        p,
        "-Y",
        "tcp.len > 0 && ip.src == 198.18.0.1",
        "-T",
        "fields",
        "-e",
        "tcp.len",
    ]);
    let total: usize = bytes
        .lines()
        .filter_map(|l| l.trim().parse::<usize>().ok())
        .sum();
    assert_eq!(
        total,
        data.len(),
        "payload bytes in the capture (no loss on this link)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("oxcat-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A recorder that fails (a full disk) stops the recording, not the
/// traffic: every byte still arrives, the error is kept, and the callback
/// hears of it once.
#[test]
fn a_failing_recorder_stops_recording_and_nothing_else() {
    use oxcat_stack::{Recorder, Tap};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct FailsAfter(usize);
    impl Recorder for FailsAfter {
        fn record(&mut self, _now: Instant, _packet: &[u8]) -> std::io::Result<()> {
            match self.0.checked_sub(1) {
                Some(left) => {
                    self.0 = left;
                    Ok(())
                }
                None => Err(std::io::Error::from_raw_os_error(28)),
            }
        }
    }

    let t0 = Instant::now();
    let mut now = t0;
    let (pa, mut pb) = sim_link(LinkConfig::default(), 3);
    let told = Arc::new(AtomicUsize::new(0));
    let counter = told.clone();
    let mut pa = Tap::new(pa, FailsAfter(5)).on_stop(move |e| {
        assert_eq!(e.raw_os_error(), Some(28));
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let (mut a, mut b, l, c) = connecting(now);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut server, mut got) = (0, None, Vec::new());
    let mut buf = vec![0u8; 65536];
    for _ in 0..100_000 {
        if sent < data.len() {
            if let Ok(n) = a.tcp_send(c, &data[sent..]) {
                sent += n;
            }
        }
        if server.is_none() {
            server = b.tcp_accept(l).unwrap().map(|(h, _)| h);
        }
        if let Some(s) = server {
            while let Ok(n) = b.tcp_recv(s, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        if got.len() == data.len() {
            break;
        }
        now = step(now, (&mut a, &mut pa), (&mut b, &mut pb));
    }
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    assert_eq!(pa.stopped().and_then(|e| e.raw_os_error()), Some(28));
    assert_eq!(told.load(Ordering::SeqCst), 1);
}
