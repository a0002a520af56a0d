//! The per-flow state machine tying the stages together: a bounded flow table keyed by the TCP
//! 4-tuple, per-direction reassembly ([`crate::reassembly`]), SMTP until TLS starts
//! ([`crate::smtp`]), the TLS handshake ([`crate::tls`]) and certificates ([`crate::x509`]).
//!
//! A flow is parsed only until its outcome is known (handshake over, TLS refused, alert); then
//! its record is emitted, its buffers are freed and it stays in the table as a small tombstone
//! until FIN/RST or the idle timeout, so every later packet of a long encrypted mail transfer
//! costs one hash lookup. Mail content is never read.

pub mod record;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use hashbrown::HashMap;
use sha2::{Digest, Sha256};

use crate::capture::{decode, DecodeOutcome, FlowTuple, Nanos, Packet, TcpSegment};
use crate::classify::{Classifier, KnownCert};
use crate::reassembly::{Delivery, Stream};
use crate::sink::{Sink, SinkError};
use crate::smtp::{ClientEvent, Line, LineSplitter, Smtp};
use crate::tls::{looks_like_tls, CertObserver, Side, Tls, MAX_CHAIN};
use crate::x509::{CertificateRecord, Fingerprint};

pub use record::{Outcome, SessionRecord};

/// Pipeline settings (command-line flags map onto these).
#[derive(Debug, Clone)]
pub struct Config {
    pub ports: PortSet,
    /// Networks that are "ours": decides `direction`.
    pub local_nets: Vec<ipnet::IpNet>,
    /// Flows tracked at once; new flows beyond this are counted and ignored.
    pub max_flows: usize,
    /// Bytes read per direction before a flow is given up as incomplete: the handshake is all
    /// that is needed, and a peer must not make mxcert buffer a mail body.
    pub max_flow_bytes: u64,
    /// Packet-time inactivity after which a flow is closed.
    pub idle_timeout: Nanos,
    /// Distinct certificates remembered (each is emitted once; with classification on, their
    /// DER is kept for chain validation, ~1.5 KB each).
    pub max_known_certs: usize,
    /// Queue [`FlowEvent`]s for a live source (see [`Pipeline::drain_flow_events`]); off for
    /// capture files, where nobody drains them.
    pub flow_events: bool,
    /// How long a TLS 1.3 session record without wire chains waits for the chains read in the
    /// MTA's TLS library ([`Pipeline::attach_chain`]) before it is emitted without them. `None`
    /// (capture files, probes off): emitted at once, as nothing will attach to it.
    pub library_wait: Option<Nanos>,
}

/// A certificate chain read from the MTA's TLS library for one TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct LibraryChain<'a> {
    /// The endpoint of the process that received the chain, and its peer (who sent it).
    pub receiver: SocketAddr,
    pub sender: SocketAddr,
    /// DER certificates as the sender sent them, leaf first. Empty: the library finished the
    /// handshake and the peer sent no certificate.
    pub ders: &'a [Vec<u8>],
    /// Some certificate was cut at the kernel's copy bound.
    pub truncated: bool,
    /// Only part of the chain is known (GnuTLS tells the leaf it sent, not its intermediates):
    /// a full report of the same role from the peer's process, when it is probed too, replaces
    /// it, and a record waits (at most `library_wait`) for one.
    pub partial: bool,
}

/// What a live source learns about a connection, so it can stop copying it
/// ([`crate::capture::LiveSource::flow_done`]) and forget it
/// ([`crate::capture::LiveSource::flow_closed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEvent {
    /// The pipeline needs no more payload of this connection: handshake over, TLS 1.3 (the
    /// rest is encrypted), no TLS, alert, or a bound hit. FIN/RST still matter.
    Done(FlowTuple),
    /// The connection left the flow table (closed and lingered, idle, port reused, end of run).
    Closed(FlowTuple),
}

/// Flow events queued between two drains. The daemon drains after every poll batch (at most a
/// few thousand packets), so this is reached only if nobody drains; beyond it events are
/// counted in [`Stats::flow_events_dropped`] and a source keeps copying those flows, which
/// costs bytes, never records.
const MAX_FLOW_EVENTS: usize = 65_536;

impl Default for Config {
    fn default() -> Self {
        Config {
            ports: PortSet::new(&mxcert_ebpf::DEFAULT_PORTS),
            local_nets: Vec::new(),
            max_flows: 262_144,
            max_flow_bytes: 256 * 1024,
            idle_timeout: 300 * 1_000_000_000,
            max_known_certs: 100_000,
            flow_events: false,
            library_wait: None,
        }
    }
}

/// A set of TCP ports as a 64 Kibit bitmap: one load per packet.
#[derive(Clone)]
pub struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    pub fn new(ports: &[u16]) -> PortSet {
        let mut s = PortSet(Box::new([0; 1024]));
        for &p in ports {
            s.0[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        s
    }
    #[inline]
    pub fn contains(&self, p: u16) -> bool {
        self.0[usize::from(p >> 6)] & (1 << (p & 63)) != 0
    }
    pub fn ports(&self) -> Vec<u16> {
        (0..=u16::MAX).filter(|&p| self.contains(p)).collect()
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ports()).finish()
    }
}

/// Counters for the run summary; everything that was skipped or bounded is counted here.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub tcp_segments: u64,
    pub not_tcp: u64,
    pub ip_fragments: u64,
    pub malformed: u64,
    pub unsupported_link: u64,
    pub truncated_segments: u64,
    pub other_ports: u64,
    pub flows: u64,
    pub flows_midstream: u64,
    pub flows_dropped_table_full: u64,
    pub flows_capped: u64,
    pub flows_idle_expired: u64,
    pub flows_port_reused: u64,
    pub sessions: u64,
    pub certificates: u64,
    pub certificate_parse_errors: u64,
    pub known_certs_resets: u64,
    pub tls_invalid_directions: u64,
    pub tls_undecodable_messages: u64,
    pub retransmissions: u64,
    pub conflicting_overlaps: u64,
    pub ooo_overflows: u64,
    pub gaps: u64,
    pub smtp_long_lines: u64,
    pub flow_events_dropped: u64,
    /// Library chains attached to a session record.
    pub library_chains: u64,
    /// Library chains whose connection is not in the flow table (never seen on the wire, or
    /// forgotten already).
    pub library_chains_unmatched: u64,
    /// Library chains that arrived after their session record was emitted.
    pub library_chains_late: u64,
    /// Library chains with a certificate cut at the kernel's copy bound (its fingerprint is of
    /// the bytes copied).
    pub library_chains_truncated: u64,
    /// TLS 1.3 records emitted without waiting for library chains because `max_flows` records
    /// were held already.
    pub held_records_overflow: u64,
    /// Resumed sessions that got the chains of the full handshake they resumed.
    pub resumed_carried: u64,
    /// Resumed sessions without chains whose full handshake mxcert did not see (or forgot).
    pub resumed_without_original: u64,
    /// Times the resumption cache was full and cleared.
    pub resumption_cache_resets: u64,
}

/// Canonical 4-tuple: the lower (address, port) first, so both directions find one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl FlowKey {
    fn new(a: (IpAddr, u16), b: (IpAddr, u16)) -> FlowKey {
        if a <= b {
            FlowKey { lo: a, hi: b }
        } else {
            FlowKey { lo: b, hi: a }
        }
    }

    fn tuple(&self) -> FlowTuple {
        FlowTuple {
            lo: self.lo.into(),
            hi: self.hi.into(),
        }
    }

    fn of(seg: &TcpSegment<'_>) -> FlowKey {
        FlowKey::new((seg.src, seg.sport), (seg.dst, seg.dport))
    }
}

enum Slot {
    Active(Box<Flow>),
    /// Outcome known and record emitted: only a new SYN on the 4-tuple and the timeout matter
    /// now. Kept after FIN/RST for a short linger (like TIME_WAIT), so late retransmissions do
    /// not start a bogus midstream flow.
    Done {
        last_ts: Nanos,
        closed: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At a boundary where SMTP text or a TLS record may start.
    Smtp,
    Tls,
    /// Nothing more to read in this direction.
    Ignore,
}

/// Per-direction parse state: bytes waiting for a complete line/record, and the mode.
#[derive(Debug)]
struct DirParse {
    mode: Mode,
    pending: Vec<u8>,
    lines: LineSplitter,
    /// No byte of this direction has been parsed yet.
    at_start: bool,
}

impl Default for DirParse {
    fn default() -> Self {
        DirParse {
            mode: Mode::Smtp,
            pending: Vec::new(),
            lines: LineSplitter::default(),
            at_start: true,
        }
    }
}

/// Everything parsed from a flow (separate from the streams so both can be borrowed at once).
#[derive(Debug, Default)]
struct Parse {
    dirs: [DirParse; 2],
    smtp: Smtp,
    tls: Tls,
    tls_started: bool,
    implicit_tls: bool,
    /// The client went on in plaintext (MAIL, QUIT, ...): the session will not use TLS.
    proceeds_without_tls: bool,
    midstream: bool,
}

struct Flow {
    first_ts: Nanos,
    last_ts: Nanos,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    /// Index 0: client → server, 1: server → client.
    streams: [Stream; 2],
    parse: Parse,
    fins: u8,
    rst: bool,
    packets: u64,
    bytes: u64,
    /// Chains from the TLS library that arrived while the flow was still being parsed.
    lib: LibChains,
}

/// Certificate chains read in the TLS library, by role ([`CLIENT`], [`SERVER`]: who sent it).
/// `Some(empty)`: the library finished the handshake and that peer sent no certificate.
#[derive(Debug, Default)]
struct LibChains {
    chain: [Option<Vec<Fingerprint>>; 2],
    /// The role's chain is a partial report (see [`LibraryChain::partial`]).
    partial: [bool; 2],
}

impl LibChains {
    /// Files a report of one role's chain. When both ends are local and probed the same chain
    /// arrives twice, received by one process and sent by the other: a full report beats a
    /// partial one (GnuTLS's leaf-only own chain), and of two alike the longer is kept.
    fn report(&mut self, role: usize, chain: Vec<Fingerprint>, partial: bool) {
        let better = match &self.chain[role] {
            None => true,
            Some(old) => match (self.partial[role], partial) {
                (true, false) => true,
                (false, true) => false,
                _ => old.len() <= chain.len(),
            },
        };
        if better {
            self.chain[role] = Some(chain);
            self.partial[role] = partial;
        }
    }

    /// Both roles reported in full: nothing more to wait for.
    fn complete(&self) -> bool {
        self.chain.iter().all(Option::is_some) && !self.partial.iter().any(|p| *p)
    }

    fn is_empty(&self) -> bool {
        self.chain.iter().all(Option::is_none)
    }
}

/// A TLS 1.3 session record waiting for its library chains (see [`Config::library_wait`]).
struct Held {
    rec: SessionRecord,
    first_ts: Nanos,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    lib: LibChains,
    /// Tells this record's entry in [`Pipeline::held_order`] from an older one of the same key.
    seq: u64,
}

/// What a resumed session is matched on. A client resumes with the session or ticket it got
/// from that server (RFC 5246 §7.4.1.2, RFC 5077 §3.1, RFC 8446 §4.6.1), and MTAs cache them
/// per destination: Postfix's smtp_tls_session_cache is keyed by the next hop and its
/// address, OpenSSL's client cache by the peer and the server name. So the last full handshake
/// between the same client address and server endpoint for the same SNI is the one resumed.
/// The version is part of the key: a session is resumed only with the version it was made
/// with (RFC 5246 §7.4.1.3; a TLS 1.3 PSK comes from a TLS 1.3 connection, RFC 8446 §2.2).
/// Honest limits: a server that changed certificates between two full handshakes, or a client
/// that holds several sessions and resumes an older one, gets the latest full handshake's
/// chains; a client address shared by several MTAs (NAT) can mix their sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ResumeKey {
    client: IpAddr,
    server: (IpAddr, u16),
    sni: Option<String>,
    version: Option<&'static str>,
}

/// The chains of a full handshake, for the sessions that resume it.
struct Original {
    server_chain: Vec<Fingerprint>,
    client_chain: Vec<Fingerprint>,
    session_id: String,
}

/// Full handshakes remembered for resumption (~200 bytes each); when full, the cache is
/// cleared and [`Stats::resumption_cache_resets`] counts it (a resumed session then reports no
/// chain, as if mxcert had not seen its full handshake).
const MAX_RESUMPTION_ENTRIES: usize = 65_536;

/// How long a closed flow's tombstone outlives its last packet (TCP's TIME_WAIT is 2×MSL; a
/// minute covers late retransmissions on any real path).
const CLOSED_LINGER: Nanos = 60 * 1_000_000_000;

const CLIENT: usize = 0;
const SERVER: usize = 1;

/// Remembers which certificates were emitted and queues new ones for the sink. With
/// classification on, it also keeps each certificate's DER and record for chain validation.
struct CertRegistry {
    known: HashMap<Fingerprint, Option<KnownCert>>,
    keep: bool,
    max: usize,
    fresh: Vec<CertificateRecord>,
    parse_errors: u64,
    resets: u64,
}

impl CertObserver for CertRegistry {
    fn certificate(&mut self, der: &[u8]) -> Fingerprint {
        let fp = Fingerprint::of(der);
        if !self.known.contains_key(&fp) {
            if self.known.len() >= self.max {
                // Forgetting means a certificate may be emitted again, which a consumer
                // deduplicating by sha256 tolerates; unbounded memory it would not.
                self.known.clear();
                self.resets += 1;
            }
            let rec = CertificateRecord::from_der(der);
            if rec.parse_error.is_some() {
                self.parse_errors += 1;
            }
            let kept = self.keep.then(|| KnownCert {
                der: der.to_vec(),
                rec: rec.clone(),
            });
            self.known.insert(fp, kept);
            self.fresh.push(rec);
        }
        fp
    }
}

/// The offline/live pipeline from packets to records.
pub struct Pipeline {
    cfg: Config,
    flows: HashMap<FlowKey, Slot>,
    certs: CertRegistry,
    pub stats: Stats,
    /// Sessions by outcome, TLS version and client-certificate use, for the summary.
    pub summary: record::Summary,
    last_sweep: Nanos,
    now: Nanos,
    classifier: Option<Classifier>,
    /// A forward time jump larger than the idle timeout waiting for confirmation.
    jump: Option<Nanos>,
    events: Vec<FlowEvent>,
    /// TLS 1.3 records waiting for library chains, at most `max_flows` of them.
    held: HashMap<FlowKey, Held>,
    /// (deadline, key, seq) in the order records were held; `library_wait` is constant and the
    /// clock never goes back, so deadlines are in order too and the due ones are at the front.
    held_order: VecDeque<(Nanos, FlowKey, u64)>,
    held_seq: u64,
    /// The last full handshake's chains per [`ResumeKey`].
    resumption: HashMap<ResumeKey, Original>,
}

impl Pipeline {
    pub fn new(cfg: Config) -> Pipeline {
        Pipeline::with_classifier(cfg, None)
    }

    /// A pipeline that also classifies each session and emits its findings.
    pub fn with_classifier(cfg: Config, classifier: Option<Classifier>) -> Pipeline {
        let certs = CertRegistry {
            known: HashMap::new(),
            keep: classifier.is_some(),
            max: cfg.max_known_certs,
            fresh: Vec::new(),
            parse_errors: 0,
            resets: 0,
        };
        Pipeline {
            cfg,
            flows: HashMap::new(),
            certs,
            stats: Stats::default(),
            summary: record::Summary::default(),
            last_sweep: Nanos::MIN,
            now: Nanos::MIN,
            jump: None,
            classifier,
            events: Vec::new(),
            held: HashMap::new(),
            held_order: VecDeque::new(),
            held_seq: 0,
            resumption: HashMap::new(),
        }
    }

    fn event(&mut self, e: FlowEvent) {
        if !self.cfg.flow_events {
            return;
        }
        if self.events.len() >= MAX_FLOW_EVENTS {
            self.stats.flow_events_dropped += 1;
            return;
        }
        self.events.push(e);
    }

    /// Moves the queued flow events into `out` (appending; `out` keeps its capacity between
    /// calls, so the steady state allocates nothing).
    pub fn drain_flow_events(&mut self, out: &mut Vec<FlowEvent>) {
        out.append(&mut self.events);
    }

    /// Live capture: advances the flow table's clock to wall-clock `now` and closes idle flows,
    /// so a flow whose last packet was long ago expires even when no packet arrives. Capture
    /// files keep using packet time (see [`Pipeline::clock`]).
    pub fn tick(&mut self, now: Nanos, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if now > self.now {
            self.now = now;
            self.jump = None;
        }
        if self.now.saturating_sub(self.last_sweep) >= self.cfg.idle_timeout / 4 {
            self.last_sweep = self.now;
            self.sweep(sink)?;
        }
        self.release_due(sink)
    }

    /// Replaces the classifier (SIGHUP reloads the policy): open flows are kept and classified
    /// with the new one when they end. Returns the old classifier. Certificates seen while
    /// classification was off were not kept, so chains referring to them are judged without
    /// their DER.
    pub fn replace_classifier(&mut self, classifier: Option<Classifier>) -> Option<Classifier> {
        self.certs.keep = classifier.is_some();
        std::mem::replace(&mut self.classifier, classifier)
    }

    /// Flows in the table by state: (active, done). Done flows are tombstones waiting for
    /// FIN/RST or the idle timeout.
    pub fn flows_by_state(&self) -> (usize, usize) {
        let active = self
            .flows
            .values()
            .filter(|s| matches!(s, Slot::Active(_)))
            .count();
        (active, self.flows.len() - active)
    }

    /// Advances the flow table's clock (which drives idle expiry). Captures sometimes hold a
    /// packet with a wild timestamp (one SYN-ACK dated 2063 in a 2015 capture is in the public
    /// corpus); believing it would expire every open flow. A jump forward by more than the idle
    /// timeout is taken only when the next packet confirms it. Records keep each packet's own
    /// time either way.
    fn clock(&mut self, ts: Nanos) {
        if self.now == Nanos::MIN || (ts > self.now && ts - self.now <= self.cfg.idle_timeout) {
            self.now = ts;
            self.jump = None;
        } else if ts > self.now {
            match self.jump {
                Some(j) if (ts - j).abs() <= self.cfg.idle_timeout => {
                    self.now = ts;
                    self.jump = None;
                }
                _ => self.jump = Some(ts),
            }
        }
    }

    /// Flows currently in the table (active and tombstones).
    pub fn flows_in_table(&self) -> usize {
        self.flows.len()
    }

    /// One captured packet.
    pub fn packet(&mut self, pkt: &Packet<'_>, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(pkt.orig_len);
        let seg = match decode(pkt.link, pkt.data) {
            DecodeOutcome::Tcp(s) => s,
            DecodeOutcome::NotTcp => {
                self.stats.not_tcp += 1;
                return Ok(());
            }
            DecodeOutcome::IpFragment => {
                self.stats.ip_fragments += 1;
                return Ok(());
            }
            DecodeOutcome::Malformed => {
                self.stats.malformed += 1;
                return Ok(());
            }
            DecodeOutcome::UnsupportedLink => {
                self.stats.unsupported_link += 1;
                return Ok(());
            }
        };
        self.segment(pkt.ts, &seg, sink)
    }

    /// One decoded TCP segment (live backends that decode elsewhere enter here).
    pub fn segment(
        &mut self,
        ts: Nanos,
        seg: &TcpSegment<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        self.stats.tcp_segments += 1;
        if seg.truncated {
            self.stats.truncated_segments += 1;
        }
        if !self.cfg.ports.contains(seg.sport) && !self.cfg.ports.contains(seg.dport) {
            self.stats.other_ports += 1;
            return Ok(());
        }
        self.clock(ts);
        if self.now.saturating_sub(self.last_sweep) >= self.cfg.idle_timeout / 4 {
            self.last_sweep = self.now;
            self.sweep(sink)?;
        }
        if !self.held.is_empty() {
            self.release_due(sink)?;
        }
        let key = FlowKey::of(seg);
        let flags = seg.flags;
        let fresh_syn = flags.syn() && !flags.ack();
        match self.flows.get_mut(&key) {
            Some(Slot::Done { last_ts, closed }) => {
                if fresh_syn && ts > *last_ts {
                    // A new connection on the same 4-tuple (port reuse).
                    self.flows.remove(&key);
                    self.stats.flows_port_reused += 1;
                    self.event(FlowEvent::Closed(key.tuple()));
                } else {
                    *last_ts = ts;
                    *closed |= flags.fin() || flags.rst();
                    return Ok(());
                }
            }
            // A SYN from the client after it already sent data is a new connection on the
            // same 4-tuple (the old one ended unseen); a SYN before data is a retransmission.
            Some(Slot::Active(flow))
                if fresh_syn && seg.src == flow.client.0 && flow.streams[CLIENT].delivered > 0 =>
            {
                self.stats.flows_port_reused += 1;
                if let Some(Slot::Active(old)) = self.flows.remove(&key) {
                    self.finish_flow(old, sink)?;
                }
            }
            Some(Slot::Active(_)) => {}
            None => {}
        }
        if !self.flows.contains_key(&key) {
            if !flags.syn() && seg.payload.is_empty() {
                return Ok(());
            }
            if flags.rst() {
                return Ok(());
            }
            if self.flows.len() >= self.cfg.max_flows {
                self.stats.flows_dropped_table_full += 1;
                return Ok(());
            }
            // A new connection on the 4-tuple of a record still waiting for library chains:
            // that record goes first, so chains arriving from now on belong to the new one.
            if let Some(h) = self.held.remove(&key) {
                self.emit(h.rec, h.first_ts, &h.lib, sink)?;
            }
            let flow = self.new_flow(ts, seg);
            self.stats.flows += 1;
            if flow.parse.midstream {
                self.stats.flows_midstream += 1;
            }
            self.flows.insert(key, Slot::Active(flow));
        }
        let Some(Slot::Active(flow)) = self.flows.get_mut(&key) else {
            return Ok(());
        };
        let ended = feed(flow, ts, seg, &mut self.certs, &self.cfg);
        for rec in self.certs.fresh.drain(..) {
            self.stats.certificates += 1;
            sink.certificate(&rec)?;
        }
        if ended {
            if let Some(Slot::Active(flow)) = self.flows.remove(&key) {
                let last_ts = flow.last_ts;
                let closed = flow.rst || flow.fins >= 2;
                self.finish_flow(flow, sink)?;
                self.flows.insert(key, Slot::Done { last_ts, closed });
                self.event(FlowEvent::Done(key.tuple()));
            }
        }
        Ok(())
    }

    fn new_flow(&self, ts: Nanos, seg: &TcpSegment<'_>) -> Box<Flow> {
        let src = (seg.src, seg.sport);
        let dst = (seg.dst, seg.dport);
        let (client, server, midstream) = if seg.flags.syn() {
            if seg.flags.ack() {
                (dst, src, false)
            } else {
                (src, dst, false)
            }
        } else {
            // Start not captured: the side on a watched port is the server; when both are,
            // the lower port (25 < 465 < 587 and ephemeral ports are high).
            let s_watched = self.cfg.ports.contains(seg.sport);
            let d_watched = self.cfg.ports.contains(seg.dport);
            let src_is_server = match (s_watched, d_watched) {
                (true, false) => true,
                (false, true) => false,
                _ => seg.sport < seg.dport,
            };
            if src_is_server {
                (dst, src, true)
            } else {
                (src, dst, true)
            }
        };
        let mut flow = Box::new(Flow {
            first_ts: ts,
            last_ts: ts,
            client,
            server,
            streams: [Stream::default(), Stream::default()],
            parse: Parse::default(),
            fins: 0,
            rst: false,
            packets: 0,
            bytes: 0,
            lib: LibChains::default(),
        });
        flow.parse.midstream = midstream;
        if midstream {
            flow.parse.smtp.skip_greeting();
        }
        flow
    }

    /// Closes flows idle longer than the timeout.
    fn sweep(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let deadline = self.now.saturating_sub(self.cfg.idle_timeout);
        let linger = self
            .now
            .saturating_sub(CLOSED_LINGER.min(self.cfg.idle_timeout));
        // Tombstones go silently; active flows become records.
        let events = &mut self.events;
        let (on, stats) = (self.cfg.flow_events, &mut self.stats);
        self.flows.retain(|k, s| match s {
            Slot::Done { last_ts, closed } => {
                let keep = *last_ts >= if *closed { linger } else { deadline };
                if !keep && on {
                    if events.len() < MAX_FLOW_EVENTS {
                        events.push(FlowEvent::Closed(k.tuple()));
                    } else {
                        stats.flow_events_dropped += 1;
                    }
                }
                keep
            }
            Slot::Active(_) => true,
        });
        let expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Active(f) if f.last_ts < deadline))
            .map(|(k, _)| *k)
            .collect();
        self.finish_keys(expired, true, sink)
    }

    fn finish_keys(
        &mut self,
        mut keys: Vec<FlowKey>,
        idle: bool,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        let mut flows: Vec<Box<Flow>> = Vec::new();
        for k in keys.drain(..) {
            if let Some(Slot::Active(f)) = self.flows.remove(&k) {
                flows.push(f);
                self.event(FlowEvent::Closed(k.tuple()));
            }
        }
        // Deterministic output order whatever the hash table's order.
        flows.sort_by_key(|f| (f.first_ts, f.client, f.server));
        for f in flows {
            if idle {
                self.stats.flows_idle_expired += 1;
            }
            self.finish_flow(f, sink)?;
        }
        Ok(())
    }

    /// End of input: every flow still open becomes a record.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        self.finish_keys(keys, false, sink)?;
        self.flows.clear();
        let mut held: Vec<Held> = self.held.drain().map(|(_, h)| h).collect();
        self.held_order.clear();
        held.sort_by_key(|h| (h.first_ts, h.client, h.server));
        for h in held {
            self.emit(h.rec, h.first_ts, &h.lib, sink)?;
        }
        self.stats.certificate_parse_errors = self.certs.parse_errors;
        self.stats.known_certs_resets = self.certs.resets;
        sink.flush()
    }

    fn finish_flow(&mut self, mut flow: Box<Flow>, sink: &mut dyn Sink) -> Result<(), SinkError> {
        // Data still waiting behind a gap is parsed now, so a lost segment costs only what it
        // covered.
        for side in [CLIENT, SERVER] {
            if flow.streams[side].has_pending() {
                let Flow { streams, parse, .. } = &mut *flow;
                let cfg = &self.cfg;
                let certs = &mut self.certs;
                streams[side].skip_gap(&mut |d| parse.deliver(side, d, certs, cfg));
            }
        }
        for rec in self.certs.fresh.drain(..) {
            self.stats.certificates += 1;
            sink.certificate(&rec)?;
        }
        for s in &flow.streams {
            self.stats.retransmissions += s.stats.retransmissions;
            self.stats.conflicting_overlaps += s.stats.conflicting_overlaps;
            self.stats.ooo_overflows += s.stats.ooo_overflows;
            self.stats.gaps += s.stats.gaps;
        }
        let p = &flow.parse;
        for d in &p.dirs {
            self.stats.smtp_long_lines += d.lines.long_lines;
        }
        for d in [&p.tls.client, &p.tls.server] {
            if d.invalid.is_some() {
                self.stats.tls_invalid_directions += 1;
            }
        }
        self.stats.tls_undecodable_messages += u64::from(p.tls.facts.undecodable_messages);
        if flow
            .streams
            .iter()
            .any(|s| s.delivered >= self.cfg.max_flow_bytes)
        {
            self.stats.flows_capped += 1;
        }
        let rec = self.record(&flow);
        let lib = std::mem::take(&mut flow.lib);
        if let Some(wait) = self.cfg.library_wait {
            // Only TLS 1.3 hides its certificates from the wire (RFC 8446 §4.4.2: Certificate
            // is encrypted); a record still missing a role's library chain waits for it.
            let waits = rec.tls.version == Some("TLS1.3")
                && rec.tls.chain_source.is_none()
                && !lib.complete();
            if waits && self.held.len() < self.cfg.max_flows {
                let key = FlowKey::new(flow.client, flow.server);
                self.held_seq += 1;
                self.held_order
                    .push_back((self.now.saturating_add(wait), key, self.held_seq));
                self.held.insert(
                    key,
                    Held {
                        rec,
                        first_ts: flow.first_ts,
                        client: flow.client,
                        server: flow.server,
                        lib,
                        seq: self.held_seq,
                    },
                );
                return Ok(());
            }
            if waits {
                self.stats.held_records_overflow += 1;
            }
        }
        self.emit(rec, flow.first_ts, &lib, sink)
    }

    /// The final record: library chains joined in, a resumed session given its original's
    /// chains, then summary, sink and classification. A resumed session is classified on the
    /// carried chain at its own start time: that is when the certificate was relied on.
    fn emit(
        &mut self,
        mut rec: SessionRecord,
        first_ts: Nanos,
        lib: &LibChains,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        join_library(&mut rec, lib);
        self.resumption(&mut rec);
        self.summary.add(&rec);
        self.stats.sessions += 1;
        sink.session(&rec)?;
        if let Some(c) = self.classifier.as_mut() {
            let known = &self.certs.known;
            let lookup = |fp: &Fingerprint| known.get(fp).cloned().flatten();
            for f in c.classify(&rec, first_ts.div_euclid(1_000_000_000), &lookup) {
                sink.finding(&f)?;
            }
        }
        Ok(())
    }

    /// Remembers a full handshake's chains, or gives a resumed session without chains of its
    /// own those of the full handshake it resumed (see [`ResumeKey`]).
    fn resumption(&mut self, rec: &mut SessionRecord) {
        let key = ResumeKey {
            client: rec.client_ip,
            server: (rec.server_ip, rec.server_port),
            sni: rec.tls.sni.clone(),
            version: rec.tls.version,
        };
        let t = &mut rec.tls;
        if t.resumed {
            let Some(o) = self.resumption.get(&key) else {
                if t.chain_source.is_none() {
                    self.stats.resumed_without_original += 1;
                }
                return;
            };
            // Which handshake was resumed is worth saying even when the library reported the
            // resumed session's chains itself (a library that keeps them with the session).
            t.resumed_from = Some(o.session_id.clone());
            // No certificate is sent in a resumed handshake (RFC 8446 §2.2, RFC 5246 §7.3):
            // the session stays bound to the original's. A role the library did not report
            // takes the original's chain: GnuTLS keeps only the peer's chain with the
            // session, so an Exim server reports the client's chain and nothing on the other
            // side reports the server's.
            let mut carried = false;
            for (mine, theirs) in [
                (&mut t.server_chain, &o.server_chain),
                (&mut t.client_chain, &o.client_chain),
            ] {
                if mine.is_empty() && !theirs.is_empty() {
                    mine.clone_from(theirs);
                    carried = true;
                }
            }
            if t.chain_source.is_none() {
                t.chain_source = Some("resumed");
                carried = true;
            }
            if carried {
                self.stats.resumed_carried += 1;
            }
        } else if t.chain_source.is_some() && rec.outcome == Outcome::Established {
            // Only a completed handshake leaves a session to resume.
            if self.resumption.len() >= MAX_RESUMPTION_ENTRIES
                && !self.resumption.contains_key(&key)
            {
                self.resumption.clear();
                self.stats.resumption_cache_resets += 1;
            }
            let original = Original {
                server_chain: t.server_chain.clone(),
                client_chain: t.client_chain.clone(),
                session_id: rec.session_id.clone(),
            };
            self.resumption.insert(key, original);
        }
    }

    /// Emits the held records whose `library_wait` has passed.
    fn release_due(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        while let Some(&(deadline, key, seq)) = self.held_order.front() {
            if deadline > self.now {
                break;
            }
            self.held_order.pop_front();
            if self.held.get(&key).is_some_and(|h| h.seq == seq) {
                if let Some(h) = self.held.remove(&key) {
                    self.emit(h.rec, h.first_ts, &h.lib, sink)?;
                }
            }
        }
        Ok(())
    }

    /// A certificate chain read in the MTA's TLS library (TLS 1.3 hides it from the wire). It
    /// joins the session of its TCP connection: kept on the flow while that is still parsed,
    /// added to its held record otherwise (released once both roles' chains are there). Chains
    /// for connections not in the table, or whose record was emitted already, are counted.
    pub fn attach_chain(
        &mut self,
        c: &LibraryChain<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d; the wire has it as IPv4.
        let ep = |a: SocketAddr| (a.ip().to_canonical(), a.port());
        let (sender, receiver) = (ep(c.sender), ep(c.receiver));
        let key = FlowKey::new(sender, receiver);
        let (client, server) = if let Some(h) = self.held.get(&key) {
            (h.client, h.server)
        } else {
            match self.flows.get(&key) {
                Some(Slot::Active(f)) => (f.client, f.server),
                Some(Slot::Done { .. }) => {
                    self.stats.library_chains_late += 1;
                    return Ok(());
                }
                None => {
                    self.stats.library_chains_unmatched += 1;
                    return Ok(());
                }
            }
        };
        let role = if sender == server && receiver == client {
            SERVER
        } else if sender == client && receiver == server {
            CLIENT
        } else {
            self.stats.library_chains_unmatched += 1;
            return Ok(());
        };
        // The same registry as wire certificates: each is emitted once, and classification has
        // its DER. A truncated one is still identified, by the bytes that were copied.
        let chain: Vec<Fingerprint> = c
            .ders
            .iter()
            .take(MAX_CHAIN)
            .map(|der| self.certs.certificate(der))
            .collect();
        for rec in self.certs.fresh.drain(..) {
            self.stats.certificates += 1;
            sink.certificate(&rec)?;
        }
        self.stats.library_chains += 1;
        if c.truncated {
            self.stats.library_chains_truncated += 1;
        }
        if let Some(h) = self.held.get_mut(&key) {
            h.lib.report(role, chain, c.partial);
            if h.lib.complete() {
                if let Some(h) = self.held.remove(&key) {
                    self.emit(h.rec, h.first_ts, &h.lib, sink)?;
                }
            }
        } else if let Some(Slot::Active(f)) = self.flows.get_mut(&key) {
            f.lib.report(role, chain, c.partial);
        }
        Ok(())
    }

    /// Records waiting for library chains.
    pub fn held_records(&self) -> usize {
        self.held.len()
    }

    /// The classifier, when classification is on (its counters feed the summary).
    pub fn classifier(&self) -> Option<&Classifier> {
        self.classifier.as_ref()
    }

    fn record(&self, flow: &Flow) -> SessionRecord {
        let p = &flow.parse;
        let outcome = if p.tls.handshake_done() {
            Outcome::Established
        } else if p.tls.facts.alert.is_some_and(|(level, _)| level == 2) {
            Outcome::Alert
        } else if p.midstream {
            Outcome::Incomplete
        } else if !p.tls_started {
            if p.smtp.facts.server_lines + p.smtp.facts.client_lines > 0 {
                Outcome::NoTls
            } else if flow.rst {
                Outcome::Reset
            } else if flow.fins > 0 {
                Outcome::Closed
            } else {
                Outcome::Incomplete
            }
        } else if flow.rst {
            Outcome::Reset
        } else if flow.fins > 0 {
            Outcome::Closed
        } else {
            Outcome::Incomplete
        };
        let direction = record::direction(&self.cfg.local_nets, flow.client.0, flow.server.0);
        SessionRecord::build(record::SessionParts {
            first_ts: flow.first_ts,
            last_ts: flow.last_ts,
            session_id: session_id(flow.first_ts, flow.client, flow.server),
            client: flow.client,
            server: flow.server,
            direction,
            smtp: &p.smtp.facts,
            implicit_tls: p.implicit_tls,
            tls: &p.tls.facts,
            outcome,
            midstream: p.midstream,
            packets: flow.packets,
            bytes: flow.bytes,
        })
    }
}

/// Puts the library's chains into a record the wire saw none for (with wire chains, those are
/// what was sent and stay). A client chain from the library also answers what TLS 1.3 hides:
/// whether the client presented a certificate, and — as a client sends Certificate only when
/// asked (RFC 8446 §4.4.2) — that one was requested when it did. A role the library said
/// nothing about stays unknown.
///
/// A resumed handshake sends no certificate by design (RFC 8446 §2.2: the PSK stands for the
/// original handshake's authentication), so there an empty report says nothing about either
/// side: it neither marks the client as having declined nor keeps the original's chains out.
fn join_library(rec: &mut SessionRecord, lib: &LibChains) {
    if rec.tls.chain_source.is_some() || lib.is_empty() {
        return;
    }
    let t = &mut rec.tls;
    let resumed = t.resumed;
    let said = |c: &Option<Vec<Fingerprint>>| c.clone().filter(|c| !(resumed && c.is_empty()));
    if let Some(s) = said(&lib.chain[SERVER]) {
        t.server_chain = s;
    }
    if let Some(c) = said(&lib.chain[CLIENT]) {
        t.client_cert_presented = Some(!c.is_empty());
        if !c.is_empty() {
            t.cert_requested = Some(true);
        }
        t.client_chain = c;
    }
    // Any library report counts, an empty one too: the library saw this handshake (e.g. an
    // inbound client that sent no certificate; our own server chain is never read there). A
    // resumed handshake sends no certificate by design: it carries its original's chains.
    if !t.server_chain.is_empty() || !t.client_chain.is_empty() || !t.resumed {
        t.chain_source = Some("uprobe");
    }
}

/// Stable session identifier: the same capture always yields the same ids, so re-reading a
/// file into ClickHouse replaces rows instead of duplicating them.
fn session_id(ts: Nanos, client: (IpAddr, u16), server: (IpAddr, u16)) -> String {
    let mut h = Sha256::new();
    h.update(ts.to_be_bytes());
    for (ip, port) in [client, server] {
        match ip {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(port.to_be_bytes());
    }
    let d = h.finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds one segment to its flow. Returns true when the flow's outcome is known.
fn feed(
    flow: &mut Flow,
    ts: Nanos,
    seg: &TcpSegment<'_>,
    certs: &mut CertRegistry,
    cfg: &Config,
) -> bool {
    flow.last_ts = ts;
    flow.packets += 1;
    flow.bytes += seg.payload.len() as u64;
    let side = if (seg.src, seg.sport) == flow.client {
        CLIENT
    } else {
        SERVER
    };
    let flags = seg.flags;
    if flags.syn() {
        flow.streams[side].syn(seg.seq);
        if flags.ack() {
            // The SYN-ACK acknowledges the client's ISN: the client's stream starts there even
            // when its SYN was not captured.
            flow.streams[CLIENT].syn(seg.ack.wrapping_sub(1));
        }
    }
    if !seg.payload.is_empty() {
        if flow.streams[side].delivered >= cfg.max_flow_bytes {
            return true;
        }
        let Flow { streams, parse, .. } = flow;
        streams[side].segment(seg.seq, seg.payload, &mut |d| {
            parse.deliver(side, d, certs, cfg)
        });
    }
    if flags.fin() {
        flow.streams[side].fin(seg.seq, seg.payload.len());
    }
    flow.fins = flow.streams.iter().filter(|s| s.fin_reached()).count() as u8;
    if flags.rst() {
        flow.rst = true;
    }
    let p = &flow.parse;
    p.tls.handshake_done()
        || p.proceeds_without_tls
        || p.tls.facts.alert.is_some_and(|(level, _)| level == 2)
        || (p.midstream
            && p.tls.facts.version.is_none()
            && p.tls.client.app_data_records + p.tls.server.app_data_records > 0)
        || p.dirs.iter().all(|d| d.mode == Mode::Ignore)
        || flow.rst
        || flow.fins >= 2
        || flow.streams[side].delivered >= cfg.max_flow_bytes
}

impl Parse {
    fn deliver(&mut self, side: usize, d: Delivery<'_>, certs: &mut CertRegistry, cfg: &Config) {
        let _ = cfg;
        let data = match d {
            Delivery::Data(b) => b,
            Delivery::Gap => {
                // Lost bytes: a TLS direction cannot find its record boundary again; SMTP
                // resynchronises at the next line.
                let dir = &mut self.dirs[side];
                dir.pending.clear();
                match dir.mode {
                    Mode::Tls => dir.mode = Mode::Ignore,
                    Mode::Smtp => dir.lines.skipping = true,
                    Mode::Ignore => {}
                }
                return;
            }
        };
        if self.dirs[side].mode == Mode::Ignore {
            return;
        }
        if self.dirs[side].pending.is_empty() {
            // Fast path: parse straight from the packet, keep only an unfinished tail.
            let n = self.parse(side, data, certs);
            if n < data.len() && self.dirs[side].mode != Mode::Ignore {
                self.dirs[side].pending.extend_from_slice(&data[n..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.dirs[side].pending);
            buf.extend_from_slice(data);
            let n = self.parse(side, &buf, certs);
            buf.drain(..n);
            if self.dirs[side].mode == Mode::Ignore {
                buf.clear();
            }
            self.dirs[side].pending = buf;
        }
    }

    /// Parses as much of `buf` as forms complete lines/records; returns bytes used.
    fn parse(&mut self, side: usize, buf: &[u8], certs: &mut CertRegistry) -> usize {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            if rest.is_empty() || self.proceeds_without_tls {
                return used;
            }
            match self.dirs[side].mode {
                Mode::Ignore => return buf.len(),
                Mode::Tls => {
                    let tside = if side == CLIENT {
                        Side::Client
                    } else {
                        Side::Server
                    };
                    let n = self.tls.feed(tside, rest, certs);
                    let dir = if side == CLIENT {
                        &self.tls.client
                    } else {
                        &self.tls.server
                    };
                    if dir.invalid.is_some() {
                        self.dirs[side].mode = Mode::Ignore;
                        return buf.len();
                    }
                    return used + n;
                }
                Mode::Smtp => {
                    if !self.dirs[side].lines.skipping {
                        match looks_like_tls(rest) {
                            None => return used,
                            Some(true) => {
                                self.dirs[side].mode = Mode::Tls;
                                if !self.tls_started && side == CLIENT {
                                    self.implicit_tls = self.dirs[side].at_start
                                        && self.smtp.facts.server_lines == 0
                                        && !self.midstream;
                                }
                                self.tls_started = true;
                                self.dirs[side].at_start = false;
                                continue;
                            }
                            Some(false) => {}
                        }
                    }
                    self.dirs[side].at_start = false;
                    match self.dirs[side].lines.next_line(rest) {
                        Line::NeedMore => return used,
                        Line::Skipped(n) => used += n,
                        Line::Complete(line, n) => {
                            used += n;
                            if side == CLIENT {
                                if self.smtp.client_line(line) == ClientEvent::ProceedsWithoutTls {
                                    self.proceeds_without_tls = true;
                                }
                            } else {
                                self.smtp.server_line(line);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::TcpFlags;
    use crate::sink::VecSink;

    const SEC: Nanos = 1_000_000_000;

    fn seg<'a>(client: bool, port: u16, seq: u32, flags: u8, payload: &'a [u8]) -> TcpSegment<'a> {
        let c: IpAddr = "198.18.0.2".parse().unwrap();
        let s: IpAddr = "198.18.0.1".parse().unwrap();
        let (src, dst, sport, dport) = if client {
            (c, s, port, 25)
        } else {
            (s, c, 25, port)
        };
        TcpSegment {
            src,
            dst,
            sport,
            dport,
            seq,
            ack: 0,
            flags: TcpFlags(flags),
            payload,
            truncated: false,
        }
    }

    /// SYN and SYN-ACK.
    fn open(p: &mut Pipeline, sink: &mut VecSink, port: u16, t0: Nanos) {
        p.segment(t0, &seg(true, port, 0, TcpFlags::SYN, b""), sink)
            .unwrap();
        let syn_ack = seg(false, port, 0, TcpFlags::SYN | TcpFlags::ACK, b"");
        p.segment(t0, &syn_ack, sink).unwrap();
    }

    /// Greeting, EHLO, a 250 reply without STARTTLS, then MAIL: decided `no_tls` at MAIL.
    fn plaintext_session(p: &mut Pipeline, sink: &mut VecSink, port: u16, t0: Nanos) {
        let steps: [(bool, u32, &[u8]); 4] = [
            (false, 1, b"220 mx.example ESMTP\r\n"),
            (true, 1, b"EHLO c.example\r\n"),
            (false, 23, b"250 mx.example\r\n"),
            (true, 17, b"MAIL FROM:<a@c.example>\r\n"),
        ];
        open(p, sink, port, t0);
        for (i, (client, seq, data)) in steps.iter().enumerate() {
            let s = seg(*client, port, *seq, TcpFlags::ACK, data);
            p.segment(t0 + i as Nanos, &s, sink).unwrap();
        }
    }

    #[test]
    fn plaintext_session_is_decided_at_the_first_transaction_command() {
        let mut p = Pipeline::new(Config::default());
        let mut sink = VecSink::default();
        plaintext_session(&mut p, &mut sink, 40000, SEC);
        // Recorded before the connection even closes, and the flow is a tombstone now.
        assert_eq!(sink.sessions.len(), 1);
        let r = &sink.sessions[0];
        assert_eq!(r.outcome, Outcome::NoTls);
        assert_eq!(r.smtp.starttls_offered, Some(false));
        assert_eq!(r.smtp.banner_host.as_deref(), Some("mx.example"));
        assert!(matches!(p.flows.values().next(), Some(Slot::Done { .. })));
        // Mail content after that is never parsed: a DATA body line starting like TLS or like
        // STARTTLS changes nothing.
        p.segment(
            2 * SEC,
            &seg(true, 40000, 42, TcpFlags::ACK, b"STARTTLS\r\n"),
            &mut sink,
        )
        .unwrap();
        p.finish(&mut sink).unwrap();
        assert_eq!(sink.sessions.len(), 1);
    }

    #[test]
    fn flow_table_bound_is_counted() {
        let cfg = Config {
            max_flows: 2,
            ..Config::default()
        };
        let mut p = Pipeline::new(cfg);
        let mut sink = VecSink::default();
        for port in 40000..40005 {
            p.segment(SEC, &seg(true, port, 0, TcpFlags::SYN, b""), &mut sink)
                .unwrap();
        }
        assert_eq!(p.flows_in_table(), 2);
        assert_eq!(p.stats.flows_dropped_table_full, 3);
    }

    #[test]
    fn idle_flows_expire_into_records() {
        let mut p = Pipeline::new(Config::default());
        let mut sink = VecSink::default();
        p.segment(SEC, &seg(true, 40000, 0, TcpFlags::SYN, b""), &mut sink)
            .unwrap();
        p.segment(
            SEC,
            &seg(false, 40000, 0, TcpFlags::SYN | TcpFlags::ACK, b""),
            &mut sink,
        )
        .unwrap();
        p.segment(
            SEC,
            &seg(false, 40000, 1, TcpFlags::ACK, b"220 mx\r\n"),
            &mut sink,
        )
        .unwrap();
        // One packet 10 minutes later is not believed on its own (a wild timestamp must not
        // expire every flow) ...
        p.segment(
            601 * SEC,
            &seg(true, 40001, 0, TcpFlags::SYN, b""),
            &mut sink,
        )
        .unwrap();
        assert_eq!(p.stats.flows_idle_expired, 0);
        // ... a second one confirms the clock and the sweep closes the idle flow.
        p.segment(
            602 * SEC,
            &seg(true, 40002, 0, TcpFlags::SYN, b""),
            &mut sink,
        )
        .unwrap();
        assert_eq!(p.stats.flows_idle_expired, 1);
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(sink.sessions[0].client_port, 40000);
        assert_eq!(sink.sessions[0].outcome, Outcome::NoTls);
    }

    #[test]
    fn per_flow_byte_cap_gives_up_and_counts() {
        let cfg = Config {
            max_flow_bytes: 1000,
            ..Config::default()
        };
        let mut p = Pipeline::new(cfg);
        let mut sink = VecSink::default();
        p.segment(SEC, &seg(true, 40000, 0, TcpFlags::SYN, b""), &mut sink)
            .unwrap();
        // A server that sends endless text without ever finishing a line.
        let junk = [b'x'; 600];
        for i in 0..5u32 {
            p.segment(
                SEC,
                &seg(false, 40000, 1 + i * 600, TcpFlags::ACK, &junk),
                &mut sink,
            )
            .unwrap();
        }
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(p.stats.flows_capped, 1);
    }

    #[test]
    fn port_reuse_after_close_starts_a_new_session() {
        let mut p = Pipeline::new(Config::default());
        let mut sink = VecSink::default();
        plaintext_session(&mut p, &mut sink, 40000, SEC);
        plaintext_session(&mut p, &mut sink, 40000, 5 * SEC);
        p.finish(&mut sink).unwrap();
        assert_eq!(sink.sessions.len(), 2);
        assert_eq!(p.stats.flows_port_reused, 1);
        assert_ne!(sink.sessions[0].session_id, sink.sessions[1].session_id);
    }

    #[test]
    fn midstream_flow_without_recognisable_start_is_incomplete() {
        let mut p = Pipeline::new(Config::default());
        let mut sink = VecSink::default();
        // Encrypted application data of a session whose handshake was not captured.
        let rec = [23u8, 3, 3, 0, 4, 1, 2, 3, 4];
        p.segment(
            SEC,
            &seg(false, 40000, 7777, TcpFlags::ACK, &rec),
            &mut sink,
        )
        .unwrap();
        p.finish(&mut sink).unwrap();
        assert_eq!(p.stats.flows_midstream, 1);
        assert_eq!(sink.sessions.len(), 1);
        assert!(sink.sessions[0].midstream);
        assert_eq!(sink.sessions[0].outcome, Outcome::Incomplete);
        assert_eq!(sink.sessions[0].server_port, 25);
    }

    #[test]
    fn live_pipeline_reports_done_then_closed_flows_on_wall_clock() {
        let cfg = Config {
            flow_events: true,
            idle_timeout: 10 * SEC,
            ..Config::default()
        };
        let mut p = Pipeline::new(cfg);
        let mut sink = VecSink::default();
        let mut ev = Vec::new();
        plaintext_session(&mut p, &mut sink, 40000, SEC);
        p.drain_flow_events(&mut ev);
        let tuple = FlowTuple::new(
            "198.18.0.2:40000".parse().unwrap(),
            "198.18.0.1:25".parse().unwrap(),
        );
        assert_eq!(ev, vec![FlowEvent::Done(tuple)]);
        assert_eq!(p.flows_by_state(), (0, 1));
        // An active flow that goes quiet, and no packet at all afterwards: only the wall clock
        // moves, and it alone expires both.
        p.segment(2 * SEC, &seg(true, 40001, 0, TcpFlags::SYN, b""), &mut sink)
            .unwrap();
        assert_eq!(p.flows_by_state(), (1, 1));
        ev.clear();
        p.tick(5 * SEC, &mut sink).unwrap();
        p.drain_flow_events(&mut ev);
        assert!(ev.is_empty(), "nothing idle yet: {ev:?}");
        p.tick(30 * SEC, &mut sink).unwrap();
        p.drain_flow_events(&mut ev);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(ev.contains(&FlowEvent::Closed(tuple)));
        assert_eq!(p.flows_by_state(), (0, 0));
        assert_eq!(p.stats.flows_idle_expired, 1);
        assert_eq!(sink.sessions.len(), 2);
    }

    const WAIT: Nanos = 2 * SEC;

    fn client_addr(port: u16) -> SocketAddr {
        SocketAddr::new("198.18.0.2".parse().unwrap(), port)
    }

    fn server_addr() -> SocketAddr {
        "198.18.0.1:25".parse().unwrap()
    }

    /// A chain the server sent (received by the client's process) or the client sent.
    fn chain<'a>(port: u16, from_server: bool, ders: &'a [Vec<u8>]) -> LibraryChain<'a> {
        let (c, s) = (client_addr(port), server_addr());
        let (sender, receiver) = if from_server { (s, c) } else { (c, s) };
        LibraryChain {
            receiver,
            sender,
            ders,
            truncated: false,
            partial: false,
        }
    }

    fn lib_pipeline(wait: Option<Nanos>) -> Pipeline {
        Pipeline::new(Config {
            library_wait: wait,
            ..Config::default()
        })
    }

    /// Start of a TLS 1.3 session (implicit TLS): SYN, SYN-ACK, ClientHello, and the server's
    /// flight (ServerHello, then encrypted). The flow is still being parsed after it.
    fn tls13_start(p: &mut Pipeline, sink: &mut VecSink, port: u16, t0: Nanos) -> u32 {
        use crate::tls::testmsg::*;
        let mut sf = record(22, &server_hello(0x0303, 0x1301, &SH_TLS13));
        sf.extend(record(20, &[1]));
        sf.extend(record(23, &[0x55; 60]));
        hellos(p, sink, port, t0, &[], &sf)
    }

    /// SYN, SYN-ACK, a ClientHello (SNI mx.example, session id `sid`) and the server's flight
    /// `sf`. Returns the client's next sequence number.
    fn hellos(
        p: &mut Pipeline,
        sink: &mut VecSink,
        port: u16,
        t0: Nanos,
        sid: &[u8],
        sf: &[u8],
    ) -> u32 {
        use crate::tls::testmsg::*;
        let ch = record(22, &client_hello(sid, &sni_ext("mx.example")));
        open(p, sink, port, t0);
        p.segment(t0, &seg(true, port, 1, TcpFlags::ACK, &ch), sink)
            .unwrap();
        p.segment(t0, &seg(false, port, 1, TcpFlags::ACK, sf), sink)
            .unwrap();
        1 + ch.len() as u32
    }

    /// A whole TLS 1.2 session: full (Certificate with `chain`, ServerHelloDone) when `chain`
    /// is non-empty, else abbreviated, the server echoing the client's session id.
    fn tls12_session(p: &mut Pipeline, sink: &mut VecSink, port: u16, t0: Nanos, chain: &[&[u8]]) {
        use crate::tls::testmsg::*;
        let sid = [0x5a; 32];
        let mut sf = if chain.is_empty() {
            record(22, &server_hello_sid(0x0303, 0xc02f, &sid, &[]))
        } else {
            let mut f = record(22, &server_hello_sid(0x0303, 0xc02f, &[1; 32], &[]));
            f.extend(record(22, &certificate_msg(chain)));
            f.extend(record(22, &handshake(14, &[])));
            f
        };
        sf.extend(record(20, &[1]));
        sf.extend(record(22, &[0xad; 40]));
        let seq = hellos(p, sink, port, t0, &sid, &sf);
        let mut cf = record(20, &[1]);
        cf.extend(record(22, &[0xde; 40]));
        p.segment(t0, &seg(true, port, seq, TcpFlags::ACK, &cf), sink)
            .unwrap();
    }

    /// A TLS 1.3 session resuming with a PSK (RFC 8446 §2.2).
    fn tls13_resumed(p: &mut Pipeline, sink: &mut VecSink, port: u16, t0: Nanos) {
        use crate::tls::testmsg::*;
        let mut sf = record(22, &server_hello(0x0303, 0x1301, &SH_TLS13_PSK));
        sf.extend(record(20, &[1]));
        sf.extend(record(23, &[0x55; 60]));
        let seq = hellos(p, sink, port, t0, &[], &sf);
        tls13_end(p, sink, port, seq, t0);
    }

    /// The client's encrypted flight: the handshake is over and the record is decided.
    fn tls13_end(p: &mut Pipeline, sink: &mut VecSink, port: u16, seq: u32, t: Nanos) {
        use crate::tls::testmsg::record;
        p.segment(
            t,
            &seg(true, port, seq, TcpFlags::ACK, &record(23, &[7; 40])),
            sink,
        )
        .unwrap();
    }

    fn tls13_session(p: &mut Pipeline, sink: &mut VecSink, port: u16, t0: Nanos) {
        let seq = tls13_start(p, sink, port, t0);
        tls13_end(p, sink, port, seq, t0);
    }

    fn ders() -> Vec<Vec<u8>> {
        vec![b"leaf certificate".to_vec(), b"intermediate".to_vec()]
    }

    /// An inbound client that sent no certificate: the library's empty report alone says the
    /// session was seen (our own server chain is never read in the library).
    #[test]
    fn an_empty_library_report_alone_marks_the_session_seen() {
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40000, SEC);
        p.attach_chain(&chain(40000, false, &[]), &mut sink)
            .unwrap();
        p.finish(&mut sink).unwrap();
        let t = &sink.sessions[0].tls;
        assert_eq!(t.chain_source, Some("uprobe"));
        assert!(t.server_chain.is_empty() && t.client_chain.is_empty());
        assert_eq!(t.client_cert_presented, Some(false));
    }

    /// Both ends probed: the server chain received by the client's OpenSSL (full) and the
    /// leaf the server's GnuTLS reports as sent; the full one stays, whatever the order.
    #[test]
    fn a_role_reported_twice_keeps_the_longer_chain() {
        let full = ders();
        for leaf_first in [true, false] {
            let mut p = lib_pipeline(Some(WAIT));
            let mut sink = VecSink::default();
            tls13_session(&mut p, &mut sink, 40000, SEC);
            let mut reports = [&full[..], &full[..1]];
            if leaf_first {
                reports.reverse();
            }
            for ders in reports {
                p.attach_chain(&chain(40000, true, ders), &mut sink)
                    .unwrap();
            }
            p.attach_chain(&chain(40000, false, &[]), &mut sink)
                .unwrap();
            let t = &sink.sessions[0].tls;
            assert_eq!(t.server_chain.len(), 2, "leaf first: {leaf_first}");
        }
    }

    /// Exim as client to a probed Postfix: Exim's GnuTLS reports the server chain it received
    /// and the leaf it sent (partial); the record waits for Postfix's full report of the client
    /// chain, and with no such report (the peer is another host) goes out with the leaf after
    /// the wait.
    #[test]
    fn a_partial_report_waits_for_a_full_one_and_is_used_without_it() {
        let (server, client) = (ders(), vec![b"leaf".to_vec(), b"intermediate".to_vec()]);
        let partial = |port| LibraryChain {
            partial: true,
            ..chain(port, false, &client[..1])
        };
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40000, SEC);
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        p.attach_chain(&partial(40000), &mut sink).unwrap();
        assert!(sink.sessions.is_empty(), "a partial role is not complete");
        p.attach_chain(&chain(40000, false, &client), &mut sink)
            .unwrap();
        assert_eq!(sink.sessions.len(), 1, "the full report completes it");
        assert_eq!(sink.sessions[0].tls.client_chain.len(), 2);
        // A later partial report never replaces a full one.
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40001, SEC);
        p.attach_chain(&chain(40001, false, &client), &mut sink)
            .unwrap();
        p.attach_chain(&partial(40001), &mut sink).unwrap();
        p.attach_chain(&chain(40001, true, &server), &mut sink)
            .unwrap();
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(sink.sessions[0].tls.client_chain.len(), 2);
        // Nobody else reports: the leaf goes out after the wait.
        tls13_session(&mut p, &mut sink, 40002, 2 * SEC);
        p.attach_chain(&chain(40002, true, &server), &mut sink)
            .unwrap();
        p.attach_chain(&partial(40002), &mut sink).unwrap();
        assert_eq!(sink.sessions.len(), 1);
        p.tick(5 * SEC, &mut sink).unwrap();
        assert_eq!(sink.sessions.len(), 2);
        let t = &sink.sessions[1].tls;
        assert_eq!(t.client_chain.len(), 1);
        assert_eq!(t.client_cert_presented, Some(true));
    }

    #[test]
    fn tls13_record_is_held_until_both_roles_have_library_chains() {
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40000, SEC);
        assert!(sink.sessions.is_empty());
        assert_eq!(p.held_records(), 1);
        let server = ders();
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        // One role is not enough; its certificates are out already, once each.
        assert!(sink.sessions.is_empty());
        assert_eq!(sink.certificates.len(), 2);
        p.attach_chain(&chain(40000, false, &[]), &mut sink)
            .unwrap();
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(p.held_records(), 0);
        let t = &sink.sessions[0].tls;
        assert_eq!(t.chain_source, Some("uprobe"));
        assert_eq!(
            t.server_chain,
            server
                .iter()
                .map(|d| Fingerprint::of(d))
                .collect::<Vec<_>>()
        );
        assert!(t.client_chain.is_empty());
        // The library saw the client send nothing; whether it was asked stays unknown.
        assert_eq!(t.client_cert_presented, Some(false));
        assert_eq!(t.cert_requested, None);
        assert_eq!(p.stats.library_chains, 2);
        assert_eq!(p.summary.outcomes.get("established"), Some(&1));
        p.finish(&mut sink).unwrap();
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(sink.certificates.len(), 2);
    }

    #[test]
    fn client_chain_from_the_library_means_a_certificate_was_requested() {
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        let seq = tls13_start(&mut p, &mut sink, 40000, SEC);
        // Chains that arrive while the flow is still parsed stay on the flow.
        let (server, client) = (ders(), vec![b"client cert".to_vec()]);
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        let mut cut = chain(40000, false, &client);
        cut.truncated = true;
        p.attach_chain(&cut, &mut sink).unwrap();
        assert!(sink.sessions.is_empty());
        tls13_end(&mut p, &mut sink, 40000, seq, SEC);
        // Both roles were there: nothing to wait for.
        assert_eq!(p.held_records(), 0);
        assert_eq!(sink.sessions.len(), 1);
        let t = &sink.sessions[0].tls;
        assert_eq!(t.client_chain, vec![Fingerprint::of(b"client cert")]);
        assert_eq!(t.client_cert_presented, Some(true));
        assert_eq!(t.cert_requested, Some(true));
        assert_eq!(t.chain_source, Some("uprobe"));
        assert_eq!(p.stats.library_chains_truncated, 1);
        assert_eq!(sink.certificates.len(), 3);
    }

    #[test]
    fn held_record_is_released_when_the_wait_passed() {
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40000, SEC);
        let server = ders();
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        p.tick(2 * SEC, &mut sink).unwrap();
        assert!(sink.sessions.is_empty());
        p.tick(3 * SEC, &mut sink).unwrap();
        assert_eq!(sink.sessions.len(), 1);
        let t = &sink.sessions[0].tls;
        assert_eq!(t.chain_source, Some("uprobe"));
        assert_eq!(t.server_chain.len(), 2);
        // Nothing was said about the client: unknown, as on the wire.
        assert_eq!(t.client_cert_presented, None);
        assert_eq!(t.cert_requested, None);
        // The client's chain comes too late now.
        p.attach_chain(&chain(40000, false, &[]), &mut sink)
            .unwrap();
        assert_eq!(p.stats.library_chains_late, 1);
        // A session without any library chain, released by a later packet: as without probes.
        tls13_session(&mut p, &mut sink, 40001, 4 * SEC);
        plaintext_session(&mut p, &mut sink, 40002, 7 * SEC);
        assert_eq!(sink.sessions.len(), 3);
        assert_eq!(sink.sessions[1].client_port, 40001);
        assert_eq!(sink.sessions[1].tls.chain_source, None);
        assert!(sink.sessions[1].tls.server_chain.is_empty());
    }

    #[test]
    fn chains_for_unknown_connections_are_counted() {
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        let server = ders();
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        assert_eq!(p.stats.library_chains_unmatched, 1);
        assert_eq!(p.stats.library_chains, 0);
        // Not registered: no record refers to them.
        assert!(sink.certificates.is_empty());
        // Without a wait (capture files) a TLS 1.3 record goes out at once; chains are late.
        let mut p = lib_pipeline(None);
        tls13_session(&mut p, &mut sink, 40000, SEC);
        assert_eq!(sink.sessions.len(), 1);
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        assert_eq!(p.stats.library_chains_late, 1);
    }

    #[test]
    fn port_reuse_releases_the_held_record_first() {
        let mut p = lib_pipeline(Some(60 * SEC));
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40000, SEC);
        let first = ders();
        p.attach_chain(&chain(40000, true, &first), &mut sink)
            .unwrap();
        tls13_session(&mut p, &mut sink, 40000, 2 * SEC);
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(sink.sessions[0].tls.server_chain.len(), 2);
        assert_eq!(p.stats.flows_port_reused, 1);
        // Chains from now on belong to the new connection.
        let second = vec![b"other leaf".to_vec()];
        p.attach_chain(&chain(40000, true, &second), &mut sink)
            .unwrap();
        p.attach_chain(&chain(40000, false, &[]), &mut sink)
            .unwrap();
        assert_eq!(sink.sessions.len(), 2);
        assert_eq!(
            sink.sessions[1].tls.server_chain,
            vec![Fingerprint::of(b"other leaf")]
        );
        assert_ne!(sink.sessions[0].session_id, sink.sessions[1].session_id);
    }

    #[test]
    fn finish_releases_held_records_in_order() {
        let mut p = lib_pipeline(Some(60 * SEC));
        let mut sink = VecSink::default();
        for (i, port) in [40003u16, 40001, 40002].into_iter().enumerate() {
            tls13_session(&mut p, &mut sink, port, (10 - i as Nanos) * SEC);
        }
        assert_eq!(p.held_records(), 3);
        p.finish(&mut sink).unwrap();
        let ports: Vec<u16> = sink.sessions.iter().map(|s| s.client_port).collect();
        assert_eq!(ports, vec![40002, 40001, 40003]);
        assert_eq!(p.held_records(), 0);
        assert_eq!(p.stats.sessions, 3);
    }

    #[test]
    fn held_records_are_bounded() {
        let mut p = Pipeline::new(Config {
            library_wait: Some(100 * SEC),
            max_flows: 1,
            idle_timeout: 4 * SEC,
            ..Config::default()
        });
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40000, SEC);
        p.segment(SEC, &seg(true, 40000, 999, TcpFlags::RST, b""), &mut sink)
            .unwrap();
        // The first record's tombstone goes; its held record fills the bound.
        p.tick(10 * SEC, &mut sink).unwrap();
        assert_eq!(p.flows_in_table(), 0);
        tls13_session(&mut p, &mut sink, 40001, 11 * SEC);
        assert_eq!(p.held_records(), 1);
        assert_eq!(p.stats.held_records_overflow, 1);
        assert_eq!(sink.sessions.len(), 1);
        assert_eq!(sink.sessions[0].client_port, 40001);
    }

    #[test]
    fn resumed_tls12_session_carries_the_full_handshakes_chain() {
        let mut p = lib_pipeline(None);
        let mut sink = VecSink::default();
        // Resumed before any full handshake was seen: marked, but no chain to carry.
        tls12_session(&mut p, &mut sink, 40000, SEC, &[]);
        tls12_session(&mut p, &mut sink, 40001, 2 * SEC, &[b"leaf", b"ca"]);
        tls12_session(&mut p, &mut sink, 40002, 3 * SEC, &[]);
        // A TLS 1.3 PSK never resumes a TLS 1.2 session (RFC 8446 §2.2).
        tls13_resumed(&mut p, &mut sink, 40003, 4 * SEC);
        p.finish(&mut sink).unwrap();
        let [early, full, resumed, other] = &sink.sessions[..] else {
            panic!("{:?}", sink.sessions);
        };
        assert!(early.tls.resumed);
        assert_eq!(early.tls.chain_source, None);
        assert!(!full.tls.resumed);
        assert_eq!(full.tls.chain_source, Some("wire"));
        assert!(resumed.tls.resumed);
        assert_eq!(resumed.outcome, Outcome::Established);
        assert_eq!(resumed.tls.chain_source, Some("resumed"));
        assert_eq!(resumed.tls.resumed_from.as_ref(), Some(&full.session_id));
        assert_eq!(resumed.tls.server_chain, full.tls.server_chain);
        assert!(other.tls.resumed);
        assert_eq!(other.tls.chain_source, None);
        assert_eq!(p.stats.resumed_carried, 1);
        assert_eq!(p.stats.resumed_without_original, 2);
    }

    #[test]
    fn resumed_tls13_session_waits_for_the_library_then_carries_the_original() {
        let mut p = lib_pipeline(Some(WAIT));
        let mut sink = VecSink::default();
        let (server, client) = (ders(), vec![b"client cert".to_vec()]);
        tls13_session(&mut p, &mut sink, 40000, SEC);
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        p.attach_chain(&chain(40000, false, &client), &mut sink)
            .unwrap();
        // The library finished the resumed handshake and saw no certificate on either side
        // (none is sent by design): both roles reported, released at once.
        tls13_resumed(&mut p, &mut sink, 40001, 2 * SEC);
        assert_eq!(p.held_records(), 1);
        p.attach_chain(&chain(40001, true, &[]), &mut sink).unwrap();
        p.attach_chain(&chain(40001, false, &[]), &mut sink)
            .unwrap();
        assert_eq!(p.held_records(), 0);
        // Nothing from the library (OpenSSL hands out nothing for a resumed handshake, as
        // Postfix shows in tests/tests/capture_postfix.rs): after the wait, the original's
        // chains all the same.
        tls13_resumed(&mut p, &mut sink, 40002, 3 * SEC);
        p.tick(6 * SEC, &mut sink).unwrap();
        // A library that does report the resumed session's chain: that is what counts.
        tls13_resumed(&mut p, &mut sink, 40003, 7 * SEC);
        p.attach_chain(&chain(40003, true, &server), &mut sink)
            .unwrap();
        p.finish(&mut sink).unwrap();
        let [full, a, b, c] = &sink.sessions[..] else {
            panic!("{:?}", sink.sessions);
        };
        assert_eq!(full.tls.chain_source, Some("uprobe"));
        assert_eq!(full.tls.client_cert_presented, Some(true));
        for r in [a, b] {
            assert!(r.tls.resumed);
            assert_eq!(r.tls.chain_source, Some("resumed"));
            assert_eq!(r.tls.resumed_from.as_ref(), Some(&full.session_id));
            assert_eq!(r.tls.server_chain, full.tls.server_chain);
            assert_eq!(r.tls.client_chain, full.tls.client_chain);
            // Nothing was sent in this handshake, so nothing was declined either: an empty
            // report is no "false" next to the original's client chain.
            assert_eq!(r.tls.client_cert_presented, None, "{:?}", r.tls);
            assert_eq!(r.tls.cert_requested, None);
        }
        assert!(c.tls.resumed);
        assert_eq!(c.tls.chain_source, Some("uprobe"));
        assert_eq!(c.tls.resumed_from.as_ref(), Some(&full.session_id));
        assert_eq!(c.tls.server_chain, full.tls.server_chain);
        // The role the library did not report comes from the original (GnuTLS keeps only
        // the peer's chain with a session: seen with Exim, tests/tests/capture_exim.rs).
        assert_eq!(c.tls.client_chain, full.tls.client_chain);
    }

    #[test]
    fn tls13_is_uninspectable_only_where_no_path_saw_a_chain() {
        use crate::classify::{ClassifyConfig, Verdict};
        let classifier = Classifier::new(ClassifyConfig {
            all_findings: true,
            ..ClassifyConfig::default()
        });
        let cfg = Config {
            library_wait: Some(WAIT),
            ..Config::default()
        };
        let mut p = Pipeline::with_classifier(cfg, Some(classifier));
        let mut sink = VecSink::default();
        tls13_session(&mut p, &mut sink, 40000, SEC);
        let server = ders();
        p.attach_chain(&chain(40000, true, &server), &mut sink)
            .unwrap();
        p.attach_chain(&chain(40000, false, &[]), &mut sink)
            .unwrap();
        tls13_resumed(&mut p, &mut sink, 40001, 2 * SEC);
        // A full handshake no path saw a chain for: released without one after the wait.
        tls13_session(&mut p, &mut sink, 40002, 3 * SEC);
        p.finish(&mut sink).unwrap();
        let rule = |port: u16| {
            let s = sink
                .sessions
                .iter()
                .find(|s| s.client_port == port)
                .unwrap();
            let f = sink
                .findings
                .iter()
                .find(|f| f.session_id == s.session_id && f.rule == "tls.v13_uninspectable")
                .unwrap();
            (f.verdict, f.detail.clone())
        };
        let (v, d) = rule(40000);
        assert_eq!(v, Verdict::Pass);
        assert!(d.contains("TLS library"), "{d}");
        let (v, d) = rule(40001);
        assert_eq!(v, Verdict::Pass);
        assert!(d.contains("resumed session"), "{d}");
        let (v, d) = rule(40002);
        assert_eq!(v, Verdict::Warn);
        assert!(d.contains("not assessed"), "{d}");
        // Chains from the library are assessed like wire chains.
        assert!(sink
            .findings
            .iter()
            .any(|f| f.rule.starts_with("chain.") && f.role == "server"));
    }

    #[test]
    fn capture_files_queue_no_flow_events() {
        let mut p = Pipeline::new(Config::default());
        let mut sink = VecSink::default();
        plaintext_session(&mut p, &mut sink, 40000, SEC);
        let mut ev = Vec::new();
        p.drain_flow_events(&mut ev);
        assert!(ev.is_empty());
    }
}
