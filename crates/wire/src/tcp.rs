//! TCP headers and options (RFC 9293 §3.1, RFC 7323, RFC 2018).

use std::fmt;

use crate::checksum::{self, IpAddress};
use crate::field;
use crate::{Error, IpProtocol, Result};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// The most option bytes a header can hold (data offset 15 → 60-byte header).
pub const MAX_OPTIONS_LEN: usize = 40;

/// The most SACK blocks an option can carry (RFC 2018 §3: 40 bytes of options hold 4).
pub const MAX_SACK_BLOCKS: usize = 4;

mod offset {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    /// End of Option List (RFC 9293 §3.2).
    pub const EOL: u8 = 0;
    /// No-Operation (RFC 9293 §3.2).
    pub const NOP: u8 = 1;
    /// Maximum Segment Size (RFC 9293 §3.2, §3.7.1).
    pub const MSS: u8 = 2;
    /// Window Scale (RFC 7323 §2).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK-Permitted (RFC 2018 §2).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK (RFC 2018 §3).
    pub const SACK: u8 = 5;
    /// Timestamps (RFC 7323 §3).
    pub const TIMESTAMPS: u8 = 8;
}

/// The control bits in byte 13 of the header (RFC 9293 §3.1; CWR and ECE from RFC 3168 §6.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: Self = Self(0x01);
    pub const SYN: Self = Self(0x02);
    pub const RST: Self = Self(0x04);
    pub const PSH: Self = Self(0x08);
    pub const ACK: Self = Self(0x10);
    pub const URG: Self = Self(0x20);
    pub const ECE: Self = Self(0x40);
    pub const CWR: Self = Self(0x80);

    /// No flag set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag in `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Set or clear the flags in `other`.
    pub fn set(&mut self, other: Self, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }

    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl std::ops::BitAnd for TcpFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// tcpdump's letters: `S`, `.` (ACK), `F`, `R`, `P`, `U`, `E`, `W`; `none` when empty.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        for (flag, letter) in [
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::RST, 'R'),
            (Self::PSH, 'P'),
            (Self::URG, 'U'),
            (Self::ECE, 'E'),
            (Self::CWR, 'W'),
            (Self::ACK, '.'),
        ] {
            if self.contains(flag) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// Up to four SACK blocks `(left edge, right edge)` (RFC 2018 §3), in the order they appear.
#[derive(Clone, Copy, Default)]
pub struct SackBlocks {
    blocks: [(u32, u32); MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    /// No blocks.
    pub const fn new() -> Self {
        Self {
            blocks: [(0, 0); MAX_SACK_BLOCKS],
            len: 0,
        }
    }

    /// The first (up to) four blocks of `blocks`.
    pub fn from_slice(blocks: &[(u32, u32)]) -> Self {
        let mut sack = Self::new();
        for &block in blocks.iter().take(MAX_SACK_BLOCKS) {
            sack.push(block);
        }
        sack
    }

    /// Append a block; false (and nothing added) when four are already held.
    pub fn push(&mut self, block: (u32, u32)) -> bool {
        match self.blocks.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = block;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The blocks held.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        self.blocks.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// How many blocks are held.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keep only the first `n` blocks.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.len = n as u8;
        }
    }

    /// The blocks, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, (u32, u32)> {
        self.as_slice().iter()
    }
}

impl PartialEq for SackBlocks {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl std::hash::Hash for SackBlocks {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The Timestamps option's two values (RFC 7323 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timestamps {
    /// TSval: the sender's clock.
    pub tsval: u32,
    /// TSecr: the TSval echoed back (meaningful when ACK is set).
    pub tsecr: u32,
}

/// NOP, NOP, then the timestamps option's kind and length: how an
/// established connection's options start when they hold only timestamps.
const ALIGNED_TIMESTAMPS: [u8; 4] = [
    option_kind::NOP,
    option_kind::NOP,
    option_kind::TIMESTAMPS,
    10,
];

/// The timestamps when `options` is exactly NOP, NOP, TS (12 bytes).
#[inline]
fn aligned_timestamps(options: &[u8]) -> Option<Timestamps> {
    let o: &[u8; 12] = options.try_into().ok()?;
    if o[..4] != ALIGNED_TIMESTAMPS {
        return None;
    }
    Some(Timestamps {
        tsval: u32::from_be_bytes([o[4], o[5], o[6], o[7]]),
        tsecr: u32::from_be_bytes([o[8], o[9], o[10], o[11]]),
    })
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// End of Option List: what follows is padding.
    EndOfList,
    /// No-Operation, used to align options on 4-byte boundaries.
    NoOp,
    /// Maximum Segment Size (kind 2, length 4).
    Mss(u16),
    /// Window Scale shift count (kind 3, length 3). Values above 14 are passed as is;
    /// RFC 7323 §2.3 says to use 14 instead, which is the engine's business.
    WindowScale(u8),
    /// SACK-Permitted (kind 4, length 2).
    SackPermitted,
    /// SACK blocks (kind 5, length 2 + 8n, 1 ≤ n ≤ 4).
    Sack(SackBlocks),
    /// Timestamps (kind 8, length 10).
    Timestamps(Timestamps),
    /// Any other kind with a well-formed length; `data` excludes kind and length bytes.
    Unknown { kind: u8, data: &'a [u8] },
}

/// Iterator over the options of a header, from [`TcpPacket::options_iter`] or
/// [`TcpOptions::new`].
///
/// Yields `Err(Error::BadOption)` for a malformed option (a length below 2, an option running
/// past the end, a known kind with the wrong length) and then stops: past a bad length there is
/// no way to find the next option (RFC 9293 §3.2 asks implementations to be "prepared to handle
/// an illegal option length"). After `EndOfList` it stops too.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    /// Iterate over raw option bytes (the header after the first 20 bytes).
    pub fn new(options: &'a [u8]) -> Self {
        Self { rest: options }
    }

    fn parse_one(&mut self) -> Result<TcpOption<'a>> {
        let Some((&kind, after_kind)) = self.rest.split_first() else {
            // Callers check for emptiness first.
            return Err(Error::BadOption);
        };
        match kind {
            option_kind::EOL => {
                self.rest = &[];
                return Ok(TcpOption::EndOfList);
            }
            option_kind::NOP => {
                self.rest = after_kind;
                return Ok(TcpOption::NoOp);
            }
            _ => {}
        }
        let &len = after_kind.first().ok_or(Error::BadOption)?;
        let len = usize::from(len);
        if len < 2 {
            return Err(Error::BadOption);
        }
        let option = self.rest.get(..len).ok_or(Error::BadOption)?;
        let data = option.get(2..).unwrap_or(&[]);
        let parsed = match kind {
            option_kind::MSS => TcpOption::Mss(u16::from_be_bytes(exact(data)?)),
            option_kind::WINDOW_SCALE => {
                let [shift] = exact::<1>(data)?;
                TcpOption::WindowScale(shift)
            }
            option_kind::SACK_PERMITTED => {
                exact::<0>(data)?;
                TcpOption::SackPermitted
            }
            option_kind::SACK => {
                if data.is_empty() || data.len() % 8 != 0 || data.len() > 8 * MAX_SACK_BLOCKS {
                    return Err(Error::BadOption);
                }
                let mut blocks = SackBlocks::new();
                let mut rest = data;
                while let Some((block, tail)) = rest.split_first_chunk::<8>() {
                    let [a, b, c, d, e, f, g, h] = *block;
                    blocks.push((
                        u32::from_be_bytes([a, b, c, d]),
                        u32::from_be_bytes([e, f, g, h]),
                    ));
                    rest = tail;
                }
                TcpOption::Sack(blocks)
            }
            option_kind::TIMESTAMPS => {
                let [a, b, c, d, e, f, g, h] = exact::<8>(data)?;
                TcpOption::Timestamps(Timestamps {
                    tsval: u32::from_be_bytes([a, b, c, d]),
                    tsecr: u32::from_be_bytes([e, f, g, h]),
                })
            }
            _ => TcpOption::Unknown { kind, data },
        };
        self.rest = self.rest.get(len..).unwrap_or(&[]);
        Ok(parsed)
    }
}

/// `data` as an array of exactly `N` bytes.
fn exact<const N: usize>(data: &[u8]) -> Result<[u8; N]> {
    <[u8; N]>::try_from(data).map_err(|_| Error::BadOption)
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.parse_one();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl std::iter::FusedIterator for TcpOptions<'_> {}

/// A zero-copy view of a TCP segment (header and payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap a buffer without checking it. Accessors read zeros past its end.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap a buffer holding a whole segment (as delimited by the IP layer), checking that the
    /// header and its options fit. The checksum is not checked: see [`Self::verify_checksum`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        // RFC 9293 §3.1: the data offset counts 32-bit words; the header is at least 5.
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

    /// Source port.
    pub fn src_port(&self) -> u16 {
        field::u16_at(self.buf(), offset::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        field::u16_at(self.buf(), offset::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        field::u32_at(self.buf(), offset::SEQ)
    }

    /// Acknowledgment number (meaningful when ACK is set).
    pub fn ack_number(&self) -> u32 {
        field::u32_at(self.buf(), offset::ACK)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(field::u8_at(self.buf(), offset::DATA_OFFSET) >> 4) * 4
    }

    /// The control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(field::u8_at(self.buf(), offset::FLAGS))
    }

    /// FIN.
    pub fn fin(&self) -> bool {
        self.flags().contains(TcpFlags::FIN)
    }

    /// SYN.
    pub fn syn(&self) -> bool {
        self.flags().contains(TcpFlags::SYN)
    }

    /// RST.
    pub fn rst(&self) -> bool {
        self.flags().contains(TcpFlags::RST)
    }

    /// PSH.
    pub fn psh(&self) -> bool {
        self.flags().contains(TcpFlags::PSH)
    }

    /// ACK.
    pub fn ack(&self) -> bool {
        self.flags().contains(TcpFlags::ACK)
    }

    /// URG.
    pub fn urg(&self) -> bool {
        self.flags().contains(TcpFlags::URG)
    }

    /// ECE (RFC 3168 §6.1).
    pub fn ece(&self) -> bool {
        self.flags().contains(TcpFlags::ECE)
    }

    /// CWR (RFC 3168 §6.1).
    pub fn cwr(&self) -> bool {
        self.flags().contains(TcpFlags::CWR)
    }

    /// Window, unscaled.
    pub fn window_len(&self) -> u16 {
        field::u16_at(self.buf(), offset::WINDOW)
    }

    /// The checksum as stored.
    pub fn checksum(&self) -> u16 {
        field::u16_at(self.buf(), offset::CHECKSUM)
    }

    /// Urgent pointer (meaningful when URG is set).
    pub fn urgent_at(&self) -> u16 {
        field::u16_at(self.buf(), offset::URGENT)
    }

    /// The option bytes, padding included.
    pub fn options(&self) -> &[u8] {
        field::slice(self.buf(), HEADER_LEN, self.header_len())
    }

    /// The options, parsed one by one.
    pub fn options_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        let buf = self.buf();
        field::slice(buf, self.header_len(), buf.len())
    }

    /// Length the segment occupies in sequence space: payload, plus one each for SYN and FIN
    /// (RFC 9293 §3.4).
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Whether the checksum over pseudo-header, header and payload is right (RFC 9293 §3.1).
    /// The whole buffer is the segment, so it must end where the IP payload ends.
    pub fn verify_checksum<A: IpAddress>(&self, src: A, dst: A) -> bool {
        checksum::upper_layer(src, dst, IpProtocol::TCP, self.buf()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Set the sequence number.
    pub fn set_seq_number(&mut self, seq: u32) {
        field::set_u32(self.buf_mut(), offset::SEQ, seq);
    }

    /// Set the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: u32) {
        field::set_u32(self.buf_mut(), offset::ACK, ack);
    }

    /// Set the header length in bytes (a multiple of 4, 20 to 60); the reserved bits are
    /// cleared (RFC 9293 §3.1: "must be zero in generated segments").
    pub fn set_header_len(&mut self, len: usize) {
        let words = ((len / 4) & 0x0f) as u8;
        field::set_u8(self.buf_mut(), offset::DATA_OFFSET, words << 4);
    }

    /// Set the control bits.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        field::set_u8(self.buf_mut(), offset::FLAGS, flags.0);
    }

    /// Set the window.
    pub fn set_window_len(&mut self, window: u16) {
        field::set_u16(self.buf_mut(), offset::WINDOW, window);
    }

    /// Store a checksum value.
    pub fn set_checksum(&mut self, checksum: u16) {
        field::set_u16(self.buf_mut(), offset::CHECKSUM, checksum);
    }

    /// Set the urgent pointer.
    pub fn set_urgent_at(&mut self, urgent: u16) {
        field::set_u16(self.buf_mut(), offset::URGENT, urgent);
    }

    /// The option bytes, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        field::slice_mut(self.buf_mut(), HEADER_LEN, end)
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let buf = self.buf_mut();
        let end = buf.len();
        field::slice_mut(buf, start, end)
    }

    /// Compute the checksum over the whole buffer and store it.
    pub fn fill_checksum<A: IpAddress>(&mut self, src: A, dst: A) {
        self.set_checksum(0);
        let sum = checksum::upper_layer(src, dst, IpProtocol::TCP, self.buf());
        self.set_checksum(sum);
    }
}

/// The fields of a TCP header, options as typed values.
///
/// Options are recorded whatever segment they come in; which ones count where (MSS and window
/// scale only on SYN, RFC 9293 §3.7.1 and RFC 7323 §2.2) is for the engine to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub urgent: u16,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub sack_blocks: SackBlocks,
    pub timestamps: Option<Timestamps>,
    pub payload_len: usize,
}

impl TcpRepr {
    /// A segment with the given ports and flags and everything else zero or absent.
    pub fn new(src_port: u16, dst_port: u16, flags: TcpFlags) -> Self {
        Self {
            src_port,
            dst_port,
            seq: 0,
            ack: 0,
            flags,
            window: 0,
            urgent: 0,
            mss: None,
            window_scale: None,
            sack_permitted: false,
            sack_blocks: SackBlocks::new(),
            timestamps: None,
            payload_len: 0,
        }
    }

    /// Read a checked segment, verifying its checksum against the IP addresses, and its
    /// options (a malformed one is an error; unknown kinds are skipped; anything after
    /// End of Option List is padding).
    pub fn parse<T: AsRef<[u8]>, A: IpAddress>(
        packet: &TcpPacket<T>,
        src: A,
        dst: A,
    ) -> Result<Self> {
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Self::parse_unverified(packet)
    }

    /// Read a checked segment without verifying the checksum (checksum offload, or the first
    /// bytes of a segment quoted in an ICMP error — though those hold only the ports and the
    /// sequence number).
    pub fn parse_unverified<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<Self> {
        if packet.header_len() < HEADER_LEN {
            return Err(Error::BadLength);
        }
        let mut repr = Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            payload_len: packet.payload().len(),
            ..Self::new(0, 0, TcpFlags::empty())
        };
        let options = packet.options();
        // Nearly every segment of an established connection carries only
        // the timestamps, laid out as Linux and we send them: NOP, NOP,
        // kind 8, length 10 (RFC 7323 Appendix A). Read that layout at
        // once, as Linux's tcp_parse_aligned_timestamp does; anything else
        // goes through the general walk.
        if let Some(ts) = aligned_timestamps(options) {
            repr.timestamps = Some(ts);
            return Ok(repr);
        }
        for option in TcpOptions::new(options) {
            match option? {
                TcpOption::EndOfList | TcpOption::NoOp | TcpOption::Unknown { .. } => {}
                TcpOption::Mss(mss) => repr.mss = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Sack(blocks) => repr.sack_blocks = blocks,
                TcpOption::Timestamps(ts) => repr.timestamps = Some(ts),
            }
        }
        Ok(repr)
    }

    /// Bytes of options `emit` writes for everything but SACK blocks.
    fn fixed_options_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        // sackOK and TS share a 12-byte slot; either alone is padded by two NOPs.
        len += match (self.sack_permitted, self.timestamps.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// How many SACK blocks `emit` writes: all that fit in the 40 option bytes, first first
    /// (RFC 2018 §4: the first block reports the most recent data, so it is the one to keep;
    /// with timestamps that leaves room for 3, as Linux sends).
    pub fn sack_blocks_emitted(&self) -> usize {
        let room = MAX_OPTIONS_LEN.saturating_sub(self.fixed_options_len() + 4) / 8;
        self.sack_blocks.len().min(room)
    }

    /// Bytes of options `emit` writes, a multiple of 4.
    pub fn options_len(&self) -> usize {
        let sack = self.sack_blocks_emitted();
        self.fixed_options_len() + if sack > 0 { 4 + 8 * sack } else { 0 }
    }

    /// Header length `emit` writes, options included.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len().saturating_add(self.payload_len)
    }

    /// Length in sequence space: payload plus SYN and FIN (RFC 9293 §3.4).
    pub fn segment_len(&self) -> usize {
        self.payload_len
            .saturating_add(usize::from(self.flags.contains(TcpFlags::SYN)))
            .saturating_add(usize::from(self.flags.contains(TcpFlags::FIN)))
    }

    /// Write the segment to the start of `buf`: header, options, then `payload` (which must be
    /// `payload_len` bytes), and the checksum over them with the pseudo-header of `src`/`dst`.
    ///
    /// Options are laid out as Linux's `tcp_options_write` does, each group padded with NOPs
    /// to 4 bytes: `mss`, then `sackOK` + `TS` (or `nop nop TS`, or `nop nop sackOK`), then
    /// `nop wscale`, then `nop nop sack`. A SYN with everything is
    /// `mss, sackOK, TS val/ecr, nop, wscale`: 20 bytes.
    pub fn emit<A: IpAddress>(&self, buf: &mut [u8], src: A, dst: A, payload: &[u8]) -> Result<()> {
        self.emit_parts(buf, src, dst, payload, &[])
    }

    /// [`emit`](TcpRepr::emit) with the payload in two parts, `head` then
    /// `tail` (as it lies in a ring buffer), copied once into `buf`.
    pub fn emit_parts<A: IpAddress>(
        &self,
        buf: &mut [u8],
        src: A,
        dst: A,
        head: &[u8],
        tail: &[u8],
    ) -> Result<()> {
        let mut packet = self.emit_unsummed(buf, head, tail)?;
        packet.fill_checksum(src, dst);
        Ok(())
    }

    /// [`emit`](TcpRepr::emit) for a device that completes the checksum
    /// (Linux's CHECKSUM_PARTIAL, a TUN device with `VIRTIO_NET_HDR_F_NEEDS_CSUM`):
    /// the checksum field holds the pseudo-header's sum, folded and not
    /// complemented; the device adds the segment's bytes to it.
    pub fn emit_partial<A: IpAddress>(
        &self,
        buf: &mut [u8],
        src: A,
        dst: A,
        payload: &[u8],
    ) -> Result<()> {
        self.emit_partial_parts(buf, src, dst, payload, &[])
    }

    /// [`emit_partial`](TcpRepr::emit_partial) with the payload in two parts, `head` then `tail`.
    pub fn emit_partial_parts<A: IpAddress>(
        &self,
        buf: &mut [u8],
        src: A,
        dst: A,
        head: &[u8],
        tail: &[u8],
    ) -> Result<()> {
        let mut packet = self.emit_unsummed(buf, head, tail)?;
        let total = packet.buf().len() as u32;
        let pseudo = A::pseudo_header(src, dst, IpProtocol::TCP, total);
        packet.set_checksum(pseudo.sum());
        Ok(())
    }

    /// The header and payload at the start of `buf`, the checksum field left for the caller.
    fn emit_unsummed<'b>(
        &self,
        buf: &'b mut [u8],
        head: &[u8],
        tail: &[u8],
    ) -> Result<TcpPacket<&'b mut [u8]>> {
        if head.len() + tail.len() != self.payload_len {
            return Err(Error::BadLength);
        }
        let header_len = self.header_len();
        let total = header_len + self.payload_len;
        let segment = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        let mut packet = TcpPacket::new_unchecked(segment);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq);
        packet.set_ack_number(self.ack);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window);
        packet.set_urgent_at(self.urgent);
        self.emit_options(packet.options_mut());
        let payload = packet.payload_mut();
        field::copy_to(payload, 0, head);
        field::copy_to(payload, head.len(), tail);
        Ok(packet)
    }

    /// Write the options into `out`, which is `options_len()` bytes.
    fn emit_options(&self, out: &mut [u8]) {
        // The established connection's usual case, timestamps alone: the
        // 12 bytes in three stores (the same layout as the general path).
        if let (12, None, None, false, Some(ts)) = (
            out.len(),
            self.mss,
            self.window_scale,
            self.sack_permitted,
            self.timestamps,
        ) {
            out[..4].copy_from_slice(&ALIGNED_TIMESTAMPS);
            out[4..8].copy_from_slice(&ts.tsval.to_be_bytes());
            out[8..12].copy_from_slice(&ts.tsecr.to_be_bytes());
            return;
        }
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            field::copy_to(out, at, bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            put(&[option_kind::MSS, 4, hi, lo]);
        }
        match (self.sack_permitted, self.timestamps) {
            (sack_ok, Some(ts)) => {
                if sack_ok {
                    put(&[option_kind::SACK_PERMITTED, 2]);
                } else {
                    put(&[option_kind::NOP, option_kind::NOP]);
                }
                put(&[option_kind::TIMESTAMPS, 10]);
                put(&ts.tsval.to_be_bytes());
                put(&ts.tsecr.to_be_bytes());
            }
            (true, None) => put(&[
                option_kind::NOP,
                option_kind::NOP,
                option_kind::SACK_PERMITTED,
                2,
            ]),
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[option_kind::NOP, option_kind::WINDOW_SCALE, 3, shift]);
        }
        let sack = self.sack_blocks_emitted();
        if sack > 0 {
            // sack ≤ 4, so the length is at most 34.
            let len = (2 + 8 * sack) as u8;
            put(&[option_kind::NOP, option_kind::NOP, option_kind::SACK, len]);
            for (left, right) in self.sack_blocks.iter().take(sack) {
                put(&left.to_be_bytes());
                put(&right.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod partial_checksum_tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn completing_a_partial_checksum_gives_the_full_one() {
        let (src, dst) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 1));
        let mut r = TcpRepr::new(40000, 80, TcpFlags::ACK);
        r.seq = 7;
        r.payload_len = 5;
        let (mut full, mut partial) = ([0u8; 25], [0u8; 25]);
        r.emit(&mut full, src, dst, b"hello").unwrap();
        r.emit_partial(&mut partial, src, dst, b"hello").unwrap();
        assert_ne!(full, partial);
        // What the device does: sum the segment (pseudo sum in the field), complement.
        let sum = checksum::checksum(&partial);
        partial[16..18].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(full, partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A SYN as Linux sends it: 10.0.0.1:40000 → 10.0.0.2:80, seq 0x11223344, window 64240,
    /// `mss 1460,sackOK,TS val 1000 ecr 0,nop,wscale 7`. Checksum computed independently
    /// with Python's struct module and an RFC 1071 sum.
    const LINUX_SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x54, 0x2e, 0x00, 0x00, // fixed header, checksum 0x542e
        0x02, 0x04, 0x05, 0xb4, // mss 1460
        0x04, 0x02, // sackOK
        0x08, 0x0a, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, // TS val 1000 ecr 0
        0x01, // nop
        0x03, 0x03, 0x07, // wscale 7
    ];

    /// A payload in two parts (a ring buffer's wrap) makes the same bytes as
    /// in one, checksum included, for both checksum modes; a wrong total
    /// length is refused.
    #[test]
    fn emit_parts_matches_emit_of_the_joined_payload() {
        let payload: Vec<u8> = (0..1001u32).map(|i| (i * 31) as u8).collect();
        let r = TcpRepr {
            seq: 7,
            ack: 9,
            payload_len: payload.len(),
            timestamps: Some(Timestamps { tsval: 1, tsecr: 2 }),
            ..TcpRepr::new(1234, 80, TcpFlags::ACK | TcpFlags::PSH)
        };
        let mut whole = vec![0u8; 1200];
        r.emit(&mut whole, SRC, DST, &payload).unwrap();
        for cut in [0, 1, 500, 999, 1001] {
            let (a, b) = payload.split_at(cut);
            let mut parts = vec![0u8; 1200];
            r.emit_parts(&mut parts, SRC, DST, a, b).unwrap();
            assert_eq!(parts, whole, "cut at {cut}");
            let mut p1 = vec![0u8; 1200];
            let mut p2 = vec![0u8; 1200];
            r.emit_partial(&mut p1, SRC, DST, &payload).unwrap();
            r.emit_partial_parts(&mut p2, SRC, DST, a, b).unwrap();
            assert_eq!(p1, p2, "partial, cut at {cut}");
        }
        let mut buf = vec![0u8; 1200];
        assert_eq!(
            r.emit_parts(&mut buf, SRC, DST, &payload[..10], &payload[..10]),
            Err(Error::BadLength)
        );
    }

    fn linux_syn_repr() -> TcpRepr {
        TcpRepr {
            seq: 0x1122_3344,
            window: 64240,
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                tsval: 1000,
                tsecr: 0,
            }),
            ..TcpRepr::new(40000, 80, TcpFlags::SYN)
        }
    }

    #[test]
    fn parse_linux_syn() {
        let packet = TcpPacket::new_checked(&LINUX_SYN[..]).unwrap();
        assert_eq!(packet.src_port(), 40000);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), 0x1122_3344);
        assert_eq!(packet.header_len(), 40);
        assert!(packet.syn() && !packet.ack() && !packet.fin());
        assert_eq!(packet.window_len(), 64240);
        assert!(packet.verify_checksum(SRC, DST));
        assert!(!packet.verify_checksum(DST, Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(packet.segment_len(), 1);
        let options: Vec<_> = packet.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            options,
            [
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps(Timestamps {
                    tsval: 1000,
                    tsecr: 0
                }),
                TcpOption::NoOp,
                TcpOption::WindowScale(7),
            ]
        );
        assert_eq!(TcpRepr::parse(&packet, SRC, DST).unwrap(), linux_syn_repr());
    }

    #[test]
    fn emit_linux_syn() {
        let repr = linux_syn_repr();
        assert_eq!(repr.options_len(), 20);
        assert_eq!(repr.header_len(), 40);
        let mut buf = [0u8; 40];
        repr.emit(&mut buf, SRC, DST, &[]).unwrap();
        assert_eq!(buf, LINUX_SYN);
    }

    #[test]
    fn ack_with_payload_and_sack_over_ipv6() {
        let src = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        let repr = TcpRepr {
            seq: 1,
            ack: 0xffff_fff0,
            window: 502,
            timestamps: Some(Timestamps { tsval: 7, tsecr: 9 }),
            sack_blocks: SackBlocks::from_slice(&[(10, 20), (30, 40), (50, 60), (70, 80)]),
            payload_len: 5,
            ..TcpRepr::new(443, 51000, TcpFlags::ACK | TcpFlags::PSH)
        };
        // TS (12) + nop nop sack with 3 blocks (28) = 40: the fourth block does not fit.
        assert_eq!(repr.sack_blocks_emitted(), 3);
        assert_eq!(repr.header_len(), 60);
        let mut buf = [0u8; 65];
        repr.emit(&mut buf, src, dst, b"hello").unwrap();
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum(src, dst));
        assert_eq!(packet.payload(), b"hello");
        assert_eq!(&packet.options()[..4], &[1, 1, 8, 10]);
        let parsed = TcpRepr::parse(&packet, src, dst).unwrap();
        let mut expected = repr;
        expected.sack_blocks.truncate(3);
        assert_eq!(parsed, expected);
        assert_eq!(format!("{}", parsed.flags), "P.");
    }

    #[test]
    fn option_layouts() {
        let cases: [(TcpRepr, &[u8]); 4] = [
            (
                TcpRepr {
                    sack_permitted: true,
                    ..TcpRepr::new(1, 2, TcpFlags::SYN)
                },
                &[1, 1, 4, 2],
            ),
            (
                TcpRepr {
                    timestamps: Some(Timestamps { tsval: 1, tsecr: 2 }),
                    ..TcpRepr::new(1, 2, TcpFlags::ACK)
                },
                &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ),
            (
                TcpRepr {
                    mss: Some(536),
                    window_scale: Some(14),
                    ..TcpRepr::new(1, 2, TcpFlags::SYN)
                },
                &[2, 4, 2, 24, 1, 3, 3, 14],
            ),
            (
                TcpRepr {
                    sack_blocks: SackBlocks::from_slice(&[(1, 2)]),
                    ..TcpRepr::new(1, 2, TcpFlags::ACK)
                },
                &[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ),
        ];
        for (repr, options) in cases {
            let mut buf = [0u8; 60];
            repr.emit(&mut buf, SRC, DST, &[]).unwrap();
            let packet = TcpPacket::new_checked(&buf[..repr.header_len()]).unwrap();
            assert_eq!(packet.options(), options, "{repr:?}");
            assert_eq!(TcpRepr::parse(&packet, SRC, DST).unwrap(), repr);
        }
    }

    #[test]
    fn malformed_options() {
        let bad: [&[u8]; 9] = [
            &[2],                         // no length byte
            &[2, 0],                      // length 0
            &[2, 1],                      // length 1
            &[2, 4, 5],                   // runs past the end
            &[2, 3, 5],                   // MSS of the wrong length
            &[3, 4, 1, 1],                // window scale of the wrong length
            &[4, 3, 0],                   // SACK-permitted of the wrong length
            &[5, 6, 0, 0, 0, 0],          // SACK not a multiple of 8
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // timestamps of the wrong length
        ];
        for options in bad {
            let items: Vec<_> = TcpOptions::new(options).collect();
            assert_eq!(items, [Err(Error::BadOption)], "{options:?}");
        }
        // A SACK of 5 blocks cannot exist inside 40 bytes but a bare option list can claim it.
        let mut five = vec![5, 42];
        five.resize(42, 0);
        assert_eq!(TcpOptions::new(&five).next(), Some(Err(Error::BadOption)));
    }

    #[test]
    fn unknown_and_eol() {
        let options = [1, 30, 4, 0xaa, 0xbb, 0, 2, 4, 5, 0xb4];
        let items: Vec<_> = TcpOptions::new(&options).collect();
        assert_eq!(
            items,
            [
                Ok(TcpOption::NoOp),
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[0xaa, 0xbb]
                }),
                Ok(TcpOption::EndOfList),
            ]
        );
    }

    #[test]
    fn rejects_bad_headers() {
        let mut buf = LINUX_SYN;
        assert_eq!(
            TcpPacket::new_checked(&buf[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&buf[..19]).unwrap_err(),
            Error::Truncated
        );
        buf[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).unwrap_err(),
            Error::BadLength
        );
        let mut buf = LINUX_SYN;
        buf[5] ^= 1;
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&packet, SRC, DST).unwrap_err(),
            Error::BadChecksum
        );
        // A malformed option inside a header with a good checksum.
        let mut buf = LINUX_SYN;
        buf[21] = 1;
        let mut packet = TcpPacket::new_checked(&mut buf[..]).unwrap();
        packet.fill_checksum(SRC, DST);
        assert_eq!(
            TcpRepr::parse(&packet, SRC, DST).unwrap_err(),
            Error::BadOption
        );
    }

    #[test]
    fn emit_errors() {
        let repr = linux_syn_repr();
        assert_eq!(
            repr.emit(&mut [0; 39], SRC, DST, &[]),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            repr.emit(&mut [0; 60], SRC, DST, b"x"),
            Err(Error::BadLength)
        );
    }

    #[test]
    fn flags_display() {
        assert_eq!(TcpFlags::SYN.to_string(), "S");
        assert_eq!((TcpFlags::SYN | TcpFlags::ACK).to_string(), "S.");
        assert_eq!((TcpFlags::FIN | TcpFlags::ACK).to_string(), "F.");
        assert_eq!(TcpFlags::empty().to_string(), "none");
        assert_eq!(
            (TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR).to_string(),
            "SEW"
        );
        let mut f = TcpFlags::RST;
        f.set(TcpFlags::ACK, true);
        f.set(TcpFlags::RST, false);
        assert_eq!(f, TcpFlags::ACK);
    }
}

#[cfg(test)]
mod aligned_timestamps_tests {
    use super::*;
    use proptest::prelude::*;

    /// What the general option walk reads from `options`: the reference the
    /// NOP-NOP-TS shortcut must agree with.
    fn walked(options: &[u8]) -> Result<(Option<Timestamps>, Option<u16>, bool, usize)> {
        let (mut ts, mut mss, mut sack_ok, mut blocks) = (None, None, false, 0);
        for option in TcpOptions::new(options) {
            match option? {
                TcpOption::Timestamps(t) => ts = Some(t),
                TcpOption::Mss(m) => mss = Some(m),
                TcpOption::SackPermitted => sack_ok = true,
                TcpOption::Sack(b) => blocks = b.len(),
                _ => {}
            }
        }
        Ok((ts, mss, sack_ok, blocks))
    }

    fn segment_with(options: &[u8; 12]) -> Vec<u8> {
        let mut r = TcpRepr::new(1, 2, TcpFlags::ACK);
        r.timestamps = Some(Timestamps { tsval: 0, tsecr: 0 });
        let mut buf = vec![0u8; 32];
        r.emit_parts(&mut buf, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &[], &[])
            .unwrap();
        buf[20..32].copy_from_slice(options);
        buf
    }

    use std::net::Ipv4Addr;

    proptest! {
        /// Any 12 option bytes, often starting as the shortcut's layout
        /// does: the parse gives what the walk gives (or both fail).
        #[test]
        fn shortcut_agrees_with_the_walk(
            head in prop_oneof![Just([1u8, 1, 8, 10]), any::<[u8; 4]>(), Just([1u8, 1, 8, 9]), Just([8u8, 10, 0, 0])],
            rest in any::<[u8; 8]>(),
        ) {
            let mut options = [0u8; 12];
            options[..4].copy_from_slice(&head);
            options[4..].copy_from_slice(&rest);
            let buf = segment_with(&options);
            let packet = TcpPacket::new_checked(&buf[..]).unwrap();
            match (TcpRepr::parse_unverified(&packet), walked(&options)) {
                (Ok(r), Ok((ts, mss, sack_ok, blocks))) => {
                    prop_assert_eq!(r.timestamps, ts);
                    prop_assert_eq!(r.mss, mss);
                    prop_assert_eq!(r.sack_permitted, sack_ok);
                    prop_assert_eq!(r.sack_blocks.len(), blocks);
                }
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "parse {:?} but walk {:?}", a.map(|r| r.timestamps), b),
            }
        }

        /// The emit shortcut writes the bytes the general layout writes
        /// (NOP, NOP, TS): checked byte by byte and read back by the walk.
        #[test]
        fn timestamps_alone_are_laid_out_as_linux_does(tsval in any::<u32>(), tsecr in any::<u32>()) {
            let mut r = TcpRepr::new(1, 2, TcpFlags::ACK);
            r.timestamps = Some(Timestamps { tsval, tsecr });
            let mut buf = vec![0u8; 32];
            r.emit_parts(&mut buf, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &[], &[]).unwrap();
            let mut expected = vec![1u8, 1, 8, 10];
            expected.extend_from_slice(&tsval.to_be_bytes());
            expected.extend_from_slice(&tsecr.to_be_bytes());
            prop_assert_eq!(&buf[20..32], &expected[..]);
            prop_assert_eq!(walked(&buf[20..32]).unwrap().0, Some(Timestamps { tsval, tsecr }));
        }
    }
}
