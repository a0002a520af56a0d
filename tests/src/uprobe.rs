//! Helpers for the TLS-library uprobe tests (tests/tests/uprobe_*.rs): an `openssl s_server`
//! in a namespace, a child killed on drop, the kernel's view of loaded programs, and the
//! certificates of a PEM chain file.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::ebpf::sha256;
use crate::netns::{NetnsPair, Side};

/// A child process killed and reaped when dropped (a failing test leaves nothing running).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `openssl s_server <args>` in the server namespace and waits for its `ACCEPT` line
/// (it listens from then on). Returns the process and the rest of its stdout.
pub fn s_server(pair: &NetnsPair, args: &[&str]) -> Result<(Killed, BufReader<ChildStdout>)> {
    let mut server = Killed(
        pair.command(Side::Server, "openssl")
            .arg("s_server")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start openssl s_server")?,
    );
    let mut out = BufReader::new(server.0.stdout.take().expect("piped"));
    let mut line = String::new();
    while !line.contains("ACCEPT") {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("openssl s_server {args:?} ended before listening");
        }
    }
    Ok((server, out))
}

/// How many of the programs `ids` the kernel still has loaded.
pub fn programs_loaded(ids: &[u32]) -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .count()
}

/// The DER certificates of a PEM file, in file order (through `openssl x509`, one per block).
pub fn pem_ders(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).expect("read PEM");
    let end = "-----END CERTIFICATE-----";
    text.split_inclusive(end)
        .filter(|b| b.contains(end))
        .map(|block| {
            let mut child = Command::new("openssl")
                .args(["x509", "-outform", "DER"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("openssl x509");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(block.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "openssl x509 on {}", path.display());
            out.stdout
        })
        .collect()
}

pub fn hashes(ders: &[Vec<u8>]) -> Vec<[u8; 32]> {
    ders.iter().map(|d| sha256(d)).collect()
}

/// Writes the intermediates of `chain_pem` (every block after the leaf) to `out`.
pub fn intermediates(chain_pem: &Path, out: &Path) {
    let text = std::fs::read_to_string(chain_pem).unwrap();
    let begin = "-----BEGIN CERTIFICATE-----";
    let second = text[1..].find(begin).expect("a chain with an intermediate") + 1;
    std::fs::write(out, &text[second..]).unwrap();
}

/// `openssl crl2pkcs7` loading the system CA bundle (~140 certificates) until stopped, at most
/// 50 runs and 30 s; returns the number of runs.
pub fn ca_bundle_noise(stop: Arc<AtomicBool>) -> JoinHandle<u32> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut runs = 0;
        while !stop.load(Ordering::Relaxed) && runs < 50 && start.elapsed().as_secs() < 30 {
            let st = Command::new("openssl")
                .args(["crl2pkcs7", "-nocrl", "-certfile"])
                .arg("/etc/ssl/certs/ca-certificates.crt")
                .stdout(Stdio::null())
                .status()
                .expect("openssl crl2pkcs7");
            assert!(st.success());
            runs += 1;
        }
        runs
    })
}

/// No certificate of `names`' chains in cleartext anywhere in the capture.
pub fn assert_no_cleartext_certificates(pcap: &Path, names: &[&str]) {
    let wire = std::fs::read(pcap).expect("tcpdump output");
    assert!(
        wire.len() > 2_000,
        "the capture holds the handshakes ({} bytes)",
        wire.len()
    );
    for name in names {
        for der in pem_ders(&crate::mta::certs_dir().join(format!("{name}.chain.pem"))) {
            let needle = &der[der.len() - 64..];
            assert!(
                !wire.windows(64).any(|w| w == needle),
                "certificate bytes of {name} in cleartext on the wire"
            );
        }
    }
}
