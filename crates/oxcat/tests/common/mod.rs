//! Shared helpers for the integration tests: finding binaries, free ports,
//! waiting for listeners without racing, bounded waits for processes.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The oxcat binary cargo built for this test run.
pub fn oxcat() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_oxcat"))
}

/// Path of a peer tool (ncat, socat, nc.openbsd). The test command installs
/// them; a missing peer is a failure, not a skip.
pub fn peer(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run `bash scripts/test`, which installs the peers");
}

pub fn ncat() -> PathBuf {
    peer("ncat")
}

/// The next port to try, below the kernel's ephemeral range: a port handed
/// out here is never a client's local port in a test running alongside
/// (a port taken with bind(0) was: another test's client could get it as
/// its ephemeral port between our check and our server's bind, and a
/// connection from it counted as one of ours). Each test process starts at
/// its own offset; a port is handed out once per process.
fn next_candidate() -> Option<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    // 10 000 ports below the ephemeral range, from 1024 at least.
    let base = low.saturating_sub(10_000).max(1024);
    let span = low.saturating_sub(base);
    if span < 1000 {
        return None;
    }
    let offset = std::process::id().wrapping_mul(7919) % span;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Some((base + (offset + n) % span) as u16)
}

/// A port that was free a moment ago for TCP and UDP on both 127.0.0.1 and
/// ::1, outside the ephemeral range where it can.
fn free_port() -> u16 {
    for _ in 0..200 {
        let port = match next_candidate() {
            Some(p) => p,
            None => {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
                l.local_addr().unwrap().port()
            }
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("::1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("::1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port found");
}

/// A TCP port that was free a moment ago (see `free_port`).
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// A UDP port that was free a moment ago (see `free_port`).
pub fn free_udp_port() -> u16 {
    free_port()
}

fn proc_net_has(files: &[&str], port: u16, listen_state: Option<&str>) -> bool {
    let hex = format!(":{port:04X}");
    files.iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|text| {
                text.lines().skip(1).any(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    cols.len() > 3
                        && cols[1].ends_with(&hex)
                        && listen_state.is_none_or(|st| cols[3] == st)
                })
            })
            .unwrap_or(false)
    })
}

/// Waits (bounded, 10 s) until something listens on TCP `port`, reading
/// /proc/net/tcp{,6} so that no probe connection is spent on a one-client listener.
///
/// A listener on every address opens `[::]` and then `0.0.0.0` (as oxcat
/// does): seeing the first is not seeing the second, and a test that then
/// connects to 127.0.0.1 was refused once in CI. So an IPv4 listener is
/// awaited too, for up to a second after an IPv6 one shows (a server that
/// listens on IPv6 only costs its test that second).
pub fn wait_tcp_listen(port: u16) {
    wait_until(Duration::from_secs(10), || {
        proc_net_has(&["/proc/net/tcp", "/proc/net/tcp6"], port, Some("0A"))
    })
    .unwrap_or_else(|| panic!("nothing listens on TCP port {port} after 10 s"));
    let _ = wait_until(Duration::from_secs(1), || {
        proc_net_has(&["/proc/net/tcp"], port, Some("0A"))
    });
}

/// Waits (bounded, 10 s) until a UDP socket is bound to `port`.
pub fn wait_udp_bound(port: u16) {
    wait_until(Duration::from_secs(10), || {
        proc_net_has(&["/proc/net/udp", "/proc/net/udp6"], port, None)
    })
    .unwrap_or_else(|| panic!("nothing bound to UDP port {port} after 10 s"));
}

/// Waits (bounded, 10 s) until the Unix socket path exists.
pub fn wait_path(path: &std::path::Path) {
    wait_until(Duration::from_secs(10), || path.exists())
        .unwrap_or_else(|| panic!("{} did not appear after 10 s", path.display()));
}

pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Waits for a child for at most `limit`; kills it and panics on timeout.
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child (bounded) and collects its stdout and stderr.
pub fn output_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let status = wait_bounded(&mut child, limit, what);
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs a command to completion with empty stdin, bounded by `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    output_bounded(child, limit, &format!("{cmd:?}"))
}

/// Kills a child when dropped, so a failing test leaves no process behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the tests run as root (for namespace tests).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Root-only tests call this first: returns false (skip, with a visible
/// message) without root, and panics instead when OXCAT_REQUIRE_ROOT_TESTS=1.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("OXCAT_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: needs root, and OXCAT_REQUIRE_ROOT_TESTS=1 forbids skipping");
    }
    eprintln!("SKIPPED {test}: needs root (network namespaces)");
    false
}

/// Runs `script` with bash in a fresh network namespace (`unshare --net`,
/// loopback up), with `$OXCAT`, `$NCAT` and `$D` (a scratch directory)
/// set; fails the test with the output unless the script succeeds within
/// `limit`. Returns stdout and stderr.
pub fn in_namespace(dir: &std::path::Path, script: &str, limit: Duration) -> String {
    in_namespaces(dir, script, limit, &["--net"])
}

/// [`in_namespace`] with a private mount namespace too: mounts the script
/// makes (a small tmpfs, a bind mount over a device node) vanish with it.
pub fn in_namespace_with_mounts(dir: &std::path::Path, script: &str, limit: Duration) -> String {
    in_namespaces(dir, script, limit, &["--net", "--mount"])
}

fn in_namespaces(dir: &std::path::Path, script: &str, limit: Duration, kinds: &[&str]) -> String {
    let full = format!("set -u\nip link set lo up\n{script}\n");
    let out = run_bounded(
        Command::new("unshare")
            .args(kinds)
            .args(["bash", "-c", &full])
            .env("OXCAT", oxcat())
            .env("NCAT", ncat())
            .env("D", dir),
        limit,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the scenario failed:\n{text}");
    text
}

/// `n` bytes of a fixed xorshift sequence (`seed` picks which).
pub fn xorshift_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The file `name` in `dir`, or nothing if it is missing.
pub fn read_in(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_default()
}

/// Runs Mermaid's own parser on `file` when it is installed (required under
/// OXCAT_REQUIRE_TOOLS=1, as in CI); the test fails if the file does not parse.
pub fn mermaid_parses(file: &std::path::Path) {
    let checker =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/mermaid-check");
    if checker.join("node_modules").is_dir() {
        let st = Command::new("node")
            .arg(checker.join("check.mjs"))
            .arg(file)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&st.stderr)
        );
    } else if std::env::var("OXCAT_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("Mermaid's parser is not installed (tools/mermaid-check/install.sh)");
    } else {
        eprintln!("SKIPPED the Mermaid parse: tools/mermaid-check is not installed");
    }
}
