//! ICMP for IPv6 (RFC 4443): echo, destination unreachable, packet too big, time exceeded,
//! parameter problem. Neighbor Discovery (RFC 4861) is not here: over TUN there is no link
//! layer to resolve.

use std::net::Ipv6Addr;

use crate::checksum;
use crate::field;
use crate::ipv6::Ipv6Packet;
use crate::{Error, IpProtocol, Result};

/// Length of the ICMPv6 header: type, code, checksum and the 4-byte rest of header.
pub const HEADER_LEN: usize = 8;

/// The IPv6 minimum MTU; an error message must not make a packet longer than this
/// (RFC 4443 §2.4(c)), so it quotes at most `MIN_MTU − 40 − 8` bytes of the original.
pub const MIN_MTU: usize = 1280;

/// Message types (RFC 4443 §2.1).
pub mod message {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
}

/// Destination Unreachable codes (RFC 4443 §3.1).
pub mod unreachable {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const BEYOND_SCOPE: u8 = 2;
    pub const ADDRESS: u8 = 3;
    pub const PORT: u8 = 4;
    pub const SOURCE_POLICY: u8 = 5;
    pub const REJECT_ROUTE: u8 = 6;
}

/// Time Exceeded codes (RFC 4443 §3.3).
pub mod time_exceeded {
    pub const HOP_LIMIT: u8 = 0;
    pub const REASSEMBLY: u8 = 1;
}

mod offset {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
}

/// A zero-copy view of an ICMPv6 message (the upper-layer payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wrap a buffer without checking it. Accessors read zeros past its end.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap a buffer holding an ICMPv6 message, checking that the 8-byte header fits.
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

    /// Bytes 4–7: the MTU of Packet Too Big, the pointer of Parameter Problem, unused (zero)
    /// in the other errors.
    pub fn rest_of_header(&self) -> u32 {
        field::u32_at(self.buf(), offset::REST)
    }

    /// The MTU of a Packet Too Big message (RFC 4443 §3.2).
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        field::u16_at(self.buf(), offset::ECHO_IDENT)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        field::u16_at(self.buf(), offset::ECHO_SEQ)
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        let buf = self.buf();
        field::slice(buf, HEADER_LEN, buf.len())
    }

    /// Whether this is an error message (RFC 4443 §2.1: types 0–127).
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// The start of the packet an error message is about ("as much of invoking packet as
    /// possible", RFC 4443 §3).
    pub fn invoking_packet(&self) -> Result<Ipv6Packet<&[u8]>> {
        if !self.is_error() {
            return Err(Error::Unsupported);
        }
        Ipv6Packet::new_checked_header(self.data())
    }

    /// Whether the checksum is right; it covers the IPv6 pseudo-header (RFC 4443 §2.3,
    /// RFC 8200 §8.1).
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::upper_layer(src, dst, IpProtocol::ICMPV6, self.buf()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Set bytes 4–7 (MTU, pointer).
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

    /// The data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let buf = self.buf_mut();
        let end = buf.len();
        field::slice_mut(buf, HEADER_LEN, end)
    }

    /// Compute the checksum (with the pseudo-header) and store it.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let sum = checksum::upper_layer(src, dst, IpProtocol::ICMPV6, self.buf());
        self.set_checksum(sum);
    }
}

/// The ICMPv6 messages the stack sends and handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr<'a> {
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
    DstUnreachable {
        code: u8,
        /// The start of the packet that could not be delivered.
        original: &'a [u8],
    },
    /// The path MTU signal (RFC 8201).
    PacketTooBig {
        mtu: u32,
        original: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        original: &'a [u8],
    },
    ParamProblem {
        code: u8,
        /// Offset in the original packet of the byte at fault (RFC 4443 §3.4).
        pointer: u32,
        original: &'a [u8],
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Read a checked message, verifying its checksum against the IPv6 addresses. Other types
    /// (Neighbor Discovery, MLD, ...) are [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(
        packet: &'a Icmpv6Packet<T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Self> {
        if packet.buf().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if !packet.verify_checksum(src, dst) {
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
                original: data,
            }),
            (message::PACKET_TOO_BIG, 0) => Ok(Self::PacketTooBig {
                mtu: packet.mtu(),
                original: data,
            }),
            (message::TIME_EXCEEDED, code) => Ok(Self::TimeExceeded {
                code,
                original: data,
            }),
            (message::PARAM_PROBLEM, code) => Ok(Self::ParamProblem {
                code,
                pointer: packet.rest_of_header(),
                original: data,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    /// Type, code and bytes 4–7 (echo ident/seq packed, or MTU, or pointer).
    fn header_fields(&self) -> (u8, u8, u32) {
        match *self {
            Self::EchoRequest { ident, seq_no, .. } => (
                message::ECHO_REQUEST,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
            ),
            Self::EchoReply { ident, seq_no, .. } => (
                message::ECHO_REPLY,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
            ),
            Self::DstUnreachable { code, .. } => (message::DST_UNREACHABLE, code, 0),
            Self::PacketTooBig { mtu, .. } => (message::PACKET_TOO_BIG, 0, mtu),
            Self::TimeExceeded { code, .. } => (message::TIME_EXCEEDED, code, 0),
            Self::ParamProblem { code, pointer, .. } => (message::PARAM_PROBLEM, code, pointer),
        }
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Self::EchoRequest { data, .. } | Self::EchoReply { data, .. } => data,
            Self::DstUnreachable { original, .. }
            | Self::PacketTooBig { original, .. }
            | Self::TimeExceeded { original, .. }
            | Self::ParamProblem { original, .. } => original,
        }
    }

    /// The quoted packet of an error message (see [`Icmpv6Packet::invoking_packet`]).
    pub fn invoking_packet(&self) -> Result<Ipv6Packet<&'a [u8]>> {
        match self {
            Self::EchoRequest { .. } | Self::EchoReply { .. } => Err(Error::Unsupported),
            _ => Ipv6Packet::new_checked_header(self.data()),
        }
    }

    /// Length of the message `emit` writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Write the message, checksum included, to the start of `buf`. Quoting no more of the
    /// original than fits in [`MIN_MTU`] is the caller's business.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<()> {
        let message = buf
            .get_mut(..self.buffer_len())
            .ok_or(Error::BufferTooSmall)?;
        let mut packet = Icmpv6Packet::new_unchecked(message);
        let (msg_type, code, rest) = self.header_fields();
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        field::copy_to(packet.data_mut(), 0, self.data());
        packet.fill_checksum(src, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ipv6Repr, UdpRepr};

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    /// Echo request fd00::1 → fd00::2, ident 0x1234, seq 1, data "oxcat"; checksum from
    /// Python's struct module and an RFC 1071 sum over the RFC 8200 §8.1 pseudo-header.
    const ECHO: [u8; 13] = [
        0x80, 0x00, 0x2c, 0xa4, 0x12, 0x34, 0x00, 0x01, b'o', b'x', b'c', b'a', b't',
    ];

    #[test]
    fn echo_request() {
        let packet = Icmpv6Packet::new_checked(&ECHO[..]).unwrap();
        assert!(packet.verify_checksum(SRC, DST));
        assert!(!packet.verify_checksum(DST, DST));
        assert!(!packet.is_error());
        let repr = Icmpv6Repr::parse(&packet, SRC, DST).unwrap();
        assert_eq!(
            repr,
            Icmpv6Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"oxcat"
            }
        );
        let mut out = [0u8; 13];
        repr.emit(&mut out, SRC, DST).unwrap();
        assert_eq!(out, ECHO);
    }

    #[test]
    fn packet_too_big_quotes_original() {
        let ip = Ipv6Repr::new(SRC, DST, IpProtocol::UDP, 1452);
        let udp = UdpRepr {
            src_port: 5000,
            dst_port: 53,
            payload_len: 1444,
        };
        let mut original = vec![0u8; 40 + 1452];
        ip.emit(&mut original).unwrap();
        udp.emit(&mut original[40..], SRC, DST, &[7; 1444]).unwrap();
        let quoted = &original[..MIN_MTU - 48];
        let repr = Icmpv6Repr::PacketTooBig {
            mtu: 1400,
            original: quoted,
        };
        assert_eq!(repr.buffer_len() + 40, MIN_MTU);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, DST, SRC).unwrap();
        assert_eq!(&buf[..2], &[2, 0]);
        assert_eq!(&buf[4..8], &1400u32.to_be_bytes());
        let packet = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.is_error());
        assert_eq!(packet.mtu(), 1400);
        assert_eq!(Icmpv6Repr::parse(&packet, DST, SRC).unwrap(), repr);
        let invoking = packet.invoking_packet().unwrap();
        assert_eq!(Ipv6Repr::parse(&invoking).unwrap(), ip);
        assert_eq!(&invoking.payload()[..4], &[0x13, 0x88, 0x00, 0x35]);
    }

    #[test]
    fn errors_round_trip_and_rejects() {
        let original = [0x60u8; 48];
        for repr in [
            Icmpv6Repr::DstUnreachable {
                code: unreachable::PORT,
                original: &original,
            },
            Icmpv6Repr::TimeExceeded {
                code: time_exceeded::HOP_LIMIT,
                original: &original,
            },
            Icmpv6Repr::ParamProblem {
                code: 1,
                pointer: 40,
                original: &original,
            },
            Icmpv6Repr::EchoReply {
                ident: 1,
                seq_no: 2,
                data: &[],
            },
        ] {
            let mut buf = [0u8; 56];
            repr.emit(&mut buf, SRC, DST).unwrap();
            let packet = Icmpv6Packet::new_checked(&buf[..repr.buffer_len()]).unwrap();
            assert_eq!(Icmpv6Repr::parse(&packet, SRC, DST).unwrap(), repr);
        }
        // Neighbor Solicitation is well-formed but not ours.
        let mut ns = [135u8, 0, 0, 0, 0, 0, 0, 0];
        let mut packet = Icmpv6Packet::new_checked(&mut ns[..]).unwrap();
        packet.fill_checksum(SRC, DST);
        assert_eq!(
            Icmpv6Repr::parse(&packet, SRC, DST),
            Err(Error::Unsupported)
        );
        assert_eq!(packet.invoking_packet().unwrap_err(), Error::Unsupported);
        let mut bad = ECHO;
        bad[12] ^= 0x20;
        let packet = Icmpv6Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&packet, SRC, DST),
            Err(Error::BadChecksum)
        );
        assert_eq!(
            Icmpv6Packet::new_checked(&ECHO[..7]).unwrap_err(),
            Error::Truncated
        );
    }
}
