//! Arbitrary bytes never panic any parser: `new_checked`, `parse`, the option iterator, the
//! extension header walk, and every accessor on whatever view `new_checked` accepts (or
//! `new_unchecked` makes).

use std::net::{Ipv4Addr, Ipv6Addr};

use oxcat_wire::ipv6::walk_extension_headers;
use oxcat_wire::tcp::TcpOptions;
use oxcat_wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use proptest::prelude::*;

const V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..128)
}

/// Bytes that look like a packet of the given kind often enough to get past the first checks.
fn shaped(first: u8) -> impl Strategy<Value = Vec<u8>> {
    bytes().prop_map(move |mut b| {
        if let Some(x) = b.first_mut() {
            *x = first | (*x & 0x0f);
        }
        b
    })
}

fn poke_ipv4(b: &[u8]) {
    let p = Ipv4Packet::new_unchecked(b);
    let _ = (
        p.version(),
        p.header_len(),
        p.tos(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
    );
    let _ = (
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.ttl(),
    );
    let _ = (
        p.protocol(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.options(),
    );
    let _ = (p.payload(), p.verify_checksum(), p.header());
    let _ = Ipv4Repr::parse_unverified(&p);
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = Ipv4Repr::parse(&p);
    }
    if let Ok(p) = Ipv4Packet::new_checked_header(b) {
        let _ = (Ipv4Repr::parse(&p), p.payload());
    }
    let mut owned = b.to_vec();
    let mut p = Ipv4Packet::new_unchecked(&mut owned[..]);
    p.fill_checksum();
    p.decrement_ttl();
    p.set_frag_offset(0xffff);
    let _ = (p.options_mut().len(), p.payload_mut().len());
}

fn poke_ipv6(b: &[u8]) {
    let p = Ipv6Packet::new_unchecked(b);
    let _ = (
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.payload_len(),
        p.next_header(),
    );
    let _ = (
        p.hop_limit(),
        p.src_addr(),
        p.dst_addr(),
        p.payload(),
        p.upper_layer(),
    );
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (Ipv6Repr::parse(&p), p.upper_layer());
    }
}

fn poke_tcp(b: &[u8]) {
    let p = TcpPacket::new_unchecked(b);
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.header_len(),
    );
    let _ = (
        p.flags(),
        p.window_len(),
        p.checksum(),
        p.urgent_at(),
        p.options(),
        p.payload(),
    );
    let _ = (
        p.segment_len(),
        p.verify_checksum(V4, V4),
        p.verify_checksum(V6, V6),
    );
    let _ = p.options_iter().count();
    let _ = TcpRepr::parse_unverified(&p);
    if let Ok(p) = TcpPacket::new_checked(b) {
        let _ = (TcpRepr::parse(&p, V4, V4), TcpRepr::parse_unverified(&p));
        let _: Vec<_> = p.options_iter().collect();
    }
    let mut owned = b.to_vec();
    let mut p = TcpPacket::new_unchecked(&mut owned[..]);
    p.fill_checksum(V6, V6);
    let _ = (p.options_mut().len(), p.payload_mut().len());
}

fn poke_udp(b: &[u8]) {
    let p = UdpPacket::new_unchecked(b);
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.len(),
        p.checksum(),
        p.payload(),
    );
    let _ = (p.verify_checksum(V4, V4), p.verify_checksum(V6, V6));
    if let Ok(p) = UdpPacket::new_checked(b) {
        let _ = (UdpRepr::parse(&p, V4, V4), UdpRepr::parse(&p, V6, V6));
    }
    let mut owned = b.to_vec();
    UdpPacket::new_unchecked(&mut owned[..]).fill_checksum(V4, V4);
}

fn poke_icmp(b: &[u8]) {
    let p = Icmpv4Packet::new_unchecked(b);
    let _ = (
        p.msg_type(),
        p.msg_code(),
        p.echo_ident(),
        p.next_hop_mtu(),
        p.data(),
    );
    let _ = (
        p.invoking_packet(),
        p.verify_checksum(),
        Icmpv4Repr::parse(&p),
    );
    if let Ok(p) = Icmpv4Packet::new_checked(b) {
        if let Ok(repr) = Icmpv4Repr::parse(&p) {
            let _ = repr.invoking_packet().map(|ip| ip.payload().len());
        }
    }
    let p = Icmpv6Packet::new_unchecked(b);
    let _ = (
        p.msg_type(),
        p.mtu(),
        p.data(),
        p.invoking_packet(),
        Icmpv6Repr::parse(&p, V6, V6),
    );
    if let Ok(p) = Icmpv6Packet::new_checked(b) {
        if let Ok(repr) = Icmpv6Repr::parse(&p, V6, V6) {
            let _ = repr.invoking_packet().map(|ip| ip.payload().len());
        }
    }
}

proptest! {
    #[test]
    fn any_bytes(b in bytes()) {
        poke_ipv4(&b);
        poke_ipv6(&b);
        poke_tcp(&b);
        poke_udp(&b);
        poke_icmp(&b);
        let _: Vec<_> = TcpOptions::new(&b).collect();
        for first in [0u8, 43, 44, 51, 60, 6] {
            let _ = walk_extension_headers(IpProtocol(first), &b);
        }
    }

    #[test]
    fn ipv4_shaped(b in shaped(0x40)) {
        poke_ipv4(&b);
    }

    #[test]
    fn ipv6_shaped(b in shaped(0x60)) {
        poke_ipv6(&b);
    }

    /// TCP headers with a plausible data offset, so the option parser gets real work.
    #[test]
    fn tcp_shaped(b in bytes(), words in 5u8..=15) {
        let mut b = b;
        if let Some(x) = b.get_mut(12) {
            *x = words << 4;
        }
        poke_tcp(&b);
    }

    /// Option lists built from plausible pieces, including every known kind with wrong lengths.
    #[test]
    fn tcp_options(pieces in proptest::collection::vec((0u8..10, 0u8..12, any::<u8>()), 0..20)) {
        let mut options = Vec::new();
        for (kind, len, fill) in pieces {
            options.push(kind);
            if kind > 1 {
                options.push(len);
                options.resize(options.len() + usize::from(len.saturating_sub(2)), fill);
            }
        }
        let items: Vec<_> = TcpOptions::new(&options).collect();
        // At most one error, and only at the end.
        let errors = items.iter().filter(|i| i.is_err()).count();
        prop_assert!(errors <= 1);
        if errors == 1 {
            prop_assert!(items.last().is_some_and(|i| i.is_err()));
        }
    }
}
