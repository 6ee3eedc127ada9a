//! What the stack records for traces: segments as they cross the device,
//! and the engine's own events (states, timers, retransmissions, queues)
//! turned into the trace crate's plain-data events.

use std::net::SocketAddr;
use std::time::Instant;

use oxcat_tcp::{Header, TimerKind, TraceEvent};
use oxcat_trace::{Direction, Endpoints, Event, Segment};

use crate::stack::FourTuple;

/// Payload bytes shown in a segment's preview.
const PREVIEW: usize = 24;

/// The options as tcpdump prints them: `mss 1460,sackOK,TS val 1 ecr 0,wscale 7,sack 1 {10:20}`.
fn options_text(h: &Header) -> String {
    let o = &h.options;
    let mut parts = Vec::new();
    if let Some(m) = o.mss {
        parts.push(format!("mss {m}"));
    }
    if o.sack_permitted {
        parts.push("sackOK".into());
    }
    if let Some((val, ecr)) = o.timestamps {
        parts.push(format!("TS val {val} ecr {ecr}"));
    }
    if let Some(w) = o.window_scale {
        parts.push(format!("wscale {w}"));
    }
    let blocks = o.sack.as_slice();
    if !blocks.is_empty() {
        let b: Vec<String> = blocks
            .iter()
            .map(|(l, r)| format!("{{{}:{}}}", l.0, r.0))
            .collect();
        parts.push(format!("sack {} {}", blocks.len(), b.join("")));
    }
    parts.join(",")
}

fn preview(payload: &[u8]) -> String {
    payload
        .iter()
        .take(PREVIEW)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// A segment as it left (`Out`) or reached (`In`) this stack.
pub(crate) fn segment(
    dir: Direction,
    src: SocketAddr,
    dst: SocketAddr,
    h: &Header,
    payload: &[u8],
) -> Event {
    Event::Segment(Segment {
        dir,
        src,
        dst,
        flags: h.flags.0,
        seq: h.seq.0,
        ack: h.ack.0,
        window: h.window,
        len: payload.len(),
        options: options_text(h),
        preview: preview(payload),
    })
}

fn timer_name(t: TimerKind) -> &'static str {
    match t {
        TimerKind::Retransmit => "retransmit",
        TimerKind::DelayedAck => "delayed-ack",
        TimerKind::Persist => "persist",
        TimerKind::Keepalive => "keepalive",
        TimerKind::TimeWait => "time-wait",
        TimerKind::LossProbe => "loss-probe",
    }
}

/// An engine event for connection `tuple` (or for the listener at `listener`
/// when the event is the listener's own), with the instant it happened.
/// Segments are left out: the stack records them with their addresses and payload.
pub(crate) fn engine(
    tuple: Option<FourTuple>,
    listener: SocketAddr,
    e: TraceEvent,
) -> Option<(Instant, Event)> {
    let conn = tuple.map(|t| Endpoints {
        local: t.local,
        remote: t.remote,
    });
    let conn_or = || {
        conn.unwrap_or(Endpoints {
            local: listener,
            remote: listener,
        })
    };
    Some(match e {
        TraceEvent::SegmentIn { .. } | TraceEvent::SegmentOut { .. } => return None,
        TraceEvent::StateChange { at, from, to } => (
            at,
            Event::State {
                conn: conn_or(),
                from: format!("{from:?}"),
                to: format!("{to:?}"),
            },
        ),
        TraceEvent::Retransmit { at, seq, len, fast } => (
            at,
            Event::Retransmit {
                conn: conn_or(),
                seq: seq.0,
                len,
                fast,
                probe: false,
            },
        ),
        TraceEvent::LossProbe { at, seq, len } => (
            at,
            Event::Retransmit {
                conn: conn_or(),
                seq: seq.0,
                len,
                fast: false,
                probe: true,
            },
        ),
        TraceEvent::TimerArmed {
            at,
            timer,
            deadline,
        } => (
            at,
            Event::Timer {
                conn: conn_or(),
                timer: timer_name(timer).into(),
                deadline_us: Some(deadline.saturating_duration_since(at).as_micros() as u64),
            },
        ),
        TraceEvent::TimerFired { at, timer } => (
            at,
            Event::Timer {
                conn: conn_or(),
                timer: timer_name(timer).into(),
                deadline_us: None,
            },
        ),
        TraceEvent::QueueDrop { at, what } => (
            at,
            Event::Queue {
                listener,
                what: what.into(),
            },
        ),
        TraceEvent::Queued { at, len, backlog } => (
            at,
            Event::Queue {
                listener,
                what: format!(
                    "handshake done, connection in the accept queue ({len} waiting, backlog {backlog})"
                ),
            },
        ),
        TraceEvent::CongestionWindow { at, cwnd, ssthresh } => (
            at,
            Event::Congestion {
                conn: conn_or(),
                cwnd,
                ssthresh,
            },
        ),
        TraceEvent::Dropped { at, reason } => (
            at,
            Event::Dropped {
                conn: conn_or(),
                reason: reason.into(),
            },
        ),
    })
}
