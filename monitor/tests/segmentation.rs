//! Segmentation independence: any re-segmentation of a real handshake's TCP streams — 1-byte
//! segments, duplicates, segments reordered — yields the same records as the capture itself.

mod common;

use std::net::IpAddr;
use std::path::Path;

use mxcert::capture::{decode, DecodeOutcome, FileReader, TcpFlags, TcpSegment};
use mxcert::session::{Config, Pipeline};
use mxcert::sink::VecSink;
use proptest::prelude::*;
use serde_json::Value;

/// An owned copy of a captured segment.
#[derive(Clone, Debug)]
struct Seg {
    ts: i64,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

fn load(path: &Path) -> Vec<Seg> {
    let mut r = FileReader::open(path).expect("fixture opens");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().expect("fixture reads") {
        if let DecodeOutcome::Tcp(s) = decode(p.link, p.data) {
            out.push(Seg {
                ts: p.ts,
                src: s.src,
                dst: s.dst,
                sport: s.sport,
                dport: s.dport,
                seq: s.seq,
                ack: s.ack,
                flags: s.flags.0,
                payload: s.payload.to_vec(),
            });
        }
    }
    out
}

/// Records of a run, without the per-packet counters (duplicates change those on purpose).
fn records(segs: &[Seg]) -> Vec<Value> {
    let mut p = Pipeline::new(Config::default());
    let mut sink = VecSink::default();
    for s in segs {
        let seg = TcpSegment {
            src: s.src,
            dst: s.dst,
            sport: s.sport,
            dport: s.dport,
            seq: s.seq,
            ack: s.ack,
            flags: TcpFlags(s.flags),
            payload: &s.payload,
            truncated: false,
        };
        p.segment(s.ts, &seg, &mut sink).unwrap();
    }
    p.finish(&mut sink).unwrap();
    let mut out: Vec<Value> = sink
        .certificates
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    for s in &sink.sessions {
        let mut v = serde_json::to_value(s).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("packets");
        o.remove("bytes");
        out.push(v);
    }
    out
}

/// Small deterministic generator (xorshift64*) driven by proptest's seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Splits every payload into random pieces (max_piece = 1 gives 1-byte segments), shuffles
/// the pieces of each packet, duplicates some, and sometimes swaps a packet's pieces with the
/// next packet's of the same direction. Control flags stay on the packet's first piece.
fn resegment(segs: &[Seg], seed: u64, max_piece: usize, dup_per_mille: u64) -> Vec<Seg> {
    let mut rng = Rng(seed | 1);
    let mut groups: Vec<Vec<Seg>> = Vec::new();
    for s in segs {
        if s.payload.is_empty() {
            groups.push(vec![s.clone()]);
            continue;
        }
        let mut pieces = Vec::new();
        let mut off = 0;
        while off < s.payload.len() {
            let n = 1 + rng.below(max_piece as u64) as usize;
            let end = (off + n).min(s.payload.len());
            let mut p = s.clone();
            p.seq = s.seq.wrapping_add(off as u32);
            p.payload = s.payload[off..end].to_vec();
            // SYN/FIN/RST belong to the segment's edges; keep ACK/PSH on every piece.
            p.flags = s.flags & (TcpFlags::ACK | TcpFlags::PSH);
            if off == 0 {
                p.flags |= s.flags & TcpFlags::SYN;
            }
            if end == s.payload.len() {
                p.flags |= s.flags & (TcpFlags::FIN | TcpFlags::RST);
            }
            pieces.push(p);
            off = end;
        }
        for i in (1..pieces.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            pieces.swap(i, j);
        }
        let mut with_dups = Vec::new();
        for p in pieces {
            if rng.below(1000) < dup_per_mille {
                with_dups.push(p.clone());
            }
            with_dups.push(p);
        }
        groups.push(with_dups);
    }
    // Swap neighbouring data groups of the same direction now and then (reordering across
    // packets without breaking the request/reply order between directions).
    for i in 0..groups.len().saturating_sub(1) {
        let same_dir = groups[i][0].src == groups[i + 1][0].src
            && groups[i][0].sport == groups[i + 1][0].sport;
        let data = !groups[i][0].payload.is_empty() && !groups[i + 1][0].payload.is_empty();
        let control = |g: &Vec<Seg>| {
            g.iter()
                .any(|s| s.flags & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0)
        };
        if same_dir && data && !control(&groups[i]) && !control(&groups[i + 1]) && rng.below(4) == 0
        {
            groups.swap(i, i + 1);
        }
    }
    groups.into_iter().flatten().collect()
}

const FIXTURES: &[&str] = &[
    "certreq_client_presents.pcap",
    "starttls_25_tls12.pcap",
    "implicit_465_tls12.pcap",
    "starttls_25_tls13.pcap",
    "multi_session.pcap",
    "alert_unknown_ca.pcap",
    "postfix_to_postfix_clientcert.pcap",
    "starttls_25_tls12_offload.pcap",
];

fn fixture(name: &str) -> Vec<Seg> {
    load(&common::repo_root().join("pcaps").join(name))
}

#[test]
fn one_byte_segments_with_duplicates_give_identical_records() {
    for name in FIXTURES {
        let segs = fixture(name);
        let want = records(&segs);
        assert!(!want.is_empty(), "{name}: no records at all");
        let got = records(&resegment(&segs, 7, 1, 300));
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: 1-byte segments: record count"
        );
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{name}: 1-byte segments");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_resegmentation_gives_identical_records(
        seed in any::<u64>(),
        max_piece in prop_oneof![Just(1usize), 2usize..16, 16usize..1500],
        dups in 0u64..500,
        which in 0usize..FIXTURES.len(),
    ) {
        let segs = fixture(FIXTURES[which]);
        let want = records(&segs);
        let got = records(&resegment(&segs, seed, max_piece, dups));
        prop_assert_eq!(got, want);
    }
}
