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
