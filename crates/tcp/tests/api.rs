//! Application calls at the edges of the state machine.

use std::time::{Duration, Instant};

use oxcat_tcp::{Config, Connection, IsnGenerator, Listener, SeqNum, State};

/// Data queued in SYN-SENT and a shutdown before the handshake ends: the
/// data goes once connected, then the FIN (nothing is lost).
#[test]
fn shutdown_in_syn_sent_with_queued_data_sends_data_then_fin() {
    let t0 = Instant::now();
    let mut client = Connection::connect(Config::default(), t0, SeqNum(500));
    let mut listener: Listener<u8> =
        Listener::new(Config::default(), 4, IsnGenerator::new(1, t0), t0);
    assert_eq!(client.send(b"early bytes"), Ok(11));
    client.shutdown_write(t0);
    assert_eq!(
        client.state(),
        State::SynSent,
        "the FIN waits for the handshake"
    );
    let syn = client.poll_transmit(t0).expect("SYN");
    listener.handle_segment(t0, 1, &syn.header, &syn.payload);
    let (_, sa) = listener.poll_transmit(t0).expect("SYN-ACK");
    let t1 = t0 + Duration::from_millis(1);
    client.handle_segment(t1, &sa.header, &sa.payload);
    assert_eq!(client.state(), State::FinWait1);
    let mut sent = Vec::new();
    let mut fin = false;
    while let Some(seg) = client.poll_transmit(t1) {
        sent.extend_from_slice(&seg.payload);
        fin |= seg.header.flags.fin();
        listener.handle_segment(t1, 1, &seg.header, &seg.payload);
    }
    assert_eq!(sent, b"early bytes");
    assert!(fin, "the FIN followed the data");
    let (_, mut server) = listener.accept().expect("accepted");
    let mut buf = [0u8; 64];
    assert_eq!(server.recv(&mut buf), Ok(11));
    assert_eq!(&buf[..11], b"early bytes");
    assert_eq!(server.state(), State::CloseWait);
}

/// Without queued data, closing in SYN-SENT just stops (RFC 9293 §3.10.4).
#[test]
fn shutdown_in_syn_sent_without_data_closes() {
    let t0 = Instant::now();
    let mut client = Connection::connect(Config::default(), t0, SeqNum(500));
    client.shutdown_write(t0);
    assert_eq!(client.state(), State::Closed);
    assert!(client.poll_transmit(t0).is_none());
}

/// With TSO the sender's device cuts segments: new data goes out in
/// segments of whole MSS-sized pieces, up to the limit, and the receiver
/// takes them (as from GRO) and ACKs by the full segments they hold.
#[test]
fn tso_sends_whole_pieces_and_the_receiver_acks_them() {
    let t0 = Instant::now();
    let tso = Config {
        tso_max_payload: 60_000,
        ..Config::default()
    };
    let mut client = Connection::connect(tso, t0, SeqNum(1000));
    let mut listener: Listener<u8> =
        Listener::new(Config::default(), 4, IsnGenerator::new(3, t0), t0);
    let syn = client.poll_transmit(t0).expect("SYN");
    listener.handle_segment(t0, 1, &syn.header, &syn.payload);
    let (_, sa) = listener.poll_transmit(t0).expect("SYN-ACK");
    client.handle_segment(t0, &sa.header, &sa.payload);
    let ack = client.poll_transmit(t0).expect("ACK");
    listener.handle_segment(t0, 1, &ack.header, &ack.payload);
    let (_, mut server) = listener.accept().expect("accepted");
    let data = vec![7u8; 200_000];
    let taken = client.send(&data).unwrap();
    let piece = client.send_mss() - 12; // timestamps on every segment
    let first = client.poll_transmit(t0).expect("data");
    assert!(first.payload.len() > piece, "a segment larger than the MSS");
    assert_eq!(first.payload.len() % piece, 0, "whole pieces");
    assert!(first.payload.len() <= 60_000);
    server.handle_segment(t0, &first.header, &first.payload);
    let reply = server
        .poll_transmit(t0)
        .expect("an ACK at once: it held many full segments");
    assert_eq!(
        reply.header.ack.0,
        first.header.seq.0.wrapping_add(first.payload.len() as u32)
    );
    assert!(taken > 0);
}

/// An established pair: (client, server) with the handshake done.
fn established(t0: Instant) -> (Connection, Connection) {
    established_with(t0, Config::default(), Config::default(), SeqNum(1000))
}

/// An established (client, server) pair, the server through a listener.
fn established_with(
    t0: Instant,
    client_config: Config,
    server_config: Config,
    iss: SeqNum,
) -> (Connection, Connection) {
    let mut client = Connection::connect(client_config, t0, iss);
    let mut listener: Listener<u8> = Listener::new(server_config, 4, IsnGenerator::new(5, t0), t0);
    let syn = client.poll_transmit(t0).expect("SYN");
    listener.handle_segment(t0, 1, &syn.header, &syn.payload);
    let (_, sa) = listener.poll_transmit(t0).expect("SYN-ACK");
    client.handle_segment(t0, &sa.header, &sa.payload);
    let ack = client.poll_transmit(t0).expect("ACK");
    listener.handle_segment(t0, 1, &ack.header, &ack.payload);
    let (_, server) = listener.accept().expect("accepted");
    (client, server)
}

/// RFC 9293 §3.10.7.4's SND.WL1 rule alone ignores the window of a segment
/// whose SEQ is below one seen before; when it acknowledges new data, its
/// window is still the newest (Linux's tcp_may_update_window), or the
/// sender applies an old window from a newer SND.UNA and overruns the peer.
#[test]
fn a_new_ack_updates_the_window_whatever_its_seq() {
    let t0 = Instant::now();
    let (mut client, mut server) = established(t0);
    server.set_nodelay(true);
    server.send(&[1u8; 100]).unwrap();
    let d1 = server.poll_transmit(t0).expect("first data segment");
    server.send(&[2u8; 100]).unwrap();
    let d2 = server.poll_transmit(t0).expect("second data segment");
    // The later segment arrives first (a probe that overtook): SND.WL1 moves to it.
    client.handle_segment(t0, &d2.header, &d2.payload);
    let wide = client.send_window();
    assert!(wide > 60_000, "{wide}");
    // The client sends; the earlier segment comes again, now acknowledging
    // that data and shrinking the window.
    client.send(&[3u8; 2000]).unwrap();
    let mut sent_end = 0u32;
    while let Some(seg) = client.poll_transmit(t0) {
        sent_end = seg.header.seq.0.wrapping_add(seg.payload.len() as u32);
    }
    let mut again = d1.header;
    again.ack = SeqNum(sent_end);
    again.window = 2;
    client.handle_segment(t0, &again, &d1.payload);
    assert_eq!(
        client.send_window(),
        2 << 7,
        "the window of the ACK for new data was ignored"
    );
}

/// Sender SWS avoidance holds a segment smaller than the MSS, but with
/// nothing in flight something must fire later (§3.8.6.2.1's override
/// timeout), or the connection stalls for good.
#[test]
fn a_small_window_with_nothing_in_flight_does_not_stall() {
    let t0 = Instant::now();
    let (mut client, mut server) = established(t0);
    // The server's application stopped reading: it advertises 256 bytes.
    server.send(&[9u8; 10]).unwrap();
    let s = server.poll_transmit(t0).expect("server segment");
    let mut small = s.header;
    small.window = 2; // << 7 = 256 bytes, under one MSS
    client.handle_segment(t0, &small, &s.payload);
    // Drain what the client owes (an ACK), then queue more than fits.
    while client.poll_transmit(t0).is_some() {}
    client.send(&[4u8; 10_000]).unwrap();
    let first = client.poll_transmit(t0);
    assert!(
        first.is_none() || first.as_ref().is_some_and(|f| f.payload.len() <= 256),
        "more than the window went out"
    );
    if first.is_none() {
        // Timers fire in turn (a delayed ACK may come first); data must follow.
        let mut data = None;
        for _ in 0..5 {
            let when = client
                .poll_timeout()
                .expect("a timer to override the hold (else the connection stalls)");
            client.handle_timeout(when);
            while let Some(seg) = client.poll_transmit(when) {
                if !seg.payload.is_empty() {
                    data = Some(seg);
                }
            }
            if data.is_some() {
                break;
            }
        }
        let seg = data.expect("the override sends data");
        assert!(seg.payload.len() <= 256, "{}", seg.payload.len());
    }
}

/// The zero-copy paths move the same bytes as the copying ones: a payload
/// borrowed from the send buffer (`poll_transmit_into`, split in two where
/// the ring wraps), read in place on the other side (`recv_with`, taking
/// a part at a time). Several buffers' worth of bytes go through small
/// buffers so the rings wrap many times, across the sequence-number wrap.
#[test]
fn zero_copy_transmit_and_in_place_receive_move_every_byte_in_order() {
    let small = Config {
        send_buffer: 10_000,
        recv_buffer: 12_000,
        ..Config::default()
    };
    let (mut client, mut server) =
        established_with(Instant::now(), small.clone(), small, SeqNum(0xffff_f000));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let now = Instant::now();
    let mut queued = 0;
    let mut received = Vec::new();
    let mut header = oxcat_tcp::Header::default();
    let mut ack = oxcat_tcp::Header::default();
    let mut split_payloads = 0;
    let mut rounds = 0;
    while received.len() < data.len() {
        rounds += 1;
        assert!(rounds < 100_000, "stalled at {} bytes", received.len());
        if queued < data.len() {
            queued += client.send(&data[queued..]).unwrap_or(0);
        }
        while let Some(p) = client.poll_transmit_into(now, &mut header) {
            if p.contiguous().is_none() {
                split_payloads += 1;
            }
            let (a, b) = p.parts();
            assert_eq!(a.len() + b.len(), p.len());
            let bytes = p.to_vec();
            server.handle_segment(now, &header, &bytes);
        }
        // The application takes at most 1000 bytes per call, in place.
        while let Ok(n) = server.recv_with(|a, b| {
            let take = (a.len() + b.len()).min(1000);
            let from_a = take.min(a.len());
            received.extend_from_slice(&a[..from_a]);
            received.extend_from_slice(&b[..take - from_a]);
            take
        }) {
            assert!(n <= 1000);
        }
        while server.poll_transmit_into(now, &mut ack).is_some() {
            client.handle_segment(now, &ack, &[]);
        }
    }
    assert_eq!(received, data);
    assert!(split_payloads > 0, "the send ring wrapped under a segment");
    // The owned form is the same segment (nodelay: the last ACK may be delayed).
    client.set_nodelay(true);
    assert_eq!(client.send(b"tail"), Ok(4));
    let t = client.poll_transmit_ref(now).expect("a segment");
    assert_eq!(t.payload.to_vec(), b"tail");
    assert_eq!(t.seq_len(), 4);
}

/// Reading in place after a full window opens it again: the window update
/// goes out (RFC 9293 §3.8.6.2.2) as it does after `recv`.
#[test]
fn in_place_read_of_a_full_window_sends_a_window_update() {
    let small = Config {
        recv_buffer: 8_000,
        ..Config::default()
    };
    let (mut client, mut server) =
        established_with(Instant::now(), Config::default(), small, SeqNum(7));
    let now = Instant::now();
    client.send(&[1u8; 50_000]).unwrap();
    while let Some(seg) = client.poll_transmit(now) {
        server.handle_segment(now, &seg.header, &seg.payload);
    }
    while let Some(seg) = server.poll_transmit(now) {
        client.handle_segment(now, &seg.header, &seg.payload);
    }
    let held = server.readable_len();
    assert!(
        held > 8_000 - server.send_mss(),
        "the window is full: {held}"
    );
    assert!(server.poll_transmit(now).is_none(), "nothing owed yet");
    let n = server.recv_with(|a, b| a.len() + b.len()).unwrap();
    assert_eq!(n, held, "everything readable is taken");
    let update = server.poll_transmit(now).expect("a window update");
    assert!(update.header.window > 0);
    assert_eq!(
        server.recv_with(|a, _| a.len()),
        Err(oxcat_tcp::RecvError::WouldBlock)
    );
}
