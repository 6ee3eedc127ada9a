//! `--vsock`: the kernel offers AF_VSOCK here but no loopback transport,
//! so what can be checked is checked against live ncat: a listener that
//! listens where ncat does, a connect that times out as ncat's does, and
//! ncat's answer to a bad context id.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ncat, oxcat, run_bounded};

#[test]
fn vsock_connect_failures_match_ncat() {
    for args in [
        &["--vsock", "-w", "1", "1", "21556"][..],
        &["--vsock", "abc", "21556"],
    ] {
        let theirs = run_bounded(Command::new(ncat()).args(args), Duration::from_secs(15));
        let ours = run_bounded(Command::new(oxcat()).args(args), Duration::from_secs(15));
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
        let err = String::from_utf8_lossy(&ours.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn vsock_listener_listens_on_every_cid() {
    let mut child = Command::new(oxcat())
        .args(["--vsock", "-l", "-v", "21559"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(still_running, "the listener exited: {err}");
    assert!(err.contains("Listening on 4294967295:21559"), "{err}");
}
