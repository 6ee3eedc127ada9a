//! The two byte stores of a connection: what we sent and the peer has not
//! yet acknowledged (plus what we have not sent yet), and what the peer sent
//! that the application has not read yet, with the out-of-order pieces that
//! wait for a hole to fill (RFC 9293 §3.10.7.4 "segment text").

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use crate::copy;
use crate::seq::SeqNum;

/// The largest block `SendBuffer::push` copies bytes into: no segment is
/// longer (an IP packet holds at most 64 KiB), so a segment of copied
/// bytes lies in at most two blocks and is lent as one or two slices.
const BLOCK: usize = 64 * 1024;

/// Bytes from SND.UNA onwards: sent-unacknowledged, then unsent.
///
/// A queue of chunks, each either a block the buffer copied bytes into
/// (`push`, up to [`BLOCK`] bytes) or a [`Bytes`] the application handed
/// over (`push_bytes`, kept as it is: no copy). A chunk goes once all of
/// it is acknowledged: the application's is dropped at once; emptied
/// blocks are kept for the next bytes while the buffer holds any (at most
/// a buffer's worth: a bulk transfer reuses the same memory, as a ring
/// would, where freeing and allocating blocks measured ~10% more L2
/// misses in the copies), and all of them go once it is empty.
///
/// Segments are lent as at most two slices (`Payload`), so the layout
/// keeps every chunk but the first and the last at least `full_segment`
/// bytes long (see `push_bytes`): then a segment no longer than that
/// spans at most two chunks. `lendable` says how much of a longer run
/// two slices reach (the caller cuts the segment there).
#[derive(Default)]
pub struct SendBuffer {
    chunks: VecDeque<Chunk>,
    /// Stream position (bytes since the buffer was made) of SND.UNA's byte.
    front: u64,
    /// Stream position one past the last byte queued.
    end: u64,
    capacity: usize,
    /// The chunk the last lookup found, and the stream positions it
    /// spans, `[hint_start, hint_end)` (empty when there is none):
    /// segments go out in order, so the next lookup is usually in it.
    hint: usize,
    hint_start: u64,
    hint_end: u64,
    /// Emptied blocks, kept for reuse while bytes flow.
    spare: Vec<Vec<u8>>,
    /// How many chunks are the application's (`push_bytes`). With none,
    /// every block but the last holds `BLOCK` bytes, more than a segment:
    /// two slices always reach a whole segment.
    owned_chunks: usize,
}

/// A run of queued bytes ending at stream position `end`.
struct Chunk {
    end: u64,
    data: ChunkData,
}

enum ChunkData {
    /// Bytes `push` copied; the last block grows until it holds `BLOCK`.
    Copied(Vec<u8>),
    /// The application's buffer, lent out as it is.
    Owned(Bytes),
}

impl Chunk {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match &self.data {
            ChunkData::Copied(v) => v,
            ChunkData::Owned(b) => b,
        }
    }

    /// Stream position of the chunk's first byte (acknowledged or not).
    #[inline]
    fn start(&self) -> u64 {
        self.end - self.bytes().len() as u64
    }
}

impl fmt::Debug for SendBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owned = self
            .chunks
            .iter()
            .filter(|c| matches!(c.data, ChunkData::Owned(_)))
            .count();
        f.debug_struct("SendBuffer")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("chunks", &self.chunks.len())
            .field("owned_chunks", &owned)
            .finish()
    }
}

impl SendBuffer {
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            capacity,
            ..SendBuffer::default()
        }
    }

    /// Appends as much of `data` as fits, copying it; returns how much.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        self.copy_in(&data[..n]);
        n
    }

    /// Takes as much of `data` as fits from its front without copying
    /// (`data` keeps the rest); returns how much.
    ///
    /// `full_segment` is the longest segment the connection sends. A piece
    /// shorter than that is copied (a tiny chunk must not make a tiny
    /// segment, and two slices must reach a full segment): so is the start
    /// of a piece that follows a short copied block, filling that block up
    /// to `full_segment` first. Every chunk but the first and the last
    /// thus holds at least `full_segment` bytes.
    pub fn push_bytes(&mut self, data: &mut Bytes, full_segment: usize) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        let mut piece = data.split_to(n);
        if self.chunks.len() > 1 {
            if let Some(Chunk {
                data: ChunkData::Copied(block),
                ..
            }) = self.chunks.back()
            {
                let short = full_segment.saturating_sub(block.len());
                if short > 0 {
                    let top_up = piece.split_to(short.min(piece.len()));
                    self.copy_in(&top_up);
                }
            }
        }
        if piece.len() < full_segment {
            self.copy_in(&piece);
        } else if !piece.is_empty() {
            self.end += piece.len() as u64;
            self.owned_chunks += 1;
            self.chunks.push_back(Chunk {
                end: self.end,
                data: ChunkData::Owned(piece),
            });
        }
        n
    }

    /// Copies `data` (which fits) to the end: into the last block while it
    /// has room, then into new ones.
    fn copy_in(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let last = self.chunks.len().wrapping_sub(1);
            if let Some(Chunk {
                end,
                data: ChunkData::Copied(block),
            }) = self.chunks.back_mut()
            {
                if block.len() < BLOCK {
                    let k = data.len().min(BLOCK - block.len());
                    if block.capacity() - block.len() < k {
                        // Grow by doubling, never past a block.
                        let want = (block.capacity() * 2).max(block.len() + k).min(BLOCK);
                        block.reserve_exact(want - block.len());
                    }
                    copy::extend(block, &data[..k]);
                    if self.hint_end == *end && self.hint == last {
                        // The remembered chunk is this one: it grew.
                        self.hint_end += k as u64;
                    }
                    *end += k as u64;
                    self.end += k as u64;
                    data = &data[k..];
                    continue;
                }
            }
            let block = match self.spare.pop() {
                Some(block) => block,
                // Bytes already flowing: a whole block (as large as the
                // buffer may hold); else as much as these bytes need, grown
                // when more follow (a connection sending a line holds a
                // line, not a block).
                None if self.end > self.front => {
                    Vec::with_capacity(self.capacity.max(data.len()).min(BLOCK).next_power_of_two())
                }
                None => Vec::with_capacity(data.len().min(BLOCK)),
            };
            self.chunks.push_back(Chunk {
                end: self.end,
                data: ChunkData::Copied(block),
            });
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.front) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.front
    }

    #[inline]
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len())
    }

    /// Changes the limit; bytes already queued stay.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Heap bytes the buffer holds (its chunks' allocations, shared owned
    /// chunks counted whole, and the spare blocks).
    pub fn heap_bytes(&self) -> usize {
        let chunks: usize = self
            .chunks
            .iter()
            .map(|c| match &c.data {
                ChunkData::Copied(v) => v.capacity(),
                ChunkData::Owned(b) => b.len(),
            })
            .sum();
        chunks
            + self.spare.iter().map(Vec::capacity).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }

    /// How many chunks hold the queued bytes (for tests of the layout).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Copies `len` bytes starting `offset` bytes after SND.UNA.
    pub fn copy_out(&mut self, offset: usize, len: usize, out: &mut Vec<u8>) {
        let mut at = offset;
        let end = (offset + len).min(self.len());
        while at < end {
            let (a, b) = self.slices(at, end - at);
            copy::extend(out, a);
            copy::extend(out, b);
            at += a.len() + b.len();
        }
    }

    /// The index of the chunk holding stream position `pos` (which is queued).
    #[inline(always)]
    fn locate(&mut self, pos: u64) -> usize {
        if pos >= self.hint_start && pos < self.hint_end {
            return self.hint;
        }
        self.locate_slow(pos)
    }

    /// `locate` past the remembered chunk: the next one, or a search.
    #[inline(never)]
    fn locate_slow(&mut self, pos: u64) -> usize {
        let next = self.hint + 1;
        let i = match self.chunks.get(next) {
            Some(c) if pos >= self.hint_end && pos < c.end && self.hint_end > self.front => next,
            _ => self.chunks.partition_point(|c| c.end <= pos),
        };
        self.hint = i;
        let c = &self.chunks[i];
        self.hint_start = c.start();
        self.hint_end = c.end;
        i
    }

    /// Of the `len` bytes starting `offset` bytes after SND.UNA, how many
    /// two slices reach: all of them unless they span three chunks or more
    /// (then up to where the second ends). As the buffer lays its chunks
    /// out that only happens to runs longer than a full segment over
    /// `push_bytes`'s chunks: while none is queued, every block but the
    /// last holds more than any segment.
    #[inline(always)]
    pub fn lendable(&mut self, offset: usize, len: usize) -> usize {
        if self.owned_chunks == 0 {
            return len;
        }
        let pos = self.front + offset as u64;
        if pos >= self.hint_start && pos + len as u64 <= self.hint_end {
            return len;
        }
        self.lendable_across(pos, len)
    }

    /// `lendable` for bytes not all in the remembered chunk.
    #[inline(never)]
    fn lendable_across(&mut self, pos: u64, len: usize) -> usize {
        if len == 0 || pos >= self.end {
            return 0;
        }
        let i = self.locate(pos);
        let reach = match self.chunks.get(i + 1) {
            Some(next) => next.end,
            None => self.chunks[i].end,
        };
        len.min((reach - pos) as usize)
    }

    /// The `len` bytes starting `offset` bytes after SND.UNA, where they lie:
    /// one slice, or two when they span two chunks (the second then
    /// follows the first). Fewer when the buffer holds fewer, or when they
    /// span more than two chunks (see `lendable`).
    #[inline]
    pub fn slices(&mut self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let pos = self.front + offset as u64;
        let stop = (pos + len as u64).min(self.end);
        if pos >= stop {
            return (&[], &[]);
        }
        let i = self.locate(pos);
        let c = &self.chunks[i];
        let base = c.start();
        let head = &c.bytes()[(pos - base) as usize..(stop.min(c.end) - base) as usize];
        if stop <= c.end {
            return (head, &[]);
        }
        match self.chunks.get(i + 1) {
            Some(next) => {
                let bytes = next.bytes();
                (head, &bytes[..((stop - c.end) as usize).min(bytes.len())])
            }
            None => (head, &[]),
        }
    }

    /// Forgets the first `n` bytes (acknowledged): chunks acknowledged
    /// whole go, and their memory with them.
    #[inline]
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len());
        self.front += n as u64;
        if self.chunks.front().is_some_and(|c| c.end <= self.front) {
            self.drop_acknowledged_chunks();
        }
    }

    #[inline(never)]
    fn drop_acknowledged_chunks(&mut self) {
        while let Some(c) = self.chunks.front() {
            if c.end > self.front {
                break;
            }
            match self.chunks.pop_front().map(|c| c.data) {
                Some(ChunkData::Copied(mut block))
                    if block.capacity() == BLOCK
                        && self.spare.len() * BLOCK < self.capacity.max(BLOCK) =>
                {
                    block.clear();
                    self.spare.push(block);
                }
                Some(ChunkData::Owned(_)) => self.owned_chunks -= 1,
                Some(ChunkData::Copied(_)) | None => {}
            }
            match self.hint.checked_sub(1) {
                Some(h) => self.hint = h,
                // The remembered chunk went.
                None => self.hint_end = 0,
            }
        }
        if self.is_empty() {
            // Nothing queued: give back the spare blocks and the queue.
            self.spare = Vec::new();
            self.chunks = VecDeque::new();
            self.owned_chunks = 0;
            self.hint = 0;
            self.hint_start = 0;
            self.hint_end = 0;
        }
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
            copy::copy(&mut buf[..n], &a[..n]);
        } else {
            copy::copy(&mut buf[..a.len()], a);
            copy::copy(&mut buf[a.len()..n], &b[..n - a.len()]);
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
        copy::extend_ring(&mut self.readable, data);
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
            copy::extend_ring(&mut self.readable, data);
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
                    copy::extend_ring(&mut self.readable, &bytes[skip..]);
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
        assert_eq!(b.len(), 6);
        b.drop_front(4);
        assert_eq!(b.push(b"ghijklmn"), 6, "only the free room is taken");
        let mut out = Vec::new();
        b.copy_out(1, 5, &mut out);
        assert_eq!(out, b"fghij");
    }

    /// Every byte of `b` in order, read through `slices` a segment at a time.
    fn contents(b: &mut SendBuffer, segment: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < b.len() {
            let len = b.lendable(out.len(), segment.min(b.len() - out.len()));
            assert!(len > 0);
            let (x, y) = b.slices(out.len(), len);
            assert_eq!(
                x.len() + y.len(),
                len,
                "two slices reach what lendable said"
            );
            out.extend_from_slice(x);
            out.extend_from_slice(y);
        }
        out
    }

    #[test]
    fn owned_and_copied_bytes_keep_their_order() {
        let mut b = SendBuffer::new(1 << 20);
        let mut want = Vec::new();
        let source = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut at = 0;
        for (i, size) in [5usize, 3000, 1, 70_000, 10, 1500, 20_000, 2, 4000]
            .into_iter()
            .enumerate()
        {
            if i % 2 == 0 {
                assert_eq!(b.push(&source[at..at + size]), size);
            } else {
                let mut chunk = source.slice(at..at + size);
                assert_eq!(b.push_bytes(&mut chunk, 1448), size);
                assert!(chunk.is_empty());
            }
            want.extend_from_slice(&source[at..at + size]);
            at += size;
        }
        assert_eq!(contents(&mut b, 1448), want);
        // Acknowledged a piece at a time, from anywhere in a chunk.
        let mut acked = 0;
        while !b.is_empty() {
            let n = 777.min(b.len());
            b.drop_front(n);
            acked += n;
            assert_eq!(contents(&mut b, 1448), want[acked..]);
        }
    }

    #[test]
    fn short_owned_pieces_are_copied_and_long_ones_kept() {
        let mut b = SendBuffer::new(1 << 20);
        let mut first = Bytes::from(vec![1u8; 5000]);
        b.push_bytes(&mut first, 1448);
        assert_eq!(b.chunk_count(), 1);
        for _ in 0..100 {
            let mut tiny = Bytes::from_static(b"0123456789");
            b.push_bytes(&mut tiny, 1448);
        }
        assert_eq!(b.chunk_count(), 2, "tiny pieces coalesce in one block");
        let mut big = Bytes::from(vec![2u8; 5000]);
        b.push_bytes(&mut big, 1448);
        // The block held 1000 bytes: 448 of the big piece topped it up to a
        // full segment, the rest is kept as it is.
        assert_eq!(b.chunk_count(), 3);
        let (x, y) = b.slices(5000, 1448);
        assert_eq!(
            (x.len(), y.len()),
            (1448, 0),
            "one full segment in the block"
        );
        let mut big = Bytes::from(vec![3u8; 5000]);
        b.push_bytes(&mut big, 1448);
        assert_eq!(b.chunk_count(), 4, "after an owned chunk: kept as it is");
        // A segment starting anywhere spans at most two chunks.
        for at in 0..b.len() {
            let len = 1448.min(b.len() - at);
            assert_eq!(b.lendable(at, len), len, "at {at}");
        }
    }

    #[test]
    fn acknowledged_memory_is_reused_then_given_back() {
        let mut b = SendBuffer::new(200_000);
        let data = vec![3u8; 300_000];
        let mut most = 0;
        for _ in 0..50 {
            b.push(&data);
            most = most.max(b.heap_bytes());
            b.drop_front(b.len() - 1000);
        }
        assert!(
            most <= 200_000 + 3 * BLOCK,
            "blocks are reused, a buffer's worth at most: {most}"
        );
        let mut owned = Bytes::from(vec![4u8; 50_000]);
        b.push_bytes(&mut owned, 1448);
        b.drop_front(b.len());
        assert!(b.is_empty());
        assert_eq!(b.heap_bytes(), 0, "nothing kept once all is acknowledged");
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
