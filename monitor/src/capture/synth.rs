//! Synthetic captures for benchmarks and load tests: copies of one real fixture session (an
//! Ethernet/IPv4 pcap), each on its own 4-tuple (client 198.18-19.x.y, port 1024 + i % 60000),
//! written interleaved `concurrent` at a time, optionally with encrypted payload segments after
//! the handshake. Session `i` is the same bytes whoever writes it, so a capture written in
//! chunks (sessions `a..b`, then `b..c`) holds the same sessions as one written at once.

use std::io::{self, Write};
use std::path::Path;

use super::{CaptureError, FileReader, LinkType, Nanos};

/// The fixture's client address, replaced per session.
const TEMPLATE_CLIENT: [u8; 4] = [198, 18, 0, 2];

/// One session's packets, ready to be replicated.
pub struct Synth {
    packets: Vec<Vec<u8>>,
    t0: Nanos,
}

impl Synth {
    /// Loads an Ethernet fixture of one session (client 198.18.0.2) and inserts
    /// `payload_segments` full-size encrypted segments from the client before its first FIN (a
    /// mail transfer after the handshake).
    pub fn from_fixture(path: &Path, payload_segments: usize) -> Result<Synth, CaptureError> {
        let mut r = FileReader::open(path)?;
        let mut frames: Vec<(Nanos, Vec<u8>)> = Vec::new();
        let mut t0 = None;
        while let Some(p) = r.next_packet()? {
            if p.link != LinkType::ETHERNET {
                continue;
            }
            t0.get_or_insert(p.ts);
            frames.push((p.ts, p.data.to_vec()));
        }
        let is_ipv4_tcp = |f: &[u8]| f.len() > 54 && f[12..14] == [0x08, 0x00] && f[23] == 6;
        frames.retain(|(_, f)| is_ipv4_tcp(f));
        let fin_at = frames
            .iter()
            .position(|(_, f)| f[47] & 0x01 != 0)
            .unwrap_or(frames.len());
        let mut packets: Vec<Vec<u8>> = frames[..fin_at].iter().map(|f| f.1.clone()).collect();
        if payload_segments > 0 {
            if let Some(i) = frames
                .iter()
                .rposition(|(_, f)| f[26..30] == TEMPLATE_CLIENT && f.len() > 66)
            {
                let t = &frames[i].1;
                let ihl = usize::from(t[14] & 0x0f) * 4;
                let thl = usize::from(t[14 + ihl + 12] >> 4) * 4;
                let hdr = 14 + ihl + thl;
                let seq0 = u32::from_be_bytes([
                    t[14 + ihl + 4],
                    t[14 + ihl + 5],
                    t[14 + ihl + 6],
                    t[14 + ihl + 7],
                ])
                .wrapping_add((t.len() - hdr) as u32);
                for k in 0..payload_segments {
                    let mut f = t[..hdr].to_vec();
                    let mut body = vec![0u8; 1448];
                    // An application_data record header (RFC 5246 §6.2.1): type 23, TLS 1.2.
                    body[..5].copy_from_slice(&[23, 3, 3, 0x05, 0xa3]);
                    f.extend_from_slice(&body);
                    let total = (ihl + thl + 1448) as u16;
                    f[16..18].copy_from_slice(&total.to_be_bytes());
                    let seq = seq0.wrapping_add((k * 1448) as u32);
                    f[14 + ihl + 4..14 + ihl + 8].copy_from_slice(&seq.to_be_bytes());
                    packets.push(f);
                }
            }
        }
        packets.extend(frames[fin_at..].iter().map(|f| f.1.clone()));
        Ok(Synth {
            packets,
            t0: t0.unwrap_or(0),
        })
    }

    pub fn packets_per_session(&self) -> usize {
        self.packets.len()
    }

    /// Bytes one session adds to a pcap (record headers included).
    pub fn bytes_per_session(&self) -> u64 {
        self.packets.iter().map(|f| 16 + f.len() as u64).sum()
    }

    /// Classic pcap header: microseconds, Ethernet, snaplen 262144.
    pub fn write_header(w: &mut impl Write) -> io::Result<()> {
        w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        w.write_all(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0])?;
        w.write_all(&262_144u32.to_le_bytes())?;
        w.write_all(&1u32.to_le_bytes())
    }

    /// Writes sessions `start..start + count`, `concurrent` at a time round-robin (packet j of
    /// each session of the group, then packet j+1, ...). Session `s` starts `s` ms after the
    /// template. Returns the bytes written.
    pub fn write_sessions(
        &self,
        w: &mut impl Write,
        start: u64,
        count: u64,
        concurrent: usize,
    ) -> io::Result<u64> {
        let mut written = 0u64;
        let mut frame = Vec::with_capacity(2048);
        let end = start + count;
        let mut first = start;
        while first < end {
            let group = (end - first).min(concurrent.max(1) as u64);
            for (j, pkt) in self.packets.iter().enumerate() {
                for s in first..first + group {
                    frame.clear();
                    frame.extend_from_slice(pkt);
                    let ip = [
                        198,
                        18 + (s >> 24) as u8 % 2,
                        (s >> 16) as u8,
                        (s >> 8) as u8,
                    ];
                    let port = 1024 + (s % 60_000) as u16;
                    let from_client = pkt[26..30] == TEMPLATE_CLIENT;
                    let (ip_off, port_off) = if from_client { (26, 34) } else { (30, 36) };
                    frame[ip_off..ip_off + 4].copy_from_slice(&ip);
                    frame[port_off..port_off + 2].copy_from_slice(&port.to_be_bytes());
                    let ts = self.t0 + (s as i64) * 1_000_000 + (j as i64) * 1_000;
                    let us = ts / 1000;
                    w.write_all(&((us / 1_000_000) as u32).to_le_bytes())?;
                    w.write_all(&((us % 1_000_000) as u32).to_le_bytes())?;
                    w.write_all(&(frame.len() as u32).to_le_bytes())?;
                    w.write_all(&(frame.len() as u32).to_le_bytes())?;
                    w.write_all(&frame)?;
                    written += 16 + frame.len() as u64;
                }
            }
            first += group;
        }
        Ok(written)
    }
}
