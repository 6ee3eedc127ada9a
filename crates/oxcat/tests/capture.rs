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
    assert_eq!(
        client.0.is_loopback(),
        server.0.is_loopback(),
        "both ends on loopback or neither: {what}"
    );
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
    // few KB in a segment or two (an Ethernet-sized MTU a few more), and
    // each packet appears once (not twice as leaving and arriving).
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

/// `fields` of every packet of `file`, as tshark prints them (one row
/// per packet, the fields in order).
fn fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-T", "fields", "-E", "separator=;"];
    for f in fields {
        args.extend(["-e", f]);
    }
    tshark(file, &args)
        .lines()
        .map(|l| l.split(';').map(str::to_string).collect())
        .collect()
}

/// The bytes covered by the byte ranges `[start, end)`, overlaps counted once.
fn covered(mut ranges: Vec<(u64, u64)>) -> u64 {
    ranges.sort_unstable();
    let (mut total, mut reach) = (0, 0);
    for (start, end) in ranges {
        let start = start.max(reach);
        if end > start {
            total += end - start;
            reach = end;
        }
    }
    total
}

/// A 64 MiB transfer one way and 8 MiB the other over loopback, as fast as
/// the kernel moves it: either the file holds every byte of both (each
/// sequence range once at least, retransmissions aside), or oxcat says how
/// many packets the kernel dropped. Never a silent gap.
#[test]
fn a_fast_transfer_is_captured_whole_or_the_drop_is_said() {
    if !root_or_skip("a_fast_transfer_is_captured_whole_or_the_drop_is_said") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const UP: u64 = 64 << 20;
    const DOWN: u64 = 8 << 20;
    let out = in_namespace(
        d,
        &format!(
            r#"
head -c {UP} /dev/urandom > $D/up
head -c {DOWN} /dev/urandom > $D/down
timeout 60 $NCAT -l 127.0.0.1 5560 < $D/down > $D/nc_got &
wait_port tcp 5560
timeout 60 $OXCAT --pcap $D/fast.pcap 127.0.0.1 5560 < $D/up > $D/ox_got 2> $D/ox.err
echo "oxcat: $?"
wait
cmp $D/up $D/nc_got && echo "up intact"
cmp $D/down $D/ox_got && echo "down intact"
rm -f $D/up $D/down $D/nc_got $D/ox_got
"#
        ),
    );
    for line in ["oxcat: 0", "up intact", "down intact"] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    let err = text(d, "ox.err");
    let drops: Option<u64> = err.lines().find_map(|l| {
        let rest = l.strip_prefix("oxcat: --pcap: ")?;
        let (n, tail) = rest.split_once(' ')?;
        tail.starts_with("packets dropped by kernel")
            .then(|| n.parse().unwrap())
    });
    let file = d.join("fast.pcap");
    let malformed = tshark(&file, &["-Y", "_ws.malformed"]);
    assert_eq!(malformed.trim(), "", "malformed packets");
    let rows = fields(
        &file,
        &[
            "tcp.srcport",
            "tcp.dstport",
            "tcp.seq",
            "tcp.len",
            "tcp.flags",
        ],
    );
    let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("{s:?}")) };
    let mut up = Vec::new();
    let mut down = Vec::new();
    let (mut syns, mut fins, mut payload) = (0, 0, 0);
    for r in &rows {
        assert_eq!(r.len(), 5, "{r:?}");
        assert!(
            r[0] == "5560" || r[1] == "5560",
            "another connection: {r:?}"
        );
        let (seq, len) = (num(&r[2]), num(&r[3]));
        let flags = u16::from_str_radix(r[4].trim_start_matches("0x"), 16).unwrap();
        syns += usize::from(flags & 0x02 != 0);
        fins += usize::from(flags & 0x01 != 0);
        payload += len;
        // Relative sequence numbers: the first data byte is 1.
        let range = (seq, seq + len);
        if r[1] == "5560" {
            up.push(range);
        } else {
            down.push(range);
        }
    }
    let (up_seen, down_seen) = (covered(up), covered(down));
    eprintln!(
        "fast transfer: {} packets, {payload} TCP payload bytes captured \
         (sent {UP} + {DOWN}; covered {up_seen} + {down_seen}), kernel drops: {}",
        rows.len(),
        drops.map_or("none reported".into(), |n| n.to_string())
    );
    match drops {
        None => {
            assert_eq!(err, "", "nothing on stderr without drops");
            assert_eq!(syns, 2, "SYN and SYN-ACK");
            assert!(fins >= 2, "both FINs");
            assert_eq!(up_seen, UP, "every byte sent up is in the file");
            assert_eq!(down_seen, DOWN, "every byte sent down is in the file");
            assert!(payload >= UP + DOWN);
        }
        Some(n) => {
            // The loss is said, in one line; whatever is missing is covered by it.
            assert!(n > 0, "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.ends_with("the file misses them.\n"), "{err}");
        }
    }
}

/// Fragmented UDP datagrams over loopback made small (MTU 1280): the
/// first fragment is found behind IPv6's fragment header (and the IPv4
/// header's MF flag), the later ones, which carry no ports, by their
/// datagram's identification; tshark reassembles the datagram.
#[test]
fn fragmented_datagrams_are_captured_whole() {
    if !root_or_skip("fragmented_datagrams_are_captured_whole") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let datagram = random_bytes(3000, 31);
    std::fs::write(d.join("dgram"), &datagram).unwrap();
    let out = in_namespace(
        d,
        r#"
ip link set lo mtu 1280
# IPv6: oxcat receives the fragments.
timeout 20 $OXCAT -u -l ::1 5562 --pcap $D/f6.pcap > $D/f6_got 2> $D/f6.err &
OX=$!
wait_port udp 5562
timeout 5 $NCAT -u ::1 5562 < $D/dgram
for i in $(seq 250); do [ "$(wc -c < $D/f6_got)" = 3000 ] && break; sleep 0.02; done
kill -TERM $OX; wait $OX
echo "oxcat -u -l: $?"
# IPv4: oxcat sends them.
timeout 20 $NCAT -u -l 127.0.0.1 5563 > $D/f4_got &
NC=$!
wait_port udp 5563
(cat $D/dgram; sleep 0.5) | timeout 20 $OXCAT -u --pcap $D/f4.pcap 127.0.0.1 5563 2> $D/f4.err
echo "oxcat -u: $?"
for i in $(seq 250); do [ "$(wc -c < $D/f4_got)" = 3000 ] && break; sleep 0.02; done
kill $NC; wait $NC
exit 0
"#,
    );
    assert!(out.contains("oxcat -u -l: 143"), "{out}");
    assert!(out.contains("oxcat -u: 0"), "{out}");
    assert_eq!(read(d, "f6_got"), datagram, "{}", text(d, "f6.err"));
    assert_eq!(read(d, "f4_got"), datagram, "{}", text(d, "f4.err"));
    for (file, ident, offset, more, port) in [
        (
            "f6.pcap",
            "ipv6.fraghdr.ident",
            "ipv6.fraghdr.offset",
            "ipv6.fraghdr.more",
            "5562",
        ),
        ("f4.pcap", "ip.id", "ip.frag_offset", "ip.flags.mf", "5563"),
    ] {
        let path = d.join(file);
        let malformed = tshark(&path, &["-Y", "_ws.malformed"]);
        assert_eq!(
            malformed.trim(),
            "",
            "{file}: malformed packets; the file:\n{}",
            tshark(&path, &["-V"])
        );
        let rows = fields(&path, &[ident, offset, more, "udp.dstport", "udp.length"]);
        // 3008 bytes of UDP in fragments of at most 1280 bytes: three.
        assert_eq!(rows.len(), 3, "{file}: {rows:?}");
        assert!(rows.iter().all(|r| r[0] == rows[0][0]), "{file}: {rows:?}");
        let offsets: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(offsets[0], "0", "{file}: {rows:?}");
        assert!(offsets[1] != "0" && offsets[2] != "0", "{file}: {rows:?}");
        let more: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
        assert!(
            matches!(more[..], ["1" | "True", "1" | "True", "0" | "False"]),
            "{file}: {rows:?}"
        );
        // Reassembled by tshark at the last fragment: the whole datagram.
        assert_eq!(rows[2][3], port, "{file}: {rows:?}");
        assert_eq!(rows[2][4], "3008", "{file}: {rows:?}");
    }
}

/// TCP segments behind an IPv6 destination options header (set on the
/// client's socket with IPV6_DSTOPTS, which needs CAP_NET_RAW): the
/// filter walks the header to the ports; oxcat keeps the whole exchange.
#[test]
fn tcp_behind_an_ipv6_destination_options_header() {
    if !root_or_skip("tcp_behind_an_ipv6_destination_options_header") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let client = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
# Every segment gets an 8-byte destination options header (one PadN option).
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
s.connect(("::1", 5564))
s.sendall(b"behind-a-destination-options-header\n")
s.shutdown(socket.SHUT_WR)
while s.recv(4096):
    pass
s.close()
"#;
    std::fs::write(d.join("client.py"), client).unwrap();
    let out = in_namespace(
        d,
        r#"
timeout 20 $OXCAT -l ::1 5564 --pcap $D/d6.pcap < /dev/null > $D/d6_got 2> $D/d6.err &
OX=$!
wait_port tcp 5564
timeout 10 python3 $D/client.py
echo "client: $?"
wait $OX
echo "oxcat -l: $?"
"#,
    );
    assert!(out.contains("client: 0"), "{out}");
    assert!(out.contains("oxcat -l: 0"), "{out}");
    assert_eq!(
        text(d, "d6_got"),
        "behind-a-destination-options-header\n",
        "{}",
        text(d, "d6.err")
    );
    let file = d.join("d6.pcap");
    let ps = packets(&file);
    check_connection(&ps, ("::1".parse().unwrap(), 5564), 36, 0);
    // The client's packets carry the header, the server's do not.
    let rows = fields(&file, &["tcp.srcport", "ipv6.nxt"]);
    for r in &rows {
        let expected = if r[0] == "5564" { "6" } else { "60" };
        assert_eq!(r[1], expected, "{rows:?}");
    }
    assert!(rows.iter().filter(|r| r[0] != "5564").count() >= 3);
}

/// Over a veth pair between two namespaces the test makes (198.18.0.0/15
/// and fd00::/8 inside them only): oxcat listens in one (IPv4) and
/// connects from it (IPv6), a kernel ncat is in the other. On a real
/// interface each packet crosses once, leaving or arriving: the file
/// holds each exactly once, and nothing else.
#[test]
fn over_a_veth_pair_each_packet_once() {
    if !root_or_skip("over_a_veth_pair_each_packet_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = random_bytes(20000, 41);
    let b = random_bytes(7000, 42);
    std::fs::write(d.join("a"), &a).unwrap();
    std::fs::write(d.join("b"), &b).unwrap();
    let out = in_namespace(
        d,
        r#"
# The peer: a second namespace, held by a sleeping process; both go at the end.
unshare --net sleep 60 &
PEER=$!
trap 'kill $PEER 2>/dev/null' EXIT
for i in $(seq 250); do
  [ "$(readlink /proc/$PEER/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
  sleep 0.02
done
in_peer() { nsenter --net=/proc/$PEER/ns/net "$@"; }
ip link add oxa type veth peer name oxb netns $PEER
ip addr add 198.18.0.1/24 dev oxa
ip addr add fd00::1/64 dev oxa nodad
ip link set oxa up
in_peer ip link set lo up
in_peer ip addr add 198.18.0.2/24 dev oxb
in_peer ip addr add fd00::2/64 dev oxb nodad
in_peer ip link set oxb up
# IPv4: oxcat listens here, ncat connects from the peer.
timeout 20 $OXCAT -l 198.18.0.1 5565 --pcap $D/v4.pcap < $D/b > $D/ox_got4 2> $D/v4.err &
OX=$!
wait_port tcp 5565
in_peer timeout 20 $NCAT 198.18.0.1 5565 < $D/a > $D/nc_got4
echo "ncat v4: $?"
wait $OX
echo "oxcat -l v4: $?"
# IPv6: ncat listens in the peer, oxcat connects from here.
in_peer timeout 20 $NCAT -6 -l fd00::2 5566 < $D/b > $D/nc_got6 &
NC=$!
for i in $(seq 250); do grep -q ":15BE " /proc/$PEER/net/tcp6 && break; sleep 0.02; done
timeout 20 $OXCAT --pcap $D/v6.pcap fd00::2 5566 < $D/a > $D/ox_got6 2> $D/v6.err
echo "oxcat v6: $?"
wait $NC
"#,
    );
    for line in ["ncat v4: 0", "oxcat -l v4: 0", "oxcat v6: 0"] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    assert_eq!(read(d, "ox_got4"), a, "{}", text(d, "v4.err"));
    assert_eq!(read(d, "nc_got4"), b);
    assert_eq!(read(d, "nc_got6"), a, "{}", text(d, "v6.err"));
    assert_eq!(read(d, "ox_got6"), b);
    for (file, server, client_ip) in [
        ("v4.pcap", ("198.18.0.1", 5565), "198.18.0.2"),
        ("v6.pcap", ("fd00::2", 5566), "fd00::1"),
    ] {
        let path = d.join(file);
        let ps = packets(&path);
        let server = (server.0.parse().unwrap(), server.1);
        // The client sent `a`, the server `b`; exactly one handshake.
        check_connection(&ps, server, a.len(), b.len());
        let client: IpAddr = client_ip.parse().unwrap();
        assert!(ps.iter().all(|p| p.src.0 == client || p.dst.0 == client));
        // Each packet once: no two alike in every header field that a
        // second copy would repeat (a retransmission has a new timestamp).
        let rows = fields(
            &path,
            &[
                "ip.src",
                "ipv6.src",
                "ip.id",
                "tcp.srcport",
                "tcp.seq",
                "tcp.ack",
                "tcp.flags",
                "tcp.len",
                "tcp.options.timestamp.tsval",
            ],
        );
        let distinct: BTreeSet<&Vec<String>> = rows.iter().collect();
        assert_eq!(
            distinct.len(),
            rows.len(),
            "{file}: a packet twice: {rows:#?}"
        );
    }
}
