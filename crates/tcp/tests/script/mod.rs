//! A packetdrill-style scripting layer over the sans-IO engine.
//!
//! A script is a timeline: the peer sends segments (`peer_sends`), the
//! application calls the socket API (`app_send`, `app_recv`, `app_close`,
//! ...), and every segment the engine emits must be matched, in order and
//! at the right instant, by an `expect`. Sequence numbers are relative to
//! each side's ISN, as packetdrill prints them: what the peer sends has
//! `seq` relative to the peer's ISN and `ack` relative to ours; what we
//! expect from the engine has `seq` relative to the engine's ISN (learned
//! from the first SYN it sends, as packetdrill does) and `ack` relative to
//! the peer's. Time is milliseconds since the script's start; the clock is
//! fake and only moves when the script says so (`at`, `expect_at`,
//! `expect_nothing_until`), running the engine's timers on the way.
//!
//! Failures print the expected and actual segments in packetdrill syntax,
//! with the whole exchange so far.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub use oxcat_tcp::congestion::Algorithm;
pub use oxcat_tcp::{
    CloseReason, Config, Connection, Event, Flags, Header, IsnGenerator, Listener, ListenerStats,
    Options, RecvError, SackBlocks, Segment, SendError, SeqNum, State, TimerKind, TraceEvent,
};

/// Which peer (4-tuple) a segment belongs to. Single-connection scripts use peer 0.
pub type PeerId = u32;

/// The peer's ISN unless a script picks another.
pub const PEER_ISN: u32 = 0x0100_0000;
/// The engine's ISN for active opens and `accept_syn` unless a script picks another.
pub const LOCAL_ISN: u32 = 0x0020_0000;

/// The bytes at relative sequence `rel` of a stream (both directions use it),
/// so payloads can be checked without spelling them out.
pub fn pattern(rel: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (rel.wrapping_add(i) % 251) as u8)
        .collect()
}

// ----- segments as scripts write them -----

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Exact bytes.
    Bytes(Vec<u8>),
    /// This many bytes: inbound, `pattern(seq, n)`; outbound, any content
    /// (the harness checks content against what the application sent).
    Len(usize),
    /// Outbound only: any length.
    Any,
}

/// A segment as a script writes it. For an expectation, `None` means "don't care".
#[derive(Clone, Debug)]
pub struct Seg {
    pub flags: Flags,
    /// Whether PSH must be set (expectations ignore PSH unless this is Some).
    pub psh: Option<bool>,
    pub seq: Option<u32>,
    pub ack: Option<u32>,
    pub win: Option<u16>,
    pub mss: Option<Option<u16>>,
    pub wscale: Option<Option<u8>>,
    pub sack_ok: Option<bool>,
    /// (TSval, TSecr); either may be None (don't care) in an expectation.
    pub ts: Option<Option<(Option<u32>, Option<u32>)>>,
    pub sack: Option<Vec<(u32, u32)>>,
    pub payload: Payload,
}

/// A segment with tcpdump's flag letters: "S", "S.", ".", "P.", "F.", "FP.", "R", "R.".
pub fn seg(flags: &str) -> Seg {
    let mut f = Flags::empty();
    let mut psh = None;
    for c in flags.chars() {
        match c {
            'S' => f |= Flags::SYN,
            'F' => f |= Flags::FIN,
            'R' => f |= Flags::RST,
            'P' => psh = Some(true),
            '.' => f |= Flags::ACK,
            other => panic!("unknown flag letter {other:?} in {flags:?}"),
        }
    }
    Seg {
        flags: f,
        psh,
        seq: None,
        ack: None,
        win: None,
        mss: None,
        wscale: None,
        sack_ok: None,
        ts: None,
        sack: None,
        payload: Payload::Len(0),
    }
}

/// `S seq:seq(0)`
pub fn syn(seq: u32) -> Seg {
    seg("S").seq(seq)
}
/// `S. seq:seq(0) ack ack`
pub fn syn_ack(seq: u32, ack: u32) -> Seg {
    seg("S.").seq(seq).ack(ack)
}
/// `. seq:seq(0) ack ack`
pub fn ack(seq: u32, ack: u32) -> Seg {
    seg(".").seq(seq).ack(ack)
}
/// `. seq:seq+len(len) ack ack` (PSH not checked)
pub fn data(seq: u32, ack: u32, len: usize) -> Seg {
    seg(".").seq(seq).ack(ack).len(len)
}
/// `F. seq:seq(0) ack ack`
pub fn fin(seq: u32, ack: u32) -> Seg {
    seg("F.").seq(seq).ack(ack)
}
/// `R seq:seq(0)`
pub fn rst(seq: u32) -> Seg {
    seg("R").seq(seq)
}
/// `R. seq:seq(0) ack ack`
pub fn rst_ack(seq: u32, ack: u32) -> Seg {
    seg("R.").seq(seq).ack(ack)
}

impl Seg {
    pub fn seq(mut self, v: u32) -> Self {
        self.seq = Some(v);
        self
    }
    pub fn ack(mut self, v: u32) -> Self {
        self.ack = Some(v);
        self
    }
    pub fn win(mut self, v: u16) -> Self {
        self.win = Some(v);
        self
    }
    pub fn mss(mut self, v: u16) -> Self {
        self.mss = Some(Some(v));
        self
    }
    pub fn no_mss(mut self) -> Self {
        self.mss = Some(None);
        self
    }
    pub fn wscale(mut self, v: u8) -> Self {
        self.wscale = Some(Some(v));
        self
    }
    pub fn no_wscale(mut self) -> Self {
        self.wscale = Some(None);
        self
    }
    pub fn sack_ok(mut self) -> Self {
        self.sack_ok = Some(true);
        self
    }
    pub fn no_sack_ok(mut self) -> Self {
        self.sack_ok = Some(false);
        self
    }
    /// Inbound: TSval absolute (the peer's clock), TSecr relative to the
    /// engine's first TSval. Outbound: TSval relative to the engine's first
    /// TSval (so: milliseconds since its first SYN), TSecr absolute.
    pub fn ts(mut self, val: u32, ecr: u32) -> Self {
        self.ts = Some(Some((Some(val), Some(ecr))));
        self
    }
    /// Outbound: a timestamp option with this TSecr, any TSval.
    pub fn tsecr(mut self, ecr: u32) -> Self {
        self.ts = Some(Some((None, Some(ecr))));
        self
    }
    /// Outbound: some timestamp option.
    pub fn has_ts(mut self) -> Self {
        self.ts = Some(Some((None, None)));
        self
    }
    pub fn no_ts(mut self) -> Self {
        self.ts = Some(None);
        self
    }
    /// SACK blocks `[l, r)`, relative to the ISN of the side whose data they cover.
    pub fn sack(mut self, blocks: &[(u32, u32)]) -> Self {
        self.sack = Some(blocks.to_vec());
        self
    }
    pub fn no_sack(mut self) -> Self {
        self.sack = Some(Vec::new());
        self
    }
    pub fn data(mut self, bytes: &[u8]) -> Self {
        self.payload = Payload::Bytes(bytes.to_vec());
        self
    }
    pub fn len(mut self, n: usize) -> Self {
        self.payload = Payload::Len(n);
        self
    }
    pub fn any_len(mut self) -> Self {
        self.payload = Payload::Any;
        self
    }
    pub fn psh(mut self) -> Self {
        self.psh = Some(true);
        self
    }

    fn payload_len(&self) -> Option<usize> {
        match &self.payload {
            Payload::Bytes(b) => Some(b.len()),
            Payload::Len(n) => Some(*n),
            Payload::Any => None,
        }
    }

    /// packetdrill's line for this (expected) segment; `*` marks don't-care fields.
    pub fn render(&self) -> String {
        let mut s = flag_letters(self.flags, self.psh == Some(true));
        let opt = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        let len = self
            .payload_len()
            .map_or("*".to_string(), |n| n.to_string());
        match (self.seq, self.payload_len()) {
            (Some(q), Some(n)) => {
                let _ = write!(s, " {q}:{}({n})", q.wrapping_add(n as u32));
            }
            (q, _) => {
                let _ = write!(s, " {}:*({len})", opt(q));
            }
        }
        if self.flags.ack() {
            let _ = write!(s, " ack {}", opt(self.ack));
        }
        let _ = write!(s, " win {}", opt(self.win.map(u32::from)));
        let mut opts = Vec::new();
        match self.mss {
            Some(Some(m)) => opts.push(format!("mss {m}")),
            Some(None) => opts.push("no mss".into()),
            None => {}
        }
        match self.sack_ok {
            Some(true) => opts.push("sackOK".into()),
            Some(false) => opts.push("no sackOK".into()),
            None => {}
        }
        match self.ts {
            Some(Some((v, e))) => opts.push(format!("TS val {} ecr {}", opt(v), opt(e))),
            Some(None) => opts.push("no TS".into()),
            None => {}
        }
        match self.wscale {
            Some(Some(w)) => opts.push(format!("wscale {w}")),
            Some(None) => opts.push("no wscale".into()),
            None => {}
        }
        match &self.sack {
            Some(b) if b.is_empty() => opts.push("no sack".into()),
            Some(b) => opts.push(format!(
                "sack {}",
                b.iter()
                    .map(|(l, r)| format!("{l}:{r}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            None => {}
        }
        if !opts.is_empty() {
            let _ = write!(s, " <{}>", opts.join(","));
        }
        s
    }
}

fn flag_letters(f: Flags, psh: bool) -> String {
    let mut s = String::new();
    if f.syn() {
        s.push('S');
    }
    if f.fin() {
        s.push('F');
    }
    if f.rst() {
        s.push('R');
    }
    if psh {
        s.push('P');
    }
    if f.ack() {
        s.push('.');
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

// ----- the script -----

#[derive(Clone, Debug, Default)]
struct PeerState {
    /// The engine's ISN for this peer (learned from its SYN or SYN-ACK).
    local_isn: Option<u32>,
    remote_isn: u32,
    /// The engine's first TSval for this peer.
    local_ts_base: Option<u32>,
    /// Everything the application sent, to check outbound payloads.
    sent: Vec<u8>,
    /// Relative sequence of the next byte the application reads.
    read_rel: u32,
}

struct Out {
    at: Duration,
    peer: PeerId,
    seg: Segment,
}

pub struct Script {
    pub t0: Instant,
    pub now: Instant,
    conns: BTreeMap<PeerId, Connection>,
    listener: Option<Listener<PeerId>>,
    peers: BTreeMap<PeerId, PeerState>,
    current: PeerId,
    outbox: VecDeque<Out>,
    log: Vec<String>,
}

/// A config without timestamps, SACK or window scaling: the plainest TCP.
pub fn plain() -> Config {
    Config {
        timestamps: false,
        sack: false,
        window_scaling: false,
        ..Config::default()
    }
}

impl Script {
    fn empty() -> Script {
        let t0 = Instant::now();
        Script {
            t0,
            now: t0,
            conns: BTreeMap::new(),
            listener: None,
            peers: BTreeMap::new(),
            current: 0,
            outbox: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// An active open at t=0 with the engine's ISN `iss`: its first output is the SYN.
    pub fn connect_with(config: Config, iss: u32, peer_isn: u32) -> Script {
        let mut s = Script::empty();
        s.peers.insert(
            0,
            PeerState {
                remote_isn: peer_isn,
                read_rel: 1,
                ..PeerState::default()
            },
        );
        s.log
            .push(format!("{:>9} app    connect() iss {iss}", "0.000"));
        let conn = Connection::connect(config, s.now, SeqNum(iss));
        s.conns.insert(0, conn);
        s.drain();
        s
    }

    pub fn connect(config: Config) -> Script {
        Script::connect_with(config, LOCAL_ISN, PEER_ISN)
    }

    /// A passive open at t=0 for `syn` (relative to `peer_isn`), engine ISN `iss`.
    #[track_caller]
    pub fn accept_syn_with(config: Config, iss: u32, peer_isn: u32, syn: Seg) -> Script {
        let mut s = Script::empty();
        s.peers.insert(
            0,
            PeerState {
                remote_isn: peer_isn,
                read_rel: 1,
                ..PeerState::default()
            },
        );
        let (h, payload) = s.inbound(&syn);
        s.log.push(format!(
            "{:>9} peer > {} (accept_syn, iss {iss})",
            "0.000",
            syn.render()
        ));
        let conn = Connection::accept_syn(config, s.now, SeqNum(iss), &h);
        assert!(payload.is_empty(), "accept_syn takes no payload");
        s.conns.insert(0, conn);
        s.drain();
        s
    }

    pub fn accept_syn(config: Config, syn: Seg) -> Script {
        Script::accept_syn_with(config, LOCAL_ISN, PEER_ISN, syn)
    }

    /// A listener at t=0 with this backlog and ISN seed.
    pub fn listen(config: Config, backlog: usize) -> Script {
        let mut s = Script::empty();
        s.listener = Some(Listener::new(
            config,
            backlog,
            IsnGenerator::new(7, s.t0),
            s.t0,
        ));
        s
    }

    // ----- who and when -----

    /// Later lines speak for this peer (the listener's 4-tuple key).
    pub fn peer(&mut self, id: PeerId) -> &mut Self {
        self.peers.entry(id).or_insert_with(|| PeerState {
            remote_isn: PEER_ISN,
            read_rel: 1,
            ..PeerState::default()
        });
        self.current = id;
        self
    }

    /// Sets the current peer's ISN (what relative sequence 0 means for its segments).
    pub fn peer_isn(&mut self, isn: u32) -> &mut Self {
        self.state_mut().remote_isn = isn;
        self
    }

    fn state_mut(&mut self) -> &mut PeerState {
        let id = self.current;
        self.peers.entry(id).or_insert_with(|| PeerState {
            remote_isn: PEER_ISN,
            read_rel: 1,
            ..PeerState::default()
        })
    }

    fn state(&self) -> PeerState {
        self.peers.get(&self.current).cloned().unwrap_or_default()
    }

    pub fn ms(&self) -> Duration {
        self.now - self.t0
    }

    fn stamp(&self) -> String {
        format!("{:>9.3}", self.ms().as_secs_f64())
    }

    /// Moves the clock to `ms` (since the start), running every timer due on the way.
    /// Every segment emitted before must have been expected.
    #[track_caller]
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.assert_outbox_empty("before the clock moved on");
        let target = self.t0 + Duration::from_millis(ms);
        assert!(
            target >= self.now,
            "script goes back in time: at({ms}) after {:?}",
            self.ms()
        );
        self.advance_to(target);
        self
    }

    /// `at(now + ms)`.
    #[track_caller]
    pub fn after(&mut self, ms: u64) -> &mut Self {
        let target = self.ms() + Duration::from_millis(ms);
        self.at(target.as_millis() as u64)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let c = self.conns.values().filter_map(|c| c.poll_timeout()).min();
        let l = self.listener.as_ref().and_then(|l| l.poll_timeout());
        [c, l].into_iter().flatten().min()
    }

    /// Runs the timers that are due at or before `target`, then sets the clock to `target`.
    fn advance_to(&mut self, target: Instant) {
        for _ in 0..100_000 {
            match self.next_deadline() {
                Some(d) if d <= target => {
                    self.now = self.now.max(d);
                    let now = self.now;
                    let stamp = self.stamp();
                    for (id, c) in self.conns.iter_mut() {
                        if c.poll_timeout().is_some_and(|t| t <= now) {
                            self.log
                                .push(format!("{stamp} timer  peer {id} (state {})", c.state()));
                            c.handle_timeout(now);
                        }
                    }
                    if let Some(l) = self.listener.as_mut() {
                        if l.poll_timeout().is_some_and(|t| t <= now) {
                            self.log.push(format!("{stamp} timer  listener"));
                            l.handle_timeout(now);
                        }
                    }
                    self.drain();
                    if self.next_deadline().is_some_and(|d| d <= now) {
                        // A timer that stays due after handle_timeout would spin forever.
                        let still: Vec<String> = self
                            .conns
                            .iter()
                            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
                            .map(|(id, c)| format!("peer {id} {:?}", c))
                            .collect();
                        if !still.is_empty() {
                            self.fail(format!(
                                "handle_timeout left a timer due at {:?}: {still:?}",
                                self.ms()
                            ));
                        }
                    }
                }
                _ => {
                    self.now = self.now.max(target);
                    return;
                }
            }
        }
        self.fail("timers kept firing: more than 100000 in one advance".into());
    }

    // ----- the engine's output -----

    fn drain(&mut self) {
        let at = self.ms();
        let stamp = self.stamp();
        let now = self.now;
        let ids: Vec<PeerId> = self.conns.keys().copied().collect();
        for id in ids {
            for _ in 0..10_000 {
                let Some(seg) = self.conns.get_mut(&id).and_then(|c| c.poll_transmit(now)) else {
                    break;
                };
                self.record_out(at, &stamp, id, seg);
            }
        }
        if self.listener.is_some() {
            for _ in 0..10_000 {
                let Some((id, seg)) = self.listener.as_mut().and_then(|l| l.poll_transmit(now))
                else {
                    break;
                };
                self.record_out(at, &stamp, id, seg);
            }
        }
    }

    fn record_out(&mut self, at: Duration, stamp: &str, id: PeerId, seg: Segment) {
        let st = self.peers.entry(id).or_insert_with(|| PeerState {
            remote_isn: PEER_ISN,
            read_rel: 1,
            ..PeerState::default()
        });
        if seg.header.flags.syn() {
            // packetdrill learns the engine's ISN from its SYN (or SYN-ACK).
            st.local_isn = Some(seg.header.seq.0);
            if let Some((v, _)) = seg.header.options.timestamps {
                if st.local_ts_base.is_none() {
                    st.local_ts_base = Some(v);
                }
            }
        }
        let line = format!("{stamp} engine < {} (peer {id})", render_actual(st, &seg));
        // Every byte of data the engine sends must be the application's byte at that offset.
        let mut corrupt = None;
        if !seg.payload.is_empty() {
            if let Some(isn) = st.local_isn {
                let rel = seg.header.seq.0.wrapping_sub(isn) as usize;
                let end = rel + seg.payload.len();
                let sent = &st.sent;
                if rel == 0 || end > sent.len() + 1 || sent[rel - 1..end - 1] != seg.payload[..] {
                    corrupt = Some(format!(
                        "engine sent bytes {rel}:{end} that differ from what the application sent ({} bytes so far)",
                        sent.len()
                    ));
                }
            }
        }
        self.log.push(line);
        if let Some(msg) = corrupt {
            self.fail(msg);
        }
        self.outbox.push_back(Out { at, peer: id, seg });
    }

    #[track_caller]
    fn assert_outbox_empty(&mut self, when: &str) {
        if !self.outbox.is_empty() {
            let mut msg = format!("unexpected segment(s) {when}:\n");
            for o in &self.outbox {
                let st = self.peers.get(&o.peer).cloned().unwrap_or_default();
                let _ = writeln!(
                    msg,
                    "  at {:?} to peer {}: {}",
                    o.at,
                    o.peer,
                    render_actual(&st, &o.seg)
                );
            }
            self.fail(msg);
        }
    }

    /// The next segment for the current peer must match `want` and have been sent now.
    #[track_caller]
    pub fn expect(&mut self, want: Seg) -> &mut Self {
        let ms = self.ms();
        self.expect_inner(want, Some(ms));
        self
    }

    /// Runs the clock (and timers) up to `ms`; the next segment for the current
    /// peer must match `want` and be sent exactly at `ms`.
    #[track_caller]
    pub fn expect_at(&mut self, ms: u64, want: Seg) -> &mut Self {
        let target = self.t0 + Duration::from_millis(ms);
        while !self.outbox.iter().any(|o| o.peer == self.current) {
            match self.next_deadline() {
                Some(d) if d <= target => self.advance_to(d),
                _ => break,
            }
        }
        if !self.outbox.iter().any(|o| o.peer == self.current) {
            self.advance_to(target);
        }
        self.expect_inner(want, Some(Duration::from_millis(ms)));
        self
    }

    /// Runs the clock until the engine sends something for the current peer (at
    /// most `limit_ms` from now); it must match `want`. Returns when it was sent (ms).
    #[track_caller]
    pub fn expect_next(&mut self, limit_ms: u64, want: Seg) -> u64 {
        let target = self.now + Duration::from_millis(limit_ms);
        while !self.outbox.iter().any(|o| o.peer == self.current) {
            match self.next_deadline() {
                Some(d) if d <= target => self.advance_to(d),
                _ => break,
            }
        }
        let at = self.expect_inner(want, None);
        at.as_millis() as u64
    }

    #[track_caller]
    fn expect_inner(&mut self, want: Seg, at: Option<Duration>) -> Duration {
        let Some(i) = self.outbox.iter().position(|o| o.peer == self.current) else {
            let msg = format!(
                "expected (peer {}) at {}: {}\n  actual: nothing sent (clock at {:?})",
                self.current,
                at.map_or("next".to_string(), |a| format!("{a:?}")),
                want.render(),
                self.ms()
            );
            self.fail(msg);
        };
        let out = self.outbox.remove(i).expect("index from position");
        let st = self.peers.get(&self.current).cloned().unwrap_or_default();
        let mismatch = compare(&st, &want, &out.seg);
        let late = at.filter(|a| *a != out.at);
        if mismatch.is_some() || late.is_some() {
            let mut msg = format!("segment mismatch (peer {})\n", self.current);
            let _ = writeln!(
                msg,
                "  expected at {}: {}",
                at.map_or("*".to_string(), |a| format!("{a:?}")),
                want.render()
            );
            let _ = writeln!(
                msg,
                "  actual   at {:?}: {}",
                out.at,
                render_actual(&st, &out.seg)
            );
            let _ = writeln!(msg, "  absolute: {:?}", out.seg);
            if let Some(m) = mismatch {
                let _ = writeln!(msg, "  differs in: {m}");
            }
            if let Some(a) = late {
                let _ = writeln!(msg, "  sent at {:?}, expected at {a:?}", out.at);
            }
            self.fail(msg);
        }
        out.at
    }

    /// Nothing is sent now.
    #[track_caller]
    pub fn expect_nothing(&mut self) -> &mut Self {
        self.assert_outbox_empty("(expected nothing)");
        self
    }

    /// Nothing is sent from now until `ms` (timers run); the clock ends at `ms`.
    #[track_caller]
    pub fn expect_nothing_until(&mut self, ms: u64) -> &mut Self {
        self.assert_outbox_empty("(expected nothing)");
        let target = self.t0 + Duration::from_millis(ms);
        self.advance_to(target);
        self.assert_outbox_empty(&format!("(expected nothing until {ms} ms)"));
        self
    }

    /// Drops whatever the engine has sent (for setup code that does not care).
    pub fn discard_output(&mut self) -> &mut Self {
        self.outbox.clear();
        self
    }

    /// Everything sent so far for the current peer, taken out of the outbox.
    pub fn take_output(&mut self) -> Vec<Segment> {
        let cur = self.current;
        let (mine, rest): (Vec<Out>, Vec<Out>) = self.outbox.drain(..).partition(|o| o.peer == cur);
        self.outbox = rest.into();
        mine.into_iter().map(|o| o.seg).collect()
    }

    // ----- the peer's input -----

    fn inbound(&self, s: &Seg) -> (Header, Vec<u8>) {
        let st = self.state();
        let seq_rel = s.seq.expect("an inbound segment needs .seq()");
        let mut flags = s.flags;
        if s.psh == Some(true) {
            flags |= Flags::PSH;
        }
        let ack = if flags.ack() {
            let rel = s.ack.expect("an inbound ACK needs .ack()");
            // Before the engine has shown its ISN, an ACK number is absolute.
            let isn = st.local_isn.unwrap_or(0);
            SeqNum(isn.wrapping_add(rel))
        } else {
            SeqNum(s.ack.unwrap_or(0))
        };
        let mut options = Options {
            mss: s.mss.flatten(),
            window_scale: s.wscale.flatten(),
            sack_permitted: s.sack_ok == Some(true),
            ..Options::default()
        };
        if let Some(Some((v, e))) = s.ts {
            let base = st.local_ts_base.unwrap_or(0);
            options.timestamps = Some((v.unwrap_or(0), e.map_or(0, |e| base.wrapping_add(e))));
        }
        if let Some(blocks) = &s.sack {
            let isn = st.local_isn.unwrap_or(0);
            let mut b = SackBlocks::new();
            for &(l, r) in blocks {
                b.push(SeqNum(isn.wrapping_add(l)), SeqNum(isn.wrapping_add(r)));
            }
            options.sack = b;
        }
        let header = Header {
            seq: SeqNum(st.remote_isn.wrapping_add(seq_rel)),
            ack,
            flags,
            window: s.win.unwrap_or(65535),
            options,
        };
        let payload = match &s.payload {
            Payload::Bytes(b) => b.clone(),
            Payload::Len(n) => pattern(seq_rel, *n),
            Payload::Any => panic!("an inbound segment needs a definite payload"),
        };
        (header, payload)
    }

    /// The peer sends `s` now (to its connection if the application has one for
    /// this peer, else to the listener).
    #[track_caller]
    pub fn peer_sends(&mut self, s: Seg) -> &mut Self {
        let (h, payload) = self.inbound(&s);
        let line = format!(
            "{} peer > {} (peer {})",
            self.stamp(),
            s.render(),
            self.current
        );
        self.log.push(line);
        let now = self.now;
        if let Some(c) = self.conns.get_mut(&self.current) {
            c.handle_segment(now, &h, &payload);
        } else if let Some(l) = self.listener.as_mut() {
            l.handle_segment(now, self.current, &h, &payload);
        } else {
            self.fail(format!("no connection for peer {}", self.current));
        }
        self.drain();
        self
    }

    // ----- the application -----

    fn conn_mut(&mut self) -> &mut Connection {
        let id = self.current;
        match self.conns.get_mut(&id) {
            Some(c) => c,
            None => panic!("no connection for peer {id} (not accepted yet?)"),
        }
    }

    /// The current peer's connection.
    pub fn conn(&mut self) -> &mut Connection {
        self.conn_mut()
    }

    pub fn listener(&mut self) -> &mut Listener<PeerId> {
        self.listener.as_mut().expect("not a listener script")
    }

    fn app_log(&mut self, what: String) {
        let line = format!("{} app    {what} (peer {})", self.stamp(), self.current);
        self.log.push(line);
    }

    /// The application writes `bytes`; all of them must be taken.
    #[track_caller]
    pub fn app_send(&mut self, bytes: &[u8]) -> &mut Self {
        self.app_log(format!("send({} bytes)", bytes.len()));
        let r = self.conn_mut().send(bytes);
        match r {
            Ok(n) if n == bytes.len() => {}
            other => self.fail(format!("send({} bytes) returned {other:?}", bytes.len())),
        }
        self.state_mut().sent.extend_from_slice(bytes);
        self.drain();
        self
    }

    /// The application writes `n` bytes of the stream pattern.
    #[track_caller]
    pub fn app_send_n(&mut self, n: usize) -> &mut Self {
        let rel = self.state().sent.len() as u32 + 1;
        let bytes = pattern(rel, n);
        self.app_send(&bytes)
    }

    /// The application tries to write `n` pattern bytes; returns what `send` said.
    pub fn app_try_send_n(&mut self, n: usize) -> Result<usize, SendError> {
        let rel = self.state().sent.len() as u32 + 1;
        let bytes = pattern(rel, n);
        self.app_log(format!("send({n} bytes) (may be short)"));
        let r = self.conn_mut().send(&bytes);
        if let Ok(k) = r {
            self.state_mut().sent.extend_from_slice(&bytes[..k]);
        }
        self.drain();
        r
    }

    /// The application reads and must get exactly `want`.
    #[track_caller]
    pub fn app_recv(&mut self, want: &[u8]) -> &mut Self {
        self.app_log(format!("recv() expecting {} bytes", want.len()));
        let mut buf = vec![0u8; want.len()];
        let r = self.conn_mut().recv(&mut buf);
        match r {
            Ok(n) if buf[..n] == *want => {}
            Ok(n) => self.fail(format!("recv: expected {:?}, got {:?}", want, &buf[..n])),
            Err(e) => self.fail(format!("recv: expected {} bytes, got {e:?}", want.len())),
        }
        self.state_mut().read_rel += want.len() as u32;
        self.drain();
        self
    }

    /// The application reads `n` bytes, which must be the peer's pattern bytes.
    #[track_caller]
    pub fn app_recv_n(&mut self, n: usize) -> &mut Self {
        let rel = self.state().read_rel;
        let want = pattern(rel, n);
        self.app_recv(&want)
    }

    /// `recv` must fail with `err`.
    #[track_caller]
    pub fn app_recv_err(&mut self, err: RecvError) -> &mut Self {
        self.app_log(format!("recv() expecting {err:?}"));
        let mut buf = [0u8; 64];
        let r = self.conn_mut().recv(&mut buf);
        if r != Err(err) {
            self.fail(format!("recv: expected Err({err:?}), got {r:?}"));
        }
        self.drain();
        self
    }

    #[track_caller]
    pub fn app_close(&mut self) -> &mut Self {
        self.app_log("close()".into());
        let now = self.now;
        self.conn_mut().close(now);
        self.drain();
        self
    }

    #[track_caller]
    pub fn app_shutdown(&mut self) -> &mut Self {
        self.app_log("shutdown_write()".into());
        let now = self.now;
        self.conn_mut().shutdown_write(now);
        self.drain();
        self
    }

    #[track_caller]
    pub fn app_abort(&mut self) -> &mut Self {
        self.app_log("abort()".into());
        let now = self.now;
        self.conn_mut().abort(now);
        self.drain();
        self
    }

    /// `accept()` on the listener must return the current peer's connection.
    #[track_caller]
    pub fn app_accept(&mut self) -> &mut Self {
        self.app_log("accept()".into());
        let got = self.listener().accept();
        match got {
            Some((id, c)) if id == self.current => {
                self.conns.insert(id, c);
            }
            Some((id, _)) => self.fail(format!(
                "accept returned peer {id}, expected peer {}",
                self.current
            )),
            None => self.fail(format!(
                "accept returned nothing, expected peer {}",
                self.current
            )),
        }
        self.drain();
        self
    }

    /// `accept()` must return nothing.
    #[track_caller]
    pub fn app_accept_none(&mut self) -> &mut Self {
        self.app_log("accept() expecting nothing".into());
        if let Some((id, _)) = self.listener().accept() {
            self.fail(format!("accept returned peer {id}, expected nothing"));
        }
        self
    }

    // ----- checks -----

    /// The header the peer would send for `s` (to ask the engine questions about it).
    pub fn header_of(&self, s: Seg) -> Header {
        self.inbound(&s).0
    }

    /// (cwnd, ssthresh) each time the congestion controller changed its mind
    /// (needs `config.trace`); other trace events are dropped.
    pub fn cwnd_trace(&mut self) -> Vec<(usize, usize)> {
        let c = self.conn_mut();
        std::iter::from_fn(|| c.poll_trace())
            .filter_map(|e| match e {
                TraceEvent::CongestionWindow { cwnd, ssthresh, .. } => Some((cwnd, ssthresh)),
                _ => None,
            })
            .collect()
    }

    #[track_caller]
    pub fn expect_state(&mut self, want: State) -> &mut Self {
        let got = self.conn_mut().state();
        if got != want {
            self.fail(format!("state: expected {want}, got {got}"));
        }
        self
    }

    #[track_caller]
    pub fn expect_close_reason(&mut self, want: Option<CloseReason>) -> &mut Self {
        let got = self.conn_mut().close_reason();
        if got != want {
            self.fail(format!("close reason: expected {want:?}, got {got:?}"));
        }
        self
    }

    /// All events since the last check, in order.
    pub fn events(&mut self) -> Vec<Event> {
        let c = self.conn_mut();
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// The events since the last check must be exactly `want`.
    #[track_caller]
    pub fn expect_events(&mut self, want: &[Event]) -> &mut Self {
        let got = self.events();
        if got != want {
            self.fail(format!("events: expected {want:?}, got {got:?}"));
        }
        self
    }

    /// The events since the last check must include `want`.
    #[track_caller]
    pub fn expect_event(&mut self, want: Event) -> &mut Self {
        let got = self.events();
        if !got.contains(&want) {
            self.fail(format!("events: expected {want:?} among {got:?}"));
        }
        self
    }

    /// Checks a property of the connection, with a message.
    #[track_caller]
    pub fn check(&mut self, what: &str, ok: impl FnOnce(&Connection) -> bool) -> &mut Self {
        let good = ok(self.conn_mut());
        if !good {
            let dbg = format!("{:?}", self.conn_mut());
            self.fail(format!("check failed: {what} ({dbg})"));
        }
        self
    }

    /// Fails with the message and the exchange so far.
    #[track_caller]
    pub fn fail(&self, msg: String) -> ! {
        let mut out = msg;
        out.push_str("\n--- script so far (time in s) ---\n");
        for l in &self.log {
            out.push_str(l);
            out.push('\n');
        }
        panic!("{out}");
    }

    /// The last check of every script: nothing unexpected went out.
    #[track_caller]
    pub fn done(&mut self) {
        self.assert_outbox_empty("at the end of the script");
    }
}

/// An actual segment in packetdrill syntax, relative to the peer's ISNs.
fn render_actual(st: &PeerState, seg: &Segment) -> String {
    let h = &seg.header;
    let local = st.local_isn.unwrap_or(0);
    let rel_seq = h.seq.0.wrapping_sub(local);
    let mut s = flag_letters(h.flags, h.flags.psh());
    let len = seg.payload.len();
    let _ = write!(s, " {rel_seq}:{}({len})", rel_seq.wrapping_add(len as u32));
    if h.flags.ack() {
        let _ = write!(s, " ack {}", h.ack.0.wrapping_sub(st.remote_isn));
    }
    let _ = write!(s, " win {}", h.window);
    let o = &h.options;
    let mut opts = Vec::new();
    if let Some(m) = o.mss {
        opts.push(format!("mss {m}"));
    }
    if o.sack_permitted {
        opts.push("sackOK".into());
    }
    if let Some((v, e)) = o.timestamps {
        let base = st.local_ts_base.unwrap_or(v);
        opts.push(format!("TS val {} ecr {e}", v.wrapping_sub(base)));
    }
    if let Some(w) = o.window_scale {
        opts.push(format!("wscale {w}"));
    }
    if !o.sack.is_empty() {
        let blocks: Vec<String> = o
            .sack
            .as_slice()
            .iter()
            .map(|(l, r)| {
                format!(
                    "{}:{}",
                    l.0.wrapping_sub(st.remote_isn),
                    r.0.wrapping_sub(st.remote_isn)
                )
            })
            .collect();
        opts.push(format!("sack {}", blocks.join(" ")));
    }
    if !opts.is_empty() {
        let _ = write!(s, " <{}>", opts.join(","));
    }
    s
}

/// Where `actual` differs from `want`, if anywhere.
fn compare(st: &PeerState, want: &Seg, actual: &Segment) -> Option<String> {
    let h = &actual.header;
    let mut diffs = Vec::new();
    let strip = |f: Flags| Flags(f.0 & !Flags::PSH.0);
    if strip(h.flags) != strip(want.flags) {
        diffs.push(format!("flags {:?} != {:?}", h.flags, want.flags));
    }
    if let Some(p) = want.psh {
        if h.flags.psh() != p {
            diffs.push("PSH".into());
        }
    }
    let local = st.local_isn.unwrap_or(0);
    if let Some(q) = want.seq {
        if h.seq.0.wrapping_sub(local) != q {
            diffs.push("seq".into());
        }
    }
    if let Some(a) = want.ack {
        if h.ack.0.wrapping_sub(st.remote_isn) != a || !h.flags.ack() {
            diffs.push("ack".into());
        }
    }
    if let Some(w) = want.win {
        if h.window != w {
            diffs.push("win".into());
        }
    }
    if let Some(m) = want.mss {
        if h.options.mss != m {
            diffs.push("mss".into());
        }
    }
    if let Some(w) = want.wscale {
        if h.options.window_scale != w {
            diffs.push("wscale".into());
        }
    }
    if let Some(p) = want.sack_ok {
        if h.options.sack_permitted != p {
            diffs.push("sackOK".into());
        }
    }
    if let Some(t) = want.ts {
        match (t, h.options.timestamps) {
            (None, None) => {}
            (Some((v, e)), Some((av, ae))) => {
                let base = st.local_ts_base.unwrap_or(av);
                if v.is_some_and(|v| av.wrapping_sub(base) != v) {
                    diffs.push("TS val".into());
                }
                if e.is_some_and(|e| ae != e) {
                    diffs.push("TS ecr".into());
                }
            }
            _ => diffs.push("TS option presence".into()),
        }
    }
    if let Some(blocks) = &want.sack {
        let got: Vec<(u32, u32)> = h
            .options
            .sack
            .as_slice()
            .iter()
            .map(|(l, r)| {
                (
                    l.0.wrapping_sub(st.remote_isn),
                    r.0.wrapping_sub(st.remote_isn),
                )
            })
            .collect();
        if &got != blocks {
            diffs.push("SACK blocks".into());
        }
    }
    match &want.payload {
        Payload::Bytes(b) if actual.payload != *b => diffs.push("payload bytes".into()),
        Payload::Len(n) if actual.payload.len() != *n => diffs.push("payload length".into()),
        _ => {}
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}
