//! Interoperability tests: oxcat against the real ncat (7.93 on the test
//! machines), in both roles, over loopback and Unix sockets only.
//!
//! Every scenario is written as a function taking the server and the client
//! binary, so it can be run ncat↔ncat to validate the harness: set
//! `OXCAT_INTEROP_SUBJECT=ncat` and every "oxcat" in this file becomes
//! /usr/bin/ncat. Scenarios that depend on behaviour ncat 7.93 does not have
//! (but 7.96 does) say so in their doc comment.
//!
//! Sequencing never relies on sleeps: a step waits (bounded) for an observable
//! effect of the previous one: bytes in an output file, a socket state in
//! /proc/net/tcp{,6}, a bound port, a socket path.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Bound for one small exchange step.
const STEP: Duration = Duration::from_secs(30);
/// Bound for a bulk transfer.
const BULK: Duration = Duration::from_secs(120);
/// Size of the bulk transfers.
const BULK_LEN: usize = 64 << 20;

/// The binary under test: oxcat, or ncat when OXCAT_INTEROP_SUBJECT=ncat
/// (harness validation).
fn subject() -> PathBuf {
    match std::env::var("OXCAT_INTEROP_SUBJECT").as_deref() {
        Ok("ncat") => ncat(),
        _ => oxcat(),
    }
}

// ---------------------------------------------------------------------------
// Process helpers
// ---------------------------------------------------------------------------

enum In {
    File(PathBuf),
    Null,
    Pipe,
}

/// A spawned tool: stdout and stderr go to files in the test's temp dir.
struct Proc {
    name: String,
    child: KillOnDrop,
    stdin: Option<ChildStdin>,
    out: PathBuf,
    err: PathBuf,
}

fn spawn_in(
    dir: &Path,
    name: &str,
    bin: &Path,
    args: &[&str],
    input: In,
    cwd: Option<&Path>,
) -> Proc {
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap());
    if let Some(c) = cwd {
        cmd.current_dir(c);
    }
    match input {
        In::File(p) => {
            cmd.stdin(File::open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display())));
        }
        In::Null => {
            cmd.stdin(Stdio::null());
        }
        In::Pipe => {
            cmd.stdin(Stdio::piped());
        }
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", bin.display()));
    let stdin = child.stdin.take();
    Proc {
        name: format!("{name} ({} {})", bin.display(), args.join(" ")),
        child: KillOnDrop(child),
        stdin,
        out,
        err,
    }
}

fn spawn(dir: &Path, name: &str, bin: &Path, args: &[&str], input: In) -> Proc {
    spawn_in(dir, name, bin, args, input, None)
}

impl Proc {
    fn write(&mut self, data: &[u8]) {
        self.stdin
            .as_mut()
            .expect("stdin is not a pipe")
            .write_all(data)
            .expect("write to child stdin");
    }
    fn close_stdin(&mut self) {
        self.stdin.take();
    }
    fn out(&self) -> Vec<u8> {
        std::fs::read(&self.out).unwrap_or_default()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.err).unwrap_or_default()).into_owned()
    }
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.0.try_wait().expect("try_wait")
    }
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let name = self.name.clone();
        let err = self.err();
        let st = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_bounded(&mut self.child.0, limit, &name)
        }));
        match st {
            Ok(st) => st,
            Err(_) => panic!("{name} did not exit within {limit:?}; stderr so far: {err:?}"),
        }
    }
    fn wait_ok(&mut self, limit: Duration) {
        let st = self.wait(limit);
        assert!(
            st.success(),
            "{} exited with {st}; stderr: {:?}",
            self.name,
            self.err()
        );
    }
    /// Waits (bounded) until stdout holds at least `n` bytes.
    fn wait_out_len(&mut self, n: usize, limit: Duration) {
        let ok = wait_until(limit, || {
            std::fs::metadata(&self.out)
                .map(|m| m.len() as usize >= n)
                .unwrap_or(false)
        });
        if ok.is_none() {
            let len = std::fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0);
            let exited = self.exited();
            panic!(
                "{}: stdout has {len} bytes, expected {n} within {limit:?}; exited: {exited:?}; stderr: {:?}",
                self.name,
                self.err()
            );
        }
    }
    /// Waits (bounded) until stdout is exactly `want` (fails early on a mismatch of the prefix).
    fn wait_out_eq(&mut self, want: &[u8]) {
        self.wait_out_len(want.len(), STEP);
        let got = self.out();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{}: unexpected stdout",
            self.name
        );
    }
    fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxcat-interop")
        .tempdir()
        .unwrap()
}

/// Writes `len` seeded random bytes to `path`, returns their SHA-256.
fn write_random(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        h.update(&buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
    h.finalize().to_vec()
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn sha_file(path: &Path) -> Vec<u8> {
    let mut f = File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().to_vec()
}

fn write_file(path: &Path, data: &[u8]) -> PathBuf {
    std::fs::write(path, data).unwrap();
    path.to_path_buf()
}

// ---------------------------------------------------------------------------
// /proc/net/tcp helpers
// ---------------------------------------------------------------------------

/// (local port, remote port, state, tx_queue, rx_queue) of every TCP socket.
fn tcp_sockets() -> Vec<(u16, u16, u8, u64, u64)> {
    let mut v = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split_whitespace().collect();
            if c.len() < 5 {
                continue;
            }
            let port =
                |s: &str| u16::from_str_radix(s.rsplit(':').next().unwrap(), 16).unwrap_or(0);
            let (tx, rx) = c[4].split_once(':').unwrap_or(("0", "0"));
            v.push((
                port(c[1]),
                port(c[2]),
                u8::from_str_radix(c[3], 16).unwrap_or(0),
                u64::from_str_radix(tx, 16).unwrap_or(0),
                u64::from_str_radix(rx, 16).unwrap_or(0),
            ));
        }
    }
    v
}

const TCP_FIN_WAIT2: u8 = 0x05;
const TCP_CLOSE_WAIT: u8 = 0x08;

/// Waits until the server side of a connection to `port` (local port == port,
/// not the listener) is in `state`.
fn wait_server_conn_state(port: u16, state: u8, what: &str) {
    wait_until(STEP, || {
        tcp_sockets()
            .iter()
            .any(|s| s.0 == port && s.1 != 0 && s.2 == state)
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: server side of port {port} never reached TCP state {state:#x}; sockets: {:?}",
            tcp_sockets()
                .into_iter()
                .filter(|s| s.0 == port || s.1 == port)
                .collect::<Vec<_>>()
        )
    });
}

/// Waits until the client side of a connection to `port` is in `state`.
fn wait_client_conn_state(port: u16, state: u8, what: &str) {
    wait_until(STEP, || {
        tcp_sockets().iter().any(|s| s.1 == port && s.2 == state)
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: client side of port {port} never reached TCP state {state:#x}; sockets: {:?}",
            tcp_sockets()
                .into_iter()
                .filter(|s| s.0 == port || s.1 == port)
                .collect::<Vec<_>>()
        )
    });
}

/// Number of server-side established connections on `port`.
fn established_on(port: u16) -> usize {
    tcp_sockets()
        .iter()
        .filter(|s| s.0 == port && s.1 != 0 && s.2 == 0x01)
        .count()
}

// ---------------------------------------------------------------------------
// Hex dump format (ncat -x), used to state expected datagram boundaries
// ---------------------------------------------------------------------------

/// ncat's -x rendering of a sequence of chunks (one block per read, offset
/// restarting at 0 per chunk, no direction markers).
fn hexdump(chunks: &[&[u8]]) -> String {
    let mut s = String::new();
    for chunk in chunks {
        for (i, line) in chunk.chunks(16).enumerate() {
            s += &format!("{:04x}   ", i * 16);
            let mut hex = String::new();
            for (j, b) in line.iter().enumerate() {
                hex += &format!("{b:02x} ");
                if j == 7 {
                    hex.push(' ');
                }
            }
            s += &format!("{hex:<49} ");
            let ascii: String = line
                .iter()
                .map(|&b| {
                    if (0x21..=0x7e).contains(&b) {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            s += &format!("{ascii:<16}\n");
        }
    }
    s
}

#[test]
fn hexdump_helper_matches_ncat_format_note() {
    // Lines from the reference (ncat 7.93 -x): 73 chars + LF, trailing spaces kept.
    let d = hexdump(&[b"server says hi\n", b"second\r\n"]);
    assert_eq!(
        d,
        "0000   73 65 72 76 65 72 20 73  61 79 73 20 68 69 0a     server.says.hi. \n\
         0000   73 65 63 6f 6e 64 0d 0a                           second..        \n"
    );
}

// ---------------------------------------------------------------------------
// 1. TCP bulk transfer, both directions at once, v4 and v6
// ---------------------------------------------------------------------------

/// Feeds `path` into the process's stdin from a thread; the returned handle
/// gives the (still open) stdin back once everything was written.
fn feed_file(p: &mut Proc, path: PathBuf) -> std::thread::JoinHandle<ChildStdin> {
    let mut stdin = p.stdin.take().expect("stdin is not a pipe");
    std::thread::spawn(move || {
        let mut f = File::open(path).unwrap();
        let _ = std::io::copy(&mut f, &mut stdin);
        stdin
    })
}

/// 64 MiB each way at the same time. Both stdins are fed from files by helper
/// threads and stay open until both sides received everything, then the
/// client's stdin closes, then the server's. Neither side sees an EOF while
/// data is still due: ncat 7.93's listener quits on the client's EOF even with
/// stdin left to send, and ncat >= 7.95 (and oxcat) in connect mode quit on
/// the server's EOF even with stdin left to send.
fn tcp_bulk(server: &Path, client: &Path, addr: &str) {
    let dir = tmpdir();
    let d = dir.path();
    let s_in = d.join("server.in");
    let c_in = d.join("client.in");
    let s_sha = write_random(&s_in, BULK_LEN, 1);
    let c_sha = write_random(&c_in, BULK_LEN, 2);
    let port = free_tcp_port().to_string();

    let mut srv = spawn(d, "server", server, &["-l", addr, &port], In::Pipe);
    wait_tcp_listen(port.parse().unwrap());
    let mut cli = spawn(d, "client", client, &[addr, &port], In::Pipe);
    let s_feed = feed_file(&mut srv, s_in);
    let c_feed = feed_file(&mut cli, c_in);
    cli.wait_out_len(BULK_LEN, BULK);
    srv.wait_out_len(BULK_LEN, BULK);
    drop(c_feed.join().unwrap()); // client stdin EOF
    drop(s_feed.join().unwrap()); // server stdin EOF
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    assert_eq!(sha_file(&srv.out), c_sha, "client→server data differs");
    assert_eq!(sha_file(&cli.out), s_sha, "server→client data differs");
}

#[test]
fn tcp4_bulk_oxcat_client_ncat_server() {
    tcp_bulk(&ncat(), &subject(), "127.0.0.1");
}
#[test]
fn tcp4_bulk_ncat_client_oxcat_server() {
    tcp_bulk(&subject(), &ncat(), "127.0.0.1");
}
#[test]
fn tcp6_bulk_oxcat_client_ncat_server() {
    tcp_bulk(&ncat(), &subject(), "::1");
}
#[test]
fn tcp6_bulk_ncat_client_oxcat_server() {
    tcp_bulk(&subject(), &ncat(), "::1");
}

// ---------------------------------------------------------------------------
// 2. Half-close
// ---------------------------------------------------------------------------

const HALF_LEN: usize = 1 << 20;

/// The client's stdin (a file) ends first; the server replies only after the
/// client's FIN has arrived (server socket in CLOSE_WAIT); the client must
/// still receive all of it. NOTE: ncat 7.93 as the *server* fails this (it
/// quits on the client's EOF); 7.96 does not. So the ncat-server side of
/// this scenario is covered with socat below.
#[test]
fn half_close_client_eof_first_ncat_client_oxcat_server() {
    let dir = tmpdir();
    let d = dir.path();
    let c_data = random_bytes(HALF_LEN, 3);
    let s_data = random_bytes(HALF_LEN, 4);
    let c_in = write_file(&d.join("c.in"), &c_data);
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(d, "server", &subject(), &["-l", "127.0.0.1", &ps], In::Pipe);
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", &ncat(), &["127.0.0.1", &ps], In::File(c_in));
    srv.wait_out_len(HALF_LEN, STEP);
    wait_server_conn_state(port, TCP_CLOSE_WAIT, "client FIN");
    srv.write(&s_data);
    srv.close_stdin();
    cli.wait_out_len(HALF_LEN, STEP);
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    assert!(srv.out() == c_data, "client→server bytes differ");
    assert!(cli.out() == s_data, "server→client bytes differ");
}

/// Same as above with oxcat as the client; the server is socat running
/// `cat >file; cat reply` (ncat 7.93 cannot serve this: it exits on EOF).
#[test]
fn half_close_client_eof_first_oxcat_client_socat_server() {
    let dir = tmpdir();
    let d = dir.path();
    let c_data = random_bytes(HALF_LEN, 5);
    let s_data = random_bytes(HALF_LEN, 6);
    let c_in = write_file(&d.join("c.in"), &c_data);
    let s_in = write_file(&d.join("s.in"), &s_data);
    let got = d.join("server.got");
    let port = free_tcp_port();
    let listen = format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr");
    let sys = format!("SYSTEM:cat >'{}'; cat '{}'", got.display(), s_in.display());
    let mut srv = spawn(
        d,
        "server",
        &peer("socat"),
        &["-t", "30", &listen, &sys],
        In::Null,
    );
    wait_tcp_listen(port);
    let mut cli = spawn(
        d,
        "client",
        &subject(),
        &["127.0.0.1", &port.to_string()],
        In::File(c_in),
    );
    cli.wait_out_len(HALF_LEN, STEP);
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert!(
        std::fs::read(&got).unwrap() == c_data,
        "client→server bytes differ"
    );
    assert!(cli.out() == s_data, "server→client bytes differ");
}

/// The server's stdin (a file) ends first; the client sends only after the
/// server's FIN has arrived (client socket in CLOSE_WAIT); the server must
/// still receive it all.
fn half_close_server_eof_first(server: &Path, client: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let c_data = random_bytes(HALF_LEN, 7);
    let s_data = random_bytes(HALF_LEN, 8);
    let s_in = write_file(&d.join("s.in"), &s_data);
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        server,
        &["-l", "127.0.0.1", &ps],
        In::File(s_in),
    );
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", client, &["127.0.0.1", &ps], In::Pipe);
    cli.wait_out_len(HALF_LEN, STEP);
    wait_client_conn_state(port, TCP_CLOSE_WAIT, "server FIN");
    let mut stdin = cli.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&c_data);
        c_data
    });
    srv.wait_out_len(HALF_LEN, STEP);
    let c_data = feeder.join().unwrap(); // drops client stdin
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    assert!(srv.out() == c_data, "client→server bytes differ");
    assert!(cli.out() == s_data, "server→client bytes differ");
}

#[test]
fn half_close_server_eof_first_ncat_client_oxcat_server() {
    half_close_server_eof_first(&subject(), &ncat());
}

/// The client keeps sending its (piped) stdin after the server's EOF: the
/// server only half-closed. oxcat quits on the peer's EOF only when stdin
/// is a terminal, so a pipe's bytes are never cut off.
#[test]
fn half_close_server_eof_first_oxcat_client_ncat_server() {
    half_close_server_eof_first(&ncat(), &subject());
}

// ---------------------------------------------------------------------------
// 3. UDP, and 7. Unix datagram: boundaries checked through -x on both sides
// ---------------------------------------------------------------------------

/// Datagram exchange: client sends "one\n", then "two\nthree\n" (one write,
/// so one datagram), the server replies "reply-1\n" then "r2\n\x00\xff" to the
/// first sender. Each step waits for the previous to arrive, so both sides'
/// -x dumps show exactly these four chunks in this order.
fn dgram_exchange(
    server: &Path,
    client: &Path,
    srv_args: &[&str],
    cli_args: &[&str],
    ready: impl FnOnce(),
) {
    let dir = tmpdir();
    let d = dir.path();
    let s_hex = d.join("server.hex");
    let c_hex = d.join("client.hex");
    let mut sa: Vec<&str> = srv_args.to_vec();
    let sh = s_hex.to_str().unwrap().to_string();
    sa.extend(["-x", &sh]);
    let mut srv = spawn(d, "server", server, &sa, In::Pipe);
    ready();
    let mut ca: Vec<&str> = cli_args.to_vec();
    let ch = c_hex.to_str().unwrap().to_string();
    ca.extend(["-x", &ch]);
    let mut cli = spawn(d, "client", client, &ca, In::Pipe);
    let msgs: [&[u8]; 4] = [b"one\n", b"two\nthree\n", b"reply-1\n", b"r2\n\x00\xff"];
    cli.write(msgs[0]);
    srv.wait_out_eq(b"one\n");
    cli.write(msgs[1]);
    srv.wait_out_eq(b"one\ntwo\nthree\n");
    srv.write(msgs[2]);
    cli.wait_out_eq(b"reply-1\n");
    srv.write(msgs[3]);
    cli.wait_out_eq(b"reply-1\nr2\n\x00\xff");
    let want = hexdump(&msgs);
    // Log files are written as data moves; give them the same bounded wait.
    for (p, who) in [(&s_hex, "server"), (&c_hex, "client")] {
        wait_until(STEP, || {
            std::fs::read(p)
                .map(|v| v.len() >= want.len())
                .unwrap_or(false)
        });
        let got = String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        assert_eq!(got, want, "{who} -x dump: datagram boundaries differ");
    }
    // A UDP client quits on stdin EOF (ncat: "exit after EOF on stdin" for non-TCP).
    cli.close_stdin();
    cli.wait_ok(STEP);
    srv.kill(); // ncat 7.93's UDP listener does not exit on stdin EOF; not asserted.
}

fn udp(server: &Path, client: &Path, addr: &str) {
    let port = free_udp_port();
    let ps = port.to_string();
    dgram_exchange(
        server,
        client,
        &["-u", "-l", addr, &ps],
        &["-u", addr, &ps],
        || wait_udp_bound(port),
    );
}

#[test]
fn udp4_oxcat_client_ncat_server() {
    udp(&ncat(), &subject(), "127.0.0.1");
}
#[test]
fn udp4_ncat_client_oxcat_server() {
    udp(&subject(), &ncat(), "127.0.0.1");
}
#[test]
fn udp6_oxcat_client_ncat_server() {
    udp(&ncat(), &subject(), "::1");
}
#[test]
fn udp6_ncat_client_oxcat_server() {
    udp(&subject(), &ncat(), "::1");
}

fn unix_dgram(server: &Path, client: &Path) {
    let dir = tmpdir();
    let sock = dir.path().join("d.sock");
    let s = sock.to_str().unwrap();
    dgram_exchange(
        server,
        client,
        &["-u", "-l", "-U", s],
        &["-u", "-U", s],
        || wait_path(&sock),
    );
}

#[test]
fn unix_dgram_oxcat_client_ncat_server() {
    unix_dgram(&ncat(), &subject());
}
#[test]
fn unix_dgram_ncat_client_oxcat_server() {
    unix_dgram(&subject(), &ncat());
}

// ---------------------------------------------------------------------------
// 7. Unix stream sockets
// ---------------------------------------------------------------------------

fn unix_stream(server: &Path, client: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let sock = d.join("s.sock");
    let s = sock.to_str().unwrap();
    let len = 4 << 20;
    let c_data = random_bytes(len, 9);
    let s_in = d.join("s.in");
    let s_sha = write_random(&s_in, len, 10);
    let c_in = write_file(&d.join("c.in"), &c_data);
    // Same sequencing as tcp_bulk: no EOF before both directions are done.
    let mut srv = spawn(d, "server", server, &["-l", "-U", s], In::Pipe);
    wait_path(&sock);
    let mut cli = spawn(d, "client", client, &["-U", s], In::Pipe);
    let s_feed = feed_file(&mut srv, s_in);
    let c_feed = feed_file(&mut cli, c_in);
    cli.wait_out_len(len, STEP);
    srv.wait_out_len(len, STEP);
    drop(c_feed.join().unwrap());
    drop(s_feed.join().unwrap());
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    assert!(srv.out() == c_data, "client→server bytes differ");
    assert_eq!(sha_file(&cli.out), s_sha, "server→client bytes differ");
}

#[test]
fn unix_stream_oxcat_client_ncat_server() {
    unix_stream(&ncat(), &subject());
}
#[test]
fn unix_stream_ncat_client_oxcat_server() {
    unix_stream(&subject(), &ncat());
}

// ---------------------------------------------------------------------------
// 4. -k with three clients
// ---------------------------------------------------------------------------

fn keep_open(server: &Path, client: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        server,
        &["-k", "-l", "127.0.0.1", &ps],
        In::Pipe,
    );
    wait_tcp_listen(port);
    let mut clients: Vec<Proc> = (0..3)
        .map(|i| {
            spawn(
                d,
                &format!("client{i}"),
                client,
                &["127.0.0.1", &ps],
                In::Pipe,
            )
        })
        .collect();
    let mut expect_len = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        let line = format!("from client {i}\n");
        expect_len += line.len();
        c.write(line.as_bytes());
    }
    // All three lines at the server means all three connections were accepted.
    srv.wait_out_len(expect_len, STEP);
    let got = String::from_utf8(srv.out()).unwrap();
    let mut lines: Vec<&str> = got.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["from client 0", "from client 1", "from client 2"],
        "server stdout: {got:?}"
    );
    assert_eq!(established_on(port), 3);
    srv.write(b"broadcast to all\n");
    for c in clients.iter_mut() {
        c.wait_out_eq(b"broadcast to all\n");
    }
    // A client leaving does not stop the -k listener; the others keep receiving.
    clients[0].close_stdin();
    clients[0].kill();
    srv.write(b"second\n");
    for c in clients[1..].iter_mut() {
        c.wait_out_eq(b"broadcast to all\nsecond\n");
    }
    assert!(
        srv.exited().is_none(),
        "-k listener exited after a client left"
    );
    // And a new client is still accepted.
    let mut late = spawn(d, "late", client, &["127.0.0.1", &ps], In::Pipe);
    late.write(b"late client\n");
    srv.wait_out_len(expect_len + "late client\n".len(), STEP);
    assert!(String::from_utf8(srv.out())
        .unwrap()
        .ends_with("late client\n"));
}

#[test]
fn keep_open_three_ncat_clients_oxcat_server() {
    keep_open(&subject(), &ncat());
}
#[test]
fn keep_open_three_oxcat_clients_ncat_server() {
    keep_open(&ncat(), &subject());
}

// ---------------------------------------------------------------------------
// 5. --exec / --sh-exec
// ---------------------------------------------------------------------------

/// The client keeps its stdin open until the echo is complete: ncat 7.93's
/// exec mode drops the connection on the client's EOF.
fn exec_echo(server: &Path, exec_args: &[&str], len: usize) {
    let dir = tmpdir();
    let d = dir.path();
    let data = random_bytes(len, 11);
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut args = vec!["-l", "127.0.0.1", &ps];
    args.extend(exec_args);
    let mut srv = spawn(d, "server", server, &args, In::Null);
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", &ncat(), &["127.0.0.1", &ps], In::Pipe);
    let mut stdin = cli.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
        (stdin, data)
    });
    cli.wait_out_len(len, STEP);
    let (stdin, data) = feeder.join().unwrap();
    drop(stdin);
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    assert!(cli.out() == data, "echoed bytes differ");
}

#[test]
fn exec_cat_echo_oxcat_server() {
    exec_echo(&subject(), &["-e", "/bin/cat"], 1 << 20);
}
#[test]
fn sh_exec_cat_echo_oxcat_server() {
    exec_echo(&subject(), &["-c", "cat"], 1 << 20);
}
/// Baseline with a small payload: ncat 7.93's -e/-c relay stalls for good
/// after 57344 bytes when a client streams bulk data and reads the echo
/// concurrently (also with socat as the client), so 1 MiB cannot be checked
/// against it.
#[test]
fn exec_cat_echo_ncat_server_baseline() {
    exec_echo(&ncat(), &["-e", "/bin/cat"], 16 << 10);
    exec_echo(&ncat(), &["-c", "cat"], 16 << 10);
}

const ENV_CMD: &str =
    "echo $NCAT_REMOTE_ADDR $NCAT_REMOTE_PORT $NCAT_LOCAL_ADDR $NCAT_LOCAL_PORT $NCAT_PROTO";

/// Runs `server -l ADDR PORT -c ENV_CMD` with an ncat client; returns the
/// line, with the ports replaced by placeholders after checking them.
fn exec_env_line(server: &Path, addr: &str) -> String {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        server,
        &["-l", addr, &ps, "-c", ENV_CMD],
        In::Null,
    );
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", &ncat(), &[addr, &ps], In::Pipe);
    wait_until(STEP, || cli.out().ends_with(b"\n"))
        .unwrap_or_else(|| panic!("no line from -c; server stderr {:?}", srv.err()));
    cli.close_stdin();
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    let line = String::from_utf8(cli.out()).unwrap();
    let f: Vec<&str> = line.trim_end_matches('\n').split(' ').collect();
    assert_eq!(f.len(), 5, "{} printed {line:?}", server.display());
    let rport: u16 = f[1]
        .parse()
        .unwrap_or_else(|_| panic!("remote port in {line:?}"));
    assert_ne!(rport, 0);
    assert_eq!(f[3], ps, "local port in {line:?}");
    format!("{} RPORT {} LPORT {}\n", f[0], f[2], f[4])
}

#[test]
fn sh_exec_env_v4_matches_ncat() {
    let want = exec_env_line(&ncat(), "127.0.0.1");
    assert_eq!(want, "127.0.0.1 RPORT 127.0.0.1 LPORT TCP\n");
    assert_eq!(exec_env_line(&subject(), "127.0.0.1"), want);
}
#[test]
fn sh_exec_env_v6_matches_ncat() {
    let want = exec_env_line(&ncat(), "::1");
    assert_eq!(want, "::1 RPORT ::1 LPORT TCP\n");
    assert_eq!(exec_env_line(&subject(), "::1"), want);
}

// ---------------------------------------------------------------------------
// 6. --recv-only / --send-only
// ---------------------------------------------------------------------------

/// Client --recv-only with a stdin file that must never be sent. The
/// server sends "ping\n" (the client is then surely running its loop), then
/// closes its stdin: the --recv-only client quits on the socket EOF.
fn recv_only_client(server: &Path, client: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let c_in = write_file(&d.join("c.in"), b"CLIENT MUST NOT SEND THIS\n");
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(d, "server", server, &["-l", "127.0.0.1", &ps], In::Pipe);
    wait_tcp_listen(port);
    let mut cli = spawn(
        d,
        "client",
        client,
        &["--recv-only", "127.0.0.1", &ps],
        In::File(c_in),
    );
    srv.write(b"ping\n");
    cli.wait_out_eq(b"ping\n");
    srv.close_stdin();
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert_eq!(
        String::from_utf8_lossy(&srv.out()),
        "",
        "--recv-only client sent its stdin"
    );
    assert_eq!(cli.out(), b"ping\n");
}

#[test]
fn recv_only_oxcat_client_ncat_server() {
    recv_only_client(&ncat(), &subject());
}
#[test]
fn recv_only_ncat_client_oxcat_server_baseline() {
    recv_only_client(&subject(), &ncat());
}

/// Server --recv-only with a stdin file that must never be sent.
fn recv_only_server(server: &Path, client: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let s_in = write_file(&d.join("s.in"), b"SERVER MUST NOT SEND THIS\n");
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        server,
        &["--recv-only", "-l", "127.0.0.1", &ps],
        In::File(s_in),
    );
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", client, &["127.0.0.1", &ps], In::Pipe);
    cli.write(b"hello\n");
    srv.wait_out_eq(b"hello\n");
    cli.close_stdin();
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    assert_eq!(
        String::from_utf8_lossy(&cli.out()),
        "",
        "--recv-only server sent its stdin"
    );
}

#[test]
fn recv_only_ncat_client_oxcat_server() {
    recv_only_server(&subject(), &ncat());
}
#[test]
fn recv_only_oxcat_client_ncat_server_listen_side() {
    recv_only_server(&ncat(), &subject());
}

/// Client --send-only: the server's reply (and FIN) reach the client's kernel
/// (server socket in FIN_WAIT2) before the client gets any stdin; the client
/// must not print the reply, and must send its stdin and quit at its EOF.
fn send_only_client(server: &Path, client: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let s_in = write_file(&d.join("s.in"), b"SERVER REPLY MUST NOT BE PRINTED\n");
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        server,
        &["-l", "127.0.0.1", &ps],
        In::File(s_in),
    );
    wait_tcp_listen(port);
    let mut cli = spawn(
        d,
        "client",
        client,
        &["--send-only", "127.0.0.1", &ps],
        In::Pipe,
    );
    wait_server_conn_state(port, TCP_FIN_WAIT2, "server reply + FIN");
    cli.write(b"client data\n");
    cli.close_stdin();
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert_eq!(srv.out(), b"client data\n");
    assert_eq!(
        String::from_utf8_lossy(&cli.out()),
        "",
        "--send-only client printed received data"
    );
}

#[test]
fn send_only_oxcat_client_ncat_server() {
    send_only_client(&ncat(), &subject());
}
#[test]
fn send_only_ncat_client_oxcat_server_baseline() {
    send_only_client(&subject(), &ncat());
}

/// Server --send-only: the client's data and FIN reach the server (server
/// socket in CLOSE_WAIT) before the server gets stdin; the server must not
/// print them and must still send its stdin. ncat 7.93 then neither reads the
/// socket nor exits (it closes the connection, the client may see a reset),
/// so exit codes are not asserted here.
fn send_only_server(server: &Path, client: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let c_in = write_file(&d.join("c.in"), b"CLIENT DATA MUST NOT BE PRINTED\n");
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        server,
        &["--send-only", "-l", "127.0.0.1", &ps],
        In::Pipe,
    );
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", client, &["127.0.0.1", &ps], In::File(c_in));
    wait_server_conn_state(port, TCP_CLOSE_WAIT, "client data + FIN");
    srv.write(b"server reply\n");
    srv.close_stdin();
    cli.wait_out_eq(b"server reply\n");
    assert_eq!(
        String::from_utf8_lossy(&srv.out()),
        "",
        "--send-only server printed received data"
    );
    cli.kill();
    srv.kill();
}

#[test]
fn send_only_ncat_client_oxcat_server() {
    send_only_server(&subject(), &ncat());
}
#[test]
fn send_only_oxcat_client_ncat_server_listen_side() {
    send_only_server(&ncat(), &subject());
}

// ---------------------------------------------------------------------------
// 8. -x / -o / --append-output: same session, ncat vs oxcat as the logger
// ---------------------------------------------------------------------------

const HELLO: &[u8] = b"Hello, Server!\n";

fn binary_reply() -> Vec<u8> {
    let mut v: Vec<u8> = (0u8..20).collect();
    v.extend_from_slice(b"Binary reply: ok!\r\n\xff");
    assert_eq!(v.len(), 40);
    v
}

/// One deterministic session: the server sends the 40-byte reply (one write
/// to its stdin pipe); the client sends HELLO only after it has received the
/// reply, then closes its stdin; the server's stdin closes once HELLO arrived.
/// `log_args` go to the logging side. Returns after both exited.
fn logged_session(logger: &Path, peer_bin: &Path, logger_is_server: bool, log_args: &[&str]) {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_tcp_port();
    let ps = port.to_string();
    let (server, client) = if logger_is_server {
        (logger, peer_bin)
    } else {
        (peer_bin, logger)
    };
    let mut sargs = vec!["-l", "127.0.0.1", &ps];
    let mut cargs = vec!["127.0.0.1", &ps];
    if logger_is_server {
        sargs.extend(log_args);
    } else {
        cargs.extend(log_args);
    }
    let mut srv = spawn(d, "server", server, &sargs, In::Pipe);
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", client, &cargs, In::Pipe);
    srv.write(&binary_reply());
    cli.wait_out_eq(&binary_reply());
    cli.write(HELLO);
    cli.close_stdin();
    srv.wait_out_eq(HELLO);
    srv.close_stdin();
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
}

/// Runs the session with ncat and then with oxcat as the logger (same peer:
/// ncat), `runs` times each on the same log files; returns (ncat's, oxcat's)
/// log file contents.
fn compare_logs(
    logger_is_server: bool,
    flag: &str,
    append: bool,
    runs: usize,
) -> (Vec<u8>, Vec<u8>) {
    let dir = tmpdir();
    let mut res = Vec::new();
    for (i, bin) in [ncat(), subject()].iter().enumerate() {
        let log = dir.path().join(format!("log{i}"));
        if append {
            std::fs::write(&log, b"pre-existing line\n").unwrap();
        }
        let l = log.to_str().unwrap().to_string();
        let mut args = vec![flag, &l];
        if append {
            args.push("--append-output");
        }
        for _ in 0..runs {
            logged_session(bin, &ncat(), logger_is_server, &args);
        }
        res.push(
            std::fs::read(&log).unwrap_or_else(|e| panic!("{} wrote no log: {e}", bin.display())),
        );
    }
    let o = res.pop().unwrap();
    (res.pop().unwrap(), o)
}

fn expected_raw() -> Vec<u8> {
    let mut v = binary_reply();
    v.extend_from_slice(HELLO);
    v
}

#[test]
fn hex_dump_listener_matches_ncat() {
    let (n, o) = compare_logs(true, "-x", false, 1);
    assert_eq!(
        String::from_utf8_lossy(&n),
        hexdump(&[&binary_reply(), HELLO]),
        "ncat's own dump changed?"
    );
    assert_eq!(String::from_utf8_lossy(&o), String::from_utf8_lossy(&n));
}
#[test]
fn hex_dump_connector_matches_ncat() {
    let (n, o) = compare_logs(false, "-x", false, 1);
    assert_eq!(
        String::from_utf8_lossy(&n),
        hexdump(&[&binary_reply(), HELLO])
    );
    assert_eq!(String::from_utf8_lossy(&o), String::from_utf8_lossy(&n));
}
#[test]
fn output_file_listener_matches_ncat() {
    let (n, o) = compare_logs(true, "-o", false, 1);
    assert_eq!(n, expected_raw());
    assert_eq!(o, n);
}
#[test]
fn output_file_connector_matches_ncat() {
    let (n, o) = compare_logs(false, "-o", false, 1);
    assert_eq!(n, expected_raw());
    assert_eq!(o, n);
}
#[test]
fn output_file_truncates_without_append() {
    // Two sessions on the same file without --append-output: only the last remains.
    let (n, o) = compare_logs(false, "-o", false, 2);
    assert_eq!(n, expected_raw());
    assert_eq!(o, n);
}
#[test]
fn append_output_raw_matches_ncat() {
    let (n, o) = compare_logs(true, "-o", true, 2);
    let mut want = b"pre-existing line\n".to_vec();
    want.extend(expected_raw());
    want.extend(expected_raw());
    assert_eq!(n, want);
    assert_eq!(o, n);
}
#[test]
fn append_output_hex_matches_ncat() {
    let (n, o) = compare_logs(false, "-x", true, 2);
    let one = hexdump(&[&binary_reply(), HELLO]);
    assert_eq!(
        String::from_utf8_lossy(&n),
        format!("pre-existing line\n{one}{one}")
    );
    assert_eq!(String::from_utf8_lossy(&o), String::from_utf8_lossy(&n));
}

// ---------------------------------------------------------------------------
// 9. Command-line conventions
// ---------------------------------------------------------------------------

/// `PORT -l` (port before the flag) listens on all addresses.
fn port_before_listen_flag(server: &Path) {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(d, "server", server, &[&ps, "-l"], In::Pipe);
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", &ncat(), &["127.0.0.1", &ps], In::Pipe);
    cli.write(b"to server\n");
    srv.wait_out_eq(b"to server\n");
    srv.write(b"to client\n");
    cli.wait_out_eq(b"to client\n");
    srv.close_stdin();
    cli.close_stdin();
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
}

#[test]
fn port_before_listen_flag_oxcat() {
    port_before_listen_flag(&subject());
}
#[test]
fn port_before_listen_flag_ncat_baseline() {
    port_before_listen_flag(&ncat());
}

/// `--test`: the listener prints `NCAT TEST: LISTEN` on stderr once listening
/// (before any client), and works normally otherwise.
fn test_flag(server: &Path) -> String {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        server,
        &["--test", "-l", "127.0.0.1", &ps],
        In::Null,
    );
    wait_tcp_listen(port);
    wait_until(STEP, || srv.err().contains("NCAT TEST: LISTEN\n")).unwrap_or_else(|| {
        panic!(
            "no NCAT TEST line before any client; stderr {:?}",
            srv.err()
        )
    });
    let mut cli = spawn(d, "client", &ncat(), &["127.0.0.1", &ps], In::Null);
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    srv.err()
}

#[test]
fn test_flag_prints_listen_line_like_ncat() {
    let n = test_flag(&ncat());
    assert_eq!(n, "NCAT TEST: LISTEN\n");
    assert_eq!(test_flag(&subject()), n);
}

// ---------------------------------------------------------------------------
// 10. Invoked through a symlink named nc / ncat
// ---------------------------------------------------------------------------

#[test]
fn works_through_symlinks_named_nc_and_ncat() {
    let dir = tmpdir();
    let d = dir.path();
    let nc = d.join("nc");
    let nc_at = d.join("ncat");
    std::os::unix::fs::symlink(subject(), &nc).unwrap();
    std::os::unix::fs::symlink(subject(), &nc_at).unwrap();
    let port = free_tcp_port();
    let ps = port.to_string();
    // `nc` symlink listens, `ncat` symlink connects: both directions.
    let mut srv = spawn_in(
        d,
        "server",
        &nc,
        &["-l", "127.0.0.1", &ps],
        In::Pipe,
        Some(d),
    );
    wait_tcp_listen(port);
    let mut cli = spawn_in(d, "client", &nc_at, &["127.0.0.1", &ps], In::Pipe, Some(d));
    srv.write(b"from nc listener\n");
    cli.wait_out_eq(b"from nc listener\n");
    cli.write(b"from ncat connector\n");
    srv.wait_out_eq(b"from ncat connector\n");
    cli.close_stdin();
    srv.close_stdin();
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    // And the symlinked binary against real ncat as the listener.
    let port = free_tcp_port();
    let ps = port.to_string();
    let mut srv = spawn(d, "server2", &ncat(), &["-l", "127.0.0.1", &ps], In::Pipe);
    wait_tcp_listen(port);
    let mut cli = spawn_in(d, "client2", &nc, &["127.0.0.1", &ps], In::Pipe, Some(d));
    cli.write(b"via nc\n");
    srv.wait_out_eq(b"via nc\n");
    srv.close_stdin();
    cli.close_stdin();
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
}

/// `-u -l -k -c cat`: every UDP sender gets its own program, which sees the
/// sender's datagrams (the first one included) and answers only that sender.
/// ncat 7.93 accepts the same flags (UDP `-k` only with an exec).
#[test]
fn udp_keep_open_exec_gives_each_sender_its_own_program() {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_udp_port();
    let ps = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        &subject(),
        &["-u", "-l", "-k", "127.0.0.1", &ps, "-c", "cat"],
        In::Null,
    );
    wait_udp_bound(port);
    let mut a = spawn(d, "a", &ncat(), &["-u", "127.0.0.1", &ps], In::Pipe);
    a.write(b"from-a\n");
    a.wait_out_eq(b"from-a\n");
    let mut b = spawn(d, "b", &ncat(), &["-u", "127.0.0.1", &ps], In::Pipe);
    b.write(b"from-b\n");
    b.wait_out_eq(b"from-b\n");
    a.write(b"again-a\n");
    a.wait_out_eq(b"from-a\nagain-a\n");
    assert_eq!(b.out(), b"from-b\n", "b saw a's bytes");
    assert!(
        srv.exited().is_none(),
        "the -k listener quit: {}",
        srv.err()
    );
    a.kill();
    b.kill();
    srv.kill();
}
