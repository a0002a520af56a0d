//! Acceptance of issue #8 with real MTAs: two hosts (network namespaces), each running its own
//! Postfix that receives mail for its domain and relays the rest to the other over mandatory
//! TLS 1.3, each with its own leaf + intermediate chain from pcaps/certs used both as server
//! certificate and as client certificate (`smtpd_tls_ask_ccert = yes` on both). Mail flows
//! both ways (A→B, B→A, and a ~1 MiB message A→B); tcpdump records the same traffic.
//!
//! For every TLS session of these MTAs in the capture, the chains read through the TLS library
//! must equal the configured ones certificate by certificate (SHA-256 of the DER), server chain
//! and client chain; the capture must show TLS 1.3, no cleartext Certificate message and no
//! certificate byte; a process named like an allow-listed MTA process (`smtpd`, a copy of
//! openssl) loading the system CA bundle meanwhile must not put any certificate into any chain;
//! the 1 MiB message must arrive byte-identical with the probes attached.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mxcert::capture::tlslib::{PeerChain, TlsProbes, DEFAULT_COMMS};
use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::mta::{
    certs_dir, kill, require_mta, Postfix, PostfixOpts, Tcpdump, WorkDir,
};
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::tlswire::{connections, contains, tls_direction};
use mxcert_system_tests::uprobe::{
    der_hashes, pem_ders, programs_loaded, s_server_as, tls_hold, Killed,
};

/// The tests of this file run one at a time: two Postfix pairs plus probe holders at once
/// slow the user-space reading of the ring on a 2-core machine (see `postfix_tls13_...`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The system CA bundle the noise process loads (~140 certificates per run).
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// TLS 1.3 (RFC 8446 §4.2.1).
const TLS13: u16 = 0x0304;

/// A host's Postfix and the chain it presents (as server and as client).
struct Host {
    postfix: Postfix,
    chain: Vec<Vec<u8>>,
    ip: IpAddr,
}

/// Host A (client namespace, domain client.example, chain cli_mta) and host B (server
/// namespace, domain test.example, chain srv_both), each relaying mail for the other's domain
/// to the other over mandatory TLS 1.3 with its client certificate. `extra` main.cf lines go to
/// both.
fn mtas(pair: &NetnsPair, work: &WorkDir, extra: &[String]) -> (Host, Host) {
    let certs = certs_dir();
    let files = |name: &str| -> Vec<PathBuf> {
        vec![
            certs.join(format!("{name}.key")),
            certs.join(format!("{name}.chain.pem")),
        ]
    };
    let list = |name: &str| -> String {
        files(name)
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let common = |own: &str, peer_ip: IpAddr| -> Vec<String> {
        let mut m = vec![
            "smtpd_tls_security_level = may".to_string(),
            format!("smtpd_tls_chain_files = {}", list(own)),
            "smtpd_tls_ask_ccert = yes".into(),
            "smtpd_tls_protocols = >=TLSv1.3".into(),
            "smtpd_tls_mandatory_protocols = >=TLSv1.3".into(),
            format!("relayhost = [{peer_ip}]:25"),
            "smtp_tls_security_level = encrypt".into(),
            format!("smtp_tls_chain_files = {}", list(own)),
            "smtp_tls_protocols = >=TLSv1.3".into(),
            "smtp_tls_mandatory_protocols = >=TLSv1.3".into(),
            "smtp_tls_loglevel = 1".into(),
        ];
        m.extend(extra.iter().cloned());
        m
    };
    let b = Postfix::start(
        pair,
        work.join("b"),
        &PostfixOpts {
            main_cf: common("srv_both", IpAddr::V4(pair.client_ip)),
            ..PostfixOpts::cert("srv_both")
        },
    )
    .expect("Postfix B");
    let mut a_cf = common("cli_mta", IpAddr::V4(pair.server_ip));
    a_cf.push("mydestination = client.example, $myhostname".into());
    a_cf.retain(|l| !l.starts_with("relayhost"));
    let a = Postfix::start(
        pair,
        work.join("a"),
        &PostfixOpts {
            main_cf: a_cf,
            relay_to: Some(pair.server_ip),
            listen: true,
            ..PostfixOpts::cert("cli_mta")
        },
    )
    .expect("Postfix A");
    let chain = |name: &str| pem_ders(&certs.join(format!("{name}.chain.pem"))).unwrap();
    (
        Host {
            postfix: a,
            chain: chain("cli_mta"),
            ip: IpAddr::V4(pair.client_ip),
        },
        Host {
            postfix: b,
            chain: chain("srv_both"),
            ip: IpAddr::V4(pair.server_ip),
        },
    )
}

/// A process named `smtpd` (a copy of the openssl binary, so it passes the kernel's
/// allow-list) loading the system CA bundle through libcrypto's PEM code in a loop, at most 50
/// runs and 20 s, until `stop`. Returns the number of runs.
fn noise(dir: &Path, stop: Arc<AtomicBool>) -> JoinHandle<u32> {
    let bin = dir.join("smtpd");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(which("openssl"), &bin).expect("copy openssl as smtpd");
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut runs = 0;
        while !stop.load(Ordering::Relaxed) && runs < 50 && start.elapsed().as_secs() < 20 {
            let st = Command::new(&bin)
                .args(["crl2pkcs7", "-nocrl", "-certfile", BUNDLE])
                .stdout(Stdio::null())
                .status()
                .expect("smtpd crl2pkcs7");
            assert!(st.success());
            runs += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        runs
    })
}

fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not in PATH"))
}

/// A message of about `size` bytes: headers and lines of 76 printable characters (no line
/// Postfix would rewrite), deterministic.
fn message(from: &str, to: &str, subject: &str, size: usize) -> (Vec<u8>, Vec<u8>) {
    let head = format!("From: {from}\nTo: {to}\nSubject: {subject}\n\n");
    let mut body = Vec::with_capacity(size + 80);
    let mut x: u32 = 0x2545_f491;
    while body.len() < size {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            body.push(b'A' + (x % 26) as u8);
        }
        body.push(b'\n');
    }
    let mut m = head.into_bytes();
    m.extend_from_slice(&body);
    (m, body)
}

/// The body of a delivered message (after the header block).
fn body_of(delivered: &[u8]) -> &[u8] {
    let at = delivered
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a header block");
    &delivered[at + 2..]
}

/// The probes, loaded and attached before the MTAs talk: the noise process maps the same
/// libssl/libcrypto files as Postfix, so one refresh while it runs attaches them (`TlsProbes`
/// has no exec tracking; the smtpd/smtp processes start on demand).
fn attached_probes() -> TlsProbes {
    let comms: Vec<String> = DEFAULT_COMMS.iter().map(|s| s.to_string()).collect();
    let mut probes = TlsProbes::open(&comms).expect("load the TLS probes");
    let start = Instant::now();
    while probes.attached_files() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no allow-listed process mapped libssl and libcrypto within 10 s"
        );
        probes.refresh().expect("refresh");
        std::thread::sleep(Duration::from_millis(20));
    }
    probes
}

/// Polls the probes for `d`, collecting chains.
fn poll_for(probes: &mut TlsProbes, all: &mut Vec<PeerChain>, d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        probes
            .poll(Duration::from_millis(20), &mut |c| {
                if !c.sent {
                    all.push(c)
                }
            })
            .expect("poll");
    }
}

#[test]
fn postfix_tls13_chains_both_directions_match_the_configured_ones() {
    if !require_mta("uprobe_postfix") || !require_ebpf("uprobe_postfix") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let pair = NetnsPair::create("mxa", 60).expect("namespaces");
    let work = WorkDir::new("uprobe-postfix").expect("work dir");
    let stop = Arc::new(AtomicBool::new(false));
    let noisy = noise(&work.join("noise"), stop.clone());
    let mut probes = attached_probes();
    let dump = Tcpdump::start(&pair, Side::Server, work.join("wire.pcap")).expect("tcpdump");
    let (a, b) = mtas(&pair, &work, &[]);

    let (small_ab, _) = message("x@client.example", "u@test.example", "mxa a to b", 2_000);
    let (small_ba, _) = message("x@test.example", "u@client.example", "mxa b to a", 2_000);
    let (big, big_body) = message("x@client.example", "u@test.example", "mxa 1 MiB", 1 << 20);
    let mut all: Vec<PeerChain> = Vec::new();
    // Poll all along, as the daemon does: a chain's socket is looked up when its records are
    // read, and a short SMTP session may be over within tens of milliseconds.
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| {
            a.postfix.sendmail("u@test.example", &small_ab).unwrap();
            b.postfix.sendmail("u@client.example", &small_ba).unwrap();
            a.postfix.sendmail("u@test.example", &big).unwrap();
        });
        let count = |p: &Postfix| std::fs::read_dir(p.dir.join("mail")).map_or(0, |d| d.count());
        let start = Instant::now();
        while (!sending.is_finished() || count(&b.postfix) < 2 || count(&a.postfix) < 1)
            && start.elapsed().as_secs() < 60
        {
            poll_for(&mut probes, &mut all, Duration::from_millis(100));
        }
    });
    let at_b = b.postfix.delivered(2, Duration::from_secs(30)).unwrap();
    let at_a = a.postfix.delivered(1, Duration::from_secs(30)).unwrap();
    // Chains close 100 ms after their last certificate; keep the noise running meanwhile.
    poll_for(&mut probes, &mut all, Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let runs = noisy.join().unwrap();
    let stats = probes.stats();
    drop(a.postfix);
    drop(b.postfix);
    let pcap = dump.stop().unwrap();
    eprintln!(
        "uprobe_postfix: {stats:?}, noise runs {runs}, mail done after {:?}",
        t0.elapsed()
    );
    for c in &all {
        eprintln!(
            "chain: {} pid {} {:?} <- {:?}: {} certificates",
            c.comm,
            c.tgid,
            c.local,
            c.remote,
            c.ders.len()
        );
    }

    // Byte-identical delivery of the large message with the probes attached.
    let big_at_b = at_b
        .iter()
        .find(|m| contains(m, b"Subject: mxa 1 MiB"))
        .expect("the 1 MiB message at B");
    assert!(
        body_of(big_at_b) == big_body.as_slice(),
        "the 1 MiB body differs after delivery"
    );
    assert!(at_b.iter().any(|m| contains(m, b"Subject: mxa a to b")));
    assert!(at_a.iter().any(|m| contains(m, b"Subject: mxa b to a")));

    // The TLS sessions of these MTAs, from the capture: TLS 1.3, nothing of the chains in clear.
    let ours = |ip: IpAddr| ip == a.ip || ip == b.ip;
    let sessions: Vec<_> = connections(&pcap)
        .unwrap()
        .into_iter()
        .filter(|c| c.server.is_some_and(|s| s.port() == 25))
        .collect();
    assert!(
        sessions
            .iter()
            .any(|c| c.server.map(|s| IpAddr::V4(*s.ip())) == Some(b.ip))
            && sessions
                .iter()
                .any(|c| c.server.map(|s| IpAddr::V4(*s.ip())) == Some(a.ip)),
        "sessions in both directions: {sessions:?}"
    );
    let configured: Vec<&Vec<u8>> = a.chain.iter().chain(&b.chain).collect();
    for s in &sessions {
        for (bytes, who) in [(&s.to_server, "client"), (&s.to_client, "server")] {
            let d = tls_direction(bytes).unwrap_or_else(|| panic!("{who} never started TLS"));
            assert!(
                !d.clear_handshakes.contains(&11),
                "{who}: cleartext Certificate message: {d:?}"
            );
            assert!(d.encrypted_records > 0, "{who}: {d:?}");
            if who == "server" {
                assert_eq!(d.selected_version, Some(TLS13), "{d:?}");
            }
            for der in &configured {
                assert!(!contains(bytes, der), "a certificate in cleartext");
            }
        }
    }
    let wire = std::fs::read(&pcap).unwrap();
    for der in &configured {
        for at in [0, der.len() / 2, der.len() - 48] {
            assert!(
                !contains(&wire, &der[at..at + 48]),
                "certificate bytes in the capture"
            );
        }
    }

    // Every session: the chain each side received equals the one the other side has configured.
    let chain_of = |ip: IpAddr| if ip == a.ip { &a.chain } else { &b.chain };
    let mine: Vec<&PeerChain> = all
        .iter()
        .filter(|c| c.local.is_some_and(|l| ours(l.ip())))
        .collect();
    for s in &sessions {
        let (client, server) = (
            SocketAddr::V4(s.client.unwrap()),
            SocketAddr::V4(s.server.unwrap()),
        );
        let received_by = |me: SocketAddr, peer: SocketAddr| {
            let got: Vec<&&PeerChain> = mine
                .iter()
                .filter(|c| c.local == Some(me) && c.remote == Some(peer))
                .collect();
            assert_eq!(
                got.len(),
                1,
                "one chain received by {me} from {peer} (chains without a 4-tuple: {}, their \
                 socket was gone when user space read the records): {got:#?}",
                stats.unmapped
            );
            assert!(!got[0].truncated);
            der_hashes(&got[0].ders)
        };
        assert_eq!(
            received_by(client, server),
            der_hashes(chain_of(server.ip())),
            "server chain of {client} -> {server}"
        );
        assert_eq!(
            received_by(server, client),
            der_hashes(chain_of(client.ip())),
            "client chain of {client} -> {server}"
        );
    }
    assert_eq!(
        mine.len(),
        2 * sessions.len(),
        "no chain beyond the sessions' two"
    );

    // Noise: the bundle loads were filtered, and none of their certificates is in any chain.
    assert!(runs >= 1);
    assert!(
        stats.outside_ssl >= 100,
        "CA bundle loads seen and dropped in the kernel: {stats:?}"
    );
    let bundle: HashSet<[u8; 32]> = der_hashes(&pem_ders(Path::new(BUNDLE)).unwrap())
        .into_iter()
        .collect();
    assert!(bundle.len() > 50);
    for c in &all {
        for h in der_hashes(&c.ders) {
            assert!(!bundle.contains(&h), "a CA bundle certificate in {c:?}");
        }
    }
    assert_eq!(stats.ring_full + stats.read_errors + stats.bad_records, 0);
}

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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
