//! The outputs of a run, built from the command line: JSON lines, ClickHouse, or both.
//!
//! Without `--clickhouse`, JSON lines go to `--out` (default `mxcert-out/records.jsonl`), the
//! embedded default. With `--clickhouse`, records are streamed and JSON lines are written only
//! when `--out` is given too (both then receive every record): a gateway streaming to a
//! database should not fill its disk with a second copy unless asked.

use std::path::{Path, PathBuf};

use super::clickhouse::{ClickHouseArgs, ClickHouseError, ClickHouseSink, SinkStats};
use super::{JsonlSink, Sink, SinkCounter, SinkError};
use crate::classify::Finding;
use crate::session::SessionRecord;
use crate::x509::CertificateRecord;

/// Default of `--out` when no ClickHouse is configured.
pub const DEFAULT_OUT: &str = "mxcert-out/records.jsonl";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputsError {
    #[error(transparent)]
    Jsonl(#[from] SinkError),
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
}

pub struct Outputs {
    pub jsonl: Option<(JsonlSink, PathBuf)>,
    pub clickhouse: Option<ClickHouseSink>,
}

impl Outputs {
    /// Opens what the flags ask for (see the module documentation for the rules).
    pub fn open(out: Option<&Path>, ch: &ClickHouseArgs) -> Result<Outputs, OutputsError> {
        Outputs::open_with(out, ch, false)
    }

    /// Like [`Outputs::open`]; with `append`, JSON lines are appended to an existing file (a
    /// restarted capture daemon must not erase what it wrote before).
    pub fn open_with(
        out: Option<&Path>,
        ch: &ClickHouseArgs,
        append: bool,
    ) -> Result<Outputs, OutputsError> {
        let clickhouse = ch.start_sink()?;
        let out = match (out, &clickhouse) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, None) => Some(PathBuf::from(DEFAULT_OUT)),
            (None, Some(_)) => None,
        };
        let jsonl = match out {
            Some(p) if append => Some((JsonlSink::append(&p)?, p)),
            Some(p) => Some((JsonlSink::create(&p)?, p)),
            None => None,
        };
        Ok(Outputs { jsonl, clickhouse })
    }

    /// Ends the run: waits for ClickHouse to take what is queued (see `--clickhouse-drain-timeout`).
    pub fn close(mut self) -> Option<SinkStats> {
        self.clickhouse.take().map(ClickHouseSink::close)
    }

    /// One line per output for the summary (`records` line).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((_, p)) = &self.jsonl {
            parts.push(p.display().to_string());
        }
        if let Some(c) = &self.clickhouse {
            let cfg = c.config();
            parts.push(format!(
                "ClickHouse {} database {} (sensor {})",
                cfg.url, cfg.database, cfg.sensor
            ));
        }
        parts.join(" and ")
    }
}

impl Sink for Outputs {
    fn certificate(&mut self, rec: &CertificateRecord) -> Result<(), SinkError> {
        if let Some((j, _)) = &mut self.jsonl {
            j.certificate(rec)?;
        }
        if let Some(c) = &mut self.clickhouse {
            c.certificate(rec)?;
        }
        Ok(())
    }
    fn session(&mut self, rec: &SessionRecord) -> Result<(), SinkError> {
        if let Some((j, _)) = &mut self.jsonl {
            j.session(rec)?;
        }
        if let Some(c) = &mut self.clickhouse {
            c.session(rec)?;
        }
        Ok(())
    }
    fn finding(&mut self, rec: &Finding) -> Result<(), SinkError> {
        if let Some((j, _)) = &mut self.jsonl {
            j.finding(rec)?;
        }
        if let Some(c) = &mut self.clickhouse {
            c.finding(rec)?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        if let Some((j, _)) = &mut self.jsonl {
            j.flush()?;
        }
        if let Some(c) = &mut self.clickhouse {
            c.flush()?;
        }
        Ok(())
    }
    fn counters(&self) -> Vec<SinkCounter> {
        let Some(c) = &self.clickhouse else {
            return Vec::new();
        };
        let st = c.stats();
        let counter = |name, help, value| SinkCounter {
            name,
            help,
            gauge: false,
            value,
        };
        let gauge = |name, help, value| SinkCounter {
            name,
            help,
            gauge: true,
            value,
        };
        vec![
            counter(
                "clickhouse_rows_sent_total",
                "Rows inserted into ClickHouse.",
                st.rows_sent,
            ),
            counter(
                "clickhouse_batches_sent_total",
                "INSERT batches ClickHouse accepted.",
                st.batches_sent,
            ),
            counter(
                "clickhouse_rows_spooled_total",
                "Rows written to the spool while ClickHouse was unreachable.",
                st.rows_spooled,
            ),
            counter(
                "clickhouse_rows_replayed_total",
                "Spooled rows sent later.",
                st.rows_replayed,
            ),
            counter(
                "clickhouse_rows_dropped_total",
                "Rows lost (spool full or unwritable).",
                st.rows_dropped,
            ),
            counter(
                "clickhouse_failed_inserts_total",
                "INSERTs that failed (then spooled and retried).",
                st.failed_inserts,
            ),
            gauge(
                "clickhouse_spool_files",
                "Spool files waiting to be replayed.",
                st.spool_files_left,
            ),
            gauge(
                "clickhouse_spool_bytes",
                "Bytes waiting in the spool.",
                st.spool_bytes_left,
            ),
        ]
    }
}
