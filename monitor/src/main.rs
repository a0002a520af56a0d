//! `mxcert` command line: parses flags and wires the stages; no protocol logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use mxcert::capture::{CaptureError, FileReader};
use mxcert::classify::policy::{Policy, PolicyError};
use mxcert::classify::validate::TrustStore;
use mxcert::classify::{Classifier, ClassifyConfig};
use mxcert::session::{Config, Pipeline, PortSet};
use mxcert::sink::clickhouse::ClickHouseArgs;
use mxcert::sink::Outputs;

mod report_cli;

mod capture_cmd;

/// Passive monitor of SMTP/TLS certificates on mail gateways.
///
/// mxcert follows SMTP into STARTTLS (and implicit TLS on 465), reads the TLS handshake of both
/// sides and writes one JSON record per session and one per distinct certificate. It never
/// stores mail content: a flow is dropped from inspection as soon as its handshake is over.
#[derive(Parser, Debug)]
#[command(name = "mxcert", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read pcap/pcapng capture files and write session, certificate and finding records.
    Read(Box<ReadArgs>),
    /// Capture live on network interfaces (eBPF or libpcap) and write the same records as
    /// `read`, until SIGTERM/SIGINT; SIGHUP reloads the policy.
    #[command(after_help = capture_cmd::AFTER_HELP)]
    Capture(Box<capture_cmd::CaptureArgs>),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The impact report: what breaks, for whom, from when (text, json, tlsrpt, html).
    #[command(long_about = report_cli::LONG_ABOUT)]
    Report(Box<report_cli::ReportArgs>),
    /// ClickHouse schema: `mxcert schema apply --clickhouse URL`.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand, Debug)]
enum SchemaCommand {
    /// Create the database and apply the missing migrations of schema/ (idempotent; detects
    /// the server version and applies the wire-compatible variant on ClickHouse 18.x).
    Apply(Box<mxcert_schema_cmd::ApplyArgs>),
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Validate a policy file and print its scenarios (exit 2 when it is invalid).
    Check {
        /// Policy file (TOML); see policy/default.toml in the repository.
        file: PathBuf,
    },
    /// Print the built-in default policy (a starting point for your own).
    Default,
}

#[derive(Args, Debug)]
struct ReadArgs {
    /// Capture files (pcap or pcapng, as written by tcpdump -w, tshark -w, dumpcap). Several
    /// files are read in order as one capture, so flows may span rotated files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    classify: ClassifyArgs,

    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

#[derive(Args, Debug)]
struct ClassifyArgs {
    /// Policy file grouping rules into scenarios [default: the built-in policy, see `mxcert
    /// policy default`].
    #[arg(long, value_name = "FILE", env = "MXCERT_POLICY")]
    policy: Option<PathBuf>,

    /// Validation time (RFC 3339 or YYYY-MM-DD, UTC), to assess a future or past date
    /// [default: each session's own start time].
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<i64>,

    /// Extra trust anchors (PEM files of private CA certificates), added to Mozilla's roots.
    #[arg(long = "trust-anchors", value_name = "PEM", value_delimiter = ',')]
    trust_anchors: Vec<PathBuf>,

    /// Trust only the --trust-anchors, not Mozilla's roots (for private mail networks).
    #[arg(long)]
    no_public_roots: bool,

    /// Expected server name for an address (`IP=NAME`, repeatable), used when a session has
    /// neither SNI nor a usable banner host.
    #[arg(long = "mx-name", value_name = "IP=NAME", value_parser = parse_mx_name)]
    mx_name: Vec<(std::net::IpAddr, String)>,

    /// Hosts-style file of expected server names (`IP NAME` per line, # comments).
    #[arg(long = "mx-names", value_name = "FILE")]
    mx_names: Option<PathBuf>,

    /// Emit passing findings too (default: fail, warn and unknown only).
    #[arg(long)]
    all_findings: bool,

    /// Do not classify: sessions and certificates only.
    #[arg(long)]
    no_findings: bool,
}

fn parse_at(s: &str) -> Result<i64, String> {
    mxcert::classify::policy::parse_date(s)
        .ok_or_else(|| format!("{s:?} is not a UTC time; write 2026-12-01 or 2026-12-01T00:00:00Z"))
}

fn parse_mx_name(s: &str) -> Result<(std::net::IpAddr, String), String> {
    let (ip, name) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write IP=NAME, e.g. 198.51.100.7=mx.example.net"))?;
    let ip = ip
        .trim()
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    Ok((ip, name.trim().to_string()))
}

fn classifier(args: &ClassifyArgs) -> anyhow::Result<Option<Classifier>> {
    if args.no_findings {
        return Ok(None);
    }
    let policy = match &args.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default_policy(),
    };
    let mut trust = if args.no_public_roots {
        if args.trust_anchors.is_empty() {
            anyhow::bail!("--no-public-roots needs at least one --trust-anchors PEM file");
        }
        TrustStore::empty()
    } else {
        TrustStore::mozilla()
    };
    for pem in &args.trust_anchors {
        trust.add_pem_file(pem)?;
    }
    let mut mx_names: std::collections::HashMap<std::net::IpAddr, String> =
        std::collections::HashMap::new();
    if let Some(file) = &args.mx_names {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --mx-names file {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(ip), Some(name)) = (parts.next(), parts.next()) else {
                anyhow::bail!("{}:{}: expected `IP NAME`", file.display(), n + 1);
            };
            let ip = ip.parse().with_context(|| {
                format!("{}:{}: {ip:?} is not an IP address", file.display(), n + 1)
            })?;
            mx_names.insert(ip, name.to_string());
        }
    }
    mx_names.extend(args.mx_name.iter().cloned());
    Ok(Some(Classifier::new(ClassifyConfig {
        policy,
        trust,
        at: args.at,
        mx_names,
        all_findings: args.all_findings,
    })))
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Where to write JSON lines records; `-` for stdout [default: mxcert-out/records.jsonl;
    /// none with --clickhouse unless given].
    #[arg(long, value_name = "FILE", env = "MXCERT_OUT")]
    out: Option<PathBuf>,

    /// TCP ports carrying SMTP, comma separated. TLS is detected by content on these ports,
    /// so implicit TLS on 587 or a ClientHello sent to a plaintext 465 are handled.
    #[arg(
        long,
        value_name = "PORTS",
        default_value = "25,587,465",
        value_delimiter = ',',
        env = "MXCERT_PORTS"
    )]
    ports: Vec<u16>,

    /// Networks that are ours (CIDR, repeatable or comma separated): a session whose server is
    /// inside is `inbound`, whose client is inside is `outbound`; otherwise `unknown`.
    #[arg(
        long = "local-net",
        value_name = "CIDR",
        value_delimiter = ',',
        env = "MXCERT_LOCAL_NET"
    )]
    local_net: Vec<ipnet::IpNet>,

    /// Flows tracked at once; beyond this new flows are counted and skipped.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_flows)]
    max_flows: usize,

    /// Bytes read per direction of a flow before it is given up as incomplete (the handshake
    /// is all mxcert needs).
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_flow_bytes)]
    max_flow_bytes: u64,

    /// Seconds of capture time without packets after which a flow is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    idle_timeout: u64,

    /// Progress bar on stderr: `auto` shows it for files over 4 MB when stderr is a terminal.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,

    /// Do not print the summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    Auto,
    Always,
    Never,
}

/// Exit codes: 0 success (also when a capture was truncated: what could be read is reported),
/// 1 output failure, 2 unusable input or usage, 130 `read` interrupted by SIGINT/SIGTERM (what
/// was read is written first).
fn main() -> ExitCode {
    let cli = Cli::parse_from(capture_cmd::layered_argv());
    match cli.command {
        Command::Capture(args) => capture_cmd::main(*args),
        Command::Read(args) => match read(*args) {
            Ok(Finished::Complete) => ExitCode::SUCCESS,
            Ok(Finished::Interrupted) => ExitCode::from(130),
            Err(e) => {
                eprintln!("mxcert: error: {e:#}");
                if e.downcast_ref::<CaptureError>().is_some()
                    || e.downcast_ref::<PolicyError>().is_some()
                {
                    ExitCode::from(2)
                } else {
                    ExitCode::from(1)
                }
            }
        },
        Command::Schema(SchemaCommand::Apply(args)) => match mxcert_schema_cmd::apply(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mxcert: error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Report(args) => report_cli::main(*args),
        Command::Policy(PolicyCommand::Default) => {
            print!("{}", mxcert::classify::policy::DEFAULT_POLICY);
            ExitCode::SUCCESS
        }
        Command::Policy(PolicyCommand::Check { file }) => match Policy::load(&file) {
            Ok(p) => {
                println!("{}: valid", file.display());
                println!(
                    "  expires_soon_days {}, default clientAuth cutoff {}, {} issuer cutoff(s)",
                    p.expires_soon_days,
                    mxcert::timefmt::rfc3339_ms(p.client_auth_cutoff * 1_000_000_000),
                    p.issuer_cutoffs.len()
                );
                for sc in &p.scenarios {
                    let dirs = if sc.directions.is_empty() {
                        "all sessions".to_string()
                    } else {
                        format!("{} (+ unknown)", sc.directions.join(", "))
                    };
                    println!("  scenario {} [{dirs}]: {}", sc.name, sc.rules.join(", "));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mxcert: error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// How a `read` run ended.
enum Finished {
    Complete,
    /// SIGINT/SIGTERM: reading stopped early; sessions open then were recorded and every output
    /// flushed (the ClickHouse spool included), as at the end of a capture.
    Interrupted,
}

fn read(args: ReadArgs) -> anyhow::Result<Finished> {
    let c = &args.common;
    // A signal stops reading instead of killing the process: records still queued for the
    // ClickHouse writer or in the JSON buffer would be lost otherwise.
    let stop = Arc::new(AtomicBool::new(false));
    // A second signal while flushing kills, as an impatient operator expects.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .context("installing signal handlers")?;
    }
    let cfg = Config {
        ports: PortSet::new(&c.ports),
        local_nets: c.local_net.clone(),
        max_flows: c.max_flows,
        max_flow_bytes: c.max_flow_bytes,
        idle_timeout: i64::try_from(c.idle_timeout.saturating_mul(1_000_000_000))
            .unwrap_or(i64::MAX),
        ..Config::default()
    };
    // Open every file first: a typo in the last name should not cost a long run.
    let mut readers = Vec::new();
    for f in &args.files {
        readers.push(FileReader::open(f)?);
    }
    let classifier = classifier(&args.classify)?;
    let mut sink = Outputs::open(c.out.as_deref(), &args.clickhouse)?;
    let mut pipeline = Pipeline::with_classifier(cfg, classifier);
    let started = Instant::now();
    let mut truncated = Vec::new();
    let mut total_bytes = 0u64;
    let mut interrupted = None;
    for (path, mut reader) in args.files.iter().zip(readers) {
        if interrupted.is_some() {
            break;
        }
        let bar = progress_bar(c.progress, path, reader.total_len());
        let mut n = 0u64;
        loop {
            match reader.next_packet() {
                Ok(Some(pkt)) => {
                    pipeline
                        .packet(&pkt, &mut sink)
                        .context("writing records")?;
                    n += 1;
                    if n % 1024 == 0 && stop.load(Ordering::Relaxed) {
                        interrupted = Some(format!("{} after {n} packets", path.display()));
                        break;
                    }
                    if n % 8192 == 0 {
                        if let Some(b) = &bar {
                            b.set_position(reader.bytes_read());
                        }
                    }
                }
                Ok(None) => break,
                Err(e @ (CaptureError::Truncated { .. } | CaptureError::Corrupt { .. })) => {
                    // Keep what was read: a capture cut by a full disk or a killed tcpdump
                    // still holds useful sessions.
                    eprintln!("mxcert: warning: {e}; keeping the {n} packets read before it");
                    truncated.push(path.display().to_string());
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        total_bytes += reader.bytes_read();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
    if let Some(at) = &interrupted {
        eprintln!(
            "mxcert: interrupted: stopped reading {at}; recording the sessions open at that point and flushing the outputs"
        );
    }
    pipeline.finish(&mut sink).context("writing records")?;
    let outputs = sink.describe();
    let ch_stats = sink.close();
    let elapsed = started.elapsed();
    if !c.quiet {
        print_summary(&pipeline, &outputs, &truncated, total_bytes, elapsed);
        if let Some(st) = ch_stats {
            eprintln!("  clickhouse    {st}");
        }
    }
    Ok(if interrupted.is_some() {
        Finished::Interrupted
    } else {
        Finished::Complete
    })
}

mod mxcert_schema_cmd;

fn progress_bar(
    mode: Progress,
    path: &std::path::Path,
    len: Option<u64>,
) -> Option<indicatif::ProgressBar> {
    let len = len?;
    let show = match mode {
        Progress::Never => false,
        Progress::Always => true,
        Progress::Auto => std::io::stderr().is_terminal() && len > 4 * 1024 * 1024,
    };
    if !show {
        return None;
    }
    Some(mxcert::progress::bytes_bar(len, path.display().to_string()))
}

fn print_summary(
    p: &Pipeline,
    out: &str,
    truncated: &[String],
    bytes: u64,
    elapsed: std::time::Duration,
) {
    let s = &p.stats;
    let sum = &p.summary;
    let join = |m: &std::collections::BTreeMap<&'static str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!("mxcert summary");
    eprintln!(
        "  input         {} packets, {:.1} MB in {:.2} s ({:.0} MB/s)",
        s.packets,
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs
    );
    eprintln!("  sessions      {}  ({})", s.sessions, join(&sum.outcomes));
    eprintln!("  TLS versions  {}", join(&sum.versions));
    eprintln!("  direction     {}", join(&sum.directions));
    eprintln!(
        "  client certs  requested {}, presented {}, declined {}",
        sum.cert_requested, sum.client_cert_presented, sum.client_cert_declined
    );
    eprintln!(
        "  certificates  {} distinct ({} unparsable)",
        s.certificates, s.certificate_parse_errors
    );
    eprintln!(
        "  bounds hit    flows dropped (table full) {}, flows capped {}, idle-expired {}, out-of-order overflows {}",
        s.flows_dropped_table_full, s.flows_capped, s.flows_idle_expired, s.ooo_overflows
    );
    eprintln!(
        "  parse errors  TLS directions abandoned {}, undecodable handshake messages {}, malformed packets {}, gaps {}, conflicting overlaps {}",
        s.tls_invalid_directions, s.tls_undecodable_messages, s.malformed, s.gaps, s.conflicting_overlaps
    );
    eprintln!(
        "  skipped       other ports {}, not TCP {}, IP fragments {}, midstream flows {}",
        s.other_ports, s.not_tcp, s.ip_fragments, s.flows_midstream
    );
    if let Some(c) = p.classifier() {
        let st = &c.stats;
        let by_rule = st
            .by_rule
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "  findings      {} ({} chains validated, {} cache hits; policy {})",
            st.findings,
            st.chains_validated,
            st.cache_hits,
            c.config().policy.source
        );
        if !by_rule.is_empty() {
            eprintln!("  by rule       {by_rule}");
        }
    }
    if !truncated.is_empty() {
        eprintln!("  truncated     {}", truncated.join(", "));
    }
    eprintln!("  records       {out}");
}
