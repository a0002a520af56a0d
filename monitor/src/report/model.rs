//! The report model: four sections, a trend, a break-date timeline and the caveats, built from a
//! [`Dataset`]. Every output format renders this one structure, so the formats cannot disagree.
//!
//! Definitions (also in `mxcert report --help` and the README):
//! - **Directions.** Inbound sections take `inbound` sessions, outbound sections `outbound`
//!   ones; sessions of `unknown` direction (no `--local-net` at read time) are counted in both,
//!   as the policy does, and each section says how many of its sessions they are.
//! - **Peer.** The remote side: the client address inbound, the server address outbound; for
//!   coverage of `unknown` sessions, the address pair.
//! - **Share.** A section's sessions over all sessions of its directions.
//! - **AT** (`--at`, default: the last session's start). Chains are not re-validated (the records
//!   carry no DER): trust, names, EKU and TLS behaviour do not depend on time and are taken from
//!   the findings as recorded. What does depend on time is re-evaluated at AT: validity
//!   (expired / not yet valid, from the certificate records' notBefore/notAfter, every
//!   certificate sent except self-issued roots, as classification does) and the clientAuth
//!   sunset (a finding `eku.client_auth_sunset` counts as lost when its `effective` <= AT; with
//!   `--policy` the date is recomputed as min(notAfter, the issuer's cutoff)).

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::input::{CertIn, Dataset, FindingIn, SessionIn, Sym, Window};
use crate::classify::policy::Policy;
use crate::timefmt::rfc3339_ms;

/// Version of the JSON layout; bumped when a key changes meaning or disappears.
pub const REPORT_VERSION: u32 = 1;

/// Rules a validating sender checks, in the order its TLS stack meets them (STARTTLS, then the
/// handshake's version, then path building, validity, purpose, and the host name last, as in
/// RFC 6125 §6 after RFC 5280 §6 path validation). A session's first failing rule in this order
/// is its RFC 8460 result type.
pub const STRICT_RULES: &[&str] = &[
    "tls.not_offered",
    "tls.refused",
    "tls.legacy_version",
    "chain.self_signed",
    "chain.untrusted",
    "chain.incomplete",
    "tls.no_certificate",
    "validity.expired",
    "validity.not_yet_valid",
    "eku.server_auth_missing",
    "name.mismatch",
    "name.wildcard_depth",
];

/// RFC 8460 §4.3 result types for the rules of [`STRICT_RULES`].
pub fn result_type(rule: &str) -> &'static str {
    match rule {
        "tls.not_offered" | "tls.refused" => "starttls-not-supported",
        "validity.expired" => "certificate-expired",
        "name.mismatch" | "name.wildcard_depth" => "certificate-host-mismatch",
        "chain.untrusted" | "chain.self_signed" | "chain.incomplete" => "certificate-not-trusted",
        // Not-yet-valid, a server certificate without serverAuth, no certificate at all
        // (anonymous cipher suites) and TLS 1.0/1.1 (deprecated by RFC 8996) have no type of
        // their own: "validation-failure" is the general one.
        _ => "validation-failure",
    }
}

/// Result types in the order the report lists them.
pub const RESULT_TYPES: &[&str] = &[
    "starttls-not-supported",
    "certificate-not-trusted",
    "certificate-expired",
    "certificate-host-mismatch",
    "validation-failure",
];

/// Settings of one report.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Assessment date (Unix seconds); default: the last session's start.
    pub at: Option<i64>,
    /// `--policy`: recompute clientAuth sunset dates from its cutoffs. None: the dates recorded
    /// in the findings stand.
    pub policy: Option<Policy>,
    pub window: Window,
    /// Rows shown in the text and HTML tables per section (JSON has them all).
    pub top: usize,
}

/// Sessions and distinct peers of a subset, with its share of the section's base.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Count {
    pub sessions: u64,
    pub peers: u64,
    pub share: f64,
}

/// Accumulates sessions and distinct peers.
#[derive(Debug, Default)]
struct Tally {
    sessions: u64,
    peers: HashSet<String>,
}

impl Tally {
    fn add(&mut self, peer: &str) {
        self.sessions += 1;
        if !self.peers.contains(peer) {
            self.peers.insert(peer.to_string());
        }
    }
    fn count(&self, base: u64) -> Count {
        Count {
            sessions: self.sessions,
            peers: self.peers.len() as u64,
            share: share(self.sessions, base),
        }
    }
}

/// A ratio rounded to 4 decimals, so the JSON is stable across platforms.
pub fn share(n: u64, base: u64) -> f64 {
    if base == 0 {
        0.0
    } else {
        (n as f64 / base as f64 * 10_000.0).round() / 10_000.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowOut {
    pub since: Option<String>,
    pub until: Option<String>,
    pub first_session: Option<String>,
    pub last_session: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageRow {
    pub category: &'static str,
    pub sessions: u64,
    pub peers: u64,
    pub share: f64,
}

/// How much of the traffic the other sections see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub sessions: u64,
    pub peers: u64,
    /// TLS handshake seen up to the server's certificate (or completed): assessed.
    pub inspected: u64,
    /// TLS 1.3 whose chains were read in the MTA's TLS library (`mxcert capture
    /// --tls-library`) or carried over from the full handshake a resumed session named.
    pub tls13_library: u64,
    /// TLS 1.3: certificates encrypted on the wire, and not seen through the library.
    pub tls13_uninspectable: u64,
    /// TLS never started.
    pub no_tls: u64,
    /// TLS started but ended (reset, closed, alert, capture cut) before the server's
    /// certificate.
    pub incomplete: u64,
    pub by_direction: BTreeMap<String, u64>,
    pub rows: Vec<CoverageRow>,
}

/// One client certificate as a section shows it, with its state at AT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertView {
    pub cert_sha256: Option<String>,
    pub certificate: Option<String>,
    pub issuer: Option<String>,
    pub eku: Option<String>,
    pub not_after: Option<String>,
    /// When the certificate loses clientAuth (public CA sunset), if it does.
    pub loses_client_auth_on: Option<String>,
    /// `no_client_auth`, `expired`, `client_auth_lost`, `loses_client_auth`, `ok`,
    /// `none_sent`, `unknown_certificate`.
    pub status: &'static str,
}

impl CertView {
    /// Breaks at AT under clientAuth enforcement.
    pub fn at_risk(&self) -> bool {
        matches!(
            self.status,
            "no_client_auth" | "expired" | "client_auth_lost"
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundRow {
    pub sender_ip: String,
    pub sender_name: Option<String>,
    #[serde(flatten)]
    pub cert: CertView,
    pub sessions: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Section 1: senders presenting client certificates to us.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundSection {
    /// Inbound sessions in which the sender presented a client certificate.
    pub sessions: u64,
    pub peers: u64,
    pub share: f64,
    /// Inbound (and unknown-direction) sessions: the base of every share here.
    pub base_sessions: u64,
    pub unknown_direction: u64,
    /// We asked for a certificate (CertificateRequest seen).
    pub requested: u64,
    /// We asked and none came.
    pub declined: u64,
    /// TLS 1.3: whether a certificate was asked for or sent is encrypted.
    pub not_visible: u64,
    /// Rejected now by a receiver enforcing clientAuth.
    pub without_client_auth: Count,
    /// clientAuth from a public CA, with a date from which it is lost (any date).
    pub losing_client_auth: Count,
    /// Of those, lost by AT.
    pub client_auth_lost_by_at: Count,
    /// Certificate expired at AT.
    pub expired_at: Count,
    /// Rejected at AT by a receiver enforcing clientAuth: any of the three above.
    pub at_risk: Count,
    pub rows: Vec<InboundRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OurCertificate {
    #[serde(flatten)]
    pub cert: CertView,
    pub sessions: u64,
    pub destinations: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OurCertRow {
    pub destination_ip: String,
    pub destination_name: String,
    pub presented: bool,
    /// Affected when our certificate is renewed without clientAuth.
    pub affected_after_renewal: bool,
    #[serde(flatten)]
    pub cert: CertView,
    pub sessions: u64,
    pub last_seen: String,
}

/// Section 2: destinations that ask us for a client certificate, and what we present.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OurCertSection {
    /// Outbound sessions in which the destination requested a client certificate.
    pub sessions: u64,
    /// Destinations (server addresses).
    pub peers: u64,
    pub share: f64,
    pub base_sessions: u64,
    pub unknown_direction: u64,
    pub not_visible: u64,
    pub presented: Count,
    pub not_presented: Count,
    pub without_client_auth: Count,
    /// We present a clientAuth certificate from a public CA: the renewal after the cutoff
    /// drops clientAuth, and these destinations see a certificate without it.
    pub affected_after_renewal: Count,
    pub at_risk: Count,
    pub our_certificates: Vec<OurCertificate>,
    pub rows: Vec<OurCertRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultTypeRow {
    pub result_type: &'static str,
    /// Sessions whose first failure (in [`STRICT_RULES`] order) has this type.
    pub sessions: u64,
    pub peers: u64,
    pub share: f64,
    /// Sessions per failing rule (any failure, so a session may count under several rules).
    pub rules: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OffenderRow {
    pub destination_ip: String,
    pub destination_name: String,
    pub result_type: &'static str,
    pub rule: String,
    /// The exact reason (which name, which SANs, which date).
    pub detail: String,
    pub sessions: u64,
    pub last_seen: String,
    /// From when it fails (RFC 3339), when the failure has a date.
    pub effective: Option<String>,
}

/// Section 3: outbound sessions under strict validation / MTA-STS enforce.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrictSection {
    /// Outbound (and unknown-direction) sessions.
    pub sessions: u64,
    pub peers: u64,
    /// Of all sessions.
    pub share: f64,
    pub base_sessions: u64,
    pub unknown_direction: u64,
    /// Would fail at AT.
    pub at_risk: Count,
    /// No failure seen, but not assessable: TLS 1.3, incomplete handshake, no TLS without a
    /// server-side reason, or no expected name to check.
    pub not_assessable: Count,
    /// Assessed and passing.
    pub would_pass: Count,
    pub by_result_type: Vec<ResultTypeRow>,
    pub rows: Vec<OffenderRow>,
    /// Per destination and sending address: the RFC 8460 view (one result per session, its
    /// first failure), from which `--format tlsrpt` is written.
    pub destinations: Vec<DestinationRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationRow {
    pub destination_name: String,
    pub destination_ip: String,
    /// The destination's greeting host name (RFC 8460 `receiving-mx-helo`).
    pub destination_helo: Option<String>,
    pub sending_ip: String,
    pub sessions: u64,
    pub would_pass: u64,
    pub not_assessable: u64,
    pub failures: Vec<DestinationFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationFailure {
    pub result_type: &'static str,
    pub rule: String,
    pub detail: String,
    pub sessions: u64,
}

/// Failing sessions per rule over time (as recorded), for the trend chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub bucket_seconds: i64,
    pub buckets: Vec<String>,
    pub series: Vec<TrendSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendSeries {
    pub rule: String,
    pub counts: Vec<u64>,
}

/// A date from which something breaks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub date: String,
    /// `certificate_expires` or `client_auth_lost`.
    pub event: &'static str,
    pub section: &'static str,
    pub cert_sha256: String,
    pub certificate: String,
    pub sessions: u64,
    pub peers: u64,
    /// On or before AT.
    pub past: bool,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub inputs: Vec<String>,
    pub at: String,
    /// `--at` or `last session`.
    pub at_from: &'static str,
    pub policy: String,
    pub window: WindowOut,
    pub coverage: Coverage,
    pub inbound_client_certs: InboundSection,
    pub outbound_our_certificate: OurCertSection,
    pub outbound_strict_validation: StrictSection,
    pub timeline: Vec<TimelineEvent>,
    pub trend: Trend,
    pub caveats: Vec<String>,
    #[serde(skip)]
    pub at_s: i64,
    #[serde(skip)]
    pub top: usize,
}

fn ts(s: i64) -> String {
    rfc3339_ms(s * 1_000_000_000)
}

fn is_in(s: &SessionIn) -> bool {
    s.direction == "inbound" || s.direction == "unknown"
}

fn is_out(s: &SessionIn) -> bool {
    s.direction == "outbound" || s.direction == "unknown"
}

/// Coverage category of a session (a partition: every session is in exactly one).
pub fn coverage_class(s: &SessionIn) -> &'static str {
    if s.outcome == "no_tls" {
        "no_tls"
    } else if s.tls.version.as_deref() == Some("TLS1.3") {
        match s.tls.chain_source.as_deref() {
            Some("uprobe" | "resumed") => "tls13_library",
            // Older records carry no chain_source: a wire chain is one with certificates.
            Some("wire") => "inspected",
            _ if !s.tls.server_chain.is_empty() => "inspected",
            _ => "tls13_uninspectable",
        }
    } else if !s.tls.server_chain.is_empty() || s.outcome == "established" {
        "inspected"
    } else {
        "incomplete"
    }
}

struct Ctx<'a> {
    ds: &'a Dataset,
    at: i64,
    policy: Option<&'a Policy>,
}

impl Ctx<'_> {
    fn finding(&self, s: &SessionIn, rule: &str, role: &str) -> Option<&FindingIn> {
        self.ds
            .findings_of(&s.session_id)
            .iter()
            .find(|f| f.rule == rule && f.role == role)
    }

    /// The state at AT of the client certificate a session presented.
    fn client_cert(&self, s: &SessionIn) -> CertView {
        let Some(fp) = s.tls.client_chain.first() else {
            return CertView {
                cert_sha256: None,
                certificate: None,
                issuer: None,
                eku: None,
                not_after: None,
                loses_client_auth_on: None,
                status: "none_sent",
            };
        };
        let cert = self.ds.certs.get(fp.as_str());
        let sunset = self.finding(s, "eku.client_auth_sunset", "client");
        let loses = sunset.and_then(|f| match (self.policy, cert) {
            (Some(p), Some(c)) => {
                let cutoff = p.cutoff_for(c.issuer.as_deref().unwrap_or(""));
                Some(c.not_after_s().map_or(cutoff, |na| na.min(cutoff)))
            }
            _ => f.effective_s(),
        });
        let status = match cert {
            None => "unknown_certificate",
            Some(c) if c.client_auth() == Some(false) => "no_client_auth",
            Some(c) if c.not_after_s().is_some_and(|na| na < self.at) => "expired",
            Some(_) if loses.is_some_and(|d| d <= self.at) => "client_auth_lost",
            Some(_) if loses.is_some() => "loses_client_auth",
            Some(c) if c.client_auth().is_none() => "unknown_certificate",
            Some(_) => "ok",
        };
        CertView {
            cert_sha256: Some(fp.to_string()),
            certificate: cert.map(CertIn::name),
            issuer: cert.and_then(|c| c.issuer.clone()),
            eku: cert.map(CertIn::eku_text),
            not_after: cert.and_then(|c| c.not_after.clone()),
            loses_client_auth_on: loses.map(ts),
            status,
        }
    }

    /// Failures of a session under strict validation at AT: (rule, detail, effective).
    /// Validity is re-evaluated from the certificate records; the rest is as recorded.
    fn strict_failures(&self, s: &SessionIn) -> (Vec<(String, String, Option<i64>)>, bool) {
        let mut out = Vec::new();
        let mut unknown = false;
        for f in self.ds.findings_of(&s.session_id) {
            if f.role != "server" || !STRICT_RULES.contains(&f.rule.as_str()) {
                continue;
            }
            if f.rule.starts_with("validity.") {
                continue; // re-evaluated below
            }
            match f.verdict.as_str() {
                "fail" => out.push((f.rule.to_string(), f.detail.to_string(), f.effective_s())),
                "unknown" => unknown = true,
                _ => {}
            }
        }
        // Every certificate sent except self-issued roots (a root's own dates are the trust
        // store's business), as classification checks them.
        let sent: Vec<&CertIn> = s
            .tls
            .server_chain
            .iter()
            .enumerate()
            .filter_map(|(i, fp)| self.ds.certs.get(fp.as_str()).map(|c| (i, c)))
            .filter(|(i, c)| *i == 0 || !c.self_issued())
            .map(|(_, c)| c)
            .collect();
        let expired = sent
            .iter()
            .filter_map(|c| c.not_after_s().map(|na| (c, na)))
            .filter(|(_, na)| *na < self.at)
            .min_by_key(|(_, na)| *na);
        if let Some((c, na)) = expired {
            out.push((
                "validity.expired".into(),
                format!(
                    "server certificate {} expired on {} (assessed at {})",
                    c.name(),
                    ts(na),
                    ts(self.at)
                ),
                Some(na + 1),
            ));
        }
        let not_yet = sent
            .iter()
            .filter_map(|c| c.not_before_s().map(|nb| (c, nb)))
            .filter(|(_, nb)| *nb > self.at)
            .max_by_key(|(_, nb)| *nb);
        if let Some((c, nb)) = not_yet {
            out.push((
                "validity.not_yet_valid".into(),
                format!(
                    "server certificate {} is valid only from {} (assessed at {})",
                    c.name(),
                    ts(nb),
                    ts(self.at)
                ),
                None,
            ));
        }
        // Derived here, not a classification rule: a handshake that completed without any
        // server certificate (anonymous cipher suites, RFC 5246 §7.4.2) cannot be validated.
        if s.tls.server_chain.is_empty()
            && s.outcome == "established"
            && s.tls.version.as_deref() != Some("TLS1.3")
        {
            out.push((
                "tls.no_certificate".into(),
                format!(
                    "the handshake completed without a server certificate (cipher {})",
                    s.tls.cipher.as_deref().unwrap_or("unknown")
                ),
                Some(s.t),
            ));
        }
        out.sort_by_key(|(r, _, _)| STRICT_RULES.iter().position(|k| k == r));
        (out, unknown)
    }
}

/// Builds the report.
pub fn build(ds: &Dataset, opts: &ReportOptions) -> Report {
    let first = ds.sessions.first().map(|s| s.t);
    let last = ds.sessions.last().map(|s| s.t);
    let (at, at_from) = match (opts.at, last) {
        (Some(a), _) => (a, "--at"),
        (None, Some(l)) => (l, "last session"),
        (None, None) => (0, "no session"),
    };
    let cx = Ctx {
        ds,
        at,
        policy: opts.policy.as_ref(),
    };
    let coverage = coverage(ds);
    let inbound = inbound(&cx);
    let our = our_cert(&cx);
    let strict = strict(&cx);
    let timeline = timeline(&cx);
    let trend = trend(ds, first, last);
    let caveats = caveats(ds, &coverage, &opts.policy);
    Report {
        report_version: REPORT_VERSION,
        inputs: ds.sources.clone(),
        at: ts(at),
        at_from,
        policy: opts.policy.as_ref().map_or_else(
            || "as recorded (scenarios and sunset dates of the read run)".to_string(),
            |p| p.source.clone(),
        ),
        window: WindowOut {
            since: opts.window.since.map(ts),
            until: opts.window.until.map(ts),
            first_session: first.map(ts),
            last_session: last.map(ts),
        },
        coverage,
        inbound_client_certs: inbound,
        outbound_our_certificate: our,
        outbound_strict_validation: strict,
        timeline,
        trend,
        caveats,
        at_s: at,
        top: if opts.top == 0 { 10 } else { opts.top },
    }
}

fn coverage(ds: &Dataset) -> Coverage {
    let mut all = Tally::default();
    let mut by: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut by_direction: BTreeMap<String, u64> = BTreeMap::new();
    for s in &ds.sessions {
        let peer = match s.direction.as_str() {
            "inbound" => s.client_ip.to_string(),
            "outbound" => s.server_ip.to_string(),
            _ => format!("{}>{}", s.client_ip, s.server_ip),
        };
        all.add(&peer);
        by.entry(coverage_class(s)).or_default().add(&peer);
        *by_direction.entry(s.direction.to_string()).or_default() += 1;
    }
    let n = all.sessions;
    let get = |k: &str| by.get(k).map_or(0, |t| t.sessions);
    let rows = [
        "inspected",
        "tls13_library",
        "tls13_uninspectable",
        "no_tls",
        "incomplete",
    ]
    .iter()
    .map(|&category| {
        let c = by.get(category).map(|t| t.count(n)).unwrap_or_default();
        CoverageRow {
            category,
            sessions: c.sessions,
            peers: c.peers,
            share: c.share,
        }
    })
    .collect();
    Coverage {
        sessions: n,
        peers: all.peers.len() as u64,
        inspected: get("inspected"),
        tls13_library: get("tls13_library"),
        tls13_uninspectable: get("tls13_uninspectable"),
        no_tls: get("no_tls"),
        incomplete: get("incomplete"),
        by_direction,
        rows,
    }
}

fn inbound(cx: &Ctx) -> InboundSection {
    let mut base = 0u64;
    let (mut unknown_dir, mut requested, mut declined, mut not_visible) = (0, 0, 0, 0);
    let mut presenting = Tally::default();
    let [mut no_ca, mut losing, mut lost, mut expired, mut risk]: [Tally; 5] = Default::default();
    let mut rows: BTreeMap<(String, Option<String>, String), InboundRow> = BTreeMap::new();
    for s in cx.ds.sessions.iter().filter(|s| is_in(s)) {
        base += 1;
        if s.tls.cert_requested == Some(true) {
            requested += 1;
            if s.tls.client_chain.is_empty() {
                declined += 1;
            }
        }
        // TLS 1.3 hides the client's Certificate from the wire; the TLS library tells it,
        // an empty chain included (client_cert_presented false).
        if s.tls.version.as_deref() == Some("TLS1.3") && s.tls.client_cert_presented.is_none() {
            not_visible += 1;
        }
        if s.tls.client_chain.is_empty() {
            continue;
        }
        if s.direction == "unknown" {
            unknown_dir += 1;
        }
        let peer = s.client_ip.to_string();
        presenting.add(&peer);
        let cert = cx.client_cert(s);
        match cert.status {
            "no_client_auth" => no_ca.add(&peer),
            "expired" => expired.add(&peer),
            "client_auth_lost" => lost.add(&peer),
            _ => {}
        }
        if cert.loses_client_auth_on.is_some() {
            losing.add(&peer);
        }
        if cert.at_risk() {
            risk.add(&peer);
        }
        let key = (
            peer.clone(),
            s.smtp.ehlo.as_deref().map(String::from),
            cert.cert_sha256.clone().unwrap_or_default(),
        );
        let row = rows.entry(key).or_insert_with(|| InboundRow {
            sender_ip: peer,
            sender_name: s.smtp.ehlo.as_deref().map(String::from),
            cert,
            sessions: 0,
            first_seen: s.ts.clone(),
            last_seen: s.ts.clone(),
        });
        row.sessions += 1;
        row.last_seen = s.ts.clone();
    }
    let mut rows: Vec<InboundRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.cert
            .at_risk()
            .cmp(&a.cert.at_risk())
            .then(b.sessions.cmp(&a.sessions))
            .then(a.sender_ip.cmp(&b.sender_ip))
    });
    InboundSection {
        sessions: presenting.sessions,
        peers: presenting.peers.len() as u64,
        share: share(presenting.sessions, base),
        base_sessions: base,
        unknown_direction: unknown_dir,
        requested,
        declined,
        not_visible,
        without_client_auth: no_ca.count(base),
        losing_client_auth: losing.count(base),
        client_auth_lost_by_at: lost.count(base),
        expired_at: expired.count(base),
        at_risk: risk.count(base),
        rows,
    }
}

fn our_cert(cx: &Ctx) -> OurCertSection {
    let mut base = 0u64;
    let (mut unknown_dir, mut not_visible) = (0, 0);
    let [mut requesting, mut presented, mut not_presented, mut no_ca, mut affected, mut risk]: [Tally; 6] =
        Default::default();
    let mut certs: BTreeMap<String, (CertView, Tally)> = BTreeMap::new();
    let mut rows: BTreeMap<(String, String, String), OurCertRow> = BTreeMap::new();
    for s in cx.ds.sessions.iter().filter(|s| is_out(s)) {
        base += 1;
        if s.tls.version.as_deref() == Some("TLS1.3") && s.tls.cert_requested.is_none() {
            not_visible += 1;
        }
        if s.tls.cert_requested != Some(true) {
            continue;
        }
        if s.direction == "unknown" {
            unknown_dir += 1;
        }
        let peer = s.server_ip.to_string();
        Tally::add(&mut requesting, &peer);
        let cert = cx.client_cert(s);
        let sent = cert.cert_sha256.is_some();
        Tally::add(
            if sent {
                &mut presented
            } else {
                &mut not_presented
            },
            &peer,
        );
        if cert.status == "no_client_auth" {
            Tally::add(&mut no_ca, &peer);
        }
        let after_renewal = sent && cert.loses_client_auth_on.is_some();
        if after_renewal {
            Tally::add(&mut affected, &peer);
        }
        if cert.at_risk() {
            Tally::add(&mut risk, &peer);
        }
        if let Some(fp) = &cert.cert_sha256 {
            certs
                .entry(fp.clone())
                .or_insert_with(|| (cert.clone(), Tally::default()))
                .1
                .add(&peer);
        }
        let name = s.mx_name();
        let key = (
            peer.clone(),
            name.clone(),
            cert.cert_sha256.clone().unwrap_or_default(),
        );
        let row = rows.entry(key).or_insert_with(|| OurCertRow {
            destination_ip: peer,
            destination_name: name,
            presented: sent,
            affected_after_renewal: after_renewal,
            cert,
            sessions: 0,
            last_seen: s.ts.clone(),
        });
        row.sessions += 1;
        row.last_seen = s.ts.clone();
    }
    let mut rows: Vec<OurCertRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        (b.cert.at_risk(), b.affected_after_renewal, b.sessions).cmp(&(
            a.cert.at_risk(),
            a.affected_after_renewal,
            a.sessions,
        ))
    });
    OurCertSection {
        sessions: requesting.sessions,
        peers: requesting.peers.len() as u64,
        share: share(requesting.sessions, base),
        base_sessions: base,
        unknown_direction: unknown_dir,
        not_visible,
        presented: presented.count(base),
        not_presented: not_presented.count(base),
        without_client_auth: no_ca.count(base),
        affected_after_renewal: affected.count(base),
        at_risk: risk.count(base),
        our_certificates: certs
            .into_values()
            .map(|(cert, t)| OurCertificate {
                cert,
                sessions: t.sessions,
                destinations: t.peers.len() as u64,
            })
            .collect(),
        rows,
    }
}

fn strict(cx: &Ctx) -> StrictSection {
    let mut all_sessions = 0u64;
    let [mut section, mut fail, mut na, mut pass]: [Tally; 4] = Default::default();
    let mut unknown_dir = 0;
    let mut by_type: BTreeMap<&'static str, (Tally, BTreeMap<String, u64>)> = BTreeMap::new();
    let mut rows: BTreeMap<(String, String, String, String), OffenderRow> = BTreeMap::new();
    let mut dests: BTreeMap<(String, String, String), DestinationRow> = BTreeMap::new();
    for s in &cx.ds.sessions {
        all_sessions += 1;
        if !is_out(s) {
            continue;
        }
        if s.direction == "unknown" {
            unknown_dir += 1;
        }
        let peer = s.server_ip.to_string();
        section.add(&peer);
        let name = s.mx_name();
        let dest = dests
            .entry((name.clone(), peer.clone(), s.client_ip.to_string()))
            .or_insert_with(|| DestinationRow {
                destination_name: name.clone(),
                destination_ip: peer.clone(),
                destination_helo: s.smtp.banner_host.as_deref().map(String::from),
                sending_ip: s.client_ip.to_string(),
                sessions: 0,
                would_pass: 0,
                not_assessable: 0,
                failures: Vec::new(),
            });
        dest.sessions += 1;
        let (failures, unknown) = cx.strict_failures(s);
        let Some((first, first_detail, _)) = failures.first() else {
            // A TLS 1.3 chain read in the library is assessed like a wire one.
            let assessable = match coverage_class(s) {
                "inspected" => true,
                "tls13_library" => !s.tls.server_chain.is_empty(),
                _ => false,
            };
            if unknown || !assessable {
                na.add(&peer);
                dest.not_assessable += 1;
            } else {
                pass.add(&peer);
                dest.would_pass += 1;
            }
            continue;
        };
        fail.add(&peer);
        match dest
            .failures
            .iter_mut()
            .find(|f| &f.rule == first && &f.detail == first_detail)
        {
            Some(f) => f.sessions += 1,
            None => dest.failures.push(DestinationFailure {
                result_type: result_type(first),
                rule: first.clone(),
                detail: first_detail.clone(),
                sessions: 1,
            }),
        }
        let entry = by_type.entry(result_type(first)).or_default();
        entry.0.add(&peer);
        let mut rules_seen = HashSet::new();
        for (rule, detail, effective) in &failures {
            if rules_seen.insert(rule.clone()) {
                *by_type
                    .entry(result_type(rule))
                    .or_default()
                    .1
                    .entry(rule.clone())
                    .or_default() += 1;
            }
            let key = (peer.clone(), name.clone(), rule.clone(), detail.clone());
            let row = rows.entry(key).or_insert_with(|| OffenderRow {
                destination_ip: peer.clone(),
                destination_name: name.clone(),
                result_type: result_type(rule),
                rule: rule.clone(),
                detail: detail.clone(),
                sessions: 0,
                last_seen: s.ts.clone(),
                effective: effective.map(ts),
            });
            row.sessions += 1;
            row.last_seen = s.ts.clone();
        }
    }
    let base = section.sessions;
    let by_result_type = RESULT_TYPES
        .iter()
        .filter_map(|&rt| {
            let (t, rules) = by_type.remove(rt)?;
            let c = t.count(base);
            Some(ResultTypeRow {
                result_type: rt,
                sessions: c.sessions,
                peers: c.peers,
                share: c.share,
                rules,
            })
        })
        .collect();
    let mut rows: Vec<OffenderRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| {
                RESULT_TYPES
                    .iter()
                    .position(|t| *t == a.result_type)
                    .cmp(&RESULT_TYPES.iter().position(|t| *t == b.result_type))
            })
            .then_with(|| a.destination_name.cmp(&b.destination_name))
    });
    StrictSection {
        sessions: section.sessions,
        peers: section.peers.len() as u64,
        share: share(section.sessions, all_sessions),
        base_sessions: all_sessions,
        unknown_direction: unknown_dir,
        at_risk: fail.count(base),
        not_assessable: na.count(base),
        would_pass: pass.count(base),
        by_result_type,
        rows,
        destinations: dests.into_values().collect(),
    }
}

fn timeline(cx: &Ctx) -> Vec<TimelineEvent> {
    // (date, event, section, fingerprint) -> (certificate, sessions/peers)
    type Key = (i64, &'static str, &'static str, String);
    let mut ev: BTreeMap<Key, (String, Tally)> = BTreeMap::new();
    let mut add = |key: Key, name: String, peer: &str| {
        ev.entry(key)
            .or_insert_with(|| (name, Tally::default()))
            .1
            .add(peer);
    };
    for s in &cx.ds.sessions {
        // Sessions of unknown direction count in both client-certificate sections, as
        // everywhere in the report.
        let client = s.tls.client_chain.first();
        let leaves: [(&'static str, Option<&Sym>, String); 3] = [
            (
                "inbound_client_certs",
                client.filter(|_| is_in(s)),
                s.client_ip.to_string(),
            ),
            (
                "outbound_our_certificate",
                client.filter(|_| is_out(s)),
                s.server_ip.to_string(),
            ),
            (
                "outbound_strict_validation",
                s.tls.server_chain.first().filter(|_| is_out(s)),
                s.server_ip.to_string(),
            ),
        ];
        for (section, fp, peer) in leaves {
            let Some(fp) = fp else { continue };
            let Some(c) = cx.ds.certs.get(fp.as_str()) else {
                continue;
            };
            if let Some(na) = c.not_after_s() {
                add(
                    (na, "certificate_expires", section, fp.to_string()),
                    c.name(),
                    &peer,
                );
            }
            if section != "outbound_strict_validation" {
                let view = cx.client_cert(s);
                if let Some(d) = view
                    .loses_client_auth_on
                    .as_deref()
                    .and_then(crate::classify::policy::parse_date)
                {
                    add(
                        (d, "client_auth_lost", section, fp.to_string()),
                        c.name(),
                        &peer,
                    );
                }
            }
        }
    }
    ev.into_iter()
        .map(|((d, event, section, fp), (name, t))| TimelineEvent {
            date: ts(d),
            event,
            section,
            cert_sha256: fp,
            certificate: name,
            sessions: t.sessions,
            peers: t.peers.len() as u64,
            past: d <= cx.at,
        })
        .collect()
}

/// Bucket sizes for the trend, smallest first; the first giving at most 60 buckets is used.
const BUCKETS: &[i64] = &[60, 300, 3_600, 86_400, 7 * 86_400, 30 * 86_400];

fn trend(ds: &Dataset, first: Option<i64>, last: Option<i64>) -> Trend {
    let (Some(first), Some(last)) = (first, last) else {
        return Trend {
            bucket_seconds: 86_400,
            buckets: Vec::new(),
            series: Vec::new(),
        };
    };
    let span = last - first;
    let size = BUCKETS
        .iter()
        .copied()
        .find(|b| span / b < 60)
        .unwrap_or(365 * 86_400);
    let start = first.div_euclid(size) * size;
    let n = ((last.div_euclid(size) * size - start) / size + 1) as usize;
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in &ds.sessions {
        let i = ((s.t.div_euclid(size) * size - start) / size) as usize;
        let mut seen = HashSet::new();
        for f in ds.findings_of(&s.session_id) {
            if f.verdict == "fail" && seen.insert(f.rule.as_str()) {
                series
                    .entry(f.rule.to_string())
                    .or_insert_with(|| vec![0; n])[i] += 1;
            }
        }
    }
    Trend {
        bucket_seconds: size,
        buckets: (0..n).map(|i| ts(start + i as i64 * size)).collect(),
        series: series
            .into_iter()
            .map(|(rule, counts)| TrendSeries { rule, counts })
            .collect(),
    }
}

fn caveats(ds: &Dataset, cov: &Coverage, policy: &Option<Policy>) -> Vec<String> {
    let mut c = vec![
        "Chains are not re-validated: trust, names, EKU and TLS behaviour are as recorded by `mxcert read` (see each finding's validation_time); validity dates and clientAuth sunset dates are re-evaluated at AT from the certificate and finding records.".to_string(),
    ];
    if cov.tls13_uninspectable > 0 {
        c.push(format!(
            "{} session(s) used TLS 1.3: their certificates are encrypted on the wire and were not read through the MTA's TLS library (`mxcert capture --tls-library`), so they appear only in coverage (and as not assessable).",
            cov.tls13_uninspectable
        ));
    }
    if cov.tls13_library > 0 {
        c.push(format!(
            "{} TLS 1.3 session(s) were assessed on chains read in the MTA's TLS library (or carried over from the full handshake they resumed): the peer's chain as the library received it; our own certificate is not read there.",
            cov.tls13_library
        ));
    }
    if !ds.sessions.is_empty() && ds.finding_records == 0 {
        c.push("The input holds no finding records (read with --no-findings?): trust, name and EKU failures are missing; run `mxcert read` without --no-findings.".into());
    }
    let dirs = &cov.by_direction;
    if dirs.get("unknown").copied().unwrap_or(0) > 0 {
        c.push(format!(
            "{} session(s) have an unknown direction (pass --local-net to `mxcert read`): they are counted in the inbound and the outbound sections.",
            dirs["unknown"]
        ));
    }
    if !ds.sessions.is_empty() && !dirs.contains_key("outbound") && !dirs.contains_key("unknown") {
        c.push("No outbound sessions: the outbound sections are empty (is --local-net at read time our network?).".into());
    }
    if !ds.sessions.is_empty() && !dirs.contains_key("inbound") && !dirs.contains_key("unknown") {
        c.push("No inbound sessions: the inbound section is empty.".into());
    }
    let missing: HashSet<&str> = ds
        .sessions
        .iter()
        .flat_map(|s| s.tls.server_chain.iter().chain(&s.tls.client_chain))
        .map(Sym::as_str)
        .filter(|fp| !ds.certs.contains_key(*fp))
        .collect();
    if !missing.is_empty() {
        c.push(format!(
            "{} certificate(s) referenced by sessions have no certificate record in the input (give the whole records file): their dates cannot be re-evaluated.",
            missing.len()
        ));
    }
    if policy.is_none() {
        c.push("Sunset dates are the ones recorded in the findings; pass --policy to recompute them with other issuer cutoffs.".into());
    }
    for (n, what) in [
        (ds.skipped_lines, "input line(s) were not mxcert records and were skipped"),
        (ds.duplicate_sessions, "session(s) appeared twice (same session_id) and were counted once"),
        (ds.over_limit, "session(s) beyond the in-memory bound were left out: narrow the report with --since/--until"),
    ] {
        if n > 0 {
            c.push(format!("{n} {what}."));
        }
    }
    c
}

/// The one-line summary and the labelled counts of a section, shared by the text and html
/// renderers so both say the same thing.
pub struct SectionView<'a> {
    pub summary: String,
    /// What the peers are called in this section.
    pub peers: &'static str,
    pub counts: Vec<(&'static str, &'a Count)>,
    /// Set when the section has no session of its directions: say so instead of zeros.
    pub empty: Option<&'static str>,
}

fn tls13_note(n: u64, what: &str) -> String {
    if n > 0 {
        format!("; {n} TLS 1.3 session(s) hide {what}")
    } else {
        String::new()
    }
}

impl InboundSection {
    pub fn view(&self) -> SectionView<'_> {
        SectionView {
            summary: format!(
                "{} of {} inbound sessions ({:.1} %) presented a client certificate, from {} sender(s); we asked in {}, {} declined{}",
                self.sessions,
                self.base_sessions,
                self.share * 100.0,
                self.peers,
                self.requested,
                self.declined,
                tls13_note(self.not_visible, "it")
            ),
            peers: "senders",
            empty: (self.base_sessions == 0).then_some(
                "No inbound session in the input (see --local-net at read time).",
            ),
            counts: vec![
                ("without clientAuth (rejected now by an EKU-enforcing receiver)", &self.without_client_auth),
                ("clientAuth from a public CA, lost at renewal", &self.losing_client_auth),
                ("  of which lost by AT", &self.client_auth_lost_by_at),
                ("expired at AT", &self.expired_at),
                ("rejected at AT under clientAuth enforcement", &self.at_risk),
            ],
        }
    }
}

impl OurCertSection {
    pub fn view(&self) -> SectionView<'_> {
        SectionView {
            summary: format!(
                "{} of {} outbound sessions ({:.1} %) were asked for a client certificate, by {} destination(s){}",
                self.sessions,
                self.base_sessions,
                self.share * 100.0,
                self.peers,
                tls13_note(self.not_visible, "whether they were")
            ),
            peers: "destinations",
            empty: (self.base_sessions == 0).then_some(
                "No outbound session in the input (see --local-net at read time).",
            ),
            counts: vec![
                ("we presented one", &self.presented),
                ("we sent none", &self.not_presented),
                ("ours lacks clientAuth", &self.without_client_auth),
                ("affected after our renewal (clientAuth sunset)", &self.affected_after_renewal),
                ("at risk at AT", &self.at_risk),
            ],
        }
    }
}

impl StrictSection {
    pub fn view(&self) -> SectionView<'_> {
        SectionView {
            summary: format!(
                "{} outbound sessions ({:.1} % of all) to {} destination(s); each failing session counts once, under its first failure (the order a validating sender meets them)",
                self.sessions,
                self.share * 100.0,
                self.peers
            ),
            peers: "destinations",
            empty: (self.sessions == 0).then_some(
                "No outbound session in the input (see --local-net at read time).",
            ),
            counts: vec![
                ("would fail", &self.at_risk),
                ("not assessable (TLS 1.3, incomplete, no name)", &self.not_assessable),
                ("would pass", &self.would_pass),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    //! The clientAuth sunset cannot come from the fixtures (their PKI is private, and the sunset
    //! applies to certificates chaining to a public root), so these records are written by
    //! hand in the record format of `mxcert read`.
    use super::*;
    use crate::classify::policy::parse_date;

    const CERT: &str = r#"{"record":"certificate","sha256":"aa","subject":"CN=relay.example.net","issuer":"CN=R11,O=Let's Encrypt,C=US","subject_cn":"relay.example.net","not_before":"2026-01-01T00:00:00.000Z","not_after":"2026-09-01T00:00:00.000Z","eku_present":true,"eku":["serverAuth","clientAuth"]}"#;

    fn dataset() -> Dataset {
        let w = Window::default();
        let mut ds = Dataset::default();
        ds.add_json_line(CERT, &w);
        for (id, dir, client, server) in [
            ("s1", "inbound", "203.0.113.5", "192.0.2.1"),
            ("s2", "inbound", "203.0.113.5", "192.0.2.1"),
            ("s3", "outbound", "192.0.2.1", "198.51.100.9"),
        ] {
            ds.add_json_line(&format!(r#"{{"record":"session","ts":"2026-03-01T10:00:00.000Z","session_id":"{id}","client_ip":"{client}","server_ip":"{server}","direction":"{dir}","outcome":"established","tls":{{"version":"TLS1.2","cert_requested":true,"client_cert_presented":true,"server_chain":[],"client_chain":["aa"]}}}}"#), &w);
            ds.add_json_line(&format!(r#"{{"record":"finding","session_id":"{id}","role":"client","cert_sha256":"aa","scenario":"clientauth_enforcement","rule":"eku.client_auth_sunset","verdict":"warn","effective":"2026-05-13T00:00:00.000Z","detail":"…"}}"#), &w);
        }
        ds.finish();
        ds
    }

    fn at(d: &str) -> ReportOptions {
        ReportOptions {
            at: parse_date(d),
            ..ReportOptions::default()
        }
    }

    #[test]
    fn client_auth_sunset_counts_from_its_effective_date() {
        let ds = dataset();
        let before = build(&ds, &at("2026-05-12"));
        let s = &before.inbound_client_certs;
        assert_eq!(
            (s.losing_client_auth.sessions, s.losing_client_auth.peers),
            (2, 1)
        );
        assert_eq!(s.client_auth_lost_by_at.sessions, 0);
        assert_eq!(s.at_risk.sessions, 0);
        assert_eq!(s.rows[0].cert.status, "loses_client_auth");
        assert_eq!(
            s.rows[0].cert.loses_client_auth_on.as_deref(),
            Some("2026-05-13T00:00:00.000Z")
        );
        let o = &before.outbound_our_certificate;
        assert_eq!(o.affected_after_renewal.sessions, 1);
        assert_eq!(o.at_risk.sessions, 0);
        let ev: Vec<_> = before
            .timeline
            .iter()
            .filter(|e| e.event == "client_auth_lost")
            .collect();
        assert_eq!(ev.len(), 2, "one per section");
        assert!(ev.iter().all(|e| !e.past));

        let after = build(&ds, &at("2026-05-13"));
        let s = &after.inbound_client_certs;
        assert_eq!(s.client_auth_lost_by_at.sessions, 2);
        assert_eq!((s.at_risk.sessions, s.at_risk.peers), (2, 1));
        assert_eq!(s.at_risk.share, 1.0);
        assert_eq!(s.rows[0].cert.status, "client_auth_lost");
        assert_eq!(after.outbound_our_certificate.at_risk.sessions, 1);

        // Past notAfter the certificate is expired, whatever its EKU.
        let expired = build(&ds, &at("2026-09-02"));
        assert_eq!(expired.inbound_client_certs.expired_at.sessions, 2);
        assert_eq!(
            expired.inbound_client_certs.client_auth_lost_by_at.sessions,
            0
        );
    }

    #[test]
    fn policy_recomputes_the_sunset_date() {
        let ds = dataset();
        let policy = Policy::parse(
            "[[issuer_cutoffs]]\nissuer_contains = \"Let's Encrypt\"\ndate = \"2027-01-01\"\n[scenarios.x]\nrules = [\"eku.client_auth_sunset\"]\n",
            "test.toml",
        )
        .unwrap();
        let r = build(
            &ds,
            &ReportOptions {
                at: parse_date("2026-06-01"),
                policy: Some(policy),
                ..ReportOptions::default()
            },
        );
        // min(notAfter 2026-09-01, cutoff 2027-01-01)
        let row = &r.inbound_client_certs.rows[0];
        assert_eq!(
            row.cert.loses_client_auth_on.as_deref(),
            Some("2026-09-01T00:00:00.000Z")
        );
        assert_eq!(row.cert.status, "loses_client_auth");
        assert_eq!(r.policy, "test.toml");
    }

    #[test]
    fn result_types_cover_every_strict_rule() {
        for r in STRICT_RULES {
            assert!(RESULT_TYPES.contains(&result_type(r)), "{r}");
        }
        assert_eq!(result_type("validity.expired"), "certificate-expired");
        assert_eq!(
            result_type("name.wildcard_depth"),
            "certificate-host-mismatch"
        );
        assert_eq!(result_type("tls.refused"), "starttls-not-supported");
    }
}
