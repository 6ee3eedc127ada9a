//! IPv4 headers (RFC 791).

use std::net::Ipv4Addr;

use crate::checksum::{self, Checksum};
use crate::field;
use crate::{Error, IpProtocol, Result};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod offset {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// RFC 791 §3.1 "Flags": bit 1 is Don't Fragment, bit 2 More Fragments (bit 0 reserved).
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap a buffer without checking it. Accessors read zeros past its end.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap a buffer holding a whole IPv4 packet, checking the version, the header length
    /// and the total length. The header checksum is not checked: see [`Self::verify_checksum`].
    ///
    /// The buffer may be longer than the total length (link-layer padding); the payload ends
    /// at the total length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_checked_header(buffer)?;
        let total_len = usize::from(packet.total_len());
        if total_len < packet.header_len() {
            return Err(Error::BadLength);
        }
        if total_len > packet.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    /// Wrap a buffer that holds an IPv4 header (options included) but perhaps not the whole
    /// payload the total length announces: the packet quoted in an ICMP error, which carries
    /// only the header and the first 8 bytes of the payload (RFC 792). The payload is what
    /// there is, up to the total length.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 4 {
            return Err(Error::BadVersion);
        }
        // RFC 791 §3.1: "the minimum value for a correct header is 5".
        if packet.header_len() < HEADER_LEN {
            return Err(Error::BadLength);
        }
        if packet.header_len() > len {
            return Err(Error::Truncated);
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

    /// The version field (4 for a valid packet).
    pub fn version(&self) -> u8 {
        field::u8_at(self.buf(), offset::VER_IHL) >> 4
    }

    /// The header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(field::u8_at(self.buf(), offset::VER_IHL) & 0x0f) * 4
    }

    /// The whole Type of Service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        field::u8_at(self.buf(), offset::TOS)
    }

    /// Differentiated Services Code Point, the high 6 bits of the TOS byte (RFC 2474 §3).
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Explicit Congestion Notification, the low 2 bits of the TOS byte (RFC 3168 §5).
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total length of the packet, header included.
    pub fn total_len(&self) -> u16 {
        field::u16_at(self.buf(), offset::TOTAL_LEN)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        field::u16_at(self.buf(), offset::IDENT)
    }

    fn flags_frag(&self) -> u16 {
        field::u16_at(self.buf(), offset::FLAGS_FRAG)
    }

    /// Don't Fragment.
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// More Fragments.
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units, RFC 791 §3.1).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_OFFSET_MASK) << 3
    }

    /// Whether the packet is a fragment (MF set or a nonzero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        field::u8_at(self.buf(), offset::TTL)
    }

    /// The protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(field::u8_at(self.buf(), offset::PROTOCOL))
    }

    /// The header checksum as stored.
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buf(), offset::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::array::<4>(self.buf(), offset::SRC))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(field::array::<4>(self.buf(), offset::DST))
    }

    /// The header as bytes, options included.
    pub fn header(&self) -> &[u8] {
        field::slice(self.buf(), 0, self.header_len())
    }

    /// The options bytes (empty when IHL is 5).
    pub fn options(&self) -> &[u8] {
        field::slice(self.buf(), HEADER_LEN, self.header_len())
    }

    /// The payload: from the end of the header to the total length (or the end of the
    /// buffer, for a view made with `new_checked_header`).
    pub fn payload(&self) -> &[u8] {
        field::slice(self.buf(), self.header_len(), usize::from(self.total_len()))
    }

    /// Whether the header checksum is right (RFC 791 §3.1: the sum over the header,
    /// checksum included, is all ones).
    pub fn verify_checksum(&self) -> bool {
        let header = self.header();
        // Nearly every header has no options: summed as a known 20 bytes,
        // the compiler unrolls it.
        if let Ok(fixed) = <&[u8; HEADER_LEN]>::try_from(header) {
            return checksum::checksum(fixed) == 0;
        }
        checksum::checksum(header) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Set the version (4) and the header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        field::set_u8(self.buf_mut(), offset::VER_IHL, 0x40 | ihl);
    }

    /// Set the whole TOS byte.
    pub fn set_tos(&mut self, tos: u8) {
        field::set_u8(self.buf_mut(), offset::TOS, tos);
    }

    /// Set DSCP (6 bits), keeping ECN.
    pub fn set_dscp(&mut self, dscp: u8) {
        let tos = (dscp << 2) | self.ecn();
        self.set_tos(tos);
    }

    /// Set ECN (2 bits), keeping DSCP.
    pub fn set_ecn(&mut self, ecn: u8) {
        let tos = (self.tos() & !0x03) | (ecn & 0x03);
        self.set_tos(tos);
    }

    /// Set the total length.
    pub fn set_total_len(&mut self, len: u16) {
        field::set_u16(self.buf_mut(), offset::TOTAL_LEN, len);
    }

    /// Set the identification.
    pub fn set_ident(&mut self, ident: u16) {
        field::set_u16(self.buf_mut(), offset::IDENT, ident);
    }

    fn set_flags_frag(&mut self, v: u16) {
        field::set_u16(self.buf_mut(), offset::FLAGS_FRAG, v);
    }

    /// Set or clear Don't Fragment.
    pub fn set_dont_frag(&mut self, on: bool) {
        let v = self.flags_frag() & !FLAG_DF;
        self.set_flags_frag(if on { v | FLAG_DF } else { v });
    }

    /// Set or clear More Fragments.
    pub fn set_more_frags(&mut self, on: bool) {
        let v = self.flags_frag() & !FLAG_MF;
        self.set_flags_frag(if on { v | FLAG_MF } else { v });
    }

    /// Set the fragment offset in bytes (rounded down to a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let v = (self.flags_frag() & !FRAG_OFFSET_MASK) | (bytes >> 3);
        self.set_flags_frag(v);
    }

    /// Set the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        field::set_u8(self.buf_mut(), offset::TTL, ttl);
    }

    /// Set the protocol.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        field::set_u8(self.buf_mut(), offset::PROTOCOL, protocol.0);
    }

    /// Store a checksum value.
    pub fn set_checksum(&mut self, checksum: u16) {
        field::set_u16(self.buf_mut(), offset::CHECKSUM, checksum);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        field::set_array(self.buf_mut(), offset::SRC, addr.octets());
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        field::set_array(self.buf_mut(), offset::DST, addr.octets());
    }

    /// Compute the header checksum and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.header());
        self.set_checksum(sum);
    }

    /// Update TTL and checksum in one go, as a router does (RFC 1624 §3 incremental update).
    pub fn decrement_ttl(&mut self) {
        let old = u16::from_be_bytes([self.ttl(), self.protocol().0]);
        let ttl = self.ttl().saturating_sub(1);
        self.set_ttl(ttl);
        let new = u16::from_be_bytes([ttl, self.protocol().0]);
        // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
        let mut sum = Checksum::new();
        sum.add_u16(!self.checksum()).add_u16(!old).add_u16(new);
        self.set_checksum(sum.finish());
    }

    /// The options bytes, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        field::slice_mut(self.buf_mut(), HEADER_LEN, end)
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        field::slice_mut(self.buf_mut(), start, end)
    }
}

/// The fields of an IPv4 header that a stack acts on. Options are skipped on parse and never
/// emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Bytes after the header (total length − header length).
    pub payload_len: usize,
    pub ttl: u8,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes, a multiple of 8.
    pub frag_offset: u16,
    pub ident: u16,
    /// DSCP, 6 bits.
    pub dscp: u8,
    /// ECN, 2 bits.
    pub ecn: u8,
}

impl Ipv4Repr {
    /// A repr with the usual defaults: TTL 64, DF set (as Linux with path MTU discovery),
    /// identification 0, no DSCP/ECN, not a fragment.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> Self {
        Self {
            src,
            dst,
            protocol,
            payload_len,
            ttl: 64,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            ident: 0,
            dscp: 0,
            ecn: 0,
        }
    }

    /// Read the fields of a checked packet, verifying the header checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Self::parse_unverified(packet)
    }

    /// Read the fields without verifying the checksum (for checksum-offloading devices, or
    /// the quoted header of an ICMP error, which routers may have altered).
    pub fn parse_unverified<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        if packet.version() != 4 {
            return Err(Error::BadVersion);
        }
        let header_len = packet.header_len();
        let total_len = usize::from(packet.total_len());
        if header_len < HEADER_LEN || total_len < header_len {
            return Err(Error::BadLength);
        }
        Ok(Self {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: total_len - header_len,
            ttl: packet.ttl(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            ident: packet.ident(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
        })
    }

    /// Length of the header `emit` writes (no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload: the total length field.
    pub const fn total_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Write the header to the start of `buf` (at least [`Self::buffer_len`] bytes), header
    /// checksum included. The payload is the caller's to place after it.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let total_len = u16::try_from(self.total_len()).map_err(|_| Error::BadLength)?;
        let header = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        let mut packet = Ipv4Packet::new_unchecked(header);
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_tos((self.dscp << 2) | (self.ecn & 0x03));
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_flags_frag(0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP packet's IPv4 header (the classic example with checksum b861) and 95 bytes of
    /// payload to make up its total length of 0x73.
    fn sample() -> Vec<u8> {
        let mut bytes = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        bytes.resize(0x73, 0xaa);
        bytes
    }

    #[test]
    fn parse_sample() {
        let bytes = sample();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 0x73);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), IpProtocol::UDP);
        assert_eq!(packet.checksum(), 0xb861);
        assert!(packet.verify_checksum());
        assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(packet.payload().len(), 0x73 - 20);
        assert!(packet.options().is_empty());

        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                ident: 0,
                ..Ipv4Repr::new(
                    Ipv4Addr::new(192, 168, 0, 1),
                    Ipv4Addr::new(192, 168, 0, 199),
                    IpProtocol::UDP,
                    0x73 - 20
                )
            }
        );
        let mut out = [0u8; 20];
        repr.emit(&mut out).unwrap();
        assert_eq!(&out[..], &bytes[..20]);
    }

    #[test]
    fn rejects() {
        let bytes = sample();
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..0x72]).unwrap_err(),
            Error::Truncated
        );
        let mut b = bytes.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadVersion
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadLength
        );
        b[0] = 0x4f; // 60-byte header fits in the buffer, but not in the total length
        b[3] = 40;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadLength
        );
        let mut b = bytes.clone();
        b[8] = 63;
        let packet = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet).unwrap_err(), Error::BadChecksum);
    }

    #[test]
    fn options_and_padding() {
        // 24-byte header with a NOP,NOP,NOP,EOL option word, and 4 bytes of link padding.
        let mut bytes = vec![
            0x46, 0xb8, 0x00, 0x1c, 0x12, 0x34, 0x20, 0x03, 0x01, 0x06, 0x00, 0x00, 10, 0, 0, 1,
            10, 0, 0, 2, 1, 1, 1, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0,
        ];
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        packet.fill_checksum();
        assert!(packet.verify_checksum());
        assert_eq!(packet.options(), &[1, 1, 1, 0]);
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(packet.dscp(), 46); // EF
        assert_eq!(packet.ecn(), 0);
        assert!(packet.more_frags());
        assert_eq!(packet.frag_offset(), 24);
        assert!(packet.is_fragment());
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr.payload_len, 4);
        assert_eq!(repr.frag_offset, 24);
        assert_eq!(repr.dscp, 46);
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut bytes = sample();
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        for _ in 0..70 {
            packet.decrement_ttl();
            assert!(packet.verify_checksum(), "ttl {}", packet.ttl());
        }
        assert_eq!(packet.ttl(), 0);
    }

    #[test]
    fn emit_errors() {
        let repr = Ipv4Repr::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, IpProtocol::TCP, 0);
        assert_eq!(repr.emit(&mut [0; 19]), Err(Error::BufferTooSmall));
        let big = Ipv4Repr {
            payload_len: 65_516,
            ..repr
        };
        assert_eq!(big.emit(&mut [0; 20]), Err(Error::BadLength));
    }

    #[test]
    fn unchecked_short_buffer_reads_zero() {
        let packet = Ipv4Packet::new_unchecked(&[0x45u8][..]);
        assert_eq!(packet.total_len(), 0);
        assert_eq!(packet.src_addr(), Ipv4Addr::UNSPECIFIED);
        assert!(packet.payload().is_empty());
        let mut buf = [0u8; 3];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        packet.set_dst_addr(Ipv4Addr::BROADCAST);
        packet.fill_checksum();
    }
}
