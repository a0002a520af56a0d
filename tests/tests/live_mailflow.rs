//! Mail flow with mxcert attached: a 5 MiB message sent after STARTTLS is delivered
//! byte-identical, and the pipeline stops reading the flow once the handshake is over (the
//! session record counts only the handshake's bytes). With libpcap every packet of the port
//! still crosses into user space, which the source counters show; the in-kernel cutoff that
//! keeps those bytes out belongs to the eBPF backend.

use std::time::Duration;

use mxcert_system_tests::live::{self, Capture};
use mxcert_system_tests::mta::{self, Postfix, PostfixOpts, WorkDir};
use mxcert_system_tests::netns::{NetnsPair, Side};

const METRICS_PORT: u16 = 19310;
/// The message body size: well beyond anything a handshake needs.
const BODY: usize = 5 * 1024 * 1024;
/// What a decided flow may cost the pipeline: the handshake only.
const HANDSHAKE_BOUND: u64 = 64 * 1024;

/// A deterministic RFC 5322 message of about `BODY` bytes: 76-character lines of letters and
/// digits (no dot-stuffing, no swaks %TOKEN% expansion), LF line ends.
fn message() -> Vec<u8> {
    let mut m = b"From: sender@client.example\nTo: user@test.example\nSubject: mxcert live mail flow\nMessage-ID: <live-mailflow@client.example>\n\n".to_vec();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while m.len() < BODY {
        for _ in 0..76 {
            // xorshift64: cheap, deterministic, not compressible into a pattern by accident.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        m.push(b'\n');
    }
    m
}

fn mail_flow(backend: &str, prefix: &str, subnet: u8) {
    if !mta::require_mta("live_mailflow") {
        return;
    }
    let work = WorkDir::new(&format!("live-mail-{backend}")).expect("work dir");
    let pair = NetnsPair::create(prefix, subnet).expect("namespaces");
    pair.set_offloads(true).expect("offloads on");
    let pf = Postfix::start(&pair, work.join("postfix"), &PostfixOpts::cert("srv_both"))
        .expect("postfix");
    let msg = message();
    let eml = work.join("message.eml");
    // swaks ends DATA with its own CRLF "." CRLF: the file leaves out the last line end, which
    // swaks then supplies, so what Postfix receives is exactly `msg`.
    std::fs::write(&eml, &msg[..msg.len() - 1]).expect("write message");
    let cap = Capture::start(
        &pair,
        &work.join("live.jsonl"),
        &work.join("mxcert.log"),
        &[
            "--backend",
            backend,
            "--metrics-addr",
            &format!("127.0.0.1:{METRICS_PORT}"),
        ],
    )
    .expect("mxcert capture");
    mta::swaks_ok(
        &pair,
        &[
            "--port",
            "25",
            "--ehlo",
            "big.client.example",
            "--tls",
            "--tls-protocol",
            "tlsv1_2",
            "--tls-sni",
            "mx.test.example",
            "--data",
            eml.to_str().unwrap(),
        ],
    )
    .expect("swaks sends 5 MiB over STARTTLS");
    mta::wait_quiet(&pair, Side::Server).expect("session over");
    let delivered = pf.delivered(1, Duration::from_secs(30)).expect("delivered");
    let got = &delivered[0];
    // Postfix prepends its Received: header; everything after it is the message as sent.
    assert!(
        got.len() > msg.len() && got.ends_with(&msg),
        "delivered message ({} bytes) is not the sent one ({} bytes) plus Postfix's header",
        got.len(),
        msg.len()
    );
    let added = String::from_utf8_lossy(&got[..got.len() - msg.len()]);
    assert!(
        added.starts_with("Received: "),
        "unexpected prefix: {added}"
    );

    let b = format!("{{backend=\"{backend}\"}}");
    let scrape = live::scrape_when(&pair, METRICS_PORT, |t| {
        live::metric(t, "mxcert_sessions_total{outcome=\"established\"}") == Some(1)
    })
    .expect("metrics");
    let user_bytes = live::metric(&scrape, &format!("mxcert_source_bytes_total{b}")).unwrap_or(0);
    let status = cap.stop("TERM").expect("mxcert stops");
    let log = std::fs::read_to_string(work.join("mxcert.log")).unwrap_or_default();
    assert!(status.success(), "mxcert exit {status}\n{log}");

    let recs = live::sorted_records(&work.join("live.jsonl")).expect("records");
    let sessions: Vec<serde_json::Value> = recs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["record"] == "session")
        .collect();
    assert_eq!(sessions.len(), 1, "{recs:?}");
    let s = &sessions[0];
    assert_eq!(s["outcome"], "established", "{s}");
    let parsed = s["bytes"].as_u64().unwrap_or(u64::MAX);
    // The pipeline read the handshake and nothing of the 5 MiB that followed.
    assert!(
        parsed < HANDSHAKE_BOUND,
        "pipeline parsed {parsed} bytes of the flow"
    );
    if backend == "ebpf" {
        // In-kernel cutoff: the encrypted body never crossed into user space.
        assert!(
            user_bytes < HANDSHAKE_BOUND,
            "{user_bytes} bytes crossed into user space (cutoff failed)\n{scrape}"
        );
    } else {
        // libpcap copies every packet of the port: the body crossed, the pipeline ignored it.
        assert!(
            user_bytes > BODY as u64,
            "pcap delivered only {user_bytes} bytes\n{scrape}"
        );
    }
    println!(
        "live_mailflow[{backend}]: {} byte message delivered identical; pipeline parsed {parsed} bytes; {user_bytes} bytes crossed into user space",
        msg.len()
    );
}

/// The pcap and eBPF runs share one namespace pair, one after the other.
static PAIR: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn pcap_capture_leaves_mail_intact_and_stops_parsing_after_the_handshake() {
    let _pair = live::serial(&PAIR);
    mail_flow("pcap", "mxlv1", 31);
}

#[test]
fn ebpf_capture_leaves_mail_intact_and_keeps_the_body_in_the_kernel() {
    if !mxcert_system_tests::ebpf::require_ebpf(
        "ebpf_capture_leaves_mail_intact_and_keeps_the_body_in_the_kernel",
    ) {
        return;
    }
    let _pair = live::serial(&PAIR);
    mail_flow("ebpf", "mxlv1", 31);
}
