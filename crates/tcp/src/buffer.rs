//! The two byte stores of a connection: what we sent and the peer has not
//! yet acknowledged (plus what we have not sent yet), and what the peer sent
//! that the application has not read yet, with the out-of-order pieces that
//! wait for a hole to fill (RFC 9293 §3.10.7.4 "segment text").

use std::collections::VecDeque;

use crate::seq::SeqNum;

/// Bytes from SND.UNA onwards: sent-unacknowledged, then unsent.
#[derive(Debug, Default)]
pub struct SendBuffer {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl SendBuffer {
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            bytes: VecDeque::new(),
            capacity,
        }
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data
            .len()
            .min(self.capacity.saturating_sub(self.bytes.len()));
        self.bytes.extend(&data[..n]);
        n
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    #[inline]
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.bytes.len())
    }

    /// Changes the limit; bytes already queued stay.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Copies `len` bytes starting `offset` bytes after SND.UNA.
    pub fn copy_out(&self, offset: usize, len: usize, out: &mut Vec<u8>) {
        let (a, b) = self.slices(offset, len);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
    }

    /// The `len` bytes starting `offset` bytes after SND.UNA, where they lie:
    /// one slice, or two when they wrap around the ring (the second then
    /// follows the first). Fewer when the buffer holds fewer.
    #[inline]
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let end = (offset + len).min(self.bytes.len());
        if offset >= end {
            return (&[], &[]);
        }
        let (a, b) = self.bytes.as_slices();
        if offset < a.len() {
            if end <= a.len() {
                (&a[offset..end], &[])
            } else {
                (&a[offset..], &b[..end - a.len()])
            }
        } else {
            (&b[offset - a.len()..end - a.len()], &[])
        }
    }

    /// Forgets the first `n` bytes (acknowledged).
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.bytes.len());
        self.bytes.drain(..n);
    }
}

/// Received bytes: the in-order part the application may read, and pieces
/// beyond RCV.NXT kept until the hole before them fills.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    readable: VecDeque<u8>,
    /// Out-of-order pieces, sorted, disjoint, not touching RCV.NXT.
    pieces: Vec<(SeqNum, Vec<u8>)>,
    /// The piece most recently added or grown (reported first in SACK, RFC 2018 §4).
    latest: Option<SeqNum>,
    capacity: usize,
}

impl RecvBuffer {
    pub fn new(capacity: usize) -> Self {
        RecvBuffer {
            readable: VecDeque::new(),
            pieces: Vec::new(),
            latest: None,
            capacity,
        }
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Grows (or shrinks) the buffer's limit; bytes already held stay.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Bytes the application can read now.
    #[inline]
    pub fn readable(&self) -> usize {
        self.readable.len()
    }

    /// Room for more in-order bytes: what the window may offer.
    #[inline]
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.readable.len())
    }

    #[inline]
    pub fn has_pieces(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// The bytes the application can read, where they lie (the second
    /// slice follows the first; it is empty unless the ring wraps).
    #[inline]
    pub fn readable_slices(&self) -> (&[u8], &[u8]) {
        self.readable.as_slices()
    }

    /// Forgets the first `n` readable bytes (the application took them in place).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.readable.len());
        self.readable.drain(..n);
    }

    /// Reads up to `buf.len()` bytes.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.readable.len());
        let (a, b) = self.readable.as_slices();
        if n <= a.len() {
            buf[..n].copy_from_slice(&a[..n]);
        } else {
            buf[..a.len()].copy_from_slice(a);
            buf[a.len()..n].copy_from_slice(&b[..n - a.len()]);
        }
        self.readable.drain(..n);
        n
    }

    /// Appends bytes that start at RCV.NXT, with no pieces waiting beyond
    /// it and room for all of them (the caller checked both): `insert`'s
    /// common case without its trimming. Returns how far RCV.NXT moves.
    #[inline]
    pub fn append(&mut self, data: &[u8]) -> usize {
        debug_assert!(self.pieces.is_empty());
        self.readable.extend(data);
        data.len()
    }

    /// Takes a segment's payload starting at `seq` given `rcv_nxt`, keeping
    /// at most `window` bytes past RCV.NXT. Returns how far RCV.NXT moves.
    pub fn insert(&mut self, rcv_nxt: SeqNum, seq: SeqNum, data: &[u8], window: usize) -> usize {
        // Trim what we already have (before RCV.NXT) and what lies beyond the window.
        let mut seq = seq;
        let mut data = data;
        if seq < rcv_nxt {
            let skip = rcv_nxt - seq;
            if skip >= data.len() {
                return 0;
            }
            data = &data[skip..];
            seq = rcv_nxt;
        }
        let offset = seq - rcv_nxt;
        if offset >= window {
            return 0;
        }
        let data = &data[..data.len().min(window - offset)];
        if data.is_empty() {
            return 0;
        }
        if offset == 0 {
            self.readable.extend(data);
            let mut next = rcv_nxt + data.len();
            // Pull in pieces the new bytes reach.
            while let Some((start, _)) = self.pieces.first() {
                if *start > next {
                    break;
                }
                let (start, bytes) = self.pieces.remove(0);
                let end = start + bytes.len();
                if end > next {
                    let skip = next - start;
                    self.readable.extend(&bytes[skip..]);
                    next = end;
                }
            }
            if self.pieces.is_empty() {
                self.latest = None;
            }
            return next - rcv_nxt;
        }
        self.add_piece(seq, data);
        0
    }

    fn add_piece(&mut self, seq: SeqNum, data: &[u8]) {
        let mut start = seq;
        let mut bytes = data.to_vec();
        let end = seq + data.len();
        // Merge with every piece that overlaps or touches [start, end).
        let mut i = 0;
        let mut merged_end = end;
        while i < self.pieces.len() {
            let (ps, ref pb) = self.pieces[i];
            let pe = ps + pb.len();
            if pe < start || ps > merged_end {
                i += 1;
                continue;
            }
            let (ps, mut pb) = self.pieces.remove(i);
            // What the old piece holds past the new bytes (rare: only when
            // the new bytes land inside it).
            let tail = (pe > merged_end).then(|| pb[merged_end - ps..].to_vec());
            if ps < start {
                // The usual case after a loss: the next segment extends the
                // piece before it. Grow that piece in place (amortised
                // O(new bytes)) instead of copying it whole every time,
                // which made a hole followed by n segments cost O(n²).
                pb.truncate(start - ps);
                pb.extend_from_slice(&bytes);
                bytes = pb;
                start = ps;
            }
            if let Some(tail) = tail {
                bytes.extend_from_slice(&tail);
                merged_end = pe;
            }
        }
        let at = self
            .pieces
            .iter()
            .position(|(ps, _)| *ps > start)
            .unwrap_or(self.pieces.len());
        self.pieces.insert(at, (start, bytes));
        self.latest = Some(start);
    }

    /// SACK blocks for what we hold beyond RCV.NXT, the latest first (RFC 2018 §4).
    pub fn sack_blocks(&self, max: usize) -> Vec<(SeqNum, SeqNum)> {
        let mut out = Vec::new();
        if let Some(l) = self.latest {
            if let Some((s, b)) = self.pieces.iter().find(|(s, _)| *s == l) {
                out.push((*s, *s + b.len()));
            }
        }
        for (s, b) in self.pieces.iter().rev() {
            if out.len() >= max {
                break;
            }
            if Some(*s) != self.latest {
                out.push((*s, *s + b.len()));
            }
        }
        out.truncate(max);
        out
    }

    /// Bytes held out of order (they count against the buffer too).
    pub fn pieces_len(&self) -> usize {
        self.pieces.iter().map(|(_, b)| b.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_buffer_wraps_and_copies() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.push(b"abcdef"), 6);
        b.drop_front(4);
        assert_eq!(b.push(b"ghijklmn"), 6, "only the free room is taken");
        let mut out = Vec::new();
        b.copy_out(1, 5, &mut out);
        assert_eq!(out, b"fghij");
    }

    #[test]
    fn in_order_and_holes() {
        let mut r = RecvBuffer::new(100);
        let base = SeqNum(1000);
        assert_eq!(r.insert(base, base + 5u32, b"fghij", 100), 0);
        assert_eq!(r.insert(base, base + 15u32, b"pq", 100), 0);
        assert_eq!(
            r.sack_blocks(4),
            vec![(base + 15u32, base + 17u32), (base + 5u32, base + 10u32)]
        );
        assert_eq!(
            r.insert(base, base, b"abcde", 100),
            10,
            "the hole filled: 10 bytes in order"
        );
        let mut buf = [0u8; 32];
        let n = r.read(&mut buf);
        assert_eq!(&buf[..n], b"abcdefghij");
        assert!(r.has_pieces());
    }

    #[test]
    fn overlaps_and_duplicates_are_trimmed() {
        let mut r = RecvBuffer::new(100);
        let base = SeqNum(u32::MAX - 3);
        r.insert(base, base + 4u32, b"EFGH", 100);
        r.insert(base, base + 2u32, b"CDEF", 100);
        r.insert(base, base + 6u32, b"GHIJ", 100);
        assert_eq!(r.sack_blocks(4), vec![(base + 2u32, base + 10u32)]);
        assert_eq!(r.insert(base, base, b"AB", 100), 10);
        let mut buf = [0u8; 16];
        let n = r.read(&mut buf);
        assert_eq!(&buf[..n], b"ABCDEFGHIJ");
        // Old data again: nothing new.
        assert_eq!(r.insert(base + 10u32, base, b"ABCDEFGHIJ", 100), 0);
    }

    #[test]
    fn window_limits_what_is_kept() {
        let mut r = RecvBuffer::new(4);
        let base = SeqNum(0);
        assert_eq!(r.insert(base, base, b"abcdef", 4), 4);
        assert_eq!(r.readable(), 4);
    }
}
