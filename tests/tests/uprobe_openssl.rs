//! TLS 1.3 peer chains read through the uprobes on OpenSSL 3 (issue #8): `openssl s_server`
//! (client certificates required) and `openssl s_client` in two network namespaces, each with a
//! leaf + intermediate chain from pcaps/certs. The chains mxcert reads must equal, certificate
//! by certificate (SHA-256 of the DER), the chains the peers were configured with, tied to the
//! right TCP 4-tuple; a tcpdump of the same traffic must hold no certificate bytes (TLS 1.3
//! encrypts them); and `openssl crl2pkcs7` loading the system CA bundle in a bounded loop
//! meanwhile (same process name, so it passes the kernel's allow-list) must not leak a single
//! certificate into a chain. Dropping the probes unloads the programs.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
    assert_no_cleartext_certificates, ca_bundle_noise, chain_ders, chains_by_side, der_hashes,
    intermediates, mutual_s_client, mutual_s_server, programs_loaded, wait_gone, Killed,
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
    assert_eq!(ids.len(), 19, "{ids:?}");

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
    let (server, _out) = mutual_s_server(&pair, &accept, &s(&srv_int));
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

    let ours = |c: &PeerChain| ours(c, pair.server_ip);
    let mut all = poll_ours(&mut probes, pair.server_ip, Duration::from_secs(15));
    // Keep polling while the noise runs, so a leaked certificate would show.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(1) {
        probes
            .poll(Duration::from_millis(100), &mut |c| {
                // Received chains only (sent ones: own_chain.rs).
                if !c.sent {
                    all.push(c)
                }
            })
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
    let (got_by_client, got_by_server) = chains_by_side(&chains, server_addr);
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

/// A connection over before user space reads a single record (issue #8: a 36 ms SMTP session
/// is often closed before the /proc lookup of its fd): `s_client` exits right after the TLS 1.3
/// handshake, `s_server -naccept 1` exits after it, and the ring is read only once both
/// processes are gone, so neither `/proc/PID/fd` nor `/proc/PID/net/tcp` can map the chain.
/// The programs on the `sock_send_length`/`sock_recv_length` tracepoints took the 4-tuple in
/// the kernel during the handshake: both chains must carry it (without them both come out
/// unmapped).
#[test]
fn short_connection_maps_through_the_kernel() {
    if !require_ebpf("uprobe_openssl") {
        return;
    }
    let pair = NetnsPair::create("mxk", 75).expect("namespaces");
    let certs = repo_root().join("pcaps/certs");
    let tmp = std::env::temp_dir().join(format!("mxcert-short-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (srv_int, cli_int) = (tmp.join("srv-int.pem"), tmp.join("cli-int.pem"));
    intermediates(&certs.join("srv_both.chain.pem"), &srv_int);
    intermediates(&certs.join("cli_clientauth.chain.pem"), &cli_int);
    let (srv_int, cli_int) = (srv_int.to_str().unwrap(), cli_int.to_str().unwrap());
    let want_server = der_hashes(&chain_ders(&certs.join("srv_both.chain.pem")));
    let want_client = der_hashes(&chain_ders(&certs.join("cli_clientauth.chain.pem")));

    let mut probes = TlsProbes::open(&["openssl".into()]).expect("load the TLS probes");
    let reports = probes.take_reports();
    assert!(
        reports.is_empty(),
        "socket tracepoints attached: {reports:?}"
    );
    // Per-call cost of the socket tracepoint programs (BPF_ENABLE_STATS: run_time_ns /
    // run_count), printed; they are the last two programs loaded.
    let stats_fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let sock_ids = probes.program_ids()[probes.program_ids().len() - 2..].to_vec();
    let accept = format!("{}:{SHORT_PORT}", pair.server_ip);
    let (mut server, mut out) = mutual_s_server(&pair, &accept, srv_int);
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert!(probes.refresh().expect("refresh") >= 2);
    let mut client = mutual_s_client(&pair, Side::Client, &accept, cli_int);
    // User space keeps a certificate only when `d2i_X509` returns into the process's libssl
    // text, read from /proc/PID/maps when the process is adopted: adopt s_client while it
    // lives (an MTA daemon lives long), then let it go. No ring record is read before both
    // processes are gone.
    std::thread::sleep(Duration::from_millis(300));
    probes.refresh().expect("refresh");
    drop(client.0.stdin.take());
    let status = client.0.wait().expect("s_client");
    assert!(status.success(), "s_client handshake: {status}");
    // s_server ends after its one connection.
    let server_pid = wait_gone(&mut server, Duration::from_secs(10));
    let _ = drain.join();
    assert!(
        !std::path::Path::new(&format!("/proc/{server_pid}")).exists(),
        "s_server's /proc entry is gone before the ring is read"
    );

    let all = poll_ours(&mut probes, pair.server_ip, Duration::from_secs(5));
    let stats = probes.stats();
    let (runs, time) = aya::programs::loaded_programs()
        .flatten()
        .filter(|i| sock_ids.contains(&i.id()))
        .fold((0u64, 0u128), |(n, t), i| {
            (n + i.run_count(), t + i.run_time().as_nanos())
        });
    drop(stats_fd);
    eprintln!(
        "uprobe_openssl short: {stats:?}; socket tracepoint programs: {runs} calls, {} ns \
         per call",
        time.checked_div(u128::from(runs)).unwrap_or(0)
    );
    let chains: Vec<PeerChain> = all
        .into_iter()
        .filter(|c| ours(c, pair.server_ip))
        .collect();
    assert_eq!(
        chains.len(),
        2,
        "one chain per side, both mapped: {chains:#?}"
    );
    let server_addr: SocketAddr = accept.parse().unwrap();
    let (got_by_client, got_by_server) = chains_by_side(&chains, server_addr);
    assert_eq!(der_hashes(&got_by_client.ders), want_server);
    assert_eq!(der_hashes(&got_by_server.ders), want_client);
    assert_eq!(got_by_client.flow(), got_by_server.flow(), "same 4-tuple");
    let client_addr = got_by_client.local.expect("client endpoint");
    assert_eq!(client_addr.ip(), IpAddr::V4(pair.client_ip));
    assert_eq!(got_by_server.remote, Some(client_addr));
    assert!(
        stats.sockets >= 2,
        "endpoints taken in the kernel: {stats:?}"
    );
}

const SHORT_PORT: u16 = 4434;

/// Whether a chain belongs to a connection with `server`. Only the test's own connection
/// counts: other `openssl` processes on the host (a parallel test elsewhere) are probed too,
/// since the probes sit on the shared library file.
fn ours(c: &PeerChain, server: Ipv4Addr) -> bool {
    [c.local, c.remote]
        .iter()
        .flatten()
        .any(|a| a.ip() == IpAddr::V4(server))
}

/// Polls until two chains of connections with `server` arrived or `limit` passed; returns
/// every chain handed out.
fn poll_ours(probes: &mut TlsProbes, server: Ipv4Addr, limit: Duration) -> Vec<PeerChain> {
    let mut all: Vec<PeerChain> = Vec::new();
    let start = Instant::now();
    while all.iter().filter(|c| ours(c, server)).count() < 2 && start.elapsed() < limit {
        probes
            .poll(Duration::from_millis(100), &mut |c| {
                // Received chains only (sent ones: own_chain.rs).
                if !c.sent {
                    all.push(c)
                }
            })
            .expect("poll");
    }
    all
}
