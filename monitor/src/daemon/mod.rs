//! The capture loop behind `mxcert capture`: a live source feeds the same
//! [`Pipeline`](crate::session::Pipeline) as `mxcert read`; the loop hands the pipeline's flow
//! events back to the source (so eBPF stops copying decided flows), expires idle flows by the
//! wall clock, reloads the policy on request and publishes metrics. Signals only set flags
//! (see [`Control`]); everything happens on this one thread, between polls.

pub mod config;
pub mod library;
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
    fn counters(&self) -> Vec<crate::sink::SinkCounter> {
        self.inner.counters()
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
/// arrives; on error the old one stays and the error is logged. `library`, when on, is polled
/// (without waiting) after each poll of the source, and its chains joined to the sessions.
#[allow(clippy::too_many_arguments)]
pub fn run(
    source: &mut dyn LiveSource,
    mut library: Option<&mut library::Library>,
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
    // Drops are reported as they happen, at most once a minute, so a lossy capture is never
    // silent and never floods the log.
    let mut drops_reported = 0u64;
    let mut last_drop_warning: Option<Instant> = None;
    let backend = source.backend();
    let publish = |pipeline: &Pipeline,
                   source: &dyn LiveSource,
                   library: Option<&library::Library>,
                   report: &RunReport,
                   sink: &Counting<'_>| {
        if let Some(expo) = expo {
            let mut by_rule = report.findings_by_rule.clone();
            if let Some(c) = pipeline.classifier() {
                for (k, v) in &c.stats.by_rule {
                    *by_rule.entry(k).or_default() += v;
                }
            }
            let mut text = metrics::render(&metrics::Snapshot {
                backend,
                source: source.counters(),
                pipeline,
                findings_by_rule: &by_rule,
                reloads_ok: report.reloads_ok,
                reloads_failed: report.reloads_failed,
                records_written: sink.records,
                sink: &sink.counters(),
                start_time,
            });
            metrics::render_tls_library(&mut text, library);
            expo.set(text);
        }
    };
    publish(pipeline, source, library.as_deref(), &report, &sink);
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
        let polled = source.poll(cfg.poll_timeout, &mut |pkt| {
            if sink_err.is_none() {
                if let Err(e) = pipeline.packet(pkt, &mut sink) {
                    sink_err = Some(e);
                }
            }
        });
        if let Err(e) = polled {
            // The source is gone (interface removed, ring error): keep what was parsed, as
            // SIGTERM would, then report the failure.
            tracing::error!(error = %e, "capture source failed: finishing open sessions");
            pipeline.finish(&mut sink)?;
            sink.flush()?;
            return Err(e.into());
        }
        if let Some(e) = sink_err.take() {
            return Err(e.into());
        }
        if let Some(lib) = library.as_deref_mut() {
            lib.poll(pipeline, &mut sink)?;
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
            publish(pipeline, source, library.as_deref(), &report, &sink);
            let c = source.counters();
            let drops = c.dropped + c.if_dropped;
            if drops > drops_reported
                && last_drop_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                tracing::warn!(
                    new = drops - drops_reported,
                    kernel = c.dropped,
                    interface = c.if_dropped,
                    "packets lost before mxcert could read them (kernel buffer full or interface drops): sessions may be recorded incomplete"
                );
                drops_reported = drops;
                last_drop_warning = Some(Instant::now());
            }
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
    // The chains the probes hold now (handshakes that just ended) go in before the held
    // records are released.
    if let Some(lib) = library.as_deref_mut() {
        lib.poll(pipeline, &mut sink)?;
    }
    pipeline.finish(&mut sink)?;
    sink.flush()?;
    publish(pipeline, source, library.as_deref(), &report, &sink);
    report.records = sink.records;
    if let Some(c) = pipeline.classifier() {
        for (k, v) in &c.stats.by_rule {
            *report.findings_by_rule.entry(k).or_default() += v;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{FileReader, FlowTuple, Packet, SourceCounters};
    use crate::session::Config;
    use crate::sink::VecSink;

    /// A live source replaying a fixture capture: the real packets of a real session, handed
    /// over as a live backend would, recording what the loop tells it.
    struct Replay {
        reader: FileReader,
        done: Vec<FlowTuple>,
        closed: Vec<FlowTuple>,
        stop: Arc<AtomicBool>,
        reload: Arc<AtomicBool>,
        polls: u32,
        counters: SourceCounters,
        /// At the end of the capture, fail like a removed interface instead of stopping.
        fail_at_end: bool,
    }

    impl Replay {
        /// Replays pcaps/<fixture>; `reload_mid_session` requests a reload at the second poll.
        fn new(
            fixture: &str,
            control: &Control,
            reload_mid_session: bool,
            fail_at_end: bool,
        ) -> Replay {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../pcaps")
                .join(fixture);
            Replay {
                reader: FileReader::open(&path).expect("fixture"),
                done: Vec::new(),
                closed: Vec::new(),
                stop: Arc::clone(&control.stop),
                reload: if reload_mid_session {
                    Arc::clone(&control.reload)
                } else {
                    Arc::new(AtomicBool::new(false))
                },
                polls: 0,
                counters: SourceCounters::default(),
                fail_at_end,
            }
        }
    }

    impl LiveSource for Replay {
        fn backend(&self) -> &'static str {
            "replay"
        }
        fn poll(
            &mut self,
            _timeout: Duration,
            f: &mut dyn FnMut(&Packet<'_>),
        ) -> Result<usize, LiveError> {
            self.polls += 1;
            if self.polls == 2 {
                // A reload request arrives in the middle of the session.
                self.reload.store(true, Ordering::SeqCst);
            }
            // A few packets per poll, so flow events are drained between batches.
            for i in 0..4 {
                match self.reader.next_packet() {
                    Ok(Some(p)) => {
                        self.counters.packets += 1;
                        // Stamped now, as a live backend does: the loop expires idle flows by
                        // the wall clock.
                        f(&Packet {
                            ts: wall_nanos(),
                            ..p
                        });
                    }
                    _ if self.fail_at_end => {
                        return Err(LiveError::Failed {
                            backend: "replay",
                            reason: "interface went away".into(),
                        })
                    }
                    _ => {
                        self.stop.store(true, Ordering::SeqCst);
                        return Ok(i);
                    }
                }
            }
            Ok(4)
        }
        fn flow_done(&mut self, flow: &FlowTuple) {
            self.done.push(*flow);
        }
        fn flow_closed(&mut self, flow: &FlowTuple) {
            self.closed.push(*flow);
        }
        fn counters(&self) -> SourceCounters {
            self.counters
        }
    }

    #[test]
    fn loop_tells_the_source_which_flows_are_done_and_reloads_between_polls() {
        let control = Control::default();
        let mut src = Replay::new("starttls_25_tls12.pcap", &control, true, false);
        let cfg = Config {
            flow_events: true,
            ..Config::default()
        };
        let mut pipeline = Pipeline::new(cfg);
        let mut sink = VecSink::default();
        let mut reloads = 0;
        let mut reload = || {
            reloads += 1;
            Ok(None)
        };
        let expo = metrics::Exposition::default();
        let report = run(
            &mut src,
            None,
            &mut pipeline,
            &mut sink,
            &control,
            &mut reload,
            Some(&expo),
            &LoopConfig {
                poll_timeout: Duration::from_millis(1),
                flush_every: Duration::ZERO,
                status_every: None,
            },
        )
        .expect("loop ends cleanly");
        assert_eq!(reloads, 1);
        assert_eq!(report.reloads_ok, 1);
        assert_eq!(sink.sessions.len(), 1);
        let s = &sink.sessions[0];
        assert_eq!(s.outcome.as_str(), "established");
        let tuple = FlowTuple::new(
            std::net::SocketAddr::new(s.client_ip, s.client_port),
            std::net::SocketAddr::new(s.server_ip, s.server_port),
        );
        // Done once, as soon as the handshake ended (the mail transfer after it was not
        // needed), and nothing closed before the end of the run.
        assert_eq!(src.done, vec![tuple]);
        assert!(src.closed.is_empty(), "{:?}", src.closed);
        let text = expo.get();
        assert!(
            text.contains("mxcert_sessions_total{outcome=\"established\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mxcert_source_packets_total{backend=\"replay\"} "),
            "{text}"
        );
    }

    #[test]
    fn a_failing_source_still_gets_its_open_sessions_recorded() {
        // A capture cut mid-handshake, then the source fails: the session is recorded
        // (incomplete) before the error is returned.
        let control = Control::default();
        let mut src = Replay::new("truncated_handshake.pcap", &control, false, true);
        let mut pipeline = Pipeline::new(Config {
            flow_events: true,
            ..Config::default()
        });
        let mut sink = VecSink::default();
        let r = run(
            &mut src,
            None,
            &mut pipeline,
            &mut sink,
            &control,
            &mut || Ok(None),
            None,
            &LoopConfig::default(),
        );
        assert!(matches!(
            r,
            Err(DaemonError::Source(LiveError::Failed { .. }))
        ));
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(sink.sessions[0].outcome.as_str(), "incomplete");
        assert!(!sink.certificates.is_empty());
    }
}
