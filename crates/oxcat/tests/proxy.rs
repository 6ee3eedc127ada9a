//! Proxies, against the real ncat and real clients: oxcat's client through
//! ncat's own HTTP proxy (`ncat -l --proxy-type http`) and through SOCKS4/4a
//! and SOCKS5 servers (`tests/fixtures/socks_server.py`, standard-library
//! Python), with and without credentials; oxcat as an HTTP proxy for curl
//! (`-x`, CONNECT with `-p`, a plain GET to Python's http.server) and for
//! ncat's `--proxy`; and bad input run side by side with live ncat, which
//! must agree on the exit code while oxcat says what went wrong in one line.
//!
//! Network safety: every server binds 127.0.0.1 except ncat's HTTP proxy,
//! which (7.93) ignores the address it is given and binds the wildcard; it
//! runs with `--allow 127.0.0.1` so it serves nobody else.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_tcp_port, ncat, output_bounded, oxcat, wait_tcp_listen, KillOnDrop};

const LIMIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A server in this process on 127.0.0.1: each connection is served by `serve` on its own thread.
fn serve_tcp(serve: fn(TcpStream)) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || serve(c));
        }
    });
    port
}

/// Echoes everything, then half-closes after the client's EOF.
fn echo(mut c: TcpStream) {
    let mut buf = vec![0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = c.shutdown(Shutdown::Write);
}

/// Reads one line, answers `got: <line>` and closes: works through proxies
/// whose tunnel ends at the client's half-close (ncat's own).
fn line_service(c: TcpStream) {
    let mut line = String::new();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let _ = r.read_line(&mut line);
    let mut c = c;
    let _ = c.write_all(format!("got: {line}").as_bytes());
}

/// Sends a banner at once and closes.
fn banner(mut c: TcpStream) {
    let _ = c.write_all(b"banner from the target\n");
}

/// Runs a command with `input` on stdin, bounded.
fn run(bin: &Path, args: &[&str], input: &[u8]) -> Output {
    run_env(bin, args, input, &[])
}

fn run_env(bin: &Path, args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NCAT_PROXY_AUTH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = output_bounded(child, LIMIT, &format!("{} {args:?}", bin.display()));
    let _ = feeder.join();
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The SOCKS fixture: its port and the lines it logs, one per request.
struct Socks {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _child: KillOnDrop,
}

impl Socks {
    fn start(args: &[&str]) -> Socks {
        let mut child: Child = Command::new("python3")
            .arg(fixture("socks_server.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the SOCKS fixture");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        let port: u16 = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("SOCKS fixture said {first:?}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        Socks {
            port,
            log,
            _child: KillOnDrop(child),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits (bounded) for a log line containing `what`.
    fn saw(&self, what: &str) -> bool {
        common::wait_until(Duration::from_secs(5), || {
            self.log.lock().unwrap().iter().any(|l| l.contains(what))
        })
        .is_some()
    }
}

/// A listener of ours or ncat's, killed when dropped.
fn listen(bin: &Path, args: &[&str], port: u16) -> KillOnDrop {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn listener");
    let guard = KillOnDrop(child);
    wait_tcp_listen(port);
    guard
}

/// `oxcat -l --proxy-type http 127.0.0.1 PORT [extra]`.
fn oxcat_http_proxy(extra: &[&str]) -> (u16, KillOnDrop) {
    let port = free_tcp_port();
    let p = port.to_string();
    let mut args = vec!["-l", "--proxy-type", "http"];
    args.extend_from_slice(extra);
    args.extend(["127.0.0.1", p.as_str()]);
    let guard = listen(&oxcat(), &args, port);
    (port, guard)
}

/// `ncat -l --proxy-type http` (it binds every address; only loopback is served).
fn ncat_http_proxy(extra: &[&str]) -> (u16, KillOnDrop) {
    let port = free_tcp_port();
    let p = port.to_string();
    let mut args = vec!["-4", "-l", "--proxy-type", "http", "--allow", "127.0.0.1"];
    args.extend_from_slice(extra);
    args.extend(["127.0.0.1", p.as_str()]);
    let guard = listen(&ncat(), &args, port);
    (port, guard)
}

fn random(len: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..len).map(|_| rng.random()).collect()
}

// ---- oxcat's client through proxies -------------------------------------

#[test]
fn client_through_ncat_http_proxy() {
    let target = serve_tcp(line_service);
    let (proxy, _ncat) = ncat_http_proxy(&[]);
    let proxy = format!("127.0.0.1:{proxy}");
    let t = target.to_string();
    // ncat's tunnel ends at the client's half-close: --no-shutdown keeps it open for the answer.
    for host in ["127.0.0.1", "localhost"] {
        let o = run(
            &oxcat(),
            &["--no-shutdown", "--proxy", &proxy, host, &t],
            b"hello\n",
        );
        assert_eq!(o.status.code(), Some(0), "{host}: {}", stderr(&o));
        assert_eq!(stdout(&o), "got: hello\n", "{host}");
    }
    // --proxy-type http is the default; -v says where the name is resolved, as ncat does.
    let o = run(
        &oxcat(),
        &[
            "-v",
            "-4",
            "--no-shutdown",
            "--proxy",
            &proxy,
            "--proxy-type",
            "http",
            "--proxy-dns",
            "local",
            "localhost",
            &t,
        ],
        b"again\n",
    );
    assert_eq!(stdout(&o), "got: again\n");
    assert!(
        stderr(&o).contains("Host localhost locally resolved to 127.0.0.1."),
        "{}",
        stderr(&o)
    );
}

#[test]
fn client_through_oxcat_http_proxy_keeps_the_targets_first_bytes() {
    // The proxy's answer and the target's banner can arrive in one segment:
    // the handshake must leave the banner for the relay.
    let target = serve_tcp(banner);
    let (proxy, _p) = oxcat_http_proxy(&[]);
    let o = run(
        &oxcat(),
        &[
            "--recv-only",
            "--proxy",
            &format!("127.0.0.1:{proxy}"),
            "127.0.0.1",
            &target.to_string(),
        ],
        b"",
    );
    assert_eq!(stdout(&o), "banner from the target\n", "{}", stderr(&o));
}

/// A one-shot fake proxy. Each step reads a request (so many bytes, or an
/// HTTP head when 0) and answers it in a single write; then it closes.
fn fake_proxy(steps: &'static [(usize, &'static [u8])]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut c, _)) = l.accept() else { return };
        for (len, answer) in steps {
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while (*len == 0 && !got.ends_with(b"\r\n\r\n")) || (*len > 0 && got.len() < *len) {
                match c.read(&mut byte) {
                    Ok(1) => got.push(byte[0]),
                    _ => return,
                }
            }
            let _ = c.write_all(answer);
        }
    });
    port
}

#[test]
fn handshake_leaves_early_bytes_for_the_session() {
    // The proxy's answer and the target's first bytes in one segment: the
    // handshake takes only its answer, the rest is the session's, also for -c
    // (where ncat, which writes them to stdout, loses them).
    const HTTP: &[(usize, &[u8])] = &[(
        0,
        b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\nfirst line\n",
    )];
    // SOCKS5: the method choice, then a reply with a domain-name BND.ADDR.
    const SOCKS5: &[(usize, &[u8])] = &[
        (3, b"\x05\x00"),
        (10, b"\x05\x00\x00\x03\x04host\x00\x50first line\n"),
    ];
    for (kind, steps) in [("http", HTTP), ("socks5", SOCKS5)] {
        let proxy = format!("127.0.0.1:{}", fake_proxy(steps));
        let o = run(
            &oxcat(),
            &[
                "--recv-only",
                "--proxy",
                &proxy,
                "--proxy-type",
                kind,
                "127.0.0.1",
                "80",
            ],
            b"",
        );
        assert_eq!(stdout(&o), "first line\n", "{kind}: {}", stderr(&o));
        let proxy = format!("127.0.0.1:{}", fake_proxy(steps));
        let o = run(
            &oxcat(),
            &[
                "--proxy",
                &proxy,
                "--proxy-type",
                kind,
                "-c",
                "head -n1 >&2",
                "127.0.0.1",
                "80",
            ],
            b"",
        );
        assert_eq!(stderr(&o), "first line\n", "{kind} with -c");
    }
}

#[test]
fn client_through_socks4_and_socks4a() {
    let target = serve_tcp(echo);
    let t = target.to_string();
    let socks = Socks::start(&["--only", "4"]);
    let data = random(256 * 1024);
    let o = run(
        &oxcat(),
        &[
            "--proxy",
            &socks.addr(),
            "--proxy-type",
            "socks4",
            "127.0.0.1",
            &t,
        ],
        &data,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout == data, "256 KiB echoed through SOCKS4");
    assert!(socks.saw(&format!("SOCKS4 CONNECT 127.0.0.1:{target} user= -> ok")));
    // A name goes to the proxy (SOCKS4a) unless --proxy-dns local.
    let o = run(
        &oxcat(),
        &[
            "--proxy",
            &socks.addr(),
            "--proxy-type",
            "socks4",
            "localhost",
            &t,
        ],
        b"4a\n",
    );
    assert_eq!(stdout(&o), "4a\n", "{}", stderr(&o));
    assert!(socks.saw(&format!("SOCKS4A CONNECT localhost:{target}")));
    let o = run(
        &oxcat(),
        &[
            "--proxy",
            &socks.addr(),
            "--proxy-type",
            "socks4",
            "--proxy-dns",
            "local",
            "localhost",
            &t,
        ],
        b"local\n",
    );
    assert_eq!(stdout(&o), "local\n", "{}", stderr(&o));

    // A user id: the right one passes; a wrong one is refused as ncat reports it.
    let strict = Socks::start(&["--only", "4", "--userid", "joe"]);
    let o = run(
        &oxcat(),
        &[
            "--proxy",
            &strict.addr(),
            "--proxy-type",
            "socks4",
            "--proxy-auth",
            "joe",
            "localhost",
            &t,
        ],
        b"joe\n",
    );
    assert_eq!(stdout(&o), "joe\n", "{}", stderr(&o));
    assert!(strict.saw("user=joe -> ok"));
    let args = [
        "--proxy",
        &strict.addr(),
        "--proxy-type",
        "socks4",
        "--proxy-auth",
        "bob",
        "localhost",
        &t,
    ];
    same_failure(&args, 1, "Proxy connection failed");
}

#[test]
fn client_through_socks5_with_and_without_auth() {
    let target = serve_tcp(echo);
    let t = target.to_string();
    let open = Socks::start(&["--only", "5"]);
    let data = random(256 * 1024);
    let o = run(
        &oxcat(),
        &[
            "--proxy",
            &open.addr(),
            "--proxy-type",
            "socks5",
            "localhost",
            &t,
        ],
        &data,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout == data, "256 KiB echoed through SOCKS5");
    assert!(open.saw(&format!("SOCKS5 CONNECT name localhost:{target} -> ok")));
    // --proxy-dns local sends the address instead; an IPv6 literal goes as one.
    let o = run(
        &oxcat(),
        &[
            "--proxy",
            &open.addr(),
            "--proxy-type",
            "socks5",
            "--proxy-dns",
            "local",
            "-4",
            "localhost",
            &t,
        ],
        b"v4\n",
    );
    assert_eq!(stdout(&o), "v4\n", "{}", stderr(&o));
    assert!(open.saw(&format!("SOCKS5 CONNECT ipv4 127.0.0.1:{target} -> ok")));
    let o = run(
        &oxcat(),
        &["--proxy", &open.addr(), "--proxy-type", "socks5", "::1", &t],
        b"",
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "nothing listens on ::1: {}",
        stderr(&o)
    );
    assert!(open.saw(&format!("SOCKS5 CONNECT ipv6 [::1]:{target}")));

    // RFC 1929 username/password, from the flag or from NCAT_PROXY_AUTH.
    let auth = Socks::start(&["--only", "5", "--user", "joe", "--password", "s3cret"]);
    let o = run(
        &oxcat(),
        &[
            "-v",
            "--proxy",
            &auth.addr(),
            "--proxy-type",
            "socks5",
            "--proxy-auth",
            "joe:s3cret",
            "127.0.0.1",
            &t,
        ],
        b"auth\n",
    );
    assert_eq!(stdout(&o), "auth\n", "{}", stderr(&o));
    let err = stderr(&o);
    for line in [
        format!("Connected to proxy 127.0.0.1:{}", auth.port),
        "Doing username and password authentication.".into(),
        "connection succeeded.".into(),
    ] {
        assert!(err.contains(&line), "missing {line:?} in {err}");
    }
    let o = run_env(
        &oxcat(),
        &[
            "--proxy",
            &auth.addr(),
            "--proxy-type",
            "socks5",
            "127.0.0.1",
            &t,
        ],
        b"env\n",
        &[("NCAT_PROXY_AUTH", "joe:s3cret")],
    );
    assert_eq!(stdout(&o), "env\n", "{}", stderr(&o));
    assert!(auth.saw("SOCKS5 AUTH user=joe ok"));
}

#[test]
fn zero_io_and_exec_through_a_proxy() {
    let target = serve_tcp(echo);
    let socks = Socks::start(&["--only", "5"]);
    let closed = free_tcp_port().to_string();
    let ok = run(
        &oxcat(),
        &[
            "-z",
            "--proxy",
            &socks.addr(),
            "--proxy-type",
            "socks5",
            "127.0.0.1",
            &target.to_string(),
        ],
        b"",
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let args = [
        "-z",
        "--proxy",
        &socks.addr(),
        "--proxy-type",
        "socks5",
        "127.0.0.1",
        &closed,
    ];
    same_failure(&args, 1, "Connection refused");
    // -c runs over the tunnel: the program talks to the target (its stderr is ours).
    let o = run(
        &oxcat(),
        &[
            "--proxy",
            &socks.addr(),
            "--proxy-type",
            "socks5",
            "-c",
            "echo through; head -n1 >&2",
            "127.0.0.1",
            &target.to_string(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "through\n");
}

#[test]
fn wait_bounds_a_silent_proxy() {
    // A proxy that accepts and never answers: ncat would wait forever; -w bounds it.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held = std::thread::spawn(move || l.accept().map(|(c, _)| c));
    let start = Instant::now();
    let o = run(
        &oxcat(),
        &[
            "-w",
            "1",
            "--proxy",
            &format!("127.0.0.1:{port}"),
            "--proxy-type",
            "socks5",
            "127.0.0.1",
            "9",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(8));
    assert!(stderr(&o).contains("TIMEOUT"), "{}", stderr(&o));
    drop(held);
}

// ---- oxcat as an HTTP proxy -------------------------------------------

fn curl() -> PathBuf {
    common::peer("curl")
}

/// Python's http.server on 127.0.0.1 serving a directory with `hello.txt`.
fn http_server() -> (u16, tempfile::TempDir, KillOnDrop) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello over http\n").unwrap();
    let port = free_tcp_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let guard = KillOnDrop(child);
    wait_tcp_listen(port);
    (port, dir, guard)
}

fn curl_via(proxy: &str, extra: &[&str], url: &str) -> Output {
    let mut args = vec!["-s", "-S", "--max-time", "10", "-x", proxy];
    args.extend_from_slice(extra);
    args.push(url);
    run(&curl(), &args, b"")
}

#[test]
fn oxcat_http_proxy_serves_curl() {
    let (web, _dir, _web) = http_server();
    let (proxy, _p) = oxcat_http_proxy(&["-k"]);
    let proxy = format!("http://127.0.0.1:{proxy}");
    let url = format!("http://127.0.0.1:{web}/hello.txt");
    // A plain GET with an absolute URI, forwarded.
    let o = curl_via(&proxy, &[], &url);
    assert_eq!(stdout(&o), "hello over http\n", "{}", stderr(&o));
    // CONNECT (curl -p), then the request inside the tunnel.
    let o = curl_via(&proxy, &["-p"], &url);
    assert_eq!(stdout(&o), "hello over http\n", "{}", stderr(&o));
    // HEAD: the answer's head, hop-by-hop fields replaced by Connection: close.
    let o = curl_via(&proxy, &["-I"], &url);
    let head = stdout(&o);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Length: 16\r\n") && head.contains("Connection: close\r\n"),
        "{head}"
    );
    // POST reaches the origin (http.server has no POST: its 501 comes back).
    let o = curl_via(
        &proxy,
        &["-o", "/dev/null", "-w", "%{http_code}", "--data", "x=1"],
        &url,
    );
    assert_eq!(stdout(&o), "501", "{}", stderr(&o));
    // A missing file is the origin's 404, passed on.
    let o = curl_via(
        &proxy,
        &["-o", "/dev/null", "-w", "%{http_code}"],
        &format!("http://127.0.0.1:{web}/nope"),
    );
    assert_eq!(stdout(&o), "404");
    // Nothing listening behind the proxy: ncat's 504 for both kinds.
    let dead = format!("http://127.0.0.1:{}/", free_tcp_port());
    let o = curl_via(&proxy, &["-o", "/dev/null", "-w", "%{http_code}"], &dead);
    assert_eq!(stdout(&o), "504");
}

/// `-l --proxy-type http --ssl`: an HTTPS-speaking proxy (the client's
/// connection to the proxy is TLS), for curl's `-x https://` with a plain
/// request and with a CONNECT tunnel, as ncat's proxy serves them.
#[test]
fn https_proxy_serves_curl_as_ncat_does() {
    let (web, _dir, _web) = http_server();
    let url = format!("http://127.0.0.1:{web}/hello.txt");
    let (ours, _o) = oxcat_http_proxy(&["-k", "--ssl"]);
    let (theirs, _n) = ncat_http_proxy(&["--ssl"]);
    for (who, port) in [("ncat", theirs), ("oxcat", ours)] {
        let proxy = format!("https://127.0.0.1:{port}");
        for extra in [&["--proxy-insecure"][..], &["--proxy-insecure", "-p"]] {
            let o = curl_via(&proxy, extra, &url);
            assert_eq!(
                stdout(&o),
                "hello over http\n",
                "{who} {extra:?}: {}",
                stderr(&o)
            );
        }
    }
    // Plain HTTP to the TLS proxy gets no answer.
    let o = curl_via(&format!("http://127.0.0.1:{ours}"), &[], &url);
    assert_ne!(o.status.code(), Some(0));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

/// `--ssl` through a proxy: TLS with the target over the tunnel, and `-v`
/// names the target as given (not the proxy), as ncat does.
#[test]
fn tls_through_a_proxy_names_the_target_as_ncat_does() {
    let (proxy, _p) = ncat_http_proxy(&[]);
    let proxy = format!("127.0.0.1:{proxy}");
    for (bin, attempts) in [(ncat(), 3), (oxcat(), 1)] {
        // ncat 7.93 as the client now and then ends this exchange with
        // "Input/output error" (seen once in CI): the reference gets three
        // tries, oxcat one.
        let mut tries = 0;
        let (o, port) = loop {
            tries += 1;
            let port = free_tcp_port();
            let p = port.to_string();
            let _server = listen(&ncat(), &["--ssl", "-l", "127.0.0.1", &p], port);
            let o = run(
                &bin,
                &["-v", "--ssl", "--proxy", &proxy, "localhost", &p],
                b"over TLS through a proxy\n",
            );
            if o.status.code() == Some(0) || tries == attempts {
                break (o, port);
            }
        };
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let want = format!("SSL connection to localhost:{port}.");
        assert!(
            stderr(&o).contains(&want),
            "{}: {}",
            bin.display(),
            stderr(&o)
        );
    }
}

#[test]
fn oxcat_http_proxy_answers_as_ncat_does() {
    // The same raw requests to both proxies: the same status lines.
    let (web, _dir, _web) = http_server();
    let (ours, _o) = oxcat_http_proxy(&[]);
    let (theirs, _n) = ncat_http_proxy(&[]);
    let requests = [
        "FOO http://127.0.0.1:{web}/ HTTP/1.0\r\n\r\n".to_string(),
        "garbage\r\n\r\n".to_string(),
        "CONNECT 127.0.0.1 HTTP/1.0\r\n\r\n".to_string(),
        "GET /relative HTTP/1.0\r\n\r\n".to_string(),
        "GET ftp://127.0.0.1:{web}/ HTTP/1.0\r\n\r\n".to_string(),
        "POST http://127.0.0.1:{web}/hello.txt HTTP/1.0\r\n\r\n".to_string(),
        format!("CONNECT 127.0.0.1:{} HTTP/1.0\r\n\r\n", free_tcp_port()),
        "GET http://127.0.0.1:{web}/hello.txt HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
            .to_string(),
    ];
    for req in requests {
        let req = req.replace("{web}", &web.to_string());
        let first_line = |port: u16| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            let text = String::from_utf8_lossy(&answer).into_owned();
            text.lines().next().unwrap_or("").to_string()
        };
        assert_eq!(first_line(ours), first_line(theirs), "request {req:?}");
    }
    // A request for the proxy itself would loop: 403, as ncat answers.
    let mut s = TcpStream::connect(("127.0.0.1", ours)).unwrap();
    s.write_all(format!("GET http://127.0.0.1:{ours}/ HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert_eq!(answer, "HTTP/1.0 403 Forbidden\r\n\r\n");
}

#[test]
fn oxcat_http_proxy_requires_basic_auth() {
    let (web, _dir, _web) = http_server();
    let (proxy, _p) = oxcat_http_proxy(&["--proxy-auth", "alice:wonder"]);
    let url = format!("http://127.0.0.1:{web}/hello.txt");
    let plain = format!("http://127.0.0.1:{proxy}");
    let o = curl_via(&plain, &["-i"], &url);
    let answer = stdout(&o);
    assert!(
        answer.starts_with("HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"Ncat\"\r\n"),
        "{answer}"
    );
    let o = curl_via(
        &plain,
        &["-p", "-o", "/dev/null", "-w", "%{http_code}"],
        &url,
    );
    assert_ne!(
        o.status.code(),
        Some(0),
        "CONNECT without credentials must fail"
    );
    let with = format!("http://alice:wonder@127.0.0.1:{proxy}");
    assert_eq!(stdout(&curl_via(&with, &[], &url)), "hello over http\n");
    assert_eq!(stdout(&curl_via(&with, &["-p"], &url)), "hello over http\n");
    let wrong = format!("http://alice:nope@127.0.0.1:{proxy}");
    let o = curl_via(&wrong, &["-o", "/dev/null", "-w", "%{http_code}"], &url);
    assert_eq!(stdout(&o), "407");

    // ncat's client (Basic after the 407) and ours (Basic at once) get through;
    // without credentials both fail alike.
    let target = serve_tcp(line_service);
    let p = format!("127.0.0.1:{proxy}");
    let t = target.to_string();
    for bin in [ncat(), oxcat()] {
        let o = run(
            &bin,
            &[
                "--proxy",
                &p,
                "--proxy-auth",
                "alice:wonder",
                "127.0.0.1",
                &t,
            ],
            b"hi\n",
        );
        assert_eq!(stdout(&o), "got: hi\n", "{}: {}", bin.display(), stderr(&o));
    }
    same_failure(
        &["--proxy", &p, "127.0.0.1", &t],
        1,
        "Proxy returned status code 407",
    );
    same_failure(
        &["--proxy", &p, "--proxy-auth", "alice:x", "127.0.0.1", &t],
        1,
        "Proxy returned status code 407",
    );
}

#[test]
fn ncat_client_through_oxcat_http_proxy() {
    let target = serve_tcp(echo);
    let (proxy, _p) = oxcat_http_proxy(&[]);
    let data = random(512 * 1024);
    let o = run(
        &ncat(),
        &[
            "--proxy",
            &format!("127.0.0.1:{proxy}"),
            "127.0.0.1",
            &target.to_string(),
        ],
        &data,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Our tunnel passes the half-close on, so the echo comes back whole.
    assert!(
        o.stdout == data,
        "512 KiB echoed ({} bytes back)",
        o.stdout.len()
    );
}

#[test]
fn oxcat_http_proxy_serves_clients_concurrently() {
    let target = serve_tcp(line_service);
    let (proxy, _p) = oxcat_http_proxy(&["-k"]);
    // Eight tunnels open at once; each is answered while all are open.
    let mut tunnels = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut head = [0u8; 19];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.0 200 OK\r\n\r\n");
        tunnels.push(s);
    }
    for (i, s) in tunnels.iter_mut().enumerate() {
        s.write_all(format!("client {i}\n").as_bytes()).unwrap();
    }
    for (i, s) in tunnels.iter_mut().enumerate() {
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, format!("got: client {i}\n"));
    }
}

// ---- bad input, side by side with ncat ---------------------------------

/// Runs `args` with ncat and with oxcat: both must exit with `code`, and
/// oxcat must say so in one line that mentions `key` (ncat's words).
fn same_failure(args: &[&str], code: i32, key: &str) {
    let theirs = run(&ncat(), args, b"");
    let ours = run(&oxcat(), args, b"");
    assert_eq!(
        theirs.status.code(),
        Some(code),
        "ncat {args:?} (the expectation is stale?): {}",
        stderr(&theirs)
    );
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "oxcat {args:?} vs ncat: {} / {}",
        stderr(&ours),
        stderr(&theirs)
    );
    let err = stderr(&ours);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "oxcat {args:?}: one line, got {err:?}");
    assert!(
        lines[0].contains(key),
        "oxcat {args:?}: {:?} lacks {key:?}",
        lines[0]
    );
    assert!(
        stderr(&theirs).contains(key),
        "ncat {args:?} said {:?}, not {key:?}",
        stderr(&theirs)
    );
}

#[test]
fn bad_proxy_input_matches_ncat() {
    let target = serve_tcp(echo).to_string();
    let closed = format!("127.0.0.1:{}", free_tcp_port());
    let auth = Socks::start(&["--only", "5", "--user", "joe", "--password", "s3cret"]);
    let refusing = Socks::start(&["--reply", "5"]);
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        // The proxy is not there.
        (
            vec!["--proxy", &closed, "127.0.0.1", &target]
                .into_iter()
                .map(String::from)
                .collect(),
            1,
            "Proxy connection failed: Connection refused",
        ),
        (
            vec![
                "--proxy",
                &closed,
                "--proxy-type",
                "socks5",
                "127.0.0.1",
                &target,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            1,
            "Proxy connection failed: Connection refused",
        ),
        // The proxy refuses our credentials, or wants some.
        (
            vec![
                "--proxy".into(),
                auth.addr(),
                "--proxy-type".into(),
                "socks5".into(),
                "--proxy-auth".into(),
                "joe:wrong".into(),
                "127.0.0.1".into(),
                target.clone(),
            ],
            1,
            "Error: authentication failed",
        ),
        (
            vec![
                "--proxy".into(),
                auth.addr(),
                "--proxy-type".into(),
                "socks5".into(),
                "127.0.0.1".into(),
                target.clone(),
            ],
            1,
            "no acceptable authentication method",
        ),
        // Malformed --proxy-auth: SOCKS5 needs user:pass.
        (
            vec![
                "--proxy".into(),
                auth.addr(),
                "--proxy-type".into(),
                "socks5".into(),
                "--proxy-auth".into(),
                "joe".into(),
                "127.0.0.1".into(),
                target.clone(),
            ],
            1,
            "invalid username:password combo",
        ),
        // The proxy cannot reach the target.
        (
            vec![
                "--proxy".into(),
                refusing.addr(),
                "--proxy-type".into(),
                "socks5".into(),
                "127.0.0.1".into(),
                target.clone(),
            ],
            1,
            "Error: Connection refused",
        ),
        (
            vec![
                "--proxy".into(),
                refusing.addr(),
                "--proxy-type".into(),
                "socks4".into(),
                "127.0.0.1".into(),
                target.clone(),
            ],
            1,
            "Proxy connection failed",
        ),
        // Names and addresses the proxy cannot take.
        (
            vec![
                "--proxy".into(),
                auth.addr(),
                "--proxy-type".into(),
                "socks4".into(),
                "::1".into(),
                target.clone(),
            ],
            1,
            "IPv6 addresses are not supported with Socks4",
        ),
        (
            vec![
                "--proxy".into(),
                closed.clone(),
                "--proxy-dns".into(),
                "none".into(),
                "localhost".into(),
                target.clone(),
            ],
            1,
            "Proxy connection failed",
        ),
        (
            vec!["--proxy", "no-such-proxy.invalid", "127.0.0.1", &target]
                .into_iter()
                .map(String::from)
                .collect(),
            1,
            "Could not resolve proxy \"no-such-proxy.invalid\"",
        ),
        // Usage errors.
        (
            vec![
                "--proxy",
                &closed,
                "--proxy-type",
                "socks6",
                "127.0.0.1",
                &target,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            2,
            "Invalid proxy type \"socks6\"",
        ),
        (
            vec![
                "--proxy",
                &closed,
                "--proxy-dns",
                "sometimes",
                "127.0.0.1",
                &target,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            2,
            "Invalid proxy DNS type",
        ),
        (
            vec!["--proxy-type", "socks5", "127.0.0.1", &target]
                .into_iter()
                .map(String::from)
                .collect(),
            2,
            "Proxy type (--proxy-type) specified without proxy address (--proxy)",
        ),
        (
            vec!["--proxy", "127.0.0.1:99999", "127.0.0.1", &target]
                .into_iter()
                .map(String::from)
                .collect(),
            2,
            "Invalid proxy port number \"99999\"",
        ),
        (
            vec!["--proxy", "[::1", "127.0.0.1", &target]
                .into_iter()
                .map(String::from)
                .collect(),
            2,
            "Invalid proxy IPv6 address",
        ),
        (
            vec!["-l", "--proxy", &closed, "1"]
                .into_iter()
                .map(String::from)
                .collect(),
            2,
            "Invalid option combination: --proxy and -l",
        ),
        (
            vec!["-l", "--proxy-type", "socks5", "1"]
                .into_iter()
                .map(String::from)
                .collect(),
            2,
            "Ncat proxy server only supports \"http\"",
        ),
        (
            vec!["-U", "--proxy", &closed, "/tmp/oxcat-proxy-test.sock"]
                .into_iter()
                .map(String::from)
                .collect(),
            2,
            "Proxy option not supported when using Unix domain sockets",
        ),
    ];
    for (args, code, key) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        same_failure(&args, *code, key);
    }
    // --proxy-dns none takes only literals: ncat says so once it reached the proxy.
    let open = Socks::start(&["--only", "5"]);
    same_failure(
        &[
            "--proxy",
            &open.addr(),
            "--proxy-type",
            "socks5",
            "--proxy-dns",
            "none",
            "localhost",
            &target,
        ],
        1,
        "Error: Failed to resolve host localhost locally",
    );
}
