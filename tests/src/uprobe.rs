//! Helpers for the TLS-library uprobe tests (tests/tests/uprobe_*.rs): an `openssl s_server`
//! in a namespace, a child killed on drop, and the kernel's view of loaded programs.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{bail, Context, Result};

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
    ders.iter().map(|d| crate::ebpf::sha256(d)).collect()
}

/// Writes the intermediates of `chain_pem` (every block after the leaf) to `out`.
pub fn intermediates(chain_pem: &Path, out: &Path) {
    let text = std::fs::read_to_string(chain_pem).unwrap();
    let begin = "-----BEGIN CERTIFICATE-----";
    let second = text[1..].find(begin).expect("a chain with an intermediate") + 1;
    std::fs::write(out, &text[second..]).unwrap();
}
