//! repr → emit → parse gives back the same repr, for every protocol.

use std::net::{Ipv4Addr, Ipv6Addr};

use oxcat_wire::icmpv4::unreachable;
use oxcat_wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, SackBlocks, TcpFlags, TcpPacket, TcpRepr, Timestamps, UdpPacket, UdpRepr,
};
use proptest::prelude::*;

fn ipv4_addr() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ipv6_addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (
        (ipv4_addr(), ipv4_addr(), any::<u8>(), 0usize..=65_515),
        (any::<u8>(), any::<bool>(), any::<bool>(), 0u16..=0x1fff),
        (any::<u16>(), 0u8..64, 0u8..4),
    )
        .prop_map(
            |((src, dst, protocol, payload_len), (ttl, df, mf, frag), (ident, dscp, ecn))| {
                Ipv4Repr {
                    src,
                    dst,
                    protocol: IpProtocol(protocol),
                    payload_len,
                    ttl,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: frag * 8,
                    ident,
                    dscp,
                    ecn,
                }
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
    (
        ipv6_addr(),
        ipv6_addr(),
        any::<u8>(),
        0usize..=65_535,
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
    )
        .prop_map(
            |(src, dst, next, payload_len, hop_limit, traffic_class, flow_label)| Ipv6Repr {
                src,
                dst,
                next_header: IpProtocol(next),
                payload_len,
                hop_limit,
                traffic_class,
                flow_label,
            },
        )
}

fn tcp_repr() -> impl Strategy<Value = TcpRepr> {
    (
        (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
        (any::<u8>(), any::<u16>(), any::<u16>()),
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
            proptest::option::of((any::<u32>(), any::<u32>())),
        ),
        0usize..100,
    )
        .prop_map(
            |((sp, dp, seq, ack), (flags, window, urgent), (mss, ws, sack_ok, sack, ts), len)| {
                TcpRepr {
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
                }
            },
        )
}

proptest! {
    #[test]
    fn ipv4(repr in ipv4_repr()) {
        let mut buf = [0u8; 20];
        repr.emit(&mut buf).unwrap();
        // The header alone: the view needs the whole packet, so check the header only.
        let packet = Ipv4Packet::new_checked_header(&buf[..]).unwrap();
        prop_assert!(packet.verify_checksum());
        prop_assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr);
    }

    #[test]
    fn ipv4_with_payload(repr in ipv4_repr(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let repr = Ipv4Repr { payload_len: payload.len(), ..repr };
        let mut buf = vec![0u8; repr.total_len()];
        repr.emit(&mut buf).unwrap();
        buf[20..].copy_from_slice(&payload);
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr);
        prop_assert_eq!(packet.payload(), &payload[..]);
    }

    #[test]
    fn ipv6(repr in ipv6_repr()) {
        let mut buf = [0u8; 40];
        repr.emit(&mut buf).unwrap();
        let packet = Ipv6Packet::new_checked_header(&buf[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&packet).unwrap(), repr);
    }

    #[test]
    fn tcp_v4(repr in tcp_repr(), src in ipv4_addr(), dst in ipv4_addr()) {
        let payload: Vec<u8> = (0..repr.payload_len).map(|i| (i * 7) as u8).collect();
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, src, dst, &payload).unwrap();
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(packet.header_len(), repr.header_len());
        prop_assert_eq!(packet.header_len() % 4, 0);
        prop_assert!(packet.header_len() <= 60);
        let mut expected = repr;
        expected.sack_blocks.truncate(repr.sack_blocks_emitted());
        prop_assert_eq!(TcpRepr::parse(&packet, src, dst).unwrap(), expected);
        prop_assert_eq!(packet.payload(), &payload[..]);
    }

    #[test]
    fn tcp_v6(repr in tcp_repr(), src in ipv6_addr(), dst in ipv6_addr()) {
        let payload = vec![0x5a; repr.payload_len];
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, src, dst, &payload).unwrap();
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        let mut expected = repr;
        expected.sack_blocks.truncate(repr.sack_blocks_emitted());
        prop_assert_eq!(TcpRepr::parse(&packet, src, dst).unwrap(), expected);
    }

    #[test]
    fn udp(sp in any::<u16>(), dp in any::<u16>(),
           payload in proptest::collection::vec(any::<u8>(), 0..128),
           src4 in ipv4_addr(), dst4 in ipv4_addr(), src6 in ipv6_addr(), dst6 in ipv6_addr()) {
        let repr = UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, src4, dst4, &payload).unwrap();
        let packet = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_ne!(packet.checksum(), 0);
        prop_assert_eq!(UdpRepr::parse(&packet, src4, dst4).unwrap(), repr);
        repr.emit(&mut buf, src6, dst6, &payload).unwrap();
        let packet = UdpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_ne!(packet.checksum(), 0);
        prop_assert_eq!(UdpRepr::parse(&packet, src6, dst6).unwrap(), repr);
        prop_assert_eq!(packet.payload(), &payload[..]);
    }

    #[test]
    fn icmpv4(kind in 0u8..4, a in any::<u16>(), b in any::<u16>(), code in any::<u8>(),
              data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let repr = match kind {
            0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b, data: &data },
            1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b, data: &data },
            2 => Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu: if code == unreachable::FRAG_NEEDED { a } else { 0 },
                original: &data,
            },
            _ => Icmpv4Repr::TimeExceeded { code, original: &data },
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&packet).unwrap(), repr);
    }

    #[test]
    fn icmpv6(kind in 0u8..6, a in any::<u16>(), b in any::<u16>(), code in any::<u8>(), wide in any::<u32>(),
              data in proptest::collection::vec(any::<u8>(), 0..64),
              src in ipv6_addr(), dst in ipv6_addr()) {
        let repr = match kind {
            0 => Icmpv6Repr::EchoRequest { ident: a, seq_no: b, data: &data },
            1 => Icmpv6Repr::EchoReply { ident: a, seq_no: b, data: &data },
            2 => Icmpv6Repr::DstUnreachable { code, original: &data },
            3 => Icmpv6Repr::PacketTooBig { mtu: wide, original: &data },
            4 => Icmpv6Repr::TimeExceeded { code, original: &data },
            _ => Icmpv6Repr::ParamProblem { code, pointer: wide, original: &data },
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, src, dst).unwrap();
        let packet = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv6Repr::parse(&packet, src, dst).unwrap(), repr);
    }
}
