//! What a connection tells its owner: application events (readable,
//! writable, connected, closed, reset) and, when asked for, trace events
//! that show the protocol at work.

use std::time::Instant;

use crate::segment::Header;
use crate::seq::SeqNum;
use crate::state::State;

/// Events for the application (the socket API wakes its waiters on these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// Bytes (or the peer's EOF) can be read.
    Readable,
    /// The send buffer has room again.
    Writable,
    /// The connection is gone; `close_reason` says why.
    Closed,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides closed and the last FIN was acknowledged (or TIME-WAIT ran out).
    Normal,
    /// The peer reset the connection.
    Reset,
    /// The peer refused the connection (RST in answer to our SYN).
    Refused,
    /// Retransmissions or keepalive probes went unanswered.
    TimedOut,
    /// We aborted it (sent RST).
    Aborted,
}

/// The timers a connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    Retransmit,
    DelayedAck,
    Persist,
    Keepalive,
    TimeWait,
    /// RFC 8985 §7: the probe timeout (PTO) of a tail loss probe.
    LossProbe,
}

/// What happened inside the engine, for traces and diagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    SegmentIn {
        at: Instant,
        header: Header,
        len: usize,
    },
    SegmentOut {
        at: Instant,
        header: Header,
        len: usize,
    },
    StateChange {
        at: Instant,
        from: State,
        to: State,
    },
    Retransmit {
        at: Instant,
        seq: SeqNum,
        len: usize,
        fast: bool,
    },
    /// A tail loss probe resent the last segment (RFC 8985 §7.3).
    LossProbe {
        at: Instant,
        seq: SeqNum,
        len: usize,
    },
    TimerArmed {
        at: Instant,
        timer: TimerKind,
        deadline: Instant,
    },
    TimerFired {
        at: Instant,
        timer: TimerKind,
    },
    /// A listener dropped a SYN or a handshake's final ACK (queue full), or answered with a cookie.
    QueueDrop {
        at: Instant,
        what: &'static str,
    },
    /// A connection finished its handshake and entered the accept queue,
    /// which now holds `len` (Linux admits up to backlog + 1).
    Queued {
        at: Instant,
        len: usize,
        backlog: usize,
    },
    CongestionWindow {
        at: Instant,
        cwnd: usize,
        ssthresh: usize,
    },
    /// A segment was dropped; the reason names the rule (e.g. "not acceptable", "PAWS").
    Dropped {
        at: Instant,
        reason: &'static str,
    },
}
