//! Where the report's records come from. [`Input`] is the seam: JSON lines files
//! ([`JsonlInput`]) today, ClickHouse (#6) beside it, both filling the same [`Dataset`].
//!
//! The input types are the record contract seen from the reading side: owned, every field the
//! report does not use is ignored, and every optional field defaults, so records written by an
//! older or newer `mxcert read` still load.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ReportError, MAX_SESSIONS};
use crate::classify::policy::parse_date;

/// Strings that repeat across millions of records (fingerprints, names, rule codes, details)
/// are kept once: a `Sym` is a shared, interned string. Measured on 1.05 M sessions, interning
/// takes the report's memory from ~1.6 KB to a few hundred bytes per session.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(std::sync::Arc<str>);

/// Distinct strings interned per thread; beyond this, strings are still shared per record but
/// no longer deduplicated (the interner is a cache, not a store).
pub const MAX_INTERNED: usize = 1 << 20;

thread_local! {
    static INTERNER: std::cell::RefCell<HashSet<std::sync::Arc<str>>> =
        std::cell::RefCell::new(HashSet::new());
}

impl Sym {
    pub fn new(s: &str) -> Sym {
        INTERNER.with(|i| {
            let mut set = i.borrow_mut();
            if let Some(a) = set.get(s) {
                return Sym(a.clone());
            }
            let a: std::sync::Arc<str> = s.into();
            if set.len() < MAX_INTERNED {
                set.insert(a.clone());
            }
            Sym(a)
        })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Sym {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Sym {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Sym {
    fn eq(&self, o: &str) -> bool {
        &*self.0 == o
    }
}

impl PartialEq<&str> for Sym {
    fn eq(&self, o: &&str) -> bool {
        &*self.0 == *o
    }
}

impl std::fmt::Debug for Sym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Sym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for Sym {
    fn default() -> Sym {
        Sym::new("")
    }
}

impl From<&str> for Sym {
    fn from(s: &str) -> Sym {
        Sym::new(s)
    }
}

impl<'de> Deserialize<'de> for Sym {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sym, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Sym;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Sym, E> {
                Ok(Sym::new(s))
            }
        }
        d.deserialize_str(V)
    }
}

/// Which sessions a report covers: `since` inclusive, `until` exclusive (Unix seconds of the
/// session's first packet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    pub fn contains(&self, t: i64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SmtpIn {
    #[serde(default)]
    pub banner_host: Option<Sym>,
    #[serde(default)]
    pub ehlo: Option<Sym>,
    #[serde(default)]
    pub starttls_offered: Option<bool>,
    #[serde(default)]
    pub implicit_tls: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsIn {
    #[serde(default)]
    pub version: Option<Sym>,
    #[serde(default)]
    pub cipher: Option<Sym>,
    #[serde(default)]
    pub sni: Option<Sym>,
    #[serde(default)]
    pub cert_requested: Option<bool>,
    #[serde(default)]
    pub client_cert_presented: Option<bool>,
    #[serde(default)]
    pub server_chain: Vec<Sym>,
    #[serde(default)]
    pub client_chain: Vec<Sym>,
    /// `wire`, `uprobe` (TLS 1.3 through the MTA's TLS library), `resumed`; None: no chain seen
    /// (records written before issue #8 have no key: their chains are wire chains).
    #[serde(default)]
    pub chain_source: Option<Sym>,
    #[serde(default)]
    pub resumed: bool,
}

/// A session record as the report reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionIn {
    pub ts: String,
    pub session_id: String,
    pub client_ip: IpAddr,
    pub server_ip: IpAddr,
    #[serde(default)]
    pub server_port: u16,
    #[serde(default = "unknown")]
    pub direction: Sym,
    #[serde(default)]
    pub smtp: SmtpIn,
    #[serde(default)]
    pub tls: TlsIn,
    #[serde(default = "unknown")]
    pub outcome: Sym,
    /// `ts` in Unix seconds (filled on load).
    #[serde(skip)]
    pub t: i64,
}

impl SessionIn {
    /// The destination's name as a sending MTA knows it: SNI, else the banner host, else the
    /// address (the same order classification uses for the expected name).
    pub fn mx_name(&self) -> String {
        self.tls
            .sni
            .as_deref()
            .or_else(|| {
                self.smtp
                    .banner_host
                    .as_deref()
                    .filter(|b| b.contains('.') && !b.starts_with('['))
            })
            .map_or_else(|| self.server_ip.to_string(), String::from)
    }
}

/// A certificate record as the report reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct CertIn {
    pub sha256: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub subject_cn: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
    #[serde(default)]
    pub san_dns: Vec<String>,
    #[serde(default)]
    pub eku_present: Option<bool>,
    #[serde(default)]
    pub eku: Vec<String>,
    #[serde(default)]
    pub parse_error: Option<String>,
}

impl CertIn {
    pub fn name(&self) -> String {
        self.subject_cn
            .clone()
            .or_else(|| self.subject.clone())
            .unwrap_or_else(|| self.sha256.chars().take(16).collect())
    }
    pub fn not_after_s(&self) -> Option<i64> {
        self.not_after.as_deref().and_then(parse_date)
    }
    pub fn not_before_s(&self) -> Option<i64> {
        self.not_before.as_deref().and_then(parse_date)
    }
    /// Self-issued (subject = issuer): a root sent in the chain; its own dates are the trust
    /// store's business, as in classification.
    pub fn self_issued(&self) -> bool {
        self.subject.is_some() && self.subject == self.issuer
    }
    /// clientAuth usable: no EKU extension (any purpose), or one listing clientAuth or
    /// anyExtendedKeyUsage (RFC 5280 §4.2.1.12).
    pub fn client_auth(&self) -> Option<bool> {
        if self.parse_error.is_some() {
            return None;
        }
        Some(
            self.eku_present != Some(true)
                || self.eku.iter().any(|e| e == "clientAuth" || e == "any"),
        )
    }
    /// EKU as shown to the reader.
    pub fn eku_text(&self) -> String {
        match self.eku_present {
            Some(true) if self.eku.is_empty() => "empty EKU".into(),
            Some(true) => self.eku.join(", "),
            _ => "no EKU (any purpose)".into(),
        }
    }
}

/// A finding record as the report reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct FindingIn {
    pub session_id: String,
    #[serde(default)]
    pub role: Sym,
    #[serde(default)]
    pub cert_sha256: Option<Sym>,
    #[serde(default)]
    pub scenario: Sym,
    pub rule: Sym,
    pub verdict: Sym,
    #[serde(default)]
    pub effective: Option<Sym>,
    #[serde(default)]
    pub detail: Sym,
}

impl FindingIn {
    pub fn effective_s(&self) -> Option<i64> {
        self.effective.as_deref().and_then(parse_date)
    }
}

/// Everything a report is built from. Findings are kept per session, deduplicated by (rule,
/// role): a rule listed by several scenarios yields one finding per scenario, but it is one fact
/// about the session.
#[derive(Debug, Default)]
pub struct Dataset {
    pub sessions: Vec<SessionIn>,
    pub certs: HashMap<String, CertIn>,
    pub findings: HashMap<String, Vec<FindingIn>>,
    /// Finding records read (before deduplication and the window).
    pub finding_records: u64,
    /// Descriptions of the inputs, for the report header and the "reproduce" hints.
    pub sources: Vec<String>,
    /// Lines that were not a record mxcert knows (malformed JSON, unknown kind, missing key).
    pub skipped_lines: u64,
    /// Sessions outside the window.
    pub outside_window: u64,
    /// Sessions beyond [`MAX_SESSIONS`], not in the report.
    pub over_limit: u64,
    /// Session ids seen twice (the same capture read into two files): counted once.
    pub duplicate_sessions: u64,
    seen: HashSet<String>,
}

impl Dataset {
    /// Adds one session if it is in the window and new.
    pub fn add_session(&mut self, mut s: SessionIn, w: &Window) {
        let Some(t) = parse_date(&s.ts) else {
            self.skipped_lines += 1;
            return;
        };
        s.t = t;
        if !w.contains(t) {
            self.outside_window += 1;
            return;
        }
        if self.seen.contains(&s.session_id) {
            self.duplicate_sessions += 1;
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            self.over_limit += 1;
            return;
        }
        self.seen.insert(s.session_id.clone());
        self.sessions.push(s);
    }

    pub fn add_certificate(&mut self, c: CertIn) {
        self.certs.entry(c.sha256.clone()).or_insert(c);
    }

    pub fn add_finding(&mut self, mut f: FindingIn) {
        self.finding_records += 1;
        // Keep what the model reads: failures (the trend needs only their rule), the clientAuth
        // sunset, and the server-side verdicts of the strict rules (with their detail).
        let strict = f.role == "server" && super::model::STRICT_RULES.contains(&f.rule.as_str());
        let sunset = f.rule == "eku.client_auth_sunset";
        if !(f.verdict == "fail" || sunset || (strict && f.verdict == "unknown")) {
            return;
        }
        if !strict && !sunset {
            f.detail = Sym::default();
            f.cert_sha256 = None;
        }
        // The session id lives on as the map's key only.
        let list = self
            .findings
            .entry(std::mem::take(&mut f.session_id))
            .or_default();
        if !list.iter().any(|g| g.rule == f.rule && g.role == f.role) {
            list.push(f);
        }
    }

    /// Drops findings of sessions that are not in the report (outside the window).
    pub fn finish(&mut self) {
        let seen = &self.seen;
        self.findings.retain(|id, _| seen.contains(id));
        // Time, then the millisecond text (same format from every input), then the id.
        self.sessions
            .sort_by(|a, b| (a.t, &a.ts, &a.session_id).cmp(&(b.t, &b.ts, &b.session_id)));
    }

    pub fn findings_of(&self, session_id: &str) -> &[FindingIn] {
        self.findings.get(session_id).map_or(&[], Vec::as_slice)
    }

    /// Parses one JSON line into the dataset; anything unusable is counted, never an error.
    pub fn add_json_line(&mut self, line: &str, w: &Window) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        // The kind is read from the text and the line parsed once, straight into its type:
        // going through serde_json::Value first doubled the time and the allocations.
        let ok = match record_kind(line) {
            Some("session") => serde_json::from_str(line)
                .map(|s| self.add_session(s, w))
                .is_ok(),
            Some("certificate") => serde_json::from_str(line)
                .map(|c| self.add_certificate(c))
                .is_ok(),
            Some("finding") => serde_json::from_str(line)
                .map(|f| self.add_finding(f))
                .is_ok(),
            _ => false,
        };
        if !ok {
            self.skipped_lines += 1;
        }
    }
}

/// The value of the top-level `"record"` key (mxcert writes it first; a line from elsewhere
/// that merely contains the text fails to parse as the type and is counted as skipped).
fn record_kind(line: &str) -> Option<&str> {
    const KEY: &str = "\"record\":";
    let rest = line[line.find(KEY)? + KEY.len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.split('"').next()
}

/// A source of records for a report.
pub trait Input {
    /// How the input is named in the report (file path, ClickHouse URL without credentials).
    fn describe(&self) -> String;
    /// Loads the records of the window into `ds`.
    fn load(&mut self, w: &Window, ds: &mut Dataset) -> Result<(), ReportError>;
}

/// JSON lines files written by `mxcert read --out FILE` (`-` reads stdin).
pub struct JsonlInput {
    pub path: PathBuf,
}

impl Input for JsonlInput {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&mut self, w: &Window, ds: &mut Dataset) -> Result<(), ReportError> {
        let err = |source| ReportError::Read {
            path: self.path.clone(),
            source,
        };
        let mut bar = None;
        let reader: Box<dyn BufRead> = if self.path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let f = std::fs::File::open(&self.path).map_err(err)?;
            bar = progress(&self.path, f.metadata().map(|m| m.len()).unwrap_or(0));
            Box::new(std::io::BufReader::with_capacity(256 * 1024, f))
        };
        let mut read = 0u64;
        for (n, line) in reader.lines().enumerate() {
            match line {
                Ok(l) => {
                    read += l.len() as u64 + 1;
                    if n % 16_384 == 0 {
                        if let Some(b) = &bar {
                            b.set_position(read);
                        }
                    }
                    ds.add_json_line(&l, w)
                }
                // Not UTF-8: a damaged line is data, not the end of the report.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => ds.skipped_lines += 1,
                Err(e) => return Err(err(e)),
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        ds.sources.push(self.describe());
        Ok(())
    }
}

/// A progress bar on stderr for records files over 16 MB, when stderr is a terminal (a
/// million sessions take about half a minute to read).
fn progress(path: &std::path::Path, len: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if len < 16 << 20 || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(crate::progress::bytes_bar(
        len,
        format!("reading {}", path.display()),
    ))
}

fn unknown() -> Sym {
    Sym::new("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_counted_and_window_filters() {
        let mut ds = Dataset::default();
        let w = Window {
            since: parse_date("2026-01-02"),
            until: parse_date("2026-01-03"),
        };
        let s = |id: &str, ts: &str| {
            format!(
                r#"{{"record":"session","ts":"{ts}","session_id":"{id}","client_ip":"192.0.2.1","server_ip":"192.0.2.2"}}"#
            )
        };
        ds.add_json_line(&s("a", "2026-01-01T10:00:00.000Z"), &w);
        ds.add_json_line(&s("b", "2026-01-02T10:00:00.000Z"), &w);
        ds.add_json_line(&s("b", "2026-01-02T10:00:00.000Z"), &w);
        ds.add_json_line(&s("c", "2026-01-03T00:00:00.000Z"), &w);
        ds.add_json_line("{not json", &w);
        ds.add_json_line(r#"{"record":"session","ts":"x"}"#, &w);
        ds.add_json_line(
            r#"{"record":"finding","session_id":"a","rule":"r","verdict":"fail"}"#,
            &w,
        );
        ds.add_json_line(
            r#"{"record":"finding","session_id":"b","rule":"r","verdict":"fail","scenario":"x"}"#,
            &w,
        );
        ds.add_json_line(
            r#"{"record":"finding","session_id":"b","rule":"r","verdict":"fail","scenario":"y"}"#,
            &w,
        );
        ds.finish();
        assert_eq!(ds.sessions.len(), 1);
        assert_eq!(ds.outside_window, 2);
        assert_eq!(ds.duplicate_sessions, 1);
        assert_eq!(ds.skipped_lines, 2);
        assert_eq!(ds.finding_records, 3);
        assert_eq!(ds.findings_of("b").len(), 1, "one fact per rule and role");
        assert!(ds.findings_of("a").is_empty(), "outside the window");
    }
}
