//! Packetdrill-style scripts for the TCP engine: each test is a timeline of
//! segments in and out, application calls and checks, against a fake clock.
//! See `script/mod.rs` for the language. Relative sequence numbers: what the
//! peer sends is relative to the peer's ISN (`seq`) and ours (`ack`); what
//! we expect is relative to the engine's ISN (`seq`) and the peer's (`ack`).

mod script;

use std::time::Duration;

use script::*;

// ----- common openings -----

/// The window scale shift the default config offers.
fn default_shift() -> u8 {
    Config::default().recv_window_shift()
}

/// The window field of the default config's first ACK after the SYN: its
/// starting receive buffer, scaled.
fn default_first_window() -> u16 {
    let c = Config::default();
    ((c.recv_buffer_initial.min(c.recv_buffer)) >> c.recv_window_shift()).min(65535) as u16
}

fn newreno() -> Config {
    Config {
        congestion: Algorithm::NewReno,
        ..plain()
    }
}

/// Active open: SYN at 0, the peer's `synack` at 100 ms, our ACK. The
/// handshake's RTT sample (100 ms) makes the RTO 300 ms (RFC 6298 §2.2).
fn established_with(config: Config, synack: Seg) -> Script {
    let mut s = Script::connect(config);
    s.expect(seg("S").seq(0));
    s.at(100).peer_sends(synack);
    s.expect(ack(1, 1));
    s.expect_events(&[Event::Connected]);
    s
}

/// Active open against a plain peer with MSS 1000 and a 65535-byte window.
fn established(config: Config) -> Script {
    established_with(config, syn_ack(0, 1).mss(1000))
}

/// Active open with SACK negotiated (no timestamps, no window scaling), MSS 1000.
fn established_sack(congestion: Algorithm) -> Script {
    let config = Config {
        timestamps: false,
        window_scaling: false,
        congestion,
        ..Config::default()
    };
    established_with(config, syn_ack(0, 1).mss(1000).sack_ok())
}

/// Active open with timestamps negotiated (the peer's clock starts at 500), MSS 1000.
fn established_ts() -> Script {
    let config = Config {
        sack: false,
        window_scaling: false,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).ts(0, 0));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000).ts(500, 0));
    s.expect(ack(1, 1).ts(100, 500));
    s.expect_events(&[Event::Connected]);
    s
}

/// Passive open through `accept_syn`: the peer's SYN (MSS 1000) at 0, our
/// SYN-ACK, the peer's ACK at 100 ms.
fn accepted(config: Config) -> Script {
    let mut s = Script::accept_syn(config, syn(0).mss(1000));
    s.expect(syn_ack(0, 1).mss(1460));
    s.at(100).peer_sends(ack(1, 1));
    s.expect_state(State::Established);
    s.expect_events(&[Event::Connected]);
    s
}

/// A listener with `backlog`, and peer `id` completes a handshake at `ms` (SYN) and `ms + 10` (ACK).
fn handshake_with_listener(s: &mut Script, id: PeerId, ms: u64) {
    s.peer(id).at(ms).peer_sends(syn(0).mss(1460));
    s.expect(syn_ack(0, 1).mss(1460));
    s.at(ms + 10).peer_sends(ack(1, 1));
}

// ===================================================================
// Opening: active
// ===================================================================

/// RFC 9293 §3.10.1 (OPEN, active): a SYN with our ISN; RFC 7323 §2.2 the SYN's
/// window is never scaled and carries the shift we offer; RFC 2018 §2 sackOK;
/// RFC 7323 §3.2 TSecr is zero in a SYN; RFC 9293 §3.7.1 MSS option.
#[test]
fn active_open_sends_syn_with_options() {
    let mut s = Script::connect(Config::default());
    s.expect(
        syn(0)
            .win(65535)
            .mss(1460)
            .sack_ok()
            .ts(0, 0)
            .wscale(default_shift())
            .len(0),
    );
    s.expect_state(State::SynSent);
    s.done();
}

/// RFC 9293 §3.10.7.3 (SYN-SENT, SYN with acceptable ACK): ESTABLISHED and
/// ACK <SEQ=SND.NXT><ACK=RCV.NXT>; RFC 7323 §2.2/§2.3 our window is scaled
/// from now on (the receive buffer >> our shift), §3.2 TSecr echoes the peer's TSval.
#[test]
fn active_open_completes_with_all_options() {
    let mut s = Script::connect(Config::default());
    s.expect(syn(0).mss(1460).wscale(default_shift()));
    s.at(100).peer_sends(
        syn_ack(0, 1)
            .win(65535)
            .mss(1460)
            .sack_ok()
            .ts(500, 0)
            .wscale(7),
    );
    s.expect(ack(1, 1).win(default_first_window()).ts(100, 500).no_sack());
    s.expect_state(State::Established);
    s.expect_events(&[Event::Connected]);
    s.check("window scaling, timestamps and SACK negotiated", |c| {
        c.negotiated() == (true, true, true)
    });
    s.check(
        "send MSS is the peer's 1460 less the 12 option bytes of timestamps or 1460",
        |c| c.send_mss() == 1460 || c.send_mss() == 1448,
    );
    s.done();
}

/// RFC 7323 §2.2, §3.2 and RFC 2018 §2: an option the peer's SYN-ACK does not
/// carry is not used: no scaling (window field is the buffer capped at 65535),
/// no timestamps, no SACK.
#[test]
fn active_open_peer_without_options() {
    let mut s = Script::connect(Config::default());
    s.expect(syn(0).wscale(default_shift()).sack_ok().has_ts());
    s.at(100).peer_sends(syn_ack(0, 1).mss(1460));
    s.expect(ack(1, 1).win(65535).no_ts().no_sack());
    s.check("nothing negotiated", |c| {
        c.negotiated() == (false, false, false)
    });
    s.done();
}

/// RFC 9293 §3.7.1 / RFC 1122 §4.2.2.6: without an MSS option the send MSS is 536.
#[test]
fn active_open_peer_without_mss_uses_536() {
    let mut s = established_with(plain(), syn_ack(0, 1));
    s.check("send MSS 536", |c| c.send_mss() == 536);
    s.at(200).app_send_n(1000);
    s.expect(data(1, 1, 536));
    // Nagle holds the 464-byte rest until the first segment is acknowledged.
    s.at(300).peer_sends(ack(1, 537));
    s.expect(data(537, 1, 464));
    s.done();
}

/// RFC 9293 §3.7.1: segments are no larger than the peer's MSS.
#[test]
fn peer_mss_honoured() {
    let mut s = established(plain());
    s.check("send MSS 1000", |c| c.send_mss() == 1000);
    s.at(200).app_send_n(3000);
    s.expect(data(1, 1, 1000))
        .expect(data(1001, 1, 1000))
        .expect(data(2001, 1, 1000));
    s.done();
}

/// RFC 9293 §3.7.1 (Eff.snd.MSS = min(SendMSS+20, MMS_S) - headers): a peer MSS
/// above what our own link carries is clamped to ours.
#[test]
fn peer_mss_clamped_to_ours() {
    let mut s = established_with(plain(), syn_ack(0, 1).mss(9000));
    s.check("send MSS clamped to 1460", |c| c.send_mss() == 1460);
    s.at(200).app_send_n(3000);
    s.expect(data(1, 1, 1460)).expect(data(1461, 1, 1460));
    // 80 bytes wait for the ACK (Nagle).
    s.done();
}

/// RFC 9293 §3.7.1: TCPhdrsize includes options, so with timestamps (12
/// bytes) on every segment the payload is the peer's MSS less 12 (RFC 6691 §2).
#[test]
fn timestamps_reduce_payload_per_segment() {
    let config = Config {
        sack: false,
        window_scaling: false,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1460).ts(500, 0));
    s.expect(ack(1, 1).has_ts());
    s.at(200).app_send_n(3000);
    s.expect(data(1, 1, 1448).has_ts())
        .expect(data(1449, 1, 1448).has_ts());
    s.done();
}

/// RFC 9293 §3.10.7.3 (SYN-SENT, first check): an ACK outside ISS < SEG.ACK =<
/// SND.NXT draws <SEQ=SEG.ACK><CTL=RST> and the state does not change.
#[test]
fn syn_sent_unacceptable_ack_gets_rst() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.at(50).peer_sends(syn_ack(0, 0).mss(1000));
    s.expect(rst(0).len(0));
    s.at(60).peer_sends(syn_ack(0, 7).mss(1000));
    s.expect(rst(7));
    s.expect_state(State::SynSent);
    // The right SYN-ACK still completes the handshake.
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1));
    s.expect_state(State::Established);
    s.done();
}

/// RFC 9293 §3.10.7.3 (SYN-SENT, second check): a RST with an acceptable ACK
/// means "connection reset" (refused); the connection is CLOSED.
#[test]
fn syn_sent_rst_with_ack_refuses() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.at(50).peer_sends(rst_ack(0, 1));
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::Refused));
    s.expect_events(&[Event::Closed]);
    s.app_recv_err(RecvError::Closed(CloseReason::Refused));
    let r = s.conn().send(b"x");
    assert_eq!(r, Err(SendError::Closed(CloseReason::Refused)));
    s.expect_nothing_until(10_000);
    s.done();
}

/// RFC 9293 §3.10.7.3 (SYN-SENT): a RST without ACK is dropped.
#[test]
fn syn_sent_rst_without_ack_ignored() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.at(50).peer_sends(rst(0));
    s.expect_nothing();
    s.expect_state(State::SynSent);
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1));
    s.expect_state(State::Established);
    s.done();
}

/// RFC 9293 §3.10.7.3 (SYN-SENT, fourth): a segment with neither SYN nor RST is dropped.
#[test]
fn syn_sent_plain_ack_dropped() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.at(50).peer_sends(ack(0, 1));
    s.expect_nothing();
    s.expect_state(State::SynSent);
    s.done();
}

/// RFC 6298 §5.5 (back off the timer) and Config::syn_retries (Linux's
/// tcp_syn_retries = 6): SYNs at 0, 1, 3, 7, 15, 31, 63 s, then the
/// connection gives up at 127 s with TimedOut.
#[test]
fn syn_retransmission_backoff_and_give_up() {
    let mut s = Script::connect(plain());
    s.expect(syn(0).mss(1460));
    for at in [1_000, 3_000, 7_000, 15_000, 31_000, 63_000] {
        s.expect_at(at, syn(0).mss(1460));
    }
    s.expect_nothing_until(126_999);
    s.expect_state(State::SynSent);
    s.at(127_000);
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::TimedOut));
    s.expect_events(&[Event::Closed]);
    s.app_recv_err(RecvError::Closed(CloseReason::TimedOut));
    s.expect_nothing_until(300_000);
    s.done();
}

/// RFC 6298 §5.7: when the SYN was retransmitted (no RTT sample by Karn),
/// the RTO MUST be re-initialized to 3 s once the handshake completes.
#[test]
fn rto_is_3s_after_syn_retransmission() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.expect_at(1_000, syn(0));
    s.at(1_100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1));
    s.check("no sample from the retransmitted SYN (Karn)", |c| {
        c.smoothed_rtt().is_none()
    });
    s.check("RTO is 3 s", |c| c.rto() == Duration::from_secs(3));
    s.done();
}

/// RFC 6298 §2.2: the first RTT sample R gives SRTT = R, RTTVAR = R/2, RTO =
/// SRTT + 4 RTTVAR (the handshake is timed: 100 ms gives 300 ms); §2.3: a
/// second equal sample gives RTTVAR = 3/4 * 50 = 37.5 ms, RTO = 250 ms.
#[test]
fn rto_from_rtt_samples() {
    let mut s = established(plain());
    s.check("RTO 300 ms after a 100 ms handshake", |c| {
        c.rto() == Duration::from_millis(300)
    });
    s.at(200).app_send_n(100);
    s.expect(data(1, 1, 100));
    s.at(300).peer_sends(ack(1, 101));
    s.check("RTO 250 ms after a second 100 ms sample", |c| {
        c.rto() == Duration::from_micros(250_000)
    });
    s.done();
}

// ===================================================================
// Opening: passive
// ===================================================================

/// RFC 9293 §3.10.7.2 (LISTEN, SYN): SYN-RECEIVED, <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>;
/// RFC 7323 §2.2 our SYN-ACK window is unscaled, §3.2 TSecr echoes the SYN's
/// TSval; then (§3.10.7.4 fifth) the ACK of our SYN makes it ESTABLISHED.
#[test]
fn passive_open_accept_syn_with_all_options() {
    let mut s = Script::accept_syn(
        Config::default(),
        syn(0).win(65535).mss(1460).sack_ok().ts(700, 0).wscale(7),
    );
    s.expect_state(State::SynReceived);
    s.expect(
        syn_ack(0, 1)
            .win(65535)
            .mss(1460)
            .sack_ok()
            .ts(0, 700)
            .wscale(default_shift()),
    );
    s.at(100).peer_sends(ack(1, 1).ts(800, 0));
    s.expect_nothing();
    s.expect_state(State::Established);
    s.expect_events(&[Event::Connected]);
    s.check("all options negotiated", |c| {
        c.negotiated() == (true, true, true)
    });
    s.done();
}

/// RFC 7323 §2.2 ("MUST NOT send a Window Scale option in a SYN,ACK unless it
/// received one"), §3.2 (timestamps likewise), RFC 2018 §2 (sackOK likewise).
#[test]
fn passive_syn_ack_offers_only_what_the_syn_offered() {
    let mut s = Script::accept_syn(Config::default(), syn(0).mss(1460));
    s.expect(
        syn_ack(0, 1)
            .mss(1460)
            .no_wscale()
            .no_sack_ok()
            .no_ts()
            .win(65535),
    );
    s.done();
}

/// RFC 2018 §2 and RFC 7323 §3.2: each option is answered on its own.
#[test]
fn passive_syn_ack_answers_sack_without_timestamps() {
    let mut s = Script::accept_syn(Config::default(), syn(0).mss(1460).sack_ok());
    s.expect(syn_ack(0, 1).mss(1460).sack_ok().no_ts().no_wscale());
    s.done();
}

/// RFC 9293 §3.7.1: our SYN-ACK announces our MSS whatever the peer's.
#[test]
fn passive_syn_ack_announces_our_mss() {
    let mut s = Script::accept_syn(
        Config {
            mss: 1200,
            ..plain()
        },
        syn(0).mss(1460),
    );
    s.expect(syn_ack(0, 1).mss(1200));
    s.at(100).peer_sends(ack(1, 1));
    s.check("send MSS is min(peer 1460, ours 1200)", |c| {
        c.send_mss() == 1200
    });
    s.done();
}

/// RFC 9293 §3.8.1 / RFC 6298 §5: the SYN-ACK is retransmitted with backoff until acknowledged.
#[test]
fn passive_syn_ack_retransmitted() {
    let mut s = Script::accept_syn(plain(), syn(0).mss(1000));
    s.expect(syn_ack(0, 1));
    s.expect_at(1_000, syn_ack(0, 1));
    s.expect_at(3_000, syn_ack(0, 1));
    s.at(3_100).peer_sends(ack(1, 1));
    s.expect_state(State::Established);
    s.expect_nothing_until(20_000);
    s.done();
}

/// A retransmitted SYN in SYN-RECEIVED (same ISN) is answered with the SYN-ACK
/// again (RFC 9293 §3.10.7.4 first check: an unacceptable segment draws an
/// acknowledgment; in SYN-RECEIVED that is the SYN-ACK, as Linux does).
#[test]
fn passive_duplicate_syn_resends_syn_ack() {
    let mut s = Script::accept_syn(plain(), syn(0).mss(1000));
    s.expect(syn_ack(0, 1));
    s.at(200).peer_sends(syn(0).mss(1000));
    s.expect(syn_ack(0, 1).mss(1460));
    s.expect_state(State::SynReceived);
    s.done();
}

/// RFC 9293 §3.10.7.4 fifth (SYN-RECEIVED): an unacceptable ACK draws
/// <SEQ=SEG.ACK><CTL=RST>; the connection stays in SYN-RECEIVED.
#[test]
fn passive_unacceptable_ack_gets_rst() {
    let mut s = Script::accept_syn(plain(), syn(0).mss(1000));
    s.expect(syn_ack(0, 1));
    s.at(100).peer_sends(ack(1, 5));
    s.expect(rst(5));
    s.expect_state(State::SynReceived);
    s.at(110).peer_sends(ack(1, 1));
    s.expect_state(State::Established);
    s.done();
}

/// RFC 9293 §3.10.7.4 second (SYN-RECEIVED): a RST at RCV.NXT ends the
/// passive open; nothing is sent back.
#[test]
fn passive_rst_in_syn_received_closes() {
    let mut s = Script::accept_syn(plain(), syn(0).mss(1000));
    s.expect(syn_ack(0, 1));
    s.at(100).peer_sends(rst(1));
    s.expect_state(State::Closed);
    s.expect_nothing_until(10_000);
    s.done();
}

/// RFC 9293 §3.10.7.4 (SYN-RECEIVED, fifth then seventh): the handshake's ACK
/// may carry data; it is queued and ACKed (delayed, RFC 1122 §4.2.3.2).
#[test]
fn passive_handshake_ack_carrying_data() {
    let mut s = Script::accept_syn(plain(), syn(0).mss(1000));
    s.expect(syn_ack(0, 1));
    s.at(100).peer_sends(data(1, 1, 100));
    s.expect_state(State::Established);
    s.expect_events(&[Event::Connected, Event::Readable]);
    s.expect_at(140, ack(1, 101));
    s.app_recv_n(100);
    s.done();
}

/// RFC 9293 §3.5 figure 8 (simultaneous open): a SYN in SYN-SENT moves to
/// SYN-RECEIVED and sends SYN,ACK; the peer's ACK of our SYN makes it ESTABLISHED.
#[test]
fn simultaneous_open_completed_by_ack() {
    let mut s = Script::connect(plain());
    s.expect(syn(0).mss(1460));
    s.at(50).peer_sends(syn(0).mss(1000));
    s.expect(syn_ack(0, 1).mss(1460));
    s.expect_state(State::SynReceived);
    s.at(100).peer_sends(ack(1, 1));
    s.expect_state(State::Established);
    s.expect_events(&[Event::Connected]);
    s.at(110).app_send_n(10);
    s.expect(data(1, 1, 10));
    s.done();
}

/// RFC 9293 §3.5 figure 8, line 6: in simultaneous open the peer's SYN,ACK
/// (SEQ=its ISN, ACK=our ISN+1) arriving in SYN-RECEIVED completes the
/// handshake at once (Linux: tcp_validate_incoming lets it pass).
#[test]
fn simultaneous_open_completed_by_syn_ack() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.at(50).peer_sends(syn(0).mss(1000));
    s.expect(syn_ack(0, 1));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    for seg in s.take_output() {
        assert!(
            !seg.header.flags.rst() && !seg.header.flags.syn(),
            "no RST or SYN: {seg:?}"
        );
    }
    s.expect_state(State::Established);
    s.done();
}

// ===================================================================
// Opening: the listener
// ===================================================================

/// RFC 9293 §3.10.7.2 and §3.10.7.4: a listener answers a SYN with a SYN-ACK,
/// the ACK completes the handshake into the accept queue, accept hands it over.
#[test]
fn listener_handshake_and_accept() {
    let mut s = Script::listen(Config::default(), 4);
    s.peer(1)
        .peer_sends(syn(0).win(65535).mss(1460).sack_ok().ts(100, 0).wscale(7));
    s.expect(
        syn_ack(0, 1)
            .mss(1460)
            .sack_ok()
            .ts(0, 100)
            .wscale(default_shift()),
    );
    assert_eq!(s.listener().syn_queue_len(), 1);
    s.at(100).peer_sends(ack(1, 1).ts(200, 100));
    s.expect_nothing();
    assert_eq!(s.listener().syn_queue_len(), 0);
    assert_eq!(s.listener().accept_queue_len(), 1);
    s.app_accept();
    s.expect_state(State::Established);
    s.expect_event(Event::Connected);
    s.at(200).app_send_n(100);
    s.expect(data(1, 1, 100).tsecr(200));
    s.done();
}

/// RFC 9293 §3.10.7.2 (LISTEN, second: an ACK): <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn listener_ack_without_syn_gets_rst() {
    let mut s = Script::listen(plain(), 4);
    s.peer(1).peer_sends(ack(1, 5000));
    s.expect(rst(5000).len(0));
    assert_eq!(s.listener().stats().resets_sent, 1);
    s.done();
}

/// RFC 9293 §3.10.7.2 (LISTEN, first: a RST): ignored.
#[test]
fn listener_rst_ignored() {
    let mut s = Script::listen(plain(), 4);
    s.peer(1).peer_sends(rst(0));
    s.peer_sends(rst_ack(0, 77));
    s.expect_nothing();
    assert_eq!(s.listener().syn_queue_len(), 0);
    s.done();
}

/// RFC 9293 §3.10.7.2 (LISTEN, fourth): a segment with none of SYN, ACK, RST is dropped.
#[test]
fn listener_plain_segment_dropped() {
    let mut s = Script::listen(plain(), 4);
    s.peer(1).peer_sends(seg("").seq(1).len(10));
    s.expect_nothing();
    s.done();
}

/// A duplicate SYN for a half-open connection gets the same SYN-ACK again
/// (RFC 9293 §3.10.7.4 first check; Linux tcp_check_req).
#[test]
fn listener_duplicate_syn_resends_syn_ack() {
    let mut s = Script::listen(plain(), 4);
    s.peer(1).peer_sends(syn(0).mss(1460));
    s.expect(syn_ack(0, 1));
    s.at(300).peer_sends(syn(0).mss(1460));
    s.expect(syn_ack(0, 1));
    assert_eq!(s.listener().syn_queue_len(), 1);
    s.done();
}

/// The accept queue holds backlog + 1 (Linux sk_acceptq_is_full). With backlog
/// 1 the third handshake's final ACK is dropped (ListenOverflows), its
/// SYN-ACK is retransmitted, and it completes once accept() makes room; a SYN
/// arriving while the accept queue is full is dropped.
#[test]
fn listener_accept_queue_overflow() {
    let mut s = Script::listen(plain(), 1);
    for id in 1..=3 {
        s.peer(id).peer_sends(syn(0).mss(1460));
        s.expect(syn_ack(0, 1));
    }
    assert_eq!(s.listener().syn_queue_len(), 3);
    s.at(100);
    s.peer(1).peer_sends(ack(1, 1));
    s.peer(2).peer_sends(ack(1, 1));
    s.peer(3).peer_sends(ack(1, 1));
    s.expect_nothing();
    assert_eq!(s.listener().accept_queue_len(), 2);
    assert_eq!(s.listener().syn_queue_len(), 1, "peer 3 stays half-open");
    assert_eq!(s.listener().stats().acks_dropped_accept_full, 1);
    // A fourth client's SYN while the queue is full: dropped, no SYN-ACK.
    s.at(500).peer(4).peer_sends(syn(0).mss(1460));
    s.expect_nothing();
    assert_eq!(s.listener().stats().syns_dropped_accept_full, 1);
    // Peer 3's SYN-ACK comes again on its timer.
    s.peer(3).expect_at(1_000, syn_ack(0, 1));
    s.at(1_050).peer(1).app_accept();
    s.at(1_100).peer(3).peer_sends(ack(1, 1));
    s.expect_nothing();
    assert_eq!(s.listener().accept_queue_len(), 2);
    assert_eq!(s.listener().syn_queue_len(), 0);
    s.peer(2).app_accept();
    s.peer(3).app_accept();
    s.expect_state(State::Established);
    let stats = s.listener().stats();
    assert_eq!(
        stats,
        ListenerStats {
            acks_dropped_accept_full: 1,
            syns_dropped_accept_full: 1,
            ..ListenerStats::default()
        }
    );
    s.done();
}

/// RFC 4987 §3.6: when the SYN queue is full, SYNs are answered with a cookie
/// (the ISN encodes the connection; only the MSS option survives); the ACK
/// that returns the cookie creates the connection straight into the accept queue.
#[test]
fn listener_syn_cookies_when_syn_queue_full() {
    let mut s = Script::listen(Config::default(), 1);
    // backlog 1: the SYN queue holds max(1, 8) * 2 = 16 half-open connections.
    for id in 1..=16 {
        s.peer(id).peer_sends(syn(0).mss(1460));
        s.expect(syn_ack(0, 1));
    }
    assert_eq!(s.listener().syn_queue_len(), 16);
    s.at(10)
        .peer(17)
        .peer_sends(syn(0).mss(1460).sack_ok().ts(100, 0).wscale(7));
    s.expect(
        syn_ack(0, 1)
            .mss(1460)
            .no_wscale()
            .no_sack_ok()
            .no_ts()
            .win(65535),
    );
    assert_eq!(
        s.listener().syn_queue_len(),
        16,
        "no state kept for a cookie"
    );
    assert_eq!(s.listener().stats().syn_cookies_sent, 1);
    s.at(110).peer_sends(ack(1, 1).data(b"hello"));
    assert_eq!(s.listener().accept_queue_len(), 1);
    assert_eq!(s.listener().stats().syn_cookies_accepted, 1);
    s.app_accept();
    s.expect_state(State::Established);
    s.check("MSS from the cookie", |c| c.send_mss() == 1460);
    s.app_recv(b"hello");
    s.discard_output(); // the ACK of "hello", whenever it goes
    s.done();
}

/// RFC 4987 §3.6: an ACK whose cookie does not verify is treated as an ACK in
/// LISTEN: <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.2).
#[test]
fn listener_bad_cookie_gets_rst() {
    let mut s = Script::listen(plain(), 1);
    for id in 1..=16 {
        s.peer(id).peer_sends(syn(0).mss(1460));
        s.expect(syn_ack(0, 1));
    }
    s.peer(17).peer_sends(syn(0).mss(1460));
    s.expect(syn_ack(0, 1));
    s.at(100).peer_sends(ack(1, 12_345));
    s.expect(rst(12_345));
    assert_eq!(s.listener().accept_queue_len(), 0);
    assert_eq!(s.listener().stats().syn_cookies_accepted, 0);
    assert_eq!(s.listener().stats().resets_sent, 1);
    s.done();
}

/// RFC 6298 §5.5 and Config::syn_retries: a half-open connection whose
/// SYN-ACK is never acknowledged is retransmitted with backoff, then
/// dropped (counted in handshakes_timed_out).
#[test]
fn listener_half_open_times_out() {
    let mut s = Script::listen(plain(), 4);
    s.peer(1).peer_sends(syn(0).mss(1460));
    s.expect(syn_ack(0, 1));
    for at in [1_000, 3_000, 7_000, 15_000, 31_000, 63_000] {
        s.expect_at(at, syn_ack(0, 1));
    }
    s.expect_nothing_until(127_000);
    assert_eq!(s.listener().syn_queue_len(), 0);
    assert_eq!(s.listener().stats().handshakes_timed_out, 1);
    s.done();
}

/// RFC 9293 §3.10.7.4: once the handshake completed the connection is
/// ESTABLISHED and must accept the peer's data, also before the application
/// calls accept() (Linux queues it on the child socket). A RST here would
/// kill a connection the peer (rightly) thinks is open.
#[test]
fn listener_data_before_accept_is_kept() {
    let mut s = Script::listen(plain(), 4);
    handshake_with_listener(&mut s, 1, 0);
    s.at(50).peer_sends(data(1, 1, 100));
    // Delayed ACK (RFC 1122 §4.2.3.2), from the queued connection.
    s.expect_at(90, ack(1, 101));
    s.at(100).app_accept();
    s.expect_state(State::Established);
    s.app_recv_n(100);
    s.done();
}

/// RFC 9293 §3.10.7.4 second (SYN-RECEIVED from a passive open): a RST
/// returns to LISTEN: the half-open entry goes, nothing is sent.
#[test]
fn listener_rst_removes_half_open() {
    let mut s = Script::listen(plain(), 4);
    s.peer(1).peer_sends(syn(0).mss(1460));
    s.expect(syn_ack(0, 1));
    s.at(50).peer_sends(rst(1));
    assert_eq!(s.listener().syn_queue_len(), 0);
    s.expect_nothing_until(10_000);
    s.done();
}

// ===================================================================
// Data transfer and acknowledgments
// ===================================================================

/// RFC 9293 §3.10.2 (SEND) and §3.10.7.4 fifth (SND.UNA advances); RFC 6298
/// §5.2: with everything acknowledged the retransmission timer is off.
#[test]
fn send_data_and_get_it_acked() {
    let mut s = established(plain());
    s.at(200).app_send_n(1000);
    s.expect(data(1, 1, 1000).psh());
    s.check("retransmission timer running", |c| {
        c.poll_timeout().is_some()
    });
    s.at(300).peer_sends(ack(1, 1001));
    s.expect_nothing();
    s.check("nothing queued", |c| c.send_queued() == 0);
    s.check("no timer left", |c| c.poll_timeout().is_none());
    s.done();
}

/// RFC 9293 §3.10.7.4 seventh and RFC 1122 §4.2.3.2 / RFC 9293 §3.8.6.3: a
/// single segment is ACKed after the delayed-ACK timer (40 ms here, < 500 ms).
#[test]
fn delayed_ack_for_a_single_segment() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1, 1, 500));
    s.expect_events(&[Event::Readable]);
    s.expect_nothing();
    s.expect_at(240, ack(1, 501));
    s.app_recv_n(500);
    s.expect_nothing_until(1_000);
    s.done();
}

/// RFC 5681 §4.2 / RFC 1122 §4.2.3.2: an ACK SHOULD be generated for at least
/// every second full-sized segment: the second segment is ACKed at once.
#[test]
fn every_second_segment_acked_at_once() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1, 1, 1000));
    s.expect_nothing();
    s.at(210).peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 2001));
    s.at(220).peer_sends(data(2001, 1, 1000));
    s.expect_nothing();
    s.at(225).peer_sends(data(3001, 1, 1000));
    s.expect(ack(1, 4001).win(65535 - 4000));
    s.expect_nothing_until(500);
    // Reading reopens the window by more than 2*MSS: a window update goes out.
    s.app_recv_n(4000);
    s.expect(ack(1, 4001).win(65535));
    s.done();
}

/// RFC 5681 §4.2: an out-of-order segment draws an immediate duplicate ACK.
#[test]
fn out_of_order_segment_acked_at_once() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 1));
    s.app_recv_err(RecvError::WouldBlock);
    s.done();
}

/// RFC 5681 §4.2: a segment that fills a hole is ACKed at once, and
/// everything up to the next hole becomes readable in order.
#[test]
fn hole_filling_segment_acked_at_once() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 1));
    s.at(210).peer_sends(data(1, 1, 1000));
    s.expect(ack(1, 2001));
    s.app_recv_n(2000);
    s.done();
}

/// RFC 1122 §4.2.3.2 / RFC 9293 §3.8.6.3: a delayed ACK rides on data the
/// application sends before the timer runs out.
#[test]
fn delayed_ack_piggybacks_on_data() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1, 1, 100));
    s.at(210).app_send_n(50);
    s.expect(data(1, 101, 50));
    s.expect_nothing_until(300);
    s.peer_sends(ack(101, 51));
    s.expect_nothing_until(1_000);
    s.done();
}

/// RFC 6928 §2: the initial window is min(10*MSS, max(2*MSS, 14600)) = 10
/// segments of 1000; RFC 3465 §2.3 / RFC 5681 §3.1: in slow start an ACK of
/// two segments grows cwnd by two segments, letting four more out.
#[test]
fn initial_window_then_slow_start() {
    let mut s = established(newreno());
    s.check("IW 10 segments", |c| c.congestion_window() == 10_000);
    s.at(200).app_send_n(20_000);
    for i in 0..10u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.expect_nothing();
    s.at(300).peer_sends(ack(1, 2001));
    s.check("cwnd 12 segments", |c| c.congestion_window() == 12_000);
    for i in 10..14u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.expect_nothing();
    s.done();
}

/// RFC 3465 §2.3 (ABC, L = 2): in slow start one ACK covering five segments
/// grows cwnd by at most 2*SMSS; an ACK of one segment by one SMSS.
#[test]
fn slow_start_appropriate_byte_counting() {
    let mut s = established(newreno());
    s.at(200).app_send_n(10_000);
    for i in 0..10u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300).peer_sends(ack(1, 5001));
    s.check("cwnd += 2*SMSS for 5 segments", |c| {
        c.congestion_window() == 12_000
    });
    s.at(301).peer_sends(ack(1, 6001));
    s.check("cwnd += 1*SMSS for 1 segment", |c| {
        c.congestion_window() == 13_000
    });
    s.done();
}

/// RFC 1122 §4.2.3.4 / RFC 9293 §3.7.4 (Nagle): while data is
/// unacknowledged, small segments wait; the ACK releases them as one segment.
#[test]
fn nagle_holds_small_segments() {
    let mut s = established(plain());
    s.at(200).app_send_n(100);
    s.expect(data(1, 1, 100));
    s.at(210).app_send_n(100);
    s.at(220).app_send_n(100);
    s.expect_nothing();
    s.at(300).peer_sends(ack(1, 101));
    s.expect(data(101, 1, 200));
    s.done();
}

/// RFC 1122 §4.2.3.4: Nagle holds only segments smaller than the MSS; a
/// full-sized segment goes out while small data is unacknowledged.
#[test]
fn nagle_lets_full_segments_go() {
    let mut s = established(plain());
    s.at(200).app_send_n(100);
    s.expect(data(1, 1, 100));
    s.at(210).app_send_n(1500);
    s.expect(data(101, 1, 1000));
    s.expect_nothing();
    s.done();
}

/// RFC 9293 §3.7.4: an application may disable Nagle (TCP_NODELAY): small
/// segments go out at once.
#[test]
fn nodelay_sends_small_segments_at_once() {
    let mut s = established(Config {
        nodelay: true,
        ..plain()
    });
    s.at(200).app_send_n(100);
    s.expect(data(1, 1, 100));
    s.at(210).app_send_n(100);
    s.expect(data(101, 1, 100));
    s.done();
}

/// RFC 9293 §3.10.2 (SEND in SYN-SENT): data is queued for transmission
/// after entering ESTABLISHED; it goes with the handshake's ACK.
#[test]
fn data_queued_in_syn_sent_follows_the_handshake() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.app_send_n(100);
    s.expect_nothing();
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(data(1, 1, 100));
    s.done();
}

/// RFC 9293 §3.10.7.4 first check / §3.8.6.2: the peer's window is respected;
/// an ACK that opens it lets the rest out.
#[test]
fn sender_respects_the_peer_window() {
    let mut s = established(plain());
    s.at(150).peer_sends(ack(1, 1).win(3000));
    s.at(200).app_send_n(5000);
    s.expect(data(1, 1, 1000))
        .expect(data(1001, 1, 1000))
        .expect(data(2001, 1, 1000));
    s.expect_nothing();
    s.at(300).peer_sends(ack(1, 3001).win(3000));
    s.expect(data(3001, 1, 1000)).expect(data(4001, 1, 1000));
    s.done();
}

/// RFC 9293 §3.9.1.2 (SEND, insufficient queue space): send takes what fits
/// and then reports WouldBlock; Writable comes once an ACK frees room.
#[test]
fn send_buffer_full_then_writable() {
    let mut s = established(Config {
        send_buffer: 2000,
        ..plain()
    });
    assert_eq!(s.at(200).app_try_send_n(3000), Ok(2000));
    s.expect(data(1, 1, 1000)).expect(data(1001, 1, 1000));
    assert_eq!(s.app_try_send_n(10), Err(SendError::WouldBlock));
    s.at(300).peer_sends(ack(1, 1001));
    s.expect_event(Event::Writable);
    assert_eq!(s.app_try_send_n(10), Ok(10));
    s.discard_output();
    s.done();
}

/// RFC 9293 §3.10.7.4 eighth: a FIN is ACKed at once, CLOSE-WAIT; RECEIVE
/// returns the data, then "connection closing" (EOF).
#[test]
fn fin_with_data_then_eof() {
    let mut s = established(plain());
    s.at(200).peer_sends(seg("F.").seq(1).ack(1).len(5));
    s.expect(ack(1, 7));
    s.expect_state(State::CloseWait);
    s.expect_events(&[Event::Readable]);
    s.app_recv_n(5);
    s.app_recv_err(RecvError::Finished);
    s.done();
}

/// RFC 9293 §3.10.7.4 eighth: "do not process the FIN if ... SEG.SEQ cannot be
/// validated"; a FIN beyond a hole waits until the hole is filled.
#[test]
fn fin_beyond_a_hole_waits_for_it() {
    let mut s = established(plain());
    s.at(200).peer_sends(seg("F.").seq(1001).ack(1).len(500));
    s.expect(ack(1, 1));
    s.expect_state(State::Established);
    s.at(210).peer_sends(data(1, 1, 1000));
    s.expect(ack(1, 1502));
    s.expect_state(State::CloseWait);
    s.app_recv_n(1500);
    s.app_recv_err(RecvError::Finished);
    s.done();
}

// ===================================================================
// Closing
// ===================================================================

/// RFC 9293 §3.10.4 (CLOSE in ESTABLISHED: FIN, FIN-WAIT-1), §3.10.7.4
/// fifth (FIN-WAIT-1 -> FIN-WAIT-2 when our FIN is ACKed), eighth (FIN in
/// FIN-WAIT-2 -> TIME-WAIT, ACK it), §3.4.2 / §3.10.8 (TIME-WAIT lasts 2*MSL,
/// then CLOSED).
#[test]
fn active_close_through_fin_wait_and_time_wait() {
    let mut s = established(plain());
    s.at(200).app_close();
    s.expect(fin(1, 1));
    s.expect_state(State::FinWait1);
    s.at(300).peer_sends(ack(1, 2));
    s.expect_nothing();
    s.expect_state(State::FinWait2);
    s.at(400).peer_sends(fin(1, 2));
    s.expect(ack(2, 2));
    s.expect_state(State::TimeWait);
    s.expect_nothing_until(60_399);
    s.expect_state(State::TimeWait);
    s.at(60_400);
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::Normal));
    s.expect_event(Event::Closed);
    s.check("no timers left", |c| c.poll_timeout().is_none());
    s.done();
}

/// RFC 9293 §3.10.7.4 (TIME-WAIT, first check and eighth): a retransmitted
/// FIN is acknowledged and the 2*MSL timeout restarts.
#[test]
fn time_wait_acks_retransmitted_fin_and_restarts_timer() {
    let mut s = established(plain());
    s.at(200).app_close();
    s.expect(fin(1, 1));
    s.at(300).peer_sends(fin(1, 2));
    s.expect(ack(2, 2));
    s.expect_state(State::TimeWait);
    s.at(10_000).peer_sends(fin(1, 2));
    s.expect(ack(2, 2));
    s.expect_nothing_until(69_999);
    s.expect_state(State::TimeWait);
    s.at(70_000);
    s.expect_state(State::Closed);
    s.done();
}

/// RFC 9293 §3.10.7.4 eighth (ESTABLISHED: FIN -> CLOSE-WAIT), §3.10.4 (CLOSE
/// in CLOSE-WAIT: FIN, LAST-ACK), fifth (LAST-ACK: our FIN ACKed -> CLOSED).
#[test]
fn passive_close_through_close_wait_and_last_ack() {
    let mut s = established(plain());
    s.at(200).peer_sends(fin(1, 1));
    s.expect(ack(1, 2));
    s.expect_state(State::CloseWait);
    s.app_recv_err(RecvError::Finished);
    s.at(300).app_send_n(100);
    s.expect(data(1, 2, 100));
    s.at(350).app_close();
    s.expect(fin(101, 2));
    s.expect_state(State::LastAck);
    s.at(400).peer_sends(ack(2, 102));
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::Normal));
    s.expect_nothing_until(200_000);
    s.done();
}

/// RFC 9293 §3.6 figure 13 (simultaneous close): FIN-WAIT-1 + the peer's FIN
/// -> CLOSING; the ACK of our FIN -> TIME-WAIT.
#[test]
fn simultaneous_close_through_closing() {
    let mut s = established(plain());
    s.at(200).app_close();
    s.expect(fin(1, 1));
    s.at(210).peer_sends(fin(1, 1));
    s.expect(ack(2, 2));
    s.expect_state(State::Closing);
    s.at(300).peer_sends(ack(2, 2));
    s.expect_state(State::TimeWait);
    s.expect_nothing_until(60_299);
    s.at(60_300);
    s.expect_state(State::Closed);
    s.done();
}

/// RFC 9293 §3.10.7.4 eighth (FIN-WAIT-1: "If our FIN has been ACKed ... then
/// enter TIME-WAIT"): a FIN that also ACKs our FIN skips CLOSING.
#[test]
fn fin_acking_our_fin_goes_straight_to_time_wait() {
    let mut s = established(plain());
    s.at(200).app_close();
    s.expect(fin(1, 1));
    s.at(300).peer_sends(fin(1, 2));
    s.expect(ack(2, 2));
    s.expect_state(State::TimeWait);
    s.done();
}

/// RFC 9293 §3.6 / §3.10.4 (half-close): after our FIN the connection keeps
/// receiving in FIN-WAIT-2 until the peer's FIN.
#[test]
fn half_close_keeps_receiving() {
    let mut s = established(plain());
    s.at(200).app_shutdown();
    s.expect(fin(1, 1));
    s.at(300).peer_sends(ack(1, 2));
    s.expect_state(State::FinWait2);
    s.at(400).peer_sends(data(1, 2, 500));
    s.expect_at(440, ack(2, 501));
    s.app_recv_n(500);
    s.at(500).peer_sends(seg("F.").seq(501).ack(2).len(300));
    s.expect(ack(2, 802));
    s.expect_state(State::TimeWait);
    s.app_recv_n(300);
    s.app_recv_err(RecvError::Finished);
    s.done();
}

/// RFC 9293 §3.10.4 (CLOSE: "queue this until all preceding SENDs have been
/// segmentized, then form a FIN"): with the peer's window holding data back,
/// shutdown sends no FIN until the data is out; the FIN follows the last byte.
#[test]
fn shutdown_sends_fin_after_buffered_data() {
    let mut s = established(plain());
    s.at(150).peer_sends(ack(1, 1).win(2000));
    s.at(200).app_send_n(3000);
    s.expect(data(1, 1, 1000)).expect(data(1001, 1, 1000));
    s.app_shutdown();
    s.expect_nothing();
    s.expect_state(State::FinWait1);
    s.at(300).peer_sends(ack(1, 2001).win(2000));
    s.expect(seg("F.").seq(2001).ack(1).len(1000));
    s.at(400).peer_sends(ack(1, 3002));
    s.expect_state(State::FinWait2);
    s.done();
}

/// RFC 9293 §3.10.4: close() with unsent data sends the data first, then FIN.
#[test]
fn close_drains_buffered_data_then_fin() {
    let mut s = established(plain());
    s.at(150).peer_sends(ack(1, 1).win(1000));
    s.at(200).app_send_n(2500);
    s.expect(data(1, 1, 1000));
    s.app_close();
    s.expect_nothing();
    s.at(300).peer_sends(ack(1, 1001).win(1000));
    s.expect(data(1001, 1, 1000));
    s.at(400).peer_sends(ack(1, 2001).win(1000));
    s.expect(seg("F.").seq(2001).ack(1).len(500));
    s.at(500).peer_sends(ack(1, 2502));
    s.expect_state(State::FinWait2);
    s.done();
}

/// RFC 9293 §3.10.4 / RFC 6298 §5.4-5.5: an unacknowledged FIN is retransmitted with backoff.
#[test]
fn fin_retransmitted_on_timeout() {
    let mut s = established(plain());
    s.at(200).app_close();
    s.expect(fin(1, 1));
    s.expect_at(500, fin(1, 1));
    s.expect_at(1_100, fin(1, 1));
    s.at(1_150).peer_sends(ack(1, 2));
    s.expect_state(State::FinWait2);
    s.done();
}

/// RFC 1122 §4.2.2.13 / RFC 2525 §2.17: closing with unread received data
/// resets the connection (RST, not FIN), as Linux does.
#[test]
fn close_with_unread_data_sends_rst() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1, 1, 100));
    s.at(210).app_close();
    s.expect(rst(1));
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::Aborted));
    s.expect_nothing_until(10_000);
    s.done();
}

/// RFC 9293 §3.10.5 (ABORT): <SEQ=SND.NXT><CTL=RST>, everything dropped, CLOSED.
#[test]
fn abort_sends_rst() {
    let mut s = established(plain());
    s.at(200).app_send_n(500);
    s.expect(data(1, 1, 500));
    s.app_abort();
    s.expect(rst(501));
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::Aborted));
    s.app_recv_err(RecvError::Closed(CloseReason::Aborted));
    assert_eq!(
        s.conn().send(b"x"),
        Err(SendError::Closed(CloseReason::Aborted))
    );
    s.expect_nothing_until(10_000);
    s.done();
}

/// RFC 2525 §2.17 (and Linux): data arriving after the application closed
/// (it can never be read) resets the connection.
#[test]
fn data_after_close_resets() {
    let mut s = established(plain());
    s.at(200).app_close();
    s.expect(fin(1, 1));
    s.at(300).peer_sends(ack(1, 2));
    s.expect_state(State::FinWait2);
    s.at(400).peer_sends(data(1, 2, 100));
    s.expect(rst(2));
    s.expect_state(State::Closed);
    s.done();
}

/// RFC 9293 §3.10.4 (CLOSE in SYN-SENT): delete the TCB; no more SYNs.
#[test]
fn close_in_syn_sent_stops_everything() {
    let mut s = Script::connect(plain());
    s.expect(syn(0));
    s.at(500).app_close();
    s.expect_nothing_until(200_000);
    s.expect_state(State::Closed);
    s.done();
}

/// RFC 9293 §3.10.2 (SEND after CLOSE: "error: connection closing").
#[test]
fn send_after_shutdown_fails() {
    let mut s = established(plain());
    s.at(200).app_shutdown();
    s.expect(fin(1, 1));
    assert_eq!(s.conn().send(b"late"), Err(SendError::Shutdown));
    s.done();
}

// ===================================================================
// RST and SYN rules (RFC 5961)
// ===================================================================

/// RFC 5961 §3.2 / RFC 9293 §3.10.7.4 second: a RST whose sequence number is
/// exactly RCV.NXT resets the connection.
#[test]
fn rst_at_rcv_nxt_resets() {
    let mut s = established(plain());
    s.at(200).peer_sends(rst(1));
    s.expect_nothing();
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::Reset));
    s.expect_event(Event::Closed);
    s.app_recv_err(RecvError::Closed(CloseReason::Reset));
    s.done();
}

/// RFC 5961 §3.2: a RST in the window but not at RCV.NXT draws a challenge
/// ACK and does not reset.
#[test]
fn rst_in_window_gets_challenge_ack() {
    let mut s = established(plain());
    s.at(200).peer_sends(rst(100));
    s.expect(ack(1, 1));
    s.expect_state(State::Established);
    s.done();
}

/// RFC 5961 §3.2 / RFC 9293 §3.10.7.4 first: a RST outside the window is
/// silently dropped (no ACK).
#[test]
fn rst_out_of_window_ignored() {
    let mut s = established(plain());
    s.at(200).peer_sends(rst(200_000));
    s.peer_sends(rst(0));
    s.expect_nothing();
    s.expect_state(State::Established);
    s.done();
}

/// RFC 5961 §3.2: the exact-RCV.NXT rule follows RCV.NXT as data arrives: a
/// RST at the old RCV.NXT is now left of the window and silently dropped, one
/// inside the window draws a challenge ACK, one at the new RCV.NXT resets.
#[test]
fn rst_must_match_current_rcv_nxt() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1, 1, 1000));
    s.at(210).peer_sends(rst(1));
    s.expect_nothing();
    s.expect_at(240, ack(1, 1001));
    s.at(250).peer_sends(rst(1500));
    s.expect(ack(1, 1001));
    s.expect_state(State::Established);
    s.at(260).peer_sends(rst(1001));
    s.expect_state(State::Closed);
    s.done();
}

/// RFC 5961 §4.2: a SYN in a synchronized state, whatever its sequence
/// number, draws a challenge ACK and changes nothing.
#[test]
fn syn_in_established_gets_challenge_ack() {
    let mut s = established(plain());
    s.at(200).peer_sends(syn(500).mss(1000));
    s.expect(ack(1, 1));
    s.at(210).peer_sends(syn(0).mss(1000));
    s.expect(ack(1, 1));
    s.at(220).peer_sends(syn(900_000).mss(1000));
    s.expect(ack(1, 1));
    s.expect_state(State::Established);
    s.done();
}

/// RFC 9293 §3.10.7.4 first check: a segment outside the receive window is
/// dropped and draws an ACK.
#[test]
fn out_of_window_data_gets_ack() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(100_000, 1, 100));
    s.expect(ack(1, 1));
    s.app_recv_err(RecvError::WouldBlock);
    s.done();
}

/// RFC 9293 §3.10.7.4 first check: an old duplicate is ACKed at once and not delivered twice.
#[test]
fn duplicate_data_acked_and_not_delivered_twice() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1, 1, 100));
    s.at(210).peer_sends(data(1, 1, 100));
    s.expect(ack(1, 101));
    s.expect_nothing_until(500);
    s.check("100 bytes readable", |c| c.readable_len() == 100);
    s.done();
}

/// RFC 9293 §3.10.7.4 fifth / RFC 5961 §5.2: an ACK of something not yet sent
/// (SEG.ACK > SND.NXT): send an ACK, drop the segment (its data too).
#[test]
fn ack_of_unsent_data_gets_ack_and_is_dropped() {
    let mut s = established(plain());
    s.at(200).app_send_n(100);
    s.expect(data(1, 1, 100));
    s.at(250).peer_sends(data(1, 5000, 50));
    s.expect(ack(101, 1));
    s.check("payload dropped", |c| c.readable_len() == 0);
    s.check("SND.UNA unchanged", |c| c.send_queued() == 100);
    s.done();
}

/// RFC 5961 §5.2: an ACK older than SND.UNA - MAX.SND.WND is not acceptable:
/// challenge ACK, segment dropped.
#[test]
fn ack_too_old_gets_challenge_ack() {
    let mut s = established(plain());
    s.at(200).peer_sends(data(1, 0u32.wrapping_sub(70_000), 50));
    s.expect(ack(1, 1));
    s.check("payload dropped", |c| c.readable_len() == 0);
    s.done();
}

// ===================================================================
// Options: window scaling, timestamps, SACK
// ===================================================================

/// RFC 7323 §2.2-§2.3: both SYNs carry the option, so windows are scaled both
/// ways: the peer's window field 40 with shift 7 is 5120 bytes.
#[test]
fn window_scaling_negotiated_scales_both_ways() {
    let config = Config {
        timestamps: false,
        sack: false,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).wscale(default_shift()));
    s.at(100)
        .peer_sends(syn_ack(0, 1).win(65535).mss(1000).wscale(7));
    s.expect(ack(1, 1).win(default_first_window()));
    s.check("scaling negotiated", |c| c.negotiated().0);
    s.at(150).peer_sends(ack(1, 1).win(40));
    s.at(200).app_send_n(5000);
    for i in 0..5u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.expect_nothing();
    s.done();
}

/// RFC 7323 §2.2: "if a Window Scale option is received in the <SYN,ACK> but
/// was not sent in the <SYN>" (or the reverse) scaling is off: a peer that
/// does not offer it gets unscaled windows, and its window field is bytes.
#[test]
fn window_scaling_off_when_peer_does_not_offer() {
    let config = Config {
        timestamps: false,
        sack: false,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).wscale(default_shift()));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1).win(Config::default().recv_buffer_initial.min(65535) as u16));
    s.check("scaling not negotiated", |c| !c.negotiated().0);
    s.at(150).peer_sends(ack(1, 1).win(3000));
    s.at(200).app_send_n(5000);
    s.expect(data(1, 1, 1000))
        .expect(data(1001, 1, 1000))
        .expect(data(2001, 1, 1000));
    s.expect_nothing();
    s.done();
}

/// RFC 7323 §2.2: when we do not offer scaling, the peer's shift is ignored.
#[test]
fn window_scaling_off_when_we_do_not_offer() {
    let mut s = Script::connect(plain());
    s.expect(syn(0).no_wscale());
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000).wscale(7));
    s.expect(ack(1, 1).win(65535));
    s.at(150).peer_sends(ack(1, 1).win(3000));
    s.at(200).app_send_n(5000);
    s.expect(data(1, 1, 1000))
        .expect(data(1001, 1, 1000))
        .expect(data(2001, 1, 1000));
    s.expect_nothing();
    s.done();
}

/// RFC 7323 §2.2: "The window field in a segment where the SYN bit is set
/// MUST NOT be scaled": the SYN-ACK's 2000 means 2000 bytes, not 2000 << 7.
#[test]
fn syn_window_is_not_scaled() {
    let config = Config {
        timestamps: false,
        sack: false,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).win(65535));
    s.at(100)
        .peer_sends(syn_ack(0, 1).win(2000).mss(1000).wscale(7));
    s.expect(ack(1, 1));
    s.at(200).app_send_n(5000);
    s.expect(data(1, 1, 1000)).expect(data(1001, 1, 1000));
    s.expect_nothing();
    s.done();
}

/// RFC 7323 §2.3: a shift above 14 is used as 14: window field 1 means 16384 bytes.
#[test]
fn window_scale_above_14_is_used_as_14() {
    let config = Config {
        timestamps: false,
        sack: false,
        initial_window: 40,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0));
    s.at(100)
        .peer_sends(syn_ack(0, 1).win(65535).mss(1000).wscale(15));
    s.expect(ack(1, 1));
    s.at(150).peer_sends(ack(1, 1).win(1));
    s.at(200).app_send_n(40_000);
    let sent: usize = s.take_output().iter().map(|g| g.payload.len()).sum();
    assert!(
        (16_000..=16_384).contains(&sent),
        "sent {sent} bytes into a 16384-byte window"
    );
    s.done();
}

/// RFC 7323 §3.2 and §4.3: every segment carries TSval, and TSecr echoes the
/// peer's TSval of the segment being acknowledged.
#[test]
fn timestamps_echoed() {
    let mut s = established_ts();
    s.at(200).peer_sends(data(1, 1, 1000).ts(600, 100));
    s.expect_at(240, ack(1, 1001).ts(240, 600));
    s.at(300).app_send_n(10);
    s.expect(data(1, 1001, 10).ts(300, 600));
    s.done();
}

/// RFC 7323 §4.3 (delayed ACKs): TS.Recent is updated only by a segment
/// covering Last.ACK.sent, so a delayed ACK echoes the earliest unacknowledged segment.
#[test]
fn timestamps_echo_the_earliest_unacknowledged_segment() {
    let mut s = established_ts();
    s.at(200).peer_sends(data(1, 1, 1000).ts(600, 100));
    s.at(210).peer_sends(data(1001, 1, 1000).ts(610, 100));
    s.expect(ack(1, 2001).tsecr(600));
    s.done();
}

/// RFC 7323 §5.3 R1 (PAWS): a segment whose TSval is older than TS.Recent is
/// dropped and draws an ACK.
#[test]
fn paws_drops_old_timestamp() {
    let mut s = established_ts();
    s.at(200).peer_sends(data(1, 1, 100).ts(600, 100));
    s.expect_at(240, ack(1, 101).tsecr(600));
    s.at(300).peer_sends(data(101, 1, 100).ts(550, 100));
    s.expect(ack(1, 101).tsecr(600));
    s.check("the old segment's bytes were dropped", |c| {
        c.readable_len() == 100
    });
    s.at(310).peer_sends(data(101, 1, 100).ts(610, 100));
    s.expect_at(350, ack(1, 201).tsecr(610));
    s.done();
}

/// RFC 7323 §3.2: timestamps are used only if both SYNs carried them.
#[test]
fn timestamps_not_used_when_peer_does_not_offer() {
    let config = Config {
        sack: false,
        window_scaling: false,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).has_ts());
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1).no_ts());
    s.at(200).app_send_n(10);
    s.expect(data(1, 1, 10).no_ts());
    s.done();
}

/// RFC 2018 §2: SACK blocks are sent only if the peer sent SACK-permitted.
#[test]
fn sack_not_used_when_peer_does_not_offer() {
    let config = Config {
        timestamps: false,
        window_scaling: false,
        ..Config::default()
    };
    let mut s = established_with(config, syn_ack(0, 1).mss(1000));
    s.check("SACK not negotiated", |c| !c.negotiated().2);
    s.at(200).peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 1).no_sack());
    s.done();
}

/// RFC 2018 §4: out-of-order data is reported in SACK blocks, the block with
/// the most recently received segment first; filled holes merge blocks; the
/// cumulative ACK that covers everything carries no SACK.
#[test]
fn sack_blocks_for_out_of_order_data_latest_first() {
    let mut s = established_sack(Algorithm::NewReno);
    s.at(200).peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 1).sack(&[(1001, 2001)]));
    s.at(210).peer_sends(data(3001, 1, 1000));
    s.expect(ack(1, 1).sack(&[(3001, 4001), (1001, 2001)]));
    s.at(220).peer_sends(data(2001, 1, 1000));
    s.expect(ack(1, 1).sack(&[(1001, 4001)]));
    s.at(230).peer_sends(data(1, 1, 1000));
    s.expect(ack(1, 4001).no_sack());
    s.app_recv_n(4000);
    s.expect(ack(1, 4001).win(65535)); // window update
    s.done();
}

/// RFC 2018 §3: at most four blocks fit; RFC 2018 §4 the latest first, then
/// the most recently reported others.
#[test]
fn sack_at_most_four_blocks_without_timestamps() {
    let mut s = established_sack(Algorithm::NewReno);
    for (i, start) in [1001u32, 3001, 5001, 7001, 9001].into_iter().enumerate() {
        s.at(200 + i as u64).peer_sends(data(start, 1, 1000));
        s.discard_output();
    }
    s.at(210).peer_sends(data(9001, 1, 1000));
    s.expect(ack(1, 1).sack(&[(9001, 10001), (7001, 8001), (5001, 6001), (3001, 4001)]));
    s.done();
}

/// RFC 2018 §3 / RFC 7323: with the 10-byte timestamp option only three SACK blocks fit.
#[test]
fn sack_at_most_three_blocks_with_timestamps() {
    let config = Config {
        window_scaling: false,
        ..Config::default()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).sack_ok().has_ts());
    s.at(100)
        .peer_sends(syn_ack(0, 1).mss(1000).sack_ok().ts(500, 0));
    s.expect(ack(1, 1).has_ts());
    for (i, start) in [1001u32, 3001, 5001, 7001].into_iter().enumerate() {
        s.at(200 + i as u64)
            .peer_sends(data(start, 1, 1000).ts(600 + i as u32, 100));
        s.discard_output();
    }
    s.at(210).peer_sends(data(7001, 1, 1000).ts(610, 100));
    s.expect(
        ack(1, 1)
            .sack(&[(7001, 8001), (5001, 6001), (3001, 4001)])
            .has_ts(),
    );
    s.done();
}

// ===================================================================
// Retransmission (RFC 6298) and loss recovery (RFC 5681, 6582, 6675)
// ===================================================================

/// RFC 6298 §5.4-§5.6: on timeout retransmit the earliest unacknowledged
/// segment, double the RTO (300 ms -> 600 -> 1200 -> 2400), restart the timer.
#[test]
fn retransmission_timeout_with_exponential_backoff() {
    let mut s = established(plain());
    s.at(200).app_send_n(1000);
    s.expect(data(1, 1, 1000));
    s.expect_at(500, data(1, 1, 1000));
    s.check("RTO 600 ms", |c| c.rto() == Duration::from_millis(600));
    s.expect_at(1_100, data(1, 1, 1000));
    s.check("RTO 1200 ms", |c| c.rto() == Duration::from_millis(1200));
    s.expect_at(2_300, data(1, 1, 1000));
    s.expect_at(4_700, data(1, 1, 1000));
    s.at(4_750).peer_sends(ack(1, 1001));
    s.expect_nothing_until(20_000);
    s.done();
}

/// RFC 6298 §3 (Karn): no RTT sample from a retransmitted segment; the
/// backed-off RTO stays until a segment sent once is acknowledged.
#[test]
fn karn_no_rtt_sample_from_retransmission() {
    let mut s = established(plain());
    s.at(200).app_send_n(1000);
    s.expect(data(1, 1, 1000));
    s.expect_at(500, data(1, 1, 1000));
    s.at(550).peer_sends(ack(1, 1001));
    s.check("backed-off RTO kept (no sample)", |c| {
        c.rto() == Duration::from_millis(600)
    });
    s.at(600).app_send_n(1000);
    s.expect(data(1001, 1, 1000));
    s.at(700).peer_sends(ack(1, 2001));
    // A fresh 100 ms sample: SRTT 100, RTTVAR 37.5, RTO 250 ms.
    s.check("RTO from the new sample", |c| {
        c.rto() == Duration::from_micros(250_000)
    });
    s.done();
}

/// RFC 6298 §5.3: an ACK of new data restarts the timer (now + RTO) while
/// data is still outstanding.
#[test]
fn retransmission_timer_restarts_on_ack() {
    let mut s = established(Config {
        nodelay: true,
        ..plain()
    });
    s.at(200).app_send_n(100);
    s.expect(data(1, 1, 100));
    s.at(250).app_send_n(100);
    s.expect(data(101, 1, 100));
    s.at(400).peer_sends(ack(1, 101));
    let now = s.now;
    s.check("timer restarted at now + RTO", |c| {
        c.poll_timeout() == Some(now + c.rto())
    });
    s.done();
}

/// Config::data_retries (RFC 1122 §4.2.3.5 R2): after that many
/// retransmissions the connection gives up: CLOSED, TimedOut.
#[test]
fn data_retransmission_gives_up() {
    let mut s = established(Config {
        data_retries: 3,
        ..plain()
    });
    s.at(200).app_send_n(1000);
    s.expect(data(1, 1, 1000));
    s.expect_at(500, data(1, 1, 1000));
    s.expect_at(1_100, data(1, 1, 1000));
    s.expect_at(2_300, data(1, 1, 1000));
    s.expect_nothing_until(4_700);
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::TimedOut));
    s.app_recv_err(RecvError::Closed(CloseReason::TimedOut));
    s.expect_nothing_until(100_000);
    s.done();
}

/// RFC 5681 §3.1 eq. 4 (ssthresh = max(FlightSize/2, 2*SMSS), cwnd = 1 SMSS
/// after an RTO) and §3.1 (slow start again): one segment, then two.
#[test]
fn retransmission_timeout_collapses_cwnd() {
    let mut s = established(Config {
        trace: true,
        ..newreno()
    });
    s.at(200).app_send_n(4000);
    for i in 0..4u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.expect_at(500, data(1, 1, 1000));
    s.expect_nothing();
    s.check("cwnd 1 segment", |c| c.congestion_window() == 1000);
    assert_eq!(
        s.cwnd_trace().last(),
        Some(&(1000, 2000)),
        "ssthresh = FlightSize/2"
    );
    s.at(550).peer_sends(ack(1, 1001));
    s.expect(data(1001, 1, 1000)).expect(data(2001, 1, 1000));
    s.expect_nothing();
    s.done();
}

/// RFC 5681 §3.2 steps 1-2: the third duplicate ACK triggers a retransmission
/// of the first unacknowledged segment; ssthresh = max(FlightSize/2, 2*SMSS).
#[test]
fn fast_retransmit_after_three_duplicate_acks() {
    let mut s = established(Config {
        trace: true,
        ..newreno()
    });
    s.at(200).app_send_n(4000);
    for i in 0..4u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300).peer_sends(ack(1, 1));
    s.peer_sends(ack(1, 1));
    s.expect_nothing();
    s.peer_sends(ack(1, 1));
    s.expect(data(1, 1, 1000));
    assert_eq!(
        s.cwnd_trace().last().map(|&(_, ss)| ss),
        Some(2000),
        "ssthresh = FlightSize/2"
    );
    s.at(400).peer_sends(ack(1, 4001));
    s.expect_nothing_until(5_000);
    s.done();
}

/// RFC 5681 §2 (DUPLICATE ACKNOWLEDGMENT): an ACK that carries data or changes
/// the window is not a duplicate; only three true duplicates trigger fast retransmit.
#[test]
fn only_true_duplicate_acks_count() {
    let mut s = established(newreno());
    s.at(200).app_send_n(4000);
    for i in 0..4u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300).peer_sends(ack(1, 1).win(60000)); // window update
    s.peer_sends(data(1, 1, 10).win(60000)); // carries data
    s.peer_sends(ack(11, 1).win(60000)); // duplicate 1
    s.peer_sends(ack(11, 1).win(60000)); // duplicate 2
    s.expect_nothing();
    s.peer_sends(ack(11, 1).win(60000)); // duplicate 3
    s.expect(data(1, 11, 1000));
    s.done();
}

/// RFC 6582 §3.2 step 5 (NewReno partial ACK): an ACK that covers some but
/// not all of the data outstanding at loss retransmits the next unacknowledged segment at once.
#[test]
fn newreno_partial_ack_retransmits_next_hole() {
    let mut s = established(newreno());
    s.at(200).app_send_n(6000);
    for i in 0..6u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300);
    for _ in 0..3 {
        s.peer_sends(ack(1, 1));
    }
    s.expect(data(1, 1, 1000));
    s.at(400).peer_sends(ack(1, 2001));
    s.expect(data(2001, 1, 1000));
    s.at(500).peer_sends(ack(1, 6001));
    s.expect_nothing_until(5_000);
    s.done();
}

/// RFC 6582 §3.2 step 3 (full acknowledgment): cwnd becomes either
/// min(ssthresh, max(FlightSize, SMSS) + SMSS) or ssthresh; here ssthresh =
/// 3000, FlightSize 0, so 2000 or 3000.
#[test]
fn newreno_full_ack_ends_recovery_with_rfc_6582_window() {
    let mut s = established(newreno());
    s.at(200).app_send_n(6000);
    for i in 0..6u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300);
    for _ in 0..3 {
        s.peer_sends(ack(1, 1));
    }
    s.expect(data(1, 1, 1000));
    s.at(400).peer_sends(ack(1, 6001));
    s.check("cwnd 2000 or 3000", |c| {
        [2000, 3000].contains(&c.congestion_window())
    });
    s.done();
}

/// RFC 5681 §3.2 steps 3-5: cwnd = ssthresh + 3*SMSS after the retransmit,
/// +1 SMSS for each further duplicate ACK ("MUST"), and new data SHOULD go
/// out when cwnd allows: with 10 segments outstanding and ssthresh 5, the
/// 6th duplicate ACK lets a new segment out.
#[test]
fn newreno_duplicate_acks_inflate_the_window() {
    let mut s = established(newreno());
    s.at(200).app_send_n(20_000);
    for i in 0..10u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300);
    let mut out = Vec::new();
    for _ in 0..9 {
        s.peer_sends(ack(1, 1));
        out.extend(s.take_output());
    }
    let rel = |g: &Segment| g.header.seq.0.wrapping_sub(LOCAL_ISN);
    assert_eq!(
        out.iter().filter(|g| rel(g) == 1).count(),
        1,
        "one fast retransmission: {out:?}"
    );
    assert!(
        out.iter()
            .any(|g| rel(g) >= 10_001 && !g.payload.is_empty()),
        "new data during recovery: {out:?}"
    );
    s.discard_output();
    s.done();
}

/// RFC 9438 §4.6: CUBIC's multiplicative decrease: ssthresh = cwnd * 0.7.
#[test]
fn cubic_reduces_cwnd_by_beta_on_loss() {
    let mut s = established(Config {
        trace: true,
        congestion: Algorithm::Cubic,
        ..plain()
    });
    s.check("IW 10 segments", |c| c.congestion_window() == 10_000);
    s.at(200).app_send_n(10_000);
    for i in 0..10u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300);
    for _ in 0..3 {
        s.peer_sends(ack(1, 1));
    }
    s.expect(data(1, 1, 1000));
    assert_eq!(
        s.cwnd_trace().last().map(|&(_, ss)| ss),
        Some(7000),
        "ssthresh = 0.7 * cwnd"
    );
    s.check("cwnd reduced to 0.7 * 10 segments", |c| {
        c.congestion_window() <= 7000
    });
    s.done();
}

/// RFC 6675 §5 / §4 IsLost: with SACK, a hole with DupThresh segments SACKed
/// above it is lost: one duplicate ACK SACKing three segments starts recovery
/// by retransmitting it. The last segment, above the highest SACKed byte, is
/// not lost (NextSeg rules 1.b and 3), and cwnd (2500) less pipe (2000) has
/// no room for it anyway (§5 step C).
#[test]
fn sack_detects_loss_from_sacked_segments() {
    let mut s = established_sack(Algorithm::NewReno);
    s.at(200).app_send_n(5000);
    for i in 0..5u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300).peer_sends(ack(1, 1).sack(&[(1001, 4001)]));
    s.expect(data(1, 1, 1000));
    s.done();
}

/// RFC 6675 §5-§6 (SACK-based loss recovery, NextSeg with HighRxt): each
/// hole is retransmitted once, when IsLost says so, and nothing else: at the
/// third duplicate only segment 1 (cwnd 3000 = pipe), at the fourth ACK
/// segment 3 (now three SACKed segments above it), nothing on the partial ACK.
#[test]
fn sack_recovery_retransmits_only_the_holes() {
    let mut s = established_sack(Algorithm::NewReno);
    s.at(200).app_send_n(6000);
    for i in 0..6u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    // Segments 1 (1:1001) and 3 (2001:3001) are lost.
    s.at(300).peer_sends(ack(1, 1).sack(&[(1001, 2001)]));
    s.peer_sends(ack(1, 1).sack(&[(3001, 4001), (1001, 2001)]));
    s.peer_sends(ack(1, 1).sack(&[(3001, 5001), (1001, 2001)]));
    s.expect(data(1, 1, 1000));
    let mut out = s.take_output();
    s.peer_sends(ack(1, 1).sack(&[(3001, 6001), (1001, 2001)]));
    out.extend(s.take_output());
    s.at(400).peer_sends(ack(1, 2001).sack(&[(3001, 6001)]));
    out.extend(s.take_output());
    let rel: Vec<(u32, usize)> = out
        .iter()
        .map(|g| (g.header.seq.0.wrapping_sub(LOCAL_ISN), g.payload.len()))
        .collect();
    assert_eq!(
        rel,
        vec![(2001, 1000)],
        "only the second hole is retransmitted, once"
    );
    s.at(450).peer_sends(ack(1, 6001));
    s.expect_nothing_until(5_000);
    s.done();
}

/// SACK recovery with tracing on (for `cwnd_trace`) and the given switches.
fn established_sack_traced(tlp: bool, early: bool) -> Script {
    let config = Config {
        timestamps: false,
        window_scaling: false,
        congestion: Algorithm::NewReno,
        trace: true,
        tail_loss_probe: tlp,
        early_retransmit: early,
        ..Config::default()
    };
    established_with(config, syn_ack(0, 1).mss(1000).sack_ok())
}

/// At 200 ms the application writes 2000 bytes: two segments go out.
fn two_segments_out(s: &mut Script) {
    s.at(200).app_send_n(2000);
    s.expect(data(1, 1, 1000));
    s.expect(data(1001, 1, 1000));
}

/// Two segments out and nothing answers: no probe, the retransmission
/// timeout (300 ms after the send) resends from SND.UNA.
fn only_the_timeout_resends(mut s: Script) {
    two_segments_out(&mut s);
    assert_eq!(s.expect_next(1_000, data(1, 1, 1000)), 500, "the RTO");
    s.check("no probe", |c| c.loss_probes() == 0);
    s.done();
}

/// RFC 8985 §7.2-7.3 (tail loss probe) with RFC 5827 §3.2 (early
/// retransmit, SACK): both segments of a two-segment flight are lost and no
/// ACK comes. SRTT is 100 ms (the handshake), so the probe timeout, 2*SRTT
/// plus 2 ms = 202 ms after the send, comes before the RTO (300 ms): the last segment
/// goes again. The peer SACKs it; with two segments out one SACKed segment
/// is enough (early retransmit), and the first goes at once, long before
/// the retransmission timeout.
#[test]
fn tail_loss_probe_and_early_retransmit_repair_a_lost_tail() {
    let mut s = established_sack_traced(true, true);
    two_segments_out(&mut s);
    let probe = s.expect_next(1_000, data(1001, 1, 1000));
    assert_eq!(probe, 402, "probe at 2*SRTT + 2 ms after the send");
    s.check("one probe", |c| c.loss_probes() == 1);
    let c = s.conn();
    let traced: Vec<TraceEvent> = std::iter::from_fn(|| c.poll_trace())
        .filter(|e| {
            matches!(
                e,
                TraceEvent::LossProbe { .. }
                    | TraceEvent::Retransmit { .. }
                    | TraceEvent::TimerFired { .. }
            )
        })
        .collect();
    assert!(
        matches!(
            traced.as_slice(),
            [
                TraceEvent::TimerFired {
                    timer: TimerKind::LossProbe,
                    ..
                },
                TraceEvent::LossProbe { len: 1000, .. }
            ]
        ),
        "the trace shows the probe timer and the probe: {traced:?}"
    );
    s.at(450).peer_sends(ack(1, 1).sack(&[(1001, 2001)]));
    s.expect(data(1, 1, 1000));
    s.at(500).peer_sends(ack(1, 2001));
    s.expect_nothing_until(5_000);
    s.check("one probe, no timeout", |c| c.loss_probes() == 1);
    s.done();
}

/// RFC 8985 §7.3: with data waiting that cwnd holds back (ten segments out,
/// IW10, two more queued) and room in the peer's window, the probe is one
/// segment of new data, past cwnd, not a repeat of the last one.
#[test]
fn tail_loss_probe_sends_new_data_when_the_window_allows() {
    let mut s = established_sack_traced(true, true);
    s.at(200).app_send_n(12_000);
    for i in 0..10u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.expect_nothing();
    assert_eq!(s.expect_next(1_000, data(10_001, 1, 1000)), 402);
    s.check("one probe", |c| c.loss_probes() == 1);
    s.expect_nothing();
    s.done();
}

/// RFC 8985 §7.2-7.3: one probe per flight. The probe above goes
/// unanswered: no second probe; the retransmission timer restarted with the
/// probe (300 ms from 402) resends from SND.UNA.
#[test]
fn tail_loss_probe_at_most_one_per_flight() {
    let mut s = established_sack_traced(true, true);
    two_segments_out(&mut s);
    assert_eq!(s.expect_next(1_000, data(1001, 1, 1000)), 402);
    assert_eq!(s.expect_next(1_000, data(1, 1, 1000)), 702, "then the RTO");
    s.check("still one probe", |c| c.loss_probes() == 1);
    s.done();
}

/// RFC 8985 §7.2: with one segment in flight the probe timeout adds the
/// worst-case delayed ACK (200 ms): 2*SRTT + 200 ms = 400 ms, later than
/// the retransmission timeout (300 ms), which therefore goes first, and no
/// probe is sent.
#[test]
fn no_tail_loss_probe_when_the_timeout_comes_first() {
    let mut s = established_sack_traced(true, true);
    s.at(200).app_send_n(1000);
    s.expect(data(1, 1, 1000));
    assert_eq!(s.expect_next(1_000, data(1, 1, 1000)), 500, "the RTO");
    s.check("no probe", |c| c.loss_probes() == 0);
    s.done();
}

/// RFC 8985 §7: without SACK the probe's answer could not say what is
/// missing, so no probe is sent: the timeout resends.
#[test]
fn no_tail_loss_probe_without_sack() {
    only_the_timeout_resends(established(newreno()));
}

/// Config::tail_loss_probe off: the timeout resends.
#[test]
fn tail_loss_probe_can_be_switched_off() {
    only_the_timeout_resends(established_sack_traced(false, true));
}

/// RFC 8985 §7.4: a probe that resent data and is acknowledged without a
/// D-SACK repaired a loss: the window is reduced once (NewReno: ssthresh =
/// FlightSize / 2 = 1000, at least 2*SMSS = 2000).
#[test]
fn tail_loss_probe_that_repairs_a_loss_reduces_the_window() {
    let mut s = established_sack_traced(true, true);
    two_segments_out(&mut s);
    let _ = s.cwnd_trace();
    assert_eq!(s.expect_next(1_000, data(1001, 1, 1000)), 402);
    s.at(450).peer_sends(ack(1, 2001));
    s.expect_nothing_until(5_000);
    assert_eq!(
        s.cwnd_trace().last().map(|&(_, ssthresh)| ssthresh),
        Some(2000),
        "one reduction"
    );
    s.done();
}

/// RFC 8985 §7.4 with RFC 2883: the probe's ACK carries a D-SACK for it
/// (a first block below the cumulative ACK): both copies arrived, nothing
/// was lost, the window stays.
#[test]
fn tail_loss_probe_answered_by_a_dsack_keeps_the_window() {
    let mut s = established_sack_traced(true, true);
    two_segments_out(&mut s);
    let _ = s.cwnd_trace();
    assert_eq!(s.expect_next(1_000, data(1001, 1, 1000)), 402);
    s.at(450).peer_sends(ack(1, 2001).sack(&[(1001, 2001)]));
    s.expect_nothing_until(5_000);
    assert!(
        s.cwnd_trace().iter().all(|&(_, ssthresh)| ssthresh > 2000),
        "no reduction"
    );
    s.done();
}

/// RFC 5827 §3.1 (early retransmit without SACK): two segments out, the
/// first lost: one duplicate ACK is the threshold (outstanding - 1), so the
/// first is resent at once, not after three duplicates that cannot come.
#[test]
fn early_retransmit_after_one_duplicate_with_two_segments_out() {
    let mut s = established(newreno());
    two_segments_out(&mut s);
    s.at(300).peer_sends(ack(1, 1));
    s.expect(data(1, 1, 1000));
    s.done();
}

/// RFC 5827 §3.1: not while more data waits to be sent (three duplicate
/// ACKs may still come), nor with four or more segments out.
#[test]
fn no_early_retransmit_with_data_waiting_or_four_segments_out() {
    let mut s = established(newreno());
    // Two segments in flight (the peer's window holds two), more queued:
    // the window keeps the rest back, which early retransmit counts as
    // nothing more to send, so one duplicate is enough here...
    s.at(150).peer_sends(ack(1, 1).win(2000));
    s.at(200).app_send_n(3000);
    s.expect(data(1, 1, 1000));
    s.expect(data(1001, 1, 1000));
    s.at(300).peer_sends(ack(1, 1).win(2000));
    s.expect(data(1, 1, 1000));
    s.done();

    // ...while four segments out need the usual three duplicates.
    let mut s = established(newreno());
    s.at(200).app_send_n(4000);
    for i in 0..4u32 {
        s.expect(data(1 + i * 1000, 1, 1000));
    }
    s.at(300).peer_sends(ack(1, 1));
    s.peer_sends(ack(1, 1));
    s.expect_nothing();
    s.peer_sends(ack(1, 1));
    s.expect(data(1, 1, 1000));
    s.done();
}

/// Config::early_retransmit off: two segments out, one duplicate ACK is
/// not enough.
#[test]
fn early_retransmit_can_be_switched_off() {
    let mut s = established(Config {
        early_retransmit: false,
        ..newreno()
    });
    two_segments_out(&mut s);
    s.at(300).peer_sends(ack(1, 1));
    s.expect_nothing();
    s.done();
}

// ===================================================================
// Flow control: zero window, persist timer, SWS avoidance
// ===================================================================

/// RFC 9293 §3.8.6.1 / RFC 1122 §4.2.2.17: with a zero window the sender
/// probes (one byte) after about an RTO, backing off exponentially; a window
/// update resumes sending at once.
#[test]
fn zero_window_probe_then_window_update() {
    let mut s = established(plain());
    s.at(150).peer_sends(ack(1, 1).win(0));
    s.at(200).app_send_n(500);
    s.expect_nothing();
    let first = s.expect_next(5_000, data(1, 1, 1));
    assert!(
        (450..=500).contains(&first),
        "first probe after one RTO (300 ms): at {first}"
    );
    s.at(first + 10).peer_sends(ack(1, 1).win(0));
    let second = s.expect_next(10_000, data(1, 1, 1));
    assert!(
        second - first >= 600,
        "probe interval backs off: {first} -> {second}"
    );
    s.at(second + 10).peer_sends(ack(1, 1).win(1000));
    s.expect(data(1, 1, 500));
    s.done();
}

/// RFC 9293 §3.8.6.1: while the window stays zero only probes go out, with
/// growing intervals, however many zero-window ACKs answer them (they are not
/// duplicate ACKs that could trigger a retransmission into the zero window).
#[test]
fn zero_window_probes_never_send_more_than_a_byte() {
    let mut s = established(plain());
    s.at(150).peer_sends(ack(1, 1).win(0));
    s.at(200).app_send_n(500);
    let mut last = 0;
    let mut gap = 0;
    for round in 0..5 {
        let t = s.expect_next(200_000, data(1, 1, 1));
        if round > 0 {
            assert!(t - last > gap, "intervals grow: {gap} then {}", t - last);
            gap = t - last;
        }
        last = t;
        s.at(t + 10).peer_sends(ack(1, 1).win(0));
        s.expect_nothing();
    }
    s.done();
}

/// RFC 9293 §3.8.6.2.2 (receiver SWS avoidance): the right window edge stays
/// put until the window can open by min(RCV.BUFF/2, MSS): reading 500 of a
/// full 4000-byte buffer (MSS 1000) still advertises zero; reading enough
/// sends a window update (RFC 1122 §4.2.3.3).
#[test]
fn receiver_sws_avoidance_keeps_small_windows_closed() {
    let config = Config {
        recv_buffer: 4000,
        recv_buffer_initial: 4000,
        mss: 1000,
        ..plain()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).win(4000).mss(1000));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1).win(4000));
    s.at(200).peer_sends(data(1, 1, 1000));
    s.peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 2001).win(2000));
    s.peer_sends(data(2001, 1, 1000));
    s.peer_sends(data(3001, 1, 1000));
    s.expect(ack(1, 4001).win(0));
    s.at(300).app_recv_n(500);
    s.expect_nothing();
    s.at(310).peer_sends(data(4001, 1, 1));
    s.expect(ack(1, 4001).win(0));
    s.at(320).app_recv_n(1500);
    s.expect(ack(1, 4001).win(2000));
    s.done();
}

/// RFC 9293 §3.8.6.2.2 / §3.10.7.4: the advertised window shrinks as data
/// arrives and is not read, down to zero; data beyond it is dropped and ACKed.
#[test]
fn receive_window_closes_as_the_buffer_fills() {
    let config = Config {
        recv_buffer: 3000,
        recv_buffer_initial: 3000,
        ..plain()
    };
    let mut s = Script::connect(config);
    s.expect(syn(0).win(3000));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1).win(3000));
    s.at(200).peer_sends(data(1, 1, 1000));
    s.peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 2001).win(1000));
    s.peer_sends(data(2001, 1, 1000));
    s.expect_at(240, ack(1, 3001).win(0));
    s.at(250).peer_sends(data(3001, 1, 500));
    s.expect(ack(1, 3001).win(0));
    s.check("3000 bytes readable, not more", |c| {
        c.readable_len() == 3000
    });
    s.done();
}

// ===================================================================
// Keepalive (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6)
// ===================================================================

/// RFC 1122 §4.2.3.6: keepalives MUST default to off: an idle connection sends nothing.
#[test]
fn keepalive_off_by_default() {
    let mut s = established(plain());
    s.expect_nothing_until(10 * 3600 * 1000);
    s.expect_state(State::Established);
    s.done();
}

/// RFC 9293 §3.8.4 / RFC 1122 §4.2.3.6: after the idle time a probe
/// <SEQ=SND.NXT-1> with no data goes out, then every interval; unanswered
/// probes end the connection (TimedOut).
#[test]
fn keepalive_probes_then_timeout() {
    let config = Config {
        keepalive: Some((Duration::from_secs(10), Duration::from_secs(1), 3)),
        ..plain()
    };
    let mut s = established(config);
    s.expect_at(10_100, ack(0, 1));
    s.expect_at(11_100, ack(0, 1));
    s.expect_at(12_100, ack(0, 1));
    s.expect_nothing_until(13_100);
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::TimedOut));
    s.done();
}

/// RFC 1122 §4.2.3.6: an answered probe starts a new idle period.
#[test]
fn keepalive_answered_restarts_idle_time() {
    let config = Config {
        keepalive: Some((Duration::from_secs(10), Duration::from_secs(1), 3)),
        ..plain()
    };
    let mut s = established(config);
    s.expect_at(10_100, ack(0, 1));
    s.at(10_150).peer_sends(ack(1, 1));
    s.expect_nothing();
    s.expect_at(20_150, ack(0, 1));
    s.expect_state(State::Established);
    s.done();
}

// ===================================================================
// TIME-WAIT reuse (RFC 6191)
// ===================================================================

/// Reaches TIME-WAIT with timestamps: the peer's last TSval (TS.Recent) is 1100
/// and RCV.NXT is 102 (relative).
fn time_wait_with_timestamps() -> Script {
    let mut s = established_ts();
    s.at(200).peer_sends(data(1, 1, 100).ts(1000, 100));
    s.app_recv_n(100);
    s.expect_at(240, ack(1, 101).tsecr(1000));
    s.at(300).app_close();
    s.expect(fin(1, 101));
    s.at(400).peer_sends(fin(101, 2).ts(1100, 300));
    s.expect(ack(2, 102).tsecr(1100));
    s.expect_state(State::TimeWait);
    s
}

/// Reaches TIME-WAIT without timestamps (RCV.NXT is 2, relative), our config offering them or not.
fn time_wait_without_timestamps(config: Config) -> Script {
    let mut s = established(config);
    s.at(200).app_close();
    s.expect(fin(1, 1));
    s.at(300).peer_sends(fin(1, 2));
    s.expect(ack(2, 2));
    s.expect_state(State::TimeWait);
    s
}

/// RFC 6191 §2: with timestamps, a SYN whose TSval is newer than TS.Recent may
/// reuse the TIME-WAIT 4-tuple, whatever its sequence number; an older one may not.
#[test]
fn time_wait_reuse_by_timestamp() {
    let mut s = time_wait_with_timestamps();
    let newer = s.header_of(syn(0).ts(1200, 0));
    assert!(
        s.conn().time_wait_allows_reuse(&newer),
        "newer TSval, lower sequence number"
    );
    let older = s.header_of(syn(200_000).ts(1000, 0));
    assert!(
        !s.conn().time_wait_allows_reuse(&older),
        "older TSval, higher sequence number"
    );
    s.done();
}

/// RFC 6191 §2: with timestamps, an equal TSval and a sequence number above
/// the last seen honours the SYN.
#[test]
fn time_wait_reuse_equal_timestamp_higher_sequence() {
    let mut s = time_wait_with_timestamps();
    let equal = s.header_of(syn(200_000).ts(1100, 0));
    assert!(s.conn().time_wait_allows_reuse(&equal));
    s.done();
}

/// RFC 6191 §2: a SYN without timestamps falls back to the sequence-number rule.
#[test]
fn time_wait_reuse_syn_without_timestamps_uses_sequence() {
    let mut s = time_wait_with_timestamps();
    let higher = s.header_of(syn(200_000));
    assert!(s.conn().time_wait_allows_reuse(&higher));
    let lower = s.header_of(syn(50));
    assert!(!s.conn().time_wait_allows_reuse(&lower));
    s.done();
}

/// RFC 6191 §2 (previous incarnation without timestamps, new one without):
/// a sequence number above the last one seen honours the SYN; below does not.
#[test]
fn time_wait_reuse_by_sequence_number() {
    let mut s = time_wait_without_timestamps(plain());
    let higher = s.header_of(syn(100_000));
    assert!(s.conn().time_wait_allows_reuse(&higher));
    let lower = s.header_of(syn(0));
    assert!(!s.conn().time_wait_allows_reuse(&lower));
    s.done();
}

/// RFC 6191 §2: "If the previous incarnation of the connection did not use
/// Timestamps ... If TCP Timestamps would be enabled for the new incarnation
/// of the connection, honor the incoming connection request", whatever its sequence number.
#[test]
fn time_wait_reuse_when_new_syn_brings_timestamps() {
    let config = Config {
        sack: false,
        window_scaling: false,
        ..Config::default()
    };
    let mut s = time_wait_without_timestamps(config);
    s.check("previous incarnation without timestamps", |c| {
        !c.negotiated().1
    });
    let with_ts = s.header_of(syn(0).ts(5, 0));
    assert!(s.conn().time_wait_allows_reuse(&with_ts));
    s.done();
}

/// RFC 6191 applies to TIME-WAIT only.
#[test]
fn time_wait_reuse_only_in_time_wait() {
    let mut s = established(plain());
    let h = s.header_of(syn(100_000));
    assert!(!s.conn().time_wait_allows_reuse(&h));
    s.done();
}

// ===================================================================
// Sequence number wraparound (RFC 9293 §3.4: arithmetic modulo 2^32)
// ===================================================================

/// RFC 9293 §3.4: our ISN 1024 below 2^32: data, ACKs and FIN across the wrap.
#[test]
fn wraparound_sending() {
    let mut s = Script::connect_with(plain(), 0xFFFF_FC00, PEER_ISN);
    s.expect(syn(0));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000));
    s.expect(ack(1, 1));
    s.at(200).app_send_n(3000);
    s.expect(data(1, 1, 1000))
        .expect(data(1001, 1, 1000))
        .expect(data(2001, 1, 1000));
    s.at(300).peer_sends(ack(1, 1001));
    s.peer_sends(ack(1, 3001));
    s.check("all acknowledged", |c| {
        c.send_queued() == 0 && c.poll_timeout().is_none()
    });
    s.app_close();
    s.expect(fin(3001, 1));
    s.at(400).peer_sends(fin(1, 3002));
    s.expect(ack(3002, 2));
    s.expect_state(State::TimeWait);
    s.done();
}

/// RFC 9293 §3.4: the peer's ISN 1024 below 2^32: in-order, out-of-order and
/// hole-filling data across the wrap.
#[test]
fn wraparound_receiving() {
    let mut s = Script::accept_syn_with(plain(), LOCAL_ISN, 0xFFFF_FC00, syn(0).mss(1000));
    s.expect(syn_ack(0, 1));
    s.at(100).peer_sends(ack(1, 1));
    s.at(200).peer_sends(data(1001, 1, 1000));
    s.expect(ack(1, 1));
    s.peer_sends(data(1, 1, 1000));
    s.expect(ack(1, 2001));
    s.peer_sends(data(2001, 1, 1000));
    s.expect_at(240, ack(1, 3001));
    s.app_recv_n(3000);
    s.expect(ack(1, 3001).win(65535)); // window update
    s.done();
}

/// RFC 9293 §3.3.1 / §3.10.7.4: the receive window is RCV.NXT..RCV.NXT+RCV.WND
/// whatever the peer's ISN; with the peer's ISN in the upper half of the
/// sequence space, data far beyond the window must still be dropped (and not
/// SACKed).
#[test]
fn high_peer_isn_window_still_bounds_acceptance() {
    let config = Config {
        timestamps: false,
        window_scaling: false,
        ..Config::default()
    };
    let mut s = Script::connect_with(config, LOCAL_ISN, 0x9000_0000);
    s.expect(syn(0));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000).sack_ok());
    s.expect(ack(1, 1));
    s.at(200).peer_sends(data(10_000_000, 1, 100));
    s.expect(ack(1, 1).no_sack());
    s.done();
}

/// RFC 7323 §2.3: the window field is the free buffer >> shift, whatever the peer's ISN.
#[test]
fn high_peer_isn_first_window_is_the_buffer() {
    let config = Config {
        timestamps: false,
        sack: false,
        ..Config::default()
    };
    let mut s = Script::connect_with(config, LOCAL_ISN, 0x9000_0000);
    s.expect(syn(0));
    s.at(100).peer_sends(syn_ack(0, 1).mss(1000).wscale(7));
    s.expect(ack(1, 1).win(default_first_window()));
    s.done();
}

// ===================================================================
// A passive connection at work
// ===================================================================

/// RFC 9293 §3.10: a passive open through accept_syn exchanges data both ways and closes.
#[test]
fn passive_connection_request_response_close() {
    let mut s = accepted(plain());
    s.at(200).peer_sends(data(1, 1, 0).data(b"hello"));
    s.app_recv(b"hello");
    s.at(210).app_send(b"world");
    s.expect(data(1, 6, 5).data(b"world"));
    s.at(300).peer_sends(fin(6, 6));
    s.expect(ack(6, 7));
    s.app_recv_err(RecvError::Finished);
    s.app_close();
    s.expect(fin(6, 7));
    s.at(400).peer_sends(ack(7, 7));
    s.expect_state(State::Closed);
    s.expect_close_reason(Some(CloseReason::Normal));
    s.done();
}

/// RFC 9293 §3.8.4 / RFC 1122 §4.2.3.6: a peer's keepalive probe
/// (SEG.SEQ = RCV.NXT-1, with or without one garbage byte) is outside the
/// window and draws an ACK.
#[test]
fn answers_a_peer_keepalive_probe() {
    let mut s = established(plain());
    s.at(1_000).peer_sends(ack(0, 1));
    s.expect(ack(1, 1));
    s.at(5_000).peer_sends(data(0, 1, 1));
    s.expect(ack(1, 1));
    s.check("the garbage byte is not delivered", |c| {
        c.readable_len() == 0
    });
    s.done();
}

/// RFC 9293 §3.10.4 / RFC 6298 §5.4: in LAST-ACK an unacknowledged FIN is
/// retransmitted; its ACK closes the connection.
#[test]
fn last_ack_fin_retransmitted() {
    let mut s = established(plain());
    s.at(200).peer_sends(fin(1, 1));
    s.expect(ack(1, 2));
    s.at(250).app_close();
    s.expect(fin(1, 2));
    s.expect_state(State::LastAck);
    s.expect_at(550, fin(1, 2));
    s.at(600).peer_sends(ack(2, 2));
    s.expect_state(State::Closed);
    s.expect_nothing_until(100_000);
    s.done();
}

/// RFC 9293 §3.10.7.4 seventh (CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT):
/// "This should not occur since a FIN has been received": text after the
/// peer's FIN is ignored, not delivered.
#[test]
fn data_after_the_peers_fin_is_not_delivered() {
    let mut s = established(plain());
    s.at(200).peer_sends(fin(1, 1));
    s.expect(ack(1, 2));
    s.at(210).peer_sends(data(2, 1, 100));
    s.discard_output(); // an ACK is fine
    s.check("nothing readable", |c| c.readable_len() == 0);
    s.app_recv_err(RecvError::Finished);
    s.done();
}
