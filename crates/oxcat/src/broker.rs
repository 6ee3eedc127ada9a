//! `--broker` and `--chat`: a listener that passes every client's bytes to
//! all the other clients, and its own stdin to all of them, as ncat does.
//! The clients' bytes do not go to stdout.
//!
//! `--chat` names each participant after its descriptor (`<user5>`; stdin is
//! `<user0>`), puts the name before every chunk it relays, escapes control
//! characters as `\ooo`, and announces arrivals and departures:
//!
//! ```text
//! <announce> 127.0.0.1 is connected as <user6>.
//! <announce> already connected: 127.0.0.1 as <user5>.
//! <user6> hello
//! <announce> <user5> is disconnected.
//! ```

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use rustix::event::PollFlags;
use socket2::{SockAddr, Socket};

use crate::cli::Config;
use crate::error::Failure;
use crate::session_log::{Direction, SessionLog};
use crate::sys;

struct Participant {
    sock: Socket,
    /// The peer's address as chat announces it.
    ip: String,
}

impl Participant {
    fn name(&self) -> String {
        format!("<user{}>", self.sock.as_raw_fd())
    }
}

/// `<userN> ` before the bytes, control characters (but CR, LF and TAB) as
/// `\ooo`, as ncat's chat filter writes them.
pub fn chat_line(user: i32, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<user{user}> ").into_bytes();
    for &b in data {
        if (0x20..0x7f).contains(&b) || matches!(b, b'\r' | b'\n' | b'\t') {
            out.push(b);
        } else {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        }
    }
    out
}

/// Sends `data` to every participant but `except`; returns those whose socket failed.
fn send_to_others(clients: &[Participant], except: Option<usize>, data: &[u8]) -> Vec<usize> {
    clients
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != except)
        .filter(|(_, c)| crate::listen::write_all_sock(&c.sock, data).is_err())
        .map(|(i, _)| i)
        .collect()
}

fn peer_ip(peer: &SockAddr) -> String {
    crate::user_stack::real_addr(peer)
        .map(|a| match a.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            ip => ip.to_string(),
        })
        .unwrap_or_else(|| "a Unix socket".into())
}

/// Serves `listeners` (already bound and listening, non-blocking) until killed.
pub fn serve(
    cfg: &Config,
    listeners: Vec<(Socket, String)>,
    log: &mut Option<SessionLog>,
) -> Result<i32, Failure> {
    let stdin = rustix::stdio::stdin();
    let mut stdin_open = !cfg.recv_only;
    let mut clients: Vec<Participant> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = Vec::with_capacity(listeners.len() + clients.len() + 1);
        for (l, _) in &listeners {
            fds.push(sys::pollfd(l, PollFlags::IN));
        }
        let stdin_slot = stdin_open.then(|| {
            fds.push(sys::pollfd(&stdin, PollFlags::IN));
            fds.len() - 1
        });
        let first_client = fds.len();
        for c in &clients {
            fds.push(sys::pollfd(&c.sock, PollFlags::IN));
        }
        let timeout = cfg.idle_timeout.filter(|_| !clients.is_empty());
        let n = sys::poll(&mut fds, timeout).map_err(|e| Failure::io("poll", &e))?;
        if n == 0 {
            if let Some(idle) = timeout {
                return Err(Failure::network(format!(
                    "Idle timeout expired ({} ms)",
                    idle.as_millis()
                )));
            }
            continue;
        }
        let listener_ready: Vec<bool> = fds[..listeners.len()]
            .iter()
            .map(|f| !f.revents().is_empty())
            .collect();
        let stdin_ready = stdin_slot.is_some_and(|s| !fds[s].revents().is_empty());
        let client_ready: Vec<bool> = fds[first_client..]
            .iter()
            .map(|f| !f.revents().is_empty())
            .collect();
        drop(fds);

        // What a client says goes to all the others.
        let mut gone = Vec::new();
        for (i, ready) in client_ready.iter().enumerate() {
            if !ready {
                continue;
            }
            let r = rustix::io::read(&clients[i].sock, &mut buf).map_err(std::io::Error::from);
            sys::sock_read(clients[i].sock.as_raw_fd(), &r, buf.len());
            match r {
                Ok(0) => gone.push(i),
                Ok(n) => {
                    if let Some(l) = log.as_mut() {
                        l.record(Direction::Received, &buf[..n]);
                    }
                    let data = if cfg.chat {
                        chat_line(clients[i].sock.as_raw_fd(), &buf[..n])
                    } else {
                        buf[..n].to_vec()
                    };
                    gone.extend(send_to_others(&clients, Some(i), &data));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => gone.push(i),
            }
        }
        remove(cfg, &mut clients, gone);

        // Our stdin goes to everybody (as <user0> in a chat).
        if stdin_ready {
            match rustix::io::read(stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if let Some(l) = log.as_mut() {
                        l.record(Direction::Sent, &buf[..n]);
                    }
                    let data = if cfg.chat {
                        chat_line(0, &buf[..n])
                    } else {
                        buf[..n].to_vec()
                    };
                    let failed = send_to_others(&clients, None, &data);
                    remove(cfg, &mut clients, failed);
                    if let Some(d) = cfg.delay {
                        std::thread::sleep(d);
                    }
                }
            }
        }

        for (li, ready) in listener_ready.iter().enumerate() {
            if !ready {
                continue;
            }
            loop {
                let (conn, peer) = match sys::accept(&listeners[li].0) {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                    Err(e) => {
                        return Err(Failure::io(format!("accept on {}", listeners[li].1), &e))
                    }
                };
                crate::listen::announce_connection(&peer, true);
                if !crate::listen::is_admitted(cfg, &peer) {
                    crate::listen::deny_message("not allowed");
                    sys::close(conn);
                    continue;
                }
                if clients.len() >= cfg.max_conns {
                    crate::listen::deny_message(&format!(
                        "connection limit reached ({})",
                        cfg.max_conns
                    ));
                    sys::close(conn);
                    continue;
                }
                // --ssl: the handshake runs on the connection's own thread.
                let Ok(conn) = crate::tls::accept(conn, &peer) else {
                    continue;
                };
                let newcomer = Participant {
                    sock: conn,
                    ip: peer_ip(&peer),
                };
                if cfg.chat {
                    let others: Vec<String> = clients
                        .iter()
                        .map(|c| format!("{} as {}", c.ip, c.name()))
                        .collect();
                    let list = if others.is_empty() {
                        "nobody".to_string()
                    } else {
                        others.join(", ")
                    };
                    let hello = format!(
                        "<announce> {} is connected as {}.\n<announce> already connected: {list}.\n",
                        newcomer.ip,
                        newcomer.name()
                    );
                    clients.push(newcomer);
                    let failed = send_to_others(&clients, None, hello.as_bytes());
                    remove(cfg, &mut clients, failed);
                } else {
                    clients.push(newcomer);
                }
            }
        }
    }
}

/// Closes the participants at `idx` (any order, duplicates allowed); a chat
/// tells the rest who left.
fn remove(cfg: &Config, clients: &mut Vec<Participant>, mut idx: Vec<usize>) {
    idx.sort_unstable();
    idx.dedup();
    let mut left = Vec::new();
    for i in idx.into_iter().rev() {
        let c = clients.remove(i);
        left.push(c.name());
        crate::verbose!(2, "DEBUG: Closing fd {}", c.sock.as_raw_fd());
        let _ = sys::shutdown_write(c.sock.as_fd());
        sys::close(c.sock);
    }
    if cfg.chat {
        for name in left.into_iter().rev() {
            let bye = format!("<announce> {name} is disconnected.\n");
            let failed = send_to_others(clients, None, bye.as_bytes());
            // A failure here is found again at the next read; do not recurse.
            let _ = failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines_name_the_sender_and_escape_controls() {
        assert_eq!(chat_line(7, b"hi\n"), b"<user7> hi\n");
        assert_eq!(
            chat_line(0, b"a\x01\tb\x7f\r\n"),
            b"<user0> a\\001\tb\\177\r\n"
        );
    }
}
