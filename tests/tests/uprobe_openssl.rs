//! TLS 1.3 peer chains read through the uprobes on OpenSSL 3 (issue #8): `openssl s_server`
//! (client certificates required) and `openssl s_client` in two network namespaces, each with a
//! leaf + intermediate chain from pcaps/certs. The chains mxcert reads must equal, certificate
//! by certificate (SHA-256 of the DER), the chains the peers were configured with, tied to the
//! right TCP 4-tuple; a tcpdump of the same traffic must hold no certificate bytes (TLS 1.3
//! encrypts them); and `openssl crl2pkcs7` loading the system CA bundle in a bounded loop
//! meanwhile (same process name, so it passes the kernel's allow-list) must not leak a single
//! certificate into a chain. Dropping the probes unloads the programs.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mxcert::capture::tlslib::{PeerChain, TlsProbes};
use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::repo_root;
use mxcert_system_tests::uprobe::{
    assert_no_cleartext_certificates, ca_bundle_noise, chain_ders, der_hashes, intermediates,
    programs_loaded, s_server, Killed,
};

const PORT: u16 = 4433;

#[test]
fn openssl_tls13_chains_are_read_through_the_library() {
    if !require_ebpf("uprobe_openssl") {
        return;
    }
    let pair = NetnsPair::create("mxu", 40).expect("namespaces");
    let certs = repo_root().join("pcaps/certs");
    let tmp = std::env::temp_dir().join(format!("mxcert-uprobe-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (srv, cli) = ("srv_both", "cli_clientauth");
    let srv_int = tmp.join("srv-int.pem");
    let cli_int = tmp.join("cli-int.pem");
    intermediates(&certs.join(format!("{srv}.chain.pem")), &srv_int);
    intermediates(&certs.join(format!("{cli}.chain.pem")), &cli_int);
    let want_server = der_hashes(&chain_ders(&certs.join(format!("{srv}.chain.pem"))));
    let want_client = der_hashes(&chain_ders(&certs.join(format!("{cli}.chain.pem"))));
    assert_eq!((want_server.len(), want_client.len()), (2, 2));
    let p = |f: &str| -> String { certs.join(f).to_str().unwrap().to_string() };
    let s = |f: &PathBuf| -> String { f.to_str().unwrap().to_string() };

    let mut probes = TlsProbes::open(&["openssl".into()]).expect("load the TLS probes");
    let ids = probes.program_ids().to_vec();
    assert_eq!(ids.len(), 13, "{ids:?}");

    let pcap = tmp.join("wire.pcap");
    let mut dump = Killed(
        pair.command(Side::Client, "tcpdump")
            .args([
                "-i",
                &pair.client_if,
                "-U",
                "-n",
                "-s",
                "0",
                "-w",
                &s(&pcap),
            ])
            .args(["tcp", "port", &PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump"),
    );
    // tcpdump says "listening on" once its capture is open.
    let mut line = String::new();
    BufReader::new(dump.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "tcpdump: {line}");

    let accept = format!("{}:{PORT}", pair.server_ip);
    let (srv_crt, srv_key) = (p(&format!("{srv}.crt")), p(&format!("{srv}.key")));
    let (srv_int, ca) = (s(&srv_int), p("root-ca.crt"));
    let (server, _out) = s_server(
        &pair,
        &[
            "-accept",
            &accept,
            "-tls1_3",
            "-naccept",
            "1",
            "-cert",
            &srv_crt,
            "-key",
            &srv_key,
            "-cert_chain",
            &srv_int,
            "-CAfile",
            &ca,
            "-Verify",
            "3",
        ],
    )
    .expect("s_server");
    // The server maps libssl/libcrypto now: attach to those files (covering s_client too).
    assert!(
        probes.refresh().expect("refresh") >= 2,
        "libssl and libcrypto attached"
    );
    assert!(probes.take_reports().is_empty());

    // Noise: the same process name loading ~140 CA certificates through libcrypto's PEM code,
    // bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let noise = ca_bundle_noise(stop.clone());
    std::thread::sleep(Duration::from_millis(300));

    let connect = format!("{}:{PORT}", pair.server_ip);
    let mut client = Killed(
        pair.command(Side::Client, "openssl")
            .args(["s_client", "-connect", &connect, "-tls1_3"])
            .args([
                "-cert",
                &p(&format!("{cli}.crt")),
                "-key",
                &p(&format!("{cli}.key")),
            ])
            .args(["-cert_chain", &s(&cli_int), "-CAfile", &p("root-ca.crt")])
            .args(["-verify", "3", "-verify_return_error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client"),
    );
    // A line of data makes both sides finish the handshake (the server reads the client's
    // certificate after the client's first flight).
    client
        .0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\n")
        .unwrap();

    // Only this test's connection counts: other `openssl` processes on the host (a parallel
    // test elsewhere) are probed too, since the probes sit on the shared library file.
    let ours = |c: &PeerChain| {
        [c.local, c.remote]
            .iter()
            .flatten()
            .any(|a| a.ip() == std::net::IpAddr::V4(pair.server_ip))
    };
    let mut all: Vec<PeerChain> = Vec::new();
    let start = Instant::now();
    while all.iter().filter(|c| ours(c)).count() < 2 && start.elapsed() < Duration::from_secs(15) {
        probes
            .poll(Duration::from_millis(100), &mut |c| all.push(c))
            .expect("poll");
    }
    // Keep polling while the noise runs, so a leaked certificate would show.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(1) {
        probes
            .poll(Duration::from_millis(100), &mut |c| all.push(c))
            .expect("poll");
    }
    stop.store(true, Ordering::Relaxed);
    let runs = noise.join().unwrap();
    let chains: Vec<PeerChain> = all.into_iter().filter(|c| ours(c)).collect();
    drop(client.0.stdin.take());
    let _ = client.0.wait();
    drop(server);
    std::thread::sleep(Duration::from_millis(300));
    drop(dump);

    let stats = probes.stats();
    eprintln!("uprobe_openssl: {stats:?}, noise runs {runs}");
    assert!(runs >= 1);
    assert_eq!(chains.len(), 2, "one chain per side: {chains:#?}");
    let server_addr: SocketAddr = connect.parse().unwrap();
    let got_by_client = chains
        .iter()
        .find(|c| c.remote == Some(server_addr))
        .expect("the chain s_client received, tied to its connection");
    let got_by_server = chains
        .iter()
        .find(|c| c.local == Some(server_addr))
        .expect("the chain s_server received, tied to its connection");
    assert_eq!(der_hashes(&got_by_client.ders), want_server);
    assert_eq!(der_hashes(&got_by_server.ders), want_client);
    assert!(!got_by_client.truncated && !got_by_server.truncated);
    assert_eq!(got_by_client.flow(), got_by_server.flow(), "same 4-tuple");
    assert_eq!(got_by_client.comm, "openssl");
    // The noise (same process name) was dropped in the kernel before any copy: no thread of
    // `openssl crl2pkcs7` is ever inside a libssl call.
    assert!(
        stats.outside_ssl >= 100,
        "CA bundle loads filtered: {stats:?}"
    );
    assert_eq!(stats.ring_full + stats.read_errors + stats.bad_records, 0);

    // TLS 1.3: no certificate byte on the wire, while the handshake itself was captured.
    assert_no_cleartext_certificates(&pcap, &[srv, cli]);

    drop(probes);
    let start = Instant::now();
    while programs_loaded(&ids) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "programs still loaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
