//! Prometheus text exposition (format 0.0.4) on a small blocking HTTP responder: one thread,
//! one connection at a time, GET /metrics only. Scrapes are rare (every 15–60 s) and the body is
//! rendered by the capture loop into a shared string, so the responder never touches the
//! pipeline and needs no async runtime.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::capture::SourceCounters;
use crate::session::{Pipeline, Stats};

/// The latest rendered exposition, shared between the capture loop and the responder.
#[derive(Clone, Default)]
pub struct Exposition(Arc<Mutex<String>>);

impl Exposition {
    pub fn set(&self, body: String) {
        if let Ok(mut g) = self.0.lock() {
            *g = body;
        }
    }
    pub fn get(&self) -> String {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Largest request head read; anything longer is answered 431 and closed.
const MAX_REQUEST: usize = 8 * 1024;

/// Binds `addr` and serves `/metrics` from `expo` on a background thread.
pub fn serve(addr: SocketAddr, expo: Exposition) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("mxcert-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => {
                        if let Err(e) = respond(s, &expo) {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "metrics listener accept failed"),
                }
            }
        })?;
    Ok(local)
}

fn respond(mut s: TcpStream, expo: &Exposition) -> std::io::Result<()> {
    // A slow or silent client must not block the next scrape for long.
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; MAX_REQUEST];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && !buf[..n].ends_with(b"\n\n") {
        if n == buf.len() {
            return reply(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
        let r = s.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = if method == "GET" {
                expo.get()
            } else {
                String::new()
            };
            reply(
                &mut s,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
        }
        ("GET" | "HEAD", "/") => reply(
            &mut s,
            "200 OK",
            "text/plain",
            "mxcert: metrics at /metrics\n",
        ),
        ("GET" | "HEAD", _) => reply(&mut s, "404 Not Found", "text/plain", "not found\n"),
        _ => reply(&mut s, "405 Method Not Allowed", "text/plain", ""),
    }
}

fn reply(s: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

/// Everything one exposition is made of.
pub struct Snapshot<'a> {
    pub backend: &'a str,
    pub source: SourceCounters,
    pub pipeline: &'a Pipeline,
    /// Findings by rule, including those of classifiers replaced by policy reloads.
    pub findings_by_rule: &'a BTreeMap<&'static str, u64>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub records_written: u64,
    /// The sink's own counters (ClickHouse batches, spool).
    pub sink: &'a [crate::sink::SinkCounter],
    pub start_time: i64,
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP mxcert_{name} {help}\n# TYPE mxcert_{name} {kind}"
        );
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        let _ = write!(self.0, "mxcert_{name}");
        if !labels.is_empty() {
            let l = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect::<Vec<_>>()
                .join(",");
            let _ = write!(self.0, "{{{l}}}");
        }
        let _ = writeln!(self.0, " {v}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, labels: &[(&str, &str)], v: u64) {
        self.family(name, kind, help);
        self.sample(name, labels, v);
    }
}

/// Label values escape backslash, quote and newline (exposition format spec).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the exposition text.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut o = Out(String::with_capacity(8 * 1024));
    let b = [("backend", s.backend)];
    let src = s.source;
    o.one("up", "gauge", "1 while the capture loop runs.", &b, 1);
    o.one(
        "start_time_seconds",
        "gauge",
        "Unix time the daemon started.",
        &[],
        u64::try_from(s.start_time).unwrap_or(0),
    );
    o.one(
        "source_packets_total",
        "counter",
        "Frames the capture source handed to the pipeline.",
        &b,
        src.packets,
    );
    o.one(
        "source_bytes_total",
        "counter",
        "Bytes of those frames: what crossed from the kernel into user space.",
        &b,
        src.bytes,
    );
    o.family(
        "source_dropped_total",
        "counter",
        "Frames lost before the pipeline: kernel (eBPF ring buffer full, libpcap ps_drop) or interface (ps_ifdrop).",
    );
    o.sample(
        "source_dropped_total",
        &[("backend", s.backend), ("where", "kernel")],
        src.dropped,
    );
    o.sample(
        "source_dropped_total",
        &[("backend", s.backend), ("where", "interface")],
        src.if_dropped,
    );
    o.one(
        "source_cut_off_total",
        "counter",
        "Packets of done flows not copied to user space (eBPF in-kernel cutoff).",
        &b,
        src.cut_off,
    );
    let p = s.pipeline;
    let st: &Stats = &p.stats;
    o.one(
        "packets_total",
        "counter",
        "Packets seen by the pipeline.",
        &[],
        st.packets,
    );
    o.one(
        "bytes_total",
        "counter",
        "Bytes (original length) of those packets.",
        &[],
        st.bytes,
    );
    let (active, done) = p.flows_by_state();
    o.family(
        "flows",
        "gauge",
        "Flows in the table: active (being parsed) or done (tombstone until FIN/RST or idle).",
    );
    o.sample("flows", &[("state", "active")], active as u64);
    o.sample("flows", &[("state", "done")], done as u64);
    o.one("flows_total", "counter", "Flows started.", &[], st.flows);
    o.family("sessions_total", "counter", "Session records by outcome.");
    for (k, v) in &p.summary.outcomes {
        o.sample("sessions_total", &[("outcome", k)], *v);
    }
    o.family(
        "sessions_tls_version_total",
        "counter",
        "Session records by TLS version.",
    );
    for (k, v) in &p.summary.versions {
        o.sample("sessions_tls_version_total", &[("version", k)], *v);
    }
    o.one(
        "certificates_total",
        "counter",
        "Distinct certificate records written.",
        &[],
        st.certificates,
    );
    o.family("findings_total", "counter", "Findings written, by rule.");
    for (k, v) in s.findings_by_rule {
        o.sample("findings_total", &[("rule", k)], *v);
    }
    o.family(
        "bound_hits_total",
        "counter",
        "Times a bound was hit (each costs inspection, never memory).",
    );
    for (k, v) in [
        ("flow_table_full", st.flows_dropped_table_full),
        ("flow_bytes", st.flows_capped),
        ("idle_expired", st.flows_idle_expired),
        ("out_of_order", st.ooo_overflows),
        ("smtp_line", st.smtp_long_lines),
        ("known_certs", st.known_certs_resets),
        ("flow_events", st.flow_events_dropped),
        ("held_records", st.held_records_overflow),
        ("resumption_cache", st.resumption_cache_resets),
    ] {
        o.sample("bound_hits_total", &[("bound", k)], v);
    }
    o.family(
        "library_chains_total",
        "counter",
        "Chains from the TLS library offered to the session records, by result: joined, \
         no_session (no TCP connection on the wire with that 4-tuple), late (its record was \
         written already; raise library_wait).",
    );
    for (k, v) in [
        ("joined", st.library_chains),
        ("no_session", st.library_chains_unmatched),
        ("late", st.library_chains_late),
    ] {
        o.sample("library_chains_total", &[("result", k)], v);
    }
    o.family(
        "resumed_sessions_total",
        "counter",
        "Resumed TLS sessions, by whether the full handshake they resumed was seen (its chains \
         carried) or not.",
    );
    o.sample(
        "resumed_sessions_total",
        &[("original", "seen")],
        st.resumed_carried,
    );
    o.sample(
        "resumed_sessions_total",
        &[("original", "not_seen")],
        st.resumed_without_original,
    );
    o.one(
        "held_records",
        "gauge",
        "TLS 1.3 session records waiting (at most library_wait) for chains from the TLS library.",
        &[],
        p.held_records() as u64,
    );
    o.family(
        "parse_events_total",
        "counter",
        "Bad or skipped traffic, by kind (data, not errors).",
    );
    for (k, v) in [
        ("malformed", st.malformed),
        ("not_tcp", st.not_tcp),
        ("ip_fragment", st.ip_fragments),
        ("other_port", st.other_ports),
        ("truncated_segment", st.truncated_segments),
        ("gap", st.gaps),
        ("conflicting_overlap", st.conflicting_overlaps),
        ("tls_invalid_direction", st.tls_invalid_directions),
        ("tls_undecodable_message", st.tls_undecodable_messages),
        ("midstream_flow", st.flows_midstream),
    ] {
        o.sample("parse_events_total", &[("kind", k)], v);
    }
    o.family(
        "policy_reloads_total",
        "counter",
        "SIGHUP policy reloads, by result.",
    );
    o.sample("policy_reloads_total", &[("result", "ok")], s.reloads_ok);
    o.sample(
        "policy_reloads_total",
        &[("result", "failed")],
        s.reloads_failed,
    );
    o.one(
        "records_written_total",
        "counter",
        "Records handed to the outputs.",
        &[],
        s.records_written,
    );
    for c in s.sink {
        let name = format!("sink_{}", c.name);
        let kind = if c.gauge { "gauge" } else { "counter" };
        o.one(&name, kind, c.help, &[], c.value);
    }
    o.0
}

/// Appends the TLS-library probes' families (`mxcert_tls_library_*`) to `text`; with the
/// probes off only `mxcert_tls_library_up 0`, so a dashboard can tell "off" from "no traffic".
pub fn render_tls_library(text: &mut String, lib: Option<&super::library::Library>) {
    let mut o = Out(std::mem::take(text));
    o.one(
        "tls_library_up",
        "gauge",
        "1 when the TLS-library probes (TLS 1.3 certificates read from the MTA's library) run.",
        &[],
        u64::from(lib.is_some()),
    );
    if let Some(lib) = lib {
        let c = lib.counters();
        let j = lib.joined;
        o.one(
            "tls_library_attached_files",
            "gauge",
            "TLS library files (libssl, libcrypto) the probes are attached to.",
            &[],
            lib.attached_files() as u64,
        );
        o.one(
            "tls_library_certificates_total",
            "counter",
            "Certificates of allow-listed processes copied by the kernel side.",
            &[],
            c.certs,
        );
        o.one(
            "tls_library_certificate_bytes_total",
            "counter",
            "DER bytes of those certificates.",
            &[],
            c.cert_bytes,
        );
        o.one(
            "tls_library_chains_total",
            "counter",
            "Peer chains assembled and handed out.",
            &[],
            c.chains,
        );
        o.one(
            "tls_library_chains_attached_total",
            "counter",
            "Chains handed to the pipeline to join their session record.",
            &[],
            j.attached,
        );
        o.family(
            "tls_library_handshakes_total",
            "counter",
            "Handshakes whose end the application signalled, by what the peer sent.",
        );
        let with_chain = c
            .handshakes_ended
            .saturating_sub(c.no_peer_certificate + c.resumed);
        o.sample(
            "tls_library_handshakes_total",
            &[("peer", "chain")],
            with_chain,
        );
        o.sample(
            "tls_library_handshakes_total",
            &[("peer", "no_certificate")],
            c.no_peer_certificate,
        );
        o.sample(
            "tls_library_handshakes_total",
            &[("peer", "resumed")],
            c.resumed,
        );
        o.family(
            "tls_library_processes_total",
            "counter",
            "Allow-listed processes started and ended while running.",
        );
        o.sample("tls_library_processes_total", &[("event", "exec")], c.execs);
        o.sample("tls_library_processes_total", &[("event", "exit")], c.exits);
        o.family(
            "tls_library_filtered_total",
            "counter",
            "Certificate loads not copied, by why (not a peer chain).",
        );
        for (k, v) in [
            ("other_process", c.filtered),
            ("outside_ssl_call", c.outside_ssl),
            ("not_parsed_by_libssl", c.not_peer),
            ("no_ssl", c.no_ssl),
        ] {
            o.sample("tls_library_filtered_total", &[("reason", k)], v);
        }
        o.family(
            "tls_library_lost_total",
            "counter",
            "Certificates or chains lost or cut, by cause (a bound hit or a failed read).",
        );
        for (k, v) in [
            ("ring_full", c.ring_full),
            ("read_error", c.read_errors),
            ("truncated", c.truncated),
            ("chain_overflow", c.chain_overflow),
            ("table_full", c.table_full),
            ("bad_record", c.bad_records),
            ("no_socket", c.unmapped),
            ("unjoinable", j.unjoinable),
            ("poll_error", j.poll_errors),
        ] {
            o.sample("tls_library_lost_total", &[("cause", k)], v);
        }
    }
    *text = o.0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Config;

    #[test]
    fn exposition_has_help_type_and_labelled_samples() {
        let p = Pipeline::new(Config::default());
        let mut rules = BTreeMap::new();
        rules.insert("eku.client_auth_missing", 3);
        let text = render(&Snapshot {
            backend: "pcap",
            source: SourceCounters {
                packets: 7,
                dropped: 2,
                ..Default::default()
            },
            pipeline: &p,
            findings_by_rule: &rules,
            reloads_ok: 1,
            reloads_failed: 0,
            records_written: 0,
            sink: &[crate::sink::SinkCounter {
                name: "batches_sent_total",
                help: "Batches sent.",
                gauge: false,
                value: 4,
            }],
            start_time: 1_700_000_000,
        });
        assert!(text.contains("# TYPE mxcert_source_packets_total counter\nmxcert_source_packets_total{backend=\"pcap\"} 7\n"));
        assert!(text.contains("mxcert_source_dropped_total{backend=\"pcap\",where=\"kernel\"} 2\n"));
        assert!(text.contains("mxcert_findings_total{rule=\"eku.client_auth_missing\"} 3\n"));
        assert!(text.contains("mxcert_flows{state=\"active\"} 0\n"));
        assert!(text.contains(
            "# TYPE mxcert_sink_batches_sent_total counter\nmxcert_sink_batches_sent_total 4\n"
        ));
        // Every sample line belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{l}");
        }
    }

    #[test]
    fn tls_library_off_is_told_apart_from_no_traffic() {
        let mut text = "mxcert_up{backend=\"pcap\"} 1\n".to_string();
        render_tls_library(&mut text, None);
        assert!(
            text.starts_with("mxcert_up{backend=\"pcap\"} 1\n"),
            "{text}"
        );
        assert!(
            text.ends_with("# TYPE mxcert_tls_library_up gauge\nmxcert_tls_library_up 0\n"),
            "{text}"
        );
    }

    #[test]
    fn responder_serves_metrics_and_404() {
        let expo = Exposition::default();
        expo.set("mxcert_up 1\n".into());
        // A port of the range these tests own (19300-19399 on loopback).
        let addr = serve("127.0.0.1:19398".parse().unwrap(), expo).expect("bind loopback");
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nmxcert_up 1\n"), "{ok}");
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
    }
}
