//! The TLS-library probes in the daemon (`mxcert capture --tls-library auto`, issue #8): opened
//! from the capture's eBPF object when there is one (one object, see
//! [`crate::capture::bpfobj`]), polled without blocking after each poll of the packet source,
//! their chains handed to the pipeline, which joins them to the TLS 1.3 session records the
//! wire could not read.

use std::time::{Duration, Instant};

use crate::capture::bpfobj::{BpfObject, Parts};
use crate::capture::caps::{self, CapSet, TLS_LIBRARY_CAPS};
use crate::capture::tlslib::{PeerChain, TlsCounters, TlsProbes};
use crate::capture::LiveError;
use crate::session::{LibraryChain, Pipeline};
use crate::sink::{Sink, SinkError};

/// How often /proc is scanned again for allow-listed processes, a safety net behind the
/// exec/exit tracepoints (an event lost to a full ring).
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// How long a TLS 1.3 session record waits for its library chains
/// ([`crate::session::Config::library_wait`]): the chains arrive milliseconds after the
/// handshake; this covers a loaded host and the QUIET fallback.
pub const LIBRARY_WAIT: Duration = Duration::from_secs(2);

/// What the daemon did with the chains (beyond the probes' own counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinCounters {
    /// Chains handed to the pipeline.
    pub attached: u64,
    /// Chains without a socket 4-tuple (connection began before mxcert, or its socket was
    /// gone before the lookup): not joinable, dropped.
    pub unjoinable: u64,
    /// Times the probes' ring could not be polled (logged; capture goes on).
    pub poll_errors: u64,
}

/// The probes as the daemon runs them.
pub struct Library {
    probes: TlsProbes,
    last_refresh: Instant,
    chains: Vec<PeerChain>,
    pub joined: JoinCounters,
}

/// Opens the probes for `comms`, from `object` when the capture has one with the TLS part,
/// else from an object of their own (without the TC program's ring). `None` when they cannot
/// load: the one warning says why and what to do, and capture goes on wire-only.
pub fn open(object: Option<&BpfObject>, comms: &[String], caps: Option<CapSet>) -> Option<Library> {
    match try_open(object, comms, caps) {
        Ok(mut lib) => {
            let system = lib.probes.attach_system_libraries();
            if !system.is_empty() {
                tracing::info!(
                    files = %system.join(", "),
                    "TLS library: the host's shared TLS libraries probed from the start"
                );
            }
            if let Err(e) = lib.probes.refresh() {
                tracing::warn!(error = %e, "TLS library: cannot scan /proc for MTA processes; new ones are still followed");
            }
            lib.log_reports();
            tracing::info!(
                processes = %comms.join(","),
                attached_files = lib.probes.attached_files(),
                "TLS library probes on: TLS 1.3 certificates are read where the MTA's library parses them"
            );
            Some(lib)
        }
        Err(e) => {
            tracing::warn!(
                "TLS library probes off: {e}. TLS 1.3 certificates will not be seen (sessions get \
                 tls.v13_uninspectable); to read them, fix the cause above, or pass \
                 --tls-library off to silence this warning"
            );
            None
        }
    }
}

fn try_open(
    object: Option<&BpfObject>,
    comms: &[String],
    caps: Option<CapSet>,
) -> Result<Library, String> {
    let missing = caps
        .map(|c| c.missing(&TLS_LIBRARY_CAPS))
        .unwrap_or_default();
    if !missing.is_empty() {
        return Err(format!(
            "missing {} (uprobes on another user's process need them all: run as root, or \
             grant them with AmbientCapabilities in monitor/dist/mxcert.service or setcap \
             on the binary)",
            caps::names(&missing)
        ));
    }
    let own;
    let object = match object.filter(|o| o.parts().tls) {
        Some(o) => o,
        None => {
            own = BpfObject::load(Parts {
                tc: false,
                tls: true,
            })
            .map_err(|e| reason(&e))?;
            &own
        }
    };
    let probes = TlsProbes::from_object(object, comms).map_err(|e| reason(&e))?;
    Ok(Library {
        probes,
        last_refresh: Instant::now(),
        chains: Vec::new(),
        joined: JoinCounters::default(),
    })
}

fn reason(e: &LiveError) -> String {
    match e {
        LiveError::Unavailable { reason, .. } | LiveError::Failed { reason, .. } => reason.clone(),
    }
}

impl Library {
    /// Takes what the probes have now (never waits), hands each chain to the pipeline, logs
    /// the probes' messages once, and rescans /proc every [`REFRESH_EVERY`].
    pub fn poll(&mut self, pipeline: &mut Pipeline, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if self.last_refresh.elapsed() >= REFRESH_EVERY {
            self.last_refresh = Instant::now();
            if let Err(e) = self.probes.refresh() {
                tracing::warn!(error = %e, "TLS library: periodic /proc scan failed");
            }
        }
        let chains = &mut self.chains;
        if let Err(e) = self.probes.poll(Duration::ZERO, &mut |c| chains.push(c)) {
            self.joined.poll_errors += 1;
            if self.joined.poll_errors == 1 {
                tracing::warn!(error = %e, "TLS library: polling the probes failed");
            }
        }
        self.log_reports();
        for c in self.chains.drain(..) {
            // A chain the process sent went from it (local) to its peer; a received one the
            // other way. The pipeline files each under its role by the 4-tuple.
            let (to, from) = if c.sent {
                (c.remote, c.local)
            } else {
                (c.local, c.remote)
            };
            let (Some(receiver), Some(sender)) = (to, from) else {
                self.joined.unjoinable += 1;
                continue;
            };
            self.joined.attached += 1;
            let before = pipeline.stats.library_chains;
            pipeline.attach_chain(
                &LibraryChain {
                    receiver,
                    sender,
                    ders: &c.ders,
                    truncated: c.truncated,
                    partial: c.leaf_only,
                },
                sink,
            )?;
            tracing::debug!(
                comm = %c.comm,
                pid = c.tgid,
                %receiver,
                %sender,
                certificates = c.ders.len(),
                joined = pipeline.stats.library_chains > before,
                "TLS library: chain"
            );
        }
        Ok(())
    }

    fn log_reports(&mut self) {
        for msg in self.probes.take_reports() {
            tracing::warn!("TLS library: {msg}");
        }
    }

    pub fn counters(&self) -> TlsCounters {
        self.probes.stats()
    }

    pub fn attached_files(&self) -> usize {
        self.probes.attached_files()
    }

    /// Kernel IDs of the probes' programs.
    pub fn program_ids(&self) -> &[u32] {
        self.probes.program_ids()
    }
}
