//! Test helper: attaches mxcert's eBPF source to an interface inside a network namespace,
//! prints `ready <program ids>` and then keeps the attachment until killed (at most 120 s).
//! The SIGKILL test uses it to show that the kernel drops the TCX links with the process.
//!
//! usage: ebpf-hold <netns|-> <iface> [port]   (`-`: stay in the current namespace, e.g. when
//! started by `ip netns exec` under `setpriv` to run without root)

use std::io::Write;
use std::time::{Duration, Instant};

use mxcert::capture::ebpf::EbpfSource;
use mxcert::capture::LiveSource;
use mxcert_system_tests::netns::NetnsGuard;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ns, iface, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: ebpf-hold <netns|-> <iface> [port]");
    };
    let port: u16 = rest.first().map_or(Ok(25), |p| p.parse())?;
    let _ns = match ns.as_str() {
        "-" => None,
        ns => Some(NetnsGuard::enter_path(&format!("/run/netns/{ns}"))?),
    };
    let mut source = EbpfSource::open(std::slice::from_ref(iface), &[port])?;
    let ids: Vec<String> = source.program_ids().iter().map(u32::to_string).collect();
    println!("ready {}", ids.join(" "));
    std::io::stdout().flush()?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        // Keep consuming, as the daemon would, so the ring never fills.
        source.poll(Duration::from_millis(200), &mut |_| {})?;
    }
    Ok(())
}
