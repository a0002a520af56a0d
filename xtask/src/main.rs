//! Chores for mxcert: installing system dependencies, the whole test suite, the demo, fixture
//! regeneration and benchmarks. Run as `cargo xtask <command>` (alias in .cargo/config.toml).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

mod setup;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup    install what the build and tests need (apt packages when missing)
  test     the whole test suite: setup, cargo fmt --check, clippy -D warnings, cargo test
  demo     read the shipped sample captures (pcaps/), write records and the HTML report, print the text report
  pcaps    regenerate the fixture captures in pcaps/ with real Postfix/Exim/swaks (root, ~3 min)
  bench    throughput and memory figures of `mxcert read` on synthetic captures
           (`bench clickhouse`: sink throughput and --clickhouse overhead vs JSON lines;
           `bench tls-library [s] [rounds]`: cost of the TLS-library uprobes per hit and on
           the TLS 1.3 handshake rate, root)
  bench-ebpf [MB]  cost of the eBPF capture path: throughput and ns/packet in namespaces (root)";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.first().map(String::as_str) {
        Some("setup") => setup::all(),
        Some("test") => test(&root),
        Some("demo") => demo(&root),
        Some("pcaps") => run(Command::new("bash").arg(root.join("pcaps/make.sh"))),
        Some("bench") => bench(&root, &args[1..]),
        Some("bench-ebpf") => system_bench(&root, "ebpf-bench", &args[1..]),
        Some("-h") | Some("--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    setup::all()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo)
        .current_dir(root)
        .args(["fmt", "--all", "--", "--check"]))?;
    run(Command::new(&cargo).current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Echo cargo test's output and add one closing line for the whole suite: cargo prints a
    // "test result" per test binary, the last of which is often a binary with no tests.
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args(["test", "--workspace", "--all-targets"])
        .stdout(std::process::Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd.spawn().context("cannot start cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().expect("piped stdout");
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut w = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (w.next(), w.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    if passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    setup::all()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "mxcert"]))?;
    let mut captures: Vec<PathBuf> = std::fs::read_dir(root.join("pcaps"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    captures.sort();
    if captures.is_empty() {
        bail!("no captures in pcaps/: run `cargo xtask pcaps` to make them");
    }
    // The fixtures are a gateway's two sides: 198.18.0.1 receiving from senders, and
    // 198.18.0.2 sending to destinations. The captures that exercise a destination's server
    // certificate or its CertificateRequest tell the outbound story (our gateway is the
    // client); the rest the inbound one. Each side is read with its own --local-net, so the
    // report shows every section. The fixtures' certificates come from a private test PKI
    // (pcaps/certs/), trusted here as an operator trusts a private CA with --trust-anchors;
    // without it every chain would only say "untrusted".
    let (outbound, inbound): (Vec<PathBuf>, Vec<PathBuf>) =
        captures.into_iter().partition(|p| demo_outbound(p));
    let mxcert = root.join("target/release/mxcert");
    let mut records = Vec::new();
    for (side, files, net) in [
        ("inbound", &inbound, "198.18.0.1/32"),
        ("outbound", &outbound, "198.18.0.2/32"),
    ] {
        if files.is_empty() {
            continue;
        }
        let out = root.join(format!("mxcert-out/records-{side}.jsonl"));
        println!("\n{side}: {} captures, --local-net {net}", files.len());
        run(Command::new(&mxcert)
            .arg("read")
            .args(files)
            .args(["--local-net", net, "--trust-anchors"])
            .arg(root.join("pcaps/certs/root-ca.crt"))
            .arg("--out")
            .arg(&out))?;
        println!("records: {}", out.display());
        records.push(out);
    }
    // The impact report: the HTML file for the change meeting, and the text one here.
    let html = root.join("mxcert-out/report.html");
    run(Command::new(&mxcert)
        .args(["report", "--format", "html", "--from"])
        .args(&records)
        .arg("--out")
        .arg(&html))?;
    run(Command::new(&mxcert)
        .args(["report", "--format", "text", "--from"])
        .args(&records))?;
    println!("report: {} (open it in a browser)", html.display());
    Ok(())
}

/// Fixture captures the demo reads from the sending gateway's side (see `demo`).
fn demo_outbound(capture: &Path) -> bool {
    let name = capture
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.starts_with("server_")
        || [
            "anon_cipher_tls12",
            "certreq_client_noeku",
            "no_starttls",
            "postfix_to_postfix_clientcert",
            "starttls_refused",
            "tls10_legacy",
            "weak_key_sha1",
        ]
        .contains(&name.as_str())
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if args.first().map(String::as_str) == Some("clickhouse") {
        // Sink throughput and --clickhouse overhead, against a private clickhouse-server.
        setup::all()?;
        return run(Command::new(&cargo).current_dir(root).args([
            "run",
            "--release",
            "-p",
            "mxcert-system-tests",
            "--example",
            "clickhouse_bench",
        ]));
    }
    if args.first().map(String::as_str) == Some("tls-library") {
        // Handshakes between two namespaces with and without the uprobes (root).
        return system_bench(root, "tls-bench", &args[1..]);
    }
    run(Command::new(&cargo)
        .current_dir(root)
        .args([
            "run",
            "--release",
            "-p",
            "mxcert",
            "--example",
            "bench",
            "--",
        ])
        .args(args))
}

/// Runs the system-test crate's benchmark binary `bin` (release build) with `args`.
fn system_bench(root: &Path, bin: &str, args: &[String]) -> Result<()> {
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args([
                "run",
                "--release",
                "-p",
                "mxcert-system-tests",
                "--bin",
                bin,
                "--",
            ])
            .args(args),
    )
}
