//! `--ssl` against the real ncat (7.93, OpenSSL) in both roles, over
//! loopback: bulk data both ways, verification with a CA made here,
//! ALPN, `-k` with two clients, `-e`/`-c`, and bad input side by side with
//! ncat (exit codes compared live). Certificates come from rcgen (ECDSA)
//! and, for an RSA one, the `openssl` command (scripts/test installs it).
//! A root-only scenario runs TLS over `--stack user` in a private namespace.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

const STEP: Duration = Duration::from_secs(30);
const BULK_LEN: usize = 4 << 20;

// ---------------------------------------------------------------- processes

/// A spawned tool: stdout and stderr go to files in the test's directory.
struct Proc {
    name: String,
    child: KillOnDrop,
    stdin: Option<ChildStdin>,
    out: PathBuf,
    err: PathBuf,
}

enum In {
    Null,
    Pipe,
    File(PathBuf),
}

fn spawn(dir: &Path, name: &str, bin: &Path, args: &[&str], input: In) -> Proc {
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(dir)
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap());
    match input {
        In::Null => cmd.stdin(Stdio::null()),
        In::Pipe => cmd.stdin(Stdio::piped()),
        In::File(p) => cmd.stdin(File::open(p).unwrap()),
    };
    let mut child: Child = cmd
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

impl Proc {
    fn out(&self) -> Vec<u8> {
        std::fs::read(&self.out).unwrap_or_default()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.err).unwrap_or_default()).into_owned()
    }
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let name = self.name.clone();
        let err = self.err();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_bounded(&mut self.child.0, limit, &name)
        })) {
            Ok(st) => st,
            Err(_) => panic!("{name} did not exit within {limit:?}; stderr: {err:?}"),
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
    fn wait_out_len(&mut self, n: usize, limit: Duration) {
        if wait_until(limit, || self.out().len() >= n).is_none() {
            panic!(
                "{}: stdout has {} bytes, expected {n}; exited: {:?}; stderr: {:?}",
                self.name,
                self.out().len(),
                self.child.0.try_wait(),
                self.err()
            );
        }
    }
    /// Feeds a file to stdin from a thread; the handle gives stdin back (open).
    fn feed(&mut self, path: PathBuf) -> std::thread::JoinHandle<ChildStdin> {
        let mut stdin = self.stdin.take().expect("stdin is not a pipe");
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut File::open(path).unwrap(), &mut stdin);
            stdin
        })
    }
    fn write(&mut self, data: &[u8]) {
        self.stdin.as_mut().unwrap().write_all(data).unwrap();
    }
}

/// `server` listening on a free port of 127.0.0.1 (`s_args`, then `-l
/// 127.0.0.1 PORT`; stdin /dev/null), then `client` started at it
/// (`c_args`, then `127.0.0.1 PORT`; stdin `c_in`); and the port. `tag`
/// tells the output files of several pairs in one directory apart.
fn server_then_client(
    d: &Path,
    tag: &str,
    server: (&Path, &[&str]),
    client: (&Path, &[&str]),
    c_in: In,
) -> (Proc, Proc, u16) {
    let port = free_tcp_port();
    let p = port.to_string();
    let mut args = server.1.to_vec();
    args.extend(["-l", "127.0.0.1", &p]);
    let srv = spawn(d, &format!("server{tag}"), server.0, &args, In::Null);
    wait_tcp_listen(port);
    let mut args = client.1.to_vec();
    args.extend(["127.0.0.1", &p]);
    let cli = spawn(d, &format!("client{tag}"), client.0, &args, c_in);
    (srv, cli, port)
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oxcat-tls")
        .tempdir()
        .unwrap()
}

fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    Sha256::digest(&data).to_vec()
}

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Runs a tool to completion (stdin empty), bounded.
fn run(bin: &Path, args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let out = run_bounded(Command::new(bin).args(args).current_dir(dir), STEP);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- certificates

/// A CA, a server certificate it signed for localhost (and 127.0.0.1), an
/// expired one, and an unrelated CA, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    expired_cert: PathBuf,
    expired_key: PathBuf,
}

fn make_ca(name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

fn make_leaf(issuer: &rcgen::Issuer<'_, &rcgen::KeyPair>, expired: bool) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "oxcat tests");
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 2);
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki(dir: &Path) -> Pki {
    let (ca_params, ca_key, ca_pem) = make_ca("oxcat test CA");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let (cert, key) = make_leaf(&issuer, false);
    let (expired_cert, expired_key) = make_leaf(&issuer, true);
    let (_, _, other_pem) = make_ca("some other CA");
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: w("ca.pem", &ca_pem),
        other_ca: w("other-ca.pem", &other_pem),
        cert: w("server.pem", &cert),
        key: w("server.key", &key),
        expired_cert: w("expired.pem", &expired_cert),
        expired_key: w("expired.key", &expired_key),
    }
}

fn openssl() -> PathBuf {
    peer("openssl")
}

/// A self-signed RSA-2048 certificate for localhost made by `openssl req`
/// (which marks it CA:TRUE, as most hand-made certificates are).
fn rsa_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("rsa.pem"), dir.join("rsa.key"));
    let out = run_bounded(
        Command::new(openssl())
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args(["-subj", "/O=oxcat RSA/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        STEP,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------- bulk, both directions

/// BULK_LEN bytes each way at once between `server` (-l) and `client`, with
/// extra flags for each; both stdins stay open until both sides have
/// received everything (ncat 7.93's listener quits at the client's EOF).
fn bulk(server: &Path, s_flags: &[&str], client: &Path, c_flags: &[&str]) {
    let dir = tmpdir();
    let d = dir.path();
    let s_sha = random_file(&d.join("s.in"), BULK_LEN, 1);
    let c_sha = random_file(&d.join("c.in"), BULK_LEN, 2);
    let port = free_tcp_port();
    let p = port.to_string();
    let mut args: Vec<&str> = s_flags.to_vec();
    args.extend(["-l", "127.0.0.1", &p]);
    let mut srv = spawn(d, "server", server, &args, In::Pipe);
    wait_tcp_listen(port);
    let mut args: Vec<&str> = c_flags.to_vec();
    args.extend(["localhost", &p]);
    let mut cli = spawn(d, "client", client, &args, In::Pipe);
    let s_feed = srv.feed(d.join("s.in"));
    let c_feed = cli.feed(d.join("c.in"));
    cli.wait_out_len(BULK_LEN, STEP);
    srv.wait_out_len(BULK_LEN, STEP);
    drop(c_feed.join().unwrap());
    drop(s_feed.join().unwrap());
    srv.wait_ok(STEP);
    cli.wait_ok(STEP);
    assert_eq!(sha(&srv.out()), c_sha, "client→server data differs");
    assert_eq!(sha(&cli.out()), s_sha, "server→client data differs");
}

#[test]
fn bulk_oxcat_client_ncat_server() {
    bulk(&ncat(), &["--ssl"], &oxcat(), &["--ssl"]);
}

#[test]
fn bulk_ncat_client_oxcat_server() {
    bulk(&oxcat(), &["--ssl"], &ncat(), &["--ssl"]);
}

#[test]
fn bulk_oxcat_both_ends() {
    bulk(&oxcat(), &["--ssl"], &oxcat(), &["--ssl"]);
}

/// With --ssl-verify against a CA made here: ECDSA from rcgen, and an RSA
/// self-signed certificate from openssl (trusted as itself), in both roles.
#[test]
fn verified_both_roles_ecdsa_and_rsa() {
    let dir = tmpdir();
    let pki = pki(dir.path());
    let (rsa_cert, rsa_key) = rsa_self_signed(dir.path());
    let ecdsa = ["--ssl-cert", path(&pki.cert), "--ssl-key", path(&pki.key)];
    let rsa = ["--ssl-cert", path(&rsa_cert), "--ssl-key", path(&rsa_key)];
    let trust_ca = ["--ssl-verify", "--ssl-trustfile", path(&pki.ca)];
    let trust_rsa = ["--ssl-trustfile", path(&rsa_cert)];
    bulk(&ncat(), &ecdsa, &oxcat(), &trust_ca);
    bulk(&oxcat(), &ecdsa, &ncat(), &trust_ca);
    bulk(&ncat(), &rsa, &oxcat(), &trust_rsa);
    bulk(&oxcat(), &rsa, &ncat(), &trust_rsa);
}

/// `-v` shows what ncat shows: the temporary certificate's fingerprint on
/// the server, `SSL connection to` and the same fingerprint on the client.
#[test]
fn verbose_lines_match_ncat() {
    let dir = tmpdir();
    let d = dir.path();
    let (mut srv, mut cli, port) = server_then_client(
        d,
        "",
        (&oxcat(), &["-v", "--ssl"]),
        (&ncat(), &["-v", "--ssl"]),
        In::Null,
    );
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    let s = srv.err();
    let c = cli.err();
    assert!(s.contains("oxcat: Generating a temporary 256-bit ECDSA key. Use --ssl-key and --ssl-cert to use a permanent one.\n"), "{s}");
    let fp = s
        .lines()
        .find_map(|l| l.strip_prefix("oxcat: SHA-1 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint: {s}"));
    assert_eq!(fp.len(), 49, "{fp}");
    assert!(
        c.contains(&format!("Ncat: SSL connection to 127.0.0.1:{port}.\n")),
        "{c}"
    );
    assert!(
        c.contains(&format!("Ncat: SHA-1 fingerprint: {fp}\n")),
        "{c}"
    );
    assert!(
        c.contains("Ncat: Certificate verification failed (self-signed certificate).\n"),
        "{c}"
    );

    // And the other way: oxcat's client prints ncat's lines.
    let (mut srv, mut cli, port) = server_then_client(
        d,
        "2",
        (&ncat(), &["-v", "--ssl"]),
        (&oxcat(), &["-v", "--ssl"]),
        In::Null,
    );
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    let s = srv.err();
    let c = cli.err();
    let fp = s
        .lines()
        .find_map(|l| l.strip_prefix("Ncat: SHA-1 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint: {s}"));
    for want in [
        "oxcat: Subject: CN=127.0.0.1".to_string(),
        "oxcat: Issuer: CN=127.0.0.1".to_string(),
        "oxcat: Certificate verification failed (self-signed certificate).".to_string(),
        format!("oxcat: SSL connection to 127.0.0.1:{port}."),
        format!("oxcat: SHA-1 fingerprint: {fp}"),
    ] {
        assert!(c.lines().any(|l| l == want), "{want:?} not in:\n{c}");
    }
    assert!(!c.contains("Connected to"), "{c}");
}

/// Connect mode and a one-client listener run TLS inside the relay: the
/// client's stdin EOF is close_notify and a FIN, and the listener's reply,
/// sent after it, still arrives; `-C` converts and `-o` logs plaintext.
#[test]
fn half_close_crlf_and_log_inline() {
    let dir = tmpdir();
    let d = dir.path();
    std::fs::write(d.join("hello"), b"hello\n").unwrap();
    let log = d.join("client.log");
    let port = free_tcp_port();
    let p = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        &oxcat(),
        &["-vv", "--ssl", "-l", "127.0.0.1", &p],
        In::Pipe,
    );
    wait_tcp_listen(port);
    let mut cli = spawn(
        d,
        "client",
        &oxcat(),
        &["-vv", "--ssl", "-C", "-o", path(&log), "127.0.0.1", &p],
        In::File(d.join("hello")),
    );
    srv.wait_out_len(7, STEP);
    assert_eq!(srv.out(), b"hello\r\n");
    // The client's EOF has reached the server; the other way is still open.
    assert!(
        wait_until(STEP, || srv.err().contains("EOF from the peer")).is_some(),
        "{}",
        srv.err()
    );
    srv.write(b"reply after your EOF\n");
    srv.stdin.take();
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert_eq!(cli.out(), b"reply after your EOF\n");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        b"hello\r\nreply after your EOF\n"
    );
    assert!(
        cli.err().contains("7 bytes sent, 21 bytes received"),
        "{}",
        cli.err()
    );
}

/// `--send-only` over TLS delivers everything to a receiver that lags
/// behind (`-d`): the session tickets the server sends are read and
/// dropped, so the sender's close is a FIN, not a reset (over unread
/// bytes) that would discard what its kernel still holds to send.
#[test]
fn send_only_delivers_everything_to_a_slow_receiver() {
    let dir = tmpdir();
    let d = dir.path();
    let want = random_file(&d.join("data"), 16 << 20, 9);
    let (mut srv, mut cli, _) = server_then_client(
        d,
        "",
        (&oxcat(), &["--ssl", "--recv-only", "-d", "10ms"]),
        (&oxcat(), &["--ssl", "--send-only"]),
        In::File(d.join("data")),
    );
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert_eq!(sha(&srv.out()), want, "{}", srv.err());
}

/// A pipe on a TLS sender's stdin is grown to 1 MiB (the writer and oxcat
/// then take turns per MiB, not per 64 KiB), and what passes through it
/// arrives intact, EOF included.
#[test]
fn stdin_pipe_grown_for_a_tls_sender() {
    use std::os::fd::AsRawFd;
    let dir = tmpdir();
    let d = dir.path();
    let (mut srv, mut cli, _) = server_then_client(
        d,
        "",
        (&oxcat(), &["--ssl", "--recv-only"]),
        (&oxcat(), &["--ssl", "--send-only"]),
        In::Pipe,
    );
    let pipe_size = |cli: &Proc| {
        let fd = cli.stdin.as_ref().unwrap().as_raw_fd();
        // SAFETY: F_GETPIPE_SZ on a descriptor we own only reads its size.
        unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) }
    };
    assert!(
        pipe_size(&cli) < 1 << 20,
        "the test needs a smaller pipe first"
    );
    cli.write(b"first line\n");
    // It arrived: the relay is reading stdin, so the pipe is grown by now.
    srv.wait_out_len(11, STEP);
    assert_eq!(pipe_size(&cli), 1 << 20);
    // 3 MiB and an odd tail (not a whole number of 8 KiB records), then EOF.
    let mut rest = vec![0u8; (3 << 20) + 12345];
    for (i, b) in rest.iter_mut().enumerate() {
        *b = (i * 7 + i / 8191) as u8;
    }
    cli.write(&rest);
    drop(cli.stdin.take());
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    let mut want = b"first line\n".to_vec();
    want.extend_from_slice(&rest);
    assert_eq!(sha(&srv.out()), sha(&want), "{}", srv.err());
}

// ---------------------------------------------------------------- ALPN

/// oxcat offers `--ssl-alpn`'s list: a rustls server here records what the
/// client hello carried. ncat's client offering ALPN to oxcat's server
/// works (the server picks none, as ncat's does), and both refuse
/// `--ssl-alpn` in listen mode.
#[test]
fn alpn_offered_and_refused_in_listen_mode() {
    use rustls::server::Acceptor;
    let dir = tmpdir();
    let d = dir.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut acceptor = Acceptor::default();
        let accepted = loop {
            acceptor.read_tls(&mut stream).unwrap();
            if let Some(a) = acceptor.accept().map_err(|(e, _)| e).unwrap() {
                break a;
            }
        };
        let offered: Vec<Vec<u8>> = accepted
            .client_hello()
            .alpn()
            .map(|l| l.map(|p| p.to_vec()).collect())
            .unwrap_or_default();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let conn = accepted
            .into_connection(std::sync::Arc::new(config))
            .map_err(|(e, _)| e)
            .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, stream);
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got);
        (offered, got)
    });
    std::fs::write(d.join("hello"), b"over h2\n").unwrap();
    let p = port.to_string();
    let mut cli = spawn(
        d,
        "client",
        &oxcat(),
        &["-vv", "--ssl-alpn", "h2,http/1.1", "localhost", &p],
        In::File(d.join("hello")),
    );
    cli.wait_ok(STEP);
    let (offered, got) = server.join().unwrap();
    assert_eq!(offered, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(got, b"over h2\n");
    assert!(cli.err().contains("ALPN protocol: h2"), "{}", cli.err());

    // ncat's client with ALPN, oxcat's server.
    let port = free_tcp_port();
    let p = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        &oxcat(),
        &["--ssl", "-l", "127.0.0.1", &p],
        In::Null,
    );
    wait_tcp_listen(port);
    let mut cli = spawn(
        d,
        "ncat-client",
        &ncat(),
        &["--ssl-alpn", "h2,http/1.1", "127.0.0.1", &p],
        In::File(d.join("hello")),
    );
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert_eq!(srv.out(), b"over h2\n");

    let (n, _) = run(&ncat(), &["--ssl-alpn", "h2", "-l", "1"], d);
    let (o, err) = run(&oxcat(), &["--ssl-alpn", "h2", "-l", "1"], d);
    println!("--ssl-alpn in listen mode: ncat exit {n:?}, oxcat exit {o:?}");
    assert_eq!((n, o), (Some(2), Some(2)));
    assert_eq!(err, "oxcat: ALPN is not supported in listen mode.\n");
}

// ---------------------------------------------------------------- -k and -e

/// `--ssl -lk`: two clients (ncat's and oxcat's) at once; each one's bytes
/// reach stdout, and the server's stdin reaches both.
#[test]
fn keep_open_two_clients() {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_tcp_port();
    let p = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        &oxcat(),
        &["--ssl", "-lk", "127.0.0.1", &p],
        In::Pipe,
    );
    wait_tcp_listen(port);
    let mut a = spawn(d, "a", &ncat(), &["--ssl", "127.0.0.1", &p], In::Pipe);
    let mut b = spawn(d, "b", &oxcat(), &["--ssl", "127.0.0.1", &p], In::Pipe);
    a.write(b"from ncat\n");
    b.write(b"from oxcat\n");
    srv.wait_out_len(b"from ncat\nfrom oxcat\n".len(), STEP);
    let got = String::from_utf8_lossy(&srv.out()).into_owned();
    assert!(
        got.contains("from ncat\n") && got.contains("from oxcat\n"),
        "{got:?}"
    );
    srv.write(b"to everyone\n");
    a.wait_out_len(12, STEP);
    b.wait_out_len(12, STEP);
    assert_eq!(a.out(), b"to everyone\n");
    assert_eq!(b.out(), b"to everyone\n");
    a.stdin.take();
    b.stdin.take();
    srv.stdin.take();
    a.wait_ok(STEP);
    b.wait_ok(STEP);
}

/// `--broker --ssl`: what one TLS client sends reaches the other.
#[test]
fn broker_over_tls() {
    let dir = tmpdir();
    let d = dir.path();
    let port = free_tcp_port();
    let p = port.to_string();
    let _srv = spawn(
        d,
        "broker",
        &oxcat(),
        &["--broker", "--ssl", "-l", "127.0.0.1", &p],
        In::Null,
    );
    wait_tcp_listen(port);
    let mut a = spawn(d, "a", &ncat(), &["--ssl", "127.0.0.1", &p], In::Pipe);
    let mut b = spawn(d, "b", &ncat(), &["--ssl", "127.0.0.1", &p], In::Pipe);
    // Both are in once each has heard from the other.
    let mut n = 0;
    while b.out().is_empty() || a.out().is_empty() {
        n += 1;
        assert!(n < 300, "broker: a={:?} b={:?}", a.out(), b.out());
        a.write(b"ping from a\n");
        b.write(b"ping from b\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(String::from_utf8_lossy(&b.out()).starts_with("ping from a\n"));
    assert!(String::from_utf8_lossy(&a.out()).starts_with("ping from b\n"));
}

/// `--ssl -l -e /bin/cat` echoes 1 MiB back to ncat's client; `--ssl -c`
/// in connect mode runs the program on the TLS connection to ncat's server.
#[test]
fn exec_both_modes() {
    let dir = tmpdir();
    let d = dir.path();
    let want = random_file(&d.join("data"), 1 << 20, 7);
    let port = free_tcp_port();
    let p = port.to_string();
    let mut srv = spawn(
        d,
        "server",
        &oxcat(),
        &["--ssl", "-l", "127.0.0.1", &p, "-e", "/bin/cat"],
        In::Null,
    );
    wait_tcp_listen(port);
    let mut cli = spawn(d, "client", &ncat(), &["--ssl", "127.0.0.1", &p], In::Pipe);
    let feed = cli.feed(d.join("data"));
    cli.wait_out_len(1 << 20, STEP);
    drop(feed.join().unwrap());
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert_eq!(sha(&cli.out()), want);

    let port = free_tcp_port();
    let p = port.to_string();
    let mut srv = spawn(
        d,
        "server2",
        &ncat(),
        &["--ssl", "-l", "127.0.0.1", &p],
        In::Null,
    );
    wait_tcp_listen(port);
    let mut cli = spawn(
        d,
        "client2",
        &oxcat(),
        &[
            "--ssl",
            "127.0.0.1",
            &p,
            "-c",
            "echo \"$NCAT_REMOTE_PORT over TLS\"",
        ],
        In::Null,
    );
    cli.wait_ok(STEP);
    srv.wait_ok(STEP);
    assert_eq!(
        String::from_utf8_lossy(&srv.out()),
        format!("{port} over TLS\n")
    );
}

// ---------------------------------------------------------------- bad input, side by side

/// Each bad case runs with ncat and with oxcat; the exit codes must agree,
/// and oxcat must say one line. One line per case is printed.
#[test]
fn bad_input_exit_codes_match_ncat() {
    let dir = tmpdir();
    let d = dir.path();
    let pki = pki(d);
    // Servers for the client-side cases: a valid certificate, an expired one.
    let good = free_tcp_port();
    let expired = free_tcp_port();
    let (g, e) = (good.to_string(), expired.to_string());
    let _good = spawn(
        d,
        "good",
        &ncat(),
        &[
            "-lk",
            "127.0.0.1",
            &g,
            "--ssl-cert",
            path(&pki.cert),
            "--ssl-key",
            path(&pki.key),
        ],
        In::Null,
    );
    let _expired = spawn(
        d,
        "expired",
        &ncat(),
        &[
            "-lk",
            "127.0.0.1",
            &e,
            "--ssl-cert",
            path(&pki.expired_cert),
            "--ssl-key",
            path(&pki.expired_key),
        ],
        In::Null,
    );
    wait_tcp_listen(good);
    wait_tcp_listen(expired);
    let ca = path(&pki.ca);
    let other = path(&pki.other_ca);
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        (
            "untrusted issuer",
            vec!["--ssl-verify", "--ssl-trustfile", other, "localhost", &g],
            1,
            "Input/output error.",
        ),
        (
            "wrong name",
            vec![
                "--ssl-verify",
                "--ssl-trustfile",
                ca,
                "--ssl-servername",
                "wrong.example",
                "localhost",
                &g,
            ],
            2,
            "Certificate verification error.",
        ),
        (
            "expired certificate",
            vec!["--ssl-verify", "--ssl-trustfile", ca, "localhost", &e],
            1,
            "Input/output error.",
        ),
        (
            "missing trust file",
            vec![
                "--ssl-verify",
                "--ssl-trustfile",
                "/nonexistent.pem",
                "localhost",
                &g,
            ],
            2,
            "Could not load trusted certificates from /nonexistent.pem",
        ),
        (
            "missing cert file",
            vec![
                "--ssl",
                "--ssl-cert",
                "/nonexistent.pem",
                "--ssl-key",
                path(&pki.key),
                "-l",
                "1",
            ],
            2,
            "Unable to load --ssl-cert \"/nonexistent.pem\"",
        ),
        (
            "key not matching cert",
            vec![
                "--ssl",
                "--ssl-cert",
                path(&pki.cert),
                "--ssl-key",
                path(&pki.expired_key),
                "-l",
                "1",
            ],
            2,
            "does not match --ssl-cert",
        ),
        (
            "--ssl-key without --ssl-cert",
            vec!["--ssl-key", path(&pki.key), "-l", "1"],
            2,
            "The --ssl-key and --ssl-cert options must be used together.",
        ),
        (
            "unknown cipher name",
            vec!["--ssl-ciphers", "BOGUS-CIPHER", "localhost", &g],
            2,
            "Unsupported cipher \"BOGUS-CIPHER\"",
        ),
        (
            "--ssl -u -l (DTLS)",
            vec!["--ssl", "-u", "-l", "1"],
            2,
            "DTLS is not supported in listen mode.",
        ),
        (
            "--ssl -U",
            vec!["--ssl", "-U", "/tmp/oxcat-tls-none.sock"],
            2,
            "SSL option not supported when using Unix domain sockets.",
        ),
    ];
    for (what, args, code, msg) in cases {
        let (n, _) = run(&ncat(), &args, d);
        let (o, err) = run(&oxcat(), &args, d);
        println!(
            "{what}: ncat exit {n:?}, oxcat exit {o:?}: {}",
            err.trim_end()
        );
        assert_eq!(n, Some(code), "{what}: ncat");
        assert_eq!(o, Some(code), "{what}: oxcat");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(
            err.starts_with("oxcat: ") && err.contains(msg),
            "{what}: {err}"
        );
    }

    // --ssl -u in connect mode is DTLS for ncat (it tries, and fails with
    // exit 1 against a TCP-only peer); oxcat refuses it up front, exit 2.
    let (n, _) = run(&ncat(), &["--ssl", "-u", "127.0.0.1", &g], d);
    let (o, err) = run(&oxcat(), &["--ssl", "-u", "127.0.0.1", &g], d);
    println!(
        "--ssl -u (DTLS client): ncat exit {n:?}, oxcat exit {o:?}: {}",
        err.trim_end()
    );
    assert_eq!(o, Some(2));
    assert!(err.contains("DTLS") && err.lines().count() == 1, "{err}");

    // A client that does not speak TLS ends a one-client listener: exit 1 for both.
    for bin in [ncat(), oxcat()] {
        let port = free_tcp_port();
        let p = port.to_string();
        let mut srv = spawn(
            d,
            "plain-victim",
            &bin,
            &["-v", "--ssl", "-l", "127.0.0.1", &p],
            In::Null,
        );
        wait_tcp_listen(port);
        let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let st = srv.wait(STEP);
        println!(
            "plain client to {} --ssl -l: exit {:?}",
            bin.display(),
            st.code()
        );
        assert_eq!(st.code(), Some(1), "{}", srv.err());
        assert!(
            srv.err().contains("Failed SSL connection from 127.0.0.1: "),
            "{}",
            srv.err()
        );
    }
}

/// A cipher list of names rustls has works against ncat (TLS 1.2 names, as
/// OpenSSL's list governs TLS 1.2; TLS 1.3 keeps its suites).
#[test]
fn cipher_list_accepted() {
    let dir = tmpdir();
    let d = dir.path();
    for list in [
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
        "ALL:!aNULL:!eNULL:!LOW:!EXP:!RC4:!MD5:@STRENGTH",
        "ECDHE+AESGCM:!RSA",
    ] {
        let port = free_tcp_port();
        let p = port.to_string();
        let mut srv = spawn(
            d,
            "server",
            &ncat(),
            &["--ssl", "-l", "127.0.0.1", &p],
            In::Null,
        );
        wait_tcp_listen(port);
        let (o, err) = run(&oxcat(), &["--ssl-ciphers", list, "127.0.0.1", &p], d);
        assert_eq!(o, Some(0), "{list}: {err}");
        srv.wait_ok(STEP);
    }
}

// ---------------------------------------------------------------- --stack user

/// TLS over our own stack, both roles, against the kernel's ncat, inside a
/// private network namespace (root only).
#[test]
fn tls_over_user_stack() {
    if !root_or_skip("tls_over_user_stack") {
        return;
    }
    let dir = tmpdir();
    let d = dir.path();
    let a = random_file(&d.join("a"), 1 << 20, 3);
    let b = random_file(&d.join("b"), 1 << 20, 4);
    let script = r#"
set -u
ip link set lo up
timeout 60 $OXCAT --stack user --ssl --test -l 1234 < $D/a > $D/ox_got_b 2> $D/ox1.err &
OX=$!
for i in $(seq 400); do grep -q "NCAT TEST: LISTEN" $D/ox1.err && break; sleep 0.05; done
timeout 60 $NCAT --ssl 198.18.0.2 1234 < $D/b > $D/nc_got_a
echo "ncat client: $?"
wait $OX; echo "oxcat listener: $?"
timeout 60 $NCAT --ssl -l 5555 < $D/b > $D/nc_got_a2 &
NC=$!
for i in $(seq 400); do ss -ltnH 'sport = :5555' | grep -q . && break; sleep 0.05; done
timeout 60 $OXCAT --stack user --ssl 198.18.0.1 5555 < $D/a > $D/ox_got_b2 2> $D/ox2.err
echo "oxcat client: $?"
wait $NC; echo "ncat listener: $?"
"#;
    let out = run_bounded(
        Command::new("unshare")
            .args(["--net", "bash", "-c", script])
            .env("OXCAT", oxcat())
            .env("NCAT", ncat())
            .env("D", d),
        Duration::from_secs(150),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let read = |n: &str| std::fs::read(d.join(n)).unwrap_or_default();
    let errs = format!(
        "{text}\n{}\n{}",
        String::from_utf8_lossy(&read("ox1.err")),
        String::from_utf8_lossy(&read("ox2.err"))
    );
    // ncat's listener may stop at the client's EOF; each side's received
    // data is what counts.
    assert_eq!(sha(&read("ox_got_b")), b, "ncat → oxcat -l: {errs}");
    assert_eq!(sha(&read("nc_got_a")), a, "oxcat -l → ncat: {errs}");
    assert_eq!(sha(&read("ox_got_b2")), b, "ncat -l → oxcat: {errs}");
    assert_eq!(sha(&read("nc_got_a2")), a, "oxcat → ncat -l: {errs}");
}
