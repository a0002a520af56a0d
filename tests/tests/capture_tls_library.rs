//! `mxcert capture --tls-library` (issue #8) with real programs: `openssl s_server -Verify`
//! and `openssl s_client`, TLS 1.3 on a port of this test's range, each side with a leaf +
//! intermediate chain from pcaps/certs, in two network namespaces.
//!
//! - `auto`: the session record carries both chains, equal by SHA-256 to the configured ones,
//!   with `chain_source = "uprobe"`; the server is started after mxcert, so it is covered
//!   through exec tracking (the whole run stays below the 30 s periodic /proc scan).
//! - `off`: `chain_source` null, no chains, and the `tls.v13_uninspectable` finding.
//! - The probes' programs (found through mxcert's own file descriptors, checked by name in the
//!   kernel's program list) are gone after SIGTERM (exit 0, records flushed) and SIGKILL; with
//!   the pcap backend the TC program is not loaded and its 8 MiB ring not allocated.
//! - A server in a "container" (its own mount namespace with private copies of libssl and
//!   libcrypto over the system paths): its chain is read in those files.
//! - The host's shared TLS libraries are probed from the start: a handshake made right
//!   after the processes' exec is read.
//!
//! Addresses 198.18.55-59.x, namespaces `mxd*`, ports 19450-19499 (this helper's range).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::live::{self, Capture};
use mxcert_system_tests::mta::wait_for;
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::records::{
    chain_hex, findings_of, has_program, loaded, programs_of, records, sessions_between, strings,
};
use mxcert_system_tests::repo_root;
use mxcert_system_tests::uprobe::{
    intermediates, library_capture, s_client_line, s_server_in, which, workdir, Killed,
};

const PORT: u16 = 19465;
const METRICS: u16 = 19480;
const SERVER_CHAIN: &str = "srv_both";
const CLIENT_CHAIN: &str = "cli_clientauth";
/// Library chains joined to this capture's session records.
const JOINED: &str = "mxcert_library_chains_total{result=\"joined\"}";

/// One TLS 1.3 session with client certificates requested: s_server (started now, after
/// mxcert, through `server`: the openssl binary, or a wrapper that runs it) accepts one
/// connection, s_client sends a line and ends. `server_up` runs with s_server's pid once it
/// listens, before the client starts.
fn tls13_session(pair: &NetnsPair, dir: &Path, server: Command, server_up: &dyn Fn(u32)) {
    let certs = repo_root().join("pcaps/certs");
    let p = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let srv_int = dir.join("srv-int.pem");
    let cli_int = dir.join("cli-int.pem");
    intermediates(&certs.join(format!("{SERVER_CHAIN}.chain.pem")), &srv_int);
    let addr = format!("{}:{PORT}", pair.server_ip);
    let (server, out) = s_server_in(
        server,
        &[
            "-accept",
            &addr,
            "-tls1_3",
            "-naccept",
            "1",
            "-cert",
            &p(&format!("{SERVER_CHAIN}.crt")),
            "-key",
            &p(&format!("{SERVER_CHAIN}.key")),
            "-cert_chain",
            srv_int.to_str().unwrap(),
            "-CAfile",
            &p("root-ca.crt"),
            "-Verify",
            "3",
        ],
    )
    .expect("s_server");
    let mut out = out;
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    server_up(server.0.id());
    s_client_line(
        pair.command(Side::Client, "openssl"),
        &addr,
        CLIENT_CHAIN,
        &cli_int,
        &["-verify_return_error"],
    );
    let mut server = server;
    let _ = live_wait(&mut server.0);
}

/// `mxcert capture` with the eBPF backend and the TLS-library probes on for `openssl`,
/// /metrics on `metrics`.
fn auto_capture(pair: &NetnsPair, out: &Path, log: &Path, metrics: u16) -> Capture {
    library_capture(pair, (out, log), &PORT.to_string(), "openssl", metrics)
}

/// The openssl binary in the server namespace.
fn openssl(pair: &NetnsPair) -> Command {
    pair.command(Side::Server, "openssl")
}

fn live_wait(c: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    mxcert_system_tests::mta::wait_child(c, Duration::from_secs(10)).ok()
}

/// The session record of this test's connection (its own addresses and port).
fn our_session(recs: &[serde_json::Value], pair: &NetnsPair) -> serde_json::Value {
    let ours = sessions_between(
        recs,
        &pair.client_ip.to_string(),
        &pair.server_ip.to_string(),
        PORT,
    );
    assert_eq!(ours.len(), 1, "one session record: {recs:#?}");
    ours[0].clone()
}

/// Ring-buffer maps (BPF_MAP_TYPE_RINGBUF = 27) held by `pid`, by size.
fn ring_sizes(pid: u32) -> Vec<u64> {
    let mut sizes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(fd.path()).unwrap_or_default();
        if text.lines().any(|l| l == "map_type:\t27") {
            if let Some(n) = text
                .lines()
                .find_map(|l| l.strip_prefix("max_entries:"))
                .and_then(|v| v.trim().parse().ok())
            {
                sizes.push(n);
            }
        }
    }
    sizes
}

fn wait_gone(ids: &[u32], what: &str) {
    wait_for(what, Duration::from_secs(10), || loaded(ids).is_empty())
        .unwrap_or_else(|_| panic!("{what}: still loaded {:?}", loaded(ids)));
}

#[test]
fn auto_reads_tls13_chains_through_the_library_and_unloads_on_sigterm() {
    if !require_ebpf("auto_reads_tls13_chains_through_the_library") {
        return;
    }
    let pair = NetnsPair::create("mxd", 55).expect("namespaces");
    let dir = workdir("tlslib-auto");
    let (out, log) = (dir.join("out.jsonl"), dir.join("mxcert.log"));
    // Built before the clock starts: the 30 s below are the daemon's, not the compiler's.
    live::mxcert_bin().expect("mxcert binary");
    let started = Instant::now();
    let cap = auto_capture(&pair, &out, &log, METRICS);
    let text = cap.log_text();
    assert!(text.contains("TLS library probes on"), "{text}");
    let progs = programs_of(cap.pid());
    for name in [
        "mxcert_tc_ingress",
        "mxcert_d2i_x509",
        "mxcert_peer_cert_ret",
        "mxcert_sched_exec",
        "mxcert_sched_exit",
    ] {
        assert!(has_program(&progs, name), "{name} loaded: {progs:?}");
    }
    // One object: one 8 MiB TC ring and one 1 MiB TLS ring, nothing loaded twice.
    let mut rings = ring_sizes(cap.pid());
    rings.sort_unstable();
    assert_eq!(rings, [1 << 20, 8 << 20], "ring buffers held");
    let before = live::scrape(&pair, METRICS).expect("metrics");
    let files_before = live::metric(&before, "mxcert_tls_library_attached_files").unwrap();

    // The first process mapping a library file gets it attached when mxcert adopts it after
    // its exec (milliseconds, the loop's next turn); the client connects once that happened,
    // as an MTA's first peer would a moment later.
    tls13_session(&pair, &dir, openssl(&pair), &|_| {
        let t = live::scrape_when(&pair, METRICS, |t| {
            live::metric(t, "mxcert_tls_library_attached_files").unwrap_or(0) >= 2
        })
        .expect("metrics");
        assert!(
            live::metric(&t, "mxcert_tls_library_attached_files").unwrap_or(0) >= 2,
            "s_server's libraries attached after its exec: {t}"
        );
    });

    // Both chains joined to this capture's session records (the tls_library_* families are
    // host-wide: other tests' openssl processes count there too).
    let text = live::scrape_when(&pair, METRICS, |t| {
        live::metric(t, JOINED).unwrap_or(0) >= 2
    })
    .expect("metrics");
    let execs = live::metric(&text, "mxcert_tls_library_processes_total{event=\"exec\"}");
    assert!(
        execs.unwrap_or(0) >= 2,
        "s_server and s_client exec'd: {text}"
    );
    // The chains went out at the end of the handshake (SSL_get0_peer_certificate returned),
    // not on the QUIET timer.
    let ended = live::metric(&text, "mxcert_tls_library_handshakes_total{peer=\"chain\"}");
    assert!(ended.unwrap_or(0) >= 2, "end of handshake seen: {text}");
    let files_after = live::metric(&text, "mxcert_tls_library_attached_files").unwrap();
    eprintln!("attached files: {files_before} at start, {files_after} after the exec");
    assert!(files_after >= 2, "libssl and libcrypto attached");
    let ids: Vec<u32> = progs.iter().map(|p| p.0).collect();
    let st = cap.stop("TERM").expect("stop");
    let elapsed = started.elapsed();
    assert!(st.success(), "exit status {st:?}");
    assert!(
        elapsed < Duration::from_secs(30),
        "covered before the periodic /proc scan ({elapsed:?})"
    );
    wait_gone(&ids, "programs after SIGTERM");

    let recs = records(&out);
    let s = our_session(&recs, &pair);
    eprintln!("session: {s}");
    assert_eq!(s["tls"]["version"], "TLS1.3");
    assert_eq!(s["tls"]["chain_source"], "uprobe", "{s}");
    assert_eq!(strings(&s["tls"]["server_chain"]), chain_hex(SERVER_CHAIN));
    assert_eq!(strings(&s["tls"]["client_chain"]), chain_hex(CLIENT_CHAIN));
    let sid = s["session_id"].clone();
    assert!(
        findings_of(&recs, &sid, "tls.v13_uninspectable").is_empty(),
        "a session read through the library is not uninspectable"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn off_leaves_tls13_uninspectable() {
    if !require_ebpf("off_leaves_tls13_uninspectable") {
        return;
    }
    let pair = NetnsPair::create("mxd1", 56).expect("namespaces");
    let dir = workdir("tlslib-off");
    let (out, log) = (dir.join("out.jsonl"), dir.join("mxcert.log"));
    let cap = Capture::start(
        &pair,
        &out,
        &log,
        &[
            "--backend",
            "ebpf",
            "--ports",
            &PORT.to_string(),
            "--tls-library",
            "off",
            "--tls-processes",
            "openssl",
        ],
    )
    .expect("mxcert capture");
    let progs = programs_of(cap.pid());
    assert!(has_program(&progs, "mxcert_tc_ingress"), "{progs:?}");
    assert!(!has_program(&progs, "mxcert_d2i_x509"), "{progs:?}");
    tls13_session(&pair, &dir, openssl(&pair), &|_| {});
    std::thread::sleep(Duration::from_millis(500));
    let st = cap.stop("TERM").expect("stop");
    assert!(st.success(), "exit status {st:?}");
    let recs = records(&out);
    let s = our_session(&recs, &pair);
    assert_eq!(s["tls"]["version"], "TLS1.3");
    assert!(s["tls"]["chain_source"].is_null(), "{s}");
    assert!(strings(&s["tls"]["server_chain"]).is_empty());
    let sid = s["session_id"].clone();
    assert!(
        !findings_of(&recs, &sid, "tls.v13_uninspectable").is_empty(),
        "{recs:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn probes_of_a_pcap_capture_have_no_tc_ring_and_go_with_sigkill() {
    if !require_ebpf("probes_of_a_pcap_capture_go_with_sigkill") {
        return;
    }
    let pair = NetnsPair::create("mxd2", 57).expect("namespaces");
    let dir = workdir("tlslib-kill");
    let (out, log) = (dir.join("out.jsonl"), dir.join("mxcert.log"));
    let cap = Capture::start(
        &pair,
        &out,
        &log,
        &[
            "--backend",
            "pcap",
            "--ports",
            &PORT.to_string(),
            "--tls-processes",
            "openssl",
        ],
    )
    .expect("mxcert capture");
    let progs = programs_of(cap.pid());
    assert!(has_program(&progs, "mxcert_d2i_x509"), "{progs:?}");
    assert!(has_program(&progs, "mxcert_sched_exit"), "{progs:?}");
    assert!(!has_program(&progs, "mxcert_tc_ingress"), "{progs:?}");
    // The TC ring is created at one page, not 8 MiB.
    let page = 4096;
    let mut rings = ring_sizes(cap.pid());
    rings.sort_unstable();
    assert_eq!(rings, [page, 1 << 20], "ring buffers held");
    let ids: Vec<u32> = progs.iter().map(|p| p.0).collect();
    cap.stop("KILL").expect("SIGKILL");
    wait_gone(&ids, "programs after SIGKILL");
    let links = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .filter(|l| ids.contains(&l.program_id()))
        .count();
    assert_eq!(links, 0, "links after SIGKILL");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The system files of `libs` (e.g. libssl.so.3) as the openssl binary loads them, by `ldd`.
fn system_libraries(libs: &[&str]) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(which("openssl"))
        .output()
        .expect("ldd openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    libs.iter()
        .map(|lib| {
            let path = text
                .lines()
                .find(|l| l.trim_start().starts_with(lib))
                .and_then(|l| l.split("=>").nth(1))
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_else(|| panic!("{lib} not among openssl's libraries:\n{text}"));
            // Bind-mounting over the real file covers every path to it (/lib -> usr/lib).
            std::fs::canonicalize(path).expect("canonical library path")
        })
        .collect()
}

/// (device, inode) of the file at `path` as the process `pid` sees it (its mount namespace).
fn file_id_in(pid: u32, path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/root{}", path.display()))
        .unwrap_or_else(|e| panic!("{} in process {pid}: {e}", path.display()));
    (m.dev(), m.ino())
}

/// A server in a "container": s_server runs in a mount namespace of its own (and the server's
/// network namespace) where private copies of libssl and libcrypto are bind-mounted over the
/// system files, so its /proc/PID/maps names the host's paths but they are other files, as
/// with a container image's own OpenSSL. mxcert (started before it, host mount namespace)
/// attaches to those files through /proc/PID/root; the chain s_server receives is read in the
/// private copy and joined into the session record; s_client (host files) reads the other.
#[test]
fn a_server_with_private_libraries_in_its_own_mount_namespace_is_read() {
    if !require_ebpf("a_server_with_private_libraries_in_its_own_mount_namespace") {
        return;
    }
    let pair = NetnsPair::create("mxd3", 58).expect("namespaces");
    let dir = workdir("tlslib-container");
    let (out, log) = (dir.join("out.jsonl"), dir.join("mxcert.log"));
    let metrics = METRICS + 1;
    let libs = system_libraries(&["libssl.so.3", "libcrypto.so.3"]);
    let private = dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    let mut script = String::from("set -e; ");
    for lib in &libs {
        let copy = private.join(lib.file_name().unwrap());
        std::fs::copy(lib, &copy).expect("copy the library");
        script += &format!("mount --bind '{}' '{}'; ", copy.display(), lib.display());
    }
    script += r#"exec "$0" "$@""#;
    let mut container = pair.command(Side::Server, "unshare");
    container.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "openssl",
    ]);

    let cap = auto_capture(&pair, &out, &log, metrics);
    let attached = |at_least: u64, what: &str| {
        let t = live::scrape_when(&pair, metrics, |t| {
            live::metric(t, "mxcert_tls_library_attached_files").unwrap_or(0) >= at_least
        })
        .expect("metrics");
        let n = live::metric(&t, "mxcert_tls_library_attached_files").unwrap_or(0);
        assert!(n >= at_least, "{what}: {n} files attached");
        n
    };
    // The host's libssl and libcrypto first (attached at start as the system's libraries, or
    // through a host process of the allow-listed name): then the private copies are the next
    // two files, whatever other tests' openssl processes do.
    let _host = Killed(
        std::process::Command::new("openssl")
            .args(["dgst", "-sha256"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("openssl dgst"),
    );
    let host = attached(2, "the host's libraries");
    tls13_session(&pair, &dir, container, &|pid| {
        // Not vacuous: the server's libssl/libcrypto are other files than the host's.
        for lib in &libs {
            assert_ne!(
                file_id_in(pid, lib),
                file_id_in(std::process::id(), lib),
                "{} in the server's mount namespace is the host's file",
                lib.display()
            );
        }
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        assert!(
            libs.iter().all(|l| maps.contains(l.to_str().unwrap())),
            "the server maps the libraries by their system paths"
        );
        attached(host + 2, "the private copies after the server's exec");
    });
    // Both chains joined (or the wait timed out: the record below says which is missing).
    live::scrape_when(&pair, metrics, |t| {
        live::metric(t, JOINED).unwrap_or(0) >= 2
    })
    .expect("metrics");
    let st = cap.stop("TERM").expect("stop");
    assert!(st.success(), "exit status {st:?}");
    let recs = records(&out);
    let s = our_session(&recs, &pair);
    assert_eq!(s["tls"]["version"], "TLS1.3");
    assert_eq!(s["tls"]["chain_source"], "uprobe", "{s}");
    // Read by s_server in its private libcrypto copy.
    assert_eq!(strings(&s["tls"]["client_chain"]), chain_hex(CLIENT_CHAIN));
    // Read by s_client in the host's files.
    assert_eq!(strings(&s["tls"]["server_chain"]), chain_hex(SERVER_CHAIN));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host's shared TLS libraries are probed from the start (found through `ldconfig -p`),
/// so the first handshake of processes that exec right then is read: here s_server and
/// s_client shake hands as soon as they run, without waiting for mxcert to adopt them (which
/// takes ~0.2 s after an exec and would miss this session's chains).
#[test]
fn first_handshake_right_after_exec_is_read_with_system_libraries_probed_from_the_start() {
    if !require_ebpf("first_handshake_right_after_exec_is_read") {
        return;
    }
    let pair = NetnsPair::create("mxd4", 59).expect("namespaces");
    let dir = workdir("tlslib-first");
    let (out, log) = (dir.join("out.jsonl"), dir.join("mxcert.log"));
    let cap = auto_capture(&pair, &out, &log, METRICS + 2);
    let text = cap.log_text();
    let line = text
        .lines()
        .find(|l| l.contains("probed from the start"))
        .unwrap_or_else(|| panic!("the system libraries attached at start:\n{text}"));
    for lib in system_libraries(&["libssl.so.3", "libcrypto.so.3"]) {
        assert!(line.contains(lib.to_str().unwrap()), "{lib:?} in {line}");
    }
    tls13_session(&pair, &dir, openssl(&pair), &|_| {});
    std::thread::sleep(Duration::from_millis(500));
    let st = cap.stop("TERM").expect("stop");
    assert!(st.success(), "exit status {st:?}");
    let recs = records(&out);
    let s = our_session(&recs, &pair);
    assert_eq!(s["tls"]["chain_source"], "uprobe", "{s}");
    assert_eq!(strings(&s["tls"]["server_chain"]), chain_hex(SERVER_CHAIN));
    assert_eq!(strings(&s["tls"]["client_chain"]), chain_hex(CLIENT_CHAIN));
    let _ = std::fs::remove_dir_all(&dir);
}
