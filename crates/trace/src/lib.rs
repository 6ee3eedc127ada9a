//! Events of an oxcat run and the renderers that show them.
//!
//! For now the events are the socket calls the binary makes on the kernel's
//! stack; segments, state changes and queue events join them with the
//! userspace stack. A [`Tracer`] stamps each event with the microseconds since
//! the run began and renders it as one line of a text timeline:
//!
//! ```text
//! [   0.000041] socket(AF_INET, SOCK_STREAM) = 3
//! [   0.000052] bind(3, 0.0.0.0:1234) = 0
//! ```
//!
//! Tracing costs nothing when off: callers hold an `Option<Tracer>` and build
//! the event's text only inside [`trace!`] when a tracer is present.

use std::io::Write;
use std::time::Instant;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A socket call (`socket`, `bind`, `accept`, `poll`, ...) and its result.
    SocketCall {
        call: String,
        result: Option<String>,
    },
    /// A free-form remark placed on the timeline (a scene title, a note).
    Note(String),
}

/// An event with the time since the start of the run, in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub micros: u64,
    pub event: Event,
}

impl Stamped {
    /// The text-timeline form: `[   1.234567] call = result`.
    pub fn render_text(&self) -> String {
        let secs = self.micros / 1_000_000;
        let frac = self.micros % 1_000_000;
        match &self.event {
            Event::SocketCall {
                call,
                result: Some(r),
            } => format!("[{secs:4}.{frac:06}] {call} = {r}"),
            Event::SocketCall { call, result: None } => format!("[{secs:4}.{frac:06}] {call}"),
            Event::Note(text) => format!("[{secs:4}.{frac:06}] -- {text}"),
        }
    }
}

/// Where rendered events go.
pub enum Sink {
    /// Each event is written as soon as it happens (to stderr, a file, ...).
    Text(Box<dyn Write + Send>),
    /// Events are kept in memory for later rendering (the demo, tests).
    Memory(Vec<Stamped>),
}

/// Stamps events and hands them to a sink.
pub struct Tracer {
    start: Instant,
    sink: Sink,
}

impl Tracer {
    /// A tracer whose clock starts now.
    pub fn new(sink: Sink) -> Self {
        Self::starting_at(Instant::now(), sink)
    }

    /// A tracer whose clock started at `start` (so several tracers can share a timeline).
    pub fn starting_at(start: Instant, sink: Sink) -> Self {
        Tracer { start, sink }
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
        let micros = self.start.elapsed().as_micros() as u64;
        let stamped = Stamped { micros, event };
        match &mut self.sink {
            // A trace line that cannot be written must not end the run.
            Sink::Text(w) => {
                let _ = writeln!(w, "{}", stamped.render_text());
            }
            Sink::Memory(v) => v.push(stamped),
        }
    }

    /// Records a socket call with its result.
    pub fn call(&mut self, call: String, result: Option<String>) {
        self.record(Event::SocketCall { call, result });
    }

    /// The events kept so far (empty for a text sink, which keeps nothing).
    pub fn events(&self) -> &[Stamped] {
        match &self.sink {
            Sink::Memory(v) => v,
            Sink::Text(_) => &[],
        }
    }

    /// Takes the kept events out, leaving the memory sink empty.
    pub fn take_events(&mut self) -> Vec<Stamped> {
        match &mut self.sink {
            Sink::Memory(v) => std::mem::take(v),
            Sink::Text(_) => Vec::new(),
        }
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

    #[test]
    fn text_lines_have_microsecond_stamps() {
        let s = Stamped {
            micros: 1_234_567,
            event: Event::SocketCall {
                call: "accept(3)".into(),
                result: Some("4 from 127.0.0.1:5000".into()),
            },
        };
        assert_eq!(
            s.render_text(),
            "[   1.234567] accept(3) = 4 from 127.0.0.1:5000"
        );
        let n = Stamped {
            micros: 7,
            event: Event::Note("handshake".into()),
        };
        assert_eq!(n.render_text(), "[   0.000007] -- handshake");
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
