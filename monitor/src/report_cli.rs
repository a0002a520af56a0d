//! `mxcert report`: flags and wiring only; the report itself is `mxcert::report`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use mxcert::classify::policy::{Policy, PolicyError};
use mxcert::report::clickhouse::ClickHouseInput;
use mxcert::report::{
    self, Dataset, Format, Input, JsonlInput, ReportError, ReportOptions, Window,
};
use mxcert::sink::clickhouse::{ClickHouseArgs, ClickHouseError};

/// `mxcert report --help`: what the sections count and how.
pub const LONG_ABOUT: &str = "\
The impact report: what breaks, for whom, from when.

Reads the records of `mxcert read` and writes four sections, each with sessions, distinct peers
and share of traffic:
  coverage                 inspected (certificate seen on the wire) / TLS 1.3 seen through the
                           MTA's TLS library / TLS 1.3 uninspectable / no TLS / incomplete
                           (TLS ended before the server's certificate)
  inbound client certs     senders presenting client certificates: without clientAuth (rejected
                           now by an EKU-enforcing receiver), with clientAuth they will lose
                           (public CA sunset, with dates), expired at AT
  our certificate          destinations that ask us for a client certificate, what we present
                           (EKU, expiry), who is affected after our renewal
  strict validation        outbound sessions that would fail strict validation / MTA-STS
                           enforce, by RFC 8460 result type, with the exact reason per destination

Directions: inbound sections take inbound sessions, outbound sections outbound ones; sessions of
unknown direction (no --local-net at read time) count in both. A peer is the remote address (the
client inbound, the server outbound). A share is over all sessions of the section's directions.";

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Records written by `mxcert read --out FILE` (JSON lines; repeatable, `-` for stdin).
    /// Sessions seen in several files (same session_id) count once.
    #[arg(
        long = "from",
        value_name = "FILE",
        num_args = 1..,
        required_unless_present = "clickhouse",
        conflicts_with = "clickhouse"
    )]
    from: Vec<PathBuf>,

    /// Read the records from ClickHouse instead (HTTP, e.g. http://127.0.0.1:8123), where
    /// `mxcert read --clickhouse` streams them. Credentials: MXCERT_CLICKHOUSE_USER and
    /// MXCERT_CLICKHOUSE_PASSWORD, or --clickhouse-password-file.
    #[arg(long, value_name = "URL")]
    clickhouse: Option<String>,

    /// Database holding mxcert's tables.
    #[arg(long, value_name = "NAME", default_value = "mxcert")]
    clickhouse_database: String,

    /// File whose first line is the ClickHouse password.
    #[arg(long, value_name = "FILE")]
    clickhouse_password_file: Option<PathBuf>,

    /// Only this gateway's records (the `sensor` column) [default: every sensor].
    #[arg(long, value_name = "NAME", requires = "clickhouse")]
    sensor: Option<String>,

    /// Only sessions that started at or after this time (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,

    /// Only sessions that started before this time (exclusive).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,

    /// Assess at this date (YYYY-MM-DD or RFC 3339, UTC) [default: the last session's start].
    ///
    /// Chains are not re-validated (records carry no DER). What depends on time is re-evaluated
    /// at AT: certificate validity from the certificate records (a chain with a certificate whose
    /// notAfter is before AT counts as expired, one whose notBefore is after AT as not yet
    /// valid; self-issued roots excepted), and clientAuth sunsets (an eku.client_auth_sunset
    /// finding counts as lost when its effective date <= AT). Trust, names, EKU and TLS
    /// behaviour do not depend on time and are taken from the findings as recorded.
    #[arg(long, value_name = "DATE", value_parser = parse_time)]
    at: Option<i64>,

    /// Policy whose issuer cutoffs recompute the clientAuth sunset dates
    /// (min(notAfter, cutoff)) [default: the dates recorded in the findings].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,

    /// Output format: text (terminal), json (stable keys), tlsrpt (RFC 8460 aggregate
    /// reports for the outbound what-if, one per destination), html (one self-contained file).
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,

    /// Write the report here (parent directories are created) [default: stdout].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Rows per table in text (json and html have every row).
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,

    /// Colour in text output: auto (when stdout is a terminal and NO_COLOR is unset).
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    color: ColorArg,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    Text,
    Json,
    Tlsrpt,
    Html,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

/// The sink's connection settings (same URL rules, same credential sources), without its
/// batching and spool flags, which a reader does not need.
fn clickhouse_input(url: &str, args: &ReportArgs) -> anyhow::Result<ClickHouseInput> {
    use clap::Parser;
    #[derive(Parser)]
    struct Conn {
        #[command(flatten)]
        ch: ClickHouseArgs,
    }
    let mut argv = vec![
        "mxcert".to_string(),
        "--clickhouse".into(),
        url.to_string(),
        "--clickhouse-database".into(),
        args.clickhouse_database.clone(),
    ];
    if let Some(p) = &args.clickhouse_password_file {
        argv.push("--clickhouse-password-file".into());
        argv.push(p.display().to_string());
    }
    let conn = Conn::try_parse_from(argv)?;
    let cfg = conn
        .ch
        .config()?
        .ok_or_else(|| anyhow::anyhow!("--clickhouse needs a URL"))?;
    Ok(report::clickhouse::http_input(&cfg, args.sensor.clone())?)
}

fn parse_time(s: &str) -> Result<i64, String> {
    mxcert::classify::policy::parse_date(s)
        .ok_or_else(|| format!("{s:?} is not a UTC time; write 2026-12-01 or 2026-12-01T00:00:00Z"))
}

pub fn main(args: ReportArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxcert: error: {e:#}");
            let usage = e.downcast_ref::<PolicyError>().is_some()
                || e.downcast_ref::<ClickHouseError>().is_some()
                || matches!(
                    e.downcast_ref::<ReportError>(),
                    Some(
                        ReportError::Read { .. }
                            | ReportError::Input { .. }
                            | ReportError::EmptyWindow { .. }
                    )
                );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn run(args: ReportArgs) -> anyhow::Result<()> {
    let window = Window {
        since: args.since,
        until: args.until,
    };
    if let (Some(s), Some(u)) = (window.since, window.until) {
        if s >= u {
            let t = |x: i64| mxcert::timefmt::rfc3339_ms(x * 1_000_000_000);
            return Err(ReportError::EmptyWindow {
                since: t(s),
                until: t(u),
            }
            .into());
        }
    }
    let policy = args.policy.as_deref().map(Policy::load).transpose()?;
    let mut inputs: Vec<Box<dyn Input>> = args
        .from
        .iter()
        .map(|p| Box::new(JsonlInput { path: p.clone() }) as Box<dyn Input>)
        .collect();
    if let Some(url) = &args.clickhouse {
        inputs.push(Box::new(clickhouse_input(url, &args)?));
    }
    let mut ds = Dataset::default();
    for i in &mut inputs {
        i.load(&window, &mut ds)?;
    }
    ds.finish();
    let rep = report::build(
        &ds,
        &ReportOptions {
            at: args.at,
            policy,
            window,
            top: args.top,
        },
    );
    let format = match args.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Tlsrpt => Format::Tlsrpt,
        FormatArg::Html => Format::Html,
    };
    let color = match args.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            args.out.is_none()
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let body = report::render(&rep, format, color);
    match &args.out {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(body.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|source| ReportError::Write {
                    path: "stdout".into(),
                    source,
                })?;
        }
        Some(path) => {
            let err = |source| ReportError::Write {
                path: path.display().to_string(),
                source,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            std::fs::write(path, body).map_err(err)?;
            eprintln!(
                "mxcert: report ({}) written to {}",
                format!("{:?}", args.format).to_lowercase(),
                path.display()
            );
        }
    }
    Ok(())
}
