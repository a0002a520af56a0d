//! `mxcert capture`: the daemon. Parses its flags (the same output and classification flags as
//! `read`, layered with the environment and a config file), opens a live backend and runs
//! [`mxcert::daemon::run`] until SIGTERM/SIGINT.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};

use mxcert::capture::caps::CapSet;
use mxcert::capture::select::{self, Backend};
use mxcert::capture::tlslib::DEFAULT_COMMS;
use mxcert::daemon::{self, config, metrics, Control, LoopConfig};
use mxcert::session::{Config, Pipeline, PortSet};
use mxcert::sink::clickhouse::ClickHouseArgs;
use mxcert::sink::Outputs;

use crate::{ClassifyArgs, CommonArgs};

/// Shown after `mxcert capture --help`.
pub const AFTER_HELP: &str = "\
Every flag is also a key of the --config file (its long name, lists as TOML arrays, e.g.
`iface = [\"eth0\"]`, `metrics-addr = \"127.0.0.1:9187\"`) and an environment variable
(MXCERT_ + the name in capitals: MXCERT_IFACE, MXCERT_METRICS_ADDR, MXCERT_OUT).
Precedence: command line > environment > config file > default.

Capabilities: eBPF needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON; libpcap needs CAP_NET_RAW;
the TLS-library probes (--tls-library auto) need CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN (uprobes),
CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (the MTA's /proc/PID/root and /proc/PID/fd), or root.
Signals: SIGTERM/SIGINT finish open sessions, flush and exit 0; SIGHUP reloads the policy.
Records are appended to --out. See monitor/dist/ for a systemd unit and an example config.";

#[derive(Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    live: LiveArgs,

    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    classify: ClassifyArgs,

    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

/// Settings of the live daemon. Every flag here and below is also a key of the --config file
/// (its long name, e.g. `metrics-addr = "127.0.0.1:9187"`; lists as TOML arrays) and an
/// environment variable (`MXCERT_` + the name in capitals, e.g. MXCERT_METRICS_ADDR).
/// Precedence: command line > environment > config file > default.
#[derive(Args, Debug)]
struct LiveArgs {
    /// Interfaces to capture on (repeatable or comma separated), e.g. eth0. Required here, in
    /// the config file (`iface = ["eth0"]`) or in MXCERT_IFACE.
    #[arg(long = "iface", value_name = "IF", value_delimiter = ',')]
    iface: Vec<String>,

    /// Packet source: `ebpf` (TC program, stops copying a flow once its handshake is decided),
    /// `pcap` (libpcap, copies every packet of the ports), `auto` (eBPF when it loads, else
    /// libpcap; the choice and its reason are logged at start).
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,

    /// Config file (TOML) holding any of these flags as keys.
    #[arg(long, value_name = "FILE", env = "MXCERT_CONFIG")]
    config: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9187) [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,

    /// Log format on stderr; the level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Seconds between status lines in the log (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    status_interval: u64,

    /// Read TLS 1.3 certificates (encrypted on the wire) where the MTA's TLS library handles
    /// them, through eBPF uprobes on OpenSSL 3 and GnuTLS: the peer's chain as received and
    /// ours as sent (GnuTLS: our leaf only). `auto` (on when the probes load; otherwise one
    /// warning says why and what to do, and capture goes on wire-only) or `off`. Sessions
    /// covered this way say `tls.chain_source = "uprobe"`.
    #[arg(long, value_enum, default_value_t = TlsLibraryArg::Auto)]
    tls_library: TlsLibraryArg,

    /// Processes whose TLS library is probed, by name as in /proc/PID/comm (first 15 bytes;
    /// repeatable or comma separated). Only their certificate loads are copied, filtered in the
    /// kernel.
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        default_values_t = DEFAULT_COMMS.map(String::from)
    )]
    tls_processes: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TlsLibraryArg {
    Auto,
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendArg {
    Auto,
    Ebpf,
    Pcap,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// The command line with the environment and the config file layered in, for `capture`; any
/// other command's arguments are returned unchanged. Errors (unreadable or invalid config file)
/// end the process with exit code 2.
pub fn layered_argv() -> Vec<OsString> {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let cmd = crate::Cli::command();
    // Only `mxcert capture ...` is layered; a failing first parse is left to the real one,
    // which prints clap's message.
    let Ok(first) = cmd.clone().try_get_matches_from(&argv) else {
        return argv;
    };
    let Some(("capture", sub_m)) = first.subcommand() else {
        return argv;
    };
    let Some(sub) = cmd.find_subcommand("capture") else {
        return argv;
    };
    let file = sub_m.get_one::<PathBuf>("config").cloned();
    match config::layered_args(
        sub,
        sub_m,
        file.as_deref(),
        &|k| std::env::var(k).ok(),
        &["config"],
    ) {
        Ok(extra) => argv.extend(extra),
        Err(e) => {
            eprintln!("mxcert: error: {e}");
            std::process::exit(2);
        }
    }
    argv
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

/// Exit codes: 0 stopped by SIGTERM/SIGINT after flushing; 2 unusable configuration, interface
/// or backend (the message says what to do); 1 the capture or the output failed while running.
pub fn main(args: CaptureArgs) -> ExitCode {
    init_logging(args.live.log_format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            tracing::error!("{e:#}");
            eprintln!("mxcert: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn run(args: CaptureArgs) -> Result<(), (u8, anyhow::Error)> {
    let usage = |e: anyhow::Error| (2u8, e);
    let live = &args.live;
    let c = &args.common;
    if live.iface.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "no interface: pass --iface IF, set `iface = [\"eth0\"]` in the config file or MXCERT_IFACE"
        )));
    }
    let caps = CapSet::current();
    let backend = match live.backend {
        BackendArg::Auto => Backend::Auto,
        BackendArg::Ebpf => Backend::Ebpf,
        BackendArg::Pcap => Backend::Pcap,
    };
    let local_nets = if c.local_net.is_empty() {
        let nets = select::interface_nets(&live.iface).map_err(|e| usage(e.into()))?;
        if nets.is_empty() {
            tracing::warn!(
                ifaces = %live.iface.join(","),
                "--local-net not given and the interfaces have no address: every session's direction will be `unknown`; pass --local-net"
            );
        }
        tracing::info!(
            local_net = %nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
            "--local-net not given: using the interfaces' own addresses"
        );
        nets
    } else {
        c.local_net.clone()
    };
    let cfg = Config {
        ports: PortSet::new(&c.ports),
        local_nets,
        max_flows: c.max_flows,
        max_flow_bytes: c.max_flow_bytes,
        idle_timeout: i64::try_from(c.idle_timeout.saturating_mul(1_000_000_000))
            .unwrap_or(i64::MAX),
        flow_events: true,
        ..Config::default()
    };
    let classifier = crate::classifier(&args.classify).map_err(usage)?;
    // JSON lines (appended) and/or ClickHouse, by the same rules as `read`.
    let mut sink = Outputs::open_with(c.out.as_deref(), &args.clickhouse, true)
        .map_err(|e| usage(e.into()))?;
    let outputs = sink.describe();
    let control = Control::default();
    control
        .install_signal_handlers()
        .context("installing signal handlers")
        .map_err(|e| (1, e))?;
    let expo = metrics::Exposition::default();
    if let Some(addr) = live.metrics_addr {
        let bound = metrics::serve(addr, expo.clone())
            .with_context(|| format!("cannot serve metrics on {addr} (--metrics-addr)"))
            .map_err(usage)?;
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
    }
    let tls_on = live.tls_library == TlsLibraryArg::Auto;
    let opened = select::open_with(backend, &live.iface, &c.ports, caps, tls_on)
        .map_err(|e| usage(e.into()))?;
    let mut source = opened.source;
    let mut library = if tls_on {
        daemon::library::open(opened.object.as_ref(), &live.tls_processes, caps)
    } else {
        tracing::info!(
            "TLS library probes off (--tls-library off): TLS 1.3 certificates are not read"
        );
        None
    };
    drop(opened.object);
    tracing::info!(
        backend = source.backend(),
        reason = %opened.reason,
        ifaces = %live.iface.join(","),
        ports = ?c.ports,
        outputs = %outputs,
        capeff = %caps.map(|c| format!("{:016x}", c.0)).unwrap_or_else(|| "unknown".into()),
        "capture started"
    );
    let mut pipeline =
        Pipeline::with_classifier(library_config(cfg, library.is_some()), classifier);
    let classify = &args.classify;
    let mut reload = || crate::classifier(classify).map_err(|e| format!("{e:#}"));
    let loop_cfg = LoopConfig {
        status_every: (live.status_interval > 0)
            .then(|| std::time::Duration::from_secs(live.status_interval)),
        ..LoopConfig::default()
    };
    let started = std::time::Instant::now();
    let result = daemon::run(
        source.as_mut(),
        library.as_mut(),
        &mut pipeline,
        &mut sink,
        &control,
        &mut reload,
        live.metrics_addr.map(|_| &expo),
        &loop_cfg,
    );
    let counters = source.counters();
    let tls = library
        .as_ref()
        .map(|l| (l.counters(), l.joined, l.attached_files()));
    // Dropping the source and the probes closes the capture handles and detaches the eBPF
    // programs (the last holder of the shared object unloads it).
    drop(source);
    drop(library);
    // ClickHouse gets the time --clickhouse-drain-timeout allows to take what is queued (the
    // rest stays in the spool for the next start), also when the loop failed.
    let ch_stats = sink.close();
    if let Some(st) = &ch_stats {
        tracing::info!(%st, "clickhouse sink closed");
    }
    let report = result.map_err(|e| (1, e.into()))?;
    tracing::info!(
        packets = counters.packets,
        bytes = counters.bytes,
        dropped = counters.dropped,
        if_dropped = counters.if_dropped,
        cut_off = counters.cut_off,
        records = report.records,
        reloads = report.reloads_ok,
        "capture stopped"
    );
    if let Some((t, j, files)) = tls {
        tracing::info!(
            chains = t.chains,
            attached = j.attached,
            certificates = t.certs,
            handshakes_ended = t.handshakes_ended,
            no_peer_certificate = t.no_peer_certificate,
            resumed = t.resumed,
            execs = t.execs,
            exits = t.exits,
            lost = t.ring_full + t.read_errors + t.chain_overflow + t.table_full + t.bad_records,
            files,
            "TLS library probes stopped"
        );
    }
    if !c.quiet {
        crate::print_summary(&pipeline, &outputs, &[], counters.bytes, started.elapsed());
        if let Some(st) = ch_stats {
            eprintln!("  clickhouse    {st}");
        }
        match tls {
            Some((t, j, files)) => eprintln!(
                "  tls library   {} chains read from the MTA's TLS library ({} joined to session records, {} with no session on the wire, {} after their record was written, {} without a socket), {} certificates, {} library files probed, {} lost",
                t.chains,
                pipeline.stats.library_chains,
                pipeline.stats.library_chains_unmatched,
                pipeline.stats.library_chains_late,
                j.unjoinable,
                t.certs,
                files,
                t.ring_full + t.read_errors + t.chain_overflow + t.table_full + t.bad_records
            ),
            None => eprintln!("  tls library   off"),
        }
    }
    Ok(())
}

/// The pipeline holds TLS 1.3 records for library chains only when the probes run.
fn library_config(cfg: Config, on: bool) -> Config {
    let wait = i64::try_from(daemon::library::LIBRARY_WAIT.as_nanos()).unwrap_or(i64::MAX);
    Config {
        library_wait: on.then_some(wait),
        ..cfg
    }
}
