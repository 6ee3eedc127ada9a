//! Packet formats for oxcat's userspace TCP/IP stack.
//!
//! Each protocol has two shapes, in the style of smoltcp:
//!
//! - a **view** (`Ipv4Packet<T>`, `TcpPacket<T>`, ...) over any `T: AsRef<[u8]>`, which reads
//!   fields straight out of the buffer without copying, and writes them when
//!   `T: AsMut<[u8]>`. `new_checked` validates the lengths once, so the accessors after it are
//!   plain loads;
//! - a **repr** (`Ipv4Repr`, `TcpRepr`, ...), a plain struct with the fields a stack acts on,
//!   with `parse` (view → repr, checksums verified) and `emit` (repr → bytes, checksums written).
//!
//! Parsing never panics, whatever the input: every malformed packet is an [`Error`] value.
//! Accessors on a view made with `new_unchecked` over a buffer that is too short read as zero
//! (or an empty slice) and setters past the end are ignored, rather than panic.
//!
//! # Why our own types rather than `etherparse`
//!
//! `etherparse` is a good parser and we use it in tests to cross-check ours. We keep our own
//! types because the stack needs two things it does not give us directly:
//!
//! - zero-copy views that can also be written in place (fill a checksum, rewrite a port) over
//!   the stack's own buffers, with no intermediate header struct;
//! - exact control over TCP options: every option kind the engine uses (MSS, window scale,
//!   SACK-permitted, SACK blocks, timestamps) as typed fields, a fallible iterator that
//!   reports malformed options instead of dropping them, and an emitter that lays options out
//!   byte for byte the way Linux does, so our SYNs look like the kernel's on the wire.

mod checksum;
mod field;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use checksum::{checksum, Checksum, IpAddress};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{
    emit_fragment_header, walk_extension_headers, Ipv6Fragment, Ipv6Packet, Ipv6Repr, UpperLayer,
    FRAGMENT_HEADER_LEN,
};
pub use tcp::{SackBlocks, TcpFlags, TcpOption, TcpOptions, TcpPacket, TcpRepr, Timestamps};
pub use udp::{UdpPacket, UdpRepr};

use std::fmt;

/// Everything that can be wrong with a packet (or with a buffer given to `emit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before the header or the length a field announces.
    #[error("packet truncated")]
    Truncated,
    /// The IP version field is not the one expected.
    #[error("wrong IP version")]
    BadVersion,
    /// A length field is impossible (shorter than the fixed header, or inconsistent).
    #[error("bad length field")]
    BadLength,
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// A TCP option (or IPv6 extension header) is malformed.
    #[error("malformed option")]
    BadOption,
    /// IPv6 extension headers are out of order (hop-by-hop not first) or otherwise malformed.
    #[error("malformed extension header chain")]
    BadExtensionHeader,
    /// More IPv6 extension headers than we are willing to walk.
    #[error("too many extension headers")]
    TooManyHeaders,
    /// A well-formed message of a type or code we do not handle.
    #[error("unsupported message")]
    Unsupported,
    /// The buffer given to `emit` is shorter than the packet to write.
    #[error("buffer too small")]
    BufferTooSmall,
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// An IP protocol number: the IPv4 `protocol` field and the IPv6 `next header` field
/// (IANA "Assigned Internet Protocol Numbers").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: Self = Self(0);
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: Self = Self(1);
    /// TCP (RFC 9293).
    pub const TCP: Self = Self(6);
    /// UDP (RFC 768).
    pub const UDP: Self = Self(17);
    /// IPv6 Routing header (RFC 8200 §4.4).
    pub const IPV6_ROUTE: Self = Self(43);
    /// IPv6 Fragment header (RFC 8200 §4.5).
    pub const IPV6_FRAG: Self = Self(44);
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: Self = Self(50);
    /// Authentication Header (RFC 4302).
    pub const AH: Self = Self(51);
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: Self = Self(58);
    /// IPv6 No Next Header (RFC 8200 §4.7).
    pub const IPV6_NO_NEXT: Self = Self(59);
    /// IPv6 Destination Options (RFC 8200 §4.6).
    pub const IPV6_OPTS: Self = Self(60);
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::HOP_BY_HOP => "HOPOPT",
            Self::ICMP => "ICMP",
            Self::TCP => "TCP",
            Self::UDP => "UDP",
            Self::IPV6_ROUTE => "IPv6-Route",
            Self::IPV6_FRAG => "IPv6-Frag",
            Self::ESP => "ESP",
            Self::AH => "AH",
            Self::ICMPV6 => "IPv6-ICMP",
            Self::IPV6_NO_NEXT => "IPv6-NoNxt",
            Self::IPV6_OPTS => "IPv6-Opts",
            Self(n) => return write!(f, "protocol {n}"),
        };
        f.write_str(name)
    }
}

impl From<u8> for IpProtocol {
    fn from(n: u8) -> Self {
        Self(n)
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> Self {
        p.0
    }
}
