//! Malformed input never panics: truncated files, garbage, handshakes cut anywhere. mxcert
//! reports what it could and exits 0; a file that is not a capture is a clear error, exit 2.

mod common;

use std::io::Write;

use common::{mxcert_read, repo_root};
use mxcert::capture::{FileReader, LinkType, Packet};
use mxcert::session::{Config, Pipeline};
use mxcert::sink::VecSink;

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("pcaps").join(name)).unwrap()
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mxcert-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

#[test]
fn a_file_that_is_not_a_capture_is_a_clear_error_with_exit_2() {
    let p = temp_file("notes.txt", b"<!DOCTYPE html><html>not a capture</html>\n");
    let run = mxcert_read(&[&p], &[]);
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("not a pcap or pcapng capture"),
        "{}",
        run.stderr
    );
    assert!(run.sessions.is_empty());

    let empty = temp_file("empty.pcap", b"");
    let run = mxcert_read(&[&empty], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("empty"), "{}", run.stderr);

    let missing = repo_root().join("pcaps/does-not-exist.pcap");
    let run = mxcert_read(&[&missing], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("does-not-exist.pcap"), "{}", run.stderr);
}

#[test]
fn a_truncated_capture_keeps_what_was_read_and_exits_0() {
    let full = fixture_bytes("certreq_client_presents.pcap");
    let whole = mxcert_read(
        &[&repo_root().join("pcaps/certreq_client_presents.pcap")],
        &[],
    );
    assert_eq!(whole.sessions.len(), 1);
    // Cut inside the last record: every complete packet is still read.
    let cut = temp_file("cut.pcap", &full[..full.len() - 3]);
    let run = mxcert_read(&[&cut], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning"), "{}", run.stderr);
    assert!(run.stderr.contains("truncated"), "{}", run.stderr);
    assert_eq!(run.sessions.len(), 1);
    assert_eq!(
        run.sessions[0]["tls"]["client_chain"],
        whole.sessions[0]["tls"]["client_chain"]
    );
    // And at a spread of offsets, the binary never fails.
    for end in (24..full.len()).step_by(331) {
        let cut = temp_file("cut-n.pcap", &full[..end]);
        let run = mxcert_read(&[&cut], &[]);
        assert_eq!(run.code, 0, "cut at {end}: {}", run.stderr);
    }
}

/// Packets of a fixture as (ts, link, bytes).
fn packets(name: &str) -> Vec<(i64, LinkType, Vec<u8>)> {
    let mut r = FileReader::open(&repo_root().join("pcaps").join(name)).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        out.push((p.ts, p.link, p.data.to_vec()));
    }
    out
}

fn run_packets(pkts: &[(i64, LinkType, Vec<u8>)]) -> (VecSink, Pipeline) {
    let mut p = Pipeline::new(Config::default());
    let mut sink = VecSink::default();
    for (ts, link, data) in pkts {
        let pkt = Packet {
            ts: *ts,
            link: *link,
            data,
            orig_len: data.len() as u32,
        };
        p.packet(&pkt, &mut sink).unwrap();
    }
    p.finish(&mut sink).unwrap();
    (sink, p)
}

#[test]
fn a_handshake_cut_anywhere_yields_a_session_and_never_panics() {
    let pkts = packets("certreq_client_presents.pcap");
    let (full, _) = run_packets(&pkts);
    assert_eq!(full.sessions[0].outcome.as_str(), "established");
    for n in 1..pkts.len() {
        let (sink, _) = run_packets(&pkts[..n]);
        assert!(sink.sessions.len() <= 1, "cut after {n} packets");
        // Also cut the last packet's bytes in half: a Certificate message cut mid-way.
        let mut cut = pkts[..n].to_vec();
        let last = cut.last_mut().unwrap();
        let half = last.2.len() / 2;
        last.2.truncate(half.max(1));
        let _ = run_packets(&cut);
    }
}

#[test]
fn garbage_in_every_byte_never_panics_and_is_counted() {
    // Deterministic mutations: every packet gets bytes overwritten at positions spread over
    // headers and payload, with values that hit lengths, flags and TLS framing.
    for name in ["certreq_client_presents.pcap", "multi_session.pcap"] {
        let pkts = packets(name);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..200 {
            let mut m = pkts.clone();
            for (_, _, data) in m.iter_mut() {
                for _ in 0..1 + round % 4 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if data.is_empty() {
                        continue;
                    }
                    let at = (state % data.len() as u64) as usize;
                    data[at] = (state >> 32) as u8;
                }
            }
            let (_, p) = run_packets(&m);
            assert_eq!(p.stats.packets, pkts.len() as u64);
        }
    }
}

#[test]
fn pure_noise_on_smtp_ports_is_data_not_an_error() {
    // A flow on port 25 carrying random bytes: recorded, counted, no panic.
    let pkts = packets("starttls_25_tls12.pcap");
    let mut m = pkts.clone();
    let mut x = 1u32;
    for (_, _, data) in m.iter_mut().skip(3) {
        // Keep Ethernet/IP/TCP headers (66 bytes on these captures), scramble the payload.
        for b in data.iter_mut().skip(66) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
    }
    let (sink, _) = run_packets(&m);
    assert_eq!(sink.sessions.len(), 1);
    assert_ne!(sink.sessions[0].outcome.as_str(), "established");
}
