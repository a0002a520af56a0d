//! Test helper: loads mxcert's TLS-library probes with the allow-list given as arguments,
//! attaches them to the libraries of the running processes of those names, prints
//! `ready <attached files> <program ids>` and keeps them until killed (at most 120 s). The
//! SIGKILL test uses it to show that the kernel drops the uprobes with the process.
//!
//! usage: tls-hold <process name>...

use std::io::Write;
use std::time::{Duration, Instant};

use mxcert::capture::tlslib::TlsProbes;

fn main() -> anyhow::Result<()> {
    let comms: Vec<String> = std::env::args().skip(1).collect();
    let mut probes = TlsProbes::open(&comms)?;
    probes.refresh()?;
    for msg in probes.take_reports() {
        eprintln!("tls-hold: {msg}");
    }
    let ids: Vec<String> = probes.program_ids().iter().map(u32::to_string).collect();
    println!("ready {} {}", probes.attached_files(), ids.join(" "));
    std::io::stdout().flush()?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        // Keep consuming, as the daemon would, so the ring never fills.
        probes.poll(Duration::from_millis(200), &mut |_| {})?;
    }
    Ok(())
}
