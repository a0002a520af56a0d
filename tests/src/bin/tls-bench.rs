//! Cost of the TLS-library uprobes (issue #8; `cargo xtask bench tls-library`, root): full TLS
//! 1.3 handshakes with client certificates (`openssl s_time -new` against `openssl s_server`,
//! both in network namespaces, each side with a leaf + intermediate chain from pcaps/certs),
//! run for a fixed time in alternating rounds:
//!
//! - no probes (baseline);
//! - probes attached, both processes allow-listed (every peer certificate copied to user space
//!   and assembled into chains, as on an MTA);
//! - probes attached, neither process allow-listed (what every other program on the host that
//!   uses OpenSSL pays: the uprobe trap and the kernel's name filter).
//!
//! Printed: handshakes/s per run and the median per mode with the difference to the baseline;
//! per program the kernel's own run time per hit (BPF run-time statistics, on for the run
//! through `BPF_ENABLE_STATS`, which the kernel turns off again when the fd closes) and hits
//! per handshake. The run time excludes the uprobe trap itself (int3, single-step), which the
//! handshake rate includes. The probes sit on the shared library files, so other processes
//! on the host calling these functions during the run count too.
//!
//! usage: tls-bench [seconds per run, default 4] [rounds, default 3]

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mxcert::capture::tlslib::TlsProbes;
use mxcert_system_tests::mta::{certs_dir, WorkDir};
use mxcert_system_tests::netns::{NetnsPair, Side};
use mxcert_system_tests::uprobe::{s_server, write_intermediates, Killed};

const PORT: u16 = 19500;
/// Port of the idle allow-listed process of the "not allow-listed" mode.
const IDLE_PORT: u16 = 19501;
/// Name (comm) of that process: a copy of the openssl binary.
const IDLE_COMM: &str = "mxab-idle";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    Off,
    Listed,
    Unlisted,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "no probes",
            Mode::Listed => "probes, processes allow-listed",
            Mode::Unlisted => "probes, processes not allow-listed",
        }
    }
}

/// Per mode: handshakes/s of each run; per program, by its kernel name (run time ns, run
/// count); handshakes; chains handed out.
#[derive(Default)]
struct Figures {
    rates: Vec<f64>,
    progs: BTreeMap<String, (u64, u64)>,
    handshakes: u64,
    chains: u64,
    /// Chains whose 4-tuple came from the kernel, from /proc.
    kernel_mapped: u64,
    proc_mapped: u64,
}

/// (kernel name, run time ns, run count) of each of the programs `ids`: every program of the
/// shared object (uprobes of both libraries, the exec/exit and socket tracepoints, and the TC
/// classifier, which no handshake here runs).
fn prog_stats(ids: &[u32]) -> Vec<(String, u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| {
            let name = p.name_as_str().unwrap_or("?").to_string();
            (name, p.run_time().as_nanos() as u64, p.run_count())
        })
        .collect()
}

/// One timed `s_time` run, added to `fig`; returns (handshakes, seconds).
fn run(
    pair: &NetnsPair,
    mode: Mode,
    secs: u32,
    certs: &Path,
    fig: &mut Figures,
) -> Result<(u64, f64)> {
    let mut probes = match mode {
        Mode::Off => None,
        Mode::Listed => Some(TlsProbes::open(&["openssl".into()])?),
        Mode::Unlisted => Some(TlsProbes::open(&[IDLE_COMM.into()])?),
    };
    if let Some(p) = probes.as_mut() {
        // Attaches to the libssl/libcrypto files of the allow-listed process found (s_server,
        // or the idle copy): the same files s_time maps.
        if p.refresh()? < 2 {
            bail!("the probes did not attach to libssl and libcrypto");
        }
    }
    let ids = probes
        .as_ref()
        .map(|p| p.program_ids().to_vec())
        .unwrap_or_default();
    if probes.is_some() && ids.len() < 4 {
        bail!("expected the TLS-library programs, got ids {ids:?}");
    }
    let c = |f: &str| certs.join(f).display().to_string();
    let start = Instant::now();
    let mut client = Killed(
        pair.command(Side::Client, "openssl")
            .args(["s_time", "-new", "-tls1_3", "-time", &secs.to_string()])
            .args(["-connect", &format!("{}:{PORT}", pair.server_ip)])
            .args(["-cert", &c("cli_clientauth.crt")])
            .args(["-key", &c("cli_clientauth.key")])
            .args(["-CAfile", &c("root-ca.crt")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start openssl s_time")?,
    );
    let mut chains = 0u64;
    let limit = Duration::from_secs(u64::from(secs) + 30);
    while client.0.try_wait()?.is_none() {
        if start.elapsed() > limit {
            bail!("s_time did not finish within {limit:?}");
        }
        match probes.as_mut() {
            // Consume as the daemon does, so the ring never fills.
            Some(p) => {
                p.poll(Duration::from_millis(50), &mut |c| {
                    chains += u64::from(!c.sent)
                })?;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let mut out = String::new();
    std::io::Read::read_to_string(client.0.stdout.as_mut().context("stdout")?, &mut out)?;
    // "729 connections in 0.94s; 775.53 connections/user sec, bytes read 0"
    let n: u64 = out
        .lines()
        .find(|l| l.contains("connections in") && l.contains("user sec"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no connection count in s_time's output:\n{out}"))?;
    if n == 0 {
        bail!("s_time made no connection");
    }
    if let Some(p) = probes.as_mut() {
        // The last chains close after the quiet interval.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_millis(300) {
            p.poll(Duration::from_millis(50), &mut |c| {
                chains += u64::from(!c.sent)
            })?;
        }
        let stats = p.stats();
        if stats.ring_full > 0 {
            eprintln!("tls-bench: {} ring records lost", stats.ring_full);
        }
        fig.kernel_mapped += stats.kernel_mapped;
        fig.proc_mapped += stats.proc_mapped;
    }
    // Each run loads its own programs: their counters start at zero.
    for (name, ns, hits) in prog_stats(&ids) {
        let acc = fig.progs.entry(name).or_default();
        acc.0 += ns;
        acc.1 += hits;
    }
    fig.handshakes += n;
    fig.chains += chains;
    fig.rates.push(n as f64 / wall);
    Ok((n, wall))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn main() -> Result<()> {
    mxcert::capture::ebpf::available().map_err(anyhow::Error::msg)?;
    let usage = "usage: tls-bench [seconds per run, default 4] [rounds, default 3]";
    let mut args = std::env::args().skip(1);
    let secs: u32 = args.next().map_or(Ok(4), |s| s.parse()).context(usage)?;
    let rounds: u32 = args.next().map_or(Ok(3), |s| s.parse()).context(usage)?;
    if !(1..=60).contains(&secs) || !(1..=20).contains(&rounds) {
        bail!("{usage} (1-60 s, 1-20 rounds)");
    }
    let certs = certs_dir();
    let work = WorkDir::new("tls-bench")?;
    let pair = NetnsPair::create("mxab", 61)?;
    let srv_int = work.join("srv-int.pem");
    write_intermediates(&certs.join("srv_both.chain.pem"), &srv_int)?;
    // s_time sends the client leaf only (it loads `-cert` with
    // SSL_CTX_use_certificate_file): the server's CA file holds the client's intermediate so
    // that the verification succeeds, as between two MTAs.
    let server_ca = work.join("server-ca.pem");
    write_intermediates(&certs.join("cli_clientauth.chain.pem"), &server_ca)?;
    let mut ca = std::fs::read(certs.join("root-ca.crt"))?;
    ca.extend(std::fs::read(&server_ca)?);
    std::fs::write(&server_ca, ca)?;
    let c = |f: &str| certs.join(f).display().to_string();
    let (srv_int, server_ca) = (
        srv_int.display().to_string(),
        server_ca.display().to_string(),
    );
    let accept = format!("{}:{PORT}", pair.server_ip);
    let server_args = [
        "-accept",
        &accept,
        "-tls1_3",
        "-cert",
        &c("srv_both.crt"),
        "-key",
        &c("srv_both.key"),
        "-cert_chain",
        &srv_int,
        "-CAfile",
        &server_ca,
        "-Verify",
        "3",
    ];
    let (_server, out) = s_server(&pair, &server_args)?;
    // s_server prints every client certificate: drain it so it never blocks on a full pipe.
    std::thread::spawn(move || out.lines().map_while(Result::ok).for_each(drop));
    // The "not allow-listed" mode attaches through an idle process of another name mapping the
    // same libraries (the probes attach per library file found in an allow-listed process).
    let idle_bin = work.join(IDLE_COMM);
    std::fs::copy(
        which("openssl").context("openssl not found in PATH")?,
        &idle_bin,
    )?;
    let mut idle = Killed(
        pair.command(Side::Server, idle_bin.to_str().context("path")?)
            .args(["s_server", "-accept", &format!("127.0.0.1:{IDLE_PORT}")])
            .args(["-cert", &c("srv_both.crt"), "-key", &c("srv_both.key")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start the idle process")?,
    );
    let mut line = String::new();
    let mut idle_out = std::io::BufReader::new(idle.0.stdout.take().context("stdout")?);
    while !line.contains("ACCEPT") {
        line.clear();
        if idle_out.read_line(&mut line)? == 0 {
            bail!("the idle {IDLE_COMM} ended before listening");
        }
    }

    // BPF run-time statistics are off by default (two clock reads per run); on while this fd
    // is open (kernel/bpf/syscall.c, BPF_ENABLE_STATS), back to the previous state after.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enable BPF stats")?;
    println!(
        "TLS-library uprobes: TLS 1.3 handshakes with client certificates, openssl s_time -new \
         against openssl s_server in two namespaces, {secs} s per run, {rounds} rounds"
    );
    let modes = [Mode::Off, Mode::Listed, Mode::Unlisted];
    let mut figs: BTreeMap<Mode, Figures> = BTreeMap::new();
    for round in 1..=rounds {
        for mode in modes {
            let fig = figs.entry(mode).or_default();
            let (n, wall) = run(&pair, mode, secs, &certs, fig)?;
            println!(
                "round {round}  {:36} {n:6} handshakes in {wall:5.2} s  {:7.1} handshakes/s",
                mode.name(),
                n as f64 / wall
            );
            std::io::stdout().flush()?;
        }
    }
    let base = median(&figs[&Mode::Off].rates);
    println!("\nmedian handshakes/s (difference to no probes):");
    for mode in modes {
        let m = median(&figs[&mode].rates);
        println!(
            "  {:36} {m:7.1}  ({:+.1} %)",
            mode.name(),
            (m - base) / base * 100.0
        );
    }
    for mode in [Mode::Listed, Mode::Unlisted] {
        let f = &figs[&mode];
        println!(
            "\n{} ({} handshakes, {} chains read = {:.2} per handshake; 4-tuples from the \
             kernel {}, from /proc {}):",
            mode.name(),
            f.handshakes,
            f.chains,
            f.chains as f64 / f.handshakes as f64,
            f.kernel_mapped,
            f.proc_mapped
        );
        let (mut total_ns, mut total_hits) = (0u64, 0u64);
        for (name, &(ns, hits)) in &f.progs {
            if hits == 0 {
                continue;
            }
            total_ns += ns;
            total_hits += hits;
            println!(
                "  {name:22} {hits:9} hits  {:6.0} ns/hit  {:6.2} hits/handshake",
                ns as f64 / hits.max(1) as f64,
                hits as f64 / f.handshakes as f64
            );
        }
        println!(
            "  {:22} {total_hits:9} hits  {:6.0} ns/hit  {:6.2} hits/handshake  {:6.2} µs BPF run time/handshake",
            "all",
            total_ns as f64 / total_hits.max(1) as f64,
            total_hits as f64 / f.handshakes as f64,
            total_ns as f64 / f.handshakes as f64 / 1000.0
        );
    }
    drop(idle);
    Ok(())
}

/// The first `name` in PATH.
fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
