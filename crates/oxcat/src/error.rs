//! The two ways a run fails, as ncat reports them: a usage error (exit 2)
//! or a network failure (exit 1). Each carries the one line the user sees.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Failure {
    /// Bad flags or arguments: ncat exits 2.
    Usage(String),
    /// The network (or a file or process the run needs) failed: ncat exits 1.
    Network(String),
}

impl Failure {
    pub fn usage(msg: impl Into<String>) -> Self {
        Failure::Usage(msg.into())
    }

    pub fn network(msg: impl Into<String>) -> Self {
        Failure::Network(msg.into())
    }

    /// A network failure described by an I/O error, with what was being done.
    pub fn io(context: impl fmt::Display, err: &io::Error) -> Self {
        Failure::Network(format!("{context}: {}", describe(err)))
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Network(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Network(m) => f.write_str(m),
        }
    }
}

/// The C library's text for an I/O error ("Connection refused"), without
/// Rust's " (os error 111)" suffix, so messages read like ncat's.
/// The errno Linux gives where our stack gives an `io::ErrorKind` (its
/// errors carry a kind, not an errno).
pub fn errno_of_kind(kind: io::ErrorKind) -> Option<i32> {
    use io::ErrorKind::*;
    Some(match kind {
        ConnectionRefused => libc::ECONNREFUSED,
        ConnectionReset => libc::ECONNRESET,
        ConnectionAborted => libc::ECONNABORTED,
        TimedOut => libc::ETIMEDOUT,
        BrokenPipe => libc::EPIPE,
        AddrInUse => libc::EADDRINUSE,
        AddrNotAvailable => libc::EADDRNOTAVAIL,
        NotConnected => libc::ENOTCONN,
        HostUnreachable => libc::EHOSTUNREACH,
        NetworkUnreachable => libc::ENETUNREACH,
        WouldBlock => libc::EAGAIN,
        InvalidInput => libc::EINVAL,
        _ => return None,
    })
}

pub fn describe(err: &io::Error) -> String {
    // Our stack's errors carry a kind and no errno: the kind's errno, so
    // that they read as the kernel's do ("Connection refused", not Rust's
    // "connection refused").
    let errno = match (err.raw_os_error(), err.get_ref()) {
        (None, None) => errno_of_kind(err.kind()),
        _ => None,
    };
    let text = match errno {
        Some(n) => io::Error::from_raw_os_error(n).to_string(),
        None => err.to_string(),
    };
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_without_os_error_suffix() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(describe(&e), "Connection refused");
        assert_eq!(
            Failure::io("connect to 127.0.0.1:9", &e).to_string(),
            "connect to 127.0.0.1:9: Connection refused"
        );
        assert_eq!(Failure::io("x", &e).exit_code(), 1);
        // Our stack's: a kind, no errno; the same words.
        let ours = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&ours), "Connection refused");
        assert_eq!(
            describe(&io::Error::from(io::ErrorKind::TimedOut)),
            "Connection timed out"
        );
        // A message of its own stays.
        let custom = io::Error::new(io::ErrorKind::ConnectionRefused, "no listener here");
        assert_eq!(describe(&custom), "no listener here");
    }
}
