//! The TLS-library probes leave with their holder: a process holding them that is killed with
//! SIGKILL (no destructor runs) leaves no uprobe link and no program behind, and the probed
//! process (`openssl s_server`) keeps completing TLS 1.3 handshakes before and after.

use std::process::Stdio;
use std::time::{Duration, Instant};

use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::repo_root;
use mxcert_system_tests::uprobe::{programs_loaded, s_server, tls_hold};

const PORT: u16 = 4434;

fn links_of(ids: &[u32]) -> usize {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .filter(|l| ids.contains(&l.program_id()))
        .count()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One TLS 1.3 handshake with s_client; true when it completed (s_client prints the
/// negotiated protocol).
fn handshake(pair: &NetnsPair) -> bool {
    let out = pair
        .command(Side::Client, "openssl")
        .args([
            "s_client",
            "-connect",
            &format!("{}:{PORT}", pair.server_ip),
        ])
        .args(["-tls1_3", "-brief"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stderr).contains("Protocol version: TLSv1.3")
}

#[test]
fn sigkill_of_the_holder_removes_the_uprobes() {
    if !require_ebpf("sigkill_of_the_holder_removes_the_uprobes") {
        return;
    }
    let pair = NetnsPair::create("mxu1", 41).expect("namespaces");
    let certs = repo_root().join("pcaps/certs");
    let (crt, key) = (certs.join("srv_both.crt"), certs.join("srv_both.key"));
    let accept = format!("{}:{PORT}", pair.server_ip);
    let (_server, mut out) = s_server(
        &pair,
        &[
            "-accept",
            &accept,
            "-tls1_3",
            "-naccept",
            "2",
            "-cert",
            crt.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ],
    )
    .expect("s_server");
    // s_server prints each session; drain its output so it never blocks.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));

    let (mut holder, files, ids) =
        tls_hold(env!("CARGO_BIN_EXE_tls-hold"), &["openssl"]).expect("tls-hold");
    let ids = &ids;
    assert_eq!(files, 2, "libssl and libcrypto of s_server attached");
    // 8 OpenSSL uprobe programs (i2d_X509 entry and return: our own chain) + 7 GnuTLS ones
    // (gnutls_certificate_get_ours entry and return) + the exec/exit raw tracepoints + the
    // sock_send_length/sock_recv_length ones.
    assert_eq!(ids.len(), 19);
    // 9 SSL_* entry points + SSL_set_bio + entry and return of SSL_get0/1_peer_certificate in
    // libssl, d2i_X509 + BIO_int_ctrl + i2d_X509 entry and return in libcrypto, and the 4 raw
    // tracepoints (s_server maps no libgnutls: those programs stay unattached).
    assert_eq!(links_of(ids), 22, "probe links while the holder runs");

    assert!(handshake(&pair), "handshake with the probes attached");
    holder.0.kill().expect("SIGKILL");
    holder.0.wait().expect("reap");
    wait_until("uprobe links gone after SIGKILL", || links_of(ids) == 0);
    wait_until("programs unloaded after SIGKILL", || {
        programs_loaded(ids) == 0
    });
    assert!(handshake(&pair), "handshake after the kill");
}
