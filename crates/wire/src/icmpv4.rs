//! ICMP for IPv4 (RFC 792): echo, destination unreachable (with RFC 1191's next-hop MTU),
//! time exceeded.

use crate::checksum;
use crate::field;
use crate::ipv4::Ipv4Packet;
use crate::{Error, Result};

/// Length of the ICMP header: type, code, checksum and the 4-byte rest of header.
pub const HEADER_LEN: usize = 8;

/// Message types (RFC 792).
pub mod message {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Destination Unreachable codes (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1).
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set; carries the next-hop MTU (RFC 1191 §4).
    pub const FRAG_NEEDED: u8 = 4;
    pub const SOURCE_ROUTE_FAILED: u8 = 5;
    pub const NET_UNKNOWN: u8 = 6;
    pub const HOST_UNKNOWN: u8 = 7;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Time Exceeded codes (RFC 792).
pub mod time_exceeded {
    /// TTL reached zero in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

mod offset {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
}

/// A zero-copy view of an ICMPv4 message (the whole IP payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wrap a buffer without checking it. Accessors read zeros past its end.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap a buffer holding an ICMP message, checking that the 8-byte header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn buf(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Message type (see [`message`]).
    pub fn msg_type(&self) -> u8 {
        field::u8_at(self.buf(), offset::TYPE)
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        field::u8_at(self.buf(), offset::CODE)
    }

    /// The checksum as stored.
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buf(), offset::CHECKSUM)
    }

    /// Bytes 4–7, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> u32 {
        field::u32_at(self.buf(), offset::REST)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        field::u16_at(self.buf(), offset::ECHO_IDENT)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        field::u16_at(self.buf(), offset::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191 §4: the low 16 bits of the
    /// rest of header; 0 from routers that predate RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        field::u16_at(self.buf(), offset::NEXT_HOP_MTU)
    }

    /// Everything after the 8-byte header: echo data, or the quoted original datagram.
    pub fn data(&self) -> &[u8] {
        let buf = self.buf();
        field::slice(buf, HEADER_LEN, buf.len())
    }

    /// Whether this is an error message that quotes the datagram that caused it.
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            message::DST_UNREACHABLE | message::TIME_EXCEEDED | message::PARAM_PROBLEM
        )
    }

    /// The IP header and (at least) first 8 payload bytes of the datagram an error message is
    /// about (RFC 792). Its transport ports are in the first bytes of its `payload()`.
    pub fn invoking_packet(&self) -> Result<Ipv4Packet<&[u8]>> {
        if !self.is_error() {
            return Err(Error::Unsupported);
        }
        Ipv4Packet::new_checked_header(self.data())
    }

    /// Whether the checksum over the whole message is right (RFC 792).
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buf()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Set the message type.
    pub fn set_msg_type(&mut self, msg_type: u8) {
        field::set_u8(self.buf_mut(), offset::TYPE, msg_type);
    }

    /// Set the message code.
    pub fn set_msg_code(&mut self, code: u8) {
        field::set_u8(self.buf_mut(), offset::CODE, code);
    }

    /// Store a checksum value.
    pub fn set_checksum(&mut self, checksum: u16) {
        field::set_u16(self.buf_mut(), offset::CHECKSUM, checksum);
    }

    /// Set bytes 4–7.
    pub fn set_rest_of_header(&mut self, rest: u32) {
        field::set_u32(self.buf_mut(), offset::REST, rest);
    }

    /// Set the echo identifier.
    pub fn set_echo_ident(&mut self, ident: u16) {
        field::set_u16(self.buf_mut(), offset::ECHO_IDENT, ident);
    }

    /// Set the echo sequence number.
    pub fn set_echo_seq_no(&mut self, seq_no: u16) {
        field::set_u16(self.buf_mut(), offset::ECHO_SEQ, seq_no);
    }

    /// Set the next-hop MTU.
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        field::set_u16(self.buf_mut(), offset::NEXT_HOP_MTU, mtu);
    }

    /// The data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let buf = self.buf_mut();
        let end = buf.len();
        field::slice_mut(buf, HEADER_LEN, end)
    }

    /// Compute the checksum over the whole buffer and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.buf());
        self.set_checksum(sum);
    }
}

/// The ICMPv4 messages the stack sends and handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// Destination Unreachable; `next_hop_mtu` is bytes 6–7, meaningful for
    /// [`unreachable::FRAG_NEEDED`] and zero otherwise.
    DstUnreachable {
        code: u8,
        next_hop_mtu: u16,
        /// The original datagram's IP header and first 8 payload bytes (or more).
        original: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        original: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Read a checked message, verifying its checksum. Types other than echo, destination
    /// unreachable and time exceeded are [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(packet: &'a Icmpv4Packet<T>) -> Result<Self> {
        if packet.buf().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        let data = packet.data();
        match (packet.msg_type(), packet.msg_code()) {
            (message::ECHO_REQUEST, 0) => Ok(Self::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (message::ECHO_REPLY, 0) => Ok(Self::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (message::DST_UNREACHABLE, code) => Ok(Self::DstUnreachable {
                code,
                next_hop_mtu: packet.next_hop_mtu(),
                original: data,
            }),
            (message::TIME_EXCEEDED, code) => Ok(Self::TimeExceeded {
                code,
                original: data,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    /// The data after the header.
    fn data(&self) -> &'a [u8] {
        match *self {
            Self::EchoRequest { data, .. } | Self::EchoReply { data, .. } => data,
            Self::DstUnreachable { original, .. } | Self::TimeExceeded { original, .. } => original,
        }
    }

    /// The quoted datagram of an error message (see [`Icmpv4Packet::invoking_packet`]).
    pub fn invoking_packet(&self) -> Result<Ipv4Packet<&'a [u8]>> {
        match self {
            Self::DstUnreachable { .. } | Self::TimeExceeded { .. } => {
                Ipv4Packet::new_checked_header(self.data())
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Length of the message `emit` writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Write the message, checksum included, to the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let message = buf
            .get_mut(..self.buffer_len())
            .ok_or(Error::BufferTooSmall)?;
        let mut packet = Icmpv4Packet::new_unchecked(message);
        packet.set_rest_of_header(0);
        match *self {
            Self::EchoRequest { ident, seq_no, .. } | Self::EchoReply { ident, seq_no, .. } => {
                let msg_type = if matches!(self, Self::EchoRequest { .. }) {
                    message::ECHO_REQUEST
                } else {
                    message::ECHO_REPLY
                };
                packet.set_msg_type(msg_type);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Self::DstUnreachable {
                code, next_hop_mtu, ..
            } => {
                packet.set_msg_type(message::DST_UNREACHABLE);
                packet.set_msg_code(code);
                packet.set_next_hop_mtu(next_hop_mtu);
            }
            Self::TimeExceeded { code, .. } => {
                packet.set_msg_type(message::TIME_EXCEEDED);
                packet.set_msg_code(code);
            }
        }
        field::copy_to(packet.data_mut(), 0, self.data());
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IpProtocol, Ipv4Repr};
    use std::net::Ipv4Addr;

    /// An echo request shaped like `ping -p 6f786361`'s with 8 bytes of data,
    /// ident 0x1234, seq 1; checksum from Python's struct module and an RFC 1071 sum.
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x40, 0x17, 0x12, 0x34, 0x00, 0x01, b'o', b'x', b'c', b'a', b'o', b'x', b'c',
        b'a',
    ];

    #[test]
    fn echo_request() {
        let packet = Icmpv4Packet::new_checked(&ECHO[..]).unwrap();
        assert!(packet.verify_checksum());
        let repr = Icmpv4Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"oxcaoxca"
            }
        );
        let mut out = [0u8; 16];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, ECHO);
        assert_eq!(repr.invoking_packet().unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn frag_needed_quotes_original() {
        // The original: a TCP segment 10.0.0.1:40000 → 10.0.0.2:80, 1500 bytes, DF set.
        let ip = Ipv4Repr::new(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IpProtocol::TCP,
            1480,
        );
        let mut original = [0u8; 28];
        ip.emit(&mut original).unwrap();
        original[20..28].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44]);
        let repr = Icmpv4Repr::DstUnreachable {
            code: unreachable::FRAG_NEEDED,
            next_hop_mtu: 1400,
            original: &original,
        };
        let mut buf = [0u8; 36];
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[..8], &[3, 4, buf[2], buf[3], 0, 0, 0x05, 0x78]);
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum());
        assert!(packet.is_error());
        assert_eq!(packet.next_hop_mtu(), 1400);
        assert_eq!(Icmpv4Repr::parse(&packet).unwrap(), repr);
        let quoted = packet.invoking_packet().unwrap();
        assert_eq!(Ipv4Repr::parse(&quoted).unwrap(), ip);
        assert_eq!(
            quoted.payload(),
            &[0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44]
        );
    }

    #[test]
    fn time_exceeded_and_rejects() {
        let repr = Icmpv4Repr::TimeExceeded {
            code: time_exceeded::TTL,
            original: &[0x45, 0, 0, 20],
        };
        let mut buf = [0u8; 12];
        repr.emit(&mut buf).unwrap();
        let packet = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet).unwrap(), repr);
        // Too short to hold an IP header.
        assert_eq!(packet.invoking_packet().unwrap_err(), Error::Truncated);

        assert_eq!(repr.emit(&mut [0; 11]), Err(Error::BufferTooSmall));
        assert_eq!(
            Icmpv4Packet::new_checked(&ECHO[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = ECHO;
        bad[15] ^= 1;
        let packet = Icmpv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(Error::BadChecksum));
        let mut timestamp = [13u8, 0, 0, 0, 0, 0, 0, 0];
        let mut packet = Icmpv4Packet::new_checked(&mut timestamp[..]).unwrap();
        packet.fill_checksum();
        assert_eq!(Icmpv4Repr::parse(&packet), Err(Error::Unsupported));
    }
}
