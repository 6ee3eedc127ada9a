//! Application calls at the edges of the state machine.

use std::time::{Duration, Instant};

use oxcat_tcp::{Bytes, Config, Connection, IsnGenerator, Listener, SeqNum, State};

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
    let mut server = accept_via_listener(t0, &mut client, Config::default(), 3);
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
    let server = accept_via_listener(t0, &mut client, server_config, 5);
    (client, server)
}

/// The handshake of `client` (which has sent nothing yet) through a
/// listener with `server_config` and ISN key `key`, all at `t0`: the
/// accepted server end.
fn accept_via_listener(
    t0: Instant,
    client: &mut Connection,
    server_config: Config,
    key: u64,
) -> Connection {
    let mut listener: Listener<u8> =
        Listener::new(server_config, 4, IsnGenerator::new(key, t0), t0);
    let syn = client.poll_transmit(t0).expect("SYN");
    listener.handle_segment(t0, 1, &syn.header, &syn.payload);
    let (_, sa) = listener.poll_transmit(t0).expect("SYN-ACK");
    client.handle_segment(t0, &sa.header, &sa.payload);
    let ack = client.poll_transmit(t0).expect("ACK");
    listener.handle_segment(t0, 1, &ack.header, &ack.payload);
    listener.accept().expect("accepted").1
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

/// Moves segments both ways at `now` until both ends are quiet, handing
/// the client's payloads over as lent (`poll_transmit_into`); returns the
/// client's data segments' payload lengths.
fn exchange(now: Instant, client: &mut Connection, server: &mut Connection) -> Vec<usize> {
    let mut lens = Vec::new();
    let mut header = oxcat_tcp::Header::default();
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(p) = client.poll_transmit_into(now, &mut header) {
            if !p.is_empty() {
                lens.push(p.len());
            }
            let bytes = p.to_vec();
            server.handle_segment(now, &header, &bytes);
            moved = true;
        }
        while let Some(seg) = server.poll_transmit(now) {
            client.handle_segment(now, &seg.header, &seg.payload);
            moved = true;
        }
        if !moved {
            return lens;
        }
    }
    panic!("the engines did not settle");
}

/// Exchanges segments a millisecond apart from `t0` until the server has
/// read `want` bytes (at most 10 s of engine time); returns the client's
/// data segments' lengths and the bytes read.
fn deliver(
    t0: Instant,
    client: &mut Connection,
    server: &mut Connection,
    want: usize,
) -> (Vec<usize>, Vec<u8>) {
    let mut lens = Vec::new();
    let mut got = Vec::new();
    let mut now = t0;
    while got.len() < want {
        lens.extend(exchange(now, client, server));
        got.extend(read_all(server));
        now += Duration::from_millis(1);
        assert!(
            now < t0 + Duration::from_secs(10),
            "stalled at {}",
            got.len()
        );
    }
    (lens, got)
}

/// Everything the server can read.
fn read_all(server: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = server.recv(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn numbered(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8) ^ salt) as u8)
        .collect()
}

/// `send_bytes` takes the application's buffer without a copy: the
/// segments' payloads are lent from the very memory the caller filled.
#[test]
fn send_bytes_lends_the_callers_memory() {
    let t0 = Instant::now();
    let (mut client, mut server) = established(t0);
    let data = Bytes::from(numbered(40_000, 1));
    let range = data.as_ptr_range();
    let mut chunk = data.clone();
    assert_eq!(client.send_bytes(&mut chunk), Ok(40_000));
    assert!(chunk.is_empty(), "all of it was taken");
    let mut header = oxcat_tcp::Header::default();
    let mut segments = 0;
    while let Some(p) = client.poll_transmit_into(t0, &mut header) {
        let bytes = p.contiguous().expect("one chunk: one slice");
        assert!(
            range.contains(&bytes.as_ptr()) && bytes.as_ptr_range().end <= range.end,
            "a payload lent from the caller's buffer, not a copy"
        );
        server.handle_segment(t0, &header, bytes);
        segments += 1;
    }
    assert!(segments >= 10, "the initial window's worth went out");
}

/// `send` and `send_bytes` mixed in any order, chunks from 1 byte to many
/// segments: the bytes arrive in the order they were queued, and chunk
/// boundaries do not make segments small (every data segment but the
/// last is full).
#[test]
fn mixed_copied_and_owned_writes_stay_in_order_in_full_segments() {
    let t0 = Instant::now();
    let (mut client, mut server) = established(t0);
    let data = numbered(120_000, 2);
    let source = Bytes::from(data.clone());
    let sizes = [
        1, 3, 700, 1, 5000, 2, 1448, 9, 30_000, 17, 1, 2896, 40, 4000,
    ];
    let mut at = 0;
    let mut turn = 0usize;
    while at < data.len() {
        let size = sizes[turn % sizes.len()].min(data.len() - at);
        // Copied and owned alternate with a period that is not the sizes'.
        if turn % 3 == 1 {
            assert_eq!(client.send(&data[at..at + size]), Ok(size));
        } else {
            let mut chunk = source.slice(at..at + size);
            assert_eq!(client.send_bytes(&mut chunk), Ok(size));
        }
        at += size;
        turn += 1;
    }
    // Everything was queued before the first segment: Nagle and the MSS
    // alone decide where segments end.
    let full = client.send_mss() - 12; // timestamps on every segment
    let (lens, got) = deliver(t0, &mut client, &mut server, data.len());
    assert!(got == data, "bytes differ");
    let (last, rest) = lens.split_last().expect("segments");
    assert!(*last <= full);
    assert!(
        rest.iter().all(|&l| l == full),
        "a segment shorter than the MSS before the last: {lens:?}"
    );
}

/// A chunk larger than the send buffer is taken a part at a time: `Ok`
/// with the part taken, the rest left in the caller's `Bytes`; a full
/// buffer refuses with `WouldBlock` and leaves the chunk as it was.
/// Through small buffers, across the sequence-number wrap.
#[test]
fn a_chunk_larger_than_the_buffer_is_taken_in_parts_and_refused_when_full() {
    let small = Config {
        send_buffer: 10_000,
        recv_buffer: 12_000,
        ..Config::default()
    };
    let t0 = Instant::now();
    let (mut client, mut server) = established_with(t0, small.clone(), small, SeqNum(0xffff_f000));
    let data = numbered(300_000, 3);
    let mut chunk = Bytes::from(data.clone());
    assert_eq!(client.send_bytes(&mut chunk), Ok(10_000));
    assert_eq!(chunk.len(), 290_000);
    assert_eq!(chunk[..], data[10_000..], "the caller keeps the rest");
    let before = chunk.as_ptr();
    assert_eq!(
        client.send_bytes(&mut chunk),
        Err(oxcat_tcp::SendError::WouldBlock)
    );
    assert_eq!(chunk.len(), 290_000, "a refused chunk is left whole");
    assert_eq!(chunk.as_ptr(), before);
    let mut got = Vec::new();
    let mut now = t0;
    while got.len() < data.len() {
        if !chunk.is_empty() {
            let _ = client.send_bytes(&mut chunk);
        }
        exchange(now, &mut client, &mut server);
        got.extend(read_all(&mut server));
        now += Duration::from_millis(1);
        assert!(
            now < t0 + Duration::from_secs(60),
            "stalled at {}",
            got.len()
        );
    }
    assert!(got == data, "bytes differ");
}

/// The engine holds an owned chunk while any of it is unacknowledged and
/// lets go of it once the peer acknowledged all of it, while later bytes
/// are still queued.
#[test]
fn an_owned_chunk_is_released_once_acknowledged() {
    let t0 = Instant::now();
    let (mut client, mut server) = established(t0);
    client.set_nodelay(true); // the first chunk's short tail goes at once
    let first = Bytes::from(numbered(8_000, 4));
    let second = Bytes::from(numbered(8_000, 6));
    let mut chunk = first.clone();
    assert_eq!(client.send_bytes(&mut chunk), Ok(8_000));
    drop(chunk);
    assert!(!first.is_unique(), "the engine holds it");
    let mut segments = Vec::new();
    while let Some(seg) = client.poll_transmit(t0) {
        segments.push(seg);
    }
    assert!(segments.len() >= 2);
    // The second chunk is queued, not sent, while the first is acknowledged.
    let mut chunk = second.clone();
    assert_eq!(client.send_bytes(&mut chunk), Ok(8_000));
    drop(chunk);
    let mut acks = Vec::new();
    // Two segments delivered and acknowledged: the chunk is still needed.
    for seg in &segments[..2] {
        server.handle_segment(t0, &seg.header, &seg.payload);
    }
    while let Some(ack) = server.poll_transmit(t0) {
        acks.push(ack);
    }
    for ack in acks.drain(..) {
        client.handle_segment(t0, &ack.header, &ack.payload);
    }
    assert!(client.send_queued() < 16_000, "some acknowledged");
    assert!(!first.is_unique(), "partly acknowledged: still held");
    for seg in &segments[2..] {
        server.handle_segment(t0, &seg.header, &seg.payload);
    }
    // The last ACK may be a delayed one.
    let t1 = t0 + Duration::from_millis(500);
    server.handle_timeout(t1);
    while let Some(ack) = server.poll_transmit(t1) {
        client.handle_segment(t1, &ack.header, &ack.payload);
    }
    assert_eq!(client.send_queued(), 8_000, "the first chunk acknowledged");
    assert!(first.is_unique(), "acknowledged: the engine let go of it");
    assert!(!second.is_unique(), "queued: held");
    exchange(t1, &mut client, &mut server);
    let mut expected = first.to_vec();
    expected.extend_from_slice(&second);
    assert_eq!(read_all(&mut server), expected);
}

/// With TSO, owned chunks shorter than a TSO segment still give segments
/// of whole MSS-sized pieces, as large as two chunks reach (a segment
/// spanning more is cut there: the window allows more than 40 KB here
/// once slow start opened it), and every byte arrives.
#[test]
fn tso_segments_over_owned_chunks_are_whole_pieces() {
    let t0 = Instant::now();
    let tso = Config {
        tso_max_payload: 60_000,
        send_buffer: 1 << 20,
        ..Config::default()
    };
    let (mut client, mut server) = established_with(t0, tso, Config::default(), SeqNum(1));
    let data = numbered(400_000, 5);
    let source = Bytes::from(data.clone());
    for at in (0..data.len()).step_by(20_000) {
        let mut chunk = source.slice(at..at + 20_000);
        assert_eq!(client.send_bytes(&mut chunk), Ok(20_000));
    }
    let piece = client.send_mss() - 12;
    let (lens, got) = deliver(t0, &mut client, &mut server, data.len());
    assert!(got == data, "bytes differ");
    let (_, rest) = lens.split_last().expect("segments");
    assert!(
        rest.iter().all(|&l| l % piece == 0),
        "whole pieces: {lens:?}"
    );
    assert!(
        lens.iter().any(|&l| l > 20_000),
        "segments span two chunks: {lens:?}"
    );
    assert!(
        lens.iter().all(|&l| l <= 40_000),
        "no segment spans three chunks: {lens:?}"
    );
}

/// Chunks queued before the handshake are laid out for the MSS assumed
/// then (536); once the peer's 1460 is known a segment may span three of
/// them and is cut where two end, shorter than the MSS. Such a segment is
/// not small in Nagle's sense (more follows at once): everything goes out
/// without waiting for a timer.
#[test]
fn segments_cut_where_chunks_end_are_not_held_by_nagle() {
    let t0 = Instant::now();
    let mut client = Connection::connect(Config::default(), t0, SeqNum(77));
    let data = numbered(30_000, 7);
    let source = Bytes::from(data.clone());
    for at in (0..data.len()).step_by(600) {
        let mut chunk = source.slice(at..at + 600);
        assert_eq!(client.send_bytes(&mut chunk), Ok(600));
    }
    let mut server = accept_via_listener(t0, &mut client, Config::default(), 9);
    let lens = exchange(t0, &mut client, &mut server);
    assert!(
        lens.iter().any(|&l| l < client.send_mss() - 12),
        "segments were cut where chunks end: {lens:?}"
    );
    assert!(
        read_all(&mut server) == data,
        "all of it at once, no timer: {lens:?}"
    );
}

/// `poll_transmit_burst` hands out what `poll_transmit` would (the initial
/// window's segments, in order, the shortcut building most of them), and
/// an `emit` that says stop ends the burst there: what was not handed out
/// is still owed and comes next, numbered on.
#[test]
fn a_burst_stops_where_emit_says_and_the_rest_stays_owed() {
    let t0 = Instant::now();
    let (mut client, mut server) = established(t0);
    let data = numbered(60_000, 9);
    assert_eq!(client.send(&data), Ok(60_000));
    let mut header = oxcat_tcp::Header::default();
    let mut seqs = Vec::new();
    let n = client.poll_transmit_burst(t0, &mut header, |h, p| {
        seqs.push((h.seq, p.len()));
        server.handle_segment(t0, h, &p.to_vec());
        seqs.len() < 3
    });
    assert_eq!(n, 3, "stopped after the third segment");
    assert_eq!(seqs.len(), 3);
    for w in seqs.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "segments follow each other");
    }
    assert!(client.burst_segments() >= 1, "the shortcut built some");
    // The rest of the initial window comes from the next call, numbered on.
    let (last_seq, last_len) = seqs[2];
    let next = client
        .poll_transmit(t0)
        .expect("more of the window is owed");
    assert_eq!(next.header.seq, last_seq + last_len);
    server.handle_segment(t0, &next.header, &next.payload);
    let mut rest = 0;
    client.poll_transmit_burst(t0, &mut header, |h, p| {
        server.handle_segment(t0, h, &p.to_vec());
        rest += 1;
        true
    });
    assert!(
        rest >= 5,
        "the initial window's remaining segments ({rest})"
    );
    let got = read_all(&mut server);
    assert_eq!(got, data[..got.len()], "in order, every byte once");
}

/// The accept queue holds at most backlog + 1 whatever segment completes a
/// handshake: a SYN,ACK,FIN at the peer's ISN (the engine takes a SYN,ACK
/// in SYN-RECEIVED as a simultaneous open) waits while the queue is full,
/// as a plain final ACK does. (Found by the `listener` fuzz target.)
#[test]
fn a_syn_ack_completing_a_handshake_waits_while_the_accept_queue_is_full() {
    use oxcat_tcp::{Flags, Header, Options};
    let t0 = Instant::now();
    let mut listener: Listener<u8> =
        Listener::new(Config::default(), 0, IsnGenerator::new(3, t0), t0);
    let mut clients = Vec::new();
    for key in 1..=2u8 {
        let mut c = Connection::connect(Config::default(), t0, SeqNum(u32::from(key) * 1000));
        let syn = c.poll_transmit(t0).expect("SYN");
        listener.handle_segment(t0, key, &syn.header, &syn.payload);
        let (k, sa) = listener.poll_transmit(t0).expect("SYN-ACK");
        assert_eq!(k, key);
        c.handle_segment(t0, &sa.header, &sa.payload);
        clients.push((c, syn.header.seq, sa.header.seq));
    }
    // Client 1 completes with its ACK: the queue (backlog 0) is full.
    let ack = clients[0].0.poll_transmit(t0).expect("ACK");
    listener.handle_segment(t0, 1, &ack.header, &ack.payload);
    assert_eq!(listener.accept_queue_len(), 1);
    // Client 2's half-open connection gets a SYN,ACK,FIN at the client's ISN
    // acknowledging our SYN.
    let (_, isn, our_isn) = clients[1];
    let odd = Header {
        seq: isn,
        ack: our_isn + 1u32,
        flags: Flags::SYN | Flags::ACK | Flags::FIN,
        window: 1000,
        options: Options::default(),
    };
    listener.handle_segment(t0, 2, &odd, &[]);
    assert_eq!(listener.accept_queue_len(), 1, "backlog 0 holds one");
    assert_eq!(listener.syn_queue_len(), 1, "the other stays half-open");
    assert_eq!(listener.stats().acks_dropped_accept_full, 1);
    // Once the first is accepted, the second's plain ACK completes it.
    assert!(listener.accept().is_some());
    let ack = clients[1].0.poll_transmit(t0).expect("ACK");
    listener.handle_segment(t0, 2, &ack.header, &ack.payload);
    assert_eq!(listener.accept_queue_len(), 1);
}
