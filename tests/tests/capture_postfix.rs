//! Issue #8's Postfix acceptance on what mxcert writes: `mxcert capture --backend ebpf
//! --tls-library auto` in the server namespace, started BEFORE the two Postfix hosts of
//! [`postfix_pair`] (so their smtpd/smtp processes are covered through exec tracking, as on a
//! gateway whose MTA restarts), mail over TLS 1.3 with client certificates both ways, and a
//! tcpdump of the same traffic as the independent view of what happened on the wire.
//!
//! - Every port-25 connection between the hosts in the tcpdump has exactly one session record
//!   (same 4-tuple), TLS 1.3, whose server and client chains are the ones the two hosts were
//!   configured with (SHA-256 of each DER, leaf first), read through the library
//!   (`chain_source = "uprobe"`), while the wire shows no Certificate message and no
//!   certificate byte. A process named `smtpd` loading the system CA bundle meanwhile puts no
//!   certificate of it into any record. The 1 MiB message arrives byte-identical; SIGTERM ends
//!   mxcert with status 0 and its programs with it.
//! - Resumption: Postfix A keeps its TLS sessions (`smtp_tls_session_cache_database`), B's
//!   smtpd issues TLS 1.3 tickets; the second delivery resumes (the tcpdump shows the
//!   ServerHello's pre_shared_key) and its record is marked resumed, carrying the first
//!   session's chains and id.
//!
//! Addresses 198.18.80-84.x, namespaces `mxp*`, ports 19550-19599 (this file's range).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use mxcert::capture::tlslib::DEFAULT_COMMS;
use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::live::{self, Capture};
use mxcert_system_tests::mta::{require_mta, wait_for, wait_quiet, Tcpdump, WorkDir};
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::postfix_pair::{body_of, message, mtas, noise, Host, BUNDLE};
use mxcert_system_tests::records::{
    chain_hex, findings_of, hex, loaded, programs_of, records, strings,
};
use mxcert_system_tests::tlswire::{connections, contains, tls_direction, Connection};
use mxcert_system_tests::uprobe::{
    assert_no_cleartext_certificates, der_hashes, library_capture, pem_ders,
};

/// One Postfix pair at a time: two pairs plus a daemon each slow a 2-core machine past the
/// daemon's 2 s library wait.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// TLS 1.3 (RFC 8446 §4.2.1).
const TLS13: u16 = 0x0304;

/// `mxcert capture` on the server namespace's interface, SMTP on 25 only, the probes on with
/// the default allow-list, the fixture root as trust anchor, metrics on `metrics`.
fn capture(pair: &NetnsPair, work: &WorkDir, metrics: u16) -> Capture {
    // Built before anything is timed.
    live::mxcert_bin().expect("mxcert binary");
    // The daemon's default allow-list (smtpd, smtp, exim, exim4, tlsmgr).
    let cap = library_capture(
        pair,
        (&work.join("out.jsonl"), &work.join("mxcert.log")),
        "25",
        &DEFAULT_COMMS.join(","),
        metrics,
    );
    let log = cap.log_text();
    assert!(log.contains("TLS library probes on"), "{log}");
    cap
}

/// What both tests start with.
struct Run {
    _serial: std::sync::MutexGuard<'static, ()>,
    pair: NetnsPair,
    work: WorkDir,
    cap: Capture,
    /// Ends the noise process's loop.
    stop_noise: Arc<AtomicBool>,
    noisy: JoinHandle<u32>,
    dump: Tcpdump,
}

/// One test at a time: a namespace pair, a work dir, `mxcert capture` (see [`capture`]), the
/// noise process (see [`noise`]) once mxcert attached its probes to the library files through
/// it (see [`wait_attached`]), and tcpdump. `None` (skipped) without Postfix or eBPF.
fn start(test: &str, prefix: &str, subnet: u8, metrics: u16) -> Option<Run> {
    if !require_mta(test) || !require_ebpf(test) {
        return None;
    }
    let serial = live::serial(&SERIAL);
    let pair = NetnsPair::create(prefix, subnet).expect("namespaces");
    let work = WorkDir::new(test).expect("work dir");
    let cap = capture(&pair, &work, metrics);
    let stop_noise = Arc::new(AtomicBool::new(false));
    let noisy = noise(&work.join("noise"), stop_noise.clone());
    wait_attached(&pair, metrics);
    let dump = Tcpdump::start(&pair, Side::Server, work.join("wire.pcap")).expect("tcpdump");
    Some(Run {
        _serial: serial,
        pair,
        work,
        cap,
        stop_noise,
        noisy,
        dump,
    })
}

/// The port-25 connections between the two hosts in the tcpdump, in SYN order.
fn smtp_connections(pcap: &Path, a: &Host, b: &Host) -> Vec<Connection> {
    let ours =
        |s: Option<SocketAddrV4>| s.is_some_and(|s| [a.ip, b.ip].contains(&IpAddr::V4(*s.ip())));
    connections(pcap)
        .unwrap()
        .into_iter()
        .filter(|c| c.server.is_some_and(|s| s.port() == 25) && ours(c.client) && ours(c.server))
        .collect()
}

/// The one session record of connection `c` (its 4-tuple).
fn record_of<'a>(recs: &'a [Value], c: &Connection) -> &'a Value {
    let (client, server) = (c.client.unwrap(), c.server.unwrap());
    let found: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["record"] == "session"
                && r["client_ip"] == client.ip().to_string()
                && r["client_port"] == client.port()
                && r["server_ip"] == server.ip().to_string()
                && r["server_port"] == server.port()
        })
        .collect();
    assert_eq!(found.len(), 1, "one session record of {client} -> {server}");
    found[0]
}

/// What the server sent in clear after STARTTLS: TLS 1.3, and no Certificate message and no
/// certificate of either host in either direction.
fn server_hello(c: &Connection, hosts: [&Host; 2]) -> mxcert_system_tests::tlswire::TlsDirection {
    for (bytes, who) in [(&c.to_server, "client"), (&c.to_client, "server")] {
        for der in hosts.iter().flat_map(|h| &h.chain) {
            assert!(!contains(bytes, der), "{who}: a certificate in cleartext");
        }
        let d = tls_direction(bytes).unwrap_or_else(|| panic!("{who} never started TLS: {c:?}"));
        assert!(
            !d.clear_handshakes.contains(&11),
            "{who}: cleartext Certificate message: {d:?}"
        );
        assert!(d.encrypted_records > 0, "{who}: {d:?}");
    }
    let d = tls_direction(&c.to_client).unwrap();
    assert_eq!(d.selected_version, Some(TLS13), "{d:?}");
    d
}

/// Stops mxcert with SIGTERM: exit 0, its BPF programs unloaded within 10 s.
fn stop(cap: Capture) {
    let ids: Vec<u32> = programs_of(cap.pid()).iter().map(|p| p.0).collect();
    assert!(ids.len() >= 5, "mxcert's programs: {ids:?}");
    let log = cap.log.clone();
    let st = cap.stop("TERM").expect("stop mxcert");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.success(), "mxcert exit {st:?}:\n{text}");
    wait_for(
        "mxcert's programs to unload",
        Duration::from_secs(10),
        || loaded(&ids).is_empty(),
    )
    .unwrap_or_else(|_| panic!("still loaded after SIGTERM: {:?}", loaded(&ids)));
}

/// Waits until mxcert attached its probes to libssl and libcrypto, which happens when the
/// first allow-listed process mapping them is adopted after its exec. On a gateway the MTA's
/// processes keep the files attached across its restarts; a handshake that completes before
/// the first attach (tens of milliseconds after the first such exec) is not seen.
fn wait_attached(pair: &NetnsPair, metrics: u16) {
    let t = live::scrape_when(pair, metrics, |t| {
        live::metric(t, "mxcert_tls_library_attached_files").unwrap_or(0) >= 2
    })
    .expect("metrics");
    assert!(
        metric(&t, "mxcert_tls_library_attached_files") >= 2,
        "libssl and libcrypto attached after an allow-listed exec: {t}"
    );
}

/// The TLS-library families of a scrape, on stderr (the figures of a run).
fn print_library_metrics(scrape: &str) {
    for l in scrape.lines().filter(|l| l.starts_with("mxcert_tls")) {
        eprintln!("{l}");
    }
}

fn metric(text: &str, sample: &str) -> u64 {
    live::metric(text, sample).unwrap_or_else(|| panic!("no {sample} in:\n{text}"))
}

#[test]
fn postfix_tls13_session_records_carry_the_configured_chains() {
    const METRICS: u16 = 19550;
    let Some(Run {
        _serial,
        pair,
        work,
        cap,
        stop_noise,
        noisy,
        dump,
    }) = start("capture_postfix", "mxp", 80, METRICS)
    else {
        return;
    };
    let t0 = Instant::now();
    let (a, b) = mtas(&pair, &work, &[]);

    let (small_ab, _) = message("x@client.example", "u@test.example", "mxp a to b", 2_000);
    let (small_ba, _) = message("x@test.example", "u@client.example", "mxp b to a", 2_000);
    let (big, big_body) = message("x@client.example", "u@test.example", "mxp 1 MiB", 1 << 20);
    a.postfix.sendmail("u@test.example", &small_ab).unwrap();
    b.postfix.sendmail("u@client.example", &small_ba).unwrap();
    a.postfix.sendmail("u@test.example", &big).unwrap();
    let at_b = b.postfix.delivered(2, Duration::from_secs(40)).unwrap();
    let at_a = a.postfix.delivered(1, Duration::from_secs(40)).unwrap();
    wait_quiet(&pair, Side::Server).expect("the SMTP connections closed");
    let mail_done = t0.elapsed();
    // The records of closed sessions go out once their chains joined (at most the daemon's
    // 2 s library wait later).
    let scrape = live::scrape_when(&pair, METRICS, |t| {
        live::metric(t, "mxcert_tls_library_chains_attached_total").unwrap_or(0) >= 6
    })
    .expect("metrics");
    stop_noise.store(true, Ordering::Relaxed);
    let runs = noisy.join().unwrap();
    stop(cap);
    let pcap = dump.stop().unwrap();
    eprintln!("capture_postfix: mail done after {mail_done:?}, noise runs {runs}");

    // The 1 MiB body arrives byte-identical with the probes attached.
    let big_at_b = at_b
        .iter()
        .find(|m| contains(m, b"Subject: mxp 1 MiB"))
        .expect("the 1 MiB message at B");
    assert!(
        body_of(big_at_b) == big_body.as_slice(),
        "the 1 MiB body differs after delivery"
    );
    assert!(at_b.iter().any(|m| contains(m, b"Subject: mxp a to b")));
    assert!(at_a.iter().any(|m| contains(m, b"Subject: mxp b to a")));

    // The wire: TLS 1.3 in both directions between the hosts, no certificate in clear.
    let conns = smtp_connections(&pcap, &a, &b);
    let server_of = |c: &Connection| IpAddr::V4(*c.server.unwrap().ip());
    assert!(
        conns.iter().any(|c| server_of(c) == b.ip) && conns.iter().any(|c| server_of(c) == a.ip),
        "sessions in both directions: {conns:?}"
    );
    for c in &conns {
        server_hello(c, [&a, &b]);
    }
    assert_no_cleartext_certificates(&pcap, &[a.chain_name, b.chain_name]);

    // The records: one session per connection, the configured chains through the library.
    let recs = records(&work.join("out.jsonl"));
    let host = |ip: IpAddr| if ip == a.ip { &a } else { &b };
    for c in &conns {
        let s = record_of(&recs, c);
        eprintln!("session: {s}");
        let (server, client) = (
            host(server_of(c)),
            host(IpAddr::V4(*c.client.unwrap().ip())),
        );
        let t = &s["tls"];
        assert_eq!(t["version"], "TLS1.3", "{s}");
        assert_eq!(t["chain_source"], "uprobe", "{s}");
        assert_eq!(t["resumed"], false, "{s}");
        assert_eq!(
            strings(&t["server_chain"]),
            chain_hex(server.chain_name),
            "{s}"
        );
        assert_eq!(
            strings(&t["client_chain"]),
            chain_hex(client.chain_name),
            "{s}"
        );
        assert_eq!(t["client_cert_presented"], true, "{s}");
        assert!(
            findings_of(&recs, &s["session_id"], "tls.v13_uninspectable").is_empty(),
            "read through the library: not uninspectable ({s})"
        );
    }

    // Noise: seen and dropped in the kernel; no certificate of the bundle in any record
    // (session chains, certificate records, findings).
    assert!(runs >= 1);
    let bundle: HashSet<String> = der_hashes(&pem_ders(Path::new(BUNDLE)).unwrap())
        .iter()
        .map(hex)
        .collect();
    assert!(bundle.len() > 50);
    let text = std::fs::read_to_string(work.join("out.jsonl")).unwrap();
    for id in &bundle {
        assert!(
            !text.contains(id.as_str()),
            "CA bundle certificate {id} in the records"
        );
    }

    // The certificates mxcert recorded are exactly the two hosts' chains: no other chain
    // joined these sessions.
    let certs: HashSet<String> = recs
        .iter()
        .filter(|r| r["record"] == "certificate")
        .map(|r| r["sha256"].as_str().expect("sha256").to_string())
        .collect();
    let configured: HashSet<String> = chain_hex(a.chain_name)
        .into_iter()
        .chain(chain_hex(b.chain_name))
        .collect();
    assert_eq!(certs, configured, "certificate records");

    // The metrics tell the same story (the probes are host-wide: at least ours).
    print_library_metrics(&scrape);
    let n = conns.len() as u64;
    assert!(metric(&scrape, "mxcert_tls_library_chains_attached_total") >= 2 * n);
    assert!(
        metric(
            &scrape,
            "mxcert_tls_library_handshakes_total{peer=\"chain\"}"
        ) >= 2 * n
    );
    // smtpd and smtp on each host, the noise process.
    assert!(
        metric(
            &scrape,
            "mxcert_tls_library_processes_total{event=\"exec\"}"
        ) >= 5
    );
    assert!(
        metric(
            &scrape,
            "mxcert_tls_library_filtered_total{reason=\"outside_ssl_call\"}"
        ) >= 100 * u64::from(runs.min(1)),
        "the bundle loads dropped in the kernel"
    );
    for cause in [
        "ring_full",
        "read_error",
        "truncated",
        "bad_record",
        "no_socket",
    ] {
        assert_eq!(
            metric(
                &scrape,
                &format!("mxcert_tls_library_lost_total{{cause=\"{cause}\"}}")
            ),
            0,
            "{cause}"
        );
    }
}

#[test]
fn resumed_postfix_session_carries_the_full_handshakes_chains() {
    const METRICS: u16 = 19551;
    let Some(run) = start("capture_postfix_resumed", "mxp1", 81, METRICS) else {
        return;
    };
    run.stop_noise.store(true, Ordering::Relaxed);
    run.noisy.join().unwrap();
    let Run {
        _serial,
        pair,
        work,
        cap,
        dump,
        ..
    } = run;
    // A keeps the sessions it made (through tlsmgr); B's smtpd issues TLS 1.3 tickets by
    // default (smtpd_tls_session_cache_timeout 3600 s, ticket keys from tlsmgr). One
    // connection per delivery: no connection cache.
    let (a, b) = mtas(
        &pair,
        &work,
        &[
            "smtp_tls_session_cache_database = btree:$data_directory/smtp_scache".into(),
            "smtp_connection_cache_on_demand = no".into(),
        ],
    );
    let t0 = Instant::now();
    for n in 1..=2 {
        let (m, _) = message(
            "x@client.example",
            "u@test.example",
            &format!("mxp resumption {n}"),
            2_000,
        );
        a.postfix.sendmail("u@test.example", &m).unwrap();
        b.postfix.delivered(n, Duration::from_secs(30)).unwrap();
        wait_quiet(&pair, Side::Server).expect("the SMTP connection closed");
    }
    let mail_done = t0.elapsed();
    // How long the resumed session's record waits: the library hands out nothing for a
    // resumed handshake, so it is held for the daemon's whole library wait (2 s), then
    // written at the next flush (every second). A figure, not asserted.
    let closed = Instant::now();
    let sessions = || {
        records(&work.join("out.jsonl"))
            .iter()
            .filter(|r| r["record"] == "session")
            .count()
    };
    wait_for("both session records", Duration::from_secs(10), || {
        sessions() >= 2
    })
    .expect("records written");
    eprintln!(
        "capture_postfix_resumed: resumed record written {:?} after its connection closed",
        closed.elapsed()
    );
    let scrape = live::scrape_when(&pair, METRICS, |t| {
        live::metric(t, "mxcert_tls_library_handshakes_total{peer=\"resumed\"}").unwrap_or(0) >= 2
    })
    .expect("metrics");
    stop(cap);
    let pcap = dump.stop().unwrap();
    eprintln!("capture_postfix_resumed: mail done after {mail_done:?}");
    print_library_metrics(&scrape);

    // The wire: two sessions A -> B, the first a full handshake, the second resumed with a PSK;
    // no certificate in clear in either.
    let conns = smtp_connections(&pcap, &a, &b);
    assert_eq!(conns.len(), 2, "two deliveries, two connections: {conns:?}");
    let hellos: Vec<_> = conns.iter().map(|c| server_hello(c, [&a, &b])).collect();
    assert!(
        !hellos[0].psk_selected,
        "the first is a full handshake: {:?}",
        hellos[0]
    );
    assert!(
        hellos[1].psk_selected,
        "the second resumed: {:?}",
        hellos[1]
    );
    assert_no_cleartext_certificates(&pcap, &[a.chain_name, b.chain_name]);

    let recs = records(&work.join("out.jsonl"));
    let (full, resumed) = (record_of(&recs, &conns[0]), record_of(&recs, &conns[1]));
    eprintln!("full: {full}\nresumed: {resumed}");
    let (f, r) = (&full["tls"], &resumed["tls"]);
    assert_eq!(f["chain_source"], "uprobe", "{full}");
    assert_eq!(f["resumed"], false, "{full}");
    assert_eq!(strings(&f["server_chain"]), chain_hex(b.chain_name));
    assert_eq!(strings(&f["client_chain"]), chain_hex(a.chain_name));
    assert_eq!(r["version"], "TLS1.3", "{resumed}");
    assert_eq!(r["resumed"], true, "{resumed}");
    assert_eq!(r["chain_source"], "resumed", "{resumed}");
    assert_eq!(r["resumed_from"], full["session_id"], "{resumed}");
    assert_eq!(r["server_chain"], f["server_chain"], "{resumed}");
    assert_eq!(r["client_chain"], f["client_chain"], "{resumed}");
    for s in [full, resumed] {
        assert!(
            findings_of(&recs, &s["session_id"], "tls.v13_uninspectable").is_empty(),
            "{s}"
        );
    }
    // Both ends of the resumed handshake (A's smtp, B's smtpd) ended it with a peer
    // certificate they did not parse.
    assert!(
        metric(
            &scrape,
            "mxcert_tls_library_handshakes_total{peer=\"resumed\"}"
        ) >= 2
    );
}
