//! `oxcat --stack user` against the real kernel's ncat, over the TUN device
//! oxcat creates, each scenario inside a private network namespace made by
//! `unshare --net` (it disappears with the process; 198.18.0.0/15 and
//! fd00::/8 only). Needs root; skips visibly without it, fails instead under
//! OXCAT_REQUIRE_ROOT_TESTS=1.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{in_namespace, oxcat, root_or_skip, run_bounded};
use sha2::{Digest, Sha256};

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    common::xorshift_bytes(n, seed)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    common::read_in(dir, name)
}

#[test]
fn tcp_both_roles_v4_and_v6_byte_exact() {
    if !root_or_skip("tcp_both_roles_v4_and_v6_byte_exact") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = random_bytes(2 << 20, 1);
    let b = random_bytes(2 << 20, 2);
    std::fs::write(d.join("a"), &a).unwrap();
    std::fs::write(d.join("b"), &b).unwrap();
    in_namespace(
        d,
        r#"
# Our stack listens (v4); the kernel's ncat connects. Both send at once.
timeout 60 $OXCAT --stack user -l 1234 < $D/a > $D/ox_got_b 2> $D/ox1.err &
OX=$!
for i in $(seq 100); do ip addr show oxcat0 2>/dev/null | grep -q 198.18.0.1 && break; sleep 0.05; done
sleep 0.3
timeout 60 $NCAT 198.18.0.2 1234 < $D/b > $D/nc_got_a
echo "ncat client: $?"
wait $OX; echo "oxcat listener: $?"
# The kernel's ncat listens (v6); our stack connects.
timeout 60 $NCAT -6 -l 5555 < $D/b > $D/nc_got_a6 &
NC=$!
sleep 0.3
timeout 60 $OXCAT --stack user fd00::1 5555 < $D/a > $D/ox_got_b6 2> $D/ox2.err
echo "oxcat client: $?"
wait $NC; echo "ncat listener: $?"
# The other two: our stack listens (v6), the kernel's ncat listens (v4).
timeout 60 $OXCAT --stack user -6 -l 1236 < $D/a > $D/oxl6_b 2> $D/ox3.err &
OX=$!
for i in $(seq 100); do ip addr show oxcat0 2>/dev/null | grep -q fd00::1 && break; sleep 0.05; done
sleep 0.3
timeout 60 $NCAT -6 fd00::2 1236 < $D/b > $D/ncl6_a
echo "ncat client (v6): $?"
wait $OX; echo "oxcat listener (v6): $?"
timeout 60 $NCAT -4 -l 5557 < $D/b > $D/nc4_a &
NC=$!
sleep 0.3
timeout 60 $OXCAT --stack user 198.18.0.1 5557 < $D/a > $D/ox4_b 2> $D/ox4.err
echo "oxcat client (v4): $?"
wait $NC; echo "ncat listener (v4): $?"
"#,
        Duration::from_secs(150),
    );
    assert_eq!(sha(&read(d, "ox_got_b")), sha(&b), "ncat -> oxcat -l (v4)");
    assert_eq!(sha(&read(d, "nc_got_a")), sha(&a), "oxcat -l -> ncat (v4)");
    assert_eq!(sha(&read(d, "nc_got_a6")), sha(&a), "oxcat -> ncat -l (v6)");
    assert_eq!(sha(&read(d, "ox_got_b6")), sha(&b), "ncat -l -> oxcat (v6)");
    assert_eq!(sha(&read(d, "oxl6_b")), sha(&b), "ncat -> oxcat -l (v6)");
    assert_eq!(sha(&read(d, "ncl6_a")), sha(&a), "oxcat -l -> ncat (v6)");
    assert_eq!(sha(&read(d, "nc4_a")), sha(&a), "oxcat -> ncat -l (v4)");
    assert_eq!(sha(&read(d, "ox4_b")), sha(&b), "ncat -l -> oxcat (v4)");
}

#[test]
fn udp_both_roles() {
    if !root_or_skip("udp_both_roles") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    in_namespace(
        d,
        r#"
# Our stack listens (v4): it learns its peer from the first datagram, then answers.
(sleep 1.5; echo reply-from-oxcat; sleep 2) | timeout 6 $OXCAT --stack user -u -l 1235 --test --trace=$D/udp.trace > $D/ox_got 2> $D/ox.err &
# UDP has no retry: wait until oxcat is bound (--test's line).
for i in $(seq 100); do grep -q 'NCAT TEST: LISTEN' $D/ox.err 2>/dev/null && break; sleep 0.05; done
(echo hello-from-ncat; sleep 3) | timeout 4 $NCAT -u 198.18.0.2 1235 > $D/nc_got
wait
# The kernel listens (v6); our stack sends first.
(sleep 1.5; echo reply-from-ncat; sleep 2) | timeout 6 $NCAT -6 -u -l 5556 > $D/nc6_got &
sleep 0.3
(echo hello-from-oxcat; sleep 3) | timeout 4 $OXCAT --stack user -u fd00::1 5556 > $D/ox6_got 2> $D/ox6.err
wait
# The other two: our stack listens (v6), the kernel listens (v4).
(sleep 1.5; echo reply-from-oxcat6; sleep 2) | timeout 6 $OXCAT --stack user -6 -u -l 1237 --test > $D/ox_l6_got 2> $D/ox_l6.err &
for i in $(seq 100); do grep -q 'NCAT TEST: LISTEN' $D/ox_l6.err 2>/dev/null && break; sleep 0.05; done
(echo hello-from-ncat6; sleep 3) | timeout 4 $NCAT -6 -u fd00::2 1237 > $D/nc_l6_got
wait
(sleep 1.5; echo reply-from-ncat4; sleep 2) | timeout 6 $NCAT -4 -u -l 5558 > $D/nc4_got &
sleep 0.3
(echo hello-from-oxcat4; sleep 3) | timeout 4 $OXCAT --stack user -u 198.18.0.1 5558 > $D/ox4_got 2> $D/ox4.err
wait
true
"#,
        Duration::from_secs(60),
    );
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    assert_eq!(s("ox_got"), "hello-from-ncat\n", "{}", s("ox.err"));
    assert_eq!(s("nc_got"), "reply-from-oxcat\n");
    assert_eq!(s("nc6_got"), "hello-from-oxcat\n");
    assert_eq!(s("ox6_got"), "reply-from-ncat\n", "{}", s("ox6.err"));
    assert_eq!(s("ox_l6_got"), "hello-from-ncat6\n", "{}", s("ox_l6.err"));
    assert_eq!(s("nc_l6_got"), "reply-from-oxcat6\n");
    assert_eq!(s("nc4_got"), "hello-from-oxcat4\n");
    assert_eq!(s("ox4_got"), "reply-from-ncat4\n", "{}", s("ox4.err"));
    // The datagrams are on the trace, each way, with their lengths.
    let trace = s("udp.trace");
    for needle in [
        "-- udp in  198.18.0.1:",
        " > 198.18.0.2:1235 len=16",
        // From the address it left from, not the wildcard the socket is bound to.
        "-- udp out 198.18.0.2:1235 > 198.18.0.1:",
    ] {
        assert!(trace.contains(needle), "{needle:?} not in:\n{trace}");
    }
}

/// `-u -l -k -c` on our stack: every sender gets its own program, as with
/// ncat on the kernel's sockets (the socket that heard a new sender is
/// handed to its program and a new one takes its place on the address:
/// before, binding that new one failed, "address in use", after the first
/// sender); a sender whose program has ended is a new sender again.
#[test]
fn udp_keep_open_exec_per_sender() {
    if !root_or_skip("udp_keep_open_exec_per_sender") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    in_namespace(
        d,
        r#"
timeout 60 $OXCAT --stack user -v -u -l -k 1237 \
    -c 'echo "$NCAT_REMOTE_ADDR:$NCAT_REMOTE_PORT"; timeout 2 cat; echo $NCAT_REMOTE_PORT >> $D/ended' 2> $D/ox.err &
OX=$!
for i in $(seq 300); do grep -q 'Listening on 0.0.0.0' $D/ox.err 2>/dev/null && break; sleep 0.05; done
for n in 1 2 3; do
  # Each sender listens 3 s for its answers (its program runs 2 s): time
  # enough on a loaded machine, where 1 s was sometimes not.
  (echo "sender $n"; sleep 3) | timeout 6 $NCAT -u -p 4000$n 198.18.0.2 1237 > $D/client$n
done
# Once the first sender's program has ended, it is a new sender.
for i in $(seq 200); do grep -qx 40001 $D/ended 2>/dev/null && break; sleep 0.05; done
(echo "sender 1 again"; sleep 3) | timeout 6 $NCAT -u -p 40001 198.18.0.2 1237 > $D/client1again
kill $OX; wait $OX
true
"#,
        Duration::from_secs(60),
    );
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    for n in 1..=3 {
        assert_eq!(
            s(&format!("client{n}")),
            format!("198.18.0.1:4000{n}\nsender {n}\n"),
            "{}",
            s("ox.err")
        );
    }
    assert_eq!(
        s("client1again"),
        "198.18.0.1:40001\nsender 1 again\n",
        "{}",
        s("ox.err")
    );
}

/// `-c` over UDP on our stack: the program runs on pipes, so one that reads
/// a line at a time gets every datagram (on the socket itself each read
/// took a whole datagram and kept one byte), with `-u -l -k` and in connect
/// mode, as with ncat on the kernel's sockets.
#[test]
fn udp_exec_line_reader_gets_every_datagram() {
    if !root_or_skip("udp_exec_line_reader_gets_every_datagram") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = in_namespace(
        d,
        r#"
# Each step waits for what it needs (oxcat's "Listening" line, ncat's
# socket, the first datagram) and leaves 2 s for the last answers: the
# debug build under a loaded CI machine is slow to start and to answer.
timeout 30 $OXCAT --stack user -v -u -l -k 1241 -c 'while read l; do echo "got:$l"; done' 2> $D/ox.err &
OX=$!
for i in $(seq 300); do grep -q 'Listening on 0.0.0.0' $D/ox.err 2>/dev/null && break; sleep 0.05; done
(echo a; sleep 0.3; printf 'b\nc\n'; sleep 0.3; echo d; sleep 2) | timeout 10 $NCAT -u 198.18.0.2 1241 > $D/lk
kill $OX; wait $OX
# One sender (-u -l): its first datagram is left queued for the program; the
# program's exit ends the run, exit 0 whatever its status.
timeout 30 $OXCAT --stack user -v -u -l 1242 -c 'while read l; do echo "got:$l"; [ "$l" = d ] && exit 3; done' 2> $D/ox1.err &
OX=$!
for i in $(seq 300); do grep -q 'Listening on 0.0.0.0' $D/ox1.err 2>/dev/null && break; sleep 0.05; done
(echo a; sleep 0.3; printf 'b\nc\n'; sleep 0.3; echo d; sleep 2) | timeout 10 $NCAT -u 198.18.0.2 1242 > $D/single
wait $OX; echo "single listener: $?"
# Our stack connects and speaks first; the kernel's ncat answers line by
# line once the first datagram ("hello") has come.
(for i in $(seq 300); do [ -s $D/nc_got ] && break; sleep 0.05; done; echo x; sleep 0.3; echo y; sleep 2) | timeout 20 $NCAT -6 -u -l 5557 > $D/nc_got &
for i in $(seq 100); do grep -q ':15B5 ' /proc/net/udp6 && break; sleep 0.05; done
timeout 20 $OXCAT --stack user -u fd00::1 5557 -c 'echo hello; while read l; do echo "got:$l"; done' 2> $D/ox2.err &
OX=$!
for i in $(seq 400); do grep -q 'got:y' $D/nc_got 2>/dev/null && break; sleep 0.05; done
kill $OX 2>/dev/null
wait
true
"#,
        Duration::from_secs(120),
    );
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    assert_eq!(s("lk"), "got:a\ngot:b\ngot:c\ngot:d\n", "{}", s("ox.err"));
    assert_eq!(
        s("single"),
        "got:a\ngot:b\ngot:c\ngot:d\n",
        "{}",
        s("ox1.err")
    );
    assert!(
        out.contains("single listener: 0"),
        "{out}\n{}",
        s("ox1.err")
    );
    assert_eq!(s("nc_got"), "hello\ngot:x\ngot:y\n", "{}", s("ox2.err"));
}

/// A UDP listener on our stack whose peer's port has closed: the ICMP port
/// unreachable the kernel answers with ends the session as it does on the
/// kernel's sockets ("Connection refused", exit 1; ours at the next send,
/// the kernel's already at the next receive).
#[test]
fn udp_listener_sees_port_unreachable() {
    if !root_or_skip("udp_listener_sees_port_unreachable") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = in_namespace(
        d,
        r#"
(sleep 1.5; echo reply; sleep 1; echo again; sleep 1) | timeout 20 $OXCAT --stack user -u -l 1239 > $D/ox.out 2> $D/ox.err &
OX=$!
for i in $(seq 100); do ip addr show oxcat0 2>/dev/null | grep -q 198.18.0.1 && break; sleep 0.05; done
sleep 0.3
# One datagram from port 42002, then that port is closed.
echo hi | timeout 5 $NCAT -u -p 42002 198.18.0.2 1239
wait $OX; echo "oxcat listener: $?"
"#,
        Duration::from_secs(60),
    );
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    assert_eq!(s("ox.out"), "hi\n");
    assert!(out.contains("oxcat listener: 1"), "{out}\n{}", s("ox.err"));
    assert_eq!(s("ox.err"), "oxcat: Connection refused.\n");
}

#[test]
fn exec_keep_open_trace_pcap_and_mermaid() {
    if !root_or_skip("exec_keep_open_trace_pcap_and_mermaid") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    in_namespace(
        d,
        r#"
# -k with --sh-exec: every client gets its own program, with ncat's NCAT_* variables.
timeout 20 $OXCAT --stack user -lk 1236 -c 'echo "$NCAT_REMOTE_ADDR $NCAT_LOCAL_ADDR:$NCAT_LOCAL_PORT"; tr a-z A-Z' \
    --trace=$D/trace.txt --pcap $D/run.pcap --mermaid $D/run.mmd 2> $D/ox.err &
OX=$!
for i in $(seq 100); do ip addr show oxcat0 2>/dev/null | grep -q 198.18.0.1 && break; sleep 0.05; done
sleep 0.3
for n in 1 2 3; do
  echo "client $n" | timeout 5 $NCAT 198.18.0.2 1236 > $D/client$n
done
kill -INT $OX; wait $OX
true
"#,
        Duration::from_secs(60),
    );
    for n in 1..=3 {
        let got = String::from_utf8_lossy(&read(d, &format!("client{n}"))).to_string();
        assert_eq!(got, format!("198.18.0.1 198.18.0.2:1236\nCLIENT {n}\n"));
    }
    let trace = String::from_utf8_lossy(&read(d, "trace.txt")).to_string();
    for needle in [
        "] in  198.18.0.1:",
        " SYN seq=",
        "] out 198.18.0.2:1236 > 198.18.0.1:",
        " SYN-ACK seq=",
        "Listen -> SynReceived",
        "handshake done, connection in the accept queue",
        "accept(",
        "FIN-ACK",
    ] {
        assert!(
            trace.contains(needle),
            "{needle:?} not in the trace:\n{trace}"
        );
    }
    // The calls on our stack, marked `stack`, in the notes' order around
    // the handshake the stack does by itself; the bridge's accept names the
    // real peer; one timeline, in time order.
    let first = |needle: &str| {
        trace
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in the trace:\n{trace}"))
    };
    let listen = first("stack  listen(#");
    let syn = first(" SYN seq=");
    let accepted = first("stack  accept(#");
    assert!(first("stack  socket(AF_INET") < listen);
    first("stack  socket(AF_INET, SOCK_STREAM) = #");
    assert!(listen < syn && syn < accepted, "{trace}");
    assert!(trace
        .lines()
        .nth(accepted)
        .unwrap()
        .contains(" from 198.18.0.1:"));
    for needle in ["stack  recv(#", "stack  send(#", "stack  close(#"] {
        first(needle);
    }
    // A send is stamped when it starts, as strace stamps a call: the data
    // segment it makes comes after it (it was stamped on return, after).
    let first_data_out = trace
        .lines()
        .position(|l| l.contains("] out ") && !l.contains(" len=0"))
        .unwrap_or_else(|| panic!("no data segment out in:\n{trace}"));
    assert!(first("stack  send(#") < first_data_out, "{trace}");
    assert!(!trace.contains("(unknown)"), "{trace}");
    let stamps: Vec<f64> = trace
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split_once(']')?.0.trim().parse().ok())
        .collect();
    assert!(stamps.len() > 20, "{trace}");
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go back:\n{trace}"
    );
    let segments = trace
        .lines()
        .filter(|l| l.contains("] in  ") || l.contains("] out "))
        .count();
    let tshark = |filter: &[&str]| -> usize {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(d.join("run.pcap"))
            .args(filter)
            .output()
            .expect("tshark");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    assert_eq!(tshark(&["-Y", "_ws.malformed"]), 0);
    assert_eq!(
        tshark(&["-Y", "tcp"]),
        segments,
        "pcap TCP packets vs traced segments"
    );
    assert_eq!(
        tshark(&["-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0"]),
        3
    );
    let mmd = String::from_utf8_lossy(&read(d, "run.mmd")).to_string();
    assert!(mmd.starts_with("sequenceDiagram\n"), "{mmd}");
    assert!(mmd.contains("participant C as Client[198.18.0.1:"), "{mmd}");
    assert!(
        mmd.contains("participant S as Server[198.18.0.2:1236]"),
        "{mmd}"
    );
    assert!(
        mmd.contains("Note over C,S: 3 Way Handshaking done"),
        "{mmd}"
    );
    common::mermaid_parses(&d.join("run.mmd"));
}

#[test]
fn without_privilege_one_clear_line() {
    let mut cmd = if common::is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(oxcat());
        c
    } else {
        Command::new(oxcat())
    };
    let out = run_bounded(
        cmd.args(["--stack", "user", "--tun", "oxtestnopriv0", "-l", "1234"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // Which of the two depends on /dev/net/tun's permissions (0666 on most
    // systems, 0600 on some): with no access to it, that is what is missing.
    let others_may_open = std::fs::metadata("/dev/net/tun")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006)
        .unwrap_or(false);
    let start = "oxcat: --stack user: cannot open TUN device oxtestnopriv0: ";
    let no_cap = format!("{start}needs CAP_NET_ADMIN");
    let no_access = format!("{start}no permission to open /dev/net/tun");
    if !common::is_root() {
        assert!(
            err.starts_with(&no_cap) || err.starts_with(&no_access),
            "{err}"
        );
    } else if others_may_open {
        assert!(err.starts_with(&no_cap), "{err}");
    } else {
        assert!(err.starts_with(&no_access), "{err}");
    }
}

#[test]
fn user_stack_flags_are_checked() {
    for (args, msg) in [
        (
            &["--tun-addr", "198.18.0.1/24", "-l", "1"][..],
            "--tun-addr needs --stack user",
        ),
        (
            &["--stack-addr", "198.18.0.2", "localhost", "1"],
            "--stack-addr needs --stack user",
        ),
        (
            &["--stack", "user", "--stack-addr", "nope", "-l", "1"],
            "Invalid --stack-addr",
        ),
        (
            &["--stack", "user", "--tun-addr", "198.18.0.1", "-l", "1"],
            "Invalid --tun-addr",
        ),
        (
            &["--stack", "user", "--stack-addr", "0.0.0.0", "-l", "1"],
            "needs a unicast address of its own",
        ),
        (
            &["--stack", "user", "--stack-addr", "224.0.0.1", "-l", "1"],
            "needs a unicast address of its own",
        ),
        (
            &["--stack", "user", "--stack-addr", "fd00::1", "-l", "1"],
            "is the kernel side's address",
        ),
        (&["--stack", "user", "-U", "/tmp/x"], "do not mix"),
        (&["--stack", "bogus", "-l", "1"], "invalid value 'bogus'"),
    ] {
        let out = run_bounded(Command::new(oxcat()).args(args), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

/// `--tun` naming an interface that exists but is no TUN device (here the
/// namespace's own loopback) gets one line saying so, exit 2.
#[test]
fn an_interface_that_is_not_a_tun_is_named_so() {
    if !root_or_skip("an_interface_that_is_not_a_tun_is_named_so") {
        return;
    }
    fails_with_one_line(
        "--tun lo -l 1234",
        "2",
        "oxcat: --stack user: cannot open TUN device lo: an interface of that name exists and is not a TUN device.\n",
    );
}

/// `oxcat --stack user ARGS` in a private namespace ends at once with exit
/// status `rc` and `line` alone on stderr.
fn fails_with_one_line(args: &str, rc: &str, line: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    in_namespace(
        d,
        &format!("timeout 10 $OXCAT --stack user {args} < /dev/null 2> $D/err\necho $? > $D/rc\n"),
        Duration::from_secs(30),
    );
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    assert_eq!(s("rc").trim(), rc, "{args}: {}", s("err"));
    assert_eq!(s("err"), line, "{args}");
}

/// The TUN device deleted under a run (`ip link del`): one line naming it,
/// exit status 1, the bytes received before it went written out; an idle
/// listener likewise, instead of waiting for ever on a dead device (it
/// used to spin a CPU there).
#[test]
fn a_tun_deleted_under_the_run_ends_it_with_one_line() {
    if !root_or_skip("a_tun_deleted_under_the_run_ends_it_with_one_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = random_bytes(300_000, 6);
    std::fs::write(d.join("data"), &data).unwrap();
    in_namespace(
        d,
        r#"
# Until oxcat has set the interface up (its last `ip` step): deleting it
# before then would fail that step instead (exit 2), a race of this
# script's making.
wait_tun() { for i in $(seq 100); do ip -o addr show oxcat0 2>/dev/null | grep -q 198.18.0.1 && ip -o link show oxcat0 | grep -q '[<,]UP[,>]' && break; sleep 0.05; done; }
# An idle listener.
timeout 20 $OXCAT --stack user -l 1701 < /dev/null > $D/idle.out 2> $D/idle.err &
OX=$!
wait_tun
ip link del oxcat0
wait $OX; echo $? > $D/idle.rc
# A listener with a connection that has delivered bytes.
timeout 20 $OXCAT --stack user -l 1702 < /dev/null > $D/busy.out 2> $D/busy.err &
OX=$!
wait_tun
sleep 0.3
( printf 'hello before the loss\n'; sleep 5 ) | timeout 10 $NCAT 198.18.0.2 1702 &
NC=$!
for i in $(seq 100); do [ -s $D/busy.out ] && break; sleep 0.05; done
ip link del oxcat0
wait $OX; echo $? > $D/busy.rc
kill $NC 2>/dev/null; wait $NC 2>/dev/null
# -k, a stdout read slowly (from 3 s on): every byte that arrived before
# the loss is still written before the run ends.
mkfifo $D/slow
( exec 3<$D/slow; sleep 3; cat <&3 > $D/slow.out ) &
READER=$!
timeout 20 $OXCAT --stack user -l -k 1703 < /dev/null > $D/slow 2> $D/slow.err &
OX=$!
wait_tun
sleep 0.3
( cat $D/data; sleep 8 ) | timeout 20 $NCAT 198.18.0.2 1703 &
NC=$!
sleep 1.5
ip link del oxcat0
wait $OX; echo $? > $D/slow.rc
wait $READER
kill $NC 2>/dev/null; wait $NC 2>/dev/null
true
"#,
        Duration::from_secs(60),
    );
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    let line =
        "oxcat: --stack user: the TUN device oxcat0 is gone (File descriptor in bad state).\n";
    assert_eq!(s("idle.rc").trim(), "1", "idle: {}", s("idle.err"));
    assert_eq!(s("idle.err"), line);
    assert_eq!(s("busy.rc").trim(), "1", "busy: {}", s("busy.err"));
    assert_eq!(s("busy.err"), line);
    assert_eq!(s("busy.out"), "hello before the loss\n");
    assert_eq!(s("slow.rc").trim(), "1", "slow reader: {}", s("slow.err"));
    assert_eq!(s("slow.err"), line);
    assert_eq!(sha(&read(d, "slow.out")), sha(&data), "slow reader's bytes");
}

/// `--tun NAME` for an interface that exists in the namespace is used as
/// it is: its addresses, its MTU (our MSS follows it), left in place at
/// exit. Also as an unprivileged user the interface was made for (`ip
/// tuntap add ... user`, the way the no-privilege message suggests), and
/// one line when the user may not attach to it or open /dev/net/tun.
/// The namespace gets its own mount namespace too: /sys/class/net there
/// still lists the outer namespace's interfaces (oxcat asked it once and
/// then re-addressed an existing TUN), and /dev/net/tun is replaced by a
/// node of the test's own making with the permissions each case needs.
#[test]
fn an_existing_tun_is_used_as_it_is() {
    if !root_or_skip("an_existing_tun_is_used_as_it_is") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = r#"
AS_NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups --"
# The node on a tmpfs of this mount namespace's own (the tempdir's file
# system may be mounted nodev).
mkdir $D/dev
mount -t tmpfs -o size=64k,mode=0755 tmpfs $D/dev
mknod -m 0666 $D/dev/tun c 10 200
mount --bind $D/dev/tun /dev/net/tun
# Root, an interface made and addressed beforehand, MTU 1400.
ip tuntap add dev mytun mode tun
ip addr add 198.18.5.1/24 dev mytun
ip link set mytun mtu 1400 up
timeout 20 $OXCAT --stack user --tun mytun --stack-addr 198.18.5.2 -l 1234 --trace=$D/root.trace > $D/root.out 2> $D/root.err &
OX=$!
for i in $(seq 100); do [ -s $D/root.trace ] && break; sleep 0.05; done
sleep 0.3
printf 'to an existing tun
' | timeout 10 $NCAT 198.18.5.2 1234
wait $OX; echo $? > $D/root.rc
ip -o -4 addr show dev mytun | awk '{print $4}' > $D/root.addrs
ip -o -6 addr show dev mytun scope global | awk '{print $4}' >> $D/root.addrs
ip -o link show mytun | grep -o 'mtu [0-9]*' > $D/root.mtu
# A user the interface was made for.
ip tuntap add dev utun mode tun user 65534
ip addr add 198.18.6.1/24 dev utun
ip link set utun up
timeout 20 $AS_NOBODY $OXCAT --stack user --tun utun --stack-addr 198.18.6.2 -l 1235 --test > $D/user.out 2> $D/user.err &
OX=$!
for i in $(seq 200); do grep -q 'NCAT TEST: LISTEN' $D/user.err 2>/dev/null && break; sleep 0.05; done
printf 'as its owner
' | timeout 10 $NCAT 198.18.6.2 1235
wait $OX; echo $? > $D/user.rc
ip -o link show utun > /dev/null && echo yes > $D/user.kept
# The same user, an interface made for root (one made for nobody in
# particular, as mytun, anyone may attach to).
ip tuntap add dev rtun mode tun user 0
timeout 10 $AS_NOBODY $OXCAT --stack user --tun rtun -l 1236 < /dev/null > /dev/null 2> $D/other.err
echo $? > $D/other.rc
# No access to /dev/net/tun.
chmod 0600 $D/dev/tun
timeout 10 $AS_NOBODY $OXCAT --stack user --tun utun -l 1237 < /dev/null > /dev/null 2> $D/noaccess.err
echo $? > $D/noaccess.rc
true
"#;
    let text = common::in_namespace_with_mounts(d, script, Duration::from_secs(90));
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    assert_eq!(s("root.rc").trim(), "0", "root: {} {text}", s("root.err"));
    assert_eq!(s("root.out"), "to an existing tun\n");
    // Only its own address: none of the defaults added.
    assert_eq!(s("root.addrs"), "198.18.5.1/24\n");
    assert_eq!(s("root.mtu").trim(), "mtu 1400");
    // Our SYN-ACK's MSS from the interface's MTU: 1400 - 40.
    let trace = s("root.trace");
    let synack = trace
        .lines()
        .find(|l| l.contains(" out ") && l.contains("SYN-ACK"))
        .unwrap_or_else(|| panic!("no SYN-ACK in:\n{trace}"));
    assert!(synack.contains("<mss 1360,"), "{synack}");
    assert_eq!(s("user.rc").trim(), "0", "user: {} {text}", s("user.err"));
    assert_eq!(s("user.out"), "as its owner\n");
    assert_eq!(s("user.kept").trim(), "yes");
    assert_eq!(s("other.rc").trim(), "2");
    assert_eq!(
        s("other.err"),
        "oxcat: --stack user: cannot open TUN device rtun: not allowed to attach to it (it belongs to another user or group: `ip tuntap add dev rtun mode tun user USER` sets its owner).\n"
    );
    assert_eq!(s("noaccess.rc").trim(), "2");
    assert_eq!(
        s("noaccess.err"),
        "oxcat: --stack user: cannot open TUN device utun: no permission to open /dev/net/tun (run as root, or give this user read and write access to it).\n"
    );
}

/// A pcap file that cannot be written gets the system's reason in one line
/// (pcap-file's own text for it is "Error reading bytes"), exit 1.
#[test]
fn a_pcap_file_that_cannot_be_written_says_why() {
    if !root_or_skip("a_pcap_file_that_cannot_be_written_says_why") {
        return;
    }
    fails_with_one_line(
        "-l 1234 --pcap /dev/full",
        "1",
        "oxcat: Unable to open pcap file \"/dev/full\": No space left on device.\n",
    );
}

/// A pcap file whose disk fills during the run: one line says so, the
/// recording stops, and the connection goes on byte-exact (a failed write
/// used to lose the packet it was recording, so the transfer stalled).
/// The small disk is a 64 KiB tmpfs in the test's own mount namespace.
#[test]
fn a_pcap_disk_that_fills_stops_the_recording_not_the_connection() {
    if !root_or_skip("a_pcap_disk_that_fills_stops_the_recording_not_the_connection") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = random_bytes(1 << 20, 9);
    std::fs::write(d.join("data"), &data).unwrap();
    let script = r#"
mkdir $D/small
mount -t tmpfs -o size=64k tmpfs $D/small
timeout 30 $OXCAT --stack user -l 1234 --pcap $D/small/run.pcap < /dev/null > $D/got 2> $D/err &
OX=$!
for i in $(seq 100); do ip -o link show oxcat0 2>/dev/null | grep -q '[<,]UP[,>]' && break; sleep 0.05; done
sleep 0.3
timeout 20 $NCAT --send-only 198.18.0.2 1234 < $D/data
echo "ncat: $?" > $D/nc.rc
wait $OX; echo $? > $D/rc
ls -l $D/small/run.pcap | awk '{print $5}' > $D/size
cp $D/small/run.pcap $D/run.pcap
umount $D/small
true
"#;
    common::in_namespace_with_mounts(d, script, Duration::from_secs(60));
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    assert_eq!(s("rc").trim(), "0", "{}", s("err"));
    assert_eq!(sha(&read(d, "got")), sha(&data), "{}", s("err"));
    let pcap = format!("{}/small/run.pcap", d.display());
    assert_eq!(
        s("err"),
        format!("oxcat: --pcap {pcap}: No space left on device; recording stopped, the connection goes on.\n")
    );
    // It recorded until the disk was full, and ends on a whole record: no
    // half-written one for tshark to call cut short.
    let size: u64 = s("size").trim().parse().unwrap();
    assert!(size > 32 * 1024, "{size}");
    let o = Command::new("tshark")
        .arg("-r")
        .arg(d.join("run.pcap"))
        .output()
        .expect("tshark");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("cut short"),
        "tshark: {err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() > 10);
}

/// A traced run whose sends wait on a slow reader (the kernel's ncat reads
/// nothing for 2 s): the timeline still never goes back in time. A send is
/// stamped when it starts only if it ended within the trace's reordering
/// window; one that waited longer is stamped on return, as events stamped
/// after its start have been written by then.
#[test]
fn a_traced_send_that_waits_keeps_the_timeline_in_order() {
    if !root_or_skip("a_traced_send_that_waits_keeps_the_timeline_in_order") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = random_bytes(12 << 20, 11);
    std::fs::write(d.join("data"), &data).unwrap();
    in_namespace(
        d,
        r#"
timeout 40 $OXCAT --stack user -l 1240 --trace=$D/trace.txt < $D/data > /dev/null 2> $D/err &
OX=$!
for i in $(seq 100); do ip -o link show oxcat0 2>/dev/null | grep -q '[<,]UP[,>]' && break; sleep 0.05; done
sleep 0.3
timeout 30 $NCAT --recv-only 198.18.0.2 1240 | (sleep 2; cat > $D/got)
wait $OX; echo $? > $D/rc
"#,
        Duration::from_secs(60),
    );
    let s = |n: &str| String::from_utf8_lossy(&read(d, n)).to_string();
    assert_eq!(s("rc").trim(), "0", "{}", s("err"));
    assert_eq!(sha(&read(d, "got")), sha(&data));
    let trace = s("trace.txt");
    let stamps: Vec<f64> = trace
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split_once(']')?.0.trim().parse().ok())
        .collect();
    assert!(trace.contains("stack  send(#"), "no send in the trace");
    assert!(stamps.len() > 100, "{}", stamps.len());
    let back = stamps.windows(2).position(|w| w[0] > w[1]);
    assert!(
        back.is_none(),
        "the timeline goes back at line {}:\n{}",
        back.unwrap_or(0),
        trace
            .lines()
            .skip(back.unwrap_or(0).saturating_sub(3))
            .take(8)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
