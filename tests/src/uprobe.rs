//! Helpers for the TLS-library uprobe tests (tests/tests/uprobe_*.rs): an `openssl s_server`
//! in a namespace, a child killed on drop, the kernel's view of loaded programs, and the
//! fixture chains as DER.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mxcert::capture::tlslib::{PeerChain, TlsProbes};

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
    s_server_as(pair, "openssl", args)
}

/// [`s_server`] run through `program` (a copy of the openssl binary under another name, to
/// look like another process to the probes' allow-list).
pub fn s_server_as(
    pair: &NetnsPair,
    program: &str,
    args: &[&str],
) -> Result<(Killed, BufReader<ChildStdout>)> {
    s_server_in(pair.command(Side::Server, program), args)
}

/// [`s_server`] through a prepared command that runs the openssl binary with the arguments
/// appended to it (e.g. behind `unshare` in a mount namespace of its own).
pub fn s_server_in(mut cmd: Command, args: &[&str]) -> Result<(Killed, BufReader<ChildStdout>)> {
    let mut server = Killed(
        cmd.arg("s_server")
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

/// Starts the probe holder `bin` (the `tls-hold` binary: `env!("CARGO_BIN_EXE_tls-hold")`)
/// with the allow-list `comms` and waits for its `ready` line. Returns it, the number of
/// library files it attached and its program ids.
pub fn tls_hold(bin: &str, comms: &[&str]) -> Result<(Killed, u32, Vec<u32>)> {
    let mut h = Killed(
        std::process::Command::new(bin)
            .args(comms)
            .stdout(Stdio::piped())
            .spawn()
            .context("start tls-hold")?,
    );
    let mut line = String::new();
    BufReader::new(h.0.stdout.take().context("stdout")?).read_line(&mut line)?;
    let fields: Vec<u32> = line
        .strip_prefix("ready ")
        .with_context(|| format!("tls-hold said {line:?}"))?
        .split_whitespace()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let Some((&files, ids)) = fields.split_first() else {
        bail!("tls-hold said {line:?}");
    };
    Ok((h, files, ids.to_vec()))
}

/// How many of the programs `ids` the kernel still has loaded.
pub fn programs_loaded(ids: &[u32]) -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .count()
}

/// The DER certificates of a PEM file, in file order (RFC 7468 blocks, base64 decoded here:
/// a CA bundle holds ~140, too many to run a tool on each).
pub fn pem_ders(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(b) = rest.find(begin) {
        let after = &rest[b + begin.len()..];
        let Some(e) = after.find(end) else {
            bail!("{}: a certificate block without its end", path.display());
        };
        out.push(base64(&after[..e]).with_context(|| format!("{}", path.display()))?);
        rest = &after[e + end.len()..];
    }
    Ok(out)
}

/// Standard base64 (RFC 4648 §4), whitespace ignored.
fn base64(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// SHA-256 of each DER certificate, in order.
pub fn der_hashes(ders: &[Vec<u8>]) -> Vec<[u8; 32]> {
    ders.iter().map(|d| crate::ebpf::sha256(d)).collect()
}

/// Writes the intermediates of `chain_pem` (every block after the leaf) to `out`.
pub fn write_intermediates(chain_pem: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(chain_pem)
        .with_context(|| format!("reading {}", chain_pem.display()))?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let Some(second) = text.get(1..).and_then(|t| t.find(begin)) else {
        bail!("{} holds no intermediate", chain_pem.display());
    };
    std::fs::write(out, &text[second + 1..]).with_context(|| format!("writing {}", out.display()))
}

/// [`pem_ders`] of a fixture chain that must parse (tests only).
pub fn chain_ders(path: &Path) -> Vec<Vec<u8>> {
    pem_ders(path).expect("fixture chain")
}

/// [`write_intermediates`] of a fixture chain that must work (tests only).
pub fn intermediates(chain_pem: &Path, out: &Path) {
    write_intermediates(chain_pem, out).expect("intermediates of a fixture chain");
}

/// `openssl crl2pkcs7` loading the system CA bundle (~140 certificates) until stopped, one run
/// every ~100 ms (a run takes ~30 ms: unpaced, the bound was reached before an MTA's first
/// session), at most 300 runs and 30 s; returns the number of runs.
pub fn ca_bundle_noise(stop: Arc<AtomicBool>) -> JoinHandle<u32> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut runs = 0;
        while !stop.load(Ordering::Relaxed) && runs < 300 && start.elapsed().as_secs() < 30 {
            if runs > 0 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
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
        for der in chain_ders(&crate::mta::certs_dir().join(format!("{name}.chain.pem"))) {
            let needle = &der[der.len() - 64..];
            assert!(
                !wire.windows(64).any(|w| w == needle),
                "certificate bytes of {name} in cleartext on the wire"
            );
        }
    }
}

/// A fresh scratch directory `mxcert-<tag>-<pid>` under the temp dir.
pub fn workdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mxcert-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create the work directory");
    d
}

/// The program `name` in PATH.
pub fn which(name: &str) -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} in PATH"))
}

/// `openssl s_client` (through `cmd`: the openssl binary or a copy) to `addr` in TLS 1.3 with
/// the fixture chain `name` (leaf, key, intermediates written to `int`) and `extra` arguments:
/// sends a line, gives the handshake, the line and the server's session ticket a moment, then
/// ends (EOF) so the connection closes and its session record is written.
pub fn s_client_line(mut cmd: Command, addr: &str, name: &str, int: &Path, extra: &[&str]) {
    let certs = crate::mta::certs_dir();
    intermediates(&certs.join(format!("{name}.chain.pem")), int);
    let p = |f: String| certs.join(f).to_str().expect("UTF-8 path").to_string();
    let mut client = Killed(
        cmd.args(["s_client", "-connect", addr, "-tls1_3"])
            .args(["-cert", &p(format!("{name}.crt"))])
            .args(["-key", &p(format!("{name}.key"))])
            .args(["-cert_chain", int.to_str().expect("UTF-8 path")])
            .args(["-CAfile", &p("root-ca.crt".into())])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client"),
    );
    let stdin = client.0.stdin.as_mut().expect("piped");
    stdin.write_all(b"hello\n").expect("write to s_client");
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(client.0.stdin.take());
    let _ = crate::mta::wait_child(&mut client.0, std::time::Duration::from_secs(10));
}

/// `mxcert capture` with the eBPF backend, the TLS-library probes on for `processes` (comma
/// separated names), classification against the fixture root, /metrics on `metrics`, SMTP on
/// `ports` (comma separated), in `pair`'s server namespace.
pub fn library_capture(
    pair: &NetnsPair,
    (out, log): (&Path, &Path),
    ports: &str,
    processes: &str,
    metrics: u16,
) -> crate::live::Capture {
    let anchors = crate::mta::certs_dir().join("root-ca.crt");
    crate::live::Capture::start(
        pair,
        out,
        log,
        &[
            "--backend",
            "ebpf",
            "--ports",
            ports,
            "--tls-library",
            "auto",
            "--tls-processes",
            processes,
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
            "--trust-anchors",
            anchors.to_str().expect("UTF-8 path"),
        ],
    )
    .expect("mxcert capture")
}

/// `openssl s_client -tls1_3` in `side`'s namespace connecting to `connect` with the
/// cli_clientauth client chain (its intermediates in the file `cli_int`), verifying the server
/// against the fixtures' root. Stdin is piped: closing it ends the session.
pub fn mutual_s_client(pair: &NetnsPair, side: Side, connect: &str, cli_int: &str) -> Killed {
    let certs = crate::repo_root().join("pcaps/certs");
    let p = |f: &str| certs.join(f).display().to_string();
    Killed(
        pair.command(side, "openssl")
            .args(["s_client", "-connect", connect, "-tls1_3"])
            .args(["-cert", &p("cli_clientauth.crt")])
            .args(["-key", &p("cli_clientauth.key")])
            .args(["-cert_chain", cli_int])
            .args(["-CAfile", &p("root-ca.crt"), "-verify_return_error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client"),
    )
}

/// Waits for a process that ends by itself (a one-connection server), at most `limit`;
/// panics past it. Returns its pid, for checking that its /proc entry is gone.
pub fn wait_gone(child: &mut Killed, limit: std::time::Duration) -> u32 {
    let start = Instant::now();
    while child.0.try_wait().expect("try_wait").is_none() {
        assert!(start.elapsed() < limit, "{} still runs", child.0.id());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.0.id()
}

/// `openssl s_server` for one TLS 1.3 connection on `accept` (server namespace) with the
/// srv_both chain (its intermediates in the file `srv_int`), requiring a client certificate.
pub fn mutual_s_server(
    pair: &NetnsPair,
    accept: &str,
    srv_int: &str,
) -> (Killed, BufReader<ChildStdout>) {
    let certs = crate::repo_root().join("pcaps/certs");
    let p = |f: &str| certs.join(f).display().to_string();
    let (cert, key, ca) = (p("srv_both.crt"), p("srv_both.key"), p("root-ca.crt"));
    s_server(
        pair,
        &[
            "-accept",
            accept,
            "-tls1_3",
            "-naccept",
            "1",
            "-cert",
            &cert,
            "-key",
            &key,
            "-cert_chain",
            srv_int,
            "-CAfile",
            &ca,
            "-Verify",
            "3",
        ],
    )
    .expect("s_server")
}

/// Of the chains of one connection with `server`: the one the client received (its remote is
/// `server`) and the one the server received (its local endpoint).
pub fn chains_by_side(chains: &[PeerChain], server: SocketAddr) -> (&PeerChain, &PeerChain) {
    let client = chains
        .iter()
        .find(|c| c.remote == Some(server))
        .expect("the chain the client received, tied to its connection");
    let srv = chains
        .iter()
        .find(|c| c.local == Some(server))
        .expect("the chain the server received, tied to its connection");
    (client, srv)
}

/// Polls `probes` until the two chains of the connection with `server` (either side's
/// endpoint) arrived or `limit` passed, running `each` before every poll (a refresh, to adopt
/// a process that just started); returns that connection's chains. Other chains (other
/// processes of the allow-listed names on the host) are dropped.
pub fn poll_connection(
    probes: &mut TlsProbes,
    server: SocketAddr,
    limit: std::time::Duration,
    each: &mut dyn FnMut(&mut TlsProbes),
) -> Vec<PeerChain> {
    let ours = |c: &PeerChain| [c.local, c.remote].contains(&Some(server));
    let mut chains: Vec<PeerChain> = Vec::new();
    let start = Instant::now();
    while chains.len() < 2 && start.elapsed() < limit {
        each(probes);
        probes
            .poll(std::time::Duration::from_millis(100), &mut |c| {
                // Received chains only (sent ones: own_chain.rs).
                if !c.sent && ours(&c) {
                    chains.push(c)
                }
            })
            .expect("poll");
    }
    chains
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_ders_equal_what_openssl_x509_writes() {
        let pem = crate::repo_root().join("pcaps/certs/srv_both.chain.pem");
        let ders = super::pem_ders(&pem).unwrap();
        assert_eq!(ders.len(), 2);
        let out = std::process::Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&pem)
            .output()
            .expect("openssl x509");
        assert!(out.status.success());
        assert_eq!(ders[0], out.stdout, "the leaf, decoded");
    }
}
