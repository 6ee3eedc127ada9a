//! The man page and shell completions, generated from the same clap
//! definitions that parse the flags, so they cannot drift from them.
//! `scripts/install-docs` installs both.

use clap::CommandFactory;

use crate::cli::Args;

/// Prints the man page (roff) or the completions for `shell` to stdout.
pub fn print(man: bool, shell: Option<clap_complete::Shell>) -> i32 {
    let mut cmd = Args::command().name("oxcat");
    let mut out = std::io::stdout().lock();
    if man {
        let page = clap_mangen::Man::new(cmd.clone())
            .title("OXCAT")
            .section("1")
            .manual("oxcat manual")
            .source(format!("oxcat {}", env!("CARGO_PKG_VERSION")));
        if let Err(e) = page.render(&mut out) {
            crate::msg::say(&format!("cannot write the man page: {e}"));
            return 1;
        }
    }
    if let Some(shell) = shell {
        clap_complete::generate(shell, &mut cmd, "oxcat", &mut out);
    }
    0
}
