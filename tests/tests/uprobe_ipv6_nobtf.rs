//! Without the kernel's BTF (here: `MXCERT_KERNEL_BTF` pointing at a file that does not
//! exist, as on a kernel built without CONFIG_DEBUG_INFO_BTF) the socket tracepoints cannot
//! read an IPv6 socket's addresses: the operator is told once, IPv6 sockets are counted
//! (`sock_not_inet`) and left alone in the kernel, and a connection still open when its
//! chain is handed out gets its 4-tuple through /proc. IPv4 keeps being mapped in the
//! kernel, at the built-in offsets: a short IPv4 connection, read after both ends exited,
//! carries its 4-tuple. Its own test binary: the variable is set for the whole process.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use mxcert::capture::tlslib::TlsProbes;
use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::repo_root;
use mxcert_system_tests::uprobe::{
    chains_by_side, intermediates, mutual_s_client, mutual_s_server, poll_connection, wait_gone,
};

const PORT: u16 = 19652;
const V4_PORT: u16 = 19653;

#[test]
fn without_btf_ipv6_maps_through_proc_and_the_operator_is_told() {
    if !require_ebpf("uprobe_ipv6_nobtf") {
        return;
    }
    // SAFETY: the only test of this binary, set before any thread reads the environment.
    unsafe { std::env::set_var("MXCERT_KERNEL_BTF", "/nonexistent/mxcert-test/vmlinux") };
    let pair = NetnsPair::create("mxk6n", 92).expect("namespaces");
    let certs = repo_root().join("pcaps/certs");
    let tmp = std::env::temp_dir().join(format!("mxcert-nobtf-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (srv_int, cli_int) = (tmp.join("srv-int.pem"), tmp.join("cli-int.pem"));
    intermediates(&certs.join("srv_both.chain.pem"), &srv_int);
    intermediates(&certs.join("cli_clientauth.chain.pem"), &cli_int);

    let mut probes = TlsProbes::open(&["openssl".into()]).expect("load the TLS probes");
    let reports = probes.take_reports();
    assert_eq!(reports.len(), 1, "said once: {reports:?}");
    assert!(
        reports[0].contains("BTF") && reports[0].contains("IPv6"),
        "{reports:?}"
    );
    let server: SocketAddr = (Ipv6Addr::LOCALHOST, PORT).into();
    let accept = format!("[::1]:{PORT}");
    let (_srv, mut out) = mutual_s_server(&pair, &accept, srv_int.to_str().unwrap());
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert!(probes.refresh().expect("refresh") >= 2);
    // The client stays connected (stdin open) while the chains are read.
    let _client = mutual_s_client(&pair, Side::Server, &accept, cli_int.to_str().unwrap());
    // Adopt s_client (its libssl text) as soon as it runs.
    let mut adopt = |p: &mut TlsProbes| {
        p.refresh().expect("refresh");
    };
    let chains = poll_connection(&mut probes, server, Duration::from_secs(10), &mut adopt);
    let stats = probes.stats();
    eprintln!("uprobe_ipv6_nobtf: {stats:?}");
    assert_eq!(chains.len(), 2, "one chain per side: {chains:#?}");
    let (by_client, by_server) = chains_by_side(&chains, server);
    assert_eq!(by_server.remote, by_client.local, "same connection");
    for c in &chains {
        assert!(!c.kernel_mapped, "mapped through /proc: {c:#?}");
    }
    assert!(stats.sock_not_inet >= 2, "IPv6 sockets seen: {stats:?}");
    assert_eq!(stats.sockets_v6, 0, "{stats:?}");
    assert!(stats.proc_mapped >= 2, "{stats:?}");

    // IPv4, short: only the kernel can map it.
    let server: SocketAddr = (pair.server_ip, V4_PORT).into();
    let accept = server.to_string();
    let (mut srv, mut out) = mutual_s_server(&pair, &accept, srv_int.to_str().unwrap());
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let mut client = mutual_s_client(&pair, Side::Client, &accept, cli_int.to_str().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    probes.refresh().expect("refresh");
    drop(client.0.stdin.take());
    assert!(client.0.wait().expect("s_client").success(), "handshake");
    wait_gone(&mut srv, Duration::from_secs(10));
    let _ = drain.join();
    let chains = poll_connection(&mut probes, server, Duration::from_secs(5), &mut |_| {});
    assert_eq!(chains.len(), 2, "one chain per side: {chains:#?}");
    let (by_client, by_server) = chains_by_side(&chains, server);
    assert_eq!(by_client.flow(), by_server.flow(), "same 4-tuple");
    for c in &chains {
        assert!(
            c.kernel_mapped,
            "IPv4 mapped in the kernel without BTF: {c:#?}"
        );
    }
}
