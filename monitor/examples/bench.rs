//! `cargo xtask bench`: throughput and memory of the offline pipeline on synthetic captures built
//! from a real fixture handshake (pcaps/certreq_client_presents.pcap).
//!
//! Two workloads, each written to a temporary pcap of `--size` MB (default 1000), then read by
//! the same code `mxcert read` runs (FileReader → Pipeline → JSON lines to /dev/null):
//! - handshake-heavy: nothing but SMTP/STARTTLS/TLS 1.2 handshakes with client certificates,
//!   `--concurrent` sessions interleaved (default 1000), each on its own 4-tuple;
//! - payload-heavy: the same sessions followed by 200 full-size encrypted segments each, the
//!   mail-transfer case where a finished flow must cost one lookup.
//!
//! Prints MB/s, sessions/s and the peak RSS (VmHWM) of this process.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustls_pki_types::pem::PemObject;

use mxcert::capture::{FileReader, LinkType};
use mxcert::classify::validate::{validate_chain, TrustStore, Usage};
use mxcert::classify::{Classifier, ClassifyConfig};
use mxcert::session::{Config, Pipeline};
use mxcert::sink::JsonlSink;
use mxcert::x509::Fingerprint;

struct Frame {
    ts: i64,
    data: Vec<u8>,
}

fn main() {
    let mut size_mb = 1000u64;
    let mut concurrent = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => size_mb = args.next().and_then(|v| v.parse().ok()).expect("--size MB"),
            "--concurrent" => {
                concurrent = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrent N")
            }
            other => panic!("unknown argument {other}; use --size MB --concurrent N"),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = load(&root.join("pcaps/certreq_client_presents.pcap"));
    println!(
        "template: {} packets, {} bytes per session",
        template.len(),
        template.iter().map(|f| f.data.len()).sum::<usize>()
    );
    for (label, payload_segments, classify) in [
        ("handshake-heavy", 0usize, false),
        ("handshake+findings", 0, true),
        ("payload-heavy", 200, false),
    ] {
        let path =
            std::env::temp_dir().join(format!("mxcert-bench-{label}-{}.pcap", std::process::id()));
        let sessions = write_capture(
            &path,
            &template,
            size_mb * 1_000_000,
            concurrent,
            payload_segments,
        );
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // Warm the page cache so the figure is mxcert, not the disk.
        std::io::copy(&mut File::open(&path).unwrap(), &mut std::io::sink()).unwrap();
        let t = Instant::now();
        let mut reader = FileReader::open(&path).expect("bench capture opens");
        let mut sink = JsonlSink::create(Path::new("/dev/null")).unwrap();
        let classifier = classify.then(|| {
            let mut trust = TrustStore::mozilla();
            trust
                .add_pem_file(&root.join("pcaps/certs/root-ca.crt"))
                .expect("test root");
            Classifier::new(ClassifyConfig {
                trust,
                ..ClassifyConfig::default()
            })
        });
        let mut p = Pipeline::with_classifier(Config::default(), classifier);
        while let Some(pkt) = reader.next_packet().expect("bench capture reads") {
            p.packet(&pkt, &mut sink).unwrap();
        }
        p.finish(&mut sink).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&path);
        assert_eq!(p.stats.sessions, sessions, "every session recorded");
        println!(
            "{label:16} {:7.1} MB in {:6.2} s = {:7.1} MB/s, {:8.0} sessions/s, {} sessions ({} established), peak RSS {} MiB",
            bytes as f64 / 1e6,
            secs,
            bytes as f64 / 1e6 / secs,
            sessions as f64 / secs,
            p.stats.sessions,
            p.summary.outcomes.get("established").copied().unwrap_or(0),
            peak_rss_kib() / 1024
        );
    }
    validation(&root);
}

/// Chain validation alone: uncached (every call builds and verifies the path) and through the
/// classifier's (chain, usage, day) cache, warm.
fn validation(root: &Path) {
    let pem = std::fs::read_to_string(root.join("pcaps/certs/srv_both.chain.pem")).unwrap();
    let ders: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect();
    let chain: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    let fps: Vec<Fingerprint> = ders.iter().map(|d| Fingerprint::of(d)).collect();
    let mut trust = TrustStore::mozilla();
    trust
        .add_pem_file(&root.join("pcaps/certs/root-ca.crt"))
        .unwrap();
    let at = 1_795_000_000;
    assert!(validate_chain(&trust, &chain, Usage::ServerAuth, at).valid);
    let n = 2_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(validate_chain(&trust, &chain, Usage::ServerAuth, at));
    }
    let cold = n as f64 / t.elapsed().as_secs_f64();
    let mut c = Classifier::new(ClassifyConfig {
        trust,
        ..ClassifyConfig::default()
    });
    c.chain_verdict(&fps, &chain, Usage::ServerAuth, at);
    let n = 1_000_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(c.chain_verdict(&fps, &chain, Usage::ServerAuth, at));
    }
    let warm = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "validation       {cold:9.0} chains/s uncached (2-certificate RSA chain, trust + name-free path), {warm:11.0} chains/s from the warm cache"
    );
}

fn load(path: &Path) -> Vec<Frame> {
    let mut r = FileReader::open(path).expect("template fixture");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        assert_eq!(p.link, LinkType::ETHERNET);
        out.push(Frame {
            ts: p.ts,
            data: p.data.to_vec(),
        });
    }
    out
}

/// Writes interleaved copies of the template session, session `i` on client
/// 198.18.x.y:port, until `target` bytes. Returns the number of sessions written.
fn write_capture(
    path: &PathBuf,
    template: &[Frame],
    target: u64,
    concurrent: usize,
    payload_segments: usize,
) -> u64 {
    let client_ip = [198u8, 18, 0, 2];
    // Per-session packet list: the template, with encrypted segments inserted before the
    // first FIN when asked (after the handshake, as in a mail transfer).
    let fin_at = template
        .iter()
        .position(|f| f.data.len() > 47 && f.data[47] & 0x01 != 0)
        .unwrap_or(template.len());
    let client_data = template
        .iter()
        .rposition(|f| f.data[26..30] == client_ip && f.data.len() > 66)
        .expect("client data packet");
    let mut session: Vec<Vec<u8>> = template[..fin_at].iter().map(|f| f.data.clone()).collect();
    if payload_segments > 0 {
        let t = &template[client_data].data;
        let ihl = usize::from(t[14] & 0x0f) * 4;
        let thl = usize::from(t[14 + ihl + 12] >> 4) * 4;
        let hdr = 14 + ihl + thl;
        let seq0 = u32::from_be_bytes(t[14 + ihl + 4..14 + ihl + 8].try_into().unwrap())
            .wrapping_add((t.len() - hdr) as u32);
        for k in 0..payload_segments {
            let mut f = t[..hdr].to_vec();
            let mut body = vec![0u8; 1448];
            body[..5].copy_from_slice(&[23, 3, 3, 0x05, 0xa3]);
            f.extend_from_slice(&body);
            let total = (ihl + thl + 1448) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            let seq = seq0.wrapping_add((k * 1448) as u32);
            f[14 + ihl + 4..14 + ihl + 8].copy_from_slice(&seq.to_be_bytes());
            session.push(f);
        }
    }
    session.extend(template[fin_at..].iter().map(|f| f.data.clone()));
    let per_session: u64 = session.iter().map(|f| 16 + f.len() as u64).sum();
    let total_sessions = (target / per_session).max(1);

    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    // Classic pcap header, microseconds, Ethernet.
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes()).unwrap();
    w.write_all(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    w.write_all(&262_144u32.to_le_bytes()).unwrap();
    w.write_all(&1u32.to_le_bytes()).unwrap();
    let t0 = template[0].ts;
    let mut written = 0u64;
    let mut frame = Vec::with_capacity(2048);
    let mut start = 0u64;
    while start < total_sessions {
        let batch = (total_sessions - start).min(concurrent as u64);
        // Round-robin: packet j of each session in the batch, then packet j+1, ...
        for (j, pkt) in session.iter().enumerate() {
            for s in start..start + batch {
                frame.clear();
                frame.extend_from_slice(pkt);
                let ip = [
                    198,
                    18 + (s >> 24) as u8 % 2,
                    (s >> 16) as u8,
                    (s >> 8) as u8,
                ];
                let port = 1024 + (s % 60_000) as u16;
                let from_client = pkt[26..30] == client_ip;
                let (ip_off, port_off) = if from_client { (26, 34) } else { (30, 36) };
                frame[ip_off..ip_off + 4].copy_from_slice(&ip);
                frame[port_off..port_off + 2].copy_from_slice(&port.to_be_bytes());
                let ts = t0 + (s as i64) * 1_000_000 + (j as i64) * 1_000;
                let us = ts / 1000;
                w.write_all(&((us / 1_000_000) as u32).to_le_bytes())
                    .unwrap();
                w.write_all(&((us % 1_000_000) as u32).to_le_bytes())
                    .unwrap();
                w.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
                w.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
                w.write_all(&frame).unwrap();
                written += 16 + frame.len() as u64;
            }
        }
        start += batch;
    }
    w.flush().unwrap();
    let _ = written;
    total_sessions
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
