//! `--broker` and `--chat` against the real ncat: the same script of
//! clients run against `ncat --chat -l` and `oxcat --chat -l` must give each
//! client the same transcript; a broker passes every client's bytes to the
//! others, and its stdin to all.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_tcp_port, ncat, oxcat, wait_tcp_listen, KillOnDrop};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// Everything that arrives until the line goes quiet.
fn drain(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..50 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pause() {
    std::thread::sleep(Duration::from_millis(150));
}

/// Three clients join, talk, one leaves, the server's stdin speaks: what each saw.
fn chat_script(server: &std::path::Path) -> Vec<String> {
    let port = free_tcp_port();
    let mut child = Command::new(server)
        .args(["--chat", "-l", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat server");
    let mut stdin = child.stdin.take().unwrap();
    let _guard = KillOnDrop(child);
    wait_tcp_listen(port);
    let mut a = connect(port);
    pause();
    let mut b = connect(port);
    pause();
    let mut c = connect(port);
    pause();
    a.write_all(b"hello from a\n").unwrap();
    pause();
    b.write_all(b"b says\x01 hi\r\n").unwrap();
    pause();
    stdin.write_all(b"the server speaks\n").unwrap();
    stdin.flush().unwrap();
    pause();
    drop(c.try_clone().unwrap());
    c.shutdown(std::net::Shutdown::Both).unwrap();
    pause();
    let seen_c = drain(&mut c);
    let seen_a = drain(&mut a);
    let seen_b = drain(&mut b);
    vec![seen_a, seen_b, seen_c]
}

#[test]
fn chat_transcripts_match_ncat() {
    let theirs = chat_script(&ncat());
    let ours = chat_script(&oxcat());
    assert!(
        theirs[0].contains("<announce> 127.0.0.1 is connected as <user"),
        "{theirs:?}"
    );
    for (who, (t, o)) in ["a", "b", "c"].iter().zip(theirs.iter().zip(&ours)) {
        assert_eq!(o, t, "client {who}: oxcat's transcript differs from ncat's");
    }
}

#[test]
fn broker_passes_bytes_to_the_others_and_stdin_to_all() {
    let port = free_tcp_port();
    let mut child = Command::new(oxcat())
        .args(["--broker", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let _guard = KillOnDrop(child);
    wait_tcp_listen(port);
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| {
            let c = connect(port);
            pause();
            c
        })
        .collect();
    clients[0].write_all(b"one to the others\n").unwrap();
    pause();
    stdin.write_all(b"from the broker\n").unwrap();
    stdin.flush().unwrap();
    pause();
    let seen: Vec<String> = clients.iter_mut().map(drain).collect();
    assert_eq!(
        seen[0], "from the broker\n",
        "a client does not hear itself"
    );
    assert_eq!(seen[1], "one to the others\nfrom the broker\n");
    assert_eq!(seen[2], "one to the others\nfrom the broker\n");
    // The clients' bytes do not go to the broker's stdout (as ncat).
    drop(_guard);
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    assert_eq!(out, "");
}

#[test]
fn broker_refuses_what_ncat_refuses() {
    for args in [
        &["--chat", "127.0.0.1", "1"][..],
        &["-l", "--broker", "-u", "1"],
        &["-l", "--broker", "-e", "/bin/cat", "1"],
    ] {
        let theirs = Command::new(ncat()).args(args).output().unwrap();
        let ours = Command::new(oxcat()).args(args).output().unwrap();
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
        let err = String::from_utf8_lossy(&ours.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}
