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
use std::path::Path;
use std::time::Instant;

use rustls_pki_types::pem::PemObject;

use mxcert::capture::synth::Synth;
use mxcert::capture::FileReader;
use mxcert::classify::validate::{validate_chain, TrustStore, Usage};
use mxcert::classify::{Classifier, ClassifyConfig};
use mxcert::session::{Config, Pipeline};
use mxcert::sink::JsonlSink;
use mxcert::x509::Fingerprint;

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
    let template = root.join("pcaps/certreq_client_presents.pcap");
    let t = Synth::from_fixture(&template, 0).expect("template fixture");
    println!(
        "template: {} packets, {} bytes per session",
        t.packets_per_session(),
        t.bytes_per_session()
    );
    for (label, payload_segments, classify) in [
        ("handshake-heavy", 0usize, false),
        ("handshake+findings", 0, true),
        ("payload-heavy", 200, false),
    ] {
        let path =
            std::env::temp_dir().join(format!("mxcert-bench-{label}-{}.pcap", std::process::id()));
        let synth = Synth::from_fixture(&template, payload_segments).expect("template fixture");
        let sessions = (size_mb * 1_000_000 / synth.bytes_per_session()).max(1);
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).unwrap());
        Synth::write_header(&mut w).unwrap();
        synth
            .write_sessions(&mut w, 0, sessions, concurrent)
            .unwrap();
        w.flush().unwrap();
        drop(w);
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
