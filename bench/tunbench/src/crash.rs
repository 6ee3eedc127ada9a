//! A panic inside a measurement (smoltcp 0.12 has a known one, see
//! `Results::record`) fails that run, not the whole benchmark: the crate is
//! built with `panic = "unwind"`, threads are joined, and a panic becomes
//! an `io::Error` carrying a [`Crash`].

use std::fmt;
use std::io;
use std::sync::Mutex;

/// What the panic said, and where.
#[derive(Debug)]
pub struct Crash(pub String);

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.0)
    }
}

impl std::error::Error for Crash {}

static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Prints each panic as one line and keeps its message for [`error`].
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "?".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = format!("{what}{at}");
        eprintln!("tunbench: panic: {msg}");
        *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    }));
}

/// The error for a thread that panicked: the last panic's message.
pub fn error() -> io::Error {
    let msg = LAST
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| "a thread panicked".into());
    io::Error::other(Crash(msg))
}

/// Whether `e` is a panic turned into an error.
pub fn is_crash(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Crash>())
}
