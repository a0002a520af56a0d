//! Issue #8's acceptance for Exim (GnuTLS) on the records `mxcert capture --backend ebpf
//! --tls-library auto` writes: Exim 4.96 (GnuTLS 3.7) as server and as client, TLS 1.3, client
//! certificates requested, in two network namespaces, mxcert started before the MTAs:
//! - Exim server <- Postfix client presenting leaf + intermediate: the server chain read through
//!   Postfix smtp's OpenSSL, the client chain through Exim's GnuTLS;
//! - Exim server <- swaks presenting its leaf only, and <- swaks presenting none (GnuTLS's
//!   "no certificate" answer: `client_cert_presented` false, still `chain_source` "uprobe");
//! - Exim client -> Postfix server (`smtpd_tls_ask_ccert`): the server chain through Exim's
//!   GnuTLS, Exim's leaf + intermediate through smtpd's OpenSSL.
//!
//! Every session record must carry the configured chains certificate by certificate (SHA-256
//! of the DER), `chain_source` "uprobe" and no `tls.v13_uninspectable`, one record per TCP
//! connection of a tcpdump of the same traffic, which shows TLS 1.3, no cleartext Certificate
//! message and no certificate byte; `openssl crl2pkcs7` loading the system CA bundle in a
//! bounded loop meanwhile (an allow-listed name) must leave no CA-bundle certificate in any
//! record; the mail must be delivered.
//!
//! Addresses 198.18.85-89.x, namespaces `mxe*`, ports 19600-19649 (this file's range).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::live::{self, serial};
use mxcert_system_tests::mta::{
    certs_dir, exim_root, require_exim, swaks_ok, wait_for, wait_quiet, Exim, EximClient, Postfix,
    PostfixOpts, Tcpdump, WorkDir,
};
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::records::{
    chain_hex, findings_of, hex, records, sessions_between, strings,
};
use mxcert_system_tests::tlswire::{connections, tls_direction};
use mxcert_system_tests::uprobe::{
    assert_no_cleartext_certificates, ca_bundle_noise, der_hashes, library_capture, pem_ders,
    Killed,
};
use serde_json::Value;

/// The tests of this file run one at a time: each runs two MTAs, mxcert and the noise, and a
/// second set at once would slow the 2-core machine's ring reading past `library_wait`.
static SERIAL: Mutex<()> = Mutex::new(());

/// Process names probed: Exim, Postfix's smtpd/smtp, swaks (a Perl script: its comm is the
/// script's name), and openssl (the noise and the library holder).
const PROCESSES: &str = "exim4,smtpd,smtp,swaks,openssl";
/// The system CA bundle [`ca_bundle_noise`] loads.
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// TLS 1.3 (RFC 8446 §4.2.1).
const TLS13: u16 = 0x0304;
/// Certificate (RFC 8446 §4).
const CERTIFICATE: u8 = 11;

/// What one run saw.
struct Seen {
    recs: Vec<Value>,
    pcap: PathBuf,
    scrape: String,
    noise_runs: u32,
}

/// Runs `traffic` while `mxcert capture` (started first, before `mtas` starts the MTAs),
/// tcpdump on the server's interface and the CA-bundle noise run; waits until the output holds
/// `sessions` session records of this pair, stops everything (mxcert with SIGTERM, exit 0).
/// `holder` maps the TLS libraries of the processes that start per connection (Postfix's
/// smtp/smtpd, swaks, Exim's delivery process) before the first of them: a process's library
/// file is attached when mxcert adopts it after its exec, which can lose the race against a
/// handshake made at once (an MTA's long-lived processes hold the files on a gateway).
fn capture<M>(
    pair: &NetnsPair,
    work: &WorkDir,
    metrics: u16,
    mtas: impl FnOnce() -> M,
    holder: &mut Command,
    sessions: usize,
    traffic: impl FnOnce(&M),
) -> Seen {
    let (out, log) = (work.join("out.jsonl"), work.join("mxcert.log"));
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("capture_exim: {what} at {:?}", t0.elapsed());
    let cap = library_capture(pair, (&out, &log), "25", PROCESSES, metrics);
    assert!(cap.log_text().contains("TLS library probes on"));
    let dump = Tcpdump::start(pair, Side::Server, work.join("wire.pcap")).expect("tcpdump");
    phase("mxcert and tcpdump started");
    let m = mtas();
    phase("MTAs started");
    let _held = Killed(
        holder
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("library holder"),
    );
    // libssl, libcrypto (the holder's or Postfix's) and libgnutls (Exim's).
    let t = live::scrape_when(pair, metrics, |t| {
        live::metric(t, "mxcert_tls_library_attached_files").unwrap_or(0) >= 3
    })
    .expect("metrics");
    assert!(
        live::metric(&t, "mxcert_tls_library_attached_files").unwrap_or(0) >= 3,
        "libssl, libcrypto and libgnutls attached: {t}\n{}",
        cap.log_text()
    );
    phase("libraries attached");
    let stop = Arc::new(AtomicBool::new(false));
    let noise: JoinHandle<u32> = ca_bundle_noise(stop.clone());
    let started = Instant::now();
    traffic(&m);
    phase("traffic over");
    wait_quiet(pair, Side::Server).expect("sessions over");
    assert!(
        !noise.is_finished(),
        "the noise ran throughout the traffic ({:?})",
        started.elapsed()
    );
    let (client, server) = (pair.client_ip.to_string(), pair.server_ip.to_string());
    // Written while mxcert runs (chains joined, not only flushed at the stop).
    let written = wait_for("the session records", Duration::from_secs(10), || {
        sessions_between(&records(&out), &client, &server, 25).len() >= sessions
    });
    phase("records written");
    let scrape = live::scrape(pair, metrics).expect("metrics");
    let nonzero: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("mxcert_tls_library") && !l.ends_with(" 0"))
        .collect();
    eprintln!("capture_exim: {}", nonzero.join(", "));
    stop.store(true, Ordering::Relaxed);
    let noise_runs = noise.join().expect("noise");
    let st = cap.stop("TERM").expect("mxcert stops");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.success(), "mxcert exit {st:?}:\n{text}");
    written.unwrap_or_else(|e| panic!("{e}:\n{scrape}\n{text}"));
    drop(m);
    let pcap = dump.stop().expect("tcpdump stop");
    phase("stopped");
    Seen {
        recs: records(&out),
        pcap,
        scrape,
        noise_runs,
    }
}

/// `openssl dgst` reading its stdin: maps libssl and libcrypto (allow-listed name).
fn openssl_holder() -> Command {
    let mut c = Command::new("openssl");
    c.args(["dgst", "-sha256"]);
    c
}

/// What a session must carry.
struct Want<'a> {
    ehlo: &'a str,
    server_chain: Vec<String>,
    client_chain: Vec<String>,
}

/// Checks every session record of the pair against the tcpdump and `want` (one per
/// connection, matched by the EHLO name sent in cleartext before STARTTLS), and the whole
/// output against the CA bundle.
fn check(pair: &NetnsPair, seen: &Seen, want: &[Want<'_>], certs: &[&str]) {
    let t0 = Instant::now();
    let (client, server) = (pair.client_ip, pair.server_ip);
    let ours = sessions_between(&seen.recs, &client.to_string(), &server.to_string(), 25);
    let conns: Vec<_> = connections(&seen.pcap)
        .expect("read the tcpdump")
        .into_iter()
        .filter(|c| {
            c.client.is_some_and(|a| *a.ip() == client)
                && c.server
                    .is_some_and(|a| *a.ip() == server && a.port() == 25)
        })
        .collect();
    assert_eq!(conns.len(), want.len(), "connections in the tcpdump");
    assert_eq!(
        ours.len(),
        conns.len(),
        "one session record per TCP connection: {ours:#?}"
    );
    for c in &conns {
        let port = c.client.unwrap().port();
        let s = ours
            .iter()
            .find(|s| s["client_port"] == port)
            .unwrap_or_else(|| panic!("no record for client port {port}: {ours:#?}"));
        let (up, down) = (
            tls_direction(&c.to_server).expect("STARTTLS to the server"),
            tls_direction(&c.to_client).expect("STARTTLS to the client"),
        );
        assert_eq!(down.selected_version, Some(TLS13), "port {port}");
        assert!(
            !up.clear_handshakes.contains(&CERTIFICATE)
                && !down.clear_handshakes.contains(&CERTIFICATE),
            "port {port}: a cleartext Certificate message: {up:?} {down:?}"
        );
        assert!(up.encrypted_records > 0 && down.encrypted_records > 0);
        let w = want
            .iter()
            .find(|w| s["smtp"]["ehlo"] == w.ehlo)
            .unwrap_or_else(|| panic!("unexpected session {s}"));
        let t = &s["tls"];
        eprintln!(
            "session {}:{port}: {} chain_source {} client_cert_presented {} server_chain {} client_chain {}",
            client, w.ehlo, t["chain_source"], t["client_cert_presented"], t["server_chain"], t["client_chain"]
        );
        assert_eq!(t["version"], "TLS1.3", "{s}");
        assert_eq!(t["chain_source"], "uprobe", "{}: {s}", w.ehlo);
        assert_eq!(strings(&t["server_chain"]), w.server_chain, "{}", w.ehlo);
        assert_eq!(strings(&t["client_chain"]), w.client_chain, "{}", w.ehlo);
        assert_eq!(
            t["client_cert_presented"],
            !w.client_chain.is_empty(),
            "{}: {s}",
            w.ehlo
        );
        assert!(
            findings_of(&seen.recs, &s["session_id"], "tls.v13_uninspectable").is_empty(),
            "{}: read through the library, not uninspectable",
            w.ehlo
        );
    }
    let ehlos: HashSet<&str> = ours
        .iter()
        .filter_map(|s| s["smtp"]["ehlo"].as_str())
        .collect();
    assert_eq!(ehlos.len(), want.len(), "each session once: {ehlos:?}");
    assert_no_cleartext_certificates(&seen.pcap, certs);

    // No bound hit, nothing unreadable (host-wide counters: other tests' MTAs count here too,
    // but none of these is expected from any of them).
    for cause in [
        "ring_full",
        "read_error",
        "bad_record",
        "chain_overflow",
        "table_full",
    ] {
        let sample = format!("mxcert_tls_library_lost_total{{cause=\"{cause}\"}}");
        assert_eq!(live::metric(&seen.scrape, &sample), Some(0), "{sample}");
    }
    // The noise ran through the probes (its loads filtered in the kernel) and left nothing.
    assert!(seen.noise_runs >= 1);
    let outside = live::metric(
        &seen.scrape,
        "mxcert_tls_library_filtered_total{reason=\"outside_ssl_call\"}",
    )
    .unwrap_or(0);
    assert!(
        outside >= 100,
        "CA bundle loads seen and filtered: {}",
        seen.scrape
    );
    let bundle: HashSet<String> = der_hashes(&pem_ders(Path::new(BUNDLE)).expect("CA bundle"))
        .iter()
        .map(hex)
        .collect();
    assert!(
        bundle.len() >= 100,
        "{} certificates in {BUNDLE}",
        bundle.len()
    );
    let mut texts = Vec::new();
    for r in &seen.recs {
        strings_in(r, &mut texts);
    }
    let leaked: Vec<&String> = texts.iter().filter(|t| bundle.contains(*t)).collect();
    assert!(
        leaked.is_empty(),
        "CA-bundle certificates in records: {leaked:?}"
    );
    eprintln!(
        "capture_exim: {} sessions checked in {:?}, {} records, noise runs {}, CA-bundle loads filtered {outside}",
        ours.len(),
        t0.elapsed(),
        seen.recs.len(),
        seen.noise_runs
    );
}

/// Every string anywhere in a JSON value.
fn strings_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings_in(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// The prerequisites (else a printed skip, or a failure under CI), this file's turn, the
/// mxcert binary built, the namespace pair `prefix` on 198.18.`subnet`.x and a work dir.
fn setup(
    prefix: &str,
    subnet: u8,
    tag: &str,
) -> Option<(MutexGuard<'static, ()>, NetnsPair, WorkDir)> {
    if !require_ebpf("capture_exim") || !require_exim("capture_exim") {
        return None;
    }
    let turn = serial(&SERIAL);
    let t0 = Instant::now();
    live::mxcert_bin().expect("mxcert binary");
    eprintln!("capture_exim: mxcert built in {:?}", t0.elapsed());
    let pair = NetnsPair::create(prefix, subnet).expect("namespaces");
    Some((turn, pair, WorkDir::new(tag).expect("work dir")))
}

#[test]
fn exim_server_sessions_carry_the_chains_read_through_gnutls_and_openssl() {
    let Some((_serial, pair, work)) = setup("mxe", 85, "capture-exim-srv") else {
        return;
    };
    let server = pair.server_ip.to_string();
    let (pf_cli, swaks_cli) = ("cli_mta", "cli_clientauth");
    let certs = certs_dir();
    let p = |f: String| certs.join(f).to_str().unwrap().to_string();
    let (crt, key) = (p(format!("{swaks_cli}.crt")), p(format!("{swaks_cli}.key")));
    let swaks = |ehlo: &str, cert: &[&str]| {
        let mut args = vec!["--port", "25", "--ehlo", ehlo, "--tls"];
        args.extend(["--tls-protocol", "tlsv1_3"]);
        args.extend(cert);
        swaks_ok(&pair, &args).expect("swaks");
        wait_quiet(&pair, Side::Server).expect("session over");
    };
    let seen = capture(
        &pair,
        &work,
        19600,
        || {
            let exim = Exim::start(&pair, work.join("exim"), &server).expect("exim");
            let mut opts = PostfixOpts::cert(pf_cli);
            opts.relay_to = Some(pair.server_ip);
            let postfix =
                Postfix::start(&pair, work.join("postfix"), &opts).expect("postfix client");
            (exim, postfix)
        },
        &mut openssl_holder(),
        3,
        |(exim, postfix)| {
            postfix
                .sendmail(
                    "user@test.example",
                    b"Subject: postfix to exim\n\nrelayed over TLS 1.3\n",
                )
                .expect("sendmail");
            postfix
                .wait_sent(1, Duration::from_secs(30))
                .expect("Postfix relayed to Exim");
            wait_quiet(&pair, Side::Server).expect("session over");
            swaks(
                "leaf.client.example",
                &["--tls-cert", &crt, "--tls-key", &key],
            );
            swaks("nocert.client.example", &[]);
            exim.wait_received(3, Duration::from_secs(10))
                .expect("Exim received the three messages");
        },
    );
    let srv = chain_hex("srv_exim");
    assert_eq!(srv.len(), 2);
    let pf_chain = chain_hex(pf_cli);
    assert_eq!(pf_chain.len(), 2, "Postfix presents leaf + intermediate");
    check(
        &pair,
        &seen,
        &[
            Want {
                ehlo: "mx.client.example",
                server_chain: srv.clone(),
                client_chain: pf_chain,
            },
            Want {
                ehlo: "leaf.client.example",
                server_chain: srv.clone(),
                client_chain: chain_hex(swaks_cli)[..1].to_vec(),
            },
            Want {
                ehlo: "nocert.client.example",
                server_chain: srv,
                client_chain: Vec::new(),
            },
        ],
        &["srv_exim", pf_cli, swaks_cli],
    );
}

#[test]
fn exim_client_session_carries_the_chains_read_through_gnutls_and_openssl() {
    let Some((_serial, pair, work)) = setup("mxe1", 86, "capture-exim-cli") else {
        return;
    };
    let (srv, cli) = ("srv_both", "cli_clientauth");
    let server: Ipv4Addr = pair.server_ip;
    let exim =
        EximClient::new(&pair, &work.join("exim"), &server.to_string(), cli).expect("exim client");
    // `exim4 -bt` waiting on its stdin maps libgnutls (allow-listed name): Exim's delivery
    // process starts per message and handshakes at once.
    let mut holder = Command::new(exim_root().join("usr/sbin/exim4"));
    holder.arg("-C").arg(&exim.conf).arg("-bt");
    let seen = capture(
        &pair,
        &work,
        19601,
        || {
            let mut opts = PostfixOpts::cert(srv);
            opts.main_cf = vec![
                "smtpd_tls_ask_ccert = yes".into(),
                format!(
                    "smtpd_tls_CAfile = {}",
                    certs_dir().join("root-ca.crt").display()
                ),
            ];
            let postfix = Postfix::start(&pair, work.join("postfix"), &opts).expect("postfix");
            // libssl and libcrypto: smtpd starts per connection too.
            let held = Killed(
                openssl_holder()
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("openssl holder"),
            );
            (postfix, held)
        },
        &mut holder,
        1,
        |(postfix, _)| {
            let body: String = (0..200)
                .map(|i| format!("line {i} of a message through Exim and Postfix\n"))
                .collect();
            let message = format!("Subject: exim to postfix\n\n{body}");
            exim.send("user@test.example", message.as_bytes())
                .expect("Exim delivered");
            let got = postfix
                .delivered(1, Duration::from_secs(20))
                .expect("delivered");
            // The headers gain Received: lines and Exim's own; the body arrives byte-identical.
            assert!(got[0].ends_with(body.as_bytes()), "body delivered intact");
        },
    );
    check(
        &pair,
        &seen,
        &[Want {
            ehlo: "client.test.example",
            server_chain: chain_hex(srv),
            client_chain: chain_hex(cli),
        }],
        &[srv, cli],
    );
}

/// `openssl s_client -starttls smtp` from the client namespace to Exim, TLS 1.3, presenting
/// `cli` (leaf + intermediates from `int`), EHLO `name`; `sess` is `-sess_out` for the first
/// session and `-sess_in` for the resumption. It sends QUIT after a second (the ticket has
/// arrived and is saved by then) and ends.
fn s_client_to_exim(pair: &NetnsPair, name: &str, cli: &str, int: &Path, sess: [&str; 2]) {
    let certs = certs_dir();
    let p = |f: String| certs.join(f).to_str().unwrap().to_string();
    let mut c = Killed(
        pair.command(Side::Client, "openssl")
            .args(["s_client", "-starttls", "smtp", "-name", name, "-tls1_3"])
            .args(["-connect", &format!("{}:25", pair.server_ip)])
            .args([
                "-cert",
                &p(format!("{cli}.crt")),
                "-key",
                &p(format!("{cli}.key")),
            ])
            .args(["-cert_chain", int.to_str().unwrap()])
            .args(sess)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client"),
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut stdin = c.0.stdin.take().unwrap();
    let _ = std::io::Write::write_all(&mut stdin, b"QUIT\r\n");
    std::thread::sleep(Duration::from_millis(300));
    drop(stdin);
    mxcert_system_tests::mta::wait_child(&mut c.0, Duration::from_secs(10)).expect("s_client");
    wait_quiet(pair, Side::Server).expect("session over");
}

/// A TLS 1.3 session resumed with Exim (GnuTLS, `tls_resumption_hosts = *` sends tickets):
/// GnuTLS hands out the client chain it keeps with the session, OpenSSL (s_client) nothing for
/// a resumed handshake; the record of the resumed session is marked resumed, names the full
/// handshake and carries its chains on both sides. The tcpdump proves the resumption (the
/// second ServerHello selects a pre_shared_key) so the test cannot pass without one.
#[test]
fn exim_resumed_session_carries_the_full_handshakes_chains() {
    let Some((_serial, pair, work)) = setup("mxe2", 87, "capture-exim-resume") else {
        return;
    };
    let server = pair.server_ip.to_string();
    let cli = "cli_clientauth";
    let int = work.join("cli-int.pem");
    mxcert_system_tests::uprobe::intermediates(&certs_dir().join(format!("{cli}.chain.pem")), &int);
    let sess = work.join("tls13.sess");
    let sess = sess.to_str().unwrap();
    let seen = capture(
        &pair,
        &work,
        19602,
        || {
            Exim::start_with(
                &pair,
                work.join("exim"),
                &server,
                &["tls_resumption_hosts = *"],
            )
            .expect("exim")
        },
        &mut openssl_holder(),
        2,
        |_| {
            s_client_to_exim(&pair, "full.client.example", cli, &int, ["-sess_out", sess]);
            assert!(
                Path::new(sess).is_file(),
                "s_client saved the TLS 1.3 session"
            );
            s_client_to_exim(&pair, "again.client.example", cli, &int, ["-sess_in", sess]);
        },
    );
    let conns: Vec<_> = connections(&seen.pcap)
        .expect("read the tcpdump")
        .into_iter()
        .filter(|c| {
            c.server
                .is_some_and(|a| a.to_string() == format!("{server}:25"))
        })
        .collect();
    assert_eq!(conns.len(), 2, "two connections in the tcpdump");
    let psk: Vec<bool> = conns
        .iter()
        .map(|c| {
            tls_direction(&c.to_client)
                .expect("ServerHello")
                .psk_selected
        })
        .collect();
    assert_eq!(psk, [false, true], "full handshake, then a resumption");
    let ours = sessions_between(&seen.recs, &pair.client_ip.to_string(), &server, 25);
    let by_ehlo = |name: &str| {
        ours.iter()
            .find(|s| s["smtp"]["ehlo"] == name)
            .unwrap_or_else(|| panic!("no record of {name}: {ours:#?}"))
    };
    let (full, again) = (
        by_ehlo("full.client.example"),
        by_ehlo("again.client.example"),
    );
    eprintln!("full: {}\nresumed: {}", full["tls"], again["tls"]);
    let (srv, client) = (chain_hex("srv_exim"), chain_hex(cli));
    assert_eq!(full["tls"]["chain_source"], "uprobe");
    assert_eq!(full["tls"]["resumed"], false);
    assert_eq!(strings(&full["tls"]["server_chain"]), srv);
    assert_eq!(strings(&full["tls"]["client_chain"]), client);
    let t = &again["tls"];
    assert_eq!(t["version"], "TLS1.3");
    assert_eq!(t["resumed"], true, "{t}");
    assert_eq!(t["resumed_from"], full["session_id"], "{t}");
    assert_eq!(strings(&t["server_chain"]), srv, "{t}");
    assert_eq!(strings(&t["client_chain"]), client, "{t}");
    assert!(
        findings_of(&seen.recs, &again["session_id"], "tls.v13_uninspectable").is_empty(),
        "a resumed session with its original seen is not uninspectable"
    );
}
