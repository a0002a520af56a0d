//! IPv6 and IPv4-mapped TLS connections mapped to their TCP 4-tuple in the kernel (issue #8):
//! the socket tracepoint programs read `struct sock_common`'s IPv6 addresses at the offsets
//! user space took from the kernel's BTF, and send an `AF_INET6` socket carrying IPv4-mapped
//! addresses (a dual-stack listener's IPv4 peer) as IPv4, as the wire shows it.
//!
//! Both tests make short connections: `openssl s_client` exits right after the TLS 1.3
//! handshake (client certificates required), `s_server -naccept 1` after it, and the ring is
//! read only once both processes are gone, so the /proc fallback cannot map them; every chain
//! asserted on must say `kernel_mapped`. IPv6 runs over `::1` inside a namespace (the only
//! IPv6 the tests may use). The dual-stack listener binds `[::]` with `IPV6_V6ONLY` off and
//! takes an IPv4 client from the other namespace; `openssl s_server` always sets
//! `IPV6_V6ONLY` (apps/lib/s_socket.c), so that server is Python's `ssl` module, which runs
//! on the same libssl (and asks for the peer certificate, `SSL_get1_peer_certificate`, as
//! an MTA does).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::{ChildStdout, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use mxcert::capture::tlslib::{PeerChain, TlsCounters, TlsProbes};
use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::repo_root;
use mxcert_system_tests::uprobe::{
    chain_ders, chains_by_side, der_hashes, intermediates, mutual_s_client, mutual_s_server,
    poll_connection, wait_gone, Killed,
};

const V6_PORT: u16 = 19650;
const DUAL_PORT: u16 = 19651;

#[test]
fn ipv6_loopback_connection_maps_through_the_kernel() {
    if !require_ebpf("uprobe_ipv6") {
        return;
    }
    let pair = NetnsPair::create("mxk6", 90).expect("namespaces");
    let server: SocketAddr = (Ipv6Addr::LOCALHOST, V6_PORT).into();
    let accept = format!("[::1]:{V6_PORT}");
    let start = |srv_int: &str| mutual_s_server(&pair, &accept, srv_int);
    let (chains, stats) = short_handshake(&pair, &start, Side::Server, server);
    let (by_client, by_server) = chains_by_side(&chains, server);
    let client = by_client.local.expect("client endpoint");
    assert_eq!(client.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST), "{chains:#?}");
    assert_eq!(by_server.remote, Some(client), "same connection");
    assert_eq!(by_client.flow(), by_server.flow(), "same 4-tuple");
    assert!(stats.sockets_v6 >= 2, "IPv6 endpoints sent: {stats:?}");
}

#[test]
fn dual_stack_listener_gives_ipv4_endpoints_from_the_kernel() {
    if !require_ebpf("uprobe_ipv6") {
        return;
    }
    let pair = NetnsPair::create("mxk6d", 91).expect("namespaces");
    let server: SocketAddr = (pair.server_ip, DUAL_PORT).into();
    let start = |_: &str| dual_stack_server(&pair, DUAL_PORT);
    let (chains, stats) = short_handshake(&pair, &start, Side::Client, server);
    let (by_client, by_server) = chains_by_side(&chains, server);
    // The server's socket is AF_INET6 (::ffff:198.18.91.x inside); its chain must carry the
    // plain IPv4 endpoints, as the client's (AF_INET) does.
    assert_eq!(
        by_server.remote.map(|a| a.ip()),
        Some(IpAddr::V4(pair.client_ip)),
        "{chains:#?}"
    );
    assert_eq!(by_client.flow(), by_server.flow(), "same 4-tuple");
    assert!(
        stats.sockets_v4_mapped >= 1,
        "the server's IPv4-mapped socket converted in the kernel: {stats:?}"
    );
}

type Server = (Killed, BufReader<ChildStdout>);

/// One TLS 1.3 handshake with client certificates between the one-connection server `start`
/// runs in the server namespace (given the file of the server's intermediates) and
/// `s_client` in `client_side`'s namespace connecting to `server`, read after both processes
/// ended. Returns the two chains of the connection (each checked: the configured chain,
/// mapped in the kernel) and the counters.
fn short_handshake(
    pair: &NetnsPair,
    start: &dyn Fn(&str) -> Server,
    client_side: Side,
    server: SocketAddr,
) -> (Vec<PeerChain>, TlsCounters) {
    let port = server.port();
    let certs = repo_root().join("pcaps/certs");
    let tmp = std::env::temp_dir().join(format!("mxcert-ipv6-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (srv_int, cli_int) = (tmp.join("srv-int.pem"), tmp.join("cli-int.pem"));
    intermediates(&certs.join("srv_both.chain.pem"), &srv_int);
    intermediates(&certs.join("cli_clientauth.chain.pem"), &cli_int);
    let want_server = der_hashes(&chain_ders(&certs.join("srv_both.chain.pem")));
    let want_client = der_hashes(&chain_ders(&certs.join("cli_clientauth.chain.pem")));

    let comms = ["openssl".to_string(), "python3".to_string()];
    let mut probes = TlsProbes::open(&comms).expect("load the TLS probes");
    let reports = probes.take_reports();
    assert!(
        reports.is_empty(),
        "socket tracepoints attached and offsets read from BTF: {reports:?}"
    );
    let (mut srv, mut out) = start(srv_int.to_str().unwrap());
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert!(probes.refresh().expect("refresh") >= 2);
    let connect = match server {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    };
    let mut client = mutual_s_client(pair, client_side, &connect, cli_int.to_str().unwrap());
    // d2i_X509's return address is checked against the process's libssl text, read when it
    // is adopted: adopt s_client while it lives, then let both go before reading the ring.
    std::thread::sleep(Duration::from_millis(300));
    probes.refresh().expect("refresh");
    drop(client.0.stdin.take());
    let status = client.0.wait().expect("s_client");
    assert!(status.success(), "s_client handshake: {status}");
    let server_pid = wait_gone(&mut srv, Duration::from_secs(10));
    let _ = drain.join();
    assert!(
        !Path::new(&format!("/proc/{server_pid}")).exists(),
        "s_server is gone before the ring is read: /proc cannot map its connection"
    );

    let chains = poll_connection(&mut probes, server, Duration::from_secs(5), &mut |_| {});
    let stats = probes.stats();
    eprintln!("uprobe_ipv6 {server}: {stats:?}");
    assert_eq!(chains.len(), 2, "one chain per side: {chains:#?}");
    for c in &chains {
        assert!(c.kernel_mapped, "mapped in the kernel: {c:#?}");
    }
    let (by_client, by_server) = chains_by_side(&chains, server);
    assert_eq!(der_hashes(&by_client.ders), want_server);
    assert_eq!(der_hashes(&by_server.ders), want_client);
    (chains, stats)
}

/// A one-connection TLS 1.3 server on a dual-stack `[::]` socket (`IPV6_V6ONLY` off):
/// requires a client certificate, sends the srv_both chain, asks for the peer certificate
/// after the handshake, waits for the client to close. Prints `ACCEPT` once listening.
const DUAL_STACK_SERVER: &str = r#"
import socket, ssl, sys
port, chain, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(certfile=chain, keyfile=key)
ctx.load_verify_locations(cafile=ca)
ctx.verify_mode = ssl.CERT_REQUIRED
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
s.listen(1)
s.settimeout(20)
print("ACCEPT", flush=True)
c, peer = s.accept()
with ctx.wrap_socket(c, server_side=True) as t:
    print("peer", peer[0], len(t.getpeercert(True)), flush=True)
    # Until the client closes (its close_notify), so it ends cleanly.
    try:
        t.recv(1)
    except (ssl.SSLError, OSError):
        pass
"#;

/// Debian's interpreter (`cargo xtask setup` installs python3), by path: a wrapper found
/// first in PATH (pyenv's shims) would exec it under another name than the allow-listed one.
const PYTHON: &str = "/usr/bin/python3";

fn dual_stack_server(pair: &NetnsPair, port: u16) -> Server {
    let certs = repo_root().join("pcaps/certs");
    let p = |f: &str| -> String { certs.join(f).to_str().unwrap().to_string() };
    let start = || -> anyhow::Result<Server> {
        let mut server = Killed(
            pair.command(Side::Server, PYTHON)
                .args(["-c", DUAL_STACK_SERVER, &port.to_string()])
                .args([p("srv_both.chain.pem"), p("srv_both.key"), p("root-ca.crt")])
                .stdout(Stdio::piped())
                .spawn()
                .context("start python3")?,
        );
        let mut out = BufReader::new(server.0.stdout.take().context("piped")?);
        let mut line = String::new();
        while !line.contains("ACCEPT") {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                bail!("the dual-stack server ended before listening");
            }
        }
        Ok((server, out))
    };
    start().expect("dual-stack server")
}
