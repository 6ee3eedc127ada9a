//! `oxcat demo`: the notes' steps in order, on both stacks; its diagrams
//! parse with Mermaid's own parser; its pcap opens in tshark with the
//! segments the timeline shows; the accept-queue scene shows the drops.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
            "the first accept() after 5.000 s",
            "server: listen(3, 2) = 0",
            "the server does not call accept() for 5.000 s",
            "(3 waiting, backlog 2)",
            "final ACK dropped: accept queue full",
            "5.000 s later: 3 connections in the accept queue",
            "server: accept(3)",
            "it called accept() first at 5.000 s",
            "5 of 5 accepted",
        ],
    );
    // What the text says is when the run did it: the first accept() is
    // stamped 5 s, the last as the summary says.
    let accepts: Vec<&str> = queue
        .lines()
        .filter(|l| l.contains("server: accept(3)"))
        .collect();
    assert_eq!(accepts.len(), 5, "{queue}");
    assert!(accepts[0].starts_with("[   5.000000]"), "{}", accepts[0]);
    let last = accepts[4][1..12].trim();
    assert!(
        queue.contains(&format!("the last at {} s", &last[..last.len() - 3])),
        "the last accept() at {last}:\n{queue}"
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

fn json_events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn tshark(pcap: &Path, filter: &[&str]) -> Vec<String> {
    let o = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
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
}

/// The pcap holds the userspace exchange (TCP stream 0: every segment the
/// timeline shows leaving a stack, the link being clean) and then the
/// lossy-link scene (stream 1: what the client's end saw, its own segments
/// and those of the server's the link delivered).
#[test]
fn demo_pcap_opens_in_tshark_with_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("demo.pcap");
    let out = run_demo(&["--pcap", pcap.to_str().unwrap(), "--trace-format", "json"]);
    let events = json_events(&out.stdout);
    let count = |scene: u64, host: Option<&str>, dir: Option<&str>, ty: &str| {
        events
            .iter()
            .filter(|v| {
                v["scene"] == scene
                    && v["type"] == ty
                    && host.is_none_or(|h| v["host"] == h)
                    && dir.is_none_or(|d| v["dir"] == d)
            })
            .count()
    };
    let exchange = count(2, None, Some("out"), "segment");
    assert!(exchange > 40, "{exchange}");
    let lossy = count(4, Some("client"), None, "segment");
    assert!(lossy > 20, "{lossy}");
    let all = tshark(&pcap, &[]);
    assert_eq!(
        all.len(),
        exchange + lossy,
        "packets in the pcap vs segments in the timeline"
    );
    assert!(tshark(&pcap, &["-Y", "_ws.malformed"]).is_empty());
    assert_eq!(tshark(&pcap, &["-Y", "tcp"]).len(), exchange + lossy);
    assert_eq!(tshark(&pcap, &["-Y", "tcp.stream == 0"]).len(), exchange);
    assert_eq!(tshark(&pcap, &["-Y", "tcp.stream == 1"]).len(), lossy);
    assert_eq!(
        tshark(&pcap, &["-Y", "tcp.stream == 0 && tcp.flags.syn == 1"]).len(),
        2
    );
    assert_eq!(
        tshark(&pcap, &["-Y", "tcp.stream == 0 && tcp.flags.fin == 1"]).len(),
        2
    );
    let hello = tshark(&pcap, &["-Y", "tcp.payload contains \"Hello, Server!\""]);
    assert_eq!(hello.len(), 1);
    // The lossy scene's retransmissions are there for Wireshark to see.
    assert!(count(4, Some("client"), None, "retransmit") > 0);
    let rtx = tshark(
        &pcap,
        &[
            "-Y",
            "tcp.stream == 1 && (tcp.analysis.retransmission || tcp.analysis.fast_retransmission)",
        ],
    );
    assert!(!rtx.is_empty(), "no retransmission in stream 1");
}

/// Every event of every scene, each line with its scene; each scene opens
/// with a marker saying which clock its t_us count on.
#[test]
fn demo_json_lines_are_json() {
    let out = run_demo(&["--trace-format", "json"]);
    let events = json_events(&out.stdout);
    let mut types = std::collections::BTreeSet::new();
    let mut markers = Vec::new();
    let mut current = 0;
    for v in &events {
        assert!(v["t_us"].is_u64(), "{v}");
        let scene = v["scene"]
            .as_u64()
            .unwrap_or_else(|| panic!("no scene: {v}"));
        if v["type"] == "scene" {
            assert_eq!(v["t_us"], 0);
            assert!(v["title"].is_string() && v["clock"].is_string(), "{v}");
            markers.push(scene);
            current = scene;
        } else {
            assert_eq!(scene, current, "an event outside its scene's block: {v}");
            types.insert((scene, v["type"].as_str().unwrap_or("").to_string()));
        }
    }
    assert_eq!(markers, [1, 2, 3, 4]);
    for t in ["socket_call", "segment", "state", "queue", "timer", "note"] {
        assert!(
            types.contains(&(2, t.to_string())),
            "no {t} event in scene 2: {types:?}"
        );
    }
    // Scenes 3 and 4 are not filtered in JSON: their segments and timers are there.
    for scene in [3, 4] {
        for t in ["segment", "state", "timer", "socket_call"] {
            assert!(
                types.contains(&(scene, t.to_string())),
                "no {t} event in scene {scene}: {types:?}"
            );
        }
    }
    // The narrative went to stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("== 2."));
}

#[test]
fn demo_rejects_bad_flags_with_one_line() {
    for (args, says) in [
        (&["--loss", "abc"][..], "--loss"),
        (&["--loss", "2"], "--loss 2 is out of range (0 to 0.9)"),
        (
            &["--loss", "-0.5"],
            "--loss -0.5 is out of range (0 to 0.9)",
        ),
        (
            &["--delay", "-5"],
            "--delay -5 is out of range (0 to 10000 ms)",
        ),
        (&["--runs", "0"], "--runs must be at least 10"),
        (&["--runs", "9"], "--runs must be at least 10"),
        (&["--figures-only", "--pcap", "x.pcap"], "--figures-only"),
        (
            &["--kernel", "--loss", "0.2"],
            "--loss does not apply to --kernel",
        ),
        (
            &["--kernel", "--seed", "3", "--runs", "20"],
            "--seed, --runs do not apply to --kernel",
        ),
        (&["--bogus"], "--bogus"),
    ] {
        let out = oxcat().arg("demo").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("oxcat: demo: "), "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} ran something");
    }
}

/// `oxcat demo | head -1`: when the reader goes away the demo stops,
/// quietly (EPIPE is the reader's choice, not an error to report), with
/// status 1 and no panic; with `--trace-format json` as well (the JSON
/// lines are what goes to the pipe then).
#[test]
fn demo_stops_quietly_when_its_reader_goes_away() {
    for extra in [&[][..], &["--trace-format", "json"]] {
        // A pipe holding one page, far less than the demo prints: the demo
        // cannot have written everything before the reader goes, whatever
        // the scheduler does.
        let (mut reader, writer) = std::io::pipe().unwrap();
        rustix::pipe::fcntl_setpipe_size(&reader, 4096).unwrap();
        let mut cmd = oxcat();
        cmd.args(["demo", "--runs", "10"])
            .args(extra)
            .stdout(writer)
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        drop(cmd); // our copy of the pipe's writing end
        let mut first = [0u8; 16];
        reader.read_exact(&mut first).unwrap();
        drop(reader);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(!err.contains("oxcat: demo:"), "{extra:?}: {err}");
        if extra.is_empty() {
            assert_eq!(err, "", "the narrative went to the pipe");
        }
    }
}

/// `oxcat demo > /dev/full`: one line naming the failure, status 1, no panic.
#[test]
fn demo_reports_an_unwritable_standard_output_in_one_line() {
    for extra in [&[][..], &["--trace-format", "json"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = oxcat()
            .args(["demo", "--runs", "10"])
            .args(extra)
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        // With json the narrative shares standard error: the last line is ours.
        assert_eq!(
            err.trim_end().lines().last(),
            Some("oxcat: demo: cannot write to standard output: No space left on device"),
            "{extra:?}: {err}"
        );
        if extra.is_empty() {
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}

/// A value out of range is named with its flag, and only the flag that
/// is wrong: one line, exit 2.
#[test]
fn demo_names_the_flag_out_of_range() {
    for (args, line) in [
        (&["--loss", "2"][..], "--loss 2 is out of range (0 to 0.9)"),
        (
            &["--loss", "0.95"],
            "--loss 0.95 is out of range (0 to 0.9)",
        ),
        (&["--loss", "NaN"], "--loss NaN is out of range (0 to 0.9)"),
        (
            &["--delay", "20000"],
            "--delay 20000 is out of range (0 to 10000 ms)",
        ),
        (
            &["--loss", "0.5", "--delay", "-1"],
            "--delay -1 is out of range (0 to 10000 ms)",
        ),
    ] {
        let out = oxcat().arg("demo").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("oxcat: demo: {line}\n"),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?} ran something");
    }
}

/// An output file that can be created but not written (a full disk) is
/// reported with the OS's reason, not the pcap library's wrapper text.
#[test]
fn demo_reports_why_an_output_file_cannot_be_written() {
    for args in [
        &["--runs", "10", "--pcap", "/dev/full"][..],
        &["--kernel", "--pcap", "/dev/full"],
        &["--runs", "10", "--mermaid", "/dev/full"],
    ] {
        let out = oxcat().arg("demo").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err, "oxcat: demo: cannot write /dev/full: No space left on device\n",
            "{args:?}"
        );
    }
}

/// An output file that cannot be created is reported before anything
/// runs: one line naming the file and the OS's reason, exit 1 (an I/O
/// failure, as for the demo's other files).
#[test]
fn demo_checks_its_output_files_first() {
    for flag in ["--pcap", "--mermaid"] {
        for kernel in [false, true] {
            let mut cmd = oxcat();
            cmd.args(["demo", flag, "/nonexistent/dir/out"]);
            if kernel {
                cmd.arg("--kernel");
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{flag} {kernel}: {err}");
            assert_eq!(
                err.trim_end(),
                "oxcat: demo: cannot create /nonexistent/dir/out: No such file or directory",
                "{flag}"
            );
            assert!(out.stdout.is_empty(), "{flag}: something ran first");
        }
    }
}

fn loss_summary(text: &str) -> String {
    section(text, "== 4.", "== 5.")
        .lines()
        .filter(|l| l.starts_with("- "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every loss the flag accepts ends the scene: delivered, or (at 90% loss,
/// where the SYN and its answer both get through one time in a hundred)
/// with the client's stack giving up as Linux's does, reported.
#[test]
fn demo_lossy_scene_ends_at_any_accepted_loss() {
    let out = run_demo(&["--loss", "0.5", "--seed", "3"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let summary = loss_summary(&text);
    assert!(summary.contains("32768 bytes arrived intact"), "{summary}");
    let out = run_demo(&["--loss", "0.9", "--seed", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let summary = loss_summary(&text);
    assert_in_order(
        &summary,
        &[
            "the stacks retransmitted 6 time(s)",
            "6 of the handshake",
            "until the client's stack gave up: connect() failed with -1 ETIMEDOUT",
            "after 127.0 s",
            "0 of 32768 bytes had arrived",
            "after 6 SYN retransmissions",
        ],
    );
    assert!(
        section(&text, "== 4.", "== 5.")
            .contains("client: connect(3) = -1 ETIMEDOUT (Connection timed out)"),
        "{text}"
    );
}

/// Seeds that differ only in their lowest bit give different loss patterns.
#[test]
fn demo_neighbouring_seeds_differ() {
    let mut differ = 0;
    for even in [0u64, 2, 4] {
        let runs: Vec<String> = [even, even + 1]
            .iter()
            .map(|seed| {
                let out = run_demo(&["--loss", "0.3", "--seed", &seed.to_string()]);
                let text = String::from_utf8(out.stdout).unwrap();
                let summary = loss_summary(&text);
                // "the link lost N packets and held back M": the link's doing only.
                summary[..summary.find(" (reordering)").unwrap()].to_string()
            })
            .collect();
        differ += usize::from(runs[0] != runs[1]);
    }
    assert!(differ > 0, "seeds 0/1, 2/3 and 4/5 lost the same packets");
}

/// With no loss the 5% reordering can still cause a retransmission: the
/// scene says so, and why.
#[test]
fn demo_explains_a_retransmission_without_loss() {
    let out = run_demo(&["--loss", "0", "--seed", "2"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let summary = loss_summary(&text);
    assert_in_order(
        &summary,
        &[
            "the link lost 0 packets and held back 1 (reordering)",
            "retransmitted 1 time(s)",
            "1 in loss recovery",
            "SACK",
            "1 retransmission(s) were not needed, the original being only late",
            "reordering alone caused them",
        ],
    );
}

/// Every segment the link lost is crossed in the lossy scene's diagram,
/// also when the server never heard of the connection: at 90% loss with
/// seed 1 all seven SYNs are lost, and none may be drawn as delivered.
#[test]
fn demo_crosses_every_segment_the_link_lost() {
    let out = run_demo(&["--loss", "0.9", "--seed", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let scene = section(&text, "== 4.", "== 5.");
    assert!(scene.contains("the link lost 7 packets"), "{scene}");
    let diagram = &mermaid_blocks(scene)[0];
    let arrows: Vec<&str> = diagram.lines().filter(|l| l.contains(": ")).collect();
    let crossed: Vec<&&str> = arrows
        .iter()
        .filter(|l| l.starts_with("    C-xS: SYN ") && l.ends_with(" lost"))
        .collect();
    assert_eq!(crossed.len(), 7, "{diagram}");
    assert!(
        !diagram.contains("->>"),
        "a lost SYN drawn delivered:\n{diagram}"
    );
}

/// Each data copy scene 4's stacks sent, by (sender, seq), in order:
/// whether the link delivered it (in the JSON trace the link's own word
/// follows each departure it dropped: a `"host":"link"` note); and how many
/// copies arrived, by (sender, seq).
type Copies = BTreeMap<(String, u64), Vec<bool>>;

fn data_copies(scene: &[&serde_json::Value]) -> (Copies, BTreeMap<(String, u64), usize>) {
    let mut copies: Copies = BTreeMap::new();
    let mut arrivals = BTreeMap::new();
    for (i, v) in scene.iter().enumerate() {
        if v["type"] == "note" && v["host"] == "link" {
            let before = scene[i - 1];
            assert!(
                before["type"] == "segment" && before["dir"] == "out",
                "a link note not after a departure: {before}"
            );
            if before["len"].as_u64() != Some(0) {
                let key = (
                    before["host"].as_str().unwrap().to_string(),
                    before["seq"].as_u64().unwrap(),
                );
                *copies.get_mut(&key).unwrap().last_mut().unwrap() = false;
            }
            continue;
        }
        if v["type"] != "segment" || v["len"].as_u64() == Some(0) {
            continue;
        }
        let host = v["host"].as_str().unwrap();
        let seq = v["seq"].as_u64().unwrap();
        if v["dir"] == "out" {
            copies
                .entry((host.to_string(), seq))
                .or_default()
                .push(true);
        } else {
            let sender = if host == "client" { "server" } else { "client" };
            *arrivals.entry((sender.to_string(), seq)).or_default() += 1;
        }
    }
    (copies, arrivals)
}

/// The count in "N retransmission(s) were not needed, ..." lines.
fn needless_said(narrative: &str) -> usize {
    narrative
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter(|l| l.contains(" retransmission(s) were not needed"))
        .map(|l| l.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum()
}

/// A retransmission was not needed only if an earlier copy arrived. On a
/// link with no delay (`--delay 0`) an original and its retransmission can
/// leave in the same millisecond alike in every byte, and when only one of
/// them arrives (late, held back by the link) only the link knows which:
/// the expectation comes from its word in the JSON trace. Seed 12 has an
/// original that arrived a millisecond late and an identical retransmission,
/// sent in the same instant, that the link dropped: that retransmission was
/// not needed (it was counted needed, the original drawn lost).
#[test]
fn demo_counts_as_needless_only_retransmissions_whose_original_arrived() {
    let (mut needless_seen, mut needed_seen) = (0, 0);
    for seed in ["7", "12", "44"] {
        let out = run_demo(&["--delay", "0", "--seed", seed, "--trace-format", "json"]);
        let events = json_events(&out.stdout);
        let scene: Vec<&serde_json::Value> = events.iter().filter(|v| v["scene"] == 4).collect();
        let (copies, arrivals) = data_copies(&scene);
        // The link's word agrees with the trace: what it delivered arrived.
        for (key, sent) in &copies {
            let delivered = sent.iter().filter(|&&d| d).count();
            assert_eq!(
                delivered,
                arrivals.get(key).copied().unwrap_or(0),
                "seed {seed}: {key:?} {sent:?}"
            );
        }
        let resent = |needless: bool| -> usize {
            copies
                .values()
                .map(|sent| {
                    (1..sent.len())
                        .filter(|&n| sent[..n].contains(&true) == needless)
                        .count()
                })
                .sum()
        };
        let narrative = String::from_utf8_lossy(&out.stderr);
        let said = needless_said(section(&narrative, "== 4.", "== 5."));
        assert_eq!(said, resent(true), "seed {seed}: {copies:?}");
        needless_seen += resent(true);
        needed_seen += resent(false);
        if seed == "12" {
            assert_eq!(said, 1, "seed 12");
            let case = copies
                .iter()
                .find(|(_, sent)| sent[..] == [true, false])
                .map(|((_, seq), _)| *seq);
            let seq = case.unwrap_or_else(|| {
                panic!("seed 12: no original delivered and its copy lost: {copies:?}")
            });
            // The diagram draws the original delivered (and crosses the
            // copy, when it is not among the segments it leaves out).
            let diagram = &mermaid_blocks(section(&narrative, "== 4.", "== 5."))[0];
            let arrows: Vec<&str> = diagram
                .lines()
                .filter(|l| l.contains(&format!("SEQ = {seq},")))
                .collect();
            assert!(
                arrows.first().is_some_and(|a| a.starts_with("    C->>S: ")),
                "the original crossed:\n{diagram}"
            );
            assert!(
                arrows[1..].iter().all(|a| a.ends_with(" lost")),
                "the copy not crossed:\n{diagram}"
            );
        }
    }
    assert!(
        needless_seen > 0 && needed_seen > 0,
        "{needless_seen} {needed_seen}"
    );
}

/// The application's bytes leave when it hands them over: on a link with
/// no delay the first data segment goes out at the instant connect()
/// completes, not when the next timer happens to fall due.
#[test]
fn demo_sends_the_data_when_the_application_does() {
    let out = run_demo(&["--delay", "0", "--trace-format", "json"]);
    let events = json_events(&out.stdout);
    let scene: Vec<&serde_json::Value> = events.iter().filter(|v| v["scene"] == 4).collect();
    let connected = scene
        .iter()
        .find(|v| v["type"] == "socket_call" && v["call"] == "connect(3) completes")
        .expect("connect completes")["t_us"]
        .as_u64();
    let first_data = scene
        .iter()
        .find(|v| {
            v["type"] == "segment"
                && v["host"] == "client"
                && v["dir"] == "out"
                && v["len"].as_u64() > Some(0)
        })
        .expect("a data segment")["t_us"]
        .as_u64();
    assert_eq!(first_data, connected);
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
    // The figures table has the demo's rows, no more and no fewer: the
    // first two cells (what is measured, the notes' figure); the measured
    // numbers are the README's own run.
    let rows = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| what |"))
            .map(|l| l.split(" | ").take(2).collect::<Vec<_>>().join(" | "))
            .collect()
    };
    assert_eq!(
        rows(section),
        rows(self::section(&text, "== 5.", "\u{0}")),
        "the README's figures table and the demo's"
    );
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
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("kernel.pcap");
    let mmd = dir.path().join("kernel.mmd");
    let out = oxcat()
        .args(["demo", "--kernel", "--pcap"])
        .arg(&pcap)
        .arg("--mermaid")
        .arg(&mmd)
        .output()
        .unwrap();
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
            "client: recv(3, buf, 64) = 14 \"Hello, Client!\"",
            "client: close(3) = 0",
            "FIN",
            "```mermaid",
            "```mermaid",
            "Note over C,S: 3 Way Handshaking done",
            "The kernel's server read 65536 of 65536 bytes",
        ],
    );
    // The server reads and writes on the descriptor accept() returned,
    // and closes the listening one first, the accepted one last.
    let accept = text.lines().find(|l| l.contains("server accept(")).unwrap();
    let listening = &accept[accept.find("accept(").unwrap() + 7..accept.find(')').unwrap()];
    let after = &accept[accept.find(") = ").unwrap() + 4..];
    let accepted = after.split(' ').next().unwrap();
    assert_ne!(listening, accepted, "{accept}");
    assert_in_order(
        &text,
        &[
            &format!("server close({listening}) = 0"),
            &format!("server read({accepted}, buf, 8) = 8 \"Hello, S\""),
            &format!("server read({accepted}, buf, 8) = 6 \"erver!\""),
            &format!("server write({accepted}, \"Hello, Client!\", 14) = 14"),
            &format!("server read({accepted}, buf, 65536) ... = 65536 bytes"),
            &format!("server close({accepted}) = 0"),
        ],
    );
    // --pcap: every segment our stack sent or received, as the timeline
    // shows them; --mermaid: the run's segment diagram.
    let segments = text
        .lines()
        .filter(|l| l.contains("client: out ") || l.contains("client: in "))
        .count();
    assert!(segments > 40, "{text}");
    assert_eq!(tshark(&pcap, &["-Y", "tcp"]).len(), segments);
    assert!(tshark(&pcap, &["-Y", "_ws.malformed"]).is_empty());
    assert_eq!(
        tshark(&pcap, &["-Y", "tcp.payload contains \"Hello, Client!\""]).len(),
        1
    );
    let blocks = mermaid_blocks(&text);
    assert_eq!(
        std::fs::read_to_string(&mmd).unwrap(),
        blocks[1],
        "--mermaid writes the segment diagram"
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

/// A pcap file whose disk fills up mid-run (an 8 KiB tmpfs in a private
/// mount namespace): the recording stops, the demo says so in the line it
/// uses for `--pcap /dev/full` and exits 1, and it does not claim that the
/// file holds the run. The same with --kernel.
#[test]
fn demo_reports_a_pcap_disk_that_fills_up() {
    if !common::root_or_skip("demo_reports_a_pcap_disk_that_fills_up") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = r#"
set -u
mkdir $D/small
mount -t tmpfs -o size=8k tmpfs $D/small
$OXCAT demo --runs 10 --pcap $D/small/a.pcap > $D/out 2> $D/err
echo $? > $D/rc
rm $D/small/a.pcap
$OXCAT demo --kernel --pcap $D/small/k.pcap > $D/kout 2> $D/kerr
echo $? > $D/krc
umount $D/small
"#;
    let out = common::run_bounded(
        Command::new("unshare")
            .args(["--mount", "bash", "-c", script])
            .env("OXCAT", env!("CARGO_BIN_EXE_oxcat"))
            .env("D", d),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{out:?}");
    let s = |n: &str| std::fs::read_to_string(d.join(n)).unwrap();
    for (run, file, scene) in [
        ("", "a.pcap", "== 2."),
        ("k", "k.pcap", "== The notes' exchange"),
    ] {
        let (stdout, err) = (s(&format!("{run}out")), s(&format!("{run}err")));
        assert_eq!(s(&format!("{run}rc")).trim(), "1", "{run}: {err}");
        assert_eq!(
            err,
            format!(
                "oxcat: demo: cannot write {}/small/{file}: No space left on device\n",
                d.display()
            ),
        );
        // It failed during the run, not on opening the file ...
        assert!(stdout.contains(scene), "{run}: {stdout}");
        // ... and no line says what the file holds.
        assert!(!stdout.contains(file), "{run}: {stdout}");
    }
}
