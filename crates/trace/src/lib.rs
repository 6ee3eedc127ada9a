//! Events of an oxcat run and the renderers that show them.
//!
//! The events are the socket calls the binary makes and, on the userspace
//! stack, every segment, state change, queue event, retransmission and
//! timer. A [`Tracer`] stamps each event with the microseconds since the run
//! began and renders it as one line of a text timeline (or a JSON line):
//!
//! ```text
//! [   0.000041] socket(AF_INET, SOCK_STREAM) = 3
//! [   0.000052] bind(3, 0.0.0.0:1234) = 0
//! [   0.000310] client: out 198.18.0.2:40000 > 198.18.0.1:1234 SYN seq=1000 win=65535 len=0 <mss 1460>
//! ```
//!
//! [`mermaid`] draws one connection's segments as the notes' sequence diagram.
//!
//! Tracing costs nothing when off: callers hold an `Option<Tracer>` and build
//! the event's text only inside [`trace!`] when a tracer is present.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use serde::Serialize;

pub mod mermaid;

/// Which way a segment went, seen from the stack that recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// A TCP segment as a stack sent or received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub dir: Direction,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The control bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent (unscaled).
    pub window: u16,
    /// Payload bytes.
    pub len: usize,
    /// The options, tcpdump-style: `mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7`.
    pub options: String,
    /// The first payload bytes, printable ASCII kept, the rest as `.`.
    pub preview: String,
}

impl Segment {
    /// The control bits in the notes' words: `SYN`, `SYN-ACK`, `ACK`, `PSH-ACK`, `FIN-ACK`, `RST`.
    pub fn flag_names(&self) -> String {
        flag_names(self.flags)
    }

    /// Sequence space the segment takes (payload plus one for SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        self.len as u32 + u32::from(self.flags & 0x02 != 0) + u32::from(self.flags & 0x01 != 0)
    }
}

/// Control bits as words joined by `-`, in the order people say them.
pub fn flag_names(flags: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
        (0x10, "ACK"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|&(_, n)| n)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join("-")
    }
}

/// The two ends of a connection, from the recording stack's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A socket call (`socket`, `bind`, `accept`, `poll`, ...) and its result.
    SocketCall {
        call: String,
        result: Option<String>,
    },
    /// A free-form remark placed on the timeline (a scene title, a note).
    Note { text: String },
    /// A segment sent or received by the userspace stack.
    Segment(Segment),
    /// A connection moved between RFC 9293 states.
    State {
        conn: Endpoints,
        from: String,
        to: String,
    },
    /// A listener's queues: a connection entered the accept queue, a SYN or
    /// a final ACK was dropped because a queue was full, a cookie was sent.
    Queue { listener: SocketAddr, what: String },
    /// Bytes sent again (after a timeout, or fast retransmit on duplicate
    /// ACKs/SACK, or as a tail loss probe: `probe`, in JSON only when set).
    Retransmit {
        conn: Endpoints,
        seq: u32,
        len: usize,
        fast: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        probe: bool,
    },
    /// A timer was armed (`deadline_us` from now) or fired (`deadline_us` absent).
    Timer {
        conn: Endpoints,
        timer: String,
        deadline_us: Option<u64>,
    },
    /// The congestion window changed.
    Congestion {
        conn: Endpoints,
        cwnd: usize,
        ssthresh: usize,
    },
    /// A segment the engine refused, and the rule it broke.
    Dropped { conn: Endpoints, reason: String },
}

impl Event {
    /// A note on the timeline.
    pub fn note(text: impl Into<String>) -> Event {
        Event::Note { text: text.into() }
    }
}

/// An event with the time since the start of the run, in microseconds, and
/// the name of who saw it (`client`, `server`, a stack) when a run has several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stamped {
    #[serde(rename = "t_us")]
    pub micros: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

impl Stamped {
    pub fn new(micros: u64, event: Event) -> Stamped {
        Stamped {
            micros,
            host: None,
            event,
        }
    }

    /// The text-timeline form: `[   1.234567] call = result`.
    pub fn render_text(&self) -> String {
        let secs = self.micros / 1_000_000;
        let frac = self.micros % 1_000_000;
        let host = match &self.host {
            Some(h) => format!("{h}: "),
            None => String::new(),
        };
        let body = match &self.event {
            Event::SocketCall {
                call,
                result: Some(r),
            } => format!("{call} = {r}"),
            Event::SocketCall { call, result: None } => call.clone(),
            Event::Note { text } => format!("-- {text}"),
            Event::Segment(s) => {
                let arrow = match s.dir {
                    Direction::Out => "out",
                    Direction::In => "in ",
                };
                let mut line = format!(
                    "{arrow} {} > {} {} seq={}",
                    s.src,
                    s.dst,
                    s.flag_names(),
                    s.seq
                );
                if s.flags & 0x10 != 0 {
                    line.push_str(&format!(" ack={}", s.ack));
                }
                line.push_str(&format!(" win={} len={}", s.window, s.len));
                if !s.options.is_empty() {
                    line.push_str(&format!(" <{}>", s.options));
                }
                if !s.preview.is_empty() {
                    line.push_str(&format!(" \"{}\"", s.preview));
                }
                line
            }
            Event::State { conn, from, to } => {
                format!("state {} > {}: {from} -> {to}", conn.local, conn.remote)
            }
            Event::Queue { listener, what } => format!("listener {listener}: {what}"),
            Event::Retransmit {
                conn,
                seq,
                len,
                fast,
                probe,
            } => format!(
                "{} {} > {}: seq={seq} len={len}",
                if *probe {
                    "tail loss probe"
                } else if *fast {
                    "fast retransmit"
                } else {
                    "retransmit (timeout)"
                },
                conn.local,
                conn.remote
            ),
            Event::Timer {
                conn,
                timer,
                deadline_us: Some(d),
            } => format!(
                "timer {timer} armed for +{}.{:03} ms ({} > {})",
                d / 1000,
                d % 1000,
                conn.local,
                conn.remote
            ),
            Event::Timer {
                conn,
                timer,
                deadline_us: None,
            } => format!("timer {timer} fired ({} > {})", conn.local, conn.remote),
            Event::Congestion {
                conn,
                cwnd,
                ssthresh,
            } => format!(
                "cwnd {cwnd} ssthresh {} ({} > {})",
                if *ssthresh == usize::MAX {
                    "inf".to_string()
                } else {
                    ssthresh.to_string()
                },
                conn.local,
                conn.remote
            ),
            Event::Dropped { conn, reason } => {
                format!(
                    "dropped segment: {reason} ({} > {})",
                    conn.local, conn.remote
                )
            }
        };
        format!("[{secs:4}.{frac:06}] {host}{body}")
    }

    /// One JSON object per event (JSON lines): `{"t_us":12,"type":"segment",...}`.
    pub fn render_json(&self) -> String {
        // Serialising plain data into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// How a text sink writes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `[   0.000123] bind(3, 0.0.0.0:1234) = 0`
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where rendered events go.
pub enum Sink {
    /// Each event is written as soon as it happens (to stderr, a file, ...).
    Text(Box<dyn Write + Send>),
    /// The same, as JSON lines.
    Json(Box<dyn Write + Send>),
    /// Events are kept in memory for later rendering (the demo, tests).
    Memory(Vec<Stamped>),
}

impl Sink {
    /// A text or JSON-lines sink for `format`.
    pub fn writer(format: Format, w: Box<dyn Write + Send>) -> Sink {
        match format {
            Format::Text => Sink::Text(w),
            Format::Json => Sink::Json(w),
        }
    }
}

/// Stamps events and hands them to a sink.
pub struct Tracer {
    start: Instant,
    sink: Sink,
    /// With [`Tracer::set_reorder`]: events held back, by (stamp, arrival).
    held: Option<Held>,
}

/// Events held back so that ones stamped earlier but recorded later (a
/// stack thread's, handed over in batches) still come out in time order.
struct Held {
    window_us: u64,
    next: u64,
    events: std::collections::BTreeMap<(u64, u64), Stamped>,
}

impl Tracer {
    /// A tracer whose clock starts now.
    pub fn new(sink: Sink) -> Self {
        Self::starting_at(Instant::now(), sink)
    }

    /// A tracer whose clock started at `start` (so several tracers can share a timeline).
    pub fn starting_at(start: Instant, sink: Sink) -> Self {
        Tracer {
            start,
            sink,
            held: None,
        }
    }

    /// Writes events in the order of their stamps rather than as recorded:
    /// each is held until `window` has passed since its stamp (by the
    /// clock, see [`Tracer::release`]), so one recorded up to `window` late
    /// still takes its place. [`Tracer::flush`] (and dropping the tracer)
    /// writes what is held.
    pub fn set_reorder(&mut self, window: std::time::Duration) {
        self.held = Some(Held {
            window_us: window.as_micros() as u64,
            next: 0,
            events: std::collections::BTreeMap::new(),
        });
    }

    /// Writes the held events whose window has passed (call now and then
    /// when events may be held and none are being recorded).
    pub fn release(&mut self) {
        let now = Instant::now()
            .saturating_duration_since(self.start)
            .as_micros() as u64;
        self.release_up_to(now);
    }

    /// Writes every held event.
    pub fn flush(&mut self) {
        self.release_up_to(u64::MAX);
    }

    /// Writes every held event and stops holding: what is recorded from
    /// now on is written at once (for the end of a run, when no later
    /// flush may come).
    pub fn end_reorder(&mut self) {
        self.flush();
        self.held = None;
    }

    fn release_up_to(&mut self, now_us: u64) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        while let Some(entry) = held.events.first_entry() {
            if entry.key().0.saturating_add(held.window_us) > now_us {
                break;
            }
            let stamped = entry.remove();
            Self::write(&mut self.sink, stamped);
        }
    }

    fn write(sink: &mut Sink, stamped: Stamped) {
        match sink {
            // A trace line that cannot be written must not end the run.
            Sink::Text(w) => {
                let _ = writeln!(w, "{}", stamped.render_text());
            }
            Sink::Json(w) => {
                let _ = writeln!(w, "{}", stamped.render_json());
            }
            Sink::Memory(v) => v.push(stamped),
        }
    }

    /// A tracer that writes a text timeline to stderr.
    pub fn stderr() -> Self {
        Self::new(Sink::Text(Box::new(std::io::stderr())))
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records an event now.
    pub fn record(&mut self, event: Event) {
        self.record_at(Instant::now(), None, event);
    }

    /// Records an event that happened at `at` (the stack's clock), seen by `host`.
    pub fn record_at(&mut self, at: Instant, host: Option<&str>, event: Event) {
        let micros = at.saturating_duration_since(self.start).as_micros() as u64;
        let stamped = Stamped {
            micros,
            host: host.map(str::to_string),
            event,
        };
        match self.held.as_mut() {
            Some(held) => {
                held.events.insert((micros, held.next), stamped);
                held.next += 1;
                self.release();
            }
            None => Self::write(&mut self.sink, stamped),
        }
    }

    /// Records a socket call with its result.
    pub fn call(&mut self, call: String, result: Option<String>) {
        self.record(Event::SocketCall { call, result });
    }

    /// The events kept so far (empty for a text sink, which keeps nothing;
    /// held ones not yet).
    pub fn events(&self) -> &[Stamped] {
        match &self.sink {
            Sink::Memory(v) => v,
            Sink::Text(_) | Sink::Json(_) => &[],
        }
    }

    /// Takes the kept events out, leaving the memory sink empty.
    pub fn take_events(&mut self) -> Vec<Stamped> {
        match &mut self.sink {
            Sink::Memory(v) => std::mem::take(v),
            Sink::Text(_) | Sink::Json(_) => Vec::new(),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Records a socket call on an `Option<Tracer>`; the arguments are only
/// formatted when a tracer is present.
///
/// `trace!(tracer, "bind({}, {})", fd, addr => "0")`
#[macro_export]
macro_rules! trace {
    ($tracer:expr, $($call:expr),+ => $($res:expr),+) => {
        if let Some(t) = ($tracer).as_mut() {
            t.call(format!($($call),+), Some(format!($($res),+)));
        }
    };
    ($tracer:expr, $($call:expr),+) => {
        if let Some(t) = ($tracer).as_mut() {
            t.call(format!($($call),+), None);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a reorder window, an event recorded late takes its place by its
    /// stamp; without one, events come out as recorded.
    #[test]
    fn a_reorder_window_puts_late_events_in_time_order() {
        use std::time::Duration;
        let start = Instant::now();
        let note = |s: &str| Event::note(s.to_string());
        let order = |reorder: bool| {
            let mut t = Tracer::starting_at(start, Sink::Memory(Vec::new()));
            if reorder {
                t.set_reorder(Duration::from_secs(3600));
            }
            t.record_at(start + Duration::from_millis(5), None, note("call at 5 ms"));
            t.record_at(
                start + Duration::from_millis(2),
                None,
                note("segment at 2 ms"),
            );
            t.record_at(
                start + Duration::from_millis(5),
                None,
                note("state at 5 ms"),
            );
            // Held for an hour: nothing is out before the flush.
            let before = t.events().len();
            t.release();
            assert_eq!(t.events().len(), before);
            t.flush();
            (
                before,
                t.events()
                    .iter()
                    .map(|e| e.render_text())
                    .collect::<Vec<_>>(),
            )
        };
        let (held, sorted) = order(true);
        assert_eq!(held, 0);
        assert_eq!(
            sorted,
            [
                "[   0.002000] -- segment at 2 ms",
                "[   0.005000] -- call at 5 ms",
                "[   0.005000] -- state at 5 ms"
            ]
        );
        let (_, as_recorded) = order(false);
        assert_eq!(as_recorded[0], "[   0.005000] -- call at 5 ms");
        // Once the holding ends, what is held is out and the rest goes at once.
        let mut t = Tracer::starting_at(start, Sink::Memory(Vec::new()));
        t.set_reorder(Duration::from_secs(3600));
        t.record_at(start, None, note("held"));
        assert!(t.events().is_empty());
        t.end_reorder();
        assert_eq!(t.events().len(), 1);
        t.record_at(start, None, note("late"));
        assert_eq!(t.events().len(), 2);
    }

    #[test]
    fn text_lines_have_microsecond_stamps() {
        let s = Stamped::new(
            1_234_567,
            Event::SocketCall {
                call: "accept(3)".into(),
                result: Some("4 from 127.0.0.1:5000".into()),
            },
        );
        assert_eq!(
            s.render_text(),
            "[   1.234567] accept(3) = 4 from 127.0.0.1:5000"
        );
        let n = Stamped::new(7, Event::note("handshake"));
        assert_eq!(n.render_text(), "[   0.000007] -- handshake");
    }

    #[test]
    fn retransmissions_name_their_cause() {
        let conn = Endpoints {
            local: "198.18.0.2:5000".parse().unwrap(),
            remote: "198.18.0.1:40000".parse().unwrap(),
        };
        let line = |fast, probe| {
            Stamped::new(
                5,
                Event::Retransmit {
                    conn,
                    seq: 1001,
                    len: 1000,
                    fast,
                    probe,
                },
            )
        };
        let probe = line(false, true);
        assert_eq!(
            probe.render_text(),
            "[   0.000005] tail loss probe 198.18.0.2:5000 > 198.18.0.1:40000: seq=1001 len=1000"
        );
        assert!(probe.render_json().contains(r#""probe":true"#));
        assert!(line(true, false)
            .render_text()
            .contains("fast retransmit 198.18.0.2:5000"));
        let timeout = line(false, false);
        assert!(timeout.render_text().contains("retransmit (timeout)"));
        assert!(!timeout.render_json().contains("probe"));
    }

    #[test]
    fn macro_formats_only_when_tracing() {
        let mut none: Option<Tracer> = None;
        let mut formatted = false;
        let mut mark = || {
            formatted = true;
            3
        };
        trace!(none, "socket() {}", mark() => "ok");
        assert!(!formatted, "arguments were evaluated with tracing off");

        let mut some = Some(Tracer::new(Sink::Memory(Vec::new())));
        trace!(some, "socket(AF_INET, SOCK_STREAM)" => "{}", 3);
        trace!(some, "poll([0, 4])");
        let ev = some.as_ref().unwrap().events();
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0].event,
            Event::SocketCall {
                call: "socket(AF_INET, SOCK_STREAM)".into(),
                result: Some("3".into())
            }
        );
        assert!(ev[0].micros <= ev[1].micros);
    }
}
