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
