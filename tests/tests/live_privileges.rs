//! The daemon runs unprivileged with only the capability its backend needs, configured by a
//! config file and the environment (as the systemd unit does), and names a missing capability
//! instead of failing with a bare EPERM.

use std::path::Path;
use std::time::Duration;

use mxcert_system_tests::live::{self, Capture};
use mxcert_system_tests::mta::{self, set_mode, Postfix, PostfixOpts, WorkDir};
use mxcert_system_tests::netns::{NetnsPair, Side};

/// `setpriv` arguments for user nobody with `caps` as inheritable + ambient capabilities (what
/// systemd's AmbientCapabilities gives a non-root service).
fn as_nobody(caps: &str) -> Vec<String> {
    let mut v = vec![
        "setpriv".to_string(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
    ];
    if caps.is_empty() {
        v.push("--inh-caps=-all".into());
    } else {
        v.push(format!("--inh-caps=-all,{caps}"));
        v.push(format!("--ambient-caps=-all,{caps}"));
    }
    v
}

#[test]
fn unprivileged_daemon_captures_with_only_its_backends_capabilities_and_names_missing_ones() {
    if !mta::require_mta("live_privileges") {
        return;
    }
    let work = WorkDir::new("live-priv").expect("work dir");
    let pair = NetnsPair::create("mxlv4", 34).expect("namespaces");
    let _pf = Postfix::start(&pair, work.join("postfix"), &PostfixOpts::cert("srv_both"))
        .expect("postfix");
    // A copy of the binary and an output directory that user nobody can use.
    let bin = work.join("mxcert");
    std::fs::copy(live::mxcert_bin().unwrap(), &bin).expect("copy binary");
    set_mode(&bin, 0o755).unwrap();
    let outdir = work.join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    set_mode(&outdir, 0o777).unwrap();
    let out = outdir.join("records.jsonl");

    // No capability at all: the pcap backend says which one it needs; eBPF names its three.
    for (backend, want) in [
        ("pcap", "missing CAP_NET_RAW"),
        ("ebpf", "missing CAP_BPF and CAP_NET_ADMIN and CAP_PERFMON"),
    ] {
        let wrapper = as_nobody(if backend == "ebpf" { "+net_raw" } else { "" });
        let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let o = Capture::command(&pair, &w, &bin)
            .args([
                "capture",
                "--iface",
                &pair.server_if,
                "--backend",
                backend,
                "--out",
            ])
            .arg(&out)
            .output()
            .expect("run mxcert");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{backend}: {err}");
        assert!(
            err.contains(want),
            "{backend}: expected {want:?} in:\n{err}"
        );
    }

    // With CAP_NET_RAW only (pcap), then with CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON only (eBPF),
    // configured by file + environment like the systemd unit.
    let config = work.join("mxcert.toml");
    std::fs::write(
        &config,
        format!(
            "iface = [\"{}\"]\nbackend = \"pcap\"\nout = \"{}\"\nstatus-interval = 0\n",
            pair.server_if,
            Path::new("/nonexistent/overridden-by-env.jsonl").display()
        ),
    )
    .unwrap();
    set_mode(&config, 0o644).unwrap();
    let mut runs = vec![("pcap", "+net_raw", "0000000000002000")];
    if mxcert_system_tests::ebpf::require_ebpf("live_privileges (eBPF part)") {
        runs.push(("ebpf", "+bpf,+net_admin,+perfmon", "000000c000001000"));
    }
    for (backend, caps, capeff) in runs {
        let _ = std::fs::remove_file(&out);
        let wrapper = as_nobody(caps);
        let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let mut cmd = Capture::command(&pair, &w, &bin);
        cmd.args(["capture", "--config"])
            .arg(&config)
            .env("MXCERT_OUT", &out)
            .env("MXCERT_BACKEND", backend)
            .env("MXCERT_LOG_FORMAT", "json");
        let log = work.join(&format!("mxcert-{backend}.log"));
        let cap = Capture::spawn(cmd, &out, &log).expect("unprivileged capture");
        let text = cap.log_text();
        assert!(
            text.lines().all(|l| l.starts_with('{')),
            "MXCERT_LOG_FORMAT=json not applied:\n{text}"
        );
        assert!(text.contains(&format!("\"capeff\":\"{capeff}\"")), "{text}");
        assert!(
            text.contains(&format!("\"backend\":\"{backend}\"")),
            "{text}"
        );
        let ehlo = format!("nobody-{backend}.client.example");
        mta::swaks_ok(
            &pair,
            &[
                "--port",
                "25",
                "--ehlo",
                &ehlo,
                "--tls",
                "--tls-protocol",
                "tlsv1_2",
            ],
        )
        .expect("swaks");
        mta::wait_quiet(&pair, Side::Server).expect("quiet");
        std::thread::sleep(Duration::from_millis(300));
        let status = cap.stop("TERM").expect("stops");
        assert!(status.success(), "{backend}: exit {status}");
        let recs = std::fs::read_to_string(&out).expect("records written by nobody");
        assert!(
            recs.contains(&format!("\"ehlo\":\"{ehlo}\""))
                && recs.contains("\"outcome\":\"established\""),
            "{backend}: {recs}"
        );
        // --local-net defaulted to the interface's own address: the session is inbound.
        assert!(
            recs.contains("\"direction\":\"inbound\""),
            "{backend}: {recs}"
        );
    }
}
