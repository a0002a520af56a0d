//! The capture loop behind `mxcert capture`: a live source feeds the same
//! [`Pipeline`](crate::session::Pipeline) as `mxcert read`; the loop hands the pipeline's flow
//! events back to the source (so eBPF stops copying decided flows), expires idle flows by the
//! wall clock, reloads the policy on request and publishes metrics. Signals only set flags
//! (see [`Control`]); everything happens on this one thread, between polls.

pub mod config;
pub mod metrics;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::capture::{LiveError, LiveSource};
use crate::classify::Classifier;
use crate::session::{FlowEvent, Pipeline};
use crate::sink::{Sink, SinkError};

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error(transparent)]
    Source(#[from] LiveError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Flags set from signal handlers (signal-hook), read by the loop between polls.
#[derive(Clone, Default)]
pub struct Control {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

impl Control {
    /// SIGTERM and SIGINT stop, SIGHUP reloads.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        signal_hook::flag::register(SIGTERM, Arc::clone(&self.stop))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&self.stop))?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&self.reload))?;
        Ok(())
    }
}

/// How the loop runs.
pub struct LoopConfig {
    /// Longest wait for packets before the loop looks at its flags and the clock again.
    pub poll_timeout: Duration,
    /// How often records are flushed to the output and metrics re-rendered.
    pub flush_every: Duration,
    /// How often a one-line status is logged (None: never).
    pub status_every: Option<Duration>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            poll_timeout: Duration::from_millis(200),
            flush_every: Duration::from_secs(1),
            status_every: Some(Duration::from_secs(300)),
        }
    }
}

/// Sink wrapper counting records for the metrics.
struct Counting<'a> {
    inner: &'a mut dyn Sink,
    records: u64,
}

impl Sink for Counting<'_> {
    fn certificate(&mut self, r: &crate::x509::CertificateRecord) -> Result<(), SinkError> {
        self.records += 1;
        self.inner.certificate(r)
    }
    fn session(&mut self, r: &crate::session::SessionRecord) -> Result<(), SinkError> {
        self.records += 1;
        self.inner.session(r)
    }
    fn finding(&mut self, r: &crate::classify::Finding) -> Result<(), SinkError> {
        self.records += 1;
        self.inner.finding(r)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }
}

/// What the run did, for the exit summary.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub records: u64,
    pub findings_by_rule: BTreeMap<&'static str, u64>,
}

fn wall_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs until `control.stop` is set or the source/sink fails. On stop the pipeline is finished
/// (open sessions become records, as at the end of a capture file) and the sink flushed;
/// dropping the source afterwards detaches it. `reload` builds a new classifier when SIGHUP
/// arrives; on error the old one stays and the error is logged.
pub fn run(
    source: &mut dyn LiveSource,
    pipeline: &mut Pipeline,
    sink: &mut dyn Sink,
    control: &Control,
    reload: &mut dyn FnMut() -> Result<Option<Classifier>, String>,
    expo: Option<&metrics::Exposition>,
    cfg: &LoopConfig,
) -> Result<RunReport, DaemonError> {
    let mut sink = Counting {
        inner: sink,
        records: 0,
    };
    let mut report = RunReport::default();
    let start_time = wall_nanos() / 1_000_000_000;
    let mut events: Vec<FlowEvent> = Vec::with_capacity(1024);
    let mut last_flush = Instant::now();
    let mut last_status = Instant::now();
    let mut sink_err: Option<SinkError> = None;
    let backend = source.backend();
    let publish =
        |pipeline: &Pipeline, source: &dyn LiveSource, report: &RunReport, records: u64| {
            if let Some(expo) = expo {
                let mut by_rule = report.findings_by_rule.clone();
                if let Some(c) = pipeline.classifier() {
                    for (k, v) in &c.stats.by_rule {
                        *by_rule.entry(k).or_default() += v;
                    }
                }
                expo.set(metrics::render(&metrics::Snapshot {
                    backend,
                    source: source.counters(),
                    pipeline,
                    findings_by_rule: &by_rule,
                    reloads_ok: report.reloads_ok,
                    reloads_failed: report.reloads_failed,
                    records_written: records,
                    start_time,
                }));
            }
        };
    publish(pipeline, source, &report, 0);
    while !control.stop.load(Ordering::SeqCst) {
        if control.reload.swap(false, Ordering::SeqCst) {
            match reload() {
                Ok(c) => {
                    if let Some(old) = pipeline.replace_classifier(c) {
                        for (k, v) in &old.stats.by_rule {
                            *report.findings_by_rule.entry(k).or_default() += v;
                        }
                    }
                    report.reloads_ok += 1;
                    tracing::info!(
                        policy = pipeline
                            .classifier()
                            .map(|c| c.config().policy.source.as_str())
                            .unwrap_or("none (--no-findings)"),
                        "policy reloaded (SIGHUP); open flows kept"
                    );
                }
                Err(e) => {
                    report.reloads_failed += 1;
                    tracing::error!(error = %e, "policy reload failed (SIGHUP); keeping the previous policy");
                }
            }
        }
        source.poll(cfg.poll_timeout, &mut |pkt| {
            if sink_err.is_none() {
                if let Err(e) = pipeline.packet(pkt, &mut sink) {
                    sink_err = Some(e);
                }
            }
        })?;
        if let Some(e) = sink_err.take() {
            return Err(e.into());
        }
        pipeline.tick(wall_nanos(), &mut sink)?;
        pipeline.drain_flow_events(&mut events);
        for e in events.drain(..) {
            match e {
                FlowEvent::Done(t) => source.flow_done(&t),
                FlowEvent::Closed(t) => source.flow_closed(&t),
            }
        }
        if last_flush.elapsed() >= cfg.flush_every {
            last_flush = Instant::now();
            sink.flush()?;
            publish(pipeline, source, &report, sink.records);
        }
        if let Some(every) = cfg.status_every {
            if last_status.elapsed() >= every {
                last_status = Instant::now();
                let c = source.counters();
                let (active, done) = pipeline.flows_by_state();
                tracing::info!(
                    packets = c.packets,
                    bytes = c.bytes,
                    dropped = c.dropped + c.if_dropped,
                    sessions = pipeline.stats.sessions,
                    certificates = pipeline.stats.certificates,
                    flows_active = active,
                    flows_done = done,
                    "status"
                );
            }
        }
    }
    tracing::info!("stopping: finishing open sessions and flushing records");
    pipeline.finish(&mut sink)?;
    sink.flush()?;
    publish(pipeline, source, &report, sink.records);
    report.records = sink.records;
    if let Some(c) = pipeline.classifier() {
        for (k, v) in &c.stats.by_rule {
            *report.findings_by_rule.entry(k).or_default() += v;
        }
    }
    Ok(report)
}
