//! Trace events: what the engine reports when asked (and nothing when not).

use std::time::{Duration, Instant};

use oxcat_tcp::{Config, Connection, IsnGenerator, Listener, SeqNum, State, TimerKind, TraceEvent};

fn handshake(trace: bool) -> (Connection, Connection, Listener<u8>, Instant) {
    let t0 = Instant::now();
    let cfg = Config {
        trace,
        ..Config::default()
    };
    let mut client = Connection::connect(cfg.clone(), t0, SeqNum(1000));
    let mut listener: Listener<u8> = Listener::new(cfg, 1, IsnGenerator::new(5, t0), t0);
    let syn = client.poll_transmit(t0).expect("SYN");
    listener.handle_segment(t0, 1, &syn.header, &syn.payload);
    let (_, syn_ack) = listener.poll_transmit(t0).expect("SYN-ACK");
    let t1 = t0 + Duration::from_millis(1);
    client.handle_segment(t1, &syn_ack.header, &syn_ack.payload);
    let ack = client.poll_transmit(t1).expect("ACK");
    listener.handle_segment(t1, 1, &ack.header, &ack.payload);
    let (_, server) = listener
        .accept()
        .expect("accepted without the application's help");
    (client, server, listener, t1)
}

#[test]
fn a_traced_handshake_reports_segments_states_and_timers() {
    let (mut client, server, _, _) = handshake(true);
    assert_eq!(server.state(), State::Established);
    let events: Vec<TraceEvent> = std::iter::from_fn(|| client.poll_trace()).collect();
    let states: Vec<(State, State)> = events
        .iter()
        .filter_map(|e| match e {
            TraceEvent::StateChange { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (State::Closed, State::SynSent),
            (State::SynSent, State::Established)
        ]
    );
    let outs = events
        .iter()
        .filter(|e| matches!(e, TraceEvent::SegmentOut { .. }))
        .count();
    let ins = events
        .iter()
        .filter(|e| matches!(e, TraceEvent::SegmentIn { .. }))
        .count();
    assert_eq!(
        (outs, ins),
        (2, 1),
        "SYN and ACK out, SYN-ACK in: {events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            TraceEvent::TimerArmed {
                timer: TimerKind::Retransmit,
                ..
            }
        )),
        "the SYN armed the retransmission timer"
    );
}

#[test]
fn tracing_off_records_nothing() {
    let (mut client, mut server, mut listener, _) = handshake(false);
    assert!(client.poll_trace().is_none());
    assert!(server.poll_trace().is_none());
    assert!(listener.poll_trace().is_none());
}

#[test]
fn a_full_accept_queue_is_reported() {
    let t0 = Instant::now();
    let cfg = Config {
        trace: true,
        ..Config::default()
    };
    // backlog 0: the queue holds one connection (Linux: backlog + 1).
    let mut listener: Listener<u8> = Listener::new(cfg.clone(), 0, IsnGenerator::new(5, t0), t0);
    for key in 1..=2u8 {
        let mut c = Connection::connect(cfg.clone(), t0, SeqNum(key as u32 * 100));
        let syn = c.poll_transmit(t0).expect("SYN");
        listener.handle_segment(t0, key, &syn.header, &syn.payload);
        if let Some((_, sa)) = listener.poll_transmit(t0) {
            c.handle_segment(t0, &sa.header, &sa.payload);
            let ack = c.poll_transmit(t0).expect("ACK");
            listener.handle_segment(t0, key, &ack.header, &ack.payload);
        }
    }
    // The first connection waits unaccepted and fills the queue, so the second SYN is
    // dropped, as Linux drops SYNs while the accept queue is full.
    let drops: Vec<&'static str> = std::iter::from_fn(|| listener.poll_trace())
        .filter_map(|e| match e {
            TraceEvent::QueueDrop { what, .. } => Some(what),
            _ => None,
        })
        .collect();
    assert_eq!(listener.accept_queue_len(), 1);
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert_eq!(
        listener.stats().acks_dropped_accept_full + listener.stats().syns_dropped_accept_full,
        1
    );
}

#[test]
fn application_events_are_coalesced() {
    use oxcat_tcp::Event;
    let (mut client, mut server, _, t1) = handshake(false);
    assert_eq!(client.poll_event(), Some(Event::Connected));
    assert_eq!(client.poll_event(), None);
    assert_eq!(server.poll_event(), Some(Event::Connected));
    let data = vec![7u8; 5000];
    assert_eq!(server.send(&data), Ok(5000));
    let mut segments = 0;
    let mut carried = 0;
    while let Some(seg) = server.poll_transmit(t1) {
        client.handle_segment(t1, &seg.header, &seg.payload);
        segments += 1;
        carried += seg.payload.len();
    }
    // Three full segments (1448 bytes: the MSS less the timestamp option);
    // Nagle holds the small tail until they are acknowledged.
    assert_eq!((segments, carried), (3, 3 * 1448));
    assert_eq!(
        client.poll_event(),
        Some(Event::Readable),
        "one Readable for all of them"
    );
    assert_eq!(client.poll_event(), None);
    let mut buf = vec![0u8; 8192];
    assert_eq!(client.recv(&mut buf), Ok(carried));
}
