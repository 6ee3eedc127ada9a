//! Fuzz `oxcat_wire`'s TCP parser.
//!
//! Mode 0 (first byte even): the rest is a TCP segment. The options
//! iterator, `TcpPacket::new_checked`, every accessor and `TcpRepr::parse*`
//! must not panic; the options iterator must end; and a parsed repr, emitted
//! again, must parse back (checksum included) to the same repr — SACK
//! blocks cut to what fits in 40 option bytes, as `emit` documents.
//!
//! Mode 1 (first byte odd): an arbitrary `TcpRepr` is emitted, then parsed:
//! same check, from the other side.

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use oxcat_wire::tcp::{
    SackBlocks, TcpFlags, TcpOptions, TcpPacket, TcpRepr, Timestamps, MAX_OPTIONS_LEN,
};

const V4: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(192, 168, 7, 200));
const V6: (Ipv6Addr, Ipv6Addr) = (
    Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 2, 3, 4),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9),
);

/// What a repr should look like after emit + parse.
fn expected_after_emit(repr: &TcpRepr) -> TcpRepr {
    let mut e = *repr;
    e.sack_blocks.truncate(repr.sack_blocks_emitted());
    e
}

/// Emits `repr` with `payload`, parses it back with the checksum, compares.
fn roundtrip(repr: &TcpRepr, payload: &[u8]) {
    let opt_len = repr.options_len();
    assert!(
        opt_len % 4 == 0 && opt_len <= MAX_OPTIONS_LEN,
        "options_len {opt_len} for {repr:?}"
    );
    assert_eq!(repr.header_len(), 20 + opt_len);
    let mut buf = vec![0u8; repr.buffer_len() + 7];
    // Too small a buffer is an error, not a panic.
    assert!(repr
        .emit(&mut buf[..repr.buffer_len() - 1], V4.0, V4.1, payload)
        .is_err());
    repr.emit(&mut buf, V4.0, V4.1, payload)
        .expect("emit into a buffer of buffer_len()");
    let seg = &buf[..repr.buffer_len()];
    let pkt = TcpPacket::new_checked(seg).expect("an emitted segment is well-formed");
    assert_eq!(pkt.payload(), payload);
    let back =
        TcpRepr::parse(&pkt, V4.0, V4.1).expect("an emitted segment parses, checksum included");
    assert_eq!(
        back,
        expected_after_emit(repr),
        "emit/parse round trip changed the repr"
    );
    // Options written by emit are all well-formed.
    for o in TcpOptions::new(pkt.options()) {
        o.expect("emit wrote a malformed option");
    }
    // IPv6 pseudo-header too.
    repr.emit(&mut buf, V6.0, V6.1, payload).expect("emit v6");
    let pkt = TcpPacket::new_checked(&buf[..repr.buffer_len()]).unwrap();
    assert!(pkt.verify_checksum(V6.0, V6.1));
    assert_eq!(
        TcpRepr::parse(&pkt, V6.0, V6.1).unwrap(),
        expected_after_emit(repr)
    );
}

fn parse_bytes(data: &[u8]) {
    // The iterator on raw bytes ends: each item consumes at least one byte,
    // and an error ends it.
    let mut n = 0;
    for item in TcpOptions::new(data) {
        n += 1;
        assert!(n <= data.len() + 1, "TcpOptions did not end");
        let _ = item;
    }

    let Ok(pkt) = TcpPacket::new_checked(data) else {
        return;
    };
    assert!(pkt.header_len() >= 20 && pkt.header_len() <= data.len());
    let _ = (
        pkt.src_port(),
        pkt.dst_port(),
        pkt.seq_number(),
        pkt.ack_number(),
        pkt.flags(),
    );
    let _ = (
        pkt.window_len(),
        pkt.checksum(),
        pkt.urgent_at(),
        pkt.segment_len(),
    );
    let _ = (
        pkt.fin(),
        pkt.syn(),
        pkt.rst(),
        pkt.psh(),
        pkt.ack(),
        pkt.urg(),
        pkt.ece(),
        pkt.cwr(),
    );
    assert_eq!(pkt.options().len(), pkt.header_len() - 20);
    assert_eq!(pkt.payload().len(), data.len() - pkt.header_len());
    let mut n = 0;
    for item in pkt.options_iter() {
        n += 1;
        assert!(n <= 41, "options_iter did not end");
        let _ = item;
    }
    let _ = pkt.verify_checksum(V4.0, V4.1);
    let _ = pkt.verify_checksum(V6.0, V6.1);
    let _ = TcpRepr::parse(&pkt, V4.0, V4.1);
    let _ = TcpRepr::parse(&pkt, V6.0, V6.1);
    if let Ok(repr) = TcpRepr::parse_unverified(&pkt) {
        assert_eq!(repr.payload_len, pkt.payload().len());
        roundtrip(&repr, pkt.payload());
    }
}

#[derive(Arbitrary, Debug)]
struct ReprSpec {
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    sack: Vec<(u32, u32)>,
    timestamps: Option<(u32, u32)>,
    payload: Vec<u8>,
}

fn from_spec(data: &[u8]) {
    let Ok(s) = ReprSpec::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut repr = TcpRepr::new(s.src_port, s.dst_port, TcpFlags(s.flags));
    repr.seq = s.seq;
    repr.ack = s.ack;
    repr.window = s.window;
    repr.urgent = s.urgent;
    repr.mss = s.mss;
    repr.window_scale = s.window_scale;
    repr.sack_permitted = s.sack_permitted;
    let mut blocks = SackBlocks::new();
    for b in s.sack.iter().take(6) {
        let _ = blocks.push(*b);
    }
    repr.sack_blocks = blocks;
    repr.timestamps = s
        .timestamps
        .map(|(tsval, tsecr)| Timestamps { tsval, tsecr });
    repr.payload_len = s.payload.len();
    roundtrip(&repr, &s.payload);
    // A payload of the wrong length is an error, not a panic.
    let mut buf = vec![0u8; repr.buffer_len() + 2];
    assert!(repr
        .emit(
            &mut buf,
            V4.0,
            V4.1,
            &[0u8; 1][..usize::from(s.payload.is_empty())]
        )
        .is_err());
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((m, rest)) if m & 1 == 0 => parse_bytes(rest),
        Some((_, rest)) => from_spec(rest),
        None => {}
    }
});
