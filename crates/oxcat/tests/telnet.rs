//! `-t`: Telnet negotiations answered as ncat answers them (WONT for
//! DO/DONT, DONT for WILL/WONT, only for commands at the start of what
//! arrived), the bytes passed to stdout unchanged. Compared with live ncat.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ncat, oxcat, KillOnDrop};

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
    c.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut answer = vec![0u8; 64];
    let n = c.read(&mut answer).unwrap_or(0);
    answer.truncate(n);
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
