//! Cross-checks against `etherparse`: packets it builds parse the same with ours, and packets
//! we emit parse the same with it (checksums included).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    Icmpv4Type, Icmpv6Type, NetHeaders, PacketBuilder, PacketHeaders, TcpOptionElement,
    TransportHeader,
};
use oxcat_wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, SackBlocks, TcpFlags, TcpPacket, TcpRepr, Timestamps, UdpPacket, UdpRepr,
};
use proptest::prelude::*;

const SRC4: [u8; 4] = [198, 18, 0, 1];
const DST4: [u8; 4] = [198, 18, 0, 2];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

#[test]
fn their_tcp_syn_over_ipv4() {
    let builder = PacketBuilder::ipv4(SRC4, DST4, 64)
        .tcp(40000, 80, 0x1122_3344, 64240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(1000, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap();
    let mut bytes = Vec::new();
    builder.write(&mut bytes, b"payload").unwrap();

    let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip).unwrap();
    assert_eq!(ip_repr.src, Ipv4Addr::from(SRC4));
    assert_eq!(ip_repr.protocol, IpProtocol::TCP);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let repr = TcpRepr::parse(&tcp, ip_repr.src, ip_repr.dst).unwrap();
    assert_eq!(
        repr,
        TcpRepr {
            seq: 0x1122_3344,
            window: 64240,
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                tsval: 1000,
                tsecr: 0
            }),
            payload_len: 7,
            ..TcpRepr::new(40000, 80, TcpFlags::SYN)
        }
    );
    assert_eq!(tcp.payload(), b"payload");
    // Our emitter lays the same options out the same way.
    let mut ours = vec![0u8; bytes.len()];
    ip_repr.emit(&mut ours).unwrap();
    repr.emit(&mut ours[20..], ip_repr.src, ip_repr.dst, b"payload")
        .unwrap();
    assert_eq!(ours, bytes);
}

#[test]
fn their_udp_over_ipv6() {
    let builder = PacketBuilder::ipv6(SRC6, DST6, 17).udp(5353, 53);
    let mut bytes = Vec::new();
    builder.write(&mut bytes, b"query").unwrap();
    let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let ip_repr = Ipv6Repr::parse(&ip).unwrap();
    assert_eq!(
        ip_repr,
        Ipv6Repr {
            hop_limit: 17,
            ..Ipv6Repr::new(SRC6.into(), DST6.into(), IpProtocol::UDP, 13)
        }
    );
    let upper = ip.upper_layer().unwrap();
    let udp = UdpPacket::new_checked(&ip.payload()[upper.offset..]).unwrap();
    let repr = UdpRepr::parse(&udp, ip_repr.src, ip_repr.dst).unwrap();
    assert_eq!(repr.payload_len, 5);
    let mut ours = vec![0u8; bytes.len()];
    ip_repr.emit(&mut ours).unwrap();
    repr.emit(&mut ours[40..], ip_repr.src, ip_repr.dst, b"query")
        .unwrap();
    assert_eq!(ours, bytes);
}

#[test]
fn their_icmp_echoes() {
    let mut bytes = Vec::new();
    PacketBuilder::ipv4(SRC4, DST4, 64)
        .icmpv4_echo_request(0x77, 3)
        .write(&mut bytes, b"ping")
        .unwrap();
    let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        Icmpv4Repr::parse(&icmp).unwrap(),
        Icmpv4Repr::EchoRequest {
            ident: 0x77,
            seq_no: 3,
            data: b"ping"
        }
    );

    let mut bytes = Vec::new();
    PacketBuilder::ipv6(SRC6, DST6, 64)
        .icmpv6_echo_reply(0x77, 3)
        .write(&mut bytes, b"pong")
        .unwrap();
    let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        Icmpv6Repr::parse(&icmp, SRC6.into(), DST6.into()).unwrap(),
        Icmpv6Repr::EchoReply {
            ident: 0x77,
            seq_no: 3,
            data: b"pong"
        }
    );
}

fn parse_theirs(bytes: &[u8]) -> (NetHeaders, TransportHeader, Vec<u8>) {
    let headers = PacketHeaders::from_ip_slice(bytes).unwrap();
    (
        headers.net.unwrap(),
        headers.transport.unwrap(),
        headers.payload.slice().to_vec(),
    )
}

#[test]
fn our_icmp_parses_with_theirs() {
    let ip = Ipv4Repr::new(SRC4.into(), DST4.into(), IpProtocol::ICMP, 12);
    let icmp = Icmpv4Repr::EchoReply {
        ident: 9,
        seq_no: 10,
        data: b"abcd",
    };
    let mut bytes = [0u8; 32];
    ip.emit(&mut bytes).unwrap();
    icmp.emit(&mut bytes[20..]).unwrap();
    let (_, transport, _) = parse_theirs(&bytes);
    let TransportHeader::Icmpv4(header) = transport else {
        panic!("not ICMPv4: {transport:?}")
    };
    let Icmpv4Type::EchoReply(echo) = header.icmp_type else {
        panic!("{:?}", header.icmp_type)
    };
    assert_eq!((echo.id, echo.seq), (9, 10));
    assert_eq!(header.checksum, header.icmp_type.calc_checksum(b"abcd"));

    let ip = Ipv6Repr::new(SRC6.into(), DST6.into(), IpProtocol::ICMPV6, 12);
    let icmp = Icmpv6Repr::EchoRequest {
        ident: 9,
        seq_no: 10,
        data: b"abcd",
    };
    let mut bytes = [0u8; 52];
    ip.emit(&mut bytes).unwrap();
    icmp.emit(&mut bytes[40..], ip.src, ip.dst).unwrap();
    let (_, transport, _) = parse_theirs(&bytes);
    let TransportHeader::Icmpv6(header) = transport else {
        panic!("not ICMPv6: {transport:?}")
    };
    let Icmpv6Type::EchoRequest(echo) = header.icmp_type else {
        panic!("{:?}", header.icmp_type)
    };
    assert_eq!((echo.id, echo.seq), (9, 10));
    assert_eq!(
        header.checksum,
        header.icmp_type.calc_checksum(SRC6, DST6, b"abcd").unwrap()
    );
}

fn tcp_repr() -> impl Strategy<Value = TcpRepr> {
    (
        (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
        (any::<u8>(), any::<u16>(), any::<u16>()),
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..=14),
            any::<bool>(),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
            proptest::option::of((any::<u32>(), any::<u32>())),
        ),
        0usize..64,
    )
        .prop_map(
            |((sp, dp, seq, ack), (flags, window, urgent), (mss, ws, sack_ok, sack, ts), len)| {
                let mut repr = TcpRepr {
                    seq,
                    ack,
                    window,
                    urgent,
                    mss,
                    window_scale: ws,
                    sack_permitted: sack_ok,
                    sack_blocks: SackBlocks::from_slice(&sack),
                    timestamps: ts.map(|(tsval, tsecr)| Timestamps { tsval, tsecr }),
                    payload_len: len,
                    ..TcpRepr::new(sp, dp, TcpFlags(flags))
                };
                let n = repr.sack_blocks_emitted();
                repr.sack_blocks.truncate(n);
                repr
            },
        )
}

proptest! {
    /// Whatever we emit, etherparse reads the same fields and options, and agrees on both
    /// checksums.
    #[test]
    fn our_tcp_parses_with_theirs(repr in tcp_repr(), v6 in any::<bool>()) {
        let payload: Vec<u8> = (0..repr.payload_len).map(|i| i as u8).collect();
        let ip_len = if v6 { 40 } else { 20 };
        let mut bytes = vec![0u8; ip_len + repr.buffer_len()];
        if v6 {
            let ip = Ipv6Repr::new(SRC6.into(), DST6.into(), IpProtocol::TCP, repr.buffer_len());
            ip.emit(&mut bytes).unwrap();
            repr.emit(&mut bytes[40..], ip.src, ip.dst, &payload).unwrap();
        } else {
            let ip = Ipv4Repr::new(SRC4.into(), DST4.into(), IpProtocol::TCP, repr.buffer_len());
            ip.emit(&mut bytes).unwrap();
            repr.emit(&mut bytes[20..], ip.src, ip.dst, &payload).unwrap();
        }
        let (net, transport, their_payload) = parse_theirs(&bytes);
        let TransportHeader::Tcp(tcp) = transport else { panic!("not TCP") };
        prop_assert_eq!(their_payload, payload.clone());
        let expected_sum = match &net {
            NetHeaders::Ipv4(ip, _) => {
                prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                tcp.calc_checksum_ipv4(ip, &payload).unwrap()
            }
            NetHeaders::Ipv6(ip, _) => tcp.calc_checksum_ipv6(ip, &payload).unwrap(),
        };
        prop_assert_eq!(tcp.checksum, expected_sum);
        prop_assert_eq!(
            (tcp.source_port, tcp.destination_port, tcp.sequence_number, tcp.acknowledgment_number),
            (repr.src_port, repr.dst_port, repr.seq, repr.ack)
        );
        prop_assert_eq!((tcp.window_size, tcp.urgent_pointer), (repr.window, repr.urgent));
        let flags = repr.flags;
        prop_assert_eq!(
            [tcp.fin, tcp.syn, tcp.rst, tcp.psh, tcp.ack, tcp.urg, tcp.ece, tcp.cwr],
            [
                flags.contains(TcpFlags::FIN), flags.contains(TcpFlags::SYN),
                flags.contains(TcpFlags::RST), flags.contains(TcpFlags::PSH),
                flags.contains(TcpFlags::ACK), flags.contains(TcpFlags::URG),
                flags.contains(TcpFlags::ECE), flags.contains(TcpFlags::CWR),
            ]
        );
        let mut mss = None;
        let mut ws = None;
        let mut sack_ok = false;
        let mut sack = Vec::new();
        let mut ts = None;
        for option in tcp.options_iterator() {
            match option.unwrap() {
                TcpOptionElement::Noop => {}
                TcpOptionElement::MaximumSegmentSize(v) => mss = Some(v),
                TcpOptionElement::WindowScale(v) => ws = Some(v),
                TcpOptionElement::SelectiveAcknowledgementPermitted => sack_ok = true,
                TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                    sack.push(first);
                    sack.extend(rest.iter().flatten());
                }
                TcpOptionElement::Timestamp(a, b) => ts = Some(Timestamps { tsval: a, tsecr: b }),
            }
        }
        prop_assert_eq!(mss, repr.mss);
        prop_assert_eq!(ws, repr.window_scale);
        prop_assert_eq!(sack_ok, repr.sack_permitted);
        prop_assert_eq!(&sack[..], repr.sack_blocks.as_slice());
        prop_assert_eq!(ts, repr.timestamps);
    }

    /// Datagrams that etherparse builds, we parse and verify.
    #[test]
    fn their_udp_parses_with_ours(sp in any::<u16>(), dp in any::<u16>(),
                                  payload in proptest::collection::vec(any::<u8>(), 0..200),
                                  v6 in any::<bool>()) {
        let mut bytes = Vec::new();
        if v6 {
            PacketBuilder::ipv6(SRC6, DST6, 64).udp(sp, dp).write(&mut bytes, &payload).unwrap();
            let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            let repr = UdpRepr::parse(&udp, ip.src_addr(), ip.dst_addr()).unwrap();
            prop_assert_eq!(repr, UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() });
            prop_assert_eq!(udp.payload(), &payload[..]);
        } else {
            PacketBuilder::ipv4(SRC4, DST4, 64).udp(sp, dp).write(&mut bytes, &payload).unwrap();
            let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            prop_assert!(ip.verify_checksum());
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            let repr = UdpRepr::parse(&udp, ip.src_addr(), ip.dst_addr()).unwrap();
            prop_assert_eq!(repr, UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() });
            prop_assert_eq!(udp.payload(), &payload[..]);
        }
    }
}

#[test]
fn addresses_convert() {
    // Keep the constants honest.
    assert_eq!(Ipv4Addr::from(SRC4), Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(Ipv6Addr::from(DST6), "fd00::2".parse::<Ipv6Addr>().unwrap());
}
