//! Stage 2: TCP reassembly, one [`Stream`] per direction of a flow.
//!
//! mxcert only needs the first few kilobytes of each direction (SMTP greeting to the end of the
//! TLS handshake), so the reassembler is built for that: in-order data is handed to the consumer
//! straight from the packet (no copy), out-of-order segments wait in a small bounded buffer, and
//! everything is capped. Overlaps are resolved first-wins, like most IDS stream engines
//! (Suricata's default "bsd" policy for the common case), and conflicting overlaps are counted
//! because they are the classic evasion trick (Ptacek & Newsham, 1998).

/// Bytes a direction may hold out of order before the gap is declared lost.
pub const MAX_OOO_BYTES: usize = 64 * 1024;
/// Separate out-of-order islands a direction may hold (adjacent segments are merged, so this
/// bounds the insertion cost of a peer sending tiny segments in a scrambled order, not the
/// number of segments).
pub const MAX_OOO_SEGMENTS: usize = 2048;
/// Delivered bytes kept to compare retransmissions against (one MSS-sized segment plus slack).
pub const TAIL_BYTES: usize = 2048;

/// `a < b` in 32-bit sequence space (RFC 793 §3.3, RFC 1982 serial arithmetic).
#[inline]
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Signed distance `a - b` in sequence space.
#[inline]
pub fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Counters a stream keeps; summed into the run's summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// Segments whose bytes were all delivered already (pure retransmissions).
    pub retransmissions: u64,
    /// Overlapping bytes that differed from what was kept (first copy wins).
    pub conflicting_overlaps: u64,
    /// Times the out-of-order bound was hit and a gap was skipped.
    pub ooo_overflows: u64,
    /// Gaps skipped (data never captured).
    pub gaps: u64,
}

/// What the consumer is told besides bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'a> {
    Data(&'a [u8]),
    /// Bytes between the last delivered byte and the next are missing (lost or never captured).
    Gap,
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number of the next byte to deliver; `None` until the first SYN or data segment.
    next: Option<u32>,
    /// Out-of-order segments, sorted by sequence number, non-overlapping.
    ooo: Vec<(u32, Vec<u8>)>,
    ooo_bytes: usize,
    /// Last delivered bytes, to detect conflicting retransmissions.
    tail: Vec<u8>,
    /// Sequence number of `tail[0]`.
    tail_seq: u32,
    pub syn_seen: bool,
    /// Sequence number just past the FIN (the FIN occupies one sequence number).
    fin_at: Option<u32>,
    pub stats: StreamStats,
    /// Bytes delivered so far (for the per-flow cap).
    pub delivered: u64,
}

impl Stream {
    /// Registers a SYN: data starts at `isn + 1`.
    pub fn syn(&mut self, isn: u32) {
        self.syn_seen = true;
        if self.next.is_none() {
            self.next = Some(isn.wrapping_add(1));
            self.tail_seq = isn.wrapping_add(1);
        }
    }

    /// Registers a FIN carried by a segment of `len` payload bytes at `seq`.
    pub fn fin(&mut self, seq: u32, len: usize) {
        self.fin_at = Some(seq.wrapping_add(len as u32));
        if self.next.is_none() {
            self.next = Some(seq);
        }
    }

    /// The FIN was seen and every byte before it was delivered: this direction is finished.
    /// (A FIN that overtakes data still in flight does not end the direction early.)
    pub fn fin_reached(&self) -> bool {
        match (self.fin_at, self.next) {
            (Some(f), Some(n)) => !seq_lt(n, f),
            _ => false,
        }
    }

    /// Whether any byte position is known for this direction.
    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Takes one segment's payload and hands in-order data to `deliver`. The first segment of a
    /// direction whose SYN was not captured starts the stream where it is (midstream pickup).
    pub fn segment(&mut self, seq: u32, payload: &[u8], deliver: &mut dyn FnMut(Delivery<'_>)) {
        if payload.is_empty() {
            return;
        }
        let next = match self.next {
            Some(n) => n,
            None => {
                self.tail_seq = seq;
                seq
            }
        };
        let d = seq_diff(seq, next);
        if d <= 0 {
            // Starts at or before the next byte: trim what was delivered already.
            let already = (-d) as usize;
            if already >= payload.len() {
                self.stats.retransmissions += 1;
                self.check_overlap(seq, payload);
                self.next = Some(next);
                return;
            }
            if already > 0 {
                self.check_overlap(seq, &payload[..already]);
            }
            self.emit(&payload[already..], next, deliver);
            self.drain_ooo(deliver);
        } else {
            self.next = Some(next);
            self.buffer_ooo(seq, payload, deliver);
        }
    }

    /// Gives up on a gap: delivers a [`Delivery::Gap`] and jumps to the first buffered segment.
    /// Called when the flow ends with data still waiting, or when the out-of-order bound is hit.
    pub fn skip_gap(&mut self, deliver: &mut dyn FnMut(Delivery<'_>)) {
        if self.ooo.is_empty() {
            return;
        }
        let (seq, _) = &self.ooo[0];
        self.next = Some(*seq);
        self.tail.clear();
        self.tail_seq = *seq;
        self.stats.gaps += 1;
        deliver(Delivery::Gap);
        self.drain_ooo(deliver);
    }

    /// Releases buffers once the consumer needs no more data (handshake over).
    pub fn release(&mut self) {
        self.ooo = Vec::new();
        self.ooo_bytes = 0;
        self.tail = Vec::new();
    }

    pub fn has_pending(&self) -> bool {
        !self.ooo.is_empty()
    }

    fn emit(&mut self, data: &[u8], at: u32, deliver: &mut dyn FnMut(Delivery<'_>)) {
        self.next = Some(at.wrapping_add(data.len() as u32));
        self.delivered += data.len() as u64;
        self.remember(data);
        deliver(Delivery::Data(data));
    }

    fn remember(&mut self, data: &[u8]) {
        // Keep the last TAIL_BYTES delivered bytes; compact only when twice that is held so the
        // copy cost stays amortised O(1) per byte.
        self.tail.extend_from_slice(data);
        if self.tail.len() > 2 * TAIL_BYTES {
            let cut = self.tail.len() - TAIL_BYTES;
            self.tail.drain(..cut);
            self.tail_seq = self.tail_seq.wrapping_add(cut as u32);
        }
    }

    /// Compares bytes at `seq` (all before `next`) with the kept tail; counts a conflict once per
    /// segment when they differ.
    fn check_overlap(&mut self, seq: u32, data: &[u8]) {
        let off = seq_diff(seq, self.tail_seq);
        let (data, off) = if off < 0 {
            let skip = (-off) as usize;
            if skip >= data.len() {
                return;
            }
            (&data[skip..], 0usize)
        } else {
            (data, off as usize)
        };
        if off >= self.tail.len() {
            return;
        }
        let n = data.len().min(self.tail.len() - off);
        if self.tail[off..off + n] != data[..n] {
            self.stats.conflicting_overlaps += 1;
        }
    }

    fn buffer_ooo(&mut self, seq: u32, payload: &[u8], deliver: &mut dyn FnMut(Delivery<'_>)) {
        // Insert the parts of [seq, seq+len) not already covered by buffered segments (first
        // wins), comparing the covered parts for conflicts.
        let mut start = seq;
        let mut data = payload;
        let mut i = 0;
        while !data.is_empty() && i <= self.ooo.len() {
            let end = start.wrapping_add(data.len() as u32);
            if i == self.ooo.len() {
                self.insert_ooo(i, start, data);
                break;
            }
            let (s, ref buf) = self.ooo[i];
            let e = s.wrapping_add(buf.len() as u32);
            if !seq_lt(s, end) {
                // Entirely before segment i.
                self.insert_ooo(i, start, data);
                break;
            }
            if !seq_lt(start, e) {
                i += 1;
                continue;
            }
            // Overlaps segment i.
            if seq_lt(start, s) {
                let head = seq_diff(s, start) as usize;
                self.insert_ooo(i, start, &data[..head]);
                i += 1;
                data = &data[head..];
                start = s;
                continue;
            }
            let off = seq_diff(start, s) as usize;
            let (_, ref buf) = self.ooo[i];
            let n = (buf.len() - off).min(data.len());
            if buf[off..off + n] != data[..n] {
                self.stats.conflicting_overlaps += 1;
            }
            data = &data[n..];
            start = start.wrapping_add(n as u32);
            i += 1;
        }
        if self.ooo.len() > MAX_OOO_SEGMENTS || self.ooo_bytes > MAX_OOO_BYTES {
            self.stats.ooo_overflows += 1;
            self.skip_gap(deliver);
        }
    }

    fn insert_ooo(&mut self, at: usize, seq: u32, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.ooo_bytes += data.len();
        let end = seq.wrapping_add(data.len() as u32);
        // Merge with the island before and/or after when contiguous, so in-order runs of
        // small segments stay one buffer.
        let joins_prev = at > 0 && {
            let (ps, ref pb) = self.ooo[at - 1];
            ps.wrapping_add(pb.len() as u32) == seq
        };
        let joins_next = at < self.ooo.len() && self.ooo[at].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                let (_, next) = self.ooo.remove(at);
                let prev = &mut self.ooo[at - 1].1;
                prev.extend_from_slice(data);
                prev.extend_from_slice(&next);
            }
            (true, false) => self.ooo[at - 1].1.extend_from_slice(data),
            (false, true) => {
                let next = &mut self.ooo[at];
                let mut buf = Vec::with_capacity(data.len() + next.1.len());
                buf.extend_from_slice(data);
                buf.extend_from_slice(&next.1);
                *next = (seq, buf);
            }
            (false, false) => self.ooo.insert(at, (seq, data.to_vec())),
        }
    }

    fn drain_ooo(&mut self, deliver: &mut dyn FnMut(Delivery<'_>)) {
        while let Some(&(s, _)) = self.ooo.first() {
            let next = self.next.unwrap_or(s);
            let d = seq_diff(s, next);
            if d > 0 {
                break;
            }
            let (s, buf) = self.ooo.remove(0);
            self.ooo_bytes -= buf.len();
            let already = (-d) as usize;
            if already >= buf.len() {
                self.check_overlap(s, &buf);
                continue;
            }
            if already > 0 {
                self.check_overlap(s, &buf[..already]);
            }
            self.emit(&buf[already..], next, deliver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(stream: &mut Stream, segs: &[(u32, &[u8])]) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut gaps = 0;
        for (seq, data) in segs {
            stream.segment(*seq, data, &mut |d| match d {
                Delivery::Data(b) => out.extend_from_slice(b),
                Delivery::Gap => gaps += 1,
            });
        }
        (out, gaps)
    }

    #[test]
    fn in_order_after_syn() {
        let mut s = Stream::default();
        s.syn(99);
        let (out, gaps) = collect(&mut s, &[(100, b"hello "), (106, b"world")]);
        assert_eq!(out, b"hello world");
        assert_eq!(gaps, 0);
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let mut s = Stream::default();
        s.syn(0);
        let (out, _) = collect(
            &mut s,
            &[(7, b"world"), (1, b"hello "), (7, b"world"), (1, b"hel")],
        );
        assert_eq!(out, b"hello world");
        assert_eq!(s.stats.retransmissions, 2);
        assert_eq!(s.stats.conflicting_overlaps, 0);
    }

    #[test]
    fn sequence_wraparound() {
        let mut s = Stream::default();
        s.syn(u32::MAX - 2);
        // Data starts at u32::MAX - 1 and wraps through 0.
        let (out, _) = collect(&mut s, &[(0, b"CDEF"), (u32::MAX - 1, b"AB"), (4, b"G")]);
        assert_eq!(out, b"ABCDEFG");
    }

    #[test]
    fn conflicting_overlap_first_wins() {
        let mut s = Stream::default();
        s.syn(0);
        let (out, _) = collect(&mut s, &[(1, b"abcdef"), (3, b"XY")]);
        assert_eq!(out, b"abcdef");
        assert_eq!(s.stats.conflicting_overlaps, 1);
        // Conflict among out-of-order segments too.
        let mut s = Stream::default();
        s.syn(0);
        let (out, _) = collect(&mut s, &[(5, b"efgh"), (6, b"ZZ"), (1, b"abcd")]);
        assert_eq!(out, b"abcdefgh");
        assert_eq!(s.stats.conflicting_overlaps, 1);
    }

    #[test]
    fn partial_overlap_extends() {
        let mut s = Stream::default();
        s.syn(0);
        let (out, _) = collect(
            &mut s,
            &[(1, b"abc"), (2, b"bcdef"), (9, b"i"), (5, b"efgh")],
        );
        assert_eq!(out, b"abcdefghi");
    }

    #[test]
    fn midstream_starts_at_first_segment() {
        let mut s = Stream::default();
        let (out, _) = collect(&mut s, &[(5000, b"xyz"), (5003, b"!")]);
        assert_eq!(out, b"xyz!");
        assert!(!s.syn_seen);
    }

    #[test]
    fn bounded_out_of_order_skips_gap() {
        let mut s = Stream::default();
        s.syn(0);
        let big = vec![7u8; 1000];
        let mut segs = Vec::new();
        // Byte 1 never arrives; 70 KB waits behind it (contiguous: one merged island).
        for i in 0..70u32 {
            segs.push((2 + i * 1000, big.as_slice()));
        }
        let (out, gaps) = collect(&mut s, &segs);
        assert_eq!(gaps, 1);
        assert_eq!(s.stats.ooo_overflows, 1);
        assert!(out.len() >= 64 * 1000);
        assert!(s.ooo_bytes <= MAX_OOO_BYTES);
    }

    #[test]
    fn scrambled_tiny_segments_merge_and_deliver_everything() {
        let mut s = Stream::default();
        s.syn(0);
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        // Every odd byte first, then every even byte: 1500 islands at the peak.
        let mut segs: Vec<(u32, &[u8])> = Vec::new();
        for i in (1..data.len()).step_by(2) {
            segs.push((1 + i as u32, &data[i..i + 1]));
        }
        for i in (0..data.len()).step_by(2) {
            segs.push((1 + i as u32, &data[i..i + 1]));
        }
        let (out, gaps) = collect(&mut s, &segs);
        assert_eq!(gaps, 0);
        assert_eq!(out, data);
        assert!(s.ooo.is_empty());
    }

    #[test]
    fn skip_gap_at_end() {
        let mut s = Stream::default();
        s.syn(0);
        let (out, _) = collect(&mut s, &[(1, b"ab"), (10, b"zz")]);
        assert_eq!(out, b"ab");
        let mut rest = Vec::new();
        let mut gaps = 0;
        s.skip_gap(&mut |d| match d {
            Delivery::Data(b) => rest.extend_from_slice(b),
            Delivery::Gap => gaps += 1,
        });
        assert_eq!(rest, b"zz");
        assert_eq!(gaps, 1);
    }
}
