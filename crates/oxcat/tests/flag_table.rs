//! The README's flag table against the real thing: every flag of
//! `ncat --help` is in oxcat's `--help` and in the table exactly once, the
//! table names no flag ncat lacks, and what the table calls rejected is
//! rejected (one line, exit 2) while what it calls supported is not.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ncat, oxcat};

/// The flags a help text lists at the start of its option lines.
fn help_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if !t.starts_with('-') || !line.starts_with("  ") {
            continue;
        }
        for word in t.split_whitespace() {
            let w = word.trim_end_matches(',');
            let w = w
                .split(['=', '['])
                .next()
                .unwrap_or(w)
                .trim_end_matches('.');
            if w.starts_with('-') && w.len() > 1 && w != "-" {
                flags.push(w.to_string());
                if !word.ends_with(',') {
                    break;
                }
            } else {
                break;
            }
        }
    }
    flags
}

/// Rows of the README's flag table: each flag with its status.
fn table() -> BTreeMap<String, String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let start = readme.find("## Flags").expect("a Flags section");
    let mut rows = BTreeMap::new();
    for line in readme[start..].lines().skip(1) {
        if line.starts_with("## ") || line.starts_with("### ") {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        for flag in cells[1].split(',') {
            let f = flag.trim().trim_matches('`').to_string();
            assert!(
                rows.insert(f.clone(), cells[2].to_string()).is_none(),
                "{f} is in the table twice"
            );
        }
    }
    rows
}

fn takes_value(flag: &str) -> bool {
    matches!(
        flag,
        "-c" | "--sh-exec"
            | "-e"
            | "--exec"
            | "--lua-exec"
            | "-g"
            | "-G"
            | "-m"
            | "--max-conns"
            | "-d"
            | "--delay"
            | "-o"
            | "--output"
            | "-x"
            | "--hex-dump"
            | "-i"
            | "--idle-timeout"
            | "-p"
            | "--source-port"
            | "-s"
            | "--source"
            | "-w"
            | "--wait"
            | "--allow"
            | "--allowfile"
            | "--deny"
            | "--denyfile"
            | "--proxy"
            | "--proxy-type"
            | "--proxy-auth"
            | "--proxy-dns"
            | "--ssl-cert"
            | "--ssl-key"
            | "--ssl-trustfile"
            | "--ssl-ciphers"
            | "--ssl-servername"
            | "--ssl-alpn"
    )
}

fn sample_value(flag: &str) -> &'static str {
    match flag {
        "-g" => "198.18.0.9",
        "-G" => "4",
        "-m" | "--max-conns" => "2",
        "-p" | "--source-port" => "40999",
        "-s" | "--source" => "127.0.0.1",
        "--proxy" => "127.0.0.1:9",
        "--proxy-type" => "socks5",
        "--proxy-auth" => "u:p",
        "--proxy-dns" => "local",
        "-d" | "--delay" | "-i" | "--idle-timeout" | "-w" | "--wait" => "1",
        "--allow" | "--deny" => "127.0.0.1",
        _ => "/nonexistent/oxcat-flag-table",
    }
}

/// Runs oxcat with `flag` against a closed loopback port; a run still going
/// after a moment is stopped (a listening flag). Returns (exit code, stderr).
fn try_flag(flag: &str) -> (Option<i32>, String) {
    let mut args = vec![flag.to_string()];
    if takes_value(flag) {
        args.push(sample_value(flag).to_string());
    }
    args.extend(["127.0.0.1".to_string(), "9".to_string()]);
    let mut child = Command::new(oxcat())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > Duration::from_millis(1500) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

#[test]
fn the_flag_table_is_true() {
    let ncat_help = Command::new(ncat()).arg("--help").output().unwrap();
    let ncat_help = String::from_utf8_lossy(&ncat_help.stdout).to_string()
        + &String::from_utf8_lossy(&ncat_help.stderr);
    let ours = Command::new(oxcat()).arg("--help").output().unwrap();
    let ours = String::from_utf8_lossy(&ours.stdout).to_string();
    let theirs = help_flags(&ncat_help);
    assert!(theirs.len() > 40, "ncat --help parsed: {theirs:?}");
    let ours_flags = help_flags(&ours);
    let rows = table();
    for f in &theirs {
        assert!(
            ours_flags.contains(f),
            "{f} is in ncat --help but not in oxcat --help"
        );
        assert!(
            rows.contains_key(f),
            "{f} is missing from the README's flag table"
        );
    }
    for f in rows.keys() {
        assert!(
            theirs.contains(f),
            "the table lists {f}, which ncat --help does not have"
        );
    }
    for (flag, status) in &rows {
        if flag == "-h" || flag == "--help" || flag == "--version" {
            continue;
        }
        let (code, err) = try_flag(flag);
        match status.as_str() {
            "rejected" => {
                assert_eq!(code, Some(2), "{flag} is marked rejected: {err}");
                assert_eq!(err.trim_end().lines().count(), 1, "{flag}: {err}");
            }
            "supported" => assert!(
                !err.contains("not available"),
                "{flag} is marked supported but oxcat says: {err}"
            ),
            other => panic!("{flag}: unknown status {other:?}"),
        }
    }
}
