//! `-t`: Telnet negotiations answered as ncat answers them (WONT for
//! DO/DONT, DONT for WILL/WONT, only for commands at the start of what
//! arrived), the bytes passed to stdout unchanged, by a client and by a
//! `-k` listener. Compared with live ncat.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_tcp_port, ncat, oxcat, wait_tcp_listen, wait_until, KillOnDrop};

/// Runs `tool -t` against a server that sends Telnet commands; returns
/// (what the tool answered, what it wrote to stdout).
fn negotiate(tool: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let child = Command::new(tool)
        .args(["-t", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let (mut c, _) = l.accept().unwrap();
    c.write_all(&[
        255, 253, 1, 255, 251, 3, b'h', b'i', b'\n', 255, 254, 5, b'x', b'\n',
    ])
    .unwrap();
    let answer = read_answer(&mut c);
    drop(c);
    drop(guard.0.stdin.take());
    let mut out = Vec::new();
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    (answer, out)
}

/// The two answers (6 bytes), however the tool splits them (ncat writes one
/// per command), or what came before the peer stopped sending (bounded).
fn read_answer(c: &mut TcpStream) -> Vec<u8> {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let mut piece = [0u8; 64];
    while answer.len() < 6 {
        match c.read(&mut piece) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&piece[..n]),
        }
    }
    answer
}

#[test]
fn telnet_answers_match_ncat() {
    let theirs = negotiate(&ncat());
    let ours = negotiate(&oxcat());
    assert_eq!(
        theirs.0,
        vec![255, 252, 1, 255, 254, 3],
        "ncat's own answer changed?"
    );
    assert_eq!(ours.0, theirs.0, "answers");
    assert_eq!(ours.1, theirs.1, "stdout");
}

/// Runs `tool -t -lk` and connects two clients one after the other, each
/// offering Telnet options; returns what each was answered and what the
/// listener wrote to stdout.
fn negotiate_keep_open(tool: &std::path::Path) -> (Vec<Vec<u8>>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let port = free_tcp_port();
    let child = Command::new(tool)
        .args(["-t", "-lk", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child);
    wait_tcp_listen(port);
    let mut answers = Vec::new();
    let mut sent = Vec::new();
    for i in 0..2u8 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let offer = [
            &[255, 253, 1, 255, 251, 3][..],
            format!("hi{i}\n").as_bytes(),
            &[255, 254, 5],
            b"x\n",
        ]
        .concat();
        c.write_all(&offer).unwrap();
        sent.extend_from_slice(&offer);
        answers.push(read_answer(&mut c));
    }
    wait_until(Duration::from_secs(10), || {
        std::fs::metadata(&out_path).map_or(0, |m| m.len()) >= sent.len() as u64
    });
    (answers, std::fs::read(&out_path).unwrap())
}

/// `-t` with `-k`: every client's options are answered, as ncat answers
/// them, and the bytes reach stdout unchanged.
#[test]
fn telnet_in_keep_open_listener_matches_ncat() {
    let theirs = negotiate_keep_open(&ncat());
    let ours = negotiate_keep_open(&oxcat());
    assert_eq!(
        theirs.0,
        vec![vec![255, 252, 1, 255, 254, 3]; 2],
        "ncat's own answer changed?"
    );
    assert_eq!(ours.0, theirs.0, "answers");
    assert_eq!(ours.1, theirs.1, "stdout");
}
