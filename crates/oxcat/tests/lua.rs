//! `--lua-exec`: a Lua script as the program on the connection, with the
//! `NCAT_*` variables; a missing or broken script stops the run at once
//! with ncat's exit code.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_tcp_port, ncat, oxcat, run_bounded, wait_tcp_listen, KillOnDrop};

#[test]
fn a_lua_script_serves_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("upper.lua");
    std::fs::write(
        &script,
        "local line = io.read(\"l\")\n\
         io.write(string.upper(line), \" from \", os.getenv(\"NCAT_REMOTE_ADDR\"), \" \", os.getenv(\"NCAT_PROTO\"), \"\\n\")\n",
    )
    .unwrap();
    let port = free_tcp_port();
    let server = Command::new(oxcat())
        .args(["-l", &port.to_string(), "--lua-exec"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(server);
    wait_tcp_listen(port);
    let mut client = Command::new(ncat())
        .args(["127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello lua\n")
        .unwrap();
    let out = common::output_bounded(client, Duration::from_secs(10), "ncat client");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HELLO LUA from 127.0.0.1 TCP\n"
    );
}

#[test]
fn missing_or_broken_scripts_fail_as_ncat() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.lua");
    std::fs::write(&broken, "x = = 1\n").unwrap();
    let missing = dir.path().join("missing.lua");
    for script in [&missing, &broken] {
        let port = free_tcp_port().to_string();
        let theirs = run_bounded(
            Command::new(ncat())
                .args(["-l", &port, "--lua-exec"])
                .arg(script),
            Duration::from_secs(10),
        );
        let ours = run_bounded(
            Command::new(oxcat())
                .args(["-l", &port, "--lua-exec"])
                .arg(script),
            Duration::from_secs(10),
        );
        assert_eq!(ours.status.code(), theirs.status.code(), "{script:?}");
        let err = String::from_utf8_lossy(&ours.stderr);
        assert!(
            err.starts_with("oxcat: Error loading the Lua script: "),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
