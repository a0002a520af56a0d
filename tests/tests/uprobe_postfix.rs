//! The TLS-library probes' lifetime with real MTAs (issue #8): two Postfix hosts of
//! [`postfix_pair`](mxcert_system_tests::postfix_pair) relaying to each other over mandatory
//! TLS 1.3 with client certificates, while a probe holder (`tls-hold`) ends by SIGTERM, then
//! by SIGKILL: each time its programs (and with them the uprobe links) are gone, and mail keeps
//! flowing both ways.
//!
//! The chains the probes read from these MTAs are asserted on the session records of
//! `mxcert capture` in tests/tests/capture_postfix.rs.

use std::path::Path;
use std::time::{Duration, Instant};

use mxcert::capture::tlslib::DEFAULT_COMMS;
use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::mta::{certs_dir, kill, require_mta, WorkDir};
use mxcert_system_tests::netns::NetnsPair;
use mxcert_system_tests::postfix_pair::{message, mtas, which};
use mxcert_system_tests::tlswire::contains;
use mxcert_system_tests::uprobe::{programs_loaded, s_server_as, tls_hold, Killed};

/// A long-lived process named `smtpd` mapping the system libssl/libcrypto (a copy of openssl
/// running an idle `s_server` on loopback), so a probe holder started now finds the library
/// files Postfix uses before Postfix starts its smtpd/smtp processes.
fn idle_smtpd(pair: &NetnsPair, dir: &Path) -> Killed {
    let bin = dir.join("smtpd");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(which("openssl"), &bin).expect("copy openssl as smtpd");
    let certs = certs_dir();
    let (server, out) = s_server_as(
        pair,
        bin.to_str().unwrap(),
        &[
            "-accept",
            "127.0.0.1:19502",
            "-cert",
            certs.join("srv_both.crt").to_str().unwrap(),
            "-key",
            certs.join("srv_both.key").to_str().unwrap(),
        ],
    )
    .expect("idle smtpd");
    drop(out);
    server
}

/// Starts the probe holder (`tls-hold`, allow-list = the MTA names) and returns it with its
/// program ids once it attached to libssl and libcrypto.
fn holder() -> (Killed, Vec<u32>) {
    let (h, files, ids) = tls_hold(env!("CARGO_BIN_EXE_tls-hold"), &DEFAULT_COMMS).unwrap();
    assert!(files >= 2, "libssl and libcrypto attached");
    (h, ids)
}

/// The probes' holder ends by SIGTERM, then by SIGKILL, while Postfix delivers over TLS 1.3:
/// each time the programs (and with them the uprobe links) are gone, and mail keeps flowing
/// both ways afterwards.
#[test]
fn probes_vanish_on_sigterm_and_sigkill_while_postfix_delivers() {
    if !require_mta("uprobe_postfix_kill") || !require_ebpf("uprobe_postfix_kill") {
        return;
    }
    let pair = NetnsPair::create("mxa1", 62).expect("namespaces");
    let work = WorkDir::new("uprobe-postfix-kill").expect("work dir");
    let _idle = idle_smtpd(&pair, &work.join("idle"));
    let (a, b) = mtas(&pair, &work, &[]);
    let (mut at_a, mut at_b) = (0, 0);
    for sig in ["TERM", "KILL"] {
        let (mut h, ids) = holder();
        assert_eq!(programs_loaded(&ids), ids.len());
        let (m, _) = message(
            "x@client.example",
            "u@test.example",
            "mxa with probes",
            2_000,
        );
        a.postfix.sendmail("u@test.example", &m).unwrap();
        at_b += 1;
        b.postfix.delivered(at_b, Duration::from_secs(60)).unwrap();
        kill(h.0.id(), sig);
        h.0.wait().expect("reap the holder");
        let start = Instant::now();
        while programs_loaded(&ids) > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "programs still loaded 5 s after SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (m, _) = message(
            "x@test.example",
            "u@client.example",
            "mxa after kill",
            2_000,
        );
        b.postfix.sendmail("u@client.example", &m).unwrap();
        at_a += 1;
        let got = a.postfix.delivered(at_a, Duration::from_secs(60)).unwrap();
        assert!(got.iter().all(|m| contains(m, b"Subject: mxa after kill")));
    }
    assert!(b.postfix.dir.join("maillog").is_file());
    let log = std::fs::read_to_string(a.postfix.dir.join("maillog")).unwrap();
    assert!(log.contains("TLSv1.3"), "the mail went over TLS 1.3: {log}");
}
