//! A TCP segment as the engine sees it: the header's meaning (sequence
//! numbers, flags, window, options) and the payload. Bytes on the wire are
//! the `wire` crate's business; the stack converts between the two.

use std::fmt;

use crate::seq::SeqNum;

/// The control bits (RFC 9293 §3.1).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);
    pub const URG: Flags = Flags(0x20);
    pub const ECE: Flags = Flags(0x40);
    pub const CWR: Flags = Flags(0x80);

    pub const fn empty() -> Flags {
        Flags(0)
    }

    #[inline]
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    #[inline]
    pub fn syn(self) -> bool {
        self.contains(Flags::SYN)
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.contains(Flags::ACK)
    }
    #[inline]
    pub fn fin(self) -> bool {
        self.contains(Flags::FIN)
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.contains(Flags::RST)
    }
    #[inline]
    pub fn psh(self) -> bool {
        self.contains(Flags::PSH)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    /// tcpdump's letters: `S`, `S.`, `.`, `P.`, `F.`, `R`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        if self.syn() {
            s.push('S');
        }
        if self.fin() {
            s.push('F');
        }
        if self.rst() {
            s.push('R');
        }
        if self.psh() {
            s.push('P');
        }
        if self.ack() {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        f.write_str(&s)
    }
}

/// Up to four SACK blocks (RFC 2018 §3), `[left, right)` each.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct SackBlocks {
    blocks: [(SeqNum, SeqNum); 4],
    len: u8,
}

impl SackBlocks {
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a block; ignored past four.
    #[inline]
    pub fn push(&mut self, left: SeqNum, right: SeqNum) {
        if (self.len as usize) < self.blocks.len() {
            self.blocks[self.len as usize] = (left, right);
            self.len += 1;
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[(SeqNum, SeqNum)] {
        &self.blocks[..self.len as usize]
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }
}

/// The options the engine understands.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Options {
    /// Maximum segment size (RFC 9293 §3.7.1), only on SYNs.
    pub mss: Option<u16>,
    /// Window scale shift (RFC 7323 §2), only on SYNs.
    pub window_scale: Option<u8>,
    /// SACK permitted (RFC 2018 §2), only on SYNs.
    pub sack_permitted: bool,
    /// SACK blocks (RFC 2018 §3).
    pub sack: SackBlocks,
    /// Timestamps: (TSval, TSecr) (RFC 7323 §3).
    pub timestamps: Option<(u32, u32)>,
}

/// A segment's header as meaning, not bytes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub seq: SeqNum,
    pub ack: SeqNum,
    pub flags: Flags,
    /// The window field as sent (not yet scaled).
    pub window: u16,
    pub options: Options,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:?}] seq {} ack {} win {}",
            self.flags, self.seq, self.ack, self.window
        )?;
        let o = &self.options;
        if let Some(m) = o.mss {
            write!(f, " mss {m}")?;
        }
        if o.sack_permitted {
            write!(f, " sackOK")?;
        }
        if let Some((v, e)) = o.timestamps {
            write!(f, " TS val {v} ecr {e}")?;
        }
        if let Some(w) = o.window_scale {
            write!(f, " wscale {w}")?;
        }
        for (l, r) in o.sack.as_slice() {
            write!(f, " sack {l}:{r}")?;
        }
        Ok(())
    }
}

/// A header with its payload: what the engine hands out to transmit.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Segment {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Segment {
    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    pub fn seq_len(&self) -> usize {
        seq_len(&self.header, self.payload.len())
    }
}

/// A segment's payload borrowed from where it lies (the send buffer): one
/// slice, or two when it wraps around the buffer's ring, the second
/// following the first. What `Connection::poll_transmit_ref` hands out, so
/// the caller copies the bytes once, straight into its frame.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Payload<'a> {
    head: &'a [u8],
    tail: &'a [u8],
}

impl<'a> Payload<'a> {
    /// A payload made of `head` then `tail`.
    #[inline]
    pub fn new(head: &'a [u8], tail: &'a [u8]) -> Self {
        if head.is_empty() {
            Payload {
                head: tail,
                tail: &[],
            }
        } else {
            Payload { head, tail }
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// The two parts, in order (the second is empty unless the bytes wrap).
    #[inline]
    pub fn parts(&self) -> (&'a [u8], &'a [u8]) {
        (self.head, self.tail)
    }

    /// The bytes as one slice, when they lie in one.
    #[inline]
    pub fn contiguous(&self) -> Option<&'a [u8]> {
        self.tail.is_empty().then_some(self.head)
    }

    /// Copies the bytes to the start of `out`, which must hold `len()` bytes.
    pub fn copy_to(&self, out: &mut [u8]) {
        let (a, b) = out[..self.len()].split_at_mut(self.head.len());
        crate::copy::copy(a, self.head);
        crate::copy::copy(b, self.tail);
    }

    pub fn to_vec(&self) -> Vec<u8> {
        // (An ACK's empty payload: no allocation and no copy calls.)
        if self.head.is_empty() {
            return Vec::new();
        }
        let mut v = Vec::with_capacity(self.len());
        crate::copy::extend(&mut v, self.head);
        crate::copy::extend(&mut v, self.tail);
        v
    }
}

impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

/// A header with its payload borrowed from the connection: what
/// `Connection::poll_transmit_ref` hands out.
#[derive(Clone, Copy, Debug)]
pub struct Transmit<'a> {
    pub header: Header,
    pub payload: Payload<'a>,
}

impl Transmit<'_> {
    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    pub fn seq_len(&self) -> usize {
        seq_len(&self.header, self.payload.len())
    }

    /// An owned copy.
    pub fn to_segment(&self) -> Segment {
        Segment {
            header: self.header,
            payload: self.payload.to_vec(),
        }
    }
}

/// Sequence space of a header with `payload_len` bytes (SYN and FIN count one each).
pub fn seq_len(h: &Header, payload_len: usize) -> usize {
    payload_len + usize::from(h.flags.syn()) + usize::from(h.flags.fin())
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} len {}", self.header, self.payload.len())
    }
}
