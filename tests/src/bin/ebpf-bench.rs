//! Cost of the eBPF capture path (`cargo xtask bench-ebpf`, root): bounded TCP transfers
//! between two network namespaces, with and without the TC program, printing throughput, the
//! program's own run time per packet (the kernel's BPF run-time statistics, enabled for the
//! run) and what crossed into user space.
//!
//! Scenarios: no program (baseline); program attached, port not watched (parse and skip);
//! watched and copied to user space (the handshake path); watched but the flow marked done (the
//! cutoff path every mail body takes). Each with offloads off (MTU segments, the per-packet
//! worst case) and on (super-packets).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mxcert::capture::ebpf::EbpfSource;
use mxcert::capture::{FlowTuple, LiveSource};
use mxcert_system_tests::ebpf::{exchange, test_bytes, Pause};
use mxcert_system_tests::netns::{NetnsPair, Side};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Baseline,
    Unwatched,
    Copied,
    CutOff,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "no program",
            Mode::Unwatched => "attached, port not watched",
            Mode::Copied => "watched, copied to user space",
            Mode::CutOff => "watched, flow cut off",
        }
    }
}

/// (run time ns, run count) summed over the programs.
fn prog_stats(ids: &[u32]) -> (u64, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .fold((0, 0), |(t, n), p| {
            (t + p.run_time().as_nanos() as u64, n + p.run_count())
        })
}

fn scenario(pair: &NetnsPair, mode: Mode, size: usize, offloads: bool) -> Result<()> {
    pair.set_offloads(offloads)?;
    let port = 25;
    let watched = if mode == Mode::Unwatched { 2525 } else { 25 };
    let mut source = match mode {
        Mode::Baseline => None,
        _ => {
            let _ns = pair.enter(Side::Server)?;
            Some(EbpfSource::open(
                std::slice::from_ref(&pair.server_if),
                &[watched],
            )?)
        }
    };
    let ids = source
        .as_ref()
        .map(|s| s.program_ids().to_vec())
        .unwrap_or_default();
    let (reached_tx, reached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let data = test_bytes(size, 21);
    let x = exchange(
        pair,
        port,
        data,
        b"ok".to_vec(),
        Some(Pause {
            first: 1,
            reached: reached_tx,
            go: go_rx,
        }),
    );
    let client = reached_rx
        .recv_timeout(Duration::from_secs(20))
        .context("client never connected")?;
    if let (Mode::CutOff, Some(s)) = (mode, source.as_mut()) {
        s.flow_done(&FlowTuple::new(
            client,
            SocketAddr::from((pair.server_ip, port)),
        ));
    }
    let before = prog_stats(&ids);
    let start = Instant::now();
    go_tx.send(()).ok();
    let (mut frames, mut bytes) = (0u64, 0u64);
    while !x.is_finished() && start.elapsed() < Duration::from_secs(120) {
        match source.as_mut() {
            Some(s) => {
                s.poll(Duration::from_millis(20), &mut |p| {
                    frames += 1;
                    bytes += p.data.len() as u64;
                })?;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let x = x
        .join()
        .map_err(|_| anyhow::anyhow!("exchange panicked"))??;
    anyhow::ensure!(x.server_got_len == size, "transfer incomplete");
    let after = prog_stats(&ids);
    let (runs, ns) = (after.1 - before.1, after.0 - before.0);
    let per_pkt = if runs > 0 {
        format!("{:6.0} ns/packet over {runs} runs", ns as f64 / runs as f64)
    } else {
        "     - (no program)".into()
    };
    let dropped = source.as_ref().map_or(0, |s| s.counters().dropped);
    println!(
        "offloads {:3}  {:32} {:8.0} MB/s  {per_pkt:34}  user space: {frames} frames, {:.1} MB, {dropped} dropped",
        if offloads { "on" } else { "off" },
        mode.name(),
        size as f64 / secs / 1e6,
        bytes as f64 / 1e6,
    );
    Ok(())
}

fn main() -> Result<()> {
    mxcert::capture::ebpf::available().map_err(anyhow::Error::msg)?;
    let mb: usize = std::env::args()
        .nth(1)
        .map_or(Ok(128), |s| s.parse())
        .context("usage: ebpf-bench [MB per transfer, default 128]")?;
    let pair = NetnsPair::create("mxebb", 29)?;
    // BPF run-time statistics are off by default (they cost two clock reads per run); on
    // while this fd is open (kernel/bpf/syscall.c, BPF_ENABLE_STATS).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enable BPF stats")?;
    println!("eBPF capture path: {mb} MB per transfer, veth between two namespaces, one flow");
    for offloads in [false, true] {
        for mode in [Mode::Baseline, Mode::Unwatched, Mode::Copied, Mode::CutOff] {
            scenario(&pair, mode, mb << 20, offloads)?;
        }
    }
    Ok(())
}
