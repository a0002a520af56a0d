//! Live capture equals offline reading: real MTA sessions between two namespaces are captured
//! by `mxcert capture` and, at the same time, by tcpdump; `mxcert read` of tcpdump's file must
//! produce the same session, certificate and finding records. Offloads stay on, as on a
//! gateway, so handshake flights arrive as GSO super-packets.

use std::sync::Mutex;
use std::time::Duration;

use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::live;
use mxcert_system_tests::mta::{self, certs_dir, Exim, Postfix, PostfixOpts, WorkDir};
use mxcert_system_tests::netns::{NetnsPair, Side};

fn flags(server_ip: &str, extra: &[&str]) -> Vec<String> {
    let mut f = vec![
        "--local-net".to_string(),
        format!("{server_ip}/32"),
        "--trust-anchors".into(),
        certs_dir().join("root-ca.crt").display().to_string(),
        "--all-findings".into(),
    ];
    f.extend(extra.iter().map(|s| s.to_string()));
    f
}

/// Postfix server; swaks on 25/587 (STARTTLS), 465 (implicit), TLS 1.2 with a client
/// certificate, TLS 1.3, plaintext, and a 6-certificate chain on 465.
fn postfix_swaks(backend: &str, prefix: &str, subnet: u8, metrics_port: u16) {
    if !mta::require_mta("live_equivalence") {
        return;
    }
    let work = WorkDir::new(&format!("live-eq-{backend}")).expect("work dir");
    let pair = NetnsPair::create(prefix, subnet).expect("namespaces");
    pair.set_offloads(true).expect("offloads on");
    let c = certs_dir();
    let mut opts = PostfixOpts::cert("srv_both");
    // leaf + intermediate + 4 more CA certificates: ~7 KB in one TLS flight.
    opts.smtps_chain_files = vec![
        c.join("srv_both.key"),
        c.join("srv_both.chain.pem"),
        c.join("root-ca.crt"),
        c.join("inta-ca.crt"),
        c.join("intb-ca.crt"),
        c.join("other-ca.crt"),
    ];
    opts.main_cf = vec![
        "smtpd_tls_ask_ccert = yes".into(),
        format!("smtpd_tls_CAfile = {}", c.join("root-ca.crt").display()),
    ];
    let pf = Postfix::start(&pair, work.join("postfix"), &opts).expect("postfix");
    let cert = c.join("cli_clientauth.crt").display().to_string();
    let key = c.join("cli_clientauth.key").display().to_string();
    let sessions: Vec<Vec<&str>> = vec![
        vec![
            "--port",
            "25",
            "--ehlo",
            "one.client.example",
            "--tls",
            "--tls-protocol",
            "tlsv1_2",
            "--tls-sni",
            "mx.test.example",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        vec![
            "--port",
            "587",
            "--ehlo",
            "two.client.example",
            "--tls",
            "--tls-protocol",
            "tlsv1_2",
        ],
        vec![
            "--port",
            "465",
            "--ehlo",
            "three.client.example",
            "--tls-on-connect",
            "--tls-protocol",
            "tlsv1_2",
            "--tls-sni",
            "mx.test.example",
        ],
        vec![
            "--port",
            "25",
            "--ehlo",
            "four.client.example",
            "--tls",
            "--tls-protocol",
            "tlsv1_3",
            "--tls-sni",
            "mx.test.example",
        ],
        vec![
            "--port",
            "465",
            "--ehlo",
            "five.client.example",
            "--tls-on-connect",
            "--tls-protocol",
            "tlsv1_3",
        ],
        vec!["--port", "25", "--ehlo", "six.client.example"],
    ];
    let f = flags(&pair.server_ip.to_string(), &[]);
    let eq = live::equivalence(
        &pair,
        &work.path,
        backend,
        &f,
        metrics_port,
        sessions.len() as u64,
        || {
            for s in &sessions {
                mta::swaks_ok(&pair, s).expect("swaks delivers");
                mta::wait_quiet(&pair, Side::Server).expect("session over");
            }
            // Postfix delivered every message: the capture changed nothing on the way.
            let mail = pf
                .delivered(sessions.len(), Duration::from_secs(20))
                .expect("delivered");
            assert_eq!(mail.len(), sessions.len());
        },
    );
    assert_eq!(eq.count("session"), sessions.len());
    assert!(eq.count("certificate") >= 6, "{:?}", eq.reference);
    assert!(eq.count("finding") > 0);
    assert_eq!(
        live::metric(&eq.scrape, "mxcert_sessions_total{outcome=\"established\"}"),
        Some(5)
    );
    // Offloads produced frames larger than the MTU: handshake flights crossed as super-packets.
    assert!(
        eq.largest_frame > 1514,
        "no GSO super-packet (largest frame {})",
        eq.largest_frame
    );
    println!(
        "live_equivalence[postfix/swaks, {backend}]: {} records identical ({} sessions, {} certificates, {} findings); largest frame {} bytes",
        eq.compared, eq.count("session"), eq.count("certificate"), eq.count("finding"), eq.largest_frame
    );
}

/// Exim (GnuTLS) server asking for client certificates; a Postfix client relaying to it with
/// its own certificate chain (MTA to MTA), and swaks with TLS 1.2 and TLS 1.3.
fn exim_postfix(backend: &str, prefix: &str, subnet: u8, metrics_port: u16) {
    if !mta::require_exim("live_equivalence") {
        return;
    }
    let work = WorkDir::new(&format!("live-eq-exim-{backend}")).expect("work dir");
    let pair = NetnsPair::create(prefix, subnet).expect("namespaces");
    pair.set_offloads(true).expect("offloads on");
    let server = pair.server_ip.to_string();
    let _exim = Exim::start(&pair, work.join("exim"), &server).expect("exim");
    let mut client = PostfixOpts::cert("cli_mta");
    client.relay_to = Some(pair.server_ip);
    // TLS 1.2, so the client certificate is visible on the wire (TLS 1.3 encrypts it), and
    // no anonymous ciphers (which would send no certificate at all).
    client.main_cf = vec![
        "smtp_tls_mandatory_protocols = >=TLSv1.2, <=TLSv1.2".into(),
        "smtp_tls_mandatory_exclude_ciphers = aNULL".into(),
    ];
    let pfc = Postfix::start(&pair, work.join("postfix-client"), &client).expect("postfix client");
    let f = flags(
        &server,
        &["--mx-name", &format!("{server}=exim.test.example")],
    );
    let eq = live::equivalence(&pair, &work.path, backend, &f, metrics_port, 3, || {
        pfc.sendmail("user@test.example", b"From: sender@client.example\nTo: user@test.example\nSubject: mta to mta\n\nrelayed by Postfix\n")
            .expect("sendmail");
        pfc.wait_sent(1, Duration::from_secs(30))
            .expect("Postfix relayed to Exim");
        mta::wait_quiet(&pair, Side::Server).expect("session over");
        for proto in ["tlsv1_2", "tlsv1_3"] {
            mta::swaks_ok(
                &pair,
                &[
                    "--port",
                    "25",
                    "--ehlo",
                    "swaks.client.example",
                    "--tls",
                    "--tls-protocol",
                    proto,
                    "--tls-sni",
                    "exim.test.example",
                ],
            )
            .expect("swaks");
            mta::wait_quiet(&pair, Side::Server).expect("session over");
        }
    });
    let sessions: Vec<serde_json::Value> = eq
        .reference
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["record"] == "session")
        .collect();
    assert_eq!(sessions.len(), 3);
    let mta_session = sessions
        .iter()
        .find(|s| s["smtp"]["ehlo"] == "mx.client.example")
        .expect("the Postfix client's session");
    assert_eq!(
        mta_session["tls"]["client_cert_presented"], true,
        "{mta_session}"
    );
    assert_eq!(
        mta_session["tls"]["client_chain"].as_array().map(Vec::len),
        Some(2),
        "{mta_session}"
    );
    assert!(sessions
        .iter()
        .all(|s| s["smtp"]["banner_host"] == "exim.test.example"));
    println!(
        "live_equivalence[exim/postfix, {backend}]: {} records identical ({} sessions, {} certificates, {} findings); largest frame {} bytes",
        eq.compared, eq.count("session"), eq.count("certificate"), eq.count("finding"), eq.largest_frame
    );
}

/// Several interfaces: the veth carries sessions from the client, the server's loopback a local
/// session; `--iface` names both. (802.1Q tags are not exercised here: this machine's kernel
/// has no VLAN driver; the filter's tagged branch is checked against a tagged frame in
/// monitor/src/capture/pcap.rs and the decoder's in the offline tests.)
fn several_interfaces(backend: &str, prefix: &str, subnet: u8, metrics_port: u16) {
    if !mta::require_mta("live_equivalence") {
        return;
    }
    let work = WorkDir::new(&format!("live-eq-ifaces-{backend}")).expect("work dir");
    let pair = NetnsPair::create(prefix, subnet).expect("namespaces");
    pair.set_offloads(true).expect("offloads on");
    let server = pair.server_ip.to_string();
    let mut opts = PostfixOpts::cert("srv_both");
    opts.main_cf = vec![format!("inet_interfaces = {server}, 127.0.0.1")];
    let _pf = Postfix::start(&pair, work.join("postfix"), &opts).expect("postfix");
    let f = vec![
        "--local-net".to_string(),
        format!("{server}/32,127.0.0.1/32"),
        "--trust-anchors".into(),
        certs_dir().join("root-ca.crt").display().to_string(),
    ];
    let tls = [
        "--port",
        "25",
        "--tls",
        "--tls-protocol",
        "tlsv1_2",
        "--tls-sni",
        "mx.test.example",
    ];
    let eq = live::equivalence_on(
        &pair,
        &work.path,
        backend,
        &["lo"],
        &f,
        metrics_port,
        3,
        || {
            for (side, to, ehlo) in [
                (Side::Client, server.as_str(), "veth.client.example"),
                (Side::Client, server.as_str(), "again.client.example"),
                (Side::Server, "127.0.0.1", "local.client.example"),
            ] {
                let mut args = tls.to_vec();
                args.extend(["--ehlo", ehlo]);
                mta::swaks_from_ok(&pair, side, to, &args).expect("swaks");
                mta::wait_quiet(&pair, Side::Server).expect("session over");
            }
        },
    );
    for (ip, ehlo) in [
        (server.as_str(), "veth.client.example"),
        (server.as_str(), "again.client.example"),
        ("127.0.0.1", "local.client.example"),
    ] {
        assert!(
            eq.reference
                .iter()
                .any(|l| l.contains(&format!("\"server_ip\":\"{ip}\""))
                    && l.contains(&format!("\"ehlo\":\"{ehlo}\""))
                    && l.contains("\"outcome\":\"established\"")),
            "no established session of {ehlo} to {ip}: {:?}",
            eq.reference
        );
    }
    println!(
        "live_equivalence[veth+lo, {backend}]: {} records identical ({} sessions, {} certificates)",
        eq.compared,
        eq.count("session"),
        eq.count("certificate")
    );
}

/// The pcap and eBPF runs of one scenario share its namespace pair, one after the other.
static POSTFIX_PAIR: Mutex<()> = Mutex::new(());
static EXIM_PAIR: Mutex<()> = Mutex::new(());

#[test]
fn pcap_capture_of_postfix_and_swaks_matches_reading_a_tcpdump_capture() {
    let _pair = live::serial(&POSTFIX_PAIR);
    postfix_swaks("pcap", "mxlv0", 30, 19300);
}

#[test]
fn ebpf_capture_of_postfix_and_swaks_matches_reading_a_tcpdump_capture() {
    if !require_ebpf("ebpf_capture_of_postfix_and_swaks_matches_reading_a_tcpdump_capture") {
        return;
    }
    let _pair = live::serial(&POSTFIX_PAIR);
    postfix_swaks("ebpf", "mxlv0", 30, 19300);
}

#[test]
fn pcap_capture_of_exim_and_a_postfix_client_matches_reading_a_tcpdump_capture() {
    let _pair = live::serial(&EXIM_PAIR);
    exim_postfix("pcap", "mxlv5", 35, 19305);
}

#[test]
fn ebpf_capture_of_exim_and_a_postfix_client_matches_reading_a_tcpdump_capture() {
    if !require_ebpf("ebpf_capture_of_exim_and_a_postfix_client_matches_reading_a_tcpdump_capture")
    {
        return;
    }
    let _pair = live::serial(&EXIM_PAIR);
    exim_postfix("ebpf", "mxlv5", 35, 19305);
}

#[test]
fn pcap_capture_on_several_interfaces_matches_reading_tcpdump_captures() {
    several_interfaces("pcap", "mxlv6", 36, 19306);
}
