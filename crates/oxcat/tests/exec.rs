//! `-e`/`-c`/`--lua-exec`: the program runs on pipes and oxcat relays, as
//! ncat's `netexec` does. Side by side with ncat 7.93 over loopback: with
//! UDP every datagram reaches a program that reads its input a line at a
//! time (a shell's `read` takes one byte per read(2); on the socket itself
//! each read took a whole datagram and lost the rest), in connect, listen
//! and `-l -k` modes; the program's output goes out in datagrams of at most
//! 8 KiB; the session ends, with exit 0 whatever the program's status, when
//! the program's output ends (or, with UDP, on an empty datagram or a peer
//! whose port is closed). For TCP: exit 0, `-C` on the program's output,
//! and the end of the session when the program closes its stdout.
//!
//! The test is the peer itself (std sockets), so each step waits for the
//! reply it expects, bounded, and never sleeps to sequence.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Bound for one step (the machine may be shared and busy).
const STEP: Duration = Duration::from_secs(30);

/// The binary under test: oxcat, or the one OXCAT_EXEC_SUBJECT names (ncat,
/// to check the harness; an older oxcat, to see the tests fail on it).
fn subject() -> PathBuf {
    std::env::var_os("OXCAT_EXEC_SUBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(oxcat)
}

/// A program that answers each line it reads.
const LINES: &str = r#"while read l; do echo "got:$l"; done"#;

/// A started listener or client, killed if the test fails.
struct Run {
    child: KillOnDrop,
    err: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Run {
    fn drop(&mut self) {
        // The whole group (its pid is the listener's); then `child` waits.
        if let Ok(pid) = i32::try_from(self.child.0.id()) {
            // SAFETY: kill(2) with a negative pid signals that process
            // group; no memory is involved.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

impl Run {
    fn start(bin: &Path, args: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let err = dir.path().join("stderr");
        // A process group of its own: ncat's `-u -l -k -c` forks a child
        // per sender that outlives a kill of the listener alone.
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Run {
            child: KillOnDrop(child),
            err,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.err).unwrap_or_default()).into_owned()
    }

    fn wait(&mut self, limit: Duration, what: &str) -> ExitStatus {
        wait_bounded(&mut self.child.0, limit, what)
    }

    fn running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }
}

/// A UDP peer on 127.0.0.1, driven by the test.
struct Peer {
    sock: UdpSocket,
}

impl Peer {
    fn bind() -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(STEP)).unwrap();
        Peer { sock }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    fn to(port: u16) -> Peer {
        let p = Peer::bind();
        p.sock.connect(("127.0.0.1", port)).unwrap();
        p
    }

    fn send(&self, data: &[u8]) {
        self.sock.send(data).unwrap();
    }

    /// The first datagram from whoever sends one; the peer is then connected to it.
    fn first(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 65536];
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no first datagram: {e}"));
        self.sock.connect(from).unwrap();
        (buf[..n].to_vec(), from)
    }

    /// Datagrams until their bytes add up to `want.len()`; checks the bytes.
    fn expect(&self, want: &[u8], what: &str) -> Vec<Vec<u8>> {
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.iter().map(Vec::len).sum::<usize>() < want.len() {
            match self.sock.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(e) => panic!(
                    "{what}: waiting for {} bytes ({:?}...), got {:?}: {e}",
                    want.len(),
                    String::from_utf8_lossy(&want[..want.len().min(40)]),
                    got.iter()
                        .map(|d| String::from_utf8_lossy(&d[..d.len().min(40)]).into_owned())
                        .collect::<Vec<_>>()
                ),
            }
        }
        assert_eq!(got.concat(), want, "{what}");
        got
    }
}

/// `-u -l -c LINES`: a line per datagram, two lines in one datagram, one
/// line across two datagrams, then an empty datagram ends the session.
/// Returns everything the program answered and the exit status.
fn udp_listen_lines(bin: &Path, exec: &[&str]) -> (Vec<u8>, ExitStatus) {
    let port = free_udp_port();
    let ps = port.to_string();
    let mut args = vec!["-u", "-l", "127.0.0.1", &ps];
    args.extend(exec);
    let mut srv = Run::start(bin, &args);
    wait_udp_bound(port);
    let peer = Peer::to(port);
    let mut all = Vec::new();
    let what = format!("{} -u -l {exec:?}", bin.display());
    for (send, want) in [
        (&[b"a\n".as_slice()][..], b"got:a\n".as_slice()),
        (&[b"b\nc\n"], b"got:b\ngot:c\n"),
        (&[b"d", b"e\n"], b"got:de\n"),
    ] {
        for d in send {
            peer.send(d);
        }
        all.extend(peer.expect(want, &what).concat());
    }
    // ncat ends the session on an empty datagram, as on EOF.
    peer.send(b"");
    let status = srv.wait(STEP, &what);
    assert_eq!(srv.stderr(), "", "{what}");
    (all, status)
}

#[test]
fn udp_listen_line_reader_gets_every_datagram_as_ncat() {
    let (want, ncat_status) = udp_listen_lines(&ncat(), &["-c", LINES]);
    assert_eq!(want, b"got:a\ngot:b\ngot:c\ngot:de\n");
    assert_eq!(ncat_status.code(), Some(0));
    let (got, status) = udp_listen_lines(&subject(), &["-c", LINES]);
    assert_eq!(got, want, "oxcat");
    assert_eq!(status.code(), Some(0), "oxcat");
}

/// `-e` with a script file, and `--lua-exec`: the same transcript.
#[test]
fn udp_listen_exec_and_lua_exec_read_lines() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("lines.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{LINES}\n")).unwrap();
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
    let lua = dir.path().join("lines.lua");
    std::fs::write(
        &lua,
        "for line in io.lines() do io.write('got:' .. line .. '\\n') io.flush() end\n",
    )
    .unwrap();
    let want = b"got:a\ngot:b\ngot:c\ngot:de\n".to_vec();
    let (got, status) = udp_listen_lines(&ncat(), &["-e", script.to_str().unwrap()]);
    assert_eq!((got, status.code()), (want.clone(), Some(0)), "ncat -e");
    let (got, status) = udp_listen_lines(&subject(), &["-e", script.to_str().unwrap()]);
    assert_eq!((got, status.code()), (want.clone(), Some(0)), "oxcat -e");
    let (got, status) = udp_listen_lines(&subject(), &["--lua-exec", lua.to_str().unwrap()]);
    assert_eq!((got, status.code()), (want, Some(0)), "oxcat --lua-exec");
}

/// `-u HOST PORT -c ...`: the program speaks first, reads lines, and exits 3
/// on "quit"; ncat then exits 0.
fn udp_connect_lines(bin: &Path) -> (Vec<u8>, ExitStatus) {
    let peer = Peer::bind();
    let ps = peer.port().to_string();
    let prog = r#"echo hello; while read l; do echo "got:$l"; [ "$l" = quit ] && exit 3; done"#;
    let mut cli = Run::start(bin, &["-u", "127.0.0.1", &ps, "-c", prog]);
    let what = format!("{} -u 127.0.0.1 PORT -c", bin.display());
    let (first, _) = peer.first();
    let mut all = first;
    for (send, want) in [
        (&[b"a\n".as_slice()][..], b"got:a\n".as_slice()),
        (&[b"b\nc\n"], b"got:b\ngot:c\n"),
        (&[b"qu", b"it\n"], b"got:quit\n"),
    ] {
        for d in send {
            peer.send(d);
        }
        all.extend(peer.expect(want, &what).concat());
    }
    let status = cli.wait(STEP, &what);
    assert_eq!(cli.stderr(), "", "{what}");
    (all, status)
}

#[test]
fn udp_connect_line_reader_gets_every_datagram_and_exits_0_as_ncat() {
    let (want, status) = udp_connect_lines(&ncat());
    assert_eq!(want, b"hello\ngot:a\ngot:b\ngot:c\ngot:quit\n");
    assert_eq!(status.code(), Some(0), "ncat");
    let (got, status) = udp_connect_lines(&subject());
    assert_eq!(got, want);
    assert_eq!(
        status.code(),
        Some(0),
        "oxcat: the program's 3 is not ncat's"
    );
}

/// `-u -l -k -c`: two senders, interleaved, each with its own program that
/// sees every line it sent and only those.
fn udp_keep_open_lines(bin: &Path) -> Vec<u8> {
    let port = free_udp_port();
    let ps = port.to_string();
    let prog = r#"while read l; do echo "$l from $NCAT_REMOTE_PORT"; done"#;
    let mut srv = Run::start(bin, &["-u", "-l", "-k", "127.0.0.1", &ps, "-c", prog]);
    wait_udp_bound(port);
    let what = format!("{} -u -l -k", bin.display());
    let (a, b) = (Peer::to(port), Peer::to(port));
    let mut all = Vec::new();
    for (peer, name, send, lines) in [
        (&a, "a", &[b"a1\n".as_slice()][..], &["a1"][..]),
        (&b, "b", &[b"b1\n"], &["b1"]),
        (&a, "a", &[b"a2\na3\n"], &["a2", "a3"]),
        (&b, "b", &[b"b", b"2\n"], &["b2"]),
    ] {
        for d in send {
            peer.send(d);
        }
        let want: String = lines
            .iter()
            .map(|l| format!("{l} from {}\n", peer.port()))
            .collect();
        let got = peer.expect(want.as_bytes(), &what).concat();
        all.extend(format!("{name}: ").as_bytes());
        all.extend(
            String::from_utf8(got)
                .unwrap()
                .replace(&peer.port().to_string(), "PORT")
                .as_bytes(),
        );
    }
    assert!(srv.running(), "{what} quit: {}", srv.stderr());
    all
}

#[test]
fn udp_keep_open_line_readers_get_every_datagram_as_ncat() {
    let want = udp_keep_open_lines(&ncat());
    assert_eq!(
        String::from_utf8_lossy(&want),
        "a: a1 from PORT\nb: b1 from PORT\na: a2 from PORT\na3 from PORT\nb: b2 from PORT\n"
    );
    assert_eq!(udp_keep_open_lines(&subject()), want);
}

/// A program that writes several lines and then 40000 bytes at once: the
/// bytes all arrive, in datagrams of at most 8 KiB (ncat reads its program's
/// output 8 KiB at a time, each read one datagram), and the session ends
/// with the program's output.
fn udp_program_output(bin: &Path) -> (Vec<u8>, usize, ExitStatus) {
    let port = free_udp_port();
    let ps = port.to_string();
    let prog = r#"read l; for i in 1 2 3; do echo "$l-$i"; done; dd if=/dev/zero bs=40000 count=1 2>/dev/null"#;
    let mut srv = Run::start(bin, &["-u", "-l", "127.0.0.1", &ps, "-c", prog]);
    wait_udp_bound(port);
    let peer = Peer::to(port);
    peer.send(b"x\n");
    let mut want = b"x-1\nx-2\nx-3\n".to_vec();
    want.extend(vec![0u8; 40000]);
    let what = format!(
        "{} -u -l -c (several lines, then 40000 bytes)",
        bin.display()
    );
    let got = peer.expect(&want, &what);
    let largest = got.iter().map(Vec::len).max().unwrap_or(0);
    let status = srv.wait(STEP, &what);
    (got.concat(), largest, status)
}

#[test]
fn udp_program_output_in_8k_datagrams_as_ncat() {
    let (want, largest, status) = udp_program_output(&ncat());
    assert_eq!(largest, 8192, "ncat");
    assert_eq!(status.code(), Some(0), "ncat");
    let (got, largest, status) = udp_program_output(&subject());
    assert!(got == want, "oxcat: the bytes differ");
    assert_eq!(largest, 8192, "oxcat");
    assert_eq!(status.code(), Some(0), "oxcat");
}

/// A UDP peer whose port is closed (ICMP port unreachable) ends the session
/// quietly, exit 0, while the program would still run for long.
fn udp_refused(bin: &Path) -> (ExitStatus, String, Duration) {
    let port = free_udp_port().to_string();
    let start = Instant::now();
    let mut cli = Run::start(
        bin,
        &[
            "-u",
            "127.0.0.1",
            &port,
            "-c",
            "echo hi; sleep 0.5; echo again; sleep 20",
        ],
    );
    let status = cli.wait(STEP, &format!("{} -u to a closed port", bin.display()));
    (status, cli.stderr(), start.elapsed())
}

#[test]
fn udp_closed_port_ends_the_session_quietly_as_ncat() {
    for bin in [ncat(), subject()] {
        let (status, err, took) = udp_refused(&bin);
        assert_eq!(status.code(), Some(0), "{}", bin.display());
        assert_eq!(err, "", "{}", bin.display());
        assert!(
            took < Duration::from_secs(15),
            "{}: {took:?}",
            bin.display()
        );
    }
}

/// TCP: `-C` applies to the program's output, and the run exits 0 although
/// the program exits 3.
fn tcp_crlf_and_status(bin: &Path) -> (Vec<u8>, ExitStatus) {
    let port = free_tcp_port();
    let ps = port.to_string();
    let prog = r#"read l; echo "got:$l"; echo second; exit 3"#;
    let mut srv = Run::start(bin, &["-l", "-C", "127.0.0.1", &ps, "-c", prog]);
    wait_tcp_listen(port);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    s.write_all(b"a\n").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let status = srv.wait(STEP, &format!("{} -l -C -c", bin.display()));
    (got, status)
}

#[test]
fn tcp_exec_crlf_and_exit_status_as_ncat() {
    let (want, status) = tcp_crlf_and_status(&ncat());
    assert_eq!(want, b"got:a\r\nsecond\r\n");
    assert_eq!(status.code(), Some(0), "ncat");
    let (got, status) = tcp_crlf_and_status(&subject());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(status.code(), Some(0), "oxcat");
}

/// TCP: the session lasts until the program exits, also after it closed
/// its stdout: what the peer sends still reaches it (in ncat the program
/// holds a second descriptor of its stdout pipe, so ncat's relay goes on).
fn tcp_stdout_closed(bin: &Path) -> (Vec<u8>, Vec<u8>, ExitStatus) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("later");
    let port = free_tcp_port();
    let ps = port.to_string();
    let prog = format!(
        r#"echo hi; exec >&-; read l; echo "$l" > {}"#,
        file.display()
    );
    let mut srv = Run::start(bin, &["-l", "127.0.0.1", &ps, "-c", &prog]);
    wait_tcp_listen(port);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut hi = [0u8; 3];
    s.read_exact(&mut hi).unwrap();
    s.write_all(b"later\n").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let status = srv.wait(STEP, &format!("{} -l -c (stdout closed)", bin.display()));
    let mut got = hi.to_vec();
    got.extend(rest);
    (got, std::fs::read(&file).unwrap_or_default(), status)
}

#[test]
fn tcp_program_that_closed_stdout_still_gets_input_as_ncat() {
    for bin in [ncat(), subject()] {
        let (got, later, status) = tcp_stdout_closed(&bin);
        assert_eq!(got, b"hi\n", "{}", bin.display());
        assert_eq!(later, b"later\n", "{}", bin.display());
        assert_eq!(status.code(), Some(0), "{}", bin.display());
    }
}
