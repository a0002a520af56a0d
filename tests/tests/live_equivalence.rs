//! Live capture equals offline reading: real Postfix and swaks sessions between two namespaces
//! (STARTTLS on 25 and 587, implicit TLS on 465, TLS 1.2 with a client certificate, TLS 1.3,
//! plaintext, and a large chain sent as one GSO super-packet because offloads are on) are
//! captured by `mxcert capture` and, at the same time, by tcpdump; `mxcert read` of tcpdump's
//! file must produce exactly the same session, certificate and finding records.

use std::time::Duration;

use mxcert_system_tests::live::{self, Capture};
use mxcert_system_tests::mta::{self, certs_dir, Postfix, PostfixOpts, Tcpdump, WorkDir};
use mxcert_system_tests::netns::{require_root, NetnsPair, Side};

const METRICS_PORT: u16 = 19300;

fn equivalence(backend: &str, prefix: &str, subnet: u8) {
    if !require_root("live_equivalence") {
        return;
    }
    let work = WorkDir::new(&format!("live-eq-{backend}")).expect("work dir");
    let pair = NetnsPair::create(prefix, subnet).expect("namespaces");
    // What a gateway's libpcap and TC hook see: TSO/GSO super-packets up to 64 KiB.
    pair.set_offloads(true).expect("offloads on");
    let c = certs_dir();
    let server_ip = pair.server_ip.to_string();
    let pf = Postfix::start(
        &pair,
        work.join("postfix"),
        &PostfixOpts {
            chain_files: vec![c.join("srv_both.key"), c.join("srv_both.chain.pem")],
            // leaf + intermediate + 4 more CA certificates: ~7 KB in one TLS flight.
            smtps_chain_files: vec![
                c.join("srv_both.key"),
                c.join("srv_both.chain.pem"),
                c.join("root-ca.crt"),
                c.join("inta-ca.crt"),
                c.join("intb-ca.crt"),
                c.join("other-ca.crt"),
            ],
            main_cf: vec![
                "smtpd_tls_ask_ccert = yes".into(),
                format!("smtpd_tls_CAfile = {}", c.join("root-ca.crt").display()),
            ],
        },
    )
    .expect("postfix");
    let flags: Vec<String> = vec![
        "--local-net".into(),
        format!("{server_ip}/32"),
        "--trust-anchors".into(),
        c.join("root-ca.crt").display().to_string(),
        "--all-findings".into(),
    ];
    let tcpdump = Tcpdump::start(&pair, Side::Server, work.join("ref.pcap")).expect("tcpdump");
    let mut live_args = flags.clone();
    live_args.extend([
        "--backend".into(),
        backend.into(),
        "--metrics-addr".into(),
        format!("127.0.0.1:{METRICS_PORT}"),
    ]);
    let cap = Capture::start(
        &pair,
        &work.join("live.jsonl"),
        &work.join("mxcert.log"),
        &live_args,
    )
    .expect("mxcert capture");

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
    for s in &sessions {
        mta::swaks_ok(&pair, s).expect("swaks delivers");
        mta::wait_quiet(&pair, Side::Server).expect("session over");
    }
    // Postfix delivered every message (the capture changed nothing on the way).
    let mail = pf
        .delivered(sessions.len(), Duration::from_secs(20))
        .expect("delivered");
    assert_eq!(mail.len(), sessions.len());

    std::thread::sleep(Duration::from_millis(500));
    let scrape = live::scrape(&pair, METRICS_PORT).expect("metrics");
    let established = live::metric(&scrape, "mxcert_sessions_total{outcome=\"established\"}");
    assert_eq!(established, Some(5), "metrics:\n{scrape}");
    let pkts = live::metric(
        &scrape,
        &format!("mxcert_source_packets_total{{backend=\"{backend}\"}}"),
    );
    assert!(pkts.unwrap_or(0) > 50, "metrics:\n{scrape}");

    let status = cap.stop("TERM").expect("mxcert stops on SIGTERM");
    let log = std::fs::read_to_string(work.join("mxcert.log")).unwrap_or_default();
    assert!(status.success(), "mxcert exit {status}:\n{log}");
    assert!(log.contains("capture stopped"), "{log}");
    let pcap = tcpdump.stop().expect("tcpdump stops");

    // Offloads produced frames larger than the MTU: the large chain crossed as a super-packet.
    let biggest = mta::pcap_frame_lengths(&pcap)
        .expect("read pcap")
        .into_iter()
        .max()
        .unwrap_or(0);
    assert!(
        biggest > 1514,
        "no GSO super-packet in the capture (largest frame {biggest})"
    );

    live::read(&pcap, &work.join("read.jsonl"), &flags).expect("mxcert read");
    let want = live::sorted_records(&work.join("read.jsonl")).expect("read records");
    let count = |v: &[String], kind: &str| {
        v.iter()
            .filter(|l| l.starts_with(&format!("{{\"record\":\"{kind}\"")))
            .count()
    };
    assert_eq!(
        count(&want, "session"),
        sessions.len(),
        "reference:\n{}",
        want.join("\n")
    );
    assert!(
        count(&want, "certificate") >= 6,
        "reference:\n{}",
        want.join("\n")
    );
    assert!(
        count(&want, "finding") > 0,
        "reference:\n{}",
        want.join("\n")
    );
    let got = live::assert_same_records(
        &work.join("live.jsonl"),
        &work.join("read.jsonl"),
        &format!("live_equivalence[{backend}]"),
    );
    println!(
        "live_equivalence[{backend}]: {} records identical ({} sessions, {} certificates, {} findings); largest frame {biggest} bytes",
        got,
        count(&want, "session"),
        count(&want, "certificate"),
        count(&want, "finding")
    );
}

#[test]
fn pcap_capture_matches_reading_a_tcpdump_capture() {
    equivalence("pcap", "mxlv0", 30);
}
