//! x509-limbo conformance harness: the SERVER and CLIENT cases of `../shared/x509-limbo/` run
//! through mxcert's validation entry point (`mxcert::classify::validate::verify`), and, as the
//! baseline, through plain rustls-webpki called directly on the same inputs.
//!
//! A case passes when the verdict (`Ok` → SUCCESS, `Err` → FAILURE) equals `expected_result`.
//!
//! Mapping of a limbo testcase onto `verify`:
//! - trust anchors: `trusted_certs`, each through `TrustStore::add_der`; a certificate that is
//!   not a usable trust anchor makes the verdict FAILURE (mxcert refuses such a trust file; the
//!   baseline does the same, like upstream limbo's rustls-webpki harness);
//! - intermediates: `untrusted_intermediates`; leaf: `peer_certificate`;
//! - usage: `extended_key_usage` `[serverAuth]` → `ServerAuth`, `[clientAuth]` → `ClientAuth`,
//!   absent or empty → `ServerAuth` for SERVER and `ClientAuth` for CLIENT cases;
//! - time: `validation_time` (RFC 3339); null means "now", as limbo defines it. Every
//!   certificate of the null-time cases is valid 1970-01-01 .. 2969-05-03 (except one leaf that
//!   expired in 1988 on purpose), so "now" gives stable verdicts;
//! - names: `expected_peer_name` and `expected_peer_names` of kind DNS or IP are each passed as
//!   `name` (every one must match); no name means no name check. RFC822 names (the CLIENT cases)
//!   cannot be given to `verify` (it takes DNS/IP names; rustls-webpki has no mailbox matching),
//!   so the harness checks that each one is literally an rfc822Name SAN of the leaf (local part
//!   exact, domain ASCII case-insensitive) and then runs the chain with `name = None`; in those
//!   cases the expected result turns on the name constraints, which rustls-webpki checks during
//!   path building whatever the expected name. A mailbox that is not among the SANs is a skip.
//!
//! Skipped, each with its reason (counted per reason): validation kinds other than SERVER /
//! CLIENT, CRL cases, `max_chain_depth`, other EKUs, `key_usage` and `signature_algorithms`
//! requirements, peer-name kinds other than DNS / IP / RFC822, and anything unparseable.
//!
//! "Pedantic" cases are the ones with a `pedantic-*` feature (strict RFC 5280 and the WebPKI
//! disagree there); pass rates are reported on the non-pedantic run cases.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mxcert::classify::validate::{verify, TrustStore, Usage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

const FILES: &[&str] = &[
    "limbo.official-ddc40b4-2023-12-02.json",
    "limbo.regenerated-HEAD-no-bettertls-no-online.json",
];
const EKU_WILDCARD_CLIENT_LIST: &str = "limbo-eku-wildcard-client-cases.txt";

const SKIP_KIND: &str = "validation_kind is neither SERVER nor CLIENT";
const SKIP_CRL: &str =
    "has CRLs: revocation checking is not part of mxcert's verify (passive monitor)";
const SKIP_DEPTH: &str = "max_chain_depth set: neither verify nor rustls-webpki takes a depth \
     limit (webpki's own: at most 6 intermediates, plus a path-building budget)";
const SKIP_EKU: &str = "extended_key_usage other than one of serverAuth / clientAuth";
const SKIP_KU: &str = "key_usage requirement: rustls-webpki has no API to require a leaf keyUsage";
const SKIP_SIGALG: &str =
    "signature_algorithms restriction: verify always uses webpki::ALL_VERIFICATION_ALGS";
const SKIP_RFC822: &str = "RFC822 peer name not among the leaf's rfc822Name SANs: mxcert has no \
     mailbox matching";
const SKIP_NAME_KIND: &str = "expected peer name of a kind other than DNS / IP / RFC822";
const SKIP_PARSE: &str = "unparseable testcase (PEM, time, or field)";

fn limbo_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/x509-limbo");
    if dir.join(FILES[0]).is_file() {
        Some(dir)
    } else {
        println!(
            "SKIPPED: x509-limbo data not found at {} (CI always has it)",
            dir.display()
        );
        None
    }
}

fn load(dir: &Path, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    json["testcases"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no testcases array"))
        .clone()
}

/// A testcase reduced to what `verify` takes.
struct Prepared {
    trusted: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
    leaf: Vec<u8>,
    usage: Usage,
    at: i64,
    /// DNS and IP names; each must match.
    names: Vec<String>,
}

struct Skip {
    reason: &'static str,
    detail: String,
}

fn skip(reason: &'static str, detail: impl Into<String>) -> Skip {
    Skip {
        reason,
        detail: detail.into(),
    }
}

fn der(pem: &Value, what: &str) -> Result<Vec<u8>, Skip> {
    let pem = pem
        .as_str()
        .ok_or_else(|| skip(SKIP_PARSE, format!("{what}: not a string")))?;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| skip(SKIP_PARSE, format!("{what}: {e:?}")))
}

fn ders(list: &Value, what: &str) -> Result<Vec<Vec<u8>>, Skip> {
    match list {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|p| der(p, what)).collect(),
        _ => Err(skip(SKIP_PARSE, format!("{what}: not a list"))),
    }
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// RFC 822 mailboxes among the leaf's subjectAltNames.
fn leaf_mailboxes(leaf: &[u8]) -> Result<Vec<String>, Skip> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| skip(SKIP_PARSE, format!("leaf (x509-parser): {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| skip(SKIP_PARSE, format!("leaf SAN (x509-parser): {e}")))?;
    Ok(san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::RFC822Name(m) => Some(m.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

fn mailbox_eq(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

fn prepare(tc: &Value) -> Result<Prepared, Skip> {
    let kind = tc["validation_kind"].as_str().unwrap_or("");
    let default_usage = match kind {
        "SERVER" => Usage::ServerAuth,
        "CLIENT" => Usage::ClientAuth,
        other => return Err(skip(SKIP_KIND, other)),
    };
    let features: Vec<&str> = tc["features"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if features.contains(&"has-crl") || non_empty(&tc["crls"]) {
        return Err(skip(SKIP_CRL, ""));
    }
    if !tc["max_chain_depth"].is_null() {
        return Err(skip(SKIP_DEPTH, tc["max_chain_depth"].to_string()));
    }
    let ekus: Vec<&str> = match &tc["extended_key_usage"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(|e| e.as_str().unwrap_or("?")).collect(),
        other => return Err(skip(SKIP_PARSE, format!("extended_key_usage: {other}"))),
    };
    let usage = match ekus.as_slice() {
        [] => default_usage,
        ["serverAuth"] => Usage::ServerAuth,
        ["clientAuth"] => Usage::ClientAuth,
        other => return Err(skip(SKIP_EKU, format!("{other:?}"))),
    };
    if non_empty(&tc["key_usage"]) {
        return Err(skip(SKIP_KU, tc["key_usage"].to_string()));
    }
    if non_empty(&tc["signature_algorithms"]) {
        return Err(skip(SKIP_SIGALG, tc["signature_algorithms"].to_string()));
    }

    let trusted = ders(&tc["trusted_certs"], "trusted_certs")?;
    let intermediates = ders(&tc["untrusted_intermediates"], "untrusted_intermediates")?;
    let leaf = der(&tc["peer_certificate"], "peer_certificate")?;
    let at = match &tc["validation_time"] {
        Value::Null => now(),
        Value::String(s) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| skip(SKIP_PARSE, format!("validation_time {s}: {e}")))?
                .unix_timestamp()
        }
        other => return Err(skip(SKIP_PARSE, format!("validation_time: {other}"))),
    };

    let mut peer_names: Vec<&Value> = Vec::new();
    if !tc["expected_peer_name"].is_null() {
        peer_names.push(&tc["expected_peer_name"]);
    }
    if let Some(list) = tc["expected_peer_names"].as_array() {
        peer_names.extend(list);
    }
    let mut names = Vec::new();
    let mut mailboxes = None;
    for pn in peer_names {
        let value = pn["value"]
            .as_str()
            .ok_or_else(|| skip(SKIP_PARSE, format!("peer name: {pn}")))?;
        match pn["kind"].as_str() {
            Some("DNS" | "IP") => names.push(value.to_string()),
            Some("RFC822") => {
                if mailboxes.is_none() {
                    mailboxes = Some(leaf_mailboxes(&leaf)?);
                }
                let have = mailboxes.as_deref().unwrap_or_default();
                if !have.iter().any(|m| mailbox_eq(m, value)) {
                    return Err(skip(SKIP_RFC822, format!("{value} not in {have:?}")));
                }
            }
            _ => return Err(skip(SKIP_NAME_KIND, pn.to_string())),
        }
    }
    Ok(Prepared {
        trusted,
        intermediates,
        leaf,
        usage,
        at,
        names,
    })
}

/// The case through mxcert's entry point.
fn run_mxcert(p: &Prepared) -> Result<(), webpki::Error> {
    let mut store = TrustStore::empty();
    for t in &p.trusted {
        store.add_der(t)?;
    }
    let inter: Vec<&[u8]> = p.intermediates.iter().map(Vec::as_slice).collect();
    if p.names.is_empty() {
        return verify(&store, &p.leaf, &inter, p.usage, p.at, None);
    }
    for name in &p.names {
        verify(&store, &p.leaf, &inter, p.usage, p.at, Some(name))?;
    }
    Ok(())
}

/// The same case through plain rustls-webpki (the baseline).
fn run_webpki(p: &Prepared) -> Result<(), webpki::Error> {
    let trusted: Vec<CertificateDer<'_>> = p
        .trusted
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors = trusted
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<Vec<_>, _>>()?;
    let inter: Vec<CertificateDer<'_>> = p
        .intermediates
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf = CertificateDer::from(p.leaf.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf)?;
    let usage = match p.usage {
        Usage::ServerAuth => webpki::KeyUsage::server_auth(),
        Usage::ClientAuth => webpki::KeyUsage::client_auth(),
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(p.at.max(0) as u64));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &inter,
        time,
        usage,
        None,
        None,
    )?;
    for name in &p.names {
        let sn = ServerName::try_from(name.as_str())
            .map_err(|_| webpki::Error::MalformedDnsIdentifier)?;
        ee.verify_is_valid_for_subject_name(&sn)?;
    }
    Ok(())
}

enum Outcome {
    Skipped(Skip),
    Run {
        mxcert: Result<(), webpki::Error>,
        webpki: Result<(), webpki::Error>,
    },
}

struct CaseResult {
    id: String,
    expected_success: bool,
    pedantic: bool,
    outcome: Outcome,
}

impl CaseResult {
    fn mxcert_pass(&self) -> Option<bool> {
        match &self.outcome {
            Outcome::Run { mxcert, .. } => Some(mxcert.is_ok() == self.expected_success),
            Outcome::Skipped(_) => None,
        }
    }
    fn webpki_pass(&self) -> Option<bool> {
        match &self.outcome {
            Outcome::Run { webpki, .. } => Some(webpki.is_ok() == self.expected_success),
            Outcome::Skipped(_) => None,
        }
    }
    fn expected(&self) -> &'static str {
        if self.expected_success {
            "SUCCESS"
        } else {
            "FAILURE"
        }
    }
}

fn verdict(r: &Result<(), webpki::Error>) -> String {
    match r {
        Ok(()) => "SUCCESS".into(),
        Err(e) => format!("FAILURE ({e:?})"),
    }
}

fn evaluate(tc: &Value) -> CaseResult {
    let id = tc["id"].as_str().unwrap_or("<no id>").to_string();
    let expected_success = match tc["expected_result"].as_str() {
        Some("SUCCESS") => true,
        Some("FAILURE") => false,
        other => {
            return CaseResult {
                id,
                expected_success: false,
                pedantic: false,
                outcome: Outcome::Skipped(skip(SKIP_PARSE, format!("expected_result {other:?}"))),
            }
        }
    };
    let pedantic = tc["features"].as_array().is_some_and(|f| {
        f.iter()
            .filter_map(Value::as_str)
            .any(|s| s.starts_with("pedantic-"))
    });
    let outcome = match prepare(tc) {
        Err(s) => Outcome::Skipped(s),
        Ok(p) => Outcome::Run {
            mxcert: run_mxcert(&p),
            webpki: run_webpki(&p),
        },
    };
    CaseResult {
        id,
        expected_success,
        pedantic,
        outcome,
    }
}

#[derive(Default, Clone)]
struct Stats {
    total: usize,
    run: usize,
    skipped: BTreeMap<&'static str, usize>,
    mx_pass: usize,
    wp_pass: usize,
    np_run: usize,
    np_mx_pass: usize,
    np_wp_pass: usize,
    /// Cases where mxcert's verdict differs from plain webpki's.
    diverging: usize,
}

impl Stats {
    fn add(&mut self, r: &CaseResult) {
        self.total += 1;
        match &r.outcome {
            Outcome::Skipped(s) => *self.skipped.entry(s.reason).or_default() += 1,
            Outcome::Run { mxcert, webpki } => {
                let mx = r.mxcert_pass() == Some(true);
                let wp = r.webpki_pass() == Some(true);
                self.run += 1;
                self.mx_pass += usize::from(mx);
                self.wp_pass += usize::from(wp);
                if !r.pedantic {
                    self.np_run += 1;
                    self.np_mx_pass += usize::from(mx);
                    self.np_wp_pass += usize::from(wp);
                }
                self.diverging += usize::from(mxcert.is_ok() != webpki.is_ok());
            }
        }
    }

    fn merge(&mut self, o: &Stats) {
        self.total += o.total;
        self.run += o.run;
        for (k, v) in &o.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        self.mx_pass += o.mx_pass;
        self.wp_pass += o.wp_pass;
        self.np_run += o.np_run;
        self.np_mx_pass += o.np_mx_pass;
        self.np_wp_pass += o.np_wp_pass;
        self.diverging += o.diverging;
    }

    fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    fn render(&self, title: &str, out: &mut String) {
        let rate = |pass: usize, run: usize| {
            if run == 0 {
                "n/a".to_string()
            } else {
                format!("{:.1}%", 100.0 * pass as f64 / run as f64)
            }
        };
        let _ = writeln!(out, "== {title}");
        let _ = writeln!(
            out,
            "   total {}, run {}, skipped {}",
            self.total,
            self.run,
            self.skipped_total()
        );
        for (reason, n) in &self.skipped {
            let _ = writeln!(out, "     skipped {n:>3}: {reason}");
        }
        let _ = writeln!(
            out,
            "   mxcert verify : passed {}, failed {}",
            self.mx_pass,
            self.run - self.mx_pass
        );
        let _ = writeln!(
            out,
            "   plain webpki  : passed {}, failed {}",
            self.wp_pass,
            self.run - self.wp_pass
        );
        let _ = writeln!(
            out,
            "   non-pedantic run {}: mxcert {} passed ({}), plain webpki {} passed ({})",
            self.np_run,
            self.np_mx_pass,
            rate(self.np_mx_pass, self.np_run),
            self.np_wp_pass,
            rate(self.np_wp_pass, self.np_run)
        );
        let _ = writeln!(
            out,
            "   verdicts differing between mxcert and plain webpki: {}",
            self.diverging
        );
    }
}

fn case_line(r: &CaseResult) -> String {
    match &r.outcome {
        Outcome::Skipped(s) => format!(
            "SKIP  {} (expected {}): {}{}",
            r.id,
            r.expected(),
            s.reason,
            if s.detail.is_empty() {
                String::new()
            } else {
                format!(" [{}]", s.detail)
            }
        ),
        Outcome::Run { mxcert, webpki } => format!(
            "{}  {}{} expected {}; mxcert {}; plain webpki {}",
            if r.mxcert_pass() == Some(true) {
                "PASS"
            } else {
                "FAIL"
            },
            r.id,
            if r.pedantic { " (pedantic)" } else { "" },
            r.expected(),
            verdict(mxcert),
            verdict(webpki)
        ),
    }
}

/// Figures measured on 2026-11-23 with rustls-webpki 0.103.17 (Cargo.lock) by
/// `cargo test -p mxcert --test limbo -- --nocapture`, copied from the printed summary:
/// (file, run, mxcert passed, non-pedantic run, mxcert non-pedantic passed). Plain webpki
/// measured the same pass counts (86 / 84 and 115 / 113), with no verdict differing.
/// A change that loses a case (or silently starts skipping one) fails the test.
const MEASURED: &[(&str, usize, usize, usize, usize)] = &[
    ("limbo.official-ddc40b4-2023-12-02.json", 127, 86, 115, 84),
    (
        "limbo.regenerated-HEAD-no-bettertls-no-online.json",
        177,
        115,
        162,
        113,
    ),
];

#[test]
fn limbo_server_and_client_cases() {
    let Some(dir) = limbo_dir() else { return };
    let mut report = String::new();
    let mut overall = Stats::default();
    let mut per_file = Vec::new();
    for file in FILES {
        let results: Vec<CaseResult> = load(&dir, file).iter().map(evaluate).collect();
        let mut stats = Stats::default();
        results.iter().for_each(|r| stats.add(r));
        stats.render(file, &mut report);
        let failing: Vec<&CaseResult> = results
            .iter()
            .filter(|r| r.mxcert_pass() == Some(false))
            .collect();
        let _ = writeln!(report, "   mxcert failing cases ({}):", failing.len());
        for r in failing {
            let _ = writeln!(report, "     {}", case_line(r));
        }
        for r in results.iter().filter(|r| match &r.outcome {
            Outcome::Run { mxcert, webpki } => mxcert.is_ok() != webpki.is_ok(),
            Outcome::Skipped(_) => false,
        }) {
            let _ = writeln!(report, "   DIVERGES: {}", case_line(r));
        }
        overall.merge(&stats);
        per_file.push((*file, stats));
    }
    overall.render("overall (both files)", &mut report);
    println!("{report}");

    for (file, s) in &per_file {
        assert!(s.run > 0, "{file}: no case run\n{report}");
        // Same cases for both: compare pass counts (the denominators are equal).
        assert!(
            s.np_mx_pass >= s.np_wp_pass,
            "{file}: mxcert's non-pedantic pass rate ({}/{}) is below plain webpki's ({}/{})\n{report}",
            s.np_mx_pass,
            s.np_run,
            s.np_wp_pass,
            s.np_run
        );
        let &(_, run, pass, np_run, np_pass) = MEASURED
            .iter()
            .find(|m| m.0 == *file)
            .expect("measured figures for every file");
        assert_eq!(s.run, run, "{file}: run count changed\n{report}");
        assert!(
            s.mx_pass >= pass,
            "{file}: mxcert passes {} cases, {pass} were measured\n{report}",
            s.mx_pass
        );
        assert_eq!(
            s.np_run, np_run,
            "{file}: non-pedantic run count changed\n{report}"
        );
        assert!(
            s.np_mx_pass >= np_pass,
            "{file}: mxcert passes {} non-pedantic cases, {np_pass} were measured\n{report}",
            s.np_mx_pass
        );
    }
}

/// The ids listed in `limbo-eku-wildcard-client-cases.txt` (`id | ...` lines under `###`
/// headings).
fn listed_ids(dir: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join(EKU_WILDCARD_CLIENT_LIST))
        .unwrap_or_else(|e| panic!("{EKU_WILDCARD_CLIENT_LIST}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(" | ").next())
        .map(|id| id.trim().to_string())
        .collect()
}

/// mxcert passes on the CLIENT + EKU + wildcard subset (both files together), measured like
/// [`MEASURED`] (summary line "subset, both files"): (run, mxcert passed). Plain webpki: 39 too.
const MEASURED_FOCUS: (usize, usize) = (56, 39);

#[test]
fn limbo_client_eku_wildcard_cases() {
    let Some(dir) = limbo_dir() else { return };
    let listed = listed_ids(&dir);
    let mut seen = BTreeSet::new();
    let mut report = String::new();
    let mut overall = Stats::default();
    for file in FILES {
        let mut stats = Stats::default();
        let _ = writeln!(report, "== {file}: CLIENT, EKU and wildcard/hostname cases");
        for tc in load(&dir, file) {
            let id = tc["id"].as_str().unwrap_or("");
            let client = tc["validation_kind"].as_str() == Some("CLIENT");
            if !client && !listed.contains(id) {
                continue;
            }
            seen.insert(id.to_string());
            let r = evaluate(&tc);
            let _ = writeln!(
                report,
                "   {}{}",
                if client { "[CLIENT] " } else { "" },
                case_line(&r)
            );
            stats.add(&r);
        }
        stats.render(&format!("{file}: subset"), &mut report);
        overall.merge(&stats);
    }
    overall.render("subset, both files", &mut report);
    println!("{report}");

    let missing: Vec<&String> = listed.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "listed ids in no limbo file: {missing:?}\n{report}"
    );
    assert!(overall.run > 0, "no case of the subset run\n{report}");
    assert!(
        overall.np_mx_pass >= overall.np_wp_pass,
        "mxcert below plain webpki on the subset\n{report}"
    );
    assert_eq!(
        overall.run, MEASURED_FOCUS.0,
        "subset run count changed\n{report}"
    );
    assert!(
        overall.mx_pass >= MEASURED_FOCUS.1,
        "mxcert passes {} subset cases, {} were measured\n{report}",
        overall.mx_pass,
        MEASURED_FOCUS.1
    );
}
