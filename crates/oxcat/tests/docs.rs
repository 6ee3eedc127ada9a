//! The man page and the completions come from the flag definitions.

mod common;

use std::process::Command;

#[test]
fn man_page_and_completions_list_the_flags() {
    let man = Command::new(common::oxcat())
        .arg("--man-page")
        .output()
        .unwrap();
    assert!(man.status.success());
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH OXCAT 1"),
        "{}",
        &man[..200.min(man.len())]
    );
    for flag in ["listen", "keep\\-open", "sh\\-exec", "broker", "stack"] {
        assert!(man.contains(flag), "man page lacks {flag}");
    }
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef oxcat"),
        ("fish", "complete -c oxcat"),
    ] {
        let out = Command::new(common::oxcat())
            .args(["--completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..200.min(text.len())]
        );
        assert!(
            text.contains("keep-open"),
            "{shell} completions lack --keep-open"
        );
    }
    let bad = Command::new(common::oxcat())
        .args(["--completions", "cmd.exe"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
