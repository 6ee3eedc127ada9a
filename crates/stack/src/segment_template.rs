//! A connection's packets from a header built once: nearly every segment
//! of an established connection carries no option but timestamps (pure
//! ACKs, data), and everything of its IP header and TCP ports is the same
//! each time. The template holds those bytes and their share of the
//! checksums; a segment patches in its own fields and adds theirs to the
//! sums, instead of laying out a general header and summing it. Segments
//! with other options (SYNs, SACK blocks) go the general way; both build
//! the same bytes (checked below on random segments).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use oxcat_tcp::{Header, Payload};
use oxcat_wire::{Checksum, IpAddress, IpProtocol, Ipv4Repr, Ipv6Repr};

use crate::stack::FourTuple;

/// The options of a segment with timestamps alone, as `TcpRepr::emit` lays
/// them out: NOP, NOP, kind 8, length 10, then TSval and TSecr.
const TIMESTAMPS_LEAD: [u8; 4] = [1, 1, 8, 10];

/// The most IP header bytes (IPv6's fixed header) plus the two ports.
const MAX_HEAD: usize = 40 + 4;

#[derive(Clone, Debug)]
pub(crate) struct SegmentTemplate {
    /// The IP header with its length (and, for IPv4, checksum) fields
    /// zero, then the TCP source and destination ports.
    head: [u8; MAX_HEAD],
    /// 20 (IPv4) or 40 (IPv6).
    ip_len: usize,
    /// IPv4: the header's sum with zero length and checksum, folded.
    ip_sum: u64,
    /// The TCP pseudo-header's sum with a zero length, folded.
    pseudo: u64,
    /// The ports as one word (the header's first four bytes).
    ports: u32,
}

/// A sum of a few dozen 16- and 32-bit values (far below 2^64: no carry
/// is lost) as a `Checksum`, to fold and complement.
#[inline]
fn checksum_of(sum: u64) -> Checksum {
    let mut c = Checksum::new();
    c.add_u32((sum >> 32) as u32).add_u32(sum as u32);
    c
}

impl SegmentTemplate {
    /// The template for segments from `tuple.local` to `tuple.remote`
    /// (None for addresses of different families: no packet joins them).
    pub(crate) fn new(tuple: &FourTuple) -> Option<SegmentTemplate> {
        let mut head = [0u8; MAX_HEAD];
        let (ip_len, pseudo) = match (tuple.local.ip(), tuple.remote.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                Ipv4Repr::new(src, dst, IpProtocol::TCP, 0)
                    .emit(&mut head)
                    .ok()?;
                // Total length and header checksum: the segment's to fill in.
                head[2..4].fill(0);
                head[10..12].fill(0);
                (20, Ipv4Addr::pseudo_header(src, dst, IpProtocol::TCP, 0))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                // The payload length, zero here, is the segment's to fill in.
                Ipv6Repr::new(src, dst, IpProtocol::TCP, 0)
                    .emit(&mut head)
                    .ok()?;
                (40, Ipv6Addr::pseudo_header(src, dst, IpProtocol::TCP, 0))
            }
            _ => return None,
        };
        let ports = (u32::from(tuple.local.port()) << 16) | u32::from(tuple.remote.port());
        head[ip_len..ip_len + 4].copy_from_slice(&ports.to_be_bytes());
        let mut ip_sum = Checksum::new();
        if ip_len == 20 {
            ip_sum.add_bytes(&head[..20]);
        }
        Some(SegmentTemplate {
            head,
            ip_len,
            ip_sum: u64::from(ip_sum.sum()),
            pseudo: u64::from(pseudo.sum()),
            ports,
        })
    }

    /// Writes the packet carrying `h` and `payload` at the start of `buf`
    /// and returns its length, when the segment's only option is
    /// timestamps (or it has none); None: not such a segment, or one the
    /// general path refuses as well (too long for the length field, or for
    /// `buf`). `partial`: the checksum field gets the pseudo-header's sum,
    /// for the device to complete (as `TcpRepr::emit_partial`).
    pub(crate) fn emit(
        &self,
        buf: &mut [u8],
        h: &Header,
        payload: Payload<'_>,
        partial: bool,
    ) -> Option<usize> {
        self.build(buf, h, payload, true, partial)
    }

    /// The IP and TCP headers of the packet `emit` would build, alone, at
    /// the start of `buf` (lengths and checksum count `payload`, which is
    /// read for the checksum unless `partial`, never copied): for a device
    /// that sends the packet from its pieces (`Device::transmit_gather`).
    /// Returns the headers' length.
    pub(crate) fn emit_headers(
        &self,
        buf: &mut [u8],
        h: &Header,
        payload: Payload<'_>,
        partial: bool,
    ) -> Option<usize> {
        self.build(buf, h, payload, false, partial)
    }

    /// `copy`: the whole packet, or the headers alone.
    #[inline(always)]
    fn build(
        &self,
        buf: &mut [u8],
        h: &Header,
        payload: Payload<'_>,
        copy: bool,
        partial: bool,
    ) -> Option<usize> {
        let o = &h.options;
        if o.mss.is_some() || o.window_scale.is_some() || o.sack_permitted || !o.sack.is_empty() {
            return None;
        }
        let header_len = if o.timestamps.is_some() { 32 } else { 20 };
        let tcp_len = header_len + payload.len();
        let total = self.ip_len + tcp_len;
        let v4 = self.ip_len == 20;
        let length_field = u16::try_from(if v4 { total } else { tcp_len }).ok()?;
        let written = if copy { total } else { total - payload.len() };
        let packet = buf.get_mut(..written)?;
        // The header and ports in one copy of a known size.
        let tcp = if v4 {
            let (head, tcp) = packet.split_first_chunk_mut::<20>()?;
            let template = self.head.first_chunk::<24>()?;
            head.copy_from_slice(&template[..20]);
            head[2..4].copy_from_slice(&length_field.to_be_bytes());
            let checksum = checksum_of(self.ip_sum + u64::from(length_field)).finish();
            head[10..12].copy_from_slice(&checksum.to_be_bytes());
            tcp.first_chunk_mut::<4>()?.copy_from_slice(&template[20..]);
            tcp
        } else {
            let (head, tcp) = packet.split_first_chunk_mut::<40>()?;
            let template = &self.head;
            head.copy_from_slice(&template[..40]);
            head[4..6].copy_from_slice(&length_field.to_be_bytes());
            tcp.first_chunk_mut::<4>()?.copy_from_slice(&template[40..]);
            tcp
        };
        let offset_flags = ((header_len as u16 / 4) << 12) | u16::from(h.flags.0);
        let (fixed, rest) = tcp.split_at_mut(20);
        fixed[4..8].copy_from_slice(&h.seq.0.to_be_bytes());
        fixed[8..12].copy_from_slice(&h.ack.0.to_be_bytes());
        fixed[12..14].copy_from_slice(&offset_flags.to_be_bytes());
        fixed[14..16].copy_from_slice(&h.window.to_be_bytes());
        // Checksum (below) and urgent pointer.
        fixed[16..20].fill(0);
        // The length is below 2^16 (checked above).
        let pseudo = self.pseudo + tcp_len as u64;
        let mut sum = pseudo
            + u64::from(self.ports)
            + u64::from(h.seq.0)
            + u64::from(h.ack.0)
            + u64::from(offset_flags)
            + u64::from(h.window);
        let data = match o.timestamps {
            Some((tsval, tsecr)) => {
                let (options, data) = rest.split_at_mut(12);
                options[..4].copy_from_slice(&TIMESTAMPS_LEAD);
                options[4..8].copy_from_slice(&tsval.to_be_bytes());
                options[8..12].copy_from_slice(&tsecr.to_be_bytes());
                sum += u64::from(u32::from_be_bytes(TIMESTAMPS_LEAD))
                    + u64::from(tsval)
                    + u64::from(tsecr);
                data
            }
            None => rest,
        };
        if !payload.is_empty() {
            let (head, tail) = payload.parts();
            if copy {
                let (a, b) = data.split_at_mut(head.len());
                oxcat_tcp::copy::copy(a, head);
                oxcat_tcp::copy::copy(b, tail);
                if !partial {
                    sum += u64::from(Checksum::new().add_bytes(data).sum());
                }
            } else if !partial {
                // Summed where the bytes lie (an odd first part carries
                // the word it splits over to the second: `Checksum`).
                sum += u64::from(Checksum::new().add_bytes(head).add_bytes(tail).sum());
            }
        }
        let checksum = if partial {
            checksum_of(pseudo).sum()
        } else {
            checksum_of(sum).finish()
        };
        fixed[16..18].copy_from_slice(&checksum.to_be_bytes());
        Some(written)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use oxcat_tcp::{Flags, Options, SackBlocks, SeqNum};
    use proptest::prelude::*;

    use super::*;
    use crate::stack::tcp_packet;

    fn tuple(v6: bool, a: u128, b: u128, local_port: u16, remote_port: u16) -> FourTuple {
        let (local, remote): (IpAddr, IpAddr) = if v6 {
            (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into())
        } else {
            (
                Ipv4Addr::from(a as u32).into(),
                Ipv4Addr::from(b as u32).into(),
            )
        };
        FourTuple {
            local: SocketAddr::new(local, local_port),
            remote: SocketAddr::new(remote, remote_port),
        }
    }

    /// Both ways of building `h`: the template's (None if it declines)
    /// and the general path's.
    fn both(
        t: &FourTuple,
        h: &Header,
        payload: Payload<'_>,
        partial: bool,
        room: usize,
    ) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let template = SegmentTemplate::new(t).unwrap();
        let mut fast = vec![0xa5u8; room];
        let mut general = vec![0x5au8; room];
        let fast = template
            .emit(&mut fast, h, payload, partial)
            .map(|n| fast[..n].to_vec());
        let general = tcp_packet(&mut general, t, h, payload, partial)
            .ok()
            .map(|n| general[..n].to_vec());
        (fast, general)
    }

    proptest! {
        /// Segments with timestamps alone or no options: the template's
        /// packet is the general path's, byte for byte (IPv4 and IPv6,
        /// checksum complete or left to the device, payload in one or two
        /// parts, any flags).
        #[test]
        fn template_packets_are_the_general_ones(
            v6 in any::<bool>(),
            a in any::<u128>(),
            b in any::<u128>(),
            ports in any::<(u16, u16)>(),
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window in any::<u16>(),
            timestamps in proptest::option::of(any::<(u32, u32)>()),
            payload in proptest::collection::vec(any::<u8>(), 0..1600),
            split in any::<prop::sample::Index>(),
            partial in any::<bool>(),
        ) {
            let t = tuple(v6, a, b, ports.0, ports.1);
            let h = Header {
                seq: SeqNum(seq),
                ack: SeqNum(ack),
                flags: Flags(flags),
                window,
                options: Options { timestamps, ..Options::default() },
            };
            let (head, tail) = payload.split_at(split.index(payload.len() + 1));
            let (fast, general) = both(&t, &h, Payload::new(head, tail), partial, 2048);
            prop_assert!(fast.is_some());
            prop_assert_eq!(fast, general);
        }

        /// The headers alone (for a device that gathers) followed by the
        /// payload's parts are the packet `emit` builds, byte for byte.
        #[test]
        fn headers_then_payload_are_the_packet(
            v6 in any::<bool>(),
            a in any::<u128>(),
            b in any::<u128>(),
            seq in any::<u32>(),
            timestamps in proptest::option::of(any::<(u32, u32)>()),
            payload in proptest::collection::vec(any::<u8>(), 0..1600),
            split in any::<prop::sample::Index>(),
            partial in any::<bool>(),
        ) {
            let t = tuple(v6, a, b, 40000, 80);
            let h = Header {
                seq: SeqNum(seq),
                ack: SeqNum(seq ^ 0x5555),
                flags: Flags::ACK,
                window: 512,
                options: Options { timestamps, ..Options::default() },
            };
            let (head, tail) = payload.split_at(split.index(payload.len() + 1));
            let parts = Payload::new(head, tail);
            let template = SegmentTemplate::new(&t).unwrap();
            let mut whole = vec![0u8; 2048];
            let n = template.emit(&mut whole, &h, parts, partial).unwrap();
            let mut headers = vec![0u8; 100];
            let hl = template.emit_headers(&mut headers, &h, parts, partial).unwrap();
            let gathered = [&headers[..hl], head, tail].concat();
            prop_assert_eq!(&gathered[..], &whole[..n]);
        }

        /// Any other option: the template declines, the general path builds it.
        #[test]
        fn other_options_go_the_general_way(
            which in 0u8..4,
            timestamps in proptest::option::of(any::<(u32, u32)>()),
            v6 in any::<bool>(),
        ) {
            let t = tuple(v6, 1, 2, 3, 4);
            let mut options = Options { timestamps, ..Options::default() };
            match which {
                0 => options.mss = Some(1460),
                1 => options.window_scale = Some(7),
                2 => options.sack_permitted = true,
                _ => {
                    let mut sack = SackBlocks::new();
                    sack.push(SeqNum(10), SeqNum(20));
                    options.sack = sack;
                }
            }
            let h = Header { options, ..Header::default() };
            let (fast, general) = both(&t, &h, Payload::default(), false, 2048);
            prop_assert!(fast.is_none());
            prop_assert!(general.is_some());
        }
    }

    /// A buffer too short, or a segment too long for the length field:
    /// neither way builds a packet.
    #[test]
    fn refused_alike() {
        for v6 in [false, true] {
            let t = tuple(v6, 1, 2, 3, 4);
            let h = Header::default();
            let data = vec![7u8; 65535];
            assert_eq!(
                both(&t, &h, Payload::new(&data[..100], &[]), false, 110),
                (None, None)
            );
            assert_eq!(
                both(&t, &h, Payload::new(&data, &[]), false, 70_000),
                (None, None)
            );
            // The largest that fits the length field: both build it.
            let largest = if v6 { 65535 - 20 } else { 65535 - 40 };
            let (fast, general) = both(&t, &h, Payload::new(&data[..largest], &[]), true, 70_000);
            assert!(fast.is_some());
            assert_eq!(fast, general);
        }
    }
}
