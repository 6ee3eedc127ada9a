//! A listening socket's half of TCP: the SYN queue of half-open
//! connections and the bounded accept queue, with Linux's behaviour when
//! they fill (the notes: "If we don't accept the ready connections, new
//! connections would be dropped").
//!
//! The owner demultiplexes: segments for a 4-tuple with a connection of its
//! own go to that connection; everything else for the listening port comes
//! here with its key (the 4-tuple, any `Hash + Eq + Copy` type).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use indexmap::IndexMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::connection::Connection;
use crate::event::TraceEvent;
use crate::isn::IsnGenerator;
use crate::segment::{seq_len, Flags, Header, Options, Segment};
use crate::seq::SeqNum;
use crate::state::State;

/// Counters for what the listener dropped or refused (Linux's
/// ListenOverflows / ListenDrops, and SYN cookies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// SYNs dropped because the accept queue was full.
    pub syns_dropped_accept_full: u64,
    /// SYNs answered with a cookie because the SYN queue was full.
    pub syn_cookies_sent: u64,
    /// Connections completed from a valid cookie.
    pub syn_cookies_accepted: u64,
    /// Handshake-completing ACKs dropped because the accept queue was full.
    pub acks_dropped_accept_full: u64,
    /// Segments answered with RST (no connection, not a SYN).
    pub resets_sent: u64,
    /// Half-open connections that gave up (no final ACK).
    pub handshakes_timed_out: u64,
}

pub struct Listener<K> {
    config: Arc<Config>,
    backlog: usize,
    syn_queue_max: usize,
    /// Half-open connections in an IndexMap: its order depends only on what
    /// happened (removal swaps the last entry in, O(1)), so runs are
    /// reproducible, unlike a HashMap's.
    // (Boxed: a connection is about 1 KB, and the queues move their
    // entries around: into the map, out of it by swap_remove, into the
    // accept queue. A handshake moved it some ten times.)
    // foldhash: seeded at random per map, as SipHash is, at a fraction of
    // its cost; the queue is bounded anyway (`syn_queue_max`).
    syn_queue: IndexMap<K, Box<Connection>, foldhash::fast::RandomState>,
    accept_queue: VecDeque<(K, Box<Connection>)>,
    transmits: VecDeque<(K, Segment)>,
    isn: IsnGenerator,
    stats: ListenerStats,
    /// The epoch of the cookie clock (counter of 64 s periods).
    cookie_epoch: Instant,
    trace: VecDeque<TraceEvent>,
    /// Connections that may have something to send (duplicates allowed):
    /// `poll_transmit` visits these, not every half-open connection.
    pending: Vec<K>,
    /// Connections' deadlines, earliest first; stale entries are skipped when
    /// they come up, so `poll_timeout` is a peek, not a walk.
    timers: BinaryHeap<Reverse<(Instant, K)>>,
}

/// SYN cookies: the MSS values a cookie can encode (as Linux's table).
const COOKIE_MSS: [u16; 4] = [536, 1300, 1440, 1460];
/// A cookie is valid for the current and previous 64-second period.
const COOKIE_PERIOD: Duration = Duration::from_secs(64);

impl<K: Hash + Eq + Copy + Ord> Listener<K> {
    /// `backlog` bounds the accept queue (Linux: `listen(fd, backlog)`, the
    /// queue holds backlog + 1); the SYN queue holds at most
    /// `max(backlog, 8) * 2` half-open connections before cookies take over.
    pub fn new(
        config: impl Into<Arc<Config>>,
        backlog: usize,
        isn: IsnGenerator,
        now: Instant,
    ) -> Self {
        Listener {
            config: config.into(),
            backlog,
            syn_queue_max: backlog.max(8) * 2,
            syn_queue: IndexMap::default(),
            accept_queue: VecDeque::new(),
            transmits: VecDeque::new(),
            isn,
            stats: ListenerStats::default(),
            cookie_epoch: now,
            trace: VecDeque::new(),
            pending: Vec::new(),
            timers: BinaryHeap::new(),
        }
    }

    fn note_drop(&mut self, now: Instant, what: &'static str) {
        if self.config.trace {
            self.trace
                .push_back(TraceEvent::QueueDrop { at: now, what });
        }
    }

    /// Queue events (drops, cookies), when `config.trace` is on.
    pub fn poll_trace(&mut self) -> Option<TraceEvent> {
        self.trace.pop_front()
    }

    /// Every trace event waiting here: the listener's own (key None), then
    /// those of its half-open and not yet accepted connections.
    pub fn drain_trace(&mut self, mut f: impl FnMut(Option<K>, TraceEvent)) {
        while let Some(e) = self.trace.pop_front() {
            f(None, e);
        }
        for (k, c) in self.syn_queue.iter_mut() {
            while let Some(e) = c.poll_trace() {
                f(Some(*k), e);
            }
        }
        for (k, c) in self.accept_queue.iter_mut() {
            while let Some(e) = c.poll_trace() {
                f(Some(*k), e);
            }
        }
    }

    fn note_queued(&mut self, now: Instant) {
        if self.config.trace {
            self.trace.push_back(TraceEvent::Queued {
                at: now,
                len: self.accept_queue.len(),
                backlog: self.backlog,
            });
        }
    }

    pub fn stats(&self) -> ListenerStats {
        self.stats
    }

    /// Half-open connections (SYN-RECEIVED).
    pub fn syn_queue_len(&self) -> usize {
        self.syn_queue.len()
    }

    /// Established connections waiting for `accept`.
    pub fn accept_queue_len(&self) -> usize {
        self.accept_queue.len()
    }

    fn accept_queue_full(&self) -> bool {
        // Linux: sk_acceptq_is_full() is `len > backlog`.
        self.accept_queue.len() > self.backlog
    }

    /// The next established connection, as `accept` returns it.
    pub fn accept(&mut self) -> Option<(K, Connection)> {
        self.accept_boxed().map(|(k, c)| (k, *c))
    }

    /// `accept`, the connection left in the box it waited in (no copy of
    /// its kilobyte, no new allocation for a caller that keeps it boxed).
    pub fn accept_boxed(&mut self) -> Option<(K, Box<Connection>)> {
        self.accept_queue.pop_front()
    }

    /// Whether a connection for `key` is still in the handshake here.
    pub fn has_half_open(&self, key: &K) -> bool {
        self.syn_queue.contains_key(key)
    }

    /// A segment for the listening port from `key`, with no connection of its own.
    pub fn handle_segment(&mut self, now: Instant, key: K, h: &Header, payload: &[u8]) {
        if let Some(conn) = self.syn_queue.get_mut(&key) {
            // Linux (tcp_check_req): a final ACK when the accept queue is full is
            // dropped; the entry stays half-open and its SYN-ACK is resent.
            // Any segment with ACK can complete the handshake (a SYN,ACK at
            // the peer's ISN too, as in a simultaneous open), so all of
            // them wait while the queue is full.
            let completes = h.flags.ack() && !h.flags.rst();
            if completes && self.accept_queue.len() > self.backlog {
                self.stats.acks_dropped_accept_full += 1;
                self.note_drop(now, "final ACK dropped: accept queue full");
                return;
            }
            conn.handle_segment(now, h, payload);
            self.settle(now, key);
            self.schedule(key);
            return;
        }
        // Established connections waiting in the accept queue are full
        // connections (as in Linux): they take data, ACK it, and may close.
        if let Some((_, conn)) = self.accept_queue.iter_mut().find(|(k, _)| *k == key) {
            conn.handle_segment(now, h, payload);
            self.schedule(key);
            return;
        }
        if h.flags.rst() {
            return; // §3.10.7.2: an incoming RST in LISTEN is ignored
        }
        if h.flags.ack() {
            if let Some(conn) = self.cookie_connection(now, key, h, payload) {
                self.accept_queue.push_back((key, Box::new(conn)));
                self.note_queued(now);
                self.schedule(key);
                return;
            }
            // §3.10.7.2: an ACK in LISTEN gets <SEQ=SEG.ACK><CTL=RST>.
            self.reset(key, h.ack, None);
            return;
        }
        if !h.flags.syn() {
            return;
        }
        if self.accept_queue_full() {
            // Linux drops a SYN while the accept queue is full; the client retries.
            self.stats.syns_dropped_accept_full += 1;
            self.note_drop(now, "SYN dropped: accept queue full");
            return;
        }
        if self.syn_queue.len() >= self.syn_queue_max {
            // RFC 4987 §3.6: SYN cookies, no state kept until the ACK returns.
            self.note_drop(now, "SYN queue full: answered with a SYN cookie");
            self.send_cookie(now, key, h);
            return;
        }
        let iss = self.isn.isn(now, &key);
        let mut conn = Connection::accept_syn_boxed(self.config.clone(), now, iss, h);
        if !payload.is_empty() {
            // Data on a SYN is not taken (no TFO); the peer resends it.
            let _ = seq_len(h, payload.len());
        }
        if let Some(seg) = conn.poll_transmit(now) {
            self.transmits.push_back((key, seg));
        }
        self.syn_queue.insert(key, conn);
        self.schedule(key);
    }

    fn reset(&mut self, key: K, seq: SeqNum, ack: Option<SeqNum>) {
        let flags = if ack.is_some() {
            Flags::RST | Flags::ACK
        } else {
            Flags::RST
        };
        let header = Header {
            seq,
            ack: ack.unwrap_or(SeqNum(0)),
            flags,
            window: 0,
            options: Options::default(),
        };
        self.transmits.push_back((
            key,
            Segment {
                header,
                payload: Vec::new(),
            },
        ));
        self.stats.resets_sent += 1;
    }

    /// Moves a connection along after it handled a segment or a timeout.
    fn settle(&mut self, now: Instant, key: K) {
        let Some(conn) = self.syn_queue.get(&key) else {
            return;
        };
        match conn.state() {
            State::SynReceived => {}
            State::Closed => {
                if let Some(mut c) = self.syn_queue.swap_remove(&key) {
                    if c.close_reason() == Some(crate::event::CloseReason::TimedOut) {
                        self.stats.handshakes_timed_out += 1;
                    }
                    // A RST it owes still goes out.
                    while let Some(seg) = c.poll_transmit_closed() {
                        self.transmits.push_back((key, seg));
                    }
                }
            }
            _ => {
                if let Some(c) = self.syn_queue.swap_remove(&key) {
                    self.accept_queue.push_back((key, c));
                    self.note_queued(now);
                }
            }
        }
    }

    fn conn_mut(&mut self, key: &K) -> Option<&mut Connection> {
        if let Some(c) = self.syn_queue.get_mut(key) {
            return Some(&mut **c);
        }
        self.accept_queue
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, c)| &mut **c)
    }

    /// After anything happened to `key`'s connection: it may owe segments,
    /// and its deadline may have moved.
    fn schedule(&mut self, key: K) {
        self.pending.push(key);
        if let Some(t) = self.conn_mut(&key).and_then(|c| c.poll_timeout()) {
            self.timers.push(Reverse((t, key)));
        }
    }

    pub fn poll_transmit(&mut self, now: Instant) -> Option<(K, Segment)> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        while let Some(&key) = self.pending.last() {
            let seg = self.conn_mut(&key).and_then(|c| c.poll_transmit(now));
            match seg {
                Some(seg) => {
                    // Sending may have armed a timer.
                    if let Some(t) = self.conn_mut(&key).and_then(|c| c.poll_timeout()) {
                        self.timers.push(Reverse((t, key)));
                    }
                    return Some((key, seg));
                }
                None => {
                    self.pending.pop();
                }
            }
        }
        None
    }

    /// The earliest deadline (possibly a stale one, which only means an early call).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((t, key))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conn_mut(&key) else {
                continue; // accepted or gone: a stale entry
            };
            match conn.poll_timeout() {
                Some(d) if d <= now => {
                    conn.handle_timeout(now);
                    self.settle(now, key);
                    self.schedule(key);
                }
                Some(d) => self.timers.push(Reverse((d, key))),
                None => {}
            }
        }
    }

    // ----- SYN cookies (RFC 4987 §3.6) -----

    fn cookie_counter(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.cookie_epoch).as_secs() / COOKIE_PERIOD.as_secs()
    }

    /// ISN = hash(key, counter, client ISN) with the MSS index in the low 2 bits.
    fn cookie(&self, key: &K, counter: u64, client_isn: SeqNum, mss_index: u32) -> SeqNum {
        let h = self
            .isn
            .keyed_hash(key, counter ^ ((client_isn.0 as u64) << 8));
        SeqNum((h & !0b11) | mss_index)
    }

    fn send_cookie(&mut self, now: Instant, key: K, syn: &Header) {
        let peer_mss = syn.options.mss.unwrap_or(536);
        let mss_index = COOKIE_MSS.iter().rposition(|&m| m <= peer_mss).unwrap_or(0) as u32;
        let iss = self.cookie(&key, self.cookie_counter(now), syn.seq, mss_index);
        let header = Header {
            seq: iss,
            ack: syn.seq + 1u32,
            flags: Flags::SYN | Flags::ACK,
            window: self.config.recv_buffer.min(65535) as u16,
            // A cookie carries only the MSS: the other options need state (as Linux without timestamps).
            options: Options {
                mss: Some(self.config.mss),
                ..Options::default()
            },
        };
        self.transmits.push_back((
            key,
            Segment {
                header,
                payload: Vec::new(),
            },
        ));
        self.stats.syn_cookies_sent += 1;
    }

    fn cookie_connection(
        &mut self,
        now: Instant,
        key: K,
        h: &Header,
        payload: &[u8],
    ) -> Option<Connection> {
        if self.stats.syn_cookies_sent == 0 || self.accept_queue_full() {
            return None;
        }
        let iss = SeqNum(h.ack.0.wrapping_sub(1));
        let client_isn = SeqNum(h.seq.0.wrapping_sub(1));
        let mss_index = iss.0 & 0b11;
        let counter = self.cookie_counter(now);
        let valid = [counter, counter.wrapping_sub(1)]
            .iter()
            .any(|&c| self.cookie(&key, c, client_isn, mss_index) == iss);
        if !valid {
            return None;
        }
        self.stats.syn_cookies_accepted += 1;
        // Rebuild the SYN the cookie stands for, then let the connection take the ACK.
        let syn = Header {
            seq: client_isn,
            ack: SeqNum(0),
            flags: Flags::SYN,
            window: h.window,
            options: Options {
                mss: Some(COOKIE_MSS[mss_index as usize]),
                ..Options::default()
            },
        };
        let mut conn = Connection::accept_syn(self.config.clone(), now, iss, &syn);
        conn.mark_syn_ack_sent(now);
        conn.handle_segment(now, h, payload);
        (conn.state() != State::SynReceived && conn.state() != State::Closed).then_some(conn)
    }
}
