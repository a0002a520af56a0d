//! Stage 9: the impact report. Reads records (JSON lines written by `mxcert read`, or any other
//! [`Input`], e.g. ClickHouse) and answers "what breaks, for whom, from when" in four sections:
//! inbound client certificates, our outbound client certificate, outbound strict validation /
//! MTA-STS what-if (as RFC 8460 result types), and coverage (how much of the traffic the other
//! sections can see).
//!
//! The report never re-validates chains: it has no DER, only records. What depends on time is
//! re-evaluated at the assessment date (`--at`) from the certificate records (notBefore,
//! notAfter) and the findings' `effective` dates; everything else (trust, names, EKU, TLS
//! behaviour) is taken from the findings as recorded. See [`model`] for the exact rules.

pub mod clickhouse;
pub mod html;
pub mod input;
pub mod json;
pub mod model;
pub mod text;
pub mod tlsrpt;

pub use input::{Dataset, Input, JsonlInput, Window};
pub use model::{build, Report, ReportOptions};

use std::path::PathBuf;

/// Sessions kept in memory for one report; beyond this the report covers the first ones read
/// and says so (narrow the window with `--since/--until`). Measured: 0.93 GB peak for 1.05 M
/// sessions with their findings (~0.9 KB each), so the bound is ~4.5 GB.
pub const MAX_SESSIONS: usize = 5_000_000;

/// Failures producing a report. Malformed lines in the input are data (counted and shown in
/// the report), not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// An input file could not be opened or read.
    #[error("cannot read records from {path}: {source} (pass files written by `mxcert read --out FILE`)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The report could not be written.
    #[error("cannot write the report to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// An input backend failed (ClickHouse unreachable, bad query).
    #[error("input {input}: {message}")]
    Input { input: String, message: String },
    /// `--since` is not before `--until`: the window holds nothing.
    #[error("--since {since} is not before --until {until}; swap them or widen the window")]
    EmptyWindow { since: String, until: String },
}

/// Output formats of `mxcert report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Tlsrpt,
    Html,
}

/// Renders a report in a format. `color` only matters for text (ANSI colours on a terminal).
pub fn render(r: &Report, format: Format, color: bool) -> String {
    match format {
        Format::Text => text::render(r, color),
        Format::Json => json::render(r),
        Format::Tlsrpt => tlsrpt::render(r),
        Format::Html => html::render(r),
    }
}
