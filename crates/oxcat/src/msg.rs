//! What oxcat says on stderr: the program's prefix, the verbosity level,
//! and ncat-style messages (`Ncat: Connected to 127.0.0.1:80.`).
//!
//! Run under the name `ncat` (a symlink), oxcat introduces itself as
//! `Ncat:` so that scripts matching ncat's messages keep working.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

static PREFIX: OnceLock<&'static str> = OnceLock::new();
static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Picks the message prefix from the name the program was run as.
pub fn set_program_name(argv0: &str) {
    let base = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("oxcat");
    let prefix = if base == "ncat" || base == "nc" || base == "netcat" {
        "Ncat"
    } else {
        "oxcat"
    };
    let _ = PREFIX.set(prefix);
}

pub fn prefix() -> &'static str {
    PREFIX.get().copied().unwrap_or("oxcat")
}

pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// Writes one line to stderr. A stderr that cannot be written (closed
/// pipe, full disk) loses the line; `eprintln!` would panic instead.
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Prints `prefix: text` to stderr, adding the final period ncat puts on its lines.
pub fn say(text: &str) {
    if text.ends_with('.') {
        stderr_line(format_args!("{}: {}", prefix(), text));
    } else {
        stderr_line(format_args!("{}: {}.", prefix(), text));
    }
}

/// Prints `prefix: text` exactly as given (ncat leaves the period off some lines).
pub fn say_raw(text: &str) {
    stderr_line(format_args!("{}: {}", prefix(), text));
}

/// An address as ncat prints it: `127.0.0.1:80`, `::1:80` (no brackets).
pub fn show_socket(addr: &std::net::SocketAddr) -> String {
    format!("{}:{}", addr.ip(), addr.port())
}

/// Prints a message when the verbosity is at least `level` (`-v` is 1).
#[macro_export]
macro_rules! verbose {
    ($level:expr, $($arg:tt)*) => {
        if $crate::msg::verbosity() >= $level {
            $crate::msg::say(&format!($($arg)*));
        }
    };
}
