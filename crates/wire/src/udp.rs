//! UDP headers (RFC 768).

use crate::checksum::{self, IpAddress};
use crate::field;
use crate::{Error, IpProtocol, Result};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

mod offset {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap a buffer without checking it. Accessors read zeros past its end.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap a buffer holding a datagram, checking that the length field is at least the
    /// header and fits in the buffer (the IP payload; it may be longer than the datagram).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(packet.len());
        if field_len < HEADER_LEN {
            return Err(Error::BadLength);
        }
        if field_len > len {
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

    /// Source port (0 when unused, RFC 768).
    pub fn src_port(&self) -> u16 {
        field::u16_at(self.buf(), offset::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        field::u16_at(self.buf(), offset::DST_PORT)
    }

    /// The length field: header plus data.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        field::u16_at(self.buf(), offset::LENGTH)
    }

    /// The checksum as stored (0: none was computed, allowed over IPv4 only).
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buf(), offset::CHECKSUM)
    }

    /// The datagram, up to the length field.
    fn datagram(&self) -> &[u8] {
        field::slice(self.buf(), 0, usize::from(self.len()))
    }

    /// The data after the header, up to the length field.
    pub fn payload(&self) -> &[u8] {
        field::slice(self.buf(), HEADER_LEN, usize::from(self.len()))
    }

    /// Whether the checksum is right. A zero checksum means "none" over IPv4 (RFC 768) and is
    /// accepted; over IPv6 it is an error (RFC 8200 §8.1: "IPv6 receivers must discard UDP
    /// packets containing a zero checksum").
    pub fn verify_checksum<A: IpAddress>(&self, src: A, dst: A) -> bool {
        if self.checksum() == 0 {
            return !A::UDP_CHECKSUM_REQUIRED;
        }
        checksum::upper_layer(src, dst, IpProtocol::UDP, self.datagram()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Set the source port.
    pub fn set_src_port(&mut self, port: u16) {
        field::set_u16(self.buf_mut(), offset::SRC_PORT, port);
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        field::set_u16(self.buf_mut(), offset::DST_PORT, port);
    }

    /// Set the length field.
    pub fn set_len(&mut self, len: u16) {
        field::set_u16(self.buf_mut(), offset::LENGTH, len);
    }

    /// Store a checksum value.
    pub fn set_checksum(&mut self, checksum: u16) {
        field::set_u16(self.buf_mut(), offset::CHECKSUM, checksum);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        field::slice_mut(self.buf_mut(), HEADER_LEN, end)
    }

    /// Compute the checksum over the datagram (up to the length field) and store it; a
    /// computed 0 is sent as 0xffff, since 0 means "no checksum" (RFC 768).
    pub fn fill_checksum<A: IpAddress>(&mut self, src: A, dst: A) {
        self.set_checksum(0);
        let sum = checksum::upper_layer(src, dst, IpProtocol::UDP, self.datagram());
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }
}

/// The fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Read a checked datagram, verifying its checksum (see [`UdpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>, A: IpAddress>(
        packet: &UdpPacket<T>,
        src: A,
        dst: A,
    ) -> Result<Self> {
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Self::parse_unverified(packet)
    }

    /// Read a checked datagram without verifying its checksum.
    pub fn parse_unverified<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<Self> {
        let len = usize::from(packet.len());
        if len < HEADER_LEN {
            return Err(Error::BadLength);
        }
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: len - HEADER_LEN,
        })
    }

    /// Length of the header.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len)
    }

    /// Write the datagram to the start of `buf`: header, `payload` (which must be
    /// `payload_len` bytes), and the checksum. The checksum is always computed, over IPv4 too.
    pub fn emit<A: IpAddress>(&self, buf: &mut [u8], src: A, dst: A, payload: &[u8]) -> Result<()> {
        if payload.len() != self.payload_len {
            return Err(Error::BadLength);
        }
        let len = u16::try_from(self.buffer_len()).map_err(|_| Error::BadLength)?;
        let datagram = buf
            .get_mut(..usize::from(len))
            .ok_or(Error::BufferTooSmall)?;
        let mut packet = UdpPacket::new_unchecked(datagram);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        field::copy_to(packet.payload_mut(), 0, payload);
        packet.fill_checksum(src, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 199);

    /// A DNS-ish datagram 192.168.0.1:53 → 192.168.0.199:5353, payload "oxcat!", checksum
    /// computed with Python's struct module and an RFC 1071 sum.
    const DATAGRAM: [u8; 14] = [
        0x00, 0x35, 0x14, 0xe9, 0x00, 0x0e, 0x21, 0xa0, b'o', b'x', b'c', b'a', b't', b'!',
    ];

    #[test]
    fn parse_and_emit() {
        let packet = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(packet.src_port(), 53);
        assert_eq!(packet.dst_port(), 5353);
        assert_eq!(packet.len(), 14);
        assert_eq!(packet.payload(), b"oxcat!");
        assert!(packet.verify_checksum(SRC, DST));
        let repr = UdpRepr::parse(&packet, SRC, DST).unwrap();
        assert_eq!(
            repr,
            UdpRepr {
                src_port: 53,
                dst_port: 5353,
                payload_len: 6
            }
        );
        let mut out = [0u8; 14];
        repr.emit(&mut out, SRC, DST, b"oxcat!").unwrap();
        assert_eq!(out, DATAGRAM);
    }

    #[test]
    fn zero_checksum() {
        let mut bytes = DATAGRAM;
        bytes[6] = 0;
        bytes[7] = 0;
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum(SRC, DST));
        let v6 = Ipv6Addr::LOCALHOST;
        assert!(!packet.verify_checksum(v6, v6));
        assert_eq!(UdpRepr::parse(&packet, v6, v6), Err(Error::BadChecksum));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload so that the sum over everything comes to 0xffff: with the
        // checksum field zero, the complement is 0.
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        };
        let mut out = [0u8; 10];
        repr.emit(&mut out, SRC, DST, &[0, 0]).unwrap();
        let partial = u16::from_be_bytes([out[6], out[7]]);
        // Putting the checksum value in the payload instead makes the total sum 0xffff.
        repr.emit(&mut out, SRC, DST, &partial.to_be_bytes())
            .unwrap();
        assert_eq!(&out[6..8], &[0xff, 0xff]);
        let packet = UdpPacket::new_checked(&out[..]).unwrap();
        assert!(packet.verify_checksum(SRC, DST));
    }

    #[test]
    fn rejects() {
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM[..13]).unwrap_err(),
            Error::Truncated
        );
        let mut bytes = DATAGRAM;
        bytes[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&bytes[..]).unwrap_err(),
            Error::BadLength
        );
        // Padding after the datagram is not part of it.
        let mut padded = DATAGRAM.to_vec();
        padded.extend_from_slice(&[0xee; 4]);
        let packet = UdpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload(), b"oxcat!");
        assert!(packet.verify_checksum(SRC, DST));
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: 1,
        };
        assert_eq!(
            repr.emit(&mut [0; 8], SRC, DST, b"x"),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(repr.emit(&mut [0; 9], SRC, DST, b""), Err(Error::BadLength));
    }
}
