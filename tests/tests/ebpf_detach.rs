//! The programs leave with the source: dropping an `EbpfSource` removes its TCX links, and a
//! process holding them that is killed with SIGKILL (no destructor runs) leaves no link behind
//! either, while traffic keeps flowing through the interface. Checked with aya's link listing
//! and with `bpftool link show`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mxcert_system_tests::ebpf::{exchange, open_on_server, require_ebpf, sha256, test_bytes};
use mxcert_system_tests::netns::NetnsPair;

/// Links (any type) whose program is one of `prog_ids`, per aya.
fn links_of(prog_ids: &[u32]) -> usize {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .filter(|l| prog_ids.contains(&l.program_id()))
        .count()
}

/// Links whose program is one of `prog_ids`, per `bpftool -j link show`. bpftool gives up
/// when a link vanishes between listing its id and opening it (EAGAIN; other tests detach
/// concurrently), so it is retried.
fn bpftool_links_of(prog_ids: &[u32]) -> usize {
    let mut tries = 0;
    let out = loop {
        let out = Command::new("bpftool")
            .args(["-j", "link", "show"])
            .output()
            .expect("bpftool (installed by `cargo xtask setup`)");
        tries += 1;
        if out.status.success() || tries == 50 {
            break out;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(out.status.success(), "bpftool link show: {out:?}");
    let json = String::from_utf8_lossy(&out.stdout);
    prog_ids
        .iter()
        .map(|id| {
            let needle = format!("\"prog_id\":{id}");
            json.match_indices(&needle)
                .filter(|(i, _)| {
                    let next = json[i + needle.len()..].chars().next();
                    !next.is_some_and(|c| c.is_ascii_digit())
                })
                .count()
        })
        .sum()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dropping_the_source_removes_its_tcx_links() {
    if !require_ebpf("dropping_the_source_removes_its_tcx_links") {
        return;
    }
    let pair = NetnsPair::create("mxeb4", 23).expect("namespaces");
    let source = open_on_server(&pair, &[25]).expect("open");
    let ids = source.program_ids().to_vec();
    assert_eq!(ids.len(), 2, "ingress and egress programs");
    // One link per direction on the one interface.
    assert_eq!(links_of(&ids), 2);
    assert_eq!(bpftool_links_of(&ids), 2);
    drop(source);
    wait_until("links gone after drop", || links_of(&ids) == 0);
    assert_eq!(bpftool_links_of(&ids), 0);
}

#[test]
fn sigkill_of_the_holder_removes_the_links_and_traffic_flows() {
    if !require_ebpf("sigkill_of_the_holder_removes_the_links_and_traffic_flows") {
        return;
    }
    let pair = NetnsPair::create("mxeb5", 24).expect("namespaces");
    let mut holder = Command::new(env!("CARGO_BIN_EXE_ebpf-hold"))
        .args([&pair.server_ns, &pair.server_if, "25"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ebpf-hold");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read ready line");
    let ids: Vec<u32> = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("ebpf-hold said {line:?}"))
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        bpftool_links_of(&ids),
        2,
        "links attached while the holder runs"
    );

    // Traffic through the hooked interface while attached...
    let data = test_bytes(200_000, 9);
    let x = exchange(&pair, 25, data.clone(), data.clone(), None);
    let x = x.join().unwrap().expect("exchange while attached");
    assert_eq!(x.server_got, sha256(&data));

    holder.kill().expect("SIGKILL");
    holder.wait().expect("reap");
    wait_until("links gone after SIGKILL", || bpftool_links_of(&ids) == 0);
    assert_eq!(links_of(&ids), 0);

    // ...and after the kill.
    let x = exchange(&pair, 25, data.clone(), data.clone(), None);
    let x = x.join().unwrap().expect("exchange after the kill");
    assert_eq!((x.server_got, x.client_got), (sha256(&data), sha256(&data)));
}
