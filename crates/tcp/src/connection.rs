//! One TCP connection: the state machine of RFC 9293 §3.10, sans-IO.
//!
//! The owner pushes in what happened (`handle_segment`, `handle_timeout`,
//! `send`, `recv`, `close`) and pulls out what to do (`poll_transmit`,
//! `poll_timeout`, `poll_event`). Time is a value passed in; nothing here
//! blocks, allocates a socket or reads a clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::buffer::{RecvBuffer, SendBuffer};
use crate::config::Config;
use crate::congestion::{CongestionControl, Controller};
use crate::event::{CloseReason, Event, TimerKind, TraceEvent};
use crate::rtt::RttEstimator;
use crate::segment::{seq_len, Flags, Header, Options, Payload, SackBlocks, Segment, Transmit};
use crate::seq::SeqNum;
use crate::state::State;

/// RFC 9293 §3.7.1: without an MSS option, assume 536 (IPv4).
const DEFAULT_SEND_MSS: usize = 536;
/// `send_bytes` copies pieces shorter than a full segment, but no longer
/// ones than this: with TSO (64 KiB segments) a piece of 16 KiB or more
/// is kept as it is, and a segment spanning more than two pieces is cut
/// where two end (still 16 KiB or more, in whole MSS-sized pieces).
const COPY_BELOW_MAX: usize = 16 * 1024;
/// RFC 5681 §3.2: three duplicate ACKs signal a loss.
const DUPACK_THRESHOLD: u32 = 3;
/// The least time between ACKs answering unacceptable empty segments.
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// RFC 7323 §5.5: timestamps older than 24 days are not trusted for PAWS.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);

const EV_CONNECTED: u8 = 1;
const EV_READABLE: u8 = 2;
const EV_WRITABLE: u8 = 4;
const EV_CLOSED: u8 = 8;

/// Why `recv` returned no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing buffered yet; try again after `Event::Readable`.
    WouldBlock,
    /// The peer sent FIN and every byte before it was read (EOF).
    Finished,
    /// The connection is gone (reset, refused, timed out, aborted).
    Closed(CloseReason),
}

/// Why `send` accepted no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The send buffer is full; try again after `Event::Writable`.
    WouldBlock,
    /// The write side was shut down.
    Shutdown,
    /// The connection is not (or no longer) able to send.
    Closed(CloseReason),
    /// The handshake has not completed.
    NotConnected,
}

/// Where an outgoing segment's payload comes from.
#[derive(Clone, Copy, Debug)]
enum Body {
    Empty,
    /// `len` bytes starting `offset` bytes after SND.UNA in the send buffer.
    Buffered {
        offset: usize,
        len: usize,
    },
    /// The zero-window probe's byte.
    ProbeByte,
}

impl Body {
    fn buffered(offset: usize, len: usize) -> Body {
        if len == 0 {
            Body::Empty
        } else {
            Body::Buffered { offset, len }
        }
    }
}

pub struct Connection {
    /// Shared by every connection of a listener (an `Arc`: 8 bytes a connection).
    config: Arc<Config>,
    state: State,

    // Send sequence space (RFC 9293 §3.3.1).
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    /// The highest sequence number sent + 1 (snd_nxt can go back on RTO).
    snd_max: SeqNum,
    /// The peer's window, scaled, in bytes.
    snd_wnd: usize,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    max_snd_wnd: usize,
    send_buf: SendBuffer,
    /// The application shut down the write side: FIN goes after the data.
    fin_queued: bool,
    /// The sequence number our FIN took, once sent.
    fin_seq: Option<SeqNum>,

    // Receive sequence space.
    irs: SeqNum,
    rcv_nxt: SeqNum,
    /// The right edge of the window we last advertised (never moves left, RFC 7323 §2.4).
    rcv_adv: SeqNum,
    recv_buf: RecvBuffer,
    /// The peer's FIN was received (and everything before it).
    fin_received: bool,
    /// A FIN seen beyond RCV.NXT, waiting for the hole before it.
    pending_fin: Option<SeqNum>,
    /// The application closed its read side: arriving data resets the connection.
    read_closed: bool,
    /// When we last answered an unacceptable empty segment (rate limit).
    last_oow_ack: Option<Instant>,
    // Socket options, starting from the configuration.
    nodelay: bool,
    keepalive: Option<(Duration, Duration, u32)>,
    /// Cleared when the application sets the receive buffer (as SO_RCVBUF does in Linux).
    autotune_enabled: bool,
    /// Receive autotuning: when the current measurement ends (its start
    /// plus the RTT it was measured against, so the per-segment test is one
    /// comparison), and RCV.NXT when it began.
    autotune_from: Option<(Instant, SeqNum)>,
    /// The RTT (ns) `autotune_from`'s end was computed with (0: the end
    /// is the start itself, the sum having overflowed).
    autotune_rtt: u64,

    // Options, as negotiated.
    snd_mss: usize,
    ws_enabled: bool,
    snd_wscale: u8,
    rcv_wscale: u8,
    ts_enabled: bool,
    ts_recent: u32,
    ts_recent_at: Option<Instant>,
    last_ack_sent: SeqNum,
    ts_epoch: Instant,
    ts_offset: u32,
    /// The last `now` a timestamp was taken for, and that timestamp: a
    /// burst of segments shares one `now`, and the clock arithmetic is
    /// not free.
    ts_cache: (Instant, u32),
    sack_enabled: bool,
    /// Ranges above SND.UNA the peer reported holding (sender's scoreboard, RFC 6675).
    sacked: Vec<(SeqNum, SeqNum)>,

    // Reliability.
    rtt: RttEstimator,
    retransmit_deadline: Option<Instant>,
    retries: u32,
    /// The segment being timed for an RTT sample (end seq, sent at) when
    /// timestamps are off; cleared on retransmission (Karn's algorithm).
    rtt_probe: Option<(SeqNum, Instant)>,
    dup_acks: u32,
    /// NewReno/SACK recovery: the highest sequence sent when loss was detected (RFC 6582 "recover").
    recovery: Option<SeqNum>,
    /// In recovery: the next sequence to retransmit (the hole to fill).
    rtx_next: Option<SeqNum>,
    /// RFC 6675 HighRxt: the end of the highest retransmission in this recovery.
    high_rxt: SeqNum,
    /// RFC 5681 §3.2 window inflation during NewReno recovery (no SACK), bytes.
    recovery_inflation: usize,
    /// Our SYN (or SYN-ACK) went out more than once (RFC 6298 §5.7).
    syn_retransmitted: bool,
    /// RFC 8985 §7 tail loss probe: when new data last went out or an ACK
    /// last advanced SND.UNA; the probe timeout counts from there (computed
    /// when asked for, `loss_probe_deadline`: a store is all the ACK path
    /// pays).
    tlp_base: Option<Instant>,
    /// The probe timed out: a probe is owed.
    tlp_owed: bool,
    /// A probe is out: SND.MAX when it was sent (TLP.end_seq; at most one
    /// probe per flight), and whether it resent data (TLP.is_retrans).
    tlp_end: Option<SeqNum>,
    tlp_retrans: bool,
    loss_probes: u32,
    cc: CongestionControl,

    // Acknowledgments and probes.
    ack_now: bool,
    segments_unacked: u32,
    delayed_ack_deadline: Option<Instant>,
    persist_deadline: Option<Instant>,
    /// The persist timer fired while sender SWS avoidance held back a
    /// segment smaller than the MSS: send what the window allows once.
    sws_override: bool,
    /// The last segment out was new data built by `new_data` (its header
    /// then fits the next segment of a burst but for SEQ and flags).
    last_was_new_data: bool,
    persist_backoff: u32,
    keepalive_deadline: Option<Instant>,
    keepalive_sent: u32,
    time_wait_deadline: Option<Instant>,

    // Control segments owed.
    /// SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED) to send.
    syn_owed: bool,
    rst_owed: Option<Header>,
    /// A window probe or keepalive probe to send.
    queue_probe: Option<(Header, Body)>,
    /// The zero-window probe's byte (copied: SND.UNA may move before it goes).
    probe_byte: u8,
    close_reason: Option<CloseReason>,

    /// Pending application events, one bit each (coalesced: a thousand
    /// segments make one Readable until the owner looks).
    events: u8,
    trace: VecDeque<TraceEvent>,
    writable_owed: bool,
    /// Segments that took the header-prediction shortcut (as Linux's TCPHPHits).
    predicted: u64,
    /// Segments `poll_transmit_burst` built from the one before.
    burst_built: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_nxt", &self.rcv_nxt)
            .finish()
    }
}

fn timestamp_ms(epoch: Instant, now: Instant, offset: u32) -> u32 {
    let d = now.saturating_duration_since(epoch);
    ((d.as_secs() as u32).wrapping_mul(1000))
        .wrapping_add(d.subsec_millis())
        .wrapping_add(offset)
}

impl Connection {
    fn blank(config: Arc<Config>, now: Instant, iss: SeqNum) -> Connection {
        let rtt = RttEstimator::new(config.rto_initial, config.rto_min, config.rto_max);
        let cc = CongestionControl::new(config.congestion, DEFAULT_SEND_MSS, config.initial_window);
        let rcv_wscale = if config.window_scaling {
            config.recv_window_shift()
        } else {
            0
        };
        Connection {
            send_buf: SendBuffer::new(config.send_buffer),
            recv_buf: RecvBuffer::new(config.recv_buffer_initial.min(config.recv_buffer)),
            state: State::Closed,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: SeqNum(0),
            max_snd_wnd: 0,
            fin_queued: false,
            fin_seq: None,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            fin_received: false,
            pending_fin: None,
            read_closed: false,
            last_oow_ack: None,
            nodelay: config.nodelay,
            keepalive: config.keepalive,
            autotune_enabled: true,
            autotune_from: None,
            autotune_rtt: 0,
            snd_mss: DEFAULT_SEND_MSS,
            ws_enabled: false,
            snd_wscale: 0,
            rcv_wscale,
            ts_enabled: false,
            ts_recent: 0,
            ts_recent_at: None,
            last_ack_sent: SeqNum(0),
            ts_epoch: now,
            // Not the ISN itself, but derived from it: timestamps do not start at zero.
            ts_offset: iss.0.rotate_left(16),
            ts_cache: (now, iss.0.rotate_left(16)),
            sack_enabled: false,
            sacked: Vec::new(),
            rtt,
            retransmit_deadline: None,
            retries: 0,
            rtt_probe: None,
            dup_acks: 0,
            recovery: None,
            rtx_next: None,
            high_rxt: SeqNum(0),
            recovery_inflation: 0,
            syn_retransmitted: false,
            tlp_base: None,
            tlp_owed: false,
            tlp_end: None,
            tlp_retrans: false,
            loss_probes: 0,
            cc,
            ack_now: false,
            segments_unacked: 0,
            delayed_ack_deadline: None,
            persist_deadline: None,
            sws_override: false,
            last_was_new_data: false,
            persist_backoff: 0,
            keepalive_deadline: None,
            keepalive_sent: 0,
            time_wait_deadline: None,
            syn_owed: false,
            rst_owed: None,
            queue_probe: None,
            probe_byte: 0,
            close_reason: None,
            events: 0,
            trace: VecDeque::new(),
            writable_owed: false,
            predicted: 0,
            burst_built: 0,
            config,
        }
    }

    /// An active open (RFC 9293 §3.10.1): the connection starts in SYN-SENT
    /// and its first `poll_transmit` is the SYN.
    pub fn connect(config: impl Into<Arc<Config>>, now: Instant, iss: SeqNum) -> Connection {
        let mut c = Connection::blank(config.into(), now, iss);
        c.set_state(now, State::SynSent);
        c.syn_owed = true;
        c
    }

    /// A passive open for a SYN a listener received (RFC 9293 §3.10.7.2):
    /// the connection starts in SYN-RECEIVED and owes a SYN-ACK.
    pub fn accept_syn(
        config: impl Into<Arc<Config>>,
        now: Instant,
        iss: SeqNum,
        syn: &Header,
    ) -> Connection {
        let mut c = Connection::blank(config.into(), now, iss);
        c.take_syn(now, syn);
        c
    }

    /// `accept_syn` straight into a box (the listener keeps half-open
    /// connections boxed): one copy of the kilobyte fewer.
    pub(crate) fn accept_syn_boxed(
        config: Arc<Config>,
        now: Instant,
        iss: SeqNum,
        syn: &Header,
    ) -> Box<Connection> {
        let mut c = Box::new(Connection::blank(config, now, iss));
        c.take_syn(now, syn);
        c
    }

    /// A blank connection takes a SYN: SYN-RECEIVED, the SYN-ACK owed.
    fn take_syn(&mut self, now: Instant, syn: &Header) {
        self.state = State::Listen;
        self.trace_segment_in(now, syn, 0);
        self.irs = syn.seq;
        self.rcv_nxt = syn.seq + 1u32;
        self.rcv_adv = self.rcv_nxt;
        self.take_syn_options(now, syn);
        self.update_send_window_from_syn(syn);
        self.set_state(now, State::SynReceived);
        self.syn_owed = true;
    }

    // ----- what the owner asks -----

    pub fn state(&self) -> State {
        self.state
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// The peer's receive window as we apply it (scaled), from SND.UNA.
    pub fn send_window(&self) -> usize {
        self.snd_wnd
    }

    /// The MSS we send with (the peer's, capped by ours).
    pub fn send_mss(&self) -> usize {
        self.snd_mss
    }

    /// How many arriving segments took the header-prediction shortcut.
    pub fn predicted_segments(&self) -> u64 {
        self.predicted
    }

    /// How many segments `poll_transmit_burst` built from the one before
    /// (its shortcut) rather than by the full path.
    pub fn burst_segments(&self) -> u64 {
        self.burst_built
    }

    /// How many tail loss probes went out (RFC 8985 §7).
    pub fn loss_probes(&self) -> u64 {
        u64::from(self.loss_probes)
    }

    /// Bytes ready to read.
    pub fn readable_len(&self) -> usize {
        self.recv_buf.readable()
    }

    /// Room in the send buffer.
    pub fn send_capacity(&self) -> usize {
        if self.state.can_send() || self.state == State::SynSent || self.state == State::SynReceived
        {
            self.send_buf.free()
        } else {
            0
        }
    }

    /// Bytes sent and not yet acknowledged, plus bytes not sent yet.
    pub fn send_queued(&self) -> usize {
        self.send_buf.len()
    }

    /// The `len` bytes of the send buffer from sequence number `seq` on,
    /// where they lie: the payload a segment built at `seq` carried, for a
    /// caller that builds a burst's headers first and hands the packets
    /// to its device after (the bytes stay put until an acknowledgment
    /// takes them, which only `handle_segment` does). Shorter, or empty,
    /// for bytes the buffer no longer (or never) held.
    pub fn sent_payload(&mut self, seq: SeqNum, len: usize) -> Payload<'_> {
        if seq < self.snd_una {
            return Payload::default();
        }
        let (a, b) = self.send_buf.slices(seq - self.snd_una, len);
        Payload::new(a, b)
    }

    pub fn congestion_window(&self) -> usize {
        self.cc.window()
    }

    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Options both sides agreed on: (window scaling, timestamps, SACK).
    pub fn negotiated(&self) -> (bool, bool, bool) {
        (self.ws_enabled, self.ts_enabled, self.sack_enabled)
    }

    /// The peer's FIN arrived and all data before it has been read.
    pub fn is_read_finished(&self) -> bool {
        self.fin_received && self.recv_buf.readable() == 0
    }

    /// Queues bytes to send; returns how many fit (possibly fewer than given:
    /// the notes' partial send). Sending may start before the handshake ends.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        self.may_queue()?;
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.send_buf.push(data);
        self.queued(n)
    }

    /// Queues the application's buffer without copying it: takes as much
    /// of `data` as the send buffer has room for, from its front, and
    /// leaves the rest in `data` (so a refused or partly taken buffer stays
    /// the caller's, as `send` leaves the bytes it did not take). Returns
    /// how many bytes were taken; `WouldBlock` (nothing taken) when the
    /// buffer is full. May be mixed with `send` in any order: the bytes go
    /// out in the order they were queued.
    ///
    /// The engine keeps what it took (a reference to the same memory)
    /// and lends slices of it to `poll_transmit_into`/`poll_transmit_ref`
    /// and to retransmissions, and drops it once the peer acknowledged
    /// all of it. The caller must not expect its bytes back before then
    /// (`Bytes` is immutable, so they cannot change under the engine).
    ///
    /// Segment boundaries stay the engine's (Nagle, the MSS, TSO), not the
    /// buffers': a piece shorter than a full segment (the MSS, or with TSO
    /// the TSO size, at most 16 KiB) is copied and coalesced with its
    /// neighbours, as is the start of a piece that follows such a short
    /// copy, until that copy holds a full segment. Longer pieces are not
    /// copied.
    pub fn send_bytes(&mut self, data: &mut Bytes) -> Result<usize, SendError> {
        self.may_queue()?;
        if data.is_empty() {
            return Ok(0);
        }
        let full_segment = self
            .snd_mss
            .max(self.config.tso_max_payload)
            .min(COPY_BELOW_MAX);
        let n = self.send_buf.push_bytes(data, full_segment);
        self.queued(n)
    }

    /// Whether `send` may queue bytes now; the error it returns if not.
    #[inline]
    fn may_queue(&self) -> Result<(), SendError> {
        if let Some(r) = self.close_reason {
            if r != CloseReason::Normal {
                return Err(SendError::Closed(r));
            }
        }
        if self.fin_queued {
            return Err(SendError::Shutdown);
        }
        match self.state {
            State::Established | State::CloseWait | State::SynSent | State::SynReceived => Ok(()),
            State::Closed | State::Listen => Err(SendError::NotConnected),
            _ => Err(SendError::Shutdown),
        }
    }

    /// `send`'s answer once `n` bytes of a non-empty write were queued.
    #[inline]
    fn queued(&mut self, n: usize) -> Result<usize, SendError> {
        if n == 0 {
            self.writable_owed = true;
            return Err(SendError::WouldBlock);
        }
        Ok(n)
    }

    /// Reads received bytes.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.readable_or_error()?;
        let before = self.advertisable_window();
        let n = self.recv_buf.read(buf);
        self.after_read(before);
        Ok(n)
    }

    /// Reads received bytes in place: `take` sees the readable bytes where
    /// they lie (one slice, or two when the buffer's ring wraps: the second
    /// follows the first) and returns how many it consumed, those leave the
    /// buffer. No copy by the engine; what `recv` does with a copy.
    pub fn recv_with(
        &mut self,
        take: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> Result<usize, RecvError> {
        self.readable_or_error()?;
        let before = self.advertisable_window();
        let (a, b) = self.recv_buf.readable_slices();
        let n = take(a, b).min(a.len() + b.len());
        self.recv_buf.consume(n);
        self.after_read(before);
        Ok(n)
    }

    /// Ok when bytes are readable; otherwise why not.
    fn readable_or_error(&self) -> Result<(), RecvError> {
        if self.recv_buf.readable() > 0 {
            return Ok(());
        }
        if self.fin_received {
            return Err(RecvError::Finished);
        }
        if let Some(r) = self.close_reason {
            return Err(if r == CloseReason::Normal {
                RecvError::Finished
            } else {
                RecvError::Closed(r)
            });
        }
        Err(RecvError::WouldBlock)
    }

    /// After the application took bytes: a window update when the window
    /// opened by a useful amount.
    fn after_read(&mut self, before: usize) {
        // RFC 9293 §3.8.6.2.2: tell the peer once the window opened by a useful amount.
        let after = self.advertisable_window();
        let threshold = (self.recv_buf.capacity() / 2).min(2 * self.config.mss as usize);
        let edge_now = self.rcv_nxt + after;
        if after > before && edge_now > self.rcv_adv && (edge_now - self.rcv_adv) >= threshold {
            self.ack_now = true;
        }
    }

    /// Shuts down the write side (RFC 9293 §3.10.4 CLOSE): a FIN follows the
    /// buffered bytes; reading goes on.
    pub fn shutdown_write(&mut self, now: Instant) {
        match self.state {
            // Bytes were queued before the handshake ended: they go, then the FIN
            // (the connection enters FIN-WAIT-1 once established).
            State::SynSent if !self.send_buf.is_empty() => self.fin_queued = true,
            State::SynSent | State::Listen => self.finish(now, CloseReason::Normal),
            State::SynReceived | State::Established => {
                self.fin_queued = true;
                self.set_state(now, State::FinWait1);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(now, State::LastAck);
            }
            _ => {}
        }
    }

    /// Closes both directions. Unread received bytes make it an abort
    /// (RST), as Linux does (RFC 2525 §2.17); otherwise the buffered bytes
    /// are sent, then FIN.
    pub fn close(&mut self, now: Instant) {
        if self.recv_buf.readable() > 0 && self.state.is_synchronized() {
            self.abort(now);
            return;
        }
        self.read_closed = true;
        self.shutdown_write(now);
    }

    /// Aborts (RFC 9293 §3.10.5 ABORT): a RST goes out, everything is dropped.
    pub fn abort(&mut self, now: Instant) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            self.rst_owed = Some(Header {
                seq: self.snd_nxt,
                ack: SeqNum(0),
                flags: Flags::RST,
                window: 0,
                options: Options::default(),
            });
        }
        self.finish(now, CloseReason::Aborted);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        for (bit, event) in [
            (EV_CONNECTED, Event::Connected),
            (EV_READABLE, Event::Readable),
            (EV_WRITABLE, Event::Writable),
            (EV_CLOSED, Event::Closed),
        ] {
            if self.events & bit != 0 {
                self.events &= !bit;
                return Some(event);
            }
        }
        None
    }

    pub fn poll_trace(&mut self) -> Option<TraceEvent> {
        self.trace.pop_front()
    }

    /// The next instant at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // (By hand: the iterator chain over the five copied it and
        // compared far more than this.)
        #[inline(always)]
        fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(x), Some(y)) => Some(if y < x { y } else { x }),
                (None, b) => b,
                (a, None) => a,
            }
        }
        let t = earlier(self.retransmit_deadline, self.delayed_ack_deadline);
        let t = earlier(t, self.persist_deadline);
        let t = earlier(t, self.keepalive_deadline);
        let t = earlier(t, self.time_wait_deadline);
        // `loss_probe_deadline` less its comparison with the
        // retransmission timer: `t` is no later than that timer, so a
        // probe deadline at or after it loses to `t` here anyway.
        earlier(t, self.loss_probe_at())
    }

    /// RFC 8985 §7.2: when the tail loss probe is due, if one may go: with
    /// SACK, data in flight, no probe out yet, no recovery, nothing SACKed
    /// and no retransmission timeout under way. PTO = 2*SRTT, plus the
    /// worst-case delayed ACK (200 ms) when one segment is in flight, else
    /// 2 ms (as Linux); 1 s before any RTT sample; counted from the last
    /// new data sent or ACK that advanced. Never at or after the
    /// retransmission timer (which then comes first).
    #[inline]
    fn loss_probe_deadline(&self) -> Option<Instant> {
        let deadline = self.loss_probe_at()?;
        match self.retransmit_deadline {
            Some(rto) if rto <= deadline => None,
            _ => Some(deadline),
        }
    }

    /// `loss_probe_deadline` before the retransmission timer is looked at.
    #[inline(always)]
    fn loss_probe_at(&self) -> Option<Instant> {
        let base = self.tlp_base?;
        // Nothing in flight first: a receiver's every call ends there
        // (`tlp_base` stays set once an ACK has advanced).
        if self.snd_max <= self.snd_una
            || !self.config.tail_loss_probe
            || !self.sack_enabled
            || self.tlp_owed
            || self.tlp_end.is_some()
            || self.recovery.is_some()
            || !self.sacked.is_empty()
            || self.retries > 0
            || self.snd_nxt != self.snd_max
            || !matches!(
                self.state,
                State::Established
                    | State::CloseWait
                    | State::FinWait1
                    | State::Closing
                    | State::LastAck
            )
        {
            return None;
        }
        let pto = match self.rtt.srtt_ns() {
            Some(srtt) => {
                let extra: u64 = if self.snd_max - self.snd_una <= self.snd_mss {
                    200_000_000
                } else {
                    2_000_000
                };
                Duration::from_nanos(srtt.saturating_mul(2).saturating_add(extra))
            }
            None => Duration::from_secs(1),
        };
        base.checked_add(pto)
    }

    // ----- time -----

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.time_wait_deadline.is_some_and(|d| d <= now) {
            self.time_wait_deadline = None;
            self.trace_timer(now, TimerKind::TimeWait);
            self.finish(now, CloseReason::Normal);
            return;
        }
        if self.retransmit_deadline.is_some_and(|d| d <= now) {
            self.retransmit_deadline = None;
            self.trace_timer(now, TimerKind::Retransmit);
            self.on_retransmit_timeout(now);
        }
        if self.loss_probe_deadline().is_some_and(|d| d <= now) {
            self.trace_timer(now, TimerKind::LossProbe);
            self.tlp_owed = true;
        }
        if self.delayed_ack_deadline.is_some_and(|d| d <= now) {
            self.delayed_ack_deadline = None;
            self.trace_timer(now, TimerKind::DelayedAck);
            self.ack_now = true;
        }
        if self.persist_deadline.is_some_and(|d| d <= now) {
            self.persist_deadline = None;
            self.trace_timer(now, TimerKind::Persist);
            self.send_window_probe(now);
        }
        if self.keepalive_deadline.is_some_and(|d| d <= now) {
            self.keepalive_deadline = None;
            self.trace_timer(now, TimerKind::Keepalive);
            self.on_keepalive_timeout(now);
        }
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.config.syn_retries,
            _ => self.config.data_retries,
        };
        if self.retries >= limit {
            self.finish(now, CloseReason::TimedOut);
            return;
        }
        self.retries += 1;
        // A timeout ends any loss probe episode (RFC 8985 §7.4).
        self.tlp_owed = false;
        self.tlp_end = None;
        // RFC 6298 §5.5-5.6: back off, and the timer restarts when the segment goes out.
        self.rtt.backoff();
        self.rtt_probe = None;
        match self.state {
            State::SynSent | State::SynReceived => {
                self.syn_owed = true;
                self.syn_retransmitted = true;
            }
            State::Closed | State::Listen | State::TimeWait => {}
            _ => {
                if self.snd_max > self.snd_una {
                    // RFC 5681 §3.1 eq. 4 and RFC 6298 §5.4: one segment, from SND.UNA.
                    let flight = self.snd_max - self.snd_una;
                    self.cc.on_rto(flight);
                    self.trace_cwnd(now);
                    self.snd_nxt = self.snd_una;
                    self.recovery = None;
                    self.rtx_next = None;
                    self.recovery_inflation = 0;
                    self.dup_acks = 0;
                    // RFC 2018 §8: after a timeout the SACK scoreboard is not trusted.
                    self.sacked.clear();
                }
            }
        }
    }

    fn send_window_probe(&mut self, now: Instant) {
        if self.state.is_synchronized() && self.snd_wnd > 0 {
            // RFC 9293 §3.8.6.2.1: the override timeout of sender SWS
            // avoidance: a window smaller than a segment, nothing in flight,
            // so send what fits (as Linux's probe timer does).
            self.sws_override = true;
            return;
        }
        // RFC 9293 §3.8.6.1: probe a zero window with one byte, backing off.
        if !self.state.is_synchronized() || self.snd_wnd > 0 {
            return;
        }
        if self.snd_nxt >= self.data_end() {
            return;
        }
        self.persist_backoff = (self.persist_backoff + 1).min(10);
        let body = match self.send_buf.slices(self.snd_nxt - self.snd_una, 1) {
            ([byte, ..], _) => {
                self.probe_byte = *byte;
                Body::ProbeByte
            }
            _ => Body::Empty,
        };
        let h = self.header(now, self.snd_nxt, Flags::ACK);
        self.snd_max = self.snd_max.max(self.snd_nxt + 1u32);
        self.queue_probe = Some((h, body));
        self.arm_persist(now);
    }

    fn on_keepalive_timeout(&mut self, now: Instant) {
        let Some((idle, interval, count)) = self.keepalive else {
            return;
        };
        if self.state != State::Established {
            return;
        }
        if self.keepalive_sent >= count {
            self.finish(now, CloseReason::TimedOut);
            return;
        }
        self.keepalive_sent += 1;
        // RFC 9293 §3.8.4: a segment with SEG.SEQ = SND.NXT-1 and no data draws an ACK.
        let h = self.header(now, self.snd_max + u32::MAX, Flags::ACK);
        self.queue_probe = Some((h, Body::Empty));
        let _ = idle;
        self.arm(TimerKind::Keepalive, now, now + interval);
    }
}

impl Connection {
    // ----- arriving segments (RFC 9293 §3.10.7) -----

    /// Processes an arriving segment addressed to this connection.
    pub fn handle_segment(&mut self, now: Instant, h: &Header, payload: &[u8]) {
        self.trace_segment_in(now, h, payload.len());
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.on_segment_syn_sent(now, h),
            State::Established
                if self.config.header_prediction && self.is_predicted(h, payload.len()) =>
            {
                self.on_segment_predicted(now, h, payload)
            }
            _ => self.on_segment_synchronized(now, h, payload),
        }
        if self.state == State::Established && self.keepalive.is_some() {
            self.keepalive_sent = 0;
            self.arm_keepalive(now);
        }
    }

    #[inline(never)]
    fn on_segment_syn_sent(&mut self, now: Instant, h: &Header) {
        // §3.10.7.3 first: check the ACK.
        if h.flags.ack() && (h.ack <= self.iss || h.ack > self.snd_max) {
            if !h.flags.rst() {
                self.owe_rst(h.ack);
            }
            self.trace_drop(now, "unacceptable ACK in SYN-SENT");
            return;
        }
        let ack_ok = h.flags.ack();
        if h.flags.rst() {
            // RFC 5961 §3.2 leaves SYN-SENT to RFC 793: a RST with an acceptable ACK refuses.
            if ack_ok {
                self.finish(now, CloseReason::Refused);
            } else {
                self.trace_drop(now, "RST without ACK in SYN-SENT");
            }
            return;
        }
        if !h.flags.syn() {
            self.trace_drop(now, "no SYN in SYN-SENT");
            return;
        }
        self.irs = h.seq;
        self.rcv_nxt = h.seq + 1u32;
        self.rcv_adv = self.rcv_nxt;
        self.take_syn_options(now, h);
        if ack_ok {
            self.on_ack_advanced(now, h.ack, h);
            self.update_send_window_from_syn(h);
        }
        if self.snd_una > self.iss {
            // Our SYN is acknowledged: ESTABLISHED, and ACK theirs.
            self.enter_established(now);
            self.ack_now = true;
        } else {
            // Simultaneous open (§3.5, figure 8): SYN-RECEIVED, send SYN-ACK.
            self.update_send_window_from_syn(h);
            self.set_state(now, State::SynReceived);
            self.syn_owed = true;
        }
    }

    /// RFC 9293 §3.10.7.4, first check: is the segment in the receive window?
    fn acceptable(&self, h: &Header, len: usize) -> bool {
        let wnd = self.rcv_adv.max(self.rcv_nxt) - self.rcv_nxt;
        let seq = h.seq;
        let seg_len = seq_len(h, len);
        match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            // RFC 9293 says RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND; like Linux
            // (tcp_sequence) we also take an empty segment at the right edge:
            // a peer that filled our window sends its ACKs numbered exactly there.
            (0, _) => seq.in_range(self.rcv_nxt, self.rcv_nxt + wnd + 1u32),
            (_, 0) => false,
            (_, _) => {
                let last = seq + (seg_len as u32 - 1);
                seq.in_range(self.rcv_nxt, self.rcv_nxt + wnd)
                    || last.in_range(self.rcv_nxt, self.rcv_nxt + wnd)
            }
        }
    }

    /// Header prediction (Van Jacobson; Linux's tcp_rcv_established fast
    /// path): is this the segment a bulk transfer expects next? In
    /// ESTABLISHED: only ACK (and PSH) set, SEG.SEQ = RCV.NXT, no SACK
    /// blocks and none held, a timestamp not older than TS.Recent when
    /// timestamps are on, no recovery under way, and either new data that
    /// fits the window with no out-of-order pieces waiting, or no data and
    /// an ACK that advances within what was sent. For such a segment every
    /// check of the full path (§3.10.7.4) is known to pass and most of its
    /// steps to be no-ops; `on_segment_predicted` does the rest, the same
    /// way. (Unlike Linux's, the window field may change: the shortcut
    /// runs the full path's window update itself. A receiver that reads
    /// in bursts changes it with every ACK.)
    #[inline]
    fn is_predicted(&self, h: &Header, len: usize) -> bool {
        if h.flags.0 & !Flags::PSH.0 != Flags::ACK.0
            || h.seq != self.rcv_nxt
            || !h.options.sack.is_empty()
            || !self.sacked.is_empty()
            || self.recovery.is_some()
        {
            return false;
        }
        if self.ts_enabled {
            // RFC 7323 §5.3 R1 (PAWS) passes.
            match h.options.timestamps {
                Some((tsval, _)) if tsval.wrapping_sub(self.ts_recent) as i32 >= 0 => {}
                _ => return false,
            }
        }
        // RFC 5961 §5.2 passes (SND.UNA <= SEG.ACK <= SND.MAX), and the ACK
        // is neither a duplicate nor a window update.
        let ack = h.ack;
        if ack < self.snd_una || ack > self.snd_max {
            return false;
        }
        if len == 0 {
            return ack > self.snd_una;
        }
        // New data at RCV.NXT that the window holds whole, for an
        // application still reading (§3.10.7.4 first check and seventh).
        let window = self.rcv_adv.max(self.rcv_nxt) - self.rcv_nxt;
        len <= window && !self.recv_buf.has_pieces() && !self.read_closed
    }

    /// The full path's steps for a segment `is_predicted` accepted, in the
    /// same order, without the checks it already made.
    fn on_segment_predicted(&mut self, now: Instant, h: &Header, payload: &[u8]) {
        self.predicted += 1;
        self.update_timestamp_recent(now, h, payload.len());
        let acks_new_data = h.ack > self.snd_una;
        if acks_new_data {
            self.on_ack_advanced(now, h.ack, h);
        }
        self.update_send_window(now, h, acks_new_data);
        if !payload.is_empty() {
            let advanced = self.recv_buf.append(payload);
            self.on_text_in_order(now, advanced, false);
        }
    }

    #[inline(never)]
    fn on_segment_synchronized(&mut self, now: Instant, h: &Header, payload: &[u8]) {
        // SYN-RECEIVED reached through a retransmitted SYN of the same peer: answer again.
        if self.state == State::SynReceived && h.flags.syn() && !h.flags.ack() && h.seq == self.irs
        {
            self.syn_owed = true;
            return;
        }
        // Simultaneous open (RFC 9293 §3.5 figure 8, line 6): the peer's SYN,ACK
        // acknowledges our SYN while we are in SYN-RECEIVED: established.
        if self.state == State::SynReceived
            && h.flags.syn()
            && h.flags.ack()
            && !h.flags.rst()
            && h.seq == self.irs
        {
            if self.snd_una < h.ack && h.ack <= self.snd_max {
                self.on_ack_advanced(now, h.ack, h);
                self.update_send_window_from_syn(h);
                self.enter_established(now);
                self.ack_now = true;
            } else {
                self.owe_rst(h.ack);
            }
            return;
        }

        // RFC 7323 §5.3 R1: PAWS, before the window check.
        if self.ts_enabled && !h.flags.rst() {
            if let Some((tsval, _)) = h.options.timestamps {
                let stale = (tsval.wrapping_sub(self.ts_recent) as i32) < 0;
                // (The age check only matters for a stale timestamp: skip its cost otherwise.)
                if stale
                    && self
                        .ts_recent_at
                        .is_some_and(|t| now.saturating_duration_since(t) < PAWS_IDLE)
                {
                    self.ack_out_of_window(now, h, payload.len());
                    self.trace_drop(now, "PAWS: old timestamp");
                    return;
                }
            }
        }

        // First: sequence number (§3.10.7.4).
        if !self.acceptable(h, payload.len()) {
            if !h.flags.rst() {
                // An unacceptable segment draws an ACK (and is dropped).
                self.ack_out_of_window(now, h, payload.len());
            }
            if self.state == State::TimeWait && h.flags.fin() {
                // A retransmitted FIN in TIME-WAIT: ACK it, restart 2 MSL (§3.10.7.4 eighth).
                self.arm(TimerKind::TimeWait, now, now + self.config.msl * 2);
            }
            self.trace_drop(now, "not in the receive window");
            return;
        }

        // Second: RST (RFC 5961 §3.2).
        if h.flags.rst() {
            if h.seq == self.rcv_nxt {
                let reason = if self.state == State::SynReceived {
                    CloseReason::Refused
                } else {
                    CloseReason::Reset
                };
                self.finish(now, reason);
            } else {
                // In the window but not exact: a challenge ACK, no reset.
                self.ack_now = true;
                self.trace_drop(now, "RST not at RCV.NXT: challenge ACK");
            }
            return;
        }

        // Fourth: SYN in a synchronized state (RFC 5961 §4.2): challenge ACK.
        if h.flags.syn() {
            if self.state == State::SynReceived && h.seq == self.irs {
                self.syn_owed = true;
            } else {
                self.ack_now = true;
                self.trace_drop(now, "SYN in a synchronized state: challenge ACK");
            }
            return;
        }

        // Fifth: the ACK field.
        if !h.flags.ack() {
            self.trace_drop(now, "no ACK");
            return;
        }
        if self.state == State::SynReceived {
            if self.snd_una < h.ack && h.ack <= self.snd_max {
                self.snd_wnd = (h.window as usize) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = h.seq;
                self.snd_wl2 = h.ack;
                self.enter_established(now);
            } else {
                self.owe_rst(h.ack);
                self.trace_drop(now, "unacceptable ACK in SYN-RECEIVED");
                return;
            }
        }
        // RFC 5961 §5.2: acceptable if SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
        if h.ack > self.snd_max {
            self.ack_now = true;
            self.trace_drop(now, "ACK for data not sent");
            return;
        }
        let oldest = SeqNum(self.snd_una.0.wrapping_sub(self.max_snd_wnd as u32));
        if h.ack < oldest {
            self.ack_now = true;
            self.trace_drop(now, "ACK too old: challenge ACK");
            return;
        }
        self.update_timestamp_recent(now, h, payload.len());
        self.process_ack(now, h, payload.len());
        if self.state == State::Closed {
            return;
        }

        // Seventh: the segment text.
        if !payload.is_empty() {
            if self.state.can_receive() {
                if self.read_closed {
                    // Data for an application that closed: reset (RFC 2525 §2.17, Linux).
                    self.abort(now);
                    return;
                }
                self.take_text(now, h.seq, payload);
            } else {
                // After the peer's FIN, data is a protocol error; ignore it but ACK.
                self.ack_now = true;
            }
        }

        // Eighth: FIN.
        if h.flags.fin() {
            let fin_seq = h.seq + payload.len();
            if fin_seq == self.rcv_nxt {
                self.take_fin(now);
            } else if fin_seq > self.rcv_nxt {
                self.pending_fin = Some(fin_seq);
                self.ack_now = true;
            }
        }
    }

    /// RFC 9293 §3.10.7.4 (and RFC 7323 §5.3 for PAWS): an unacceptable
    /// segment draws an ACK. For one that carries nothing (a pure ACK, a
    /// keepalive probe) the answer is rate-limited to one per 500 ms, as
    /// Linux does (tcp_invalid_ratelimit): two ends answering each other's
    /// reordered ACKs would otherwise never stop (RFC 5961 §7 asks for the
    /// same limit on challenge ACKs).
    fn ack_out_of_window(&mut self, now: Instant, h: &Header, len: usize) {
        let carries_something = len > 0 || h.flags.syn() || h.flags.fin();
        let allowed = self
            .last_oow_ack
            .is_none_or(|t| now.saturating_duration_since(t) >= OOW_ACK_INTERVAL);
        if carries_something || allowed {
            self.ack_now = true;
            if !carries_something {
                self.last_oow_ack = Some(now);
            }
        }
    }

    fn update_timestamp_recent(&mut self, now: Instant, h: &Header, len: usize) {
        // RFC 7323 §4.3 (3): keep TS.Recent from a segment covering Last.ACK.sent.
        if let (true, Some((tsval, _))) = (self.ts_enabled, h.options.timestamps) {
            let end = h.seq + seq_len(h, len);
            if h.seq <= self.last_ack_sent && self.last_ack_sent <= end {
                self.ts_recent = tsval;
                self.ts_recent_at = Some(now);
            }
        }
    }

    fn process_ack(&mut self, now: Instant, h: &Header, len: usize) {
        let ack = h.ack;
        self.take_sack_blocks(h);
        // Whether this ACK acknowledges new data: then its window is the
        // newest the peer has said, whatever its SEQ (Linux's
        // tcp_may_update_window): an in-order retransmission from the peer
        // that follows a higher-SEQ probe still moves the window.
        let acks_new_data = ack > self.snd_una;
        if ack > self.snd_una {
            self.on_ack_advanced(now, ack, h);
        } else if ack == self.snd_una
            && len == 0
            // Answers to zero-window probes are not duplicate ACKs: nothing was lost.
            && h.window != 0
            && self.snd_wnd != 0
            && !h.flags.fin()
            && self.snd_max > self.snd_una
            && ((h.window as usize) << self.snd_wscale) == self.snd_wnd
        {
            // RFC 5681 §2 "duplicate ACK".
            self.on_duplicate_ack(now);
        }
        self.update_send_window(now, h, acks_new_data);
        // Our FIN acknowledged?
        let fin_acked = self.fin_acked();
        match self.state {
            State::FinWait1 if fin_acked => self.set_state(now, State::FinWait2),
            State::Closing if fin_acked => self.enter_time_wait(now),
            State::LastAck if fin_acked => self.finish(now, CloseReason::Normal),
            _ => {}
        }
    }

    /// Window update (§3.10.7.4, fifth, ESTABLISHED).
    #[inline]
    fn update_send_window(&mut self, now: Instant, h: &Header, acks_new_data: bool) {
        let ack = h.ack;
        if acks_new_data || self.snd_wl1 < h.seq || (self.snd_wl1 == h.seq && self.snd_wl2 <= ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = (h.window as usize) << self.snd_wscale;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = h.seq;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 {
                self.persist_deadline = None;
                self.persist_backoff = 0;
            } else if !was_zero || self.persist_deadline.is_none() {
                self.arm_persist(now);
            }
        }
    }

    fn on_ack_advanced(&mut self, now: Instant, ack: SeqNum, h: &Header) {
        let acked = ack - self.snd_una;
        // The SYN and the FIN take sequence numbers but no buffer space.
        let mut data_acked = acked;
        if self.snd_una == self.iss {
            data_acked -= 1;
        }
        let data_acked = data_acked.min(self.send_buf.len());
        self.send_buf.drop_front(data_acked);
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        if !self.sacked.is_empty() {
            self.sacked.retain(|&(_, r)| r > ack);
            for b in self.sacked.iter_mut() {
                b.0 = b.0.max(ack);
            }
        }
        self.retries = 0;
        self.dup_acks = 0;
        self.tlp_base = Some(now);
        if let Some(end) = self.tlp_end {
            if ack >= end {
                self.on_probe_acknowledged(now, h, ack, acked);
            }
        }

        // RTT: timestamps echo (RFC 7323 §4), else the timed segment (Karn).
        let mut sample = None;
        if let (true, Some((_, tsecr))) = (self.ts_enabled, h.options.timestamps) {
            if tsecr != 0 {
                let now_ts = self.ts_val(now);
                let ms = now_ts.wrapping_sub(tsecr);
                if (ms as i32) >= 0 {
                    // Milliseconds, at least 100 µs.
                    sample = Some((u64::from(ms) * 1_000_000).max(100_000));
                }
            }
        } else if let Some((end, sent)) = self.rtt_probe {
            if ack >= end {
                let d = now.saturating_duration_since(sent);
                sample = Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                self.rtt_probe = None;
            }
        }
        if let Some(r) = sample {
            self.rtt.sample_ns(r);
        }

        // Congestion control and recovery (RFC 6582 §3.2 steps 4-5).
        match self.recovery {
            Some(recover) if ack >= recover => {
                self.recovery = None;
                self.rtx_next = None;
                self.recovery_inflation = 0;
                let flight = self.snd_max - self.snd_una;
                self.cc.on_recovery_end(flight);
                self.trace_cwnd(now);
            }
            Some(_) => {
                if self.sack_enabled {
                    // RFC 6675: on to the next lost hole (never below HighRxt).
                    self.rtx_next = self.next_lost_hole();
                } else {
                    // RFC 6582 §3.2 step 5: a partial ACK retransmits the next
                    // segment and deflates by the amount acked, one SMSS back.
                    self.rtx_next = Some(self.snd_una);
                    self.recovery_inflation =
                        self.recovery_inflation.saturating_sub(data_acked) + self.snd_mss;
                }
            }
            None => {
                if data_acked > 0 {
                    self.cc.on_ack(now, data_acked, sample);
                }
            }
        }

        // RFC 6298 §5.2-5.3: restart the timer while data is outstanding.
        if self.snd_max > self.snd_una {
            self.arm(TimerKind::Retransmit, now, now + self.rtt.rto());
        } else {
            self.retransmit_deadline = None;
        }
        if data_acked > 0
            && (self.writable_owed || self.send_buf.free() > 0)
            && self.state.can_send()
        {
            if self.writable_owed {
                self.events |= EV_WRITABLE;
            }
            self.writable_owed = false;
        }
    }

    /// RFC 8985 §7.4: the ACK covers the probe's TLP.end_seq. A probe of
    /// new data needs nothing more. A probe that resent data either
    /// repaired a loss (the original never arrived) or duplicated it; the
    /// receiver says the latter with a D-SACK (RFC 2883: a first block
    /// below the cumulative ACK). Without one, the loss is taken as real
    /// and the window reduced once, as a recovery episode would.
    fn on_probe_acknowledged(&mut self, now: Instant, h: &Header, ack: SeqNum, acked: usize) {
        self.tlp_end = None;
        if !std::mem::take(&mut self.tlp_retrans) || self.recovery.is_some() {
            return;
        }
        let duplicate = h
            .options
            .sack
            .as_slice()
            .first()
            .is_some_and(|&(_, r)| r <= ack);
        if duplicate {
            return;
        }
        // The flight before this ACK, as when the loss would have been found.
        let flight = self.snd_max - self.snd_una;
        self.cc.on_congestion_event(now, flight + acked);
        self.cc.on_recovery_end(flight);
        self.trace_cwnd(now);
    }

    fn on_duplicate_ack(&mut self, now: Instant) {
        self.dup_acks += 1;
        if self.recovery.is_some() {
            if self.sack_enabled {
                // RFC 6675 §5 (C): the SACK information may show a new hole to fill.
                self.rtx_next = self.next_lost_hole();
            } else {
                // RFC 5681 §3.2 step 4: each further duplicate means a segment left
                // the network: inflate by one SMSS so new data may go.
                self.recovery_inflation += self.snd_mss;
            }
            return;
        }
        let sack_says_lost = self.sack_enabled && self.is_lost(self.snd_una);
        if self.dup_acks >= DUPACK_THRESHOLD || sack_says_lost || self.early_retransmit_due() {
            // Fast retransmit (RFC 5681 §3.2 steps 2-3), recovery until `recover` is acked.
            let flight = self.snd_max - self.snd_una;
            self.cc.on_congestion_event(now, flight);
            self.trace_cwnd(now);
            self.recovery = Some(self.snd_max);
            self.high_rxt = self.snd_una;
            self.rtx_next = Some(self.snd_una);
            // RFC 5681 §3.2 step 3: cwnd = ssthresh + 3*SMSS (without SACK; with
            // SACK, RFC 6675 counts the SACKed bytes out of the pipe instead).
            self.recovery_inflation = if self.sack_enabled {
                0
            } else {
                DUPACK_THRESHOLD as usize * self.snd_mss
            };
            self.rtt_probe = None;
        }
    }

    /// RFC 5827 early retransmit: with fewer than four segments out and
    /// nothing more to send (no new data, or the peer's window allows
    /// none), three duplicate ACKs may never come: the threshold becomes
    /// the outstanding segments less one, counted in duplicate ACKs (§3.1)
    /// or, with SACK, in segments SACKed above SND.UNA (§3.2).
    fn early_retransmit_due(&self) -> bool {
        if !self.config.early_retransmit || self.snd_mss == 0 {
            return false;
        }
        let outstanding = self.snd_max - self.snd_una;
        let segments = outstanding.div_ceil(self.snd_mss);
        if !(2..4).contains(&segments) {
            return false;
        }
        let end = self.data_end();
        let unsent = if end > self.snd_max {
            end - self.snd_max
        } else {
            0
        };
        let right_edge = self.snd_una + self.snd_wnd;
        let window_full = right_edge <= self.snd_max;
        if unsent > 0 && !window_full {
            return false;
        }
        let threshold = segments - 1;
        if self.sack_enabled {
            let sacked = self.sacked_bytes();
            sacked > 0 && sacked.div_ceil(self.snd_mss) >= threshold
        } else {
            self.dup_acks as usize >= threshold
        }
    }

    /// RFC 6675 IsLost: more than (DupThresh - 1) * SMSS bytes above `seq` were SACKed.
    fn is_lost(&self, seq: SeqNum) -> bool {
        let above: usize = self
            .sacked
            .iter()
            .filter(|&&(_, r)| r > seq)
            .map(|&(l, r)| r - l.max(seq))
            .sum();
        above > (DUPACK_THRESHOLD as usize - 1) * self.snd_mss
    }

    /// RFC 6675 NextSeg rule 1: the first unSACKed sequence at or above
    /// HighRxt that is lost; `None` when no hole qualifies.
    fn next_lost_hole(&self) -> Option<SeqNum> {
        let from = self.high_rxt.max(self.snd_una);
        let hole = self.next_hole(from);
        (hole < self.snd_max && self.is_lost(hole)).then_some(hole)
    }

    fn take_sack_blocks(&mut self, h: &Header) {
        if !self.sack_enabled {
            return;
        }
        for &(l, r) in h.options.sack.as_slice() {
            // RFC 2018 §3: only blocks above SND.UNA and within what we sent count.
            if r <= l || r <= self.snd_una || r > self.snd_max {
                continue;
            }
            let l = l.max(self.snd_una);
            self.sacked.push((l, r));
        }
        if self.sacked.len() > 1 {
            self.sacked.sort_by(|a, b| a.0.diff(b.0).cmp(&0));
            let mut merged: Vec<(SeqNum, SeqNum)> = Vec::with_capacity(self.sacked.len());
            for &(l, r) in &self.sacked {
                match merged.last_mut() {
                    Some(last) if l <= last.1 => last.1 = last.1.max(r),
                    _ => merged.push((l, r)),
                }
            }
            self.sacked = merged;
        }
    }

    fn sacked_bytes(&self) -> usize {
        self.sacked.iter().map(|&(l, r)| r - l).sum()
    }

    /// The first sequence at or after `from` the peer has not SACKed (RFC 6675 NextSeg, simplified).
    fn next_hole(&self, from: SeqNum) -> SeqNum {
        let mut at = from.max(self.snd_una);
        for &(l, r) in &self.sacked {
            if l <= at && at < r {
                at = r;
            }
        }
        at
    }

    fn is_sacked(&self, seq: SeqNum) -> bool {
        self.sacked.iter().any(|&(l, r)| l <= seq && seq < r)
    }

    fn take_text(&mut self, now: Instant, seq: SeqNum, payload: &[u8]) {
        let window = self.rcv_adv.max(self.rcv_nxt) - self.rcv_nxt;
        let had_holes = self.recv_buf.has_pieces();
        let advanced =
            self.recv_buf
                .insert(self.rcv_nxt, seq, payload, window.max(self.recv_buf.free()));
        if advanced > 0 {
            self.on_text_in_order(now, advanced, had_holes);
        } else {
            // Out of order or duplicate: an immediate (duplicate) ACK (RFC 5681 §4.2).
            self.ack_now = true;
        }
    }

    /// RCV.NXT moved `advanced` bytes: the application may read, and the
    /// ACK is owed now or delayed.
    #[inline(always)]
    fn on_text_in_order(&mut self, now: Instant, advanced: usize, had_holes: bool) {
        self.rcv_nxt += advanced;
        self.autotune(now);
        self.events |= EV_READABLE;
        if had_holes {
            // Filling a hole: ACK at once (RFC 5681 §4.2).
            self.ack_now = true;
        } else {
            // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: ACK at least every second
            // full segment; a segment the sender's device had not yet cut
            // (GRO/TSO) counts as the full segments it holds.
            let mss = usize::from(self.config.mss).max(1);
            // (No division for the usual segment of at most one MSS.)
            let extra = if advanced > mss {
                (advanced - 1) / mss
            } else {
                0
            };
            self.segments_unacked += 1 + extra.min(u32::MAX as usize) as u32;
            if self.segments_unacked >= 2 {
                self.ack_now = true;
            } else if self.delayed_ack_deadline.is_none() {
                self.arm(TimerKind::DelayedAck, now, now + self.config.delayed_ack);
            }
        }
        if self.pending_fin == Some(self.rcv_nxt) {
            self.pending_fin = None;
            self.take_fin(now);
        }
    }

    /// Receive-buffer autotuning (after Linux's tcp_rcv_space_adjust): once
    /// per RTT, if the peer sent more than half the buffer in that RTT, the
    /// buffer grows to twice what arrived, up to the configured cap, so the
    /// window keeps up with bandwidth·RTT.
    #[inline]
    fn autotune(&mut self, now: Instant) {
        if self.autotune_enabled && self.recv_buf.capacity() < self.config.recv_buffer {
            // Within the RTT being measured (and that RTT unchanged): nothing
            // to do, without the clock arithmetic.
            if let Some((end, _)) = self.autotune_from {
                if now < end && self.autotune_rtt == self.autotune_rtt_ns() {
                    return;
                }
            }
            self.autotune_measure(now);
        }
    }

    /// The RTT a measurement lasts, in ns (the smoothed RTT, 100 ms before
    /// there is one, at least 50 µs).
    #[inline]
    fn autotune_rtt_ns(&self) -> u64 {
        self.rtt.srtt_ns().unwrap_or(100_000_000).max(50_000)
    }

    /// Starts a measurement at `since` with RCV.NXT at `from`.
    fn autotune_start(&mut self, since: Instant, from: SeqNum) {
        let rtt = self.autotune_rtt_ns();
        match since.checked_add(Duration::from_nanos(rtt)) {
            Some(end) => {
                self.autotune_from = Some((end, from));
                self.autotune_rtt = rtt;
            }
            None => {
                self.autotune_from = Some((since, from));
                self.autotune_rtt = 0;
            }
        }
    }

    /// `autotune` while the buffer may still grow.
    #[inline(never)]
    fn autotune_measure(&mut self, now: Instant) {
        let cap = self.recv_buf.capacity();
        let Some((end, from)) = self.autotune_from else {
            self.autotune_start(now, self.rcv_nxt);
            return;
        };
        // (Exact: the end is the start plus `autotune_rtt`.)
        let since = end - Duration::from_nanos(self.autotune_rtt);
        let rtt = Duration::from_nanos(self.autotune_rtt_ns());
        if now.saturating_duration_since(since) < rtt {
            // The RTT changed since the end was computed: recompute it.
            self.autotune_start(since, from);
            return;
        }
        let arrived = self.rcv_nxt - from;
        if arrived * 2 > cap {
            let grown = (arrived * 2).max(cap * 2).min(self.config.recv_buffer);
            self.recv_buf.set_capacity(grown);
            // The larger window is announced with the next ACK.
            self.ack_now = true;
        }
        self.autotune_start(now, self.rcv_nxt);
    }

    /// Path MTU discovery (RFC 1191 §6.4, RFC 8201): the path carries at most
    /// `mss` bytes of segment; everything unacknowledged is sent again in the
    /// smaller size (the big segments were dropped), without a congestion
    /// response: nothing was congested.
    pub fn reduce_mss(&mut self, now: Instant, mss: usize) {
        let mss = mss.max(64);
        if mss >= self.snd_mss {
            return;
        }
        self.snd_mss = mss;
        self.cc.set_mss(mss);
        if self.state.is_synchronized() && self.snd_nxt > self.snd_una {
            self.snd_nxt = self.snd_una;
            self.rtt_probe = None;
            self.arm(TimerKind::Retransmit, now, now + self.rtt.rto());
        }
    }

    /// TCP_NODELAY: send small segments without waiting for ACKs (Nagle off).
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT: probe an idle connection.
    pub fn set_keepalive(&mut self, now: Instant, keepalive: Option<(Duration, Duration, u32)>) {
        self.keepalive = keepalive;
        self.keepalive_sent = 0;
        if keepalive.is_some() && self.state == State::Established {
            self.arm_keepalive(now);
        } else if keepalive.is_none() {
            self.keepalive_deadline = None;
        }
    }

    /// SO_SNDBUF: how many bytes `send` may queue.
    pub fn set_send_buffer(&mut self, bytes: usize) {
        self.send_buf.set_capacity(bytes.max(1));
    }

    /// SO_RCVBUF: the receive buffer's size; autotuning stops, as in Linux.
    /// (A window already advertised is honoured: bytes held stay.)
    pub fn set_recv_buffer(&mut self, bytes: usize) {
        self.recv_buf.set_capacity(bytes.max(1));
        self.autotune_enabled = false;
    }

    /// The current receive buffer size (grows with autotuning).
    pub fn recv_buffer_size(&self) -> usize {
        self.recv_buf.capacity()
    }

    fn take_fin(&mut self, now: Instant) {
        if self.fin_received {
            self.ack_now = true;
            return;
        }
        self.fin_received = true;
        self.rcv_nxt += 1u32;
        self.ack_now = true;
        self.events |= EV_READABLE;
        match self.state {
            State::SynReceived | State::Established => self.set_state(now, State::CloseWait),
            State::FinWait1 => {
                if self.fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.set_state(now, State::Closing);
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            State::TimeWait => self.arm(TimerKind::TimeWait, now, now + self.config.msl * 2),
            _ => {}
        }
    }

    /// The handshake is done (RFC 9293 §3.10.7.3/§3.10.7.4).
    fn enter_established(&mut self, now: Instant) {
        // RFC 6298 §5.7: a SYN that had to be retransmitted, with no RTT sample
        // since, leaves the RTO at 3 s for the data that follows.
        if self.syn_retransmitted && self.rtt.srtt().is_none() {
            self.rtt.set_rto(Duration::from_secs(3));
        }
        self.retransmit_deadline = None;
        self.retries = 0;
        self.syn_owed = false;
        let next = if self.fin_queued {
            State::FinWait1
        } else {
            State::Established
        };
        self.set_state(now, next);
        self.events |= EV_CONNECTED;
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(now, State::TimeWait);
        self.retransmit_deadline = None;
        self.persist_deadline = None;
        self.keepalive_deadline = None;
        self.arm(TimerKind::TimeWait, now, now + self.config.msl * 2);
    }

    /// RFC 6191: may a new SYN reuse this TIME-WAIT connection's 4-tuple?
    /// Yes when its timestamp is newer, or (without timestamps) its sequence
    /// number is beyond what this connection received.
    pub fn time_wait_allows_reuse(&self, syn: &Header) -> bool {
        if self.state != State::TimeWait {
            return false;
        }
        match (self.ts_enabled, syn.options.timestamps) {
            // §2: a newer timestamp, or an equal one with a higher sequence number.
            (true, Some((tsval, _))) => {
                let d = tsval.wrapping_sub(self.ts_recent) as i32;
                d > 0 || (d == 0 && syn.seq > self.rcv_nxt)
            }
            // §2: the old incarnation had no timestamps, the new one has: honour it.
            (false, Some(_)) => true,
            _ => syn.seq > self.rcv_nxt,
        }
    }

    // ----- options -----

    fn take_syn_options(&mut self, now: Instant, syn: &Header) {
        let o = &syn.options;
        let our_mss = self.config.mss as usize;
        self.snd_mss = o
            .mss
            .map(|m| (m as usize).clamp(64, our_mss.max(64)))
            .unwrap_or(DEFAULT_SEND_MSS.min(our_mss));
        self.cc.set_mss(self.snd_mss);
        // RFC 7323 §2.2: scaling only when both SYNs carry the option.
        match (self.config.window_scaling, o.window_scale) {
            (true, Some(shift)) => {
                self.ws_enabled = true;
                // §2.3: a shift above 14 is used as 14.
                self.snd_wscale = shift.min(14);
            }
            _ => {
                self.ws_enabled = false;
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        match (self.config.timestamps, o.timestamps) {
            (true, Some((tsval, _))) => {
                self.ts_enabled = true;
                self.ts_recent = tsval;
                self.ts_recent_at = Some(now);
            }
            _ => self.ts_enabled = false,
        }
        self.sack_enabled = self.config.sack && o.sack_permitted;
    }

    fn update_send_window_from_syn(&mut self, h: &Header) {
        // §3.10.7.3: SND.WND from the SYN, never scaled (RFC 7323 §2.2).
        self.snd_wnd = h.window as usize;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
    }

    // ----- leaving -----

    fn finish(&mut self, now: Instant, reason: CloseReason) {
        if self.state == State::Closed && self.close_reason.is_some() {
            return;
        }
        self.set_state(now, State::Closed);
        self.close_reason = Some(reason);
        self.retransmit_deadline = None;
        self.delayed_ack_deadline = None;
        self.persist_deadline = None;
        self.keepalive_deadline = None;
        self.time_wait_deadline = None;
        self.syn_owed = false;
        self.ack_now = false;
        self.queue_probe = None;
        self.events |= EV_CLOSED;
    }

    fn owe_rst(&mut self, seq: SeqNum) {
        // §3.10.7.3/§3.10.7.4: <SEQ=SEG.ACK><CTL=RST>.
        self.rst_owed = Some(Header {
            seq,
            ack: SeqNum(0),
            flags: Flags::RST,
            window: 0,
            options: Options::default(),
        });
    }

    fn set_state(&mut self, now: Instant, to: State) {
        if self.state != to {
            if self.config.trace {
                self.trace.push_back(TraceEvent::StateChange {
                    at: now,
                    from: self.state,
                    to,
                });
            }
            self.state = to;
        }
    }

    // ----- sending -----

    /// One past the last data byte queued (where the FIN goes).
    #[inline]
    fn data_end(&self) -> SeqNum {
        let syn_unacked = u32::from(self.snd_una == self.iss);
        self.snd_una + syn_unacked + self.send_buf.len()
    }

    /// Our FIN was acknowledged.
    fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|f| self.snd_una > f)
    }

    fn advertisable_window(&self) -> usize {
        self.recv_buf.free().min(65535usize << self.rcv_wscale)
    }

    /// The window field to send, honouring receiver SWS avoidance (RFC 9293
    /// §3.8.6.2.2) and never moving the right edge left (RFC 7323 §2.4).
    fn window_to_advertise(&mut self) -> u16 {
        let free = self.advertisable_window();
        let current = self.rcv_adv.max(self.rcv_nxt) - self.rcv_nxt;
        let growth = free.saturating_sub(current);
        let threshold = (self.recv_buf.capacity() / 2).min(self.config.mss as usize);
        let wnd = if free > current && growth < threshold {
            current
        } else {
            free.max(current)
        };
        let field = (wnd >> self.rcv_wscale).min(65535);
        let real = field << self.rcv_wscale;
        let edge = self.rcv_nxt + real;
        if edge > self.rcv_adv {
            self.rcv_adv = edge;
        }
        field as u16
    }

    /// Our timestamp clock at `now` (RFC 7323 §4.1: milliseconds).
    #[inline]
    fn ts_val(&mut self, now: Instant) -> u32 {
        if self.ts_cache.0 != now {
            self.ts_cache = (now, timestamp_ms(self.ts_epoch, now, self.ts_offset));
        }
        self.ts_cache.1
    }

    fn header(&mut self, now: Instant, seq: SeqNum, flags: Flags) -> Header {
        let mut h = Header::default();
        self.fill_header(now, seq, flags, &mut h);
        h
    }

    /// Writes a segment's header in place (no struct moved afterwards).
    #[inline(always)]
    fn fill_header(&mut self, now: Instant, seq: SeqNum, flags: Flags, h: &mut Header) {
        h.options.mss = None;
        h.options.window_scale = None;
        h.options.sack_permitted = false;
        h.options.timestamps = if self.ts_enabled {
            Some((self.ts_val(now), self.ts_recent))
        } else {
            None
        };
        let mut flags = flags;
        let mut ack = SeqNum(0);
        if self.state != State::SynSent {
            flags |= Flags::ACK;
            ack = self.rcv_nxt;
        }
        let window = if flags.syn() {
            // RFC 7323 §2.2: the window in a SYN is never scaled.
            self.recv_buf.free().min(65535) as u16
        } else {
            self.window_to_advertise()
        };
        if flags.syn() && self.state == State::SynReceived {
            // The SYN-ACK's window sets the first right edge.
            self.rcv_adv = self.rcv_nxt + window as usize;
        }
        // Written in place: a local copied in afterwards is read back right
        // after its bytes were stored, and the store cannot be forwarded.
        h.options.sack = SackBlocks::new();
        if self.sack_enabled && !flags.syn() && self.recv_buf.has_pieces() {
            let room = if self.ts_enabled { 3 } else { 4 };
            for (l, r) in self.recv_buf.sack_blocks(room) {
                h.options.sack.push(l, r);
            }
        }
        h.seq = seq;
        h.ack = ack;
        h.flags = flags;
        h.window = window;
    }

    fn syn_header(&mut self, now: Instant) -> Header {
        let flags = if self.state == State::SynSent {
            Flags::SYN
        } else {
            Flags::SYN | Flags::ACK
        };
        let mut h = self.header(now, self.iss, flags);
        h.options.mss = Some(self.config.mss);
        let answering = self.state == State::SynReceived;
        // In a SYN-ACK, offer only what the peer offered (RFC 7323 §2.2, §3.2; RFC 2018 §2).
        if self.config.window_scaling && (!answering || self.ws_enabled) {
            h.options.window_scale = Some(self.rcv_wscale);
        }
        if self.config.sack && (!answering || self.sack_enabled) {
            h.options.sack_permitted = true;
        }
        if self.config.timestamps && (!answering || self.ts_enabled) {
            let tsval = self.ts_val(now);
            h.options.timestamps = Some((tsval, if answering { self.ts_recent } else { 0 }));
        } else {
            h.options.timestamps = None;
        }
        h
    }

    #[inline]
    fn arm_retransmit(&mut self, now: Instant) {
        if self.retransmit_deadline.is_none() {
            self.arm(TimerKind::Retransmit, now, now + self.rtt.rto());
        }
    }

    fn arm_persist(&mut self, now: Instant) {
        let base = self.rtt.rto().max(self.config.rto_min);
        let backoff = base * (1u32 << self.persist_backoff.min(10));
        self.arm(
            TimerKind::Persist,
            now,
            now + backoff.min(self.config.rto_max),
        );
    }

    fn arm_keepalive(&mut self, now: Instant) {
        if let Some((idle, _, _)) = self.keepalive {
            self.arm(TimerKind::Keepalive, now, now + idle);
        }
    }

    /// The next segment to send, if any, with its payload copied out.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Segment> {
        // (The header written where the segment is built: no `Transmit`
        // moved in between.)
        let mut header = Header::default();
        let payload = self.poll_transmit_into(now, &mut header)?.to_vec();
        Some(Segment { header, payload })
    }

    /// The next segment to send, if any, its payload borrowed from the
    /// send buffer: no allocation and no copy, the caller copies the bytes
    /// once, into its frame. The segment counts as sent when this returns.
    pub fn poll_transmit_ref(&mut self, now: Instant) -> Option<Transmit<'_>> {
        let mut header = Header::default();
        let payload = self.poll_transmit_into(now, &mut header)?;
        Some(Transmit { header, payload })
    }

    /// `poll_transmit_ref` writing the header into the caller's `header`
    /// (reused from segment to segment, nothing moved): the fastest way
    /// out. Returns the payload, borrowed; `header` is only meaningful
    /// when this returns `Some`.
    #[inline]
    pub fn poll_transmit_into(&mut self, now: Instant, header: &mut Header) -> Option<Payload<'_>> {
        // The last poll of every batch finds nothing: that answer is
        // inlined into the caller, before the body's register saves.
        if !self.may_transmit() {
            return None;
        }
        self.transmit_into(now, header)
    }

    /// Every segment owed now, in order, each handed to `emit` with its
    /// header and payload (lent from the send buffer, as
    /// `poll_transmit_into` lends it); returns how many. The segments are
    /// the ones repeated `poll_transmit_into` calls give, byte for byte, but
    /// a run of full-sized segments of new data is built from the one
    /// before: within a burst nothing arrives and `now` is one instant, so
    /// the ACK number, window and options stay and only SEQ (and PSH on the
    /// last) change, as in Linux's tcp_write_xmit loop. `header` is the
    /// caller's, written for each segment. `emit` returns whether to go
    /// on: false ends the burst after that segment (a device that failed),
    /// and what was not handed out stays owed.
    pub fn poll_transmit_burst(
        &mut self,
        now: Instant,
        header: &mut Header,
        mut emit: impl FnMut(&Header, Payload<'_>) -> bool,
    ) -> usize {
        let mut sent = 0;
        while let Some(payload) = self.poll_transmit_into(now, header) {
            sent += 1;
            if !emit(header, payload) {
                break;
            }
            if self.last_was_new_data && self.burst_may_continue() {
                let (n, go_on) = self.continue_burst(now, header, &mut emit);
                if n > 0 {
                    // (Once per burst: `now` is one instant.)
                    self.tlp_base = Some(now);
                }
                sent += n;
                if !go_on {
                    break;
                }
            }
        }
        sent
    }

    /// After a segment of new data: nothing but new data can be owed next,
    /// and the header just sent fits it (no SACK blocks, no FIN, no trace).
    #[inline]
    fn burst_may_continue(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait)
            && self.rst_owed.is_none()
            && !self.syn_owed
            && self.queue_probe.is_none()
            && !self.ack_now
            && self.rtx_next.is_none()
            && self.sacked.is_empty()
            && !self.fin_queued
            && !self.config.trace
            && !self.recv_buf.has_pieces()
            && self.snd_nxt == self.snd_max
    }

    /// The full-sized segments of new data that follow, built from `h` (the
    /// last one's header); stops where `new_data` would decide otherwise
    /// (a short segment: Nagle, SWS avoidance, the window's end) and leaves
    /// that to it. `new_data`'s steps for the case `burst_may_continue`
    /// allows, in its order. Returns how many, and false if `emit` said
    /// stop or nothing more can go now.
    fn continue_burst(
        &mut self,
        now: Instant,
        h: &mut Header,
        emit: &mut impl FnMut(&Header, Payload<'_>) -> bool,
    ) -> (usize, bool) {
        let max_payload = self.max_payload();
        let largest = self.largest_segment(max_payload);
        let mut sent = 0;
        loop {
            let end = self.data_end();
            if self.snd_nxt >= end {
                return (sent, true);
            }
            let unsent = end - self.snd_nxt;
            let wanted = unsent.min(self.usable_room()).min(largest);
            let mut len = self.send_buf.lendable(self.snd_nxt - self.snd_una, wanted);
            if len > max_payload && len < unsent {
                len = len / max_payload * max_payload;
            }
            if len < max_payload {
                if len == 0 && self.snd_nxt != self.snd_una && !self.tlp_owed {
                    // Nothing, with data in flight (no persist timer to
                    // arm) and no FIN (`burst_may_continue`): the poll
                    // that would follow finds nothing (`new_data` returns
                    // None, and nothing else may be owed). Its one
                    // lasting effect, without it.
                    self.last_was_new_data = false;
                    return (sent, false);
                }
                // Short: Nagle and SWS avoidance decide (`new_data`).
                return (sent, true);
            }
            let seq = self.snd_nxt;
            h.seq = seq;
            h.flags = if len == unsent {
                Flags::ACK | Flags::PSH
            } else {
                Flags::ACK
            };
            self.snd_nxt = seq + len;
            self.snd_max = self.snd_nxt;
            if self.rtt_probe.is_none() && !self.ts_enabled {
                self.rtt_probe = Some((self.snd_nxt, now));
            }
            self.arm_retransmit(now);
            let (a, b) = self.send_buf.slices(seq - self.snd_una, len);
            self.burst_built += 1;
            sent += 1;
            if !emit(h, Payload::new(a, b)) {
                return (sent, false);
            }
        }
    }

    /// `poll_transmit_into` once something may be owed.
    #[inline(never)]
    fn transmit_into(&mut self, now: Instant, header: &mut Header) -> Option<Payload<'_>> {
        let body = self.next_segment(now, header)?;
        if header.flags.ack() {
            self.last_ack_sent = header.ack;
            self.ack_now = false;
            self.segments_unacked = 0;
            self.delayed_ack_deadline = None;
        }
        let len = match body {
            Body::Empty => 0,
            Body::Buffered { len, .. } => len,
            Body::ProbeByte => 1,
        };
        self.trace_segment_out(now, header, len);
        let payload = match body {
            Body::Empty => Payload::default(),
            Body::Buffered { offset, len } => {
                let (a, b) = self.send_buf.slices(offset, len);
                Payload::new(a, b)
            }
            Body::ProbeByte => Payload::new(std::slice::from_ref(&self.probe_byte), &[]),
        };
        Some(payload)
    }

    /// A cheap test that something might be owed (the last `poll_transmit`
    /// of every batch returns `None`: it should cost next to nothing).
    #[inline]
    fn may_transmit(&self) -> bool {
        if self.rst_owed.is_some() || self.syn_owed || self.queue_probe.is_some() || self.ack_now {
            return true;
        }
        if self.rtx_next.is_some() || self.tlp_owed {
            return true;
        }
        if !self.state.is_synchronized() {
            return false;
        }
        let end = self.data_end();
        self.snd_nxt < end || (self.fin_queued && self.snd_nxt <= end)
    }

    /// The next segment owed: its header written into `h`, where its payload lies.
    #[inline(always)]
    fn next_segment(&mut self, now: Instant, h: &mut Header) -> Option<Body> {
        self.last_was_new_data = false;
        // (Each owed thing is tested before it is taken: `take` moves the
        // whole header out and back even when there is none.)
        if self.rst_owed.is_some() {
            if let Some(rst) = self.rst_owed.take() {
                *h = rst;
                return Some(Body::Empty);
            }
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent | State::SynReceived => {
                if self.syn_owed {
                    self.syn_owed = false;
                    *h = self.syn_header(now);
                    self.snd_nxt = self.iss + 1u32;
                    self.snd_max = self.snd_max.max(self.snd_nxt);
                    self.arm_retransmit(now);
                    if self.retries == 0 && !self.ts_enabled {
                        self.rtt_probe = Some((self.iss + 1u32, now));
                    }
                    return Some(Body::Empty);
                }
                if self.state == State::SynSent {
                    return None;
                }
            }
            _ => {}
        }
        if self.queue_probe.is_some() {
            if let Some((probe, body)) = self.queue_probe.take() {
                *h = probe;
                return Some(body);
            }
        }
        if self.state.is_synchronized() || self.state == State::SynReceived {
            if self.rtx_next.is_some() {
                if let Some(body) = self.retransmission(now, h) {
                    return Some(body);
                }
            }
            if self.tlp_owed {
                if let Some(body) = self.loss_probe(now, h) {
                    return Some(body);
                }
            }
            if let Some(body) = self.new_data(now, h) {
                return Some(body);
            }
        }
        if self.ack_now && self.state != State::SynSent {
            // SND.MAX, not SND.NXT: after a timeout SND.NXT goes back to SND.UNA, and an
            // ACK numbered below what the peer already received would be outside its
            // window and dropped with the acknowledgment it carries.
            self.fill_header(now, self.snd_max, Flags::ACK, h);
            return Some(Body::Empty);
        }
        None
    }

    /// In recovery: resend the next hole (one segment per call).
    fn retransmission(&mut self, now: Instant, h: &mut Header) -> Option<Body> {
        let at = self.rtx_next?;
        // RFC 6675 §5 (C): with SACK, a hole other than the first goes out only
        // while cwnd - pipe has room for it.
        if self.sack_enabled
            && at > self.snd_una
            && self.in_flight() + self.snd_mss > self.cc.window()
        {
            return None;
        }
        if at >= self.snd_max || at < self.snd_una {
            self.rtx_next = None;
            return None;
        }
        // A retransmission resends what was sent: never past SND.MAX.
        let end = self.data_end().min(self.snd_max);
        let mut len = if at < end {
            (end - at).min(self.max_payload())
        } else {
            0
        };
        // Stop at the next SACKed range.
        if let Some(&(l, _)) = self.sacked.iter().find(|&&(l, _)| l > at) {
            len = len.min(l - at);
        }
        // What two slices lend (see `SendBuffer::lendable`).
        len = self.send_buf.lendable(at - self.snd_una, len);
        let with_fin = self.fin_seq == Some(at + len);
        if len == 0 && !with_fin {
            self.rtx_next = None;
            return None;
        }
        let body = Body::buffered(at - self.snd_una, len);
        let mut flags = Flags::ACK;
        if with_fin {
            flags |= Flags::FIN;
        }
        self.fill_header(now, at, flags, h);
        let next = at + len + usize::from(with_fin);
        self.high_rxt = self.high_rxt.max(next);
        // With SACK, on to the next lost hole; NewReno sends one segment per (partial) ACK.
        self.rtx_next = if self.sack_enabled {
            self.next_lost_hole()
        } else {
            None
        };
        if self.config.trace {
            self.trace.push_back(TraceEvent::Retransmit {
                at: now,
                seq: at,
                len,
                fast: true,
            });
        }
        self.arm_retransmit(now);
        Some(body)
    }

    /// RFC 8985 §7.3: the tail loss probe is one segment of new data if
    /// the receiver's window takes it (whatever cwnd says: one segment
    /// more than it allows), else the last segment sent again.
    fn loss_probe(&mut self, now: Instant, h: &mut Header) -> Option<Body> {
        self.tlp_owed = false;
        // This flight's probe is used up even if none can be built (so the
        // timeout cannot come back at once).
        self.tlp_end = Some(self.snd_max);
        self.tlp_retrans = false;
        if self.snd_max <= self.snd_una || self.snd_nxt != self.snd_max {
            return None;
        }
        if self.snd_nxt < self.data_end() {
            // cwnd's limit lifted by one segment for this call (the extra
            // room is the window inflation recovery uses; no recovery runs).
            let lift = self.max_payload();
            self.recovery_inflation += lift;
            let body = self.new_data(now, h);
            self.recovery_inflation -= lift;
            if let Some(body) = body {
                self.tlp_end = Some(self.snd_max);
                let len = match body {
                    Body::Buffered { len, .. } => len,
                    _ => 0,
                };
                self.probe_sent(now, h.seq, len);
                return Some(body);
            }
        }
        // Offsets from SND.UNA: the data sent ends at `end`.
        let end = if self.data_end() > self.snd_una {
            (self.data_end() - self.snd_una).min(self.snd_max - self.snd_una)
        } else {
            0
        };
        let mut start = end.saturating_sub(self.max_payload());
        // What two slices lend (see `SendBuffer::lendable`): the probe's
        // start moves up until they reach its end.
        let mut len = self.send_buf.lendable(start, end - start);
        if len < end - start {
            start = end - len;
            len = self.send_buf.lendable(start, end - start);
        }
        let at = self.snd_una + start;
        let with_fin = self.fin_seq == Some(at + len);
        if len == 0 && !with_fin {
            return None;
        }
        let mut flags = Flags::ACK;
        if with_fin {
            flags |= Flags::FIN;
        }
        self.fill_header(now, at, flags, h);
        self.tlp_retrans = true;
        // Karn: an ambiguous sample is never taken.
        self.rtt_probe = None;
        self.probe_sent(now, at, len);
        Some(Body::buffered(start, len))
    }

    /// After either kind of probe: counted, traced, and (§7.3) the
    /// retransmission timer restarted one RTO from now, as Linux's
    /// tcp_send_loss_probe re-arms it.
    fn probe_sent(&mut self, now: Instant, seq: SeqNum, len: usize) {
        self.loss_probes = self.loss_probes.saturating_add(1);
        if self.config.trace {
            self.trace
                .push_back(TraceEvent::LossProbe { at: now, seq, len });
        }
        self.arm(TimerKind::Retransmit, now, now + self.rtt.rto());
    }

    /// Payload that fits in one segment: the MSS less the options every
    /// segment carries (RFC 6691: the MSS counts no TCP options), as
    /// Linux's tcp_current_mss.
    #[inline(always)]
    fn max_payload(&self) -> usize {
        let mut options = 0;
        if self.ts_enabled {
            options += 12; // NOP, NOP, timestamps (10)
        }
        if self.sack_enabled && self.recv_buf.has_pieces() {
            let room = if self.ts_enabled { 3 } else { 4 };
            let blocks = self.recv_buf.sack_blocks(room).len();
            options += 4 + 8 * blocks; // NOP, NOP, kind, length, blocks
        }
        self.snd_mss.saturating_sub(options).max(1)
    }

    #[inline(always)]
    fn in_flight(&self) -> usize {
        let outstanding = self.snd_nxt - self.snd_una;
        if self.sacked.is_empty() {
            return outstanding;
        }
        outstanding.saturating_sub(self.sacked_bytes())
    }

    /// How much new data may go now. Two limits (RFC 9293 §3.8.6.2.1, RFC
    /// 5681 §2): the receiver's window ends at SND.UNA + SND.WND, and bytes
    /// it holds out of order (SACKed) still take room there; the congestion
    /// window counts only what is in the network (the pipe, RFC 6675).
    #[inline(always)]
    fn usable_room(&self) -> usize {
        let right_edge = self.snd_una + self.snd_wnd;
        let receiver_room = if right_edge > self.snd_nxt {
            right_edge - self.snd_nxt
        } else {
            0
        };
        let network_room =
            (self.cc.window() + self.recovery_inflation).saturating_sub(self.in_flight());
        receiver_room.min(network_room)
    }

    /// The largest segment to build: one payload, or with TSO whole pieces
    /// of it (the device cuts it so every piece but the last is full).
    #[inline(always)]
    fn largest_segment(&self, max_payload: usize) -> usize {
        if self.config.tso_max_payload > max_payload {
            self.config.tso_max_payload / max_payload * max_payload
        } else {
            max_payload
        }
    }

    #[inline(always)]
    fn new_data(&mut self, now: Instant, h: &mut Header) -> Option<Body> {
        if !matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::LastAck
                | State::Closing
        ) {
            return None;
        }
        let end = self.data_end();
        if self.snd_nxt >= end && !self.fin_queued {
            // Nothing to send (an ACK's usual case): what follows would
            // find no length, no FIN and nothing to probe.
            return None;
        }
        // Skip what the peer already holds (after an RTO the scoreboard is empty).
        while self.snd_nxt < end && !self.sacked.is_empty() && self.is_sacked(self.snd_nxt) {
            self.snd_nxt = self.next_hole(self.snd_nxt);
        }
        let unsent = if self.snd_nxt < end {
            end - self.snd_nxt
        } else {
            0
        };
        let usable = self.usable_room();
        let max_payload = self.max_payload();
        let largest = self.largest_segment(max_payload);
        let wanted = unsent.min(usable).min(largest);
        // What two slices of the send buffer reach: a run over more of
        // `send_bytes`'s chunks is cut where two end (at least a full
        // segment, as the buffer lays them out).
        let mut len = self.send_buf.lendable(self.snd_nxt - self.snd_una, wanted);
        let cut_by_lending = len < wanted;
        if len > max_payload && len < unsent {
            // A window that ends mid-piece: send the whole pieces now, as
            // MSS-sized segments would go, and the rest when room opens.
            len = len / max_payload * max_payload;
        }
        if !self.sacked.is_empty() {
            if let Some(&(l, _)) = self.sacked.iter().find(|&&(l, _)| l > self.snd_nxt) {
                len = len.min(l - self.snd_nxt);
            }
        }
        if self.fin_acked() {
            return None;
        }
        // The FIN goes once all data is out (SND.NXT then passes it), and again
        // after a timeout sent SND.NXT back.
        let fin_owed = self.fin_queued && self.snd_nxt + len == end;

        if len == 0 && !fin_owed {
            if unsent > 0
                && self.snd_wnd == 0
                && self.snd_nxt == self.snd_una
                && self.persist_deadline.is_none()
            {
                self.arm_persist(now);
            }
            return None;
        }
        if len > 0 && len < max_payload && !fin_owed {
            // Nagle (RFC 9293 §3.7.4) and sender SWS avoidance (§3.8.6.2.1):
            // hold a small segment while data is unacknowledged, unless it is
            // all there is and nodelay is set, or it is half the peer's largest window.
            let outstanding = self.snd_nxt > self.snd_una;
            let all_of_it = len == unsent;
            let big_enough = len >= self.max_snd_wnd / 2 && self.max_snd_wnd > 0;
            let nagle_ok = self.nodelay || !outstanding;
            // Cut short only by where the buffer's chunks lie: more follows
            // at once, so it is not a small segment to hold back.
            if !(big_enough || (all_of_it && nagle_ok) || cut_by_lending || self.sws_override) {
                // Held back with nothing that would wake us (no segment in
                // flight to be acknowledged, no retransmission timer): the
                // persist timer is the override timeout (§3.8.6.2.1).
                if !outstanding
                    && self.retransmit_deadline.is_none()
                    && self.persist_deadline.is_none()
                {
                    self.arm_persist(now);
                }
                return None;
            }
        }
        self.sws_override = false;
        let body = Body::buffered(self.snd_nxt - self.snd_una, len);
        let mut flags = Flags::ACK;
        if len > 0 && len == unsent {
            flags |= Flags::PSH;
        }
        if fin_owed {
            flags |= Flags::FIN;
        }
        let seq = self.snd_nxt;
        self.fill_header(now, seq, flags, h);
        let is_retransmission = seq < self.snd_max;
        if fin_owed {
            self.fin_seq = Some(seq + len);
        }
        self.snd_nxt = seq + len + usize::from(fin_owed);
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if !is_retransmission {
            if self.rtt_probe.is_none() && !self.ts_enabled && len > 0 {
                self.rtt_probe = Some((self.snd_nxt, now));
            }
            self.tlp_base = Some(now);
        }
        if is_retransmission && self.config.trace {
            self.trace.push_back(TraceEvent::Retransmit {
                at: now,
                seq,
                len,
                fast: false,
            });
        }
        self.arm_retransmit(now);
        self.last_was_new_data = true;
        Some(body)
    }

    // ----- tracing -----

    fn trace_segment_in(&mut self, now: Instant, h: &Header, len: usize) {
        if self.config.trace {
            self.trace.push_back(TraceEvent::SegmentIn {
                at: now,
                header: *h,
                len,
            });
        }
    }

    fn trace_segment_out(&mut self, now: Instant, h: &Header, len: usize) {
        if self.config.trace {
            self.trace.push_back(TraceEvent::SegmentOut {
                at: now,
                header: *h,
                len,
            });
        }
    }

    /// Sets a timer's deadline (and traces it).
    fn arm(&mut self, timer: TimerKind, now: Instant, deadline: Instant) {
        let slot = match timer {
            TimerKind::Retransmit => &mut self.retransmit_deadline,
            TimerKind::DelayedAck => &mut self.delayed_ack_deadline,
            TimerKind::Persist => &mut self.persist_deadline,
            TimerKind::Keepalive => &mut self.keepalive_deadline,
            TimerKind::TimeWait => &mut self.time_wait_deadline,
            // Not armed: its deadline follows from the connection's state
            // (`loss_probe_deadline`).
            TimerKind::LossProbe => return,
        };
        *slot = Some(deadline);
        if self.config.trace {
            self.trace.push_back(TraceEvent::TimerArmed {
                at: now,
                timer,
                deadline,
            });
        }
    }

    fn trace_timer(&mut self, now: Instant, timer: TimerKind) {
        if self.config.trace {
            self.trace
                .push_back(TraceEvent::TimerFired { at: now, timer });
        }
    }

    fn trace_drop(&mut self, now: Instant, reason: &'static str) {
        if self.config.trace {
            self.trace
                .push_back(TraceEvent::Dropped { at: now, reason });
        }
    }

    fn trace_cwnd(&mut self, now: Instant) {
        if self.config.trace {
            self.trace.push_back(TraceEvent::CongestionWindow {
                at: now,
                cwnd: self.cc.window(),
                ssthresh: self.cc.ssthresh(),
            });
        }
    }

    /// The initial receive sequence number (for tests and traces).
    pub fn irs(&self) -> SeqNum {
        self.irs
    }

    pub fn iss(&self) -> SeqNum {
        self.iss
    }
}

impl Connection {
    /// For a listener: the SYN-ACK went out already (as a SYN cookie).
    pub(crate) fn mark_syn_ack_sent(&mut self, now: Instant) {
        let _ = self.next_segment(now, &mut Header::default());
        self.retransmit_deadline = None;
    }

    /// For a listener: what a connection that just closed still owes (its RST).
    pub(crate) fn poll_transmit_closed(&mut self) -> Option<Segment> {
        self.rst_owed.take().map(|header| Segment {
            header,
            payload: Vec::new(),
        })
    }
}
