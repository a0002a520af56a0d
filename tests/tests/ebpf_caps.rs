//! The eBPF backend runs without root given CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (what the
//! systemd unit grants), and without them it says which capabilities are missing instead of
//! failing obscurely. The holder runs as `nobody` under setpriv(1) with exactly those ambient
//! capabilities, or none.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use mxcert_system_tests::ebpf::require_ebpf;
use mxcert_system_tests::netns::NetnsPair;

const CAPS: &str = ",+bpf,+net_admin,+perfmon";

fn holder(pair: &NetnsPair, caps: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &pair.server_ns, "setpriv"])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps=-all{caps}"))
        .arg(format!("--ambient-caps=-all{caps}"))
        .args([env!("CARGO_BIN_EXE_ebpf-hold"), "-", &pair.server_if, "25"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn loads_as_nobody_with_bpf_net_admin_perfmon_and_names_them_without() {
    if !require_ebpf("loads_as_nobody_with_bpf_net_admin_perfmon_and_names_them_without") {
        return;
    }
    let pair = NetnsPair::create("mxeb7", 26).expect("namespaces");

    let mut child = holder(&pair, CAPS).spawn().expect("start setpriv");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read");
    child.kill().ok();
    let out = child.wait_with_output().expect("wait");
    assert!(
        line.starts_with("ready "),
        "as nobody with {CAPS}: {line:?}, stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = holder(&pair, "").output().expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "loaded without capabilities?");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_NET_ADMIN") && err.contains("CAP_PERFMON"),
        "the error does not name the capabilities: {err}"
    );
    eprintln!("without capabilities: {}", err.trim());
}
