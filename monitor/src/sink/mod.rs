//! Stage 7: where records go. JSON lines is the embedded default; [`clickhouse`] streams to
//! ClickHouse behind the same [`Sink`] trait, and [`Outputs`] is the pair a run writes to.

pub mod clickhouse;
mod outputs;

pub use outputs::{Outputs, OutputsError, DEFAULT_OUT};

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::classify::Finding;
use crate::session::SessionRecord;
use crate::x509::CertificateRecord;

/// Failures writing records. Bad traffic never ends up here; only the output can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The output file or its directory could not be created.
    #[error("cannot create {path}: {source} (check the directory exists and is writable, or pass --out -)")]
    Create { path: PathBuf, source: io::Error },
    /// Writing a record failed (disk full, closed pipe).
    #[error("cannot write records to {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// Consumer of finished records.
pub trait Sink {
    fn certificate(&mut self, rec: &CertificateRecord) -> Result<(), SinkError>;
    fn session(&mut self, rec: &SessionRecord) -> Result<(), SinkError>;
    fn finding(&mut self, rec: &Finding) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
    /// The sink's own counters (batches sent, rows spooled...), exported as metrics by the
    /// capture daemon as `mxcert_sink_<name>`.
    fn counters(&self) -> Vec<SinkCounter> {
        Vec::new()
    }
}

/// One counter or gauge of a sink, for the metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkCounter {
    /// Metric name after `mxcert_sink_`, e.g. `batches_sent_total`.
    pub name: &'static str,
    pub help: &'static str,
    /// A gauge (a level, like spool bytes waiting) rather than a counter.
    pub gauge: bool,
    pub value: u64,
}

/// One JSON object per line, certificates before the sessions that reference them.
pub struct JsonlSink {
    out: BufWriter<Box<dyn Write + Send>>,
    name: String,
    pub records: u64,
}

impl JsonlSink {
    /// `-` writes to stdout; any other path is created (parent directories too).
    pub fn create(path: &Path) -> Result<JsonlSink, SinkError> {
        if path == Path::new("-") {
            return Ok(Self::from_writer(Box::new(io::stdout()), "stdout"));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SinkError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let f = File::create(path).map_err(|source| SinkError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::from_writer(Box::new(f), &path.display().to_string()))
    }

    /// Like [`JsonlSink::create`] but appends to an existing file: a restarted daemon must not
    /// erase what it wrote before.
    pub fn append(path: &Path) -> Result<JsonlSink, SinkError> {
        if path == Path::new("-") {
            return Self::create(path);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SinkError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::from_writer(Box::new(f), &path.display().to_string()))
    }

    pub fn from_writer(w: Box<dyn Write + Send>, name: &str) -> JsonlSink {
        JsonlSink {
            out: BufWriter::with_capacity(256 * 1024, w),
            name: name.to_string(),
            records: 0,
        }
    }

    fn line<T: serde::Serialize>(&mut self, rec: &T) -> Result<(), SinkError> {
        let err = |e: io::Error, name: &str| SinkError::Write {
            path: name.to_string(),
            source: e,
        };
        serde_json::to_writer(&mut self.out, rec).map_err(|e| err(e.into(), &self.name))?;
        self.out.write_all(b"\n").map_err(|e| err(e, &self.name))?;
        self.records += 1;
        Ok(())
    }
}

impl Sink for JsonlSink {
    fn certificate(&mut self, rec: &CertificateRecord) -> Result<(), SinkError> {
        self.line(rec)
    }
    fn session(&mut self, rec: &SessionRecord) -> Result<(), SinkError> {
        self.line(rec)
    }
    fn finding(&mut self, rec: &Finding) -> Result<(), SinkError> {
        self.line(rec)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Write {
            path: self.name.clone(),
            source,
        })
    }
}

/// Keeps records in memory (tests, benches, and the report stage reading a run directly).
#[derive(Debug, Default)]
pub struct VecSink {
    pub certificates: Vec<CertificateRecord>,
    pub sessions: Vec<SessionRecord>,
    pub findings: Vec<Finding>,
}

impl Sink for VecSink {
    fn certificate(&mut self, rec: &CertificateRecord) -> Result<(), SinkError> {
        self.certificates.push(rec.clone());
        Ok(())
    }
    fn session(&mut self, rec: &SessionRecord) -> Result<(), SinkError> {
        self.sessions.push(rec.clone());
        Ok(())
    }
    fn finding(&mut self, rec: &Finding) -> Result<(), SinkError> {
        self.findings.push(rec.clone());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Discards records (benchmarks of the packet path alone).
#[derive(Debug, Default)]
pub struct NullSink {
    pub certificates: u64,
    pub sessions: u64,
    pub findings: u64,
}

impl Sink for NullSink {
    fn certificate(&mut self, _: &CertificateRecord) -> Result<(), SinkError> {
        self.certificates += 1;
        Ok(())
    }
    fn session(&mut self, _: &SessionRecord) -> Result<(), SinkError> {
        self.sessions += 1;
        Ok(())
    }
    fn finding(&mut self, _: &Finding) -> Result<(), SinkError> {
        self.findings += 1;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
