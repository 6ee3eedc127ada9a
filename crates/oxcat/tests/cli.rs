//! CLI conventions, each checked against the real ncat where ncat has the
//! feature: the same scenario runs with ncat first (which validates the
//! scenario) and then with oxcat.
//!
//! Network safety: every socket here is on loopback (127.0.0.1 or ::1), or a
//! wildcard listener only ever reached through loopback.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

fn tools() -> [(&'static str, PathBuf); 2] {
    [("ncat", ncat()), ("oxcat", oxcat())]
}

/// Collects a child's stream in the background so that tests can wait
/// (bounded) for some text to appear while the child still runs.
#[derive(Clone)]
struct Collected(Arc<(Mutex<Vec<u8>>, AtomicBool)>);

impl Collected {
    fn start(mut r: impl Read + Send + 'static) -> Self {
        let shared = Arc::new((Mutex::new(Vec::new()), AtomicBool::new(false)));
        let b = shared.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => b.0.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            b.1.store(true, Ordering::SeqCst);
        });
        Collected(shared)
    }
    /// Whether the stream reached EOF (all writers closed it).
    fn done(&self) -> bool {
        self.0 .1.load(Ordering::SeqCst)
    }
    fn bytes(&self) -> Vec<u8> {
        self.0 .0.lock().unwrap().clone()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
    fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.text().contains(needle)).is_some()
    }
}

/// A running tool with its stdout and stderr collected.
struct Running {
    child: KillOnDrop,
    out: Collected,
    err: Collected,
}

fn spawn(tool: &Path, args: &[&str], stdin: Stdio) -> Running {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {tool:?}: {e}"));
    let out = Collected::start(child.stdout.take().unwrap());
    let err = Collected::start(child.stderr.take().unwrap());
    Running {
        child: KillOnDrop(child),
        out,
        err,
    }
}

impl Running {
    /// Waits (bounded) for the exit code; `None` means it did not exit in time
    /// (it is then killed) or died by a signal.
    fn wait_code(&mut self, limit: Duration) -> Option<i32> {
        let c = &mut self.child.0;
        wait_until(limit, || matches!(c.try_wait(), Ok(Some(_))))?;
        c.wait().ok()?.code()
    }
    fn exited(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(Some(_)))
    }
    /// Stdout and stderr once the child has exited and its pipes are drained
    /// (bounded: a grandchild holding a pipe open does not hang the test).
    fn drained(&self) -> (String, String) {
        let _ = wait_until(LIMIT, || self.out.done() && self.err.done());
        (self.out.text(), self.err.text())
    }
}

/// Whether `/proc/net/tcp` (v4) or `/proc/net/tcp6` (v6) has a LISTEN socket
/// on `port` whose local address is the wildcard.
fn wildcard_listen(v6: bool, port: u16) -> bool {
    let (file, zero) = if v6 {
        ("/proc/net/tcp6", "00000000000000000000000000000000")
    } else {
        ("/proc/net/tcp", "00000000")
    };
    let want = format!("{zero}:{port:04X}");
    std::fs::read_to_string(file)
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.len() > 3 && c[1] == want && c[3] == "0A"
            })
        })
        .unwrap_or(false)
}

fn listens_at_all(port: u16) -> bool {
    let hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|t| {
                t.lines().skip(1).any(|l| {
                    let c: Vec<&str> = l.split_whitespace().collect();
                    c.len() > 3 && c[1].ends_with(&hex) && c[3] == "0A"
                })
            })
            .unwrap_or(false)
    })
}

/// Bounded wait for a listener; false (not a panic) when nothing listens.
fn wait_listen(port: u16) -> bool {
    wait_until(Duration::from_secs(10), || listens_at_all(port)).is_some()
}

/// A loopback listener that accepts one connection, reads it to EOF and
/// sends the bytes on the channel.
fn sink_listener() -> (u16, Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_read_timeout(Some(LIMIT));
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            let _ = tx.send(v);
        }
    });
    (port, rx)
}

/// Runs `tool args... 127.0.0.1 <sink>` with `input` on stdin, and returns
/// (exit code, bytes the sink received).
fn send_to_sink(tool: &Path, args: &[&str], input: &[u8]) -> (Option<i32>, Option<Vec<u8>>) {
    let (port, rx) = sink_listener();
    let port = port.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["127.0.0.1", &port]);
    let mut r = spawn(tool, &all, Stdio::piped());
    {
        let mut stdin = r.child.0.stdin.take().unwrap();
        let _ = stdin.write_all(input);
    }
    let got = rx.recv_timeout(LIMIT).ok();
    (r.wait_code(LIMIT), got)
}

fn finish(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Whether the line holds a version number like `7.93` or `0.1.0`.
fn has_dotted_number(line: &str) -> bool {
    let b = line.as_bytes();
    (1..b.len().saturating_sub(1))
        .any(|i| b[i] == b'.' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
}

#[test]
fn version_and_help() {
    let mut problems = Vec::new();
    for (name, tool) in tools() {
        let o = run_bounded(Command::new(&tool).arg("--version"), LIMIT);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // ncat 7.93: "Ncat: Version 7.93 ( https://nmap.org/ncat )" on stderr.
        let version_line = text.lines().any(has_dotted_number);
        if o.status.code() != Some(0) || !version_line {
            problems.push(format!(
                "{name} --version: exit {:?}, output {text:?}",
                o.status.code()
            ));
        }
        for flag in ["-h", "--help"] {
            let o = run_bounded(Command::new(&tool).arg(flag), LIMIT);
            let out = String::from_utf8_lossy(&o.stdout);
            if o.status.code() != Some(0) || !out.contains("Usage") || !out.contains("-l") {
                problems.push(format!(
                    "{name} {flag}: exit {:?}, stdout {:?}, stderr {:?}",
                    o.status.code(),
                    out,
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
    }
    finish(problems);
}

#[test]
fn listen_without_port_uses_31337_on_both_stacks() {
    let free =
        TcpListener::bind("0.0.0.0:31337").is_ok() && TcpListener::bind("[::]:31337").is_ok();
    if !free || listens_at_all(31337) {
        eprintln!("SKIPPED listen_without_port_uses_31337_on_both_stacks: port 31337 is in use");
        return;
    }
    let mut problems = Vec::new();
    for (name, tool) in tools() {
        let mut r = spawn(&tool, &["-l"], Stdio::null());
        let both = wait_until(Duration::from_secs(10), || {
            wildcard_listen(false, 31337) && wildcard_listen(true, 31337)
        });
        if both.is_none() {
            problems.push(format!(
                "{name} -l: not listening on both 0.0.0.0:31337 ({}) and [::]:31337 ({}); exited: {}, stderr {:?}",
                wildcard_listen(false, 31337),
                wildcard_listen(true, 31337),
                r.exited(),
                r.err.text()
            ));
        }
        drop(r);
        if wait_until(Duration::from_secs(10), || !listens_at_all(31337)).is_none() {
            panic!("port 31337 still listened on after killing {name}");
        }
    }
    finish(problems);
}

#[test]
fn listen_with_port_only_accepts_on_127_0_0_1_and_ipv6_loopback() {
    let mut problems = Vec::new();
    for (name, tool) in tools() {
        let port = free_tcp_port();
        let p = port.to_string();
        let r = spawn(&tool, &["-l", "-k", &p], Stdio::null());
        let both = wait_until(Duration::from_secs(10), || {
            wildcard_listen(false, port) && wildcard_listen(true, port)
        });
        if both.is_none() {
            problems.push(format!(
                "{name} -l -k {port}: wildcard listeners v4 {} v6 {}; stderr {:?}",
                wildcard_listen(false, port),
                wildcard_listen(true, port),
                r.err.text()
            ));
            continue;
        }
        for (addr, msg) in [("127.0.0.1", "via-v4\n"), ("::1", "via-v6\n")] {
            match TcpStream::connect((addr, port)) {
                Ok(mut s) => {
                    let _ = s.write_all(msg.as_bytes());
                    if !r.out.wait_for(msg, LIMIT) {
                        problems.push(format!(
                            "{name}: bytes sent to {addr} never reached stdout {:?}",
                            r.out.text()
                        ));
                    }
                }
                Err(e) => problems.push(format!("{name}: connect to {addr}:{port}: {e}")),
            }
        }
    }
    finish(problems);
}

#[test]
fn zero_io_open_and_closed_ports() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port().to_string();
    let closed_port = free_tcp_port().to_string();
    let mut problems = Vec::new();
    for (port, want, what) in [(&open_port, 0, "open"), (&closed_port, 1, "closed")] {
        let mut codes = Vec::new();
        for (name, tool) in tools() {
            let o = run_bounded(Command::new(&tool).args(["-z", "127.0.0.1", port]), LIMIT);
            codes.push((
                name,
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ));
        }
        // ncat 7.93: exit 0 on an open port, exit 1 on a closed one (no message).
        assert_eq!(
            codes[0].1,
            Some(want),
            "ncat -z on a {what} port: {:?}",
            codes[0]
        );
        if codes[1].1 != codes[0].1 {
            problems.push(format!(
                "-z on a {what} port: oxcat {:?}, ncat {:?}",
                codes[1], codes[0]
            ));
        }
    }
    drop(open);
    finish(problems);
}

#[test]
fn idle_timeout_in_connect_mode() {
    // A listener that completes the handshake (kernel backlog) but never talks.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let mut results = Vec::new();
    for (name, tool) in tools() {
        let mut r = spawn(&tool, &["-i", "1", "127.0.0.1", &port], Stdio::null());
        let code = r.wait_code(LIMIT);
        let (_, err) = r.drained();
        results.push((name, code, err));
    }
    drop(silent);
    // ncat 7.93: exit 1, "Ncat: Idle timeout expired (1000 ms)."
    let (_, nc_code, nc_err) = &results[0];
    assert_eq!(*nc_code, Some(1), "ncat -i 1: {nc_err:?}");
    assert!(
        nc_err.contains("Idle timeout expired"),
        "ncat -i 1: {nc_err:?}"
    );
    let (_, ox_code, ox_err) = &results[1];
    let lines: Vec<&str> = ox_err.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut problems = Vec::new();
    if ox_code != nc_code {
        problems.push(format!(
            "oxcat -i 1 exit {ox_code:?}, ncat {nc_code:?}; oxcat stderr {ox_err:?}"
        ));
    }
    if lines.len() != 1 || !lines[0].contains("Idle timeout expired") {
        problems.push(format!(
            "oxcat -i 1 stderr should be one 'Idle timeout expired' line: {ox_err:?}"
        ));
    }
    finish(problems);
}

#[test]
fn connect_timeout_does_not_limit_an_established_connection() {
    let mut problems = Vec::new();
    for (name, tool) in tools() {
        // The peer stays silent for longer than -w before it talks: -w only
        // bounds connect(), so the tool must still get the bytes.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                std::thread::sleep(Duration::from_millis(1500));
                let _ = s.write_all(b"hello\n");
            }
        });
        let mut r = spawn(&tool, &["-w", "1", "127.0.0.1", &port], Stdio::null());
        let code = r.wait_code(LIMIT);
        let (out, err) = r.drained();
        if code != Some(0) || out != "hello\n" {
            problems.push(format!(
                "{name} -w 1: exit {code:?}, stdout {out:?}, stderr {err:?} (want 0, \"hello\\n\")"
            ));
        }
    }
    finish(problems);
}

#[test]
fn crlf_conversion_matches_ncat() {
    let input = b"a\nb\r\nc\n";
    let (nc_code, nc_bytes) = send_to_sink(&ncat(), &["-C"], input);
    // ncat 7.93 turns bare LF into CRLF and leaves an existing CRLF alone.
    assert_eq!(
        nc_bytes.as_deref(),
        Some(&b"a\r\nb\r\nc\r\n"[..]),
        "ncat -C"
    );
    assert_eq!(nc_code, Some(0));
    let (ox_code, ox_bytes) = send_to_sink(&oxcat(), &["-C"], input);
    let mut problems = Vec::new();
    if ox_bytes != nc_bytes || ox_code != nc_code {
        problems.push(format!(
            "oxcat -C sent {:?} (exit {ox_code:?}); ncat sent {:?} (exit {nc_code:?})",
            ox_bytes.as_deref().map(String::from_utf8_lossy),
            nc_bytes.as_deref().map(String::from_utf8_lossy)
        ));
    }
    // And without -C, bytes go through untouched.
    let (ox_code, ox_bytes) = send_to_sink(&oxcat(), &[], input);
    if ox_bytes.as_deref() != Some(&input[..]) || ox_code != Some(0) {
        problems.push(format!(
            "oxcat without -C sent {ox_bytes:?} (exit {ox_code:?}), want the input unchanged"
        ));
    }
    finish(problems);
}

#[test]
fn send_delay_still_delivers() {
    let input = b"one\ntwo\nthree\n";
    let mut problems = Vec::new();
    for (name, tool) in tools() {
        let (code, got) = send_to_sink(&tool, &["-d", "200ms"], input);
        if code != Some(0) || got.as_deref() != Some(&input[..]) {
            problems.push(format!("{name} -d 200ms: exit {code:?}, sink got {got:?}"));
        }
    }
    finish(problems);
}

/// What a single-client listener did with one client.
#[derive(Debug, PartialEq)]
enum Access {
    /// The client's bytes came out on stdout and the listener exited with this code.
    Allowed(Option<i32>),
    /// The client saw its connection closed, and nothing came out.
    Denied,
}

/// Starts `tool -l <args> 127.0.0.1 PORT`, connects one client that sends
/// "hello\n", and reports what happened. `expect_allowed` only decides how to
/// wait: for an allowed client we wait for the bytes; for a denied one we
/// give the bytes a moment to (wrongly) appear before concluding "denied".
fn access(tool: &Path, args: &[&str], expect_allowed: bool) -> Result<Access, String> {
    let port = free_tcp_port();
    let p = port.to_string();
    let mut all = vec!["-l"];
    all.extend_from_slice(args);
    all.extend(["127.0.0.1", &p]);
    let mut r = spawn(tool, &all, Stdio::null());
    if !wait_listen(port) {
        let ss = Command::new("ss")
            .args(["-tanp"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ss: Vec<&str> = ss
            .lines()
            .filter(|l| l.contains(&format!(":{port}")))
            .collect();
        return Err(format!(
            "never listened on {port}; exited {} stderr {:?} ss {ss:?}",
            r.exited(),
            r.err.text()
        ));
    }
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = c.write_all(b"hello\n");
    let _ = c.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    match c.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => return Err(format!("client never saw the connection closed: {e}")),
    }
    let settle = if expect_allowed {
        LIMIT
    } else {
        Duration::from_secs(2)
    };
    let _ = wait_until(settle, || !r.out.bytes().is_empty() && r.exited());
    let out = r.out.bytes();
    if out.is_empty() && !r.exited() {
        return Ok(Access::Denied);
    }
    if out == b"hello\n" {
        return Ok(Access::Allowed(r.wait_code(LIMIT)));
    }
    Err(format!(
        "stdout {:?}, exited {}, stderr {:?}",
        String::from_utf8_lossy(&out),
        r.exited(),
        r.err.text()
    ))
}

#[test]
fn allow_and_deny_match_ncat() {
    let dir = tempfile::tempdir().unwrap();
    let allow_lo = dir.path().join("allow-lo");
    // ncat 7.93 takes one spec per line, blank lines allowed (no comments).
    std::fs::write(&allow_lo, "10.0.0.0/8\n\n127.0.0.1\n").unwrap();
    let allow_private = dir.path().join("allow-private");
    std::fs::write(&allow_private, "10.0.0.0/8\n192.168.0.0/16\n").unwrap();
    let allow_lo = allow_lo.to_str().unwrap().to_string();
    let allow_private = allow_private.to_str().unwrap().to_string();

    let cases: Vec<(Vec<String>, bool)> = vec![
        (vec!["--allow".into(), "127.0.0.1".into()], true),
        (vec!["--deny".into(), "127.0.0.1".into()], false),
        (vec!["--allow".into(), "10.0.0.0/8".into()], false),
        (vec!["--deny".into(), "10.0.0.0/8".into()], true),
        (vec!["--allow".into(), "127.0.0.1-5".into()], true),
        (vec!["--allow".into(), "127.0.0.2-5".into()], false),
        (vec!["--allow".into(), "127.0.0.0/24".into()], true),
        (vec!["--allowfile".into(), allow_lo.clone()], true),
        (vec!["--allowfile".into(), allow_private], false),
        (vec!["--denyfile".into(), allow_lo], false),
    ];
    // Each case takes a couple of seconds when denied; run them in parallel.
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(args, allowed)| {
            std::thread::spawn(move || {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                let nc = access(&ncat(), &a, allowed);
                let ox = access(&oxcat(), &a, allowed);
                (args, allowed, nc, ox)
            })
        })
        .collect();
    let mut problems = Vec::new();
    for h in handles {
        let (args, allowed, nc, ox) = h.join().unwrap();
        let want = if allowed {
            Access::Allowed(Some(0))
        } else {
            Access::Denied
        };
        // ncat 7.93: an allowed client's bytes come out and ncat exits 0; a
        // denied client is closed (EOF or RST) and ncat keeps listening.
        assert_eq!(
            nc.as_ref().ok(),
            Some(&want),
            "ncat {args:?}: {nc:?} (scenario broken)"
        );
        if ox.as_ref().ok() != nc.as_ref().ok() {
            problems.push(format!("{args:?}: oxcat {ox:?}, ncat {nc:?}"));
        }
    }
    finish(problems);
}

/// `-k -m 1`: while one client is connected, a second is closed at once and
/// its bytes never come out; the first client carries on.
fn max_one(tool: &Path) -> Result<(), String> {
    let port = free_tcp_port();
    let p = port.to_string();
    let r = spawn(
        tool,
        &["-l", "-k", "-m", "1", "127.0.0.1", &p],
        Stdio::null(),
    );
    if !wait_listen(port) {
        return Err(format!("never listened; stderr {:?}", r.err.text()));
    }
    let mut c1 = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect 1: {e}"))?;
    c1.write_all(b"one\n")
        .map_err(|e| format!("write 1: {e}"))?;
    if !r.out.wait_for("one\n", LIMIT) {
        return Err(format!(
            "first client's bytes never came out: {:?}",
            r.out.text()
        ));
    }
    let mut c2 = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect 2: {e}"))?;
    c2.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = c2.write_all(b"two\n");
    let mut sink = Vec::new();
    match c2.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => return Err(format!("second client was not closed: {e}")),
    }
    c1.write_all(b"one-again\n")
        .map_err(|e| format!("write 1 again: {e}"))?;
    if !r.out.wait_for("one-again\n", LIMIT) {
        return Err(format!("first client stopped working: {:?}", r.out.text()));
    }
    let out = r.out.text();
    if out != "one\none-again\n" {
        return Err(format!(
            "stdout {out:?}: the second client's bytes got through"
        ));
    }
    Ok(())
}

#[test]
fn max_conns_one_refuses_a_second_client() {
    // ncat 7.93: the second client is reset ("New connection denied:
    // connection limit reached (1)" with -v); the first keeps working.
    max_one(&ncat()).expect("ncat scenario");
    if let Err(e) = max_one(&oxcat()) {
        panic!("oxcat -k -m 1: {e}");
    }
}

/// The text of a message line after its `Ncat: ` / `oxcat: ` prefix.
fn messages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(|l| {
            l.strip_prefix("Ncat: ")
                .or_else(|| l.strip_prefix("oxcat: "))
                .or_else(|| l.strip_prefix("ncat: "))
                .unwrap_or(l)
                .to_string()
        })
        .collect()
}

fn position(msgs: &[String], text: &str) -> Option<usize> {
    msgs.iter().position(|m| m.starts_with(text))
}

#[test]
fn verbose_messages() {
    let mut problems = Vec::new();
    for (name, tool) in tools() {
        // Listen mode.
        let port = free_tcp_port();
        let p = port.to_string();
        let mut r = spawn(&tool, &["-v", "-l", "127.0.0.1", &p], Stdio::null());
        if !r.err.wait_for("Listening on", LIMIT) {
            problems.push(format!(
                "{name} -v -l: no 'Listening on': {:?}",
                r.err.text()
            ));
            continue;
        }
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut c) => {
                let _ = c.write_all(b"x");
                let _ = c.shutdown(Shutdown::Write);
                let _ = r.err.wait_for("Connection from", LIMIT);
            }
            Err(e) => problems.push(format!("{name}: connect: {e}")),
        }
        let msgs = messages(&r.err.text());
        match (
            position(&msgs, "Listening on"),
            position(&msgs, "Connection from"),
        ) {
            (Some(a), Some(b)) if a < b => {}
            _ => problems.push(format!(
                "{name} -v -l: want 'Listening on' then 'Connection from': {msgs:?}"
            )),
        }
        let _ = r.wait_code(LIMIT);

        // Connect mode.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                drop(s);
            }
        });
        let mut r = spawn(&tool, &["-v", "127.0.0.1", &port], Stdio::null());
        let _ = r.wait_code(LIMIT);
        let (_, err) = r.drained();
        if position(&messages(&err), "Connected to").is_none() {
            problems.push(format!("{name} -v (connect): no 'Connected to': {err:?}"));
        }
    }
    finish(problems);
}

/// `[   0.000123] ` at the start of a line: a bracketed, right-aligned number
/// of seconds with exactly 6 decimals. Returns the rest of the line.
fn strip_timestamp(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let stamp = rest[..close].trim_start();
    let (secs, frac) = stamp.split_once('.')?;
    let ok = !secs.is_empty()
        && secs.chars().all(|c| c.is_ascii_digit())
        && frac.len() == 6
        && frac.chars().all(|c| c.is_ascii_digit());
    ok.then(|| rest[close + 1..].trim_start())
}

#[test]
fn trace_shows_socket_calls_of_a_one_client_listener() {
    // oxcat only: ncat has no --trace.
    let port = free_tcp_port();
    let p = port.to_string();
    let mut r = spawn(&oxcat(), &["--trace", "-l", "127.0.0.1", &p], Stdio::null());
    assert!(
        wait_listen(port),
        "oxcat --trace -l never listened; stderr {:?}",
        r.err.text()
    );
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.write_all(b"x").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let code = r.wait_code(LIMIT);
    let (out, err) = r.drained();
    assert_eq!(code, Some(0), "exit code; stderr {err:?}");
    assert_eq!(out, "x");

    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let bad: Vec<&&str> = lines
        .iter()
        .filter(|l| strip_timestamp(l).is_none())
        .collect();
    assert!(
        bad.is_empty(),
        "trace lines without a `[ s.uuuuuu]` timestamp: {bad:?}\nfull stderr:\n{err}"
    );
    let calls: Vec<&str> = lines.iter().filter_map(|l| strip_timestamp(l)).collect();
    let is_call = |line: &str, name: &str| {
        let aliases: &[&str] = match name {
            "accept" => &["accept(", "accept4("],
            "poll" => &["poll(", "ppoll("],
            _ => &[],
        };
        line.starts_with(&format!("{name}(")) || aliases.iter().any(|a| line.starts_with(a))
    };
    let mut from = 0;
    for name in ["socket", "bind", "listen", "poll", "accept", "close"] {
        match calls[from..].iter().position(|l| is_call(l, name)) {
            Some(i) => from += i + 1,
            None => panic!("no `{name}(` after line {from} of the trace (want socket, bind, listen, poll, accept, close in order):\n{err}"),
        }
    }
}

/// A stderr that cannot be written (a full disk, a reader gone) loses the
/// messages but changes nothing else: the exit codes stay (2 for bad
/// usage, 0 for --version), no panic (it aborted with 134 before).
#[test]
fn an_unwritable_stderr_changes_no_exit_code() {
    fn status_with(args: &[&str], stderr: Stdio) -> Option<i32> {
        let mut child = Command::new(oxcat())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        for _ in 0..1000 {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        panic!("{args:?}: still running after 10 s");
    }
    for (args, code) in [
        (&["--bogus"][..], 2),
        (&["--version"], 0),
        (&["-l", "99999"], 2),
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        assert_eq!(
            status_with(args, Stdio::from(full)),
            Some(code),
            "{args:?} to /dev/full"
        );
        // A pipe whose reader is gone before oxcat starts.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        assert_eq!(
            status_with(args, Stdio::from(writer)),
            Some(code),
            "{args:?} to a closed pipe"
        );
    }
}
