//! The TCP engine of oxcat: sans-IO, deterministic, one connection and one
//! listener. See `Connection` and `Listener`.
//!
//! Shape (after quinn-proto): the caller pushes in what happened
//! (`handle_segment`, `handle_timeout`, `send`, `recv`, `close`) and pulls
//! out what to do (`poll_transmit`, `poll_timeout`, `poll_event`). Time is a
//! value passed in, randomness (ISNs) comes from a seeded generator.

pub mod buffer;
pub mod config;
pub mod congestion;
pub mod connection;
pub mod copy;
pub mod event;
pub mod isn;
pub mod listener;
pub mod rtt;
pub mod segment;
pub mod seq;
pub mod state;

pub use bytes::Bytes;
pub use config::Config;
pub use connection::{Connection, RecvError, SendError};
pub use event::{CloseReason, Event, TimerKind, TraceEvent};
pub use isn::IsnGenerator;
pub use listener::{Listener, ListenerStats};
pub use segment::{Flags, Header, Options, Payload, SackBlocks, Segment, Transmit};
pub use seq::SeqNum;
pub use state::State;
