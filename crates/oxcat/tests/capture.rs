//! `--pcap` and `--mermaid` on the kernel's stack: the run's packets
//! captured from the interface, read back with the real tshark and checked
//! by Mermaid's parser. Each capture runs inside a private network
//! namespace made by `unshare --net` (loopback only). Needs root; skips
//! visibly without it, fails instead under OXCAT_REQUIRE_ROOT_TESTS=1.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{oxcat, root_or_skip, run_bounded};

/// Runs `script` with bash in a fresh network namespace (loopback up), with
/// `$OXCAT`, `$NCAT`, `$D` (a scratch directory) and `wait_port PROTO PORT`
/// (bounded wait for a socket on PORT in /proc/net/PROTO{,6}); returns its output.
fn in_namespace(dir: &Path, script: &str) -> String {
    let full = format!(
        r#"wait_port() {{
  local hex; hex=$(printf ':%04X ' "$2")
  for i in $(seq 250); do
    cat /proc/net/$1 /proc/net/${{1}}6 2>/dev/null | grep -q "$hex" && return 0
    sleep 0.02
  done
  echo "nothing on $1 port $2"; return 1
}}
{script}
"#
    );
    common::in_namespace(dir, &full, Duration::from_secs(90))
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    common::xorshift_bytes(n, seed)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    common::read_in(dir, name)
}

fn text(dir: &Path, name: &str) -> String {
    String::from_utf8_lossy(&read(dir, name)).into_owned()
}

/// tshark's output for `args` on `file`; tshark must succeed.
fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark (the test command installs it)");
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One packet of a capture as tshark decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    /// TCP flags (0 for UDP).
    flags: u8,
    /// TCP payload bytes, or the UDP payload's length.
    len: usize,
    udp: bool,
}

impl Packet {
    fn syn(&self) -> bool {
        self.flags & 0x12 == 0x02
    }
    fn syn_ack(&self) -> bool {
        self.flags & 0x12 == 0x12
    }
    fn fin(&self) -> bool {
        self.flags & 0x01 != 0
    }
}

/// Every packet of `file`: checks that tshark finds none malformed and
/// that each is IPv4 or IPv6 with TCP or UDP.
fn packets(file: &Path) -> Vec<Packet> {
    assert!(file.exists(), "{} was not written", file.display());
    let malformed = tshark(file, &["-Y", "_ws.malformed"]);
    assert_eq!(
        malformed.trim(),
        "",
        "malformed packets in {}",
        file.display()
    );
    let fields = tshark(
        file,
        &[
            "-T",
            "fields",
            "-E",
            "separator=;",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags",
            "-e",
            "tcp.len",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "udp.length",
        ],
    );
    fields
        .lines()
        .map(|line| {
            let c: Vec<&str> = line.split(';').collect();
            assert_eq!(c.len(), 11, "{line}");
            let ip = |a: &str, b: &str| -> IpAddr {
                let s = if a.is_empty() { b } else { a };
                s.parse()
                    .unwrap_or_else(|_| panic!("no IP address: {line}"))
            };
            let num = |s: &str| -> usize { s.parse().unwrap_or_else(|_| panic!("{s:?}: {line}")) };
            let (src, dst) = (ip(c[0], c[1]), ip(c[2], c[3]));
            if !c[4].is_empty() {
                let flags = u16::from_str_radix(c[6].trim_start_matches("0x"), 16)
                    .unwrap_or_else(|_| panic!("flags: {line}"));
                Packet {
                    src: (src, num(c[4]) as u16),
                    dst: (dst, num(c[5]) as u16),
                    flags: flags as u8,
                    len: num(c[7]),
                    udp: false,
                }
            } else {
                assert!(!c[8].is_empty(), "neither TCP nor UDP: {line}");
                Packet {
                    src: (src, num(c[8]) as u16),
                    dst: (dst, num(c[9]) as u16),
                    flags: 0,
                    len: num(c[10]) - 8,
                    udp: true,
                }
            }
        })
        .collect()
}

/// Checks one TCP connection's capture: exactly one handshake, both FINs,
/// nothing but this connection, and the payload bytes each way.
fn check_connection(ps: &[Packet], server: (IpAddr, u16), client_sent: usize, server_sent: usize) {
    let what = format!("{server:?}: {ps:#?}");
    assert_eq!(ps.iter().filter(|p| p.syn()).count(), 1, "one SYN: {what}");
    assert_eq!(
        ps.iter().filter(|p| p.syn_ack()).count(),
        1,
        "one SYN-ACK: {what}"
    );
    let client = ps.iter().find(|p| p.syn()).map(|p| p.src).unwrap();
    assert_eq!(client.0, server.0, "over loopback: {what}");
    for p in ps {
        assert!(
            (p.src == client && p.dst == server) || (p.src == server && p.dst == client),
            "a packet of another connection: {p:?}"
        );
        assert!(!p.udp);
    }
    let up: Vec<&Packet> = ps.iter().filter(|p| p.src == client).collect();
    let down: Vec<&Packet> = ps.iter().filter(|p| p.src == server).collect();
    assert!(up.iter().any(|p| p.fin()), "the client's FIN: {what}");
    assert!(down.iter().any(|p| p.fin()), "the server's FIN: {what}");
    assert_eq!(
        up.iter().map(|p| p.len).sum::<usize>(),
        client_sent,
        "{what}"
    );
    assert_eq!(
        down.iter().map(|p| p.len).sum::<usize>(),
        server_sent,
        "{what}"
    );
    // Handshake, data, ACKs, two FINs and their ACKs; loopback carries a
    // few KB in a segment or two, and each packet appears once (not twice
    // as leaving and arriving).
    assert!((7..=40).contains(&ps.len()), "{} packets: {what}", ps.len());
}

#[test]
fn client_to_ncat_over_loopback_v4_and_v6() {
    if !root_or_skip("client_to_ncat_over_loopback_v4_and_v6") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = random_bytes(5000, 11);
    let b = random_bytes(3000, 12);
    std::fs::write(d.join("a"), &a).unwrap();
    std::fs::write(d.join("b"), &b).unwrap();
    let out = in_namespace(
        d,
        r#"
timeout 20 $NCAT -l 127.0.0.1 5555 < $D/b > $D/nc_got4 &
wait_port tcp 5555
timeout 20 $OXCAT --pcap $D/c4.pcap --mermaid $D/c4.mmd --trace=$D/c4.trace 127.0.0.1 5555 < $D/a > $D/ox_got4
echo "oxcat v4: $?"
wait
timeout 20 $NCAT -6 -l ::1 5556 < $D/b > $D/nc_got6 &
wait_port tcp 5556
timeout 20 $OXCAT --pcap $D/c6.pcap --mermaid $D/c6.mmd ::1 5556 < $D/a > $D/ox_got6
echo "oxcat v6: $?"
wait
# A refused connection: the error path writes the file too.
timeout 20 $OXCAT --pcap $D/refused.pcap 127.0.0.1 9 < /dev/null
echo "oxcat refused: $?"
"#,
    );
    for line in ["oxcat v4: 0", "oxcat v6: 0", "oxcat refused: 1"] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    assert_eq!(read(d, "nc_got4"), a);
    assert_eq!(read(d, "ox_got4"), b);
    assert_eq!(read(d, "nc_got6"), a);
    assert_eq!(read(d, "ox_got6"), b);

    let v4 = packets(&d.join("c4.pcap"));
    check_connection(&v4, ("127.0.0.1".parse().unwrap(), 5555), a.len(), b.len());
    let v6 = packets(&d.join("c6.pcap"));
    check_connection(&v6, ("::1".parse().unwrap(), 5556), a.len(), b.len());

    let refused = packets(&d.join("refused.pcap"));
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].syn() && refused[0].dst.1 == 9, "{refused:?}");
    assert!(
        refused[1].flags & 0x04 != 0 && refused[1].src.1 == 9,
        "{refused:?}"
    );

    // The trace has the socket calls and, beside them, the captured segments.
    let trace = text(d, "c4.trace");
    for needle in [
        "connect(",
        "] out 127.0.0.1:",
        " > 127.0.0.1:5555 SYN seq=",
        "] in  127.0.0.1:5555 > 127.0.0.1:",
        " SYN-ACK seq=",
        "<mss 65495,",
        "FIN-ACK",
    ] {
        assert!(trace.contains(needle), "{needle:?} not in:\n{trace}");
    }
    let traced = trace
        .lines()
        .filter(|l| l.contains("] in  ") || l.contains("] out "))
        .count();
    assert_eq!(traced, v4.len(), "traced segments vs the pcap:\n{trace}");

    for (file, client, server) in [
        ("c4.mmd", "Client[127.0.0.1:", "Server[127.0.0.1:5555]"),
        ("c6.mmd", "Client[::1 port ", "Server[::1 port 5556]"),
    ] {
        let mmd = text(d, file);
        assert!(mmd.starts_with("sequenceDiagram\n"), "{mmd}");
        assert!(mmd.contains(&format!("participant C as {client}")), "{mmd}");
        assert!(mmd.contains(&format!("participant S as {server}")), "{mmd}");
        assert!(mmd.contains("    C->>S: SYN (SEQ = "), "{mmd}");
        assert!(mmd.contains("    S-->>C: SYN-ACK (SEQ = "), "{mmd}");
        assert!(
            mmd.contains("Note over C,S: 3 Way Handshaking done"),
            "{mmd}"
        );
        assert!(mmd.contains("5000 bytes)"), "{mmd}");
        assert!(mmd.contains("3000 bytes)"), "{mmd}");
        assert!(mmd.contains("C->>S: FIN-ACK"), "{mmd}");
        common::mermaid_parses(&d.join(file));
    }
}

#[test]
fn keep_open_listener_captures_every_client() {
    if !root_or_skip("keep_open_listener_captures_every_client") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = in_namespace(
        d,
        r#"
# No address: oxcat listens on :: and 0.0.0.0 and captures on every interface.
timeout 30 $OXCAT -lk 5557 --pcap $D/k.pcap --mermaid $D/k.mmd < /dev/null > $D/k_got 2> $D/k.err &
OX=$!
wait_port tcp 5557
echo first-client-v4 | timeout 10 $NCAT 127.0.0.1 5557
echo second-client-over-v6 | timeout 10 $NCAT ::1 5557
for i in $(seq 250); do [ "$(wc -l < $D/k_got)" = 2 ] && break; sleep 0.02; done
kill -INT $OX; wait $OX
echo "oxcat -lk: $?"
"#,
    );
    assert!(
        out.contains("oxcat -lk: 130"),
        "{out}\n{}",
        text(d, "k.err")
    );
    assert_eq!(
        text(d, "k_got"),
        "first-client-v4\nsecond-client-over-v6\n",
        "{}",
        text(d, "k.err")
    );
    let ps = packets(&d.join("k.pcap"));
    let clients: BTreeSet<(IpAddr, u16)> = ps.iter().filter(|p| p.syn()).map(|p| p.src).collect();
    assert_eq!(clients.len(), 2, "{ps:#?}");
    for (client_ip, sent) in [("127.0.0.1", 16), ("::1", 22)] {
        let ip: IpAddr = client_ip.parse().unwrap();
        let server = (ip, 5557);
        let conn: Vec<Packet> = ps
            .iter()
            .filter(|p| p.src == server || p.dst == server)
            .cloned()
            .collect();
        // stdin is empty: the server sends nothing but its FIN.
        check_connection(&conn, server, sent, 0);
    }
    assert!(
        ps.iter().all(|p| p.src.1 == 5557 || p.dst.1 == 5557),
        "{ps:#?}"
    );
    let mmd = text(d, "k.mmd");
    assert!(
        mmd.contains("participant S as Server[127.0.0.1:5557]"),
        "the first client's connection: {mmd}"
    );
    assert!(mmd.contains("'first-client-v4.'"), "{mmd}");
    common::mermaid_parses(&d.join("k.mmd"));
}

#[test]
fn udp_both_roles() {
    if !root_or_skip("udp_both_roles") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = in_namespace(
        d,
        r#"
# oxcat listens; ncat sends one datagram.
timeout 20 $OXCAT -u -l 127.0.0.1 5558 --pcap $D/ul.pcap > $D/ul_got 2> $D/ul.err &
OX=$!
wait_port udp 5558
echo hello-udp | timeout 5 $NCAT -u 127.0.0.1 5558
for i in $(seq 250); do [ -s $D/ul_got ] && break; sleep 0.02; done
kill -TERM $OX; wait $OX
echo "oxcat -u -l: $?"
# ncat listens (v6) and answers; oxcat sends first.
(sleep 0.5; echo pong) | timeout 20 $NCAT -6 -u -l ::1 5559 > $D/nu_got &
wait_port udp 5559
(echo ping-from-oxcat; sleep 1.5) | timeout 20 $OXCAT -u --pcap $D/uc.pcap ::1 5559 > $D/uc_got
echo "oxcat -u: $?"
wait
"#,
    );
    assert!(out.contains("oxcat -u -l: 143"), "{out}");
    assert!(out.contains("oxcat -u: 0"), "{out}");
    assert_eq!(text(d, "ul_got"), "hello-udp\n", "{}", text(d, "ul.err"));
    assert_eq!(text(d, "nu_got"), "ping-from-oxcat\n");
    assert_eq!(text(d, "uc_got"), "pong\n");
    let ul = packets(&d.join("ul.pcap"));
    assert_eq!(ul.len(), 1, "{ul:?}");
    assert!(
        ul[0].udp && ul[0].dst.1 == 5558 && ul[0].len == 10,
        "{ul:?}"
    );
    let uc = packets(&d.join("uc.pcap"));
    assert_eq!(uc.len(), 2, "{uc:?}");
    let server: (IpAddr, u16) = ("::1".parse().unwrap(), 5559);
    assert!(
        uc[0].udp && uc[0].dst == server && uc[0].len == 16,
        "{uc:?}"
    );
    assert!(uc[1].udp && uc[1].src == server && uc[1].len == 5, "{uc:?}");
    assert_eq!(uc[0].src, uc[1].dst, "{uc:?}");
}

#[test]
fn without_cap_net_raw_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("never.pcap");
    let mut runs: Vec<Command> = Vec::new();
    if common::is_root() {
        // An unprivileged user, and root without CAP_NET_RAW.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(oxcat());
        runs.push(c);
        let mut c = Command::new("capsh");
        c.args(["--drop=cap_net_raw", "--", "-c", "exec \"$0\" \"$@\""])
            .arg(oxcat());
        runs.push(c);
    } else {
        runs.push(Command::new(oxcat()));
    }
    for mut cmd in runs {
        let what = format!("{cmd:?}");
        let out = run_bounded(
            cmd.arg("--pcap")
                .arg(&pcap)
                .args(["-l", "127.0.0.1", "1234"]),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        assert!(
            err.starts_with("oxcat: --pcap: needs CAP_NET_RAW"),
            "{what}: {err}"
        );
        assert!(!pcap.exists(), "{what}: the file was created");
    }
}

#[test]
fn refused_where_there_are_no_ip_packets() {
    for (args, msg) in [
        (
            &["--pcap", "x.pcap", "-U", "/tmp/oxcat-none.sock"][..],
            "--pcap: Unix sockets carry no IP packets to capture",
        ),
        (
            &["--mermaid", "x.mmd", "-l", "-U", "/tmp/oxcat-none.sock"],
            "--mermaid: Unix sockets carry no IP packets to capture",
        ),
        (
            &["--pcap", "x.pcap", "--vsock", "3", "1"],
            "--pcap: vsock sockets carry no IP packets to capture",
        ),
        (&["--tun", "t0", "-l", "1"], "--tun needs --stack user"),
    ] {
        let out = run_bounded(Command::new(oxcat()).args(args), Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}
