//! Our own chain as our MTA sends it (issue #8 follow-up), through `mxcert capture --backend
//! ebpf --tls-library auto` session records. TLS 1.3 encrypts both Certificate messages, and on
//! a gateway the peer MTA runs on another host: only the sent-chain probe (`i2d_X509` called by
//! libssl) can fill our side. So the peer here is NOT allow-listed: a copy of the openssl binary
//! named `remote-mx`, outside `--tls-processes openssl`, is never read.
//!
//! - Outbound, client certificate requested: our `s_client` sends `cli_serveronly` (leaf +
//!   intermediate, EKU serverAuth only) to a TLS 1.3 server asking for one: the record has it
//!   as `client_chain`, `client_cert_presented` and `cert_requested` true, and classification
//!   (`--trust-anchors`) reports `eku.client_auth_missing` for the session. The client saves
//!   its session from the new-session callback, which runs inside `SSL_read` when the TLS 1.3
//!   ticket arrives (`-sess_out`): `i2d_SSL_SESSION` serialises the server's certificate there,
//!   and it must not leak into our chain (it goes through ASN.1 templates in libcrypto, not
//!   libssl's `i2d_X509` call).
//! - Outbound, not requested: `client_cert_presented` false, no client chain.
//! - Inbound: a remote client to our `s_server`: `server_chain` is our configured chain.
//! - tcpdump shows TLS 1.3 and none of these certificates in cleartext.
//! - Exim (GnuTLS) as our server, a remote client over STARTTLS: `server_chain` is our leaf
//!   (`gnutls_certificate_get_ours` gives the leaf only), `client_chain` the one Exim received.
//!
//! Addresses 198.18.100-104.x, namespaces `mxo*`, ports 19700-19749.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::live;
use mxcert_system_tests::mta::{certs_dir, require_exim, wait_for, Exim, Tcpdump};
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::records::{
    chain_hex, findings_of, has_program, programs_of, records, sessions_between, strings,
};
use mxcert_system_tests::uprobe::{
    assert_no_cleartext_certificates, intermediates, library_capture, s_client_line, s_server_in,
    which, workdir, Killed,
};

const REQUESTED: u16 = 19700;
const NOT_REQUESTED: u16 = 19701;
const INBOUND: u16 = 19702;
const METRICS: u16 = 19740;
/// An idle server of ours that gets the libraries attached before the sessions (never used).
const HOLDER: u16 = 19749;
/// The remote MTA's program name: not on the allow-list.
const REMOTE: &str = "remote-mx";
const OUR_CLIENT: &str = "cli_serveronly";
const REMOTE_SERVER: &str = "srv_both";
const OUR_SERVER: &str = "srv_noeku";
const REMOTE_CLIENT: &str = "cli_clientauth";

fn cert(f: &str) -> String {
    certs_dir().join(f).to_str().unwrap().to_string()
}

/// The openssl binary copied as `dir/remote-mx`.
fn remote_binary(dir: &Path) -> PathBuf {
    let bin = dir.join(REMOTE);
    std::fs::copy(which("openssl"), &bin).expect("copy openssl");
    bin
}

/// `<bin> s_server` on `port` in the server namespace, TLS 1.3, serving `name`'s chain, asking
/// for a client certificate when `request` (`-verify`: a failed verification is logged, the
/// handshake goes on, as a receiving MTA that only records the client certificate).
fn server(
    pair: &NetnsPair,
    dir: &Path,
    bin: &Path,
    port: u16,
    name: &str,
    request: bool,
) -> Killed {
    let int = dir.join(format!("{name}-{port}-int.pem"));
    intermediates(&certs_dir().join(format!("{name}.chain.pem")), &int);
    let addr = format!("{}:{port}", pair.server_ip);
    let mut args = vec![
        "-accept".to_string(),
        addr,
        "-tls1_3".into(),
        "-naccept".into(),
        "1".into(),
        "-cert".into(),
        cert(&format!("{name}.crt")),
        "-key".into(),
        cert(&format!("{name}.key")),
        "-cert_chain".into(),
        int.to_str().unwrap().into(),
        "-CAfile".into(),
        cert("root-ca.crt"),
    ];
    if request {
        args.extend(["-verify".into(), "3".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (srv, mut out) =
        s_server_in(pair.command(Side::Server, bin.to_str().unwrap()), &args).expect("s_server");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    srv
}

/// `<bin> s_client` from the client namespace to `port` with `name`'s chain.
fn client(pair: &NetnsPair, dir: &Path, bin: &str, port: u16, name: &str, extra: &[&str]) {
    let addr = format!("{}:{port}", pair.server_ip);
    let int = dir.join(format!("{name}-{port}-cint.pem"));
    s_client_line(pair.command(Side::Client, bin), &addr, name, &int, extra);
}

/// The probes' non-zero metrics, for the test log.
fn print_library_metrics(text: &str) {
    for l in text.lines() {
        if l.starts_with("mxcert_tls_library") && !l.ends_with(" 0") {
            eprintln!("{l}");
        }
    }
}

fn session(recs: &[serde_json::Value], pair: &NetnsPair, port: u16) -> serde_json::Value {
    let ours = sessions_between(
        recs,
        &pair.client_ip.to_string(),
        &pair.server_ip.to_string(),
        port,
    );
    assert_eq!(ours.len(), 1, "one session on port {port}: {recs:#?}");
    ours[0].clone()
}

#[test]
fn our_openssl_chains_are_read_as_sent_when_the_peer_is_not_probed() {
    if !require_ebpf("our_openssl_chains_are_read_as_sent") {
        return;
    }
    let pair = NetnsPair::create("mxo", 100).expect("namespaces");
    let dir = workdir("own-openssl");
    let (out, log) = (dir.join("out.jsonl"), dir.join("mxcert.log"));
    let remote = remote_binary(&dir);
    let pcap = Tcpdump::start(&pair, Side::Server, dir.join("wire.pcap")).expect("tcpdump");
    let ports = format!("{REQUESTED},{NOT_REQUESTED},{INBOUND}");
    let cap = library_capture(&pair, (&out, &log), &ports, "openssl", METRICS);
    let progs = programs_of(cap.pid());
    for name in [
        "mxcert_i2d_x509",
        "mxcert_i2d_ret",
        "mxcert_ours",
        "mxcert_ours_ret",
    ] {
        assert!(has_program(&progs, name), "{name} loaded: {progs:?}");
    }
    // The library files are attached when mxcert adopts the first allow-listed process that
    // maps them (milliseconds after its exec): an idle server of ours is that process, so the
    // short clients below are covered from their first instruction.
    let holder = server(&pair, &dir, Path::new("openssl"), HOLDER, OUR_SERVER, false);
    live::scrape_when(&pair, METRICS, |t| {
        live::metric(t, "mxcert_tls_library_attached_files").unwrap_or(0) >= 2
    })
    .expect("libssl and libcrypto attached");

    // (a) outbound, certificate requested; the client saves its session from inside SSL_read.
    let sess = dir.join("session.pem");
    let srv = server(&pair, &dir, &remote, REQUESTED, REMOTE_SERVER, true);
    client(
        &pair,
        &dir,
        "openssl",
        REQUESTED,
        OUR_CLIENT,
        &["-sess_out", sess.to_str().unwrap()],
    );
    drop(srv);
    let saved = std::fs::read_to_string(&sess).unwrap_or_default();
    assert!(
        saved.contains("BEGIN SSL SESSION PARAMETERS"),
        "the client saved its TLS 1.3 session (new-session callback ran): {saved:?}"
    );
    // (b) outbound, no certificate requested.
    let srv = server(&pair, &dir, &remote, NOT_REQUESTED, REMOTE_SERVER, false);
    client(&pair, &dir, "openssl", NOT_REQUESTED, OUR_CLIENT, &[]);
    drop(srv);
    // (c) inbound: a remote client to our server.
    let remote_s = remote.to_str().unwrap().to_string();
    let srv = server(&pair, &dir, Path::new("openssl"), INBOUND, OUR_SERVER, true);
    client(&pair, &dir, &remote_s, INBOUND, REMOTE_CLIENT, &[]);
    drop(srv);
    drop(holder);

    let text = live::scrape_when(&pair, METRICS, |t| {
        live::metric(t, "mxcert_tls_library_chains_attached_total").unwrap_or(0) >= 6
    })
    .expect("metrics");
    print_library_metrics(&text);
    let st = cap.stop("TERM").expect("stop");
    assert!(st.success(), "exit status {st:?}");
    let wire = pcap.stop().expect("tcpdump");
    assert_no_cleartext_certificates(
        &wire,
        &[OUR_CLIENT, REMOTE_SERVER, OUR_SERVER, REMOTE_CLIENT],
    );

    let recs = records(&out);
    let a = session(&recs, &pair, REQUESTED);
    eprintln!("requested: {a}");
    assert_eq!(a["tls"]["version"], "TLS1.3");
    assert_eq!(a["tls"]["chain_source"], "uprobe", "{a}");
    // Our chain, exactly: nothing the session serialisation encoded got in.
    assert_eq!(strings(&a["tls"]["client_chain"]), chain_hex(OUR_CLIENT));
    assert_eq!(a["tls"]["client_cert_presented"], true, "{a}");
    assert_eq!(a["tls"]["cert_requested"], true, "{a}");
    // Received by our client.
    assert_eq!(strings(&a["tls"]["server_chain"]), chain_hex(REMOTE_SERVER));
    let eku = findings_of(&recs, &a["session_id"], "eku.client_auth_missing");
    assert!(
        !eku.is_empty(),
        "eku.client_auth_missing for the session: {recs:#?}"
    );

    let b = session(&recs, &pair, NOT_REQUESTED);
    eprintln!("not requested: {b}");
    assert_eq!(b["tls"]["chain_source"], "uprobe", "{b}");
    assert_eq!(b["tls"]["client_cert_presented"], false, "{b}");
    assert!(strings(&b["tls"]["client_chain"]).is_empty(), "{b}");
    assert_eq!(strings(&b["tls"]["server_chain"]), chain_hex(REMOTE_SERVER));
    assert!(findings_of(&recs, &b["session_id"], "eku.client_auth_missing").is_empty());

    let c = session(&recs, &pair, INBOUND);
    eprintln!("inbound: {c}");
    assert_eq!(c["tls"]["chain_source"], "uprobe", "{c}");
    assert_eq!(strings(&c["tls"]["server_chain"]), chain_hex(OUR_SERVER));
    // Received by our server.
    assert_eq!(strings(&c["tls"]["client_chain"]), chain_hex(REMOTE_CLIENT));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn our_exim_server_leaf_is_read_as_sent() {
    if !require_ebpf("our_exim_server_leaf_is_read_as_sent")
        || !require_exim("our_exim_server_leaf_is_read_as_sent")
    {
        return;
    }
    let pair = NetnsPair::create("mxo1", 101).expect("namespaces");
    let dir = workdir("own-exim");
    let (out, log) = (dir.join("out.jsonl"), dir.join("mxcert.log"));
    let remote = remote_binary(&dir);
    let pcap = Tcpdump::start(&pair, Side::Server, dir.join("wire.pcap")).expect("tcpdump");
    let metrics = METRICS + 1;
    let cap = library_capture(&pair, (&out, &log), "25", "exim4", metrics);
    let exim = Exim::start(&pair, dir.join("exim"), &pair.server_ip.to_string()).expect("exim");
    // libgnutls attached once mxcert adopted the Exim daemon: `exim -bd` forks the daemon and
    // its exec'd parent exits (a fork is no exec), so that may take the periodic /proc scan.
    wait_for("libgnutls attached", Duration::from_secs(40), || {
        live::scrape(&pair, metrics)
            .is_ok_and(|t| live::metric(&t, "mxcert_tls_library_attached_files").unwrap_or(0) >= 1)
    })
    .expect("libgnutls attached");
    let addr = format!("{}:25", pair.server_ip);
    s_client_line(
        pair.command(Side::Client, remote.to_str().unwrap()),
        &addr,
        REMOTE_CLIENT,
        &dir.join("cint.pem"),
        &["-starttls", "smtp"],
    );
    let text = live::scrape_when(&pair, metrics, |t| {
        live::metric(t, "mxcert_tls_library_chains_attached_total").unwrap_or(0) >= 2
    })
    .expect("metrics");
    print_library_metrics(&text);
    drop(exim);
    let st = cap.stop("TERM").expect("stop");
    assert!(st.success(), "exit status {st:?}");
    let wire = pcap.stop().expect("tcpdump");
    assert_no_cleartext_certificates(&wire, &["srv_exim", REMOTE_CLIENT]);

    let recs = records(&out);
    let s = &session(&recs, &pair, 25);
    eprintln!("exim inbound: {s}");
    assert_eq!(s["tls"]["version"], "TLS1.3");
    assert_eq!(s["tls"]["chain_source"], "uprobe", "{s}");
    // GnuTLS keeps our leaf only, of the leaf + intermediate Exim sent.
    assert_eq!(
        strings(&s["tls"]["server_chain"]),
        chain_hex("srv_exim")[..1].to_vec()
    );
    assert_eq!(strings(&s["tls"]["client_chain"]), chain_hex(REMOTE_CLIENT));
    let _ = std::fs::remove_dir_all(&dir);
}
