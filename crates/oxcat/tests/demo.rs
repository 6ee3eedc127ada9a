//! `oxcat demo`: the notes' steps in order, on both stacks; its diagrams
//! parse with Mermaid's own parser; its pcap opens in tshark with the
//! segments the timeline shows; the accept-queue scene shows the drops.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn oxcat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_oxcat"))
}

fn run_demo(extra: &[&str]) -> Output {
    let out = oxcat()
        .arg("demo")
        .args(["--runs", "20"])
        .args(extra)
        .output()
        .expect("run oxcat demo");
    assert!(
        out.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Each needle appears, after the previous one.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match text[at..].find(n) {
            Some(i) => at += i + n.len(),
            None => panic!(
                "{n:?} missing after byte {at}; output from there:\n{}",
                &text[at..text.len().min(at + 3000)]
            ),
        }
    }
}

fn section<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text.find(from).unwrap_or_else(|| panic!("no {from:?}"));
    let end = text[start..].find(to).map_or(text.len(), |i| start + i);
    &text[start..end]
}

#[test]
fn demo_replays_the_notes_on_the_kernel_and_on_our_stack() {
    let out = run_demo(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let kernel = section(&text, "== 1.", "== 2.");
    assert_in_order(
        kernel,
        &[
            "server socket(AF_INET, SOCK_STREAM)",
            "server bind(",
            "server listen(",
            "client socket(",
            "client connect(",
            "server accept(",
            "client close(",
            "then EOF",
            "Client->>SocketServer: send('Hello, Server!')",
        ],
    );
    let ours = section(&text, "== 2.", "== 3.");
    assert_in_order(
        ours,
        &[
            "server: socket(AF_INET, SOCK_STREAM) = 3",
            "server: bind(3, 198.18.0.1:1234) = 0",
            "server: listen(3, 5) = 0",
            "client: socket(AF_INET, SOCK_STREAM) = 3",
            "client: connect(3, 198.18.0.1:1234)",
            // The handshake, done by the stacks...
            "client: out 198.18.0.2:",
            " SYN seq=",
            "server: out 198.18.0.1:1234 > 198.18.0.2:",
            " SYN-ACK seq=",
            " ACK seq=",
            "handshake done, connection in the accept queue (1 waiting, backlog 5)",
            // ...before the application accepts.
            "server: accept(3) = 4",
            "client: send(3, \"Hello, Server!\", 14) = 14",
            "\"Hello, Server!\"",
            "server: recv(4, buf, 8) = 8 \"Hello, S\"",
            "server: recv(4, buf, 8) = 6 \"erver!\"",
            "server: send(4, \"Hello, Client!\", 14) = 14",
            "client: recv(3, buf, 64) = 14 \"Hello, Client!\"",
            "(partial)",
            "client: close(3) = 0 (",
            "bytes still in the send buffer",
            // The buffered bytes go out, then the FIN.
            "client: out",
            "FIN",
            "then 0 (EOF: the client's FIN)",
            "server: close(4) = 0",
            "the server read 65536 of 65536 bytes, then EOF",
            "```mermaid",
            "sequenceDiagram",
            "```mermaid",
            "participant C as Client[198.18.0.2:",
            "participant S as Server[198.18.0.1:1234]",
            "C->>S: SYN (SEQ = ",
            "S-->>C: SYN-ACK (SEQ = ",
            "Note over C,S: 3 Way Handshaking done",
            "Note over S: accept()",
            "C->>S: PSH-ACK 'Hello, Server!'",
            "S-->>C: PSH-ACK 'Hello, Client!'",
        ],
    );
    // No data segment after the client's FIN: close drained, then FINed.
    let after_close = &ours[ours.find("client: close(3)").unwrap()..];
    let fin_line = after_close
        .lines()
        .position(|l| l.contains("client: out") && l.contains("FIN"))
        .expect("the client's FIN");
    assert!(
        !after_close
            .lines()
            .skip(fin_line + 1)
            .any(|l| l.contains("client: out") && !l.contains("len=0")),
        "data after the FIN:\n{after_close}"
    );

    let queue = section(&text, "== 3.", "== 4.");
    assert_in_order(
        queue,
        &[
            "server: listen(3, 2) = 0",
            "(3 waiting, backlog 2)",
            "final ACK dropped: accept queue full",
            "3 connections in the accept queue",
            "server: accept(3)",
            "5 of 5 accepted",
        ],
    );
    let loss = section(&text, "== 4.", "== 5.");
    assert_in_order(loss, &["retransmit", "-x", "32768 bytes arrived intact"]);
    let figures = section(&text, "== 5.", "\u{0}");
    assert_in_order(
        figures,
        &[
            "| SYN arrival to accept(), oxcat stack",
            "| 1.7 ms |",
            "kernel over loopback",
            "| processing one segment, oxcat stack: receive + ACK | 200 µs |",
        ],
    );
}

fn mermaid_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("```mermaid\n") {
        let body = &rest[i + 11..];
        let end = body.find("```").expect("closed block");
        blocks.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    blocks
}

fn checker() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/mermaid-check");
    if dir.join("node_modules").is_dir() {
        return Some(dir.join("check.mjs"));
    }
    if std::env::var("OXCAT_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("Mermaid's parser is not installed: run tools/mermaid-check/install.sh (OXCAT_REQUIRE_TOOLS=1 forbids skipping)");
    }
    eprintln!("SKIPPED: Mermaid's parser is not installed (tools/mermaid-check/install.sh)");
    None
}

#[test]
fn demo_diagrams_parse_with_mermaid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("segments.mmd");
    let out = run_demo(&["--mermaid", file.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let blocks = mermaid_blocks(&text);
    // Kernel calls; our calls; our segments; the lossy link's segments.
    assert_eq!(blocks.len(), 4, "{text}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written, blocks[2], "--mermaid writes the segment diagram");
    let Some(check) = checker() else { return };
    let mut paths = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let p = dir.path().join(format!("d{i}.mmd"));
        std::fs::write(&p, b).unwrap();
        paths.push(p);
    }
    let st = Command::new("node")
        .arg(&check)
        .args(&paths)
        .output()
        .expect("run node");
    assert!(
        st.status.success(),
        "Mermaid rejected a diagram: {}{}",
        String::from_utf8_lossy(&st.stdout),
        String::from_utf8_lossy(&st.stderr)
    );
    // And the checker can fail: a broken diagram is refused.
    let bad = dir.path().join("bad.mmd");
    std::fs::write(&bad, "sequenceDiagram\n    C->>: SYN\n").unwrap();
    let st = Command::new("node").arg(&check).arg(&bad).output().unwrap();
    assert!(
        !st.status.success(),
        "the checker accepted a broken diagram"
    );
}

#[test]
fn demo_pcap_opens_in_tshark_with_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("demo.pcap");
    let out = run_demo(&["--pcap", pcap.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let ours = section(&text, "== 2.", "What it shows");
    let segments = ours.lines().filter(|l| l.contains(": out ")).count();
    assert!(segments > 40, "{ours}");
    let tshark = |filter: &[&str]| -> Vec<String> {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(filter)
            .output()
            .expect("tshark (scripts/test installs it)");
        assert!(
            o.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let all = tshark(&[]);
    assert_eq!(
        all.len(),
        segments,
        "packets in the pcap vs segments in the timeline"
    );
    assert!(tshark(&["-Y", "_ws.malformed"]).is_empty());
    assert_eq!(tshark(&["-Y", "tcp"]).len(), segments);
    assert_eq!(tshark(&["-Y", "tcp.flags.syn == 1"]).len(), 2);
    assert_eq!(tshark(&["-Y", "tcp.flags.fin == 1"]).len(), 2);
    let hello = tshark(&["-Y", "tcp.payload contains \"Hello, Server!\""]);
    assert_eq!(hello.len(), 1);
}

#[test]
fn demo_json_lines_are_json() {
    let out = run_demo(&["--trace-format", "json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut types = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["t_us"].is_u64(), "{line}");
        types.insert(v["type"].as_str().unwrap_or("").to_string());
    }
    for t in ["socket_call", "segment", "state", "queue", "timer", "note"] {
        assert!(types.contains(t), "no {t} event in {types:?}");
    }
    // The narrative went to stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("== 2."));
}

#[test]
fn demo_rejects_bad_flags_with_one_line() {
    for args in [&["--loss", "abc"][..], &["--loss", "2"], &["--bogus"]] {
        let out = oxcat().arg("demo").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("oxcat: demo: "), "{err}");
    }
}

/// The README's "How TCP really works" quotes the demo: every timeline line
/// it shows must be (the start of) a line the demo prints today.
#[test]
fn readme_quotes_the_demo_verbatim() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let section = section(&readme, "## How TCP really works", "\n## ");
    let quoted: Vec<&str> = section.lines().filter(|l| l.starts_with("[ ")).collect();
    assert!(quoted.len() >= 10, "the section quotes the demo");
    let out = run_demo(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    for q in quoted {
        let stem = match q.find(",...") {
            Some(i) => &q[..i],
            None => q,
        };
        assert!(
            text.lines().any(|l| l.starts_with(stem)),
            "README quotes a line the demo no longer prints:\n{q}"
        );
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

/// `oxcat demo --kernel`: the kernel's server and our stack's client over
/// TUN, in a private namespace the demo makes itself (root).
#[test]
fn demo_kernel_over_tun() {
    if !is_root() {
        if std::env::var("OXCAT_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
            panic!(
                "demo_kernel_over_tun needs root, and OXCAT_REQUIRE_ROOT_TESTS=1 forbids skipping"
            );
        }
        eprintln!("SKIPPED demo_kernel_over_tun: needs root");
        return;
    }
    let out = oxcat().args(["demo", "--kernel"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_in_order(
        &text,
        &[
            "server socket(AF_INET, SOCK_STREAM)",
            "server bind(",
            "198.18.0.1:1234) = 0",
            "server listen(",
            "client: connect(3, 198.18.0.1:1234)",
            "client: out 198.18.0.2:",
            " SYN seq=",
            "client: in  198.18.0.1:1234 > 198.18.0.2:",
            " SYN-ACK seq=",
            "SynSent -> Established",
            "server accept(",
            "server read(4, buf, 8) = 8 \"Hello, S\"",
            "client: recv(3, buf, 64) = 14 \"Hello, Client!\"",
            "client: close(3) = 0",
            "FIN",
            "```mermaid",
            "```mermaid",
            "Note over C,S: 3 Way Handshaking done",
            "The kernel's server read 65536 of 65536 bytes",
        ],
    );
    // Without the privilege: one line, exit 2.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_oxcat"))
        .args(["demo", "--kernel"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("oxcat: demo: --kernel needs root"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
