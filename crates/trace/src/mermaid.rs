//! One connection's segments as a Mermaid `sequenceDiagram`, in the notes'
//! style: `Client[ip:port]` and `Server[ip:port]`, arrows for SYN, SYN-ACK
//! and ACK with their numbers, data with a preview, FIN, and a note where
//! the three-way handshake is done.
//!
//! A run may be recorded by one stack (each segment seen once, going out or
//! coming in) or by both ends of a simulated link (each segment seen twice).
//! With both ends recorded, a segment that left one stack and never reached
//! the other was lost on the way: it is drawn with a cross (`-x`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::{Direction, Event, Segment, Stamped};

/// What to draw.
#[derive(Debug, Clone)]
pub struct DiagramOptions {
    /// At most this many arrows; the middle of a long transfer is summarised in a note.
    pub max_arrows: usize,
    /// Socket calls recorded by hosts named `client` and `server` become notes
    /// over their side (`connect()`, `accept()`, `close()`), so the diagram
    /// shows what the application did against what the stack did.
    pub socket_calls: bool,
    /// Segments of the connection that `events` leaves out: a long capture
    /// keeps only its head and tail. They are counted in the note that
    /// stands for the middle of the transfer.
    pub unseen_segments: usize,
    /// The segments known to be lost, as indices into `events` (each the
    /// event of the segment leaving its sender): a simulated link knows what
    /// it dropped. When given, these and only these are crossed; when not,
    /// losses are inferred from the records (see the module's note), which
    /// cannot see a loss at an end that recorded no arrival at all.
    pub lost: Option<HashSet<usize>>,
}

impl Default for DiagramOptions {
    fn default() -> Self {
        DiagramOptions {
            max_arrows: 40,
            socket_calls: true,
            unseen_segments: 0,
            lost: None,
        }
    }
}

/// Text Mermaid would misread in a message, written with Mermaid's own
/// entity escapes: `;` ends a statement, `#` starts an entity, `%%` a
/// comment, `<br>` breaks a line; control characters are not drawable.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ';' => out.push_str("#59;"),
            '#' => out.push_str("#35;"),
            '%' => out.push_str("#37;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            c if c.is_control() => out.push('.'),
            c => out.push(c),
        }
    }
    out
}

/// A participant's label: `Client[198.18.0.2:40000]`; IPv6 addresses in
/// their bracketed socket form would nest brackets, so they are written `fd00::2 port 40000`.
fn participant(role: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{role}[{}:{}]", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("{role}[{} port {}]", a.ip(), a.port()),
    }
}

type Key = (SocketAddr, SocketAddr, u8, u32, u32, usize);

fn key(s: &Segment) -> Key {
    (s.src, s.dst, s.flags, s.seq, s.ack, s.len)
}

/// The arrow's label: `SYN (SEQ = 1000)`, `SYN-ACK (SEQ = 5000, ACK = 1001)`,
/// `ACK (ACK = 5001)`, `PSH-ACK "Hello" (SEQ = 1001, 5 bytes)`.
fn label(s: &Segment, retransmitted: bool) -> String {
    let names = s.flag_names();
    let syn = s.flags & 0x02 != 0;
    let ack = s.flags & 0x10 != 0;
    let mut out = names;
    if s.len > 0 && !s.preview.is_empty() {
        out.push_str(&format!(" '{}'", clean(&s.preview)));
    }
    let mut fields = Vec::new();
    if syn || s.len > 0 || s.flags & 0x05 != 0 || !ack {
        fields.push(format!("SEQ = {}", s.seq));
    }
    if ack {
        fields.push(format!("ACK = {}", s.ack));
    }
    if s.len > 0 {
        fields.push(format!("{} bytes", s.len));
    }
    out.push_str(&format!(" ({})", fields.join(", ")));
    if retransmitted {
        out.push_str(" retransmission");
    }
    out
}

/// The diagram of the first connection opened in `events` (the first SYN
/// without ACK), or None when there is none. Events must be in time order.
pub fn connection_diagram(events: &[Stamped], opts: &DiagramOptions) -> Option<String> {
    let segments: Vec<(usize, &Segment)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.event {
            Event::Segment(s) => Some((i, s)),
            _ => None,
        })
        .collect();
    let first_syn = segments
        .iter()
        .find(|(_, s)| s.flags & 0x12 == 0x02)
        .map(|(_, s)| *s)?;
    let (client, server) = (first_syn.src, first_syn.dst);
    let ours =
        |s: &Segment| (s.src == client && s.dst == server) || (s.src == server && s.dst == client);
    // Who recorded what: an end that records arrivals lets us tell lost
    // segments; an end that records departures makes its arrivals' records repeats.
    let mut records_in: HashSet<SocketAddr> = HashSet::new();
    let mut records_out: HashSet<SocketAddr> = HashSet::new();
    for (_, s) in &segments {
        if ours(s) {
            match s.dir {
                Direction::In => records_in.insert(s.dst),
                Direction::Out => records_out.insert(s.src),
            };
        }
    }
    if let Some(known) = &opts.lost {
        return Some(draw(events, opts, client, server, &records_out, known));
    }
    // An arrival belongs to the latest copy sent before it (a retransmission
    // follows a loss); departures no arrival claims were lost.
    let mut pending: HashMap<Key, Vec<usize>> = HashMap::new();
    for &(i, s) in &segments {
        if !ours(s) {
            continue;
        }
        match s.dir {
            Direction::Out => pending.entry(key(s)).or_default().push(i),
            Direction::In => {
                if let Some(copies) = pending.get_mut(&key(s)) {
                    copies.pop();
                }
            }
        }
    }
    let lost_at: HashSet<usize> = pending
        .into_iter()
        .filter(|((_, dst, ..), _)| records_in.contains(dst))
        .flat_map(|(_, idx)| idx)
        .collect();
    Some(draw(events, opts, client, server, &records_out, &lost_at))
}

/// The diagram of the connection between `client` and `server`, the
/// segments at `lost_at` crossed.
fn draw(
    events: &[Stamped],
    opts: &DiagramOptions,
    client: SocketAddr,
    server: SocketAddr,
    records_out: &HashSet<SocketAddr>,
    lost_at: &HashSet<usize>,
) -> String {
    let ours =
        |s: &Segment| (s.src == client && s.dst == server) || (s.src == server && s.dst == client);
    let mut lines: Vec<String> = Vec::new();
    let mut sent_end: HashMap<SocketAddr, u32> = HashMap::new();
    let mut handshake_noted = false;
    let mut synack_seen = false;
    for (i, e) in events.iter().enumerate() {
        match &e.event {
            Event::Segment(s) if ours(s) => {
                if s.dir == Direction::In && records_out.contains(&s.src) {
                    continue; // drawn when it left its sender
                }
                let lost = lost_at.contains(&i);
                let end = s.seq.wrapping_add(s.seq_len());
                let high = sent_end.entry(s.src).or_insert(s.seq);
                let retransmitted = s.seq_len() > 0 && (end.wrapping_sub(*high) as i32) <= 0;
                if (end.wrapping_sub(*high) as i32) > 0 {
                    *high = end;
                }
                let (from, to, arrow) = if s.src == client {
                    ("C", "S", if lost { "-x" } else { "->>" })
                } else {
                    ("S", "C", if lost { "--x" } else { "-->>" })
                };
                lines.push(format!(
                    "    {from}{arrow}{to}: {}{}",
                    label(s, retransmitted),
                    if lost { " lost" } else { "" }
                ));
                if s.flags & 0x12 == 0x12 && s.src == server {
                    synack_seen = true;
                }
                if !handshake_noted
                    && synack_seen
                    && s.src == client
                    && s.flags & 0x17 == 0x10
                    && !lost
                {
                    handshake_noted = true;
                    lines.push("    Note over C,S: 3 Way Handshaking done".into());
                }
            }
            Event::SocketCall { call, result } if opts.socket_calls => {
                let side = match e.host.as_deref() {
                    Some("client") => "C",
                    Some("server") => "S",
                    _ => continue,
                };
                let name = call.split('(').next().unwrap_or(call).trim();
                if !matches!(name, "connect" | "accept" | "close" | "shutdown" | "listen") {
                    continue;
                }
                let shown = match result {
                    Some(r) => format!("{name}() = {}", clean(r)),
                    None => format!("{name}()"),
                };
                // Notes are not arrows: they do not count against the limit.
                lines.push(format!("    Note over {side}: {shown}"));
            }
            _ => {}
        }
    }
    let arrows = lines.iter().filter(|l| !l.contains("Note over")).count();
    if arrows > opts.max_arrows {
        lines = elide(lines, opts.max_arrows, opts.unseen_segments);
    }
    let mut out = String::from("sequenceDiagram\n");
    out.push_str(&format!(
        "    participant C as {}\n    participant S as {}\n",
        participant("Client", client),
        participant("Server", server)
    ));
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Keeps the first two thirds and the last third of `max` arrows, with a
/// note for the rest (and for the `unseen` segments never given).
fn elide(lines: Vec<String>, max: usize, unseen: usize) -> Vec<String> {
    let head = max * 2 / 3;
    let tail = max - head;
    let is_arrow = |l: &String| !l.contains("Note over");
    let total = lines.iter().filter(|l| is_arrow(l)).count();
    let mut out = Vec::new();
    let mut seen = 0;
    let mut noted = false;
    for l in lines {
        let arrow = is_arrow(&l);
        if arrow {
            seen += 1;
        }
        if !arrow || seen <= head || seen > total - tail {
            // Notes (socket calls, the handshake) are kept wherever they fall.
            out.push(l);
        } else if !noted {
            noted = true;
            out.push(format!(
                "    Note over C,S: ... {} more segments not drawn ...",
                total - head - tail + unseen
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(
        dir: Direction,
        src: &str,
        dst: &str,
        flags: u8,
        seq: u32,
        ack: u32,
        len: usize,
    ) -> Stamped {
        Stamped::new(
            0,
            Event::Segment(Segment {
                dir,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                flags,
                seq,
                ack,
                window: 65535,
                len,
                options: String::new(),
                preview: if len > 0 {
                    "Hello".into()
                } else {
                    String::new()
                },
            }),
        )
    }

    const C: &str = "198.18.0.2:40000";
    const S: &str = "198.18.0.1:1234";

    #[test]
    fn handshake_in_the_notes_style() {
        let ev = vec![
            seg(Direction::Out, C, S, 0x02, 1000, 0, 0),
            seg(Direction::In, S, C, 0x12, 5000, 1001, 0),
            seg(Direction::Out, C, S, 0x10, 1001, 5001, 0),
            seg(Direction::Out, C, S, 0x18, 1001, 5001, 5),
        ];
        let d = connection_diagram(&ev, &DiagramOptions::default()).unwrap();
        let want = "sequenceDiagram\n    participant C as Client[198.18.0.2:40000]\n    participant S as Server[198.18.0.1:1234]\n    C->>S: SYN (SEQ = 1000)\n    S-->>C: SYN-ACK (SEQ = 5000, ACK = 1001)\n    C->>S: ACK (ACK = 5001)\n    Note over C,S: 3 Way Handshaking done\n    C->>S: PSH-ACK 'Hello' (SEQ = 1001, ACK = 5001, 5 bytes)\n";
        assert_eq!(d, want);
    }

    #[test]
    fn both_ends_recorded_draws_each_segment_once_and_marks_losses() {
        let ev = vec![
            seg(Direction::Out, C, S, 0x02, 1000, 0, 0),
            // Lost: the server never records it arriving.
            seg(Direction::Out, C, S, 0x02, 1000, 0, 0),
            seg(Direction::In, C, S, 0x02, 1000, 0, 0),
            seg(Direction::Out, S, C, 0x12, 5000, 1001, 0),
            seg(Direction::In, S, C, 0x12, 5000, 1001, 0),
        ];
        let d = connection_diagram(&ev, &DiagramOptions::default()).unwrap();
        let arrows: Vec<&str> = d
            .lines()
            .filter(|l| l.contains("->>") || l.contains("-x"))
            .collect();
        assert_eq!(arrows.len(), 3, "{d}");
        // The first copy went missing: the arrival belongs to the retransmission.
        assert_eq!(arrows[0], "    C-xS: SYN (SEQ = 1000) lost", "{d}");
        assert_eq!(
            arrows[1], "    C->>S: SYN (SEQ = 1000) retransmission",
            "{d}"
        );
        assert!(arrows[2].contains("S-->>C: SYN-ACK"), "{d}");
        let ev2 = vec![
            seg(Direction::Out, C, S, 0x02, 1000, 0, 0),
            seg(Direction::In, C, S, 0x02, 1000, 0, 0),
            seg(Direction::Out, S, C, 0x12, 5000, 1001, 0),
            seg(Direction::In, S, C, 0x12, 5000, 1001, 0),
            seg(Direction::Out, C, S, 0x10, 1001, 5001, 0),
        ];
        let d2 = connection_diagram(&ev2, &DiagramOptions::default()).unwrap();
        assert!(d2.contains("C-xS: ACK (ACK = 5001) lost"), "{d2}");
        assert!(!d2.contains("Handshaking done"), "{d2}");
    }

    #[test]
    fn known_losses_are_crossed_where_inference_cannot_tell() {
        let lost = |idx: &[usize]| DiagramOptions {
            lost: Some(idx.iter().copied().collect()),
            ..DiagramOptions::default()
        };
        let arrows = |d: &str| -> Vec<String> {
            d.lines()
                .filter(|l| l.contains("->>") || l.contains("-x"))
                .map(str::to_string)
                .collect()
        };
        // Every SYN lost: the server recorded nothing at all, so nothing
        // says it records arrivals, and inference sees no loss.
        let ev = vec![
            seg(Direction::Out, C, S, 0x02, 1000, 0, 0),
            seg(Direction::Out, C, S, 0x02, 1000, 0, 0),
        ];
        let inferred = connection_diagram(&ev, &DiagramOptions::default()).unwrap();
        assert!(!inferred.contains("-x"), "{inferred}");
        let known = connection_diagram(&ev, &lost(&[0, 1])).unwrap();
        assert_eq!(
            arrows(&known),
            [
                "    C-xS: SYN (SEQ = 1000) lost",
                "    C-xS: SYN (SEQ = 1000) retransmission lost"
            ],
            "{known}"
        );
        // The original held back and arriving after its retransmission,
        // which was lost: inference gives the arrival to the latest copy
        // and blames the original.
        let ev = vec![
            seg(Direction::Out, C, S, 0x02, 1000, 0, 0),
            seg(Direction::In, C, S, 0x02, 1000, 0, 0),
            seg(Direction::Out, S, C, 0x12, 5000, 1001, 0),
            seg(Direction::In, S, C, 0x12, 5000, 1001, 0),
            seg(Direction::Out, C, S, 0x18, 1001, 5001, 5),
            seg(Direction::Out, C, S, 0x18, 1001, 5001, 5),
            seg(Direction::In, C, S, 0x18, 1001, 5001, 5),
        ];
        let inferred = connection_diagram(&ev, &DiagramOptions::default()).unwrap();
        assert!(
            arrows(&inferred)[2].ends_with("5 bytes) lost"),
            "{inferred}"
        );
        let known = connection_diagram(&ev, &lost(&[5])).unwrap();
        let a = arrows(&known);
        assert_eq!(a.len(), 4, "{known}");
        assert_eq!(
            a[2], "    C->>S: PSH-ACK 'Hello' (SEQ = 1001, ACK = 5001, 5 bytes)",
            "{known}"
        );
        assert_eq!(
            a[3], "    C-xS: PSH-ACK 'Hello' (SEQ = 1001, ACK = 5001, 5 bytes) retransmission lost",
            "{known}"
        );
    }

    #[test]
    fn long_runs_are_summarised() {
        let mut ev = vec![seg(Direction::Out, C, S, 0x02, 0, 0, 0)];
        for i in 0..200 {
            ev.push(seg(Direction::Out, C, S, 0x10, 1 + i * 5, 1, 5));
        }
        let mut opts = DiagramOptions {
            max_arrows: 30,
            socket_calls: false,
            ..DiagramOptions::default()
        };
        let d = connection_diagram(&ev, &opts).unwrap();
        let arrows = d.lines().filter(|l| l.contains("->>")).count();
        assert_eq!(arrows, 30, "{d}");
        assert!(d.contains("171 more segments not drawn"), "{d}");
        opts.unseen_segments = 1000;
        let d = connection_diagram(&ev, &opts).unwrap();
        assert!(d.contains("1171 more segments not drawn"), "{d}");
    }

    #[test]
    fn ipv6_participants_and_hostile_text() {
        let mut e = seg(
            Direction::Out,
            "[fd00::2]:40000",
            "[fd00::1]:80",
            0x02,
            1,
            0,
            0,
        );
        if let Event::Segment(s) = &mut e.event {
            s.flags = 0x18;
            s.len = 4;
            s.preview = "a;#\"%".into();
        }
        let ev = vec![
            seg(
                Direction::Out,
                "[fd00::2]:40000",
                "[fd00::1]:80",
                0x02,
                0,
                0,
                0,
            ),
            e,
        ];
        let d = connection_diagram(&ev, &DiagramOptions::default()).unwrap();
        assert!(d.contains("Client[fd00::2 port 40000]"), "{d}");
        assert!(d.contains("PSH-ACK 'a#59;#35;\"#37;' (SEQ = 1"), "{d}");
    }

    #[test]
    fn no_connection_no_diagram() {
        assert!(connection_diagram(&[], &DiagramOptions::default()).is_none());
    }
}
