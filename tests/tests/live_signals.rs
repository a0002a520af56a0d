//! Signals of the daemon: SIGHUP reloads the policy without losing the flows in progress (and a
//! broken policy file keeps the old one); SIGKILL leaves nothing behind and mail keeps flowing.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use mxcert_system_tests::live::{self, Capture};
use mxcert_system_tests::mta::{self, wait_for, Postfix, PostfixOpts, WorkDir};
use mxcert_system_tests::netns::{NetnsPair, Side};

fn server(pair: &NetnsPair, work: &WorkDir) -> Postfix {
    Postfix::start(pair, work.join("postfix"), &PostfixOpts::cert("srv_both")).expect("postfix")
}

/// A TLS 1.2 STARTTLS session; with `quiet`, waits until the server has no connection left.
fn tls12(pair: &NetnsPair, ehlo: &str, quiet: bool) {
    mta::swaks_ok(
        pair,
        &[
            "--port",
            "25",
            "--ehlo",
            ehlo,
            "--tls",
            "--tls-protocol",
            "tlsv1_2",
            "--tls-sni",
            "mx.test.example",
        ],
    )
    .expect("swaks");
    if quiet {
        mta::wait_quiet(pair, Side::Server).expect("session over");
    }
}

/// Spawns a client that prints "ready" once it holds its connection where the test wants it,
/// and waits for that line (bounded by the client's own `timeout`).
fn held_client(cmd: &mut std::process::Command) -> std::process::Child {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("held client");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("held client output");
    assert_eq!(line.trim(), "ready", "held client did not get ready");
    child
}

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    live::sorted_records(path)
        .expect("records")
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn sighup_reloads_the_policy_and_keeps_open_flows() {
    if !mta::require_mta("live_signals") {
        return;
    }
    let work = WorkDir::new("live-hup").expect("work dir");
    let pair = NetnsPair::create("mxlv2", 32).expect("namespaces");
    let _pf = server(&pair, &work);
    let policy = work.join("policy.toml");
    let default = String::from_utf8(
        std::process::Command::new(live::mxcert_bin().unwrap())
            .args(["policy", "default"])
            .output()
            .expect("mxcert policy default")
            .stdout,
    )
    .unwrap();
    std::fs::write(&policy, &default).unwrap();
    let out = work.join("live.jsonl");
    let cap = Capture::start(
        &pair,
        &out,
        &work.join("mxcert.log"),
        &[
            "--backend",
            "pcap",
            "--policy",
            policy.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:19320",
        ],
    )
    .expect("mxcert capture");

    // A session that starts before the reload and ends after it.
    let mut held = held_client(
        pair.command(Side::Client, "timeout")
            .args(["30", "python3", "-u", "-c"])
            .arg(format!(
            "import socket,sys\n\
             s=socket.create_connection(('{}',25),timeout=20); f=s.makefile('rb')\n\
             def reply():\n  l=f.readline()\n  while l[3:4]==b'-': l=f.readline()\n  return l\n\
             reply(); s.sendall(b'EHLO held.client.example\\r\\n'); reply()\n\
             print('ready', flush=True); sys.stdin.readline()\n\
             s.sendall(b'MAIL FROM:<a@client.example>\\r\\n'); reply(); s.sendall(b'QUIT\\r\\n'); reply()\n",
            pair.server_ip
        )),
    );
    tls12(&pair, "before.client.example", false);

    // Reload with a policy whose strict scenario has another name.
    std::fs::write(
        &policy,
        default.replace(
            "[scenarios.strict_validation]",
            "[scenarios.reloaded_strict]",
        ),
    )
    .unwrap();
    cap.signal("HUP");
    wait_for("the reload", Duration::from_secs(10), || {
        cap.log_text().contains("policy reloaded")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cap.log_text()));
    held.stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .expect("release held client");
    assert!(mta::wait_child(&mut held, Duration::from_secs(20))
        .expect("held client exits")
        .success());
    tls12(&pair, "after.client.example", true);

    // A broken policy is refused and the last good one stays.
    std::fs::write(&policy, "this is [not a policy").unwrap();
    cap.signal("HUP");
    wait_for("the failed reload", Duration::from_secs(10), || {
        cap.log_text().contains("policy reload failed")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cap.log_text()));
    tls12(&pair, "broken.client.example", true);
    let scrape = live::scrape_when(&pair, 19320, |t| {
        live::metric(t, "mxcert_sessions_total{outcome=\"established\"}") == Some(3)
    })
    .expect("metrics");
    assert_eq!(
        live::metric(&scrape, "mxcert_policy_reloads_total{result=\"ok\"}"),
        Some(1),
        "{scrape}"
    );
    assert_eq!(
        live::metric(&scrape, "mxcert_policy_reloads_total{result=\"failed\"}"),
        Some(1),
        "{scrape}"
    );
    let status = cap.stop("TERM").expect("stops");
    assert!(status.success());

    let recs = records(&out);
    let session = |ehlo: &str| {
        recs.iter()
            .find(|r| r["record"] == "session" && r["smtp"]["ehlo"] == ehlo)
            .unwrap_or_else(|| panic!("no session for {ehlo}: {recs:?}"))
            .clone()
    };
    let scenarios = |ehlo: &str| {
        let id = session(ehlo)["session_id"].clone();
        let mut v: Vec<String> = recs
            .iter()
            .filter(|r| r["record"] == "finding" && r["session_id"] == id)
            .map(|r| r["scenario"].as_str().unwrap_or("").to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    // The flow open across the reload was kept and recorded whole.
    let h = session("held.client.example");
    assert_eq!(h["outcome"], "no_tls", "{h}");
    assert_eq!(h["smtp"]["starttls_offered"], true, "{h}");
    assert!(scenarios("before.client.example").contains(&"strict_validation".to_string()));
    for ehlo in ["after.client.example", "broken.client.example"] {
        let s = scenarios(ehlo);
        assert!(
            s.contains(&"reloaded_strict".to_string())
                && !s.contains(&"strict_validation".to_string()),
            "{ehlo}: {s:?}"
        );
    }
}

/// SIGKILL: no destructor runs, yet nothing stays attached (packet sockets and TCX links go
/// with the process) and mail keeps flowing.
fn sigkill(backend: &str) {
    if !mta::require_mta("live_signals") {
        return;
    }
    let work = WorkDir::new(&format!("live-kill-{backend}")).expect("work dir");
    let pair = NetnsPair::create("mxlv3", 33).expect("namespaces");
    let pf = server(&pair, &work);
    let before = if backend == "ebpf" {
        live::tcx_links().expect("bpftool")
    } else {
        Vec::new()
    };
    let cap = Capture::start(
        &pair,
        &work.join("live.jsonl"),
        &work.join("mxcert.log"),
        &["--backend", backend],
    )
    .expect("mxcert capture");
    tls12(&pair, "one.client.example", true);
    let links: Vec<u64> = if backend == "ebpf" {
        let now = live::tcx_links().expect("bpftool");
        let ours: Vec<u64> = now.into_iter().filter(|id| !before.contains(id)).collect();
        assert!(
            ours.len() >= 2,
            "ingress and egress links while mxcert runs: {ours:?}"
        );
        ours
    } else {
        Vec::new()
    };
    let pid = cap.pid();
    let status = cap.stop("KILL").expect("killed");
    assert!(!status.success(), "SIGKILL must end the process: {status}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still there"
    );
    // Its packet sockets are gone with it.
    let socks = pair
        .command(Side::Server, "ss")
        .args(["-Hap", "--packet"])
        .output()
        .expect("ss");
    let socks = String::from_utf8_lossy(&socks.stdout);
    assert!(!socks.contains("mxcert"), "packet sockets left: {socks}");
    if backend == "ebpf" {
        // TCX links are released with the last file descriptor (the kernel frees them when the
        // process dies; allow it a moment).
        mta::wait_for("the links to go", Duration::from_secs(5), || {
            live::tcx_links().is_ok_and(|now| now.iter().all(|id| !links.contains(id)))
        })
        .expect("links gone after SIGKILL");
    }
    // Mail still flows without it.
    tls12(&pair, "two.client.example", true);
    assert_eq!(
        pf.delivered(2, Duration::from_secs(20))
            .expect("delivered")
            .len(),
        2
    );
}

/// The pcap and eBPF runs share one namespace pair, one after the other.
static KILL_PAIR: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn sigkill_leaves_no_capture_behind_and_mail_still_flows() {
    let _pair = live::serial(&KILL_PAIR);
    sigkill("pcap");
}

#[test]
fn sigkill_of_the_ebpf_daemon_leaves_no_link_and_mail_still_flows() {
    if !mxcert_system_tests::ebpf::require_ebpf(
        "sigkill_of_the_ebpf_daemon_leaves_no_link_and_mail_still_flows",
    ) {
        return;
    }
    let _pair = live::serial(&KILL_PAIR);
    sigkill("ebpf");
}

#[test]
fn sigterm_records_sessions_still_open_as_incomplete_and_exits_zero() {
    if !mta::require_mta("live_signals") {
        return;
    }
    let work = WorkDir::new("live-term").expect("work dir");
    let pair = NetnsPair::create("mxlv7", 37).expect("namespaces");
    let _pf = Postfix::start(&pair, work.join("postfix"), &PostfixOpts::cert("srv_both"))
        .expect("postfix");
    let out = work.join("live.jsonl");
    let cap = Capture::start(
        &pair,
        &out,
        &work.join("mxcert.log"),
        &["--backend", "pcap"],
    )
    .expect("mxcert capture");
    // STARTTLS, ClientHello, the server's flight read, then the connection held open.
    let script = mxcert_system_tests::repo_root().join("pcaps/mta/abandon.py");
    let ip = pair.server_ip.to_string();
    let mut held = held_client(
        pair.command(Side::Client, "timeout")
            .args(["30", "python3", "-u"])
            .arg(script)
            .args([ip.as_str(), "25", "hold", "held.client.example"]),
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = cap.stop("TERM").expect("stops");
    assert!(status.success(), "exit {status}");
    drop(held.stdin.take());
    let _ = mta::wait_child(&mut held, Duration::from_secs(10));
    let recs = records(&out);
    let s = recs
        .iter()
        .find(|r| r["record"] == "session")
        .unwrap_or_else(|| panic!("no session record after SIGTERM: {recs:?}"));
    assert_eq!(s["outcome"], "incomplete", "{s}");
    assert_eq!(s["smtp"]["ehlo"], "held.client.example", "{s}");
    assert_eq!(s["tls"]["version"], "TLS1.2", "{s}");
    // The server's chain was read before the stop and is in the record.
    assert_eq!(
        s["tls"]["server_chain"].as_array().map(Vec::len),
        Some(2),
        "{s}"
    );
}
