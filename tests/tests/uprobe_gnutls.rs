//! TLS 1.3 peer chains read through the uprobes on GnuTLS (issue #8), at the level of
//! [`TlsProbes`] and its [`PeerChain`]s, with Exim 4.96 (GnuTLS 3.7) as server asking every
//! client for a certificate (`tls_try_verify_hosts = *`): `openssl s_client` presenting
//! leaf + intermediate, its leaf only, and none (the empty-chain signal).
//!
//! Each handshake gives exactly one chain per side, equal certificate by certificate (SHA-256
//! of the DER) to the configured one, tied to the same TCP 4-tuple on both sides, with the
//! session pointer and no truncation; Exim (mapping libgnutls) is not reported, a process
//! mapping no TLS library is, once, by name; a tcpdump of the same traffic holds no certificate
//! bytes; `openssl crl2pkcs7` loading the system CA bundle in a bounded loop meanwhile (an
//! allow-listed name) leaks nothing into a chain and its loads are counted as filtered.
//!
//! The session records `mxcert capture` makes of Exim's sessions in both roles (Exim client
//! delivering to Postfix included) are tests/tests/capture_exim.rs's.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mxcert::capture::tlslib::{PeerChain, TlsProbes};
use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::mta::{certs_dir, require_exim, wait_child, Exim, Tcpdump, WorkDir};
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::uprobe::{
    assert_no_cleartext_certificates, ca_bundle_noise, chain_ders, der_hashes, intermediates,
    Killed,
};

/// A copy of sleep(1) under this name maps no TLS library at all.
const NO_TLS: &str = "mxg-notls";

/// Process names probed: Exim, openssl (s_client, the holder and the noise), and [`NO_TLS`].
fn allow() -> Vec<String> {
    ["exim4", "openssl", NO_TLS]
        .into_iter()
        .map(String::from)
        .collect()
}

fn chain_hashes(name: &str) -> Vec<[u8; 32]> {
    der_hashes(&chain_ders(&certs_dir().join(format!("{name}.chain.pem"))))
}

/// Polls the probes until `done` holds for the chains of this test (those with an endpoint at
/// `ip`), at most `limit`, then 300 ms more so a stray chain would show. Returns them all.
fn collect(
    probes: &mut TlsProbes,
    ip: IpAddr,
    limit: Duration,
    done: impl Fn(&[PeerChain]) -> bool,
) -> Vec<PeerChain> {
    let mut ours = Vec::new();
    let start = Instant::now();
    let mut settle: Option<Instant> = None;
    while start.elapsed() < limit && settle.is_none_or(|s| s.elapsed() < Duration::from_millis(300))
    {
        probes
            .poll(Duration::from_millis(50), &mut |c| {
                // Received chains only: sent ones (c.sent) are own_chain.rs's.
                if !c.sent && [c.local, c.remote].iter().flatten().any(|a| a.ip() == ip) {
                    ours.push(c);
                }
            })
            .expect("poll");
        if settle.is_none() && done(&ours) {
            settle = Some(Instant::now());
        }
    }
    ours
}

/// `openssl dgst` reading its stdin maps libssl and libcrypto before any handshake, so
/// [`TlsProbes::refresh`] attaches to the files in time (s_client starts per connection; the
/// Exim daemon maps libgnutls). Exec tracking is the daemon's; here the files are attached
/// once, up front.
fn hold_libraries(probes: &mut TlsProbes) -> Killed {
    let held = Killed(
        Command::new("openssl")
            .args(["dgst", "-sha256"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("library holder"),
    );
    // libssl, libcrypto, libgnutls.
    let want = 3;
    let start = Instant::now();
    while probes.attached_files() < want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{want} library files attached, got {}",
            probes.attached_files()
        );
        std::thread::sleep(Duration::from_millis(50));
        probes.refresh().expect("refresh");
    }
    held
}

fn exim_chains(chains: &[PeerChain], server: SocketAddr) -> Vec<&PeerChain> {
    chains
        .iter()
        .filter(|c| c.comm == "exim4" && c.local == Some(server))
        .collect()
}

#[test]
fn exim_server_reads_the_client_chains_through_gnutls() {
    if !require_ebpf("uprobe_gnutls") || !require_exim("uprobe_gnutls") {
        return;
    }
    let pair = NetnsPair::create("mxg", 50).expect("namespaces");
    let work = WorkDir::new("uprobe-gnutls-srv").expect("work dir");
    let certs = certs_dir();
    let cli = "cli_clientauth";
    let cli_int = work.join("cli-int.pem");
    intermediates(&certs.join(format!("{cli}.chain.pem")), &cli_int);
    let want_client = chain_hashes(cli);
    assert_eq!(want_client.len(), 2);
    let want_server = chain_hashes("srv_exim");

    let mut probes = TlsProbes::open(&allow()).expect("load the TLS probes");
    let dump = Tcpdump::start(&pair, Side::Server, work.join("wire.pcap")).expect("tcpdump");
    let exim = Exim::start(&pair, work.join("exim"), &pair.server_ip.to_string()).expect("exim");
    // The Exim daemon maps libgnutls: with openssl's libssl and libcrypto, three files.
    let no_tls = work.join(NO_TLS);
    std::fs::copy("/bin/sleep", &no_tls).expect("copy sleep");
    let _no_tls = Killed(Command::new(&no_tls).arg("60").spawn().expect(NO_TLS));
    let _held = hold_libraries(&mut probes);
    // Seen on two scans (the first may fall between execve and the loader's mappings).
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(100));
        probes.refresh().expect("refresh");
    }
    let reports = probes.take_reports();
    assert!(
        !reports.iter().any(|r| r.contains("exim4")),
        "Exim maps libgnutls, no report: {reports:?}"
    );
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.contains(&format!("process {NO_TLS} ")) && r.contains("neither"))
            .count(),
        1,
        "said once by name: {reports:?}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let noise_runs = ca_bundle_noise(stop.clone());
    let server: SocketAddr = SocketAddr::new(IpAddr::V4(pair.server_ip), 25);
    let ip = IpAddr::V4(pair.server_ip);
    let p = |f: &str| certs.join(f).to_str().unwrap().to_string();

    // openssl s_client over STARTTLS, TLS 1.3: leaf + intermediate (-cert_chain), the leaf
    // alone (s_client builds no chain without -cert_chain or -build_chain), no certificate.
    let (crt, key, int) = (
        p(&format!("{cli}.crt")),
        p(&format!("{cli}.key")),
        cli_int.to_str().unwrap().to_string(),
    );
    let cases = [
        (
            "leaf + intermediate",
            vec!["-cert", &crt, "-key", &key, "-cert_chain", &int],
            want_client.clone(),
        ),
        (
            "leaf only",
            vec!["-cert", &crt, "-key", &key],
            want_client[..1].to_vec(),
        ),
        ("no certificate", vec![], vec![]),
    ];
    let mut results = Vec::new();
    for (label, args, want) in &cases {
        let mut client = Killed(
            pair.command(Side::Client, "openssl")
                .args(["s_client", "-connect", &server.to_string()])
                .args(["-starttls", "smtp", "-tls1_3"])
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("openssl s_client"),
        );
        // EHLO after the handshake: the client's certificate flight has reached Exim by then.
        // The session stays open until both chains are in, so this test does not depend on
        // how the 4-tuple was found (the kernel's socket tracepoints, or /proc while the
        // receiving process lives).
        let mut stdin = client.0.stdin.take().unwrap();
        stdin.write_all(b"EHLO client.example\r\n").unwrap();
        let got = collect(&mut probes, ip, Duration::from_secs(15), |c| {
            !exim_chains(c, server).is_empty()
                && c.iter()
                    .any(|c| c.comm == "openssl" && c.remote == Some(server))
        });
        stdin.write_all(b"QUIT\r\n").unwrap();
        drop(stdin);
        let _ = wait_child(&mut client.0, Duration::from_secs(10));
        results.push((*label, want.clone(), got));
    }
    stop.store(true, Ordering::Relaxed);
    let runs = noise_runs.join().unwrap();
    drop(exim);
    let pcap = dump.stop().expect("tcpdump stop");
    let stats = probes.stats();
    eprintln!("uprobe_gnutls (server): {stats:?}, noise runs {runs}");

    for (label, want, got) in &results {
        // Exactly one chain each way: Exim's (GnuTLS) and s_client's (OpenSSL); nothing from
        // the noise.
        assert_eq!(got.len(), 2, "{label}: {got:#?}");
        let by_exim = exim_chains(got, server);
        assert_eq!(
            by_exim.len(),
            1,
            "{label}: one chain per handshake: {got:#?}"
        );
        let by_exim = by_exim[0];
        assert_eq!(
            &der_hashes(&by_exim.ders),
            want,
            "{label}: client chain via GnuTLS"
        );
        assert!(!by_exim.truncated && by_exim.ssl != 0);
        let by_client = got
            .iter()
            .find(|c| c.comm == "openssl" && c.remote == Some(server))
            .expect("the chain s_client received");
        assert_eq!(
            der_hashes(&by_client.ders),
            want_server,
            "{label}: server chain via OpenSSL"
        );
        assert_eq!(by_exim.flow(), by_client.flow(), "{label}: same 4-tuple");
        assert_eq!(
            by_exim.remote.map(|a| a.ip()),
            Some(IpAddr::V4(pair.client_ip))
        );
    }
    assert!(stats.gnutls_peers >= 3, "{stats:?}");
    assert!(runs >= 1);
    assert!(
        stats.outside_ssl >= 100,
        "CA bundle loads filtered: {stats:?}"
    );
    assert_eq!(
        stats.ring_full + stats.read_errors + stats.bad_records + stats.incomplete,
        0
    );
    assert_no_cleartext_certificates(&pcap, &[cli, "srv_exim"]);
}
