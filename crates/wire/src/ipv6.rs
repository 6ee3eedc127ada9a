//! IPv6 headers (RFC 8200) and the walk over extension headers.

use std::net::Ipv6Addr;

use crate::field;
use crate::{Error, IpProtocol, Result};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// The most extension headers [`walk_extension_headers`] will step over. RFC 8200 §4.1 lists
/// at most 7 kinds in a recommended order (destination options twice); anything longer is
/// far more likely an attack than a packet (RFC 7112 discusses oversized chains).
pub const MAX_EXTENSION_HEADERS: usize = 8;

mod offset {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// A zero-copy view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap a buffer without checking it. Accessors read zeros past its end.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap a buffer holding a whole IPv6 packet, checking the version and that the payload
    /// length fits in the buffer (which may be longer: link-layer padding).
    ///
    /// A payload length of zero with a Jumbo Payload option (RFC 2675) is taken at face value:
    /// an empty payload.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_checked_header(buffer)?;
        let end = HEADER_LEN + usize::from(packet.payload_len());
        if end > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wrap a buffer holding at least the fixed header, without requiring the whole payload:
    /// the packet quoted in an ICMPv6 error (RFC 4443 §2.4(c)) may be cut short. The payload is
    /// what there is, up to the payload length.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 6 {
            return Err(Error::BadVersion);
        }
        Ok(packet)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn buf(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn ver_tc_flow(&self) -> u32 {
        field::u32_at(self.buf(), offset::VER_TC_FLOW)
    }

    /// The version field (6 for a valid packet).
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (RFC 8200 §7): DSCP and ECN.
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// DSCP, the high 6 bits of the traffic class.
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// ECN, the low 2 bits of the traffic class.
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// Flow label, 20 bits (RFC 6437).
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length: bytes after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        field::u16_at(self.buf(), offset::PAYLOAD_LEN)
    }

    /// The type of the header after the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(field::u8_at(self.buf(), offset::NEXT_HEADER))
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        field::u8_at(self.buf(), offset::HOP_LIMIT)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(field::array::<16>(self.buf(), offset::SRC))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(field::array::<16>(self.buf(), offset::DST))
    }

    /// Everything after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        field::slice(
            self.buf(),
            HEADER_LEN,
            HEADER_LEN + usize::from(self.payload_len()),
        )
    }

    /// Walk the extension headers to the upper-layer header. See [`walk_extension_headers`].
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        walk_extension_headers(self.next_header(), self.payload())
    }

    /// The unfragmentable part of this fragment, ready to head the reassembled packet
    /// (RFC 8200 §4.5): the fixed header and the extension headers before the fragment
    /// header, with the Next Header field that named the fragment header now naming the
    /// fragment header's next header ("The Next Header field of the last header of the
    /// Unfragmentable Part is obtained from the Next Header field of the first fragment's
    /// Fragment header"). Its payload length is left as it was: the caller sets it once the
    /// reassembled length is known (see [`set_payload_len`](Ipv6Packet::set_payload_len)).
    ///
    /// `fragment` must come from walking this packet's extension headers; positions that do
    /// not fit the packet are [`Error::Truncated`] or [`Error::BadExtensionHeader`].
    pub fn unfragmentable_part(&self, fragment: &Ipv6Fragment) -> Result<Vec<u8>> {
        let mut part = self
            .buf()
            .get(..fragment.unfragmentable_len())
            .ok_or(Error::Truncated)?
            .to_vec();
        let naming_field = match fragment.previous_header_offset {
            None => offset::NEXT_HEADER,
            Some(previous) if previous < fragment.header_offset => HEADER_LEN + previous,
            Some(_) => return Err(Error::BadExtensionHeader),
        };
        let field = part.get_mut(naming_field).ok_or(Error::Truncated)?;
        *field = fragment.next_header.0;
        Ok(part)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_ver_tc_flow(&mut self, v: u32) {
        field::set_u32(self.buf_mut(), offset::VER_TC_FLOW, v);
    }

    /// Set the version to 6.
    pub fn set_version(&mut self) {
        let v = (self.ver_tc_flow() & 0x0fff_ffff) | (6 << 28);
        self.set_ver_tc_flow(v);
    }

    /// Set the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let v = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Set the flow label (20 bits; higher bits are dropped).
    pub fn set_flow_label(&mut self, label: u32) {
        let v = (self.ver_tc_flow() & 0xfff0_0000) | (label & 0x000f_ffff);
        self.set_ver_tc_flow(v);
    }

    /// Set the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        field::set_u16(self.buf_mut(), offset::PAYLOAD_LEN, len);
    }

    /// Set the next header.
    pub fn set_next_header(&mut self, next: IpProtocol) {
        field::set_u8(self.buf_mut(), offset::NEXT_HEADER, next.0);
    }

    /// Set the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        field::set_u8(self.buf_mut(), offset::HOP_LIMIT, hop_limit);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        field::set_array(self.buf_mut(), offset::SRC, addr.octets());
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        field::set_array(self.buf_mut(), offset::DST, addr.octets());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        field::slice_mut(self.buf_mut(), HEADER_LEN, end)
    }
}

/// The fields of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The header after the fixed one: an extension header or the upper layer.
    pub next_header: IpProtocol,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// A repr with hop limit 64 (Linux's default), traffic class and flow label 0.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, payload_len: usize) -> Self {
        Self {
            src,
            dst,
            next_header,
            payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    /// Read the fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self> {
        if packet.version() != 6 {
            return Err(Error::BadVersion);
        }
        Ok(Self {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the fixed header to the start of `buf`. The payload is the caller's to place.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| Error::BadLength)?;
        let header = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        let mut packet = Ipv6Packet::new_unchecked(header);
        packet.set_ver_tc_flow(0);
        packet.set_version();
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        Ok(())
    }
}

/// Length of the fragment header (RFC 8200 §4.5: it has no length field; it is always 8 bytes).
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// The fragment header's fields (RFC 8200 §4.5), and where it sits in the packet: what a
/// reassembler needs to split a fragment into its unfragmentable and fragmentable parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// Offset in bytes of this fragment's data in the fragmentable part of the original
    /// packet (the field counts 8-byte units).
    pub offset: u16,
    /// The M flag: more fragments follow.
    pub more_frags: bool,
    /// Identification, shared by all fragments of one original packet.
    pub ident: u32,
    /// The fragment header's Next Header field: the first header of the fragmentable part
    /// (an extension header or the upper layer). In a fragment whose offset is nonzero this
    /// names a header that is in another fragment.
    pub next_header: IpProtocol,
    /// Offset of the fragment header in the IPv6 payload (after the fixed header). The bytes
    /// before it are the unfragmentable part's extension headers.
    pub header_offset: usize,
    /// Offset in the IPv6 payload of the last extension header before the fragment header,
    /// whose first byte is the Next Header field naming the fragment header; `None` when the
    /// fragment header follows the fixed header (whose Next Header field names it).
    pub previous_header_offset: Option<usize>,
}

impl Ipv6Fragment {
    /// Offset in the IPv6 payload of this fragment's data: the fragmentable part starts
    /// right after the fragment header.
    pub const fn data_offset(&self) -> usize {
        self.header_offset + FRAGMENT_HEADER_LEN
    }

    /// Length of the unfragmentable part: the fixed header and the extension headers before
    /// the fragment header.
    pub const fn unfragmentable_len(&self) -> usize {
        HEADER_LEN + self.header_offset
    }

    /// An atomic fragment (RFC 6946): offset 0 and no more fragments, the whole packet in
    /// one. RFC 6946 §4: it is processed at once, apart from any fragments queued for
    /// reassembly that happen to share its identification.
    pub const fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more_frags
    }
}

/// Write a fragment header (RFC 8200 §4.5) at the start of `buf`: `next_header` names the
/// first header of the fragmentable part, `offset` is in bytes (a multiple of 8; the low
/// three bits are the field's reserved and M bits and must be clear).
pub fn emit_fragment_header(
    buf: &mut [u8],
    next_header: IpProtocol,
    offset: u16,
    more_frags: bool,
    ident: u32,
) -> Result<()> {
    if offset & 0x7 != 0 {
        return Err(Error::BadLength);
    }
    let header = buf
        .get_mut(..FRAGMENT_HEADER_LEN)
        .ok_or(Error::BufferTooSmall)?;
    let [o1, o2] = (offset | u16::from(more_frags)).to_be_bytes();
    let [i1, i2, i3, i4] = ident.to_be_bytes();
    // Next Header, Reserved, Fragment Offset | Res | M, Identification.
    header.copy_from_slice(&[next_header.0, 0, o1, o2, i1, i2, i3, i4]);
    Ok(())
}

/// Where the extension header chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, ...), or ESP / No Next Header where the
    /// walk had to stop.
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header in the IPv6 payload (after the fixed header).
    pub offset: usize,
    /// The fragment header, if the chain had one. When its offset is nonzero, what follows is
    /// the middle of a packet, not an upper-layer header: the walk stops there, with
    /// `protocol` the fragment header's next header and `offset` where the fragment's data
    /// starts.
    pub fragment: Option<Ipv6Fragment>,
}

/// Step over the extension headers at the start of `payload` (the bytes after the fixed
/// header, whose next-header field is `first`).
///
/// Hop-by-hop (0), routing (43), fragment (44), destination options (60) and AH (51) are
/// stepped over; ESP (50) and No Next Header (59) end the walk, as does any other value (the
/// upper layer), and a fragment header with a nonzero offset (what follows it is the middle
/// of the original packet's fragmentable part, not headers). Errors: a header that runs past `payload` is [`Error::Truncated`]; hop-by-hop
/// other than first is [`Error::BadExtensionHeader`] (RFC 8200 §4.3: it "MUST immediately
/// follow the IPv6 header"); more than [`MAX_EXTENSION_HEADERS`] is [`Error::TooManyHeaders`].
pub fn walk_extension_headers(first: IpProtocol, payload: &[u8]) -> Result<UpperLayer> {
    let mut protocol = first;
    let mut offset = 0usize;
    let mut fragment = None;
    // The header whose Next Header field names the current one (None: the fixed header).
    let mut previous_header_offset = None;
    for index in 0..=MAX_EXTENSION_HEADERS {
        let len = match protocol {
            IpProtocol::HOP_BY_HOP if index != 0 => return Err(Error::BadExtensionHeader),
            // RFC 8200 §4.3, §4.4, §4.6: "Hdr Ext Len" counts 8-octet units past the first 8.
            IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                let ext_len = header_byte(payload, offset, 1)?;
                (usize::from(ext_len) + 1) * 8
            }
            // RFC 8200 §4.5: the fragment header is always 8 bytes.
            IpProtocol::IPV6_FRAG => {
                let at = offset.checked_add(2).ok_or(Error::Truncated)?;
                let bytes = payload
                    .get(at..)
                    .and_then(|rest| rest.first_chunk::<6>())
                    .ok_or(Error::Truncated)?;
                let [o1, o2, i1, i2, i3, i4] = *bytes;
                let off_flags = u16::from_be_bytes([o1, o2]);
                let this = Ipv6Fragment {
                    offset: off_flags & 0xfff8,
                    more_frags: off_flags & 1 != 0,
                    ident: u32::from_be_bytes([i1, i2, i3, i4]),
                    next_header: IpProtocol(header_byte(payload, offset, 0)?),
                    header_offset: offset,
                    previous_header_offset,
                };
                fragment = Some(this);
                if this.offset != 0 {
                    // Not the first fragment: the bytes after the header are data from the
                    // middle of the fragmentable part, which only reassembly makes sense of.
                    return Ok(UpperLayer {
                        protocol: this.next_header,
                        offset: this.data_offset(),
                        fragment,
                    });
                }
                FRAGMENT_HEADER_LEN
            }
            // RFC 4302 §2.2: AH's Payload Len counts 4-octet units, minus 2.
            IpProtocol::AH => {
                let ext_len = header_byte(payload, offset, 1)?;
                (usize::from(ext_len) + 2) * 4
            }
            // ESP hides what follows; No Next Header has nothing after it (RFC 8200 §4.7).
            _ => {
                return Ok(UpperLayer {
                    protocol,
                    offset,
                    fragment,
                })
            }
        };
        let next = header_byte(payload, offset, 0)?;
        let end = offset.checked_add(len).ok_or(Error::Truncated)?;
        if end > payload.len() {
            return Err(Error::Truncated);
        }
        protocol = IpProtocol(next);
        previous_header_offset = Some(offset);
        offset = end;
    }
    Err(Error::TooManyHeaders)
}

fn header_byte(payload: &[u8], offset: usize, at: usize) -> Result<u8> {
    offset
        .checked_add(at)
        .and_then(|i| payload.get(i))
        .copied()
        .ok_or(Error::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last)
    }

    #[test]
    fn parse_and_emit() {
        // Version 6, traffic class 0xb8, flow label 0x12345, payload 8, UDP, hop limit 64.
        let mut bytes = vec![0x6b, 0x81, 0x23, 0x45, 0x00, 0x08, 17, 64];
        bytes.extend_from_slice(&addr(1).octets());
        bytes.extend_from_slice(&addr(2).octets());
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0xff]); // one byte of padding
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xb8);
        assert_eq!(packet.dscp(), 46);
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload_len(), 8);
        assert_eq!(packet.next_header(), IpProtocol::UDP);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let repr = Ipv6Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Ipv6Repr {
                traffic_class: 0xb8,
                flow_label: 0x12345,
                ..Ipv6Repr::new(addr(1), addr(2), IpProtocol::UDP, 8)
            }
        );
        let mut out = [0u8; 40];
        repr.emit(&mut out).unwrap();
        assert_eq!(&out[..], &bytes[..40]);
        assert_eq!(
            packet.upper_layer().unwrap(),
            UpperLayer {
                protocol: IpProtocol::UDP,
                offset: 0,
                fragment: None
            }
        );
    }

    #[test]
    fn rejects() {
        let mut bytes = [0u8; 48];
        bytes[0] = 0x60;
        bytes[5] = 9;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..39]).unwrap_err(),
            Error::Truncated
        );
        bytes[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadVersion
        );
        let repr = Ipv6Repr::new(addr(1), addr(2), IpProtocol::TCP, 65_536);
        assert_eq!(repr.emit(&mut [0; 40]), Err(Error::BadLength));
        assert_eq!(
            Ipv6Repr {
                payload_len: 0,
                ..repr
            }
            .emit(&mut [0; 39]),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn walks_extension_headers() {
        let mut payload = Vec::new();
        // Hop-by-hop, 8 bytes: next = routing, len 0, PadN(4)... a Router Alert would do too.
        payload.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]);
        // Routing, 24 bytes (len 2): next = destination options.
        payload.extend_from_slice(&[60, 2, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0; 16]);
        // Destination options, 8 bytes: next = AH.
        payload.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]);
        // AH with a 12-byte ICV: Payload Len = (12 + 12) / 4 - 2 = 4; next = fragment.
        payload.extend_from_slice(&[44, 4, 0, 0]);
        payload.extend_from_slice(&[0; 20]);
        // Fragment: next = TCP, offset 0x0100 bytes (=32 units), M set, ident 0xdeadbeef.
        payload.extend_from_slice(&[6, 0, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        let upper_offset = payload.len();
        payload.extend_from_slice(&[0; 20]);

        let upper = walk_extension_headers(IpProtocol::HOP_BY_HOP, &payload).unwrap();
        assert_eq!(upper.protocol, IpProtocol::TCP);
        assert_eq!(upper.offset, upper_offset);
        assert_eq!(
            upper.fragment,
            Some(Ipv6Fragment {
                offset: 0x0100,
                more_frags: true,
                ident: 0xdead_beef,
                next_header: IpProtocol::TCP,
                header_offset: upper_offset - 8,
                previous_header_offset: Some(upper_offset - 32),
            })
        );

        // Each cut inside the chain is a truncation, never a panic.
        for cut in 0..upper_offset {
            assert_eq!(
                walk_extension_headers(IpProtocol::HOP_BY_HOP, &payload[..cut]),
                Err(Error::Truncated),
                "cut at {cut}"
            );
        }
        // Hop-by-hop in second place.
        assert_eq!(
            walk_extension_headers(IpProtocol::IPV6_OPTS, &[0, 0, 0, 0, 0, 0, 0, 0, 6]),
            Err(Error::BadExtensionHeader)
        );
    }

    #[test]
    fn esp_and_no_next_stop() {
        let payload = [50, 0, 1, 4, 0, 0, 0, 0, 0xaa, 0xbb];
        let upper = walk_extension_headers(IpProtocol::IPV6_OPTS, &payload).unwrap();
        assert_eq!(upper.protocol, IpProtocol::ESP);
        assert_eq!(upper.offset, 8);
        let upper = walk_extension_headers(IpProtocol::IPV6_NO_NEXT, &[1, 2, 3]).unwrap();
        assert_eq!(upper.protocol, IpProtocol::IPV6_NO_NEXT);
        assert_eq!(upper.offset, 0);
    }

    #[test]
    fn bounded_chain() {
        // Nine destination options headers in a row.
        let mut payload = Vec::new();
        for _ in 0..9 {
            payload.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            walk_extension_headers(IpProtocol::IPV6_OPTS, &payload),
            Err(Error::TooManyHeaders)
        );
        // Eight are fine.
        let mut payload = payload[8..].to_vec();
        if let Some(b) = payload.get_mut(7 * 8) {
            *b = 17;
        }
        let upper = walk_extension_headers(IpProtocol::IPV6_OPTS, &payload).unwrap();
        assert_eq!(upper.protocol, IpProtocol::UDP);
        assert_eq!(upper.offset, 64);
    }

    /// A fixed header (next header `first`) followed by `payload`, as a checked packet's bytes.
    fn packet(first: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_LEN];
        Ipv6Repr::new(addr(1), addr(2), first, payload.len())
            .emit(&mut bytes)
            .unwrap();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn first_fragment_walks_on_to_the_upper_layer() {
        // Fragment header right after the fixed header: next = UDP, offset 0, M set.
        let mut payload = vec![17, 0, 0x00, 0x01, 0, 0, 0, 9];
        payload.extend_from_slice(&[0; 8]); // a UDP header
        let bytes = packet(IpProtocol::IPV6_FRAG, &payload);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::UDP);
        assert_eq!(upper.offset, 8);
        let fragment = upper.fragment.unwrap();
        assert_eq!(
            fragment,
            Ipv6Fragment {
                offset: 0,
                more_frags: true,
                ident: 9,
                next_header: IpProtocol::UDP,
                header_offset: 0,
                previous_header_offset: None,
            }
        );
        assert_eq!(fragment.data_offset(), 8);
        assert_eq!(fragment.unfragmentable_len(), 40);
        assert!(!fragment.is_atomic());
        // RFC 8200 §4.5: the reassembled packet's fixed header names UDP directly.
        let head = p.unfragmentable_part(&fragment).unwrap();
        assert_eq!(head.len(), 40);
        assert_eq!(head[6], 17);
        assert_eq!(head[..6], bytes[..6]);
        assert_eq!(head[7..], bytes[7..40]);
    }

    #[test]
    fn later_fragment_stops_the_walk() {
        // Hop-by-hop, then a fragment (offset 1232, M clear) whose next header is
        // destination options: the data after it is the middle of the original packet and
        // must not be walked as headers (here it would look like a truncated header).
        let mut payload = vec![44, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&[60, 0, 0x04, 0xd0, 0, 0, 0x01, 0x00]);
        payload.extend_from_slice(&[0, 200, 1, 2, 3]);
        let bytes = packet(IpProtocol::HOP_BY_HOP, &payload);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::IPV6_OPTS);
        assert_eq!(upper.offset, 16);
        let fragment = upper.fragment.unwrap();
        assert_eq!(fragment.offset, 1232);
        assert!(!fragment.more_frags);
        assert_eq!(fragment.ident, 256);
        assert_eq!(fragment.header_offset, 8);
        assert_eq!(fragment.previous_header_offset, Some(0));
        assert_eq!(&p.payload()[fragment.data_offset()..], &[0, 200, 1, 2, 3]);
        // The unfragmentable part keeps the hop-by-hop header, which now names what the
        // fragment header named; the fixed header is untouched.
        let head = p.unfragmentable_part(&fragment).unwrap();
        assert_eq!(head.len(), 48);
        assert_eq!(head[..40], bytes[..40]);
        assert_eq!(head[40..], [60, 0, 1, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn fragment_header_round_trip() {
        let mut payload = [0u8; 12];
        emit_fragment_header(&mut payload, IpProtocol::UDP, 1448, true, 0xfeed_f00d).unwrap();
        let upper = walk_extension_headers(IpProtocol::IPV6_FRAG, &payload).unwrap();
        let fragment = upper.fragment.unwrap();
        assert_eq!(
            (fragment.offset, fragment.more_frags, fragment.ident),
            (1448, true, 0xfeed_f00d)
        );
        assert_eq!(fragment.next_header, IpProtocol::UDP);
        assert_eq!(upper.offset, 8);
        assert_eq!(
            emit_fragment_header(&mut payload, IpProtocol::UDP, 1001, false, 1),
            Err(Error::BadLength)
        );
        assert_eq!(
            emit_fragment_header(&mut payload[..7], IpProtocol::UDP, 0, false, 1),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn atomic_fragment() {
        // RFC 6946: offset 0 and M clear.
        let payload = [58, 0, 0, 0, 0, 0, 0, 1, 128, 0, 0, 0];
        let upper = walk_extension_headers(IpProtocol::IPV6_FRAG, &payload).unwrap();
        assert_eq!(upper.protocol, IpProtocol::ICMPV6);
        assert!(upper.fragment.unwrap().is_atomic());
    }

    #[test]
    fn unfragmentable_part_rejects_positions_that_do_not_fit() {
        let bytes = packet(IpProtocol::UDP, &[0; 8]);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let fragment = Ipv6Fragment {
            offset: 0,
            more_frags: true,
            ident: 1,
            next_header: IpProtocol::UDP,
            header_offset: 64,
            previous_header_offset: None,
        };
        assert_eq!(p.unfragmentable_part(&fragment), Err(Error::Truncated));
        let fragment = Ipv6Fragment {
            header_offset: 0,
            previous_header_offset: Some(0),
            ..fragment
        };
        assert_eq!(
            p.unfragmentable_part(&fragment),
            Err(Error::BadExtensionHeader)
        );
    }

    proptest::proptest! {
        /// Whatever the bytes, walking and splitting at a fragment header never panics, and a
        /// fragment's parts lie inside the packet.
        #[test]
        fn fragment_positions_lie_inside_the_payload(
            first in proptest::sample::select(vec![0u8, 43, 44, 51, 60]),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
        ) {
            let bytes = packet(IpProtocol(first), &payload);
            let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            if let Ok(UpperLayer { fragment: Some(fragment), offset, .. }) = p.upper_layer() {
                proptest::prop_assert!(fragment.data_offset() <= payload.len());
                proptest::prop_assert!(offset <= payload.len());
                let head = p.unfragmentable_part(&fragment).unwrap();
                proptest::prop_assert_eq!(head.len(), fragment.unfragmentable_len());
                proptest::prop_assert_eq!(
                    head.get(6).copied(),
                    Some(if fragment.previous_header_offset.is_none() {
                        fragment.next_header.0
                    } else {
                        first
                    })
                );
            }
        }
    }
}
