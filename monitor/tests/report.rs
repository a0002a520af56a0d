//! `mxcert report` over the real-MTA fixtures of `pcaps/`, in every format.
//!
//! The records come from the real binary (`mxcert read` on every fixture capture, once as the
//! receiving gateway `--local-net 198.18.0.1/32`: all inbound; once as the sending side
//! `--local-net 198.18.0.2/32`: all outbound, with the test PKI root as private trust anchor).
//! The expected numbers are derived from the fixtures' ground truth, `pcaps/<case>.expected.json`
//! (sessions, outcomes, versions, chains, certificate EKUs, dates, names, signatures; made from
//! tshark and python-cryptography, see pcaps/README.md), never from mxcert's output; the text,
//! tlsrpt and html formats are then checked against the same numbers.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo_root;
use mxcert::classify::policy::parse_date;
use serde_json::Value;

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("pcaps"))
        .expect("pcaps/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// Ground truth of all fixtures: sessions, and certificates by fingerprint.
struct Truth {
    sessions: Vec<Value>,
    certs: HashMap<String, Value>,
}

fn truth(only: Option<&[&str]>) -> Truth {
    let mut sessions = Vec::new();
    let mut certs = HashMap::new();
    for pcap in fixtures() {
        let case = pcap.file_stem().unwrap().to_string_lossy().into_owned();
        if only.is_some_and(|o| !o.contains(&case.as_str())) {
            continue;
        }
        let path = pcap.with_extension("expected.json");
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        sessions.extend(v["sessions"].as_array().unwrap().iter().cloned());
        for c in v["certificates"].as_array().unwrap() {
            certs.insert(c["sha256"].as_str().unwrap().to_string(), c.clone());
        }
    }
    Truth { sessions, certs }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn chain<'a>(v: &'a Value, which: &str) -> Vec<&'a str> {
    v["tls"][which]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn ts(v: &Value) -> i64 {
    parse_date(v["ts"].as_str().unwrap()).unwrap()
}

fn date(c: &Value, key: &str) -> i64 {
    parse_date(c[key].as_str().unwrap()).unwrap()
}

const COVERAGE: [&str; 5] = [
    "inspected",
    "tls13_library",
    "tls13_uninspectable",
    "no_tls",
    "incomplete",
];

/// The coverage definition of `mxcert report --help`, on ground truth.
fn coverage_class(v: &Value) -> &'static str {
    let version = v["tls"]["version"].as_str();
    if v["outcome"] == "no_tls" {
        "no_tls"
    } else if version == Some("TLS1.3")
        && matches!(
            v["tls"]["chain_source"].as_str(),
            Some("uprobe" | "resumed")
        )
    {
        "tls13_library"
    } else if version == Some("TLS1.3") && chain(v, "server_chain").is_empty() {
        "tls13_uninspectable"
    } else if !chain(v, "server_chain").is_empty() || v["outcome"] == "established" {
        "inspected"
    } else {
        "incomplete"
    }
}

fn has_eku(c: &Value, eku: &str) -> bool {
    c["eku_present"] != true
        || c["eku"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == eku || e == "any")
}

/// `mxcert read` of the given fixtures into a records file under the target tmp dir.
fn read(name: &str, cases: Option<&[&str]>, args: &[&str]) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{name}.jsonl"));
    let files: Vec<PathBuf> = fixtures()
        .into_iter()
        .filter(|p| {
            cases.is_none_or(|c| c.contains(&p.file_stem().unwrap().to_string_lossy().as_ref()))
        })
        .collect();
    let st = Command::new(env!("CARGO_BIN_EXE_mxcert"))
        .current_dir(repo_root())
        .arg("read")
        .args(&files)
        .args(args)
        .arg("--quiet")
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run mxcert read");
    assert!(st.success(), "mxcert read failed: {st}");
    out
}

struct Out {
    stdout: String,
    stderr: String,
    code: i32,
}

fn report(records: &[&Path], args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mxcert"));
    cmd.current_dir(repo_root()).arg("report");
    for r in records {
        cmd.arg("--from").arg(r);
    }
    let o = cmd.args(args).output().expect("run mxcert report");
    Out {
        stdout: String::from_utf8(o.stdout).expect("utf-8 report"),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        code: o.status.code().unwrap_or(-1),
    }
}

fn report_json(records: &[&Path], args: &[&str]) -> Value {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let o = report(records, &a);
    assert_eq!(o.code, 0, "{}", o.stderr);
    serde_json::from_str(&o.stdout).expect("json report")
}

fn n(v: &Value, path: &[&str]) -> u64 {
    s(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a count in {v}"))
}

fn share(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64 * 10_000.0).round() / 10_000.0
    }
}

/// Sessions and distinct peers of a selection.
fn count(sel: &[&Value], peer: &str) -> (u64, u64) {
    let peers: BTreeSet<&str> = sel.iter().map(|v| v[peer].as_str().unwrap()).collect();
    (sel.len() as u64, peers.len() as u64)
}

fn assert_count(rep: &Value, path: &[&str], sel: &[&Value], peer: &str, base: u64) {
    let (sessions, peers) = count(sel, peer);
    let got = s(rep, path);
    assert_eq!(got["sessions"], sessions, "{path:?}.sessions");
    assert_eq!(got["peers"], peers, "{path:?}.peers");
    assert_eq!(
        got["share"].as_f64().unwrap(),
        share(sessions, base),
        "{path:?}.share"
    );
}

/// The value cells of a text table row starting with `label`.
fn text_row(text: &str, label: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{text}"));
    line.trim_start()[label.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn check_coverage(rep: &Value, t: &Truth) {
    let cov = &rep["coverage"];
    assert_eq!(cov["sessions"], t.sessions.len() as u64);
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    for v in &t.sessions {
        *by.entry(coverage_class(v)).or_default() += 1;
    }
    for k in COVERAGE {
        assert_eq!(cov[k], by.get(k).copied().unwrap_or(0), "coverage.{k}");
    }
    let total: u64 = COVERAGE.iter().map(|k| n(cov, &[k])).sum();
    assert_eq!(
        total,
        n(cov, &["sessions"]),
        "coverage categories partition the sessions"
    );
}

/// Inbound section expectations from ground truth at `at`.
fn check_inbound(rep: &Value, t: &Truth, at: i64) {
    let sec = &rep["inbound_client_certs"];
    let base = t.sessions.len() as u64;
    assert_eq!(sec["base_sessions"], base);
    let presenting: Vec<&Value> = t
        .sessions
        .iter()
        .filter(|v| !chain(v, "client_chain").is_empty())
        .collect();
    let (sessions, peers) = count(&presenting, "client_ip");
    assert_eq!(sec["sessions"], sessions);
    assert_eq!(sec["peers"], peers);
    assert_eq!(sec["share"].as_f64().unwrap(), share(sessions, base));
    let requested = t
        .sessions
        .iter()
        .filter(|v| v["tls"]["cert_requested"] == true)
        .count() as u64;
    let declined = t
        .sessions
        .iter()
        .filter(|v| v["tls"]["cert_requested"] == true && chain(v, "client_chain").is_empty())
        .count() as u64;
    assert_eq!(sec["requested"], requested);
    assert_eq!(sec["declined"], declined);
    let leaf = |v: &Value| &t.certs[chain(v, "client_chain")[0]];
    let no_ca: Vec<&Value> = presenting
        .iter()
        .copied()
        .filter(|v| !has_eku(leaf(v), "clientAuth"))
        .collect();
    let expired: Vec<&Value> = presenting
        .iter()
        .copied()
        .filter(|v| has_eku(leaf(v), "clientAuth") && date(leaf(v), "not_after") < at)
        .collect();
    assert_count(
        rep,
        &["inbound_client_certs", "without_client_auth"],
        &no_ca,
        "client_ip",
        base,
    );
    assert_count(
        rep,
        &["inbound_client_certs", "expired_at"],
        &expired,
        "client_ip",
        base,
    );
    let risk: Vec<&Value> = no_ca.iter().chain(&expired).copied().collect();
    assert_count(
        rep,
        &["inbound_client_certs", "at_risk"],
        &risk,
        "client_ip",
        base,
    );
    // Fixture PKI is private: no public-CA sunset.
    assert_eq!(n(sec, &["losing_client_auth", "sessions"]), 0);
    let row_sessions: u64 = sec["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| n(r, &["sessions"]))
        .sum();
    assert_eq!(
        row_sessions, sessions,
        "rows cover every presenting session"
    );
}

/// The name a sending MTA expects: SNI, else the banner host.
fn mx_name(v: &Value) -> Option<&str> {
    v["tls"]["sni"]
        .as_str()
        .or_else(|| v["smtp"]["banner_host"].as_str())
}

/// RFC 6125 strict match of one label wildcard, and whether a wildcard covers the name only
/// across several labels (relaxed).
fn name_status(sans: &[&str], name: &str) -> &'static str {
    if sans.iter().any(|s| s.eq_ignore_ascii_case(name)) {
        return "ok";
    }
    for s in sans {
        if let Some(suffix) = s.strip_prefix("*.") {
            if let Some(prefix) = name.strip_suffix(&format!(".{suffix}")) {
                return if prefix.contains('.') {
                    "wildcard_depth"
                } else {
                    "ok"
                };
            }
        }
    }
    "mismatch"
}

/// Failing strict-validation rules of one outbound session at `at`, from ground truth (the
/// test PKI root is a trust anchor; webpki refuses SHA-1 signatures and RSA under 2048 bits).
fn strict_rules(v: &Value, t: &Truth, at: i64) -> Vec<&'static str> {
    let mut r = Vec::new();
    let smtp = &v["smtp"];
    if smtp["starttls_offered"] == false && smtp["implicit_tls"] != true {
        r.push("tls.not_offered");
    }
    if let Some(code) = smtp["starttls_reply_code"].as_u64() {
        if !(200..300).contains(&code) {
            r.push("tls.refused");
        }
    }
    let version = v["tls"]["version"].as_str();
    if matches!(version, Some("TLS1.0" | "TLS1.1" | "SSL3.0")) {
        r.push("tls.legacy_version");
    }
    let sc = chain(v, "server_chain");
    if sc.is_empty() {
        if v["outcome"] == "established" && version != Some("TLS1.3") {
            r.push("tls.no_certificate");
        }
        return r;
    }
    let certs: Vec<&Value> = sc.iter().map(|fp| &t.certs[*fp]).collect();
    let leaf = certs[0];
    if leaf["self_signed"] == true && certs.len() == 1 {
        r.push("chain.self_signed");
    } else if certs.iter().any(|c| {
        let sig = c["signature_algorithm"]
            .as_str()
            .unwrap_or("")
            .to_lowercase();
        sig.contains("sha1") || (c["key_type"] == "RSA" && n(c, &["key_bits"]) < 2048)
    }) {
        r.push("chain.untrusted");
    }
    let sent = certs
        .iter()
        .enumerate()
        .filter(|(i, c)| *i == 0 || c["subject"] != c["issuer"]);
    if sent.clone().any(|(_, c)| date(c, "not_after") < at) {
        r.push("validity.expired");
    }
    if sent.clone().any(|(_, c)| date(c, "not_before") > at) {
        r.push("validity.not_yet_valid");
    }
    if !has_eku(leaf, "serverAuth") {
        r.push("eku.server_auth_missing");
    }
    let sans: Vec<&str> = leaf["san_dns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match name_status(&sans, mx_name(v).expect("fixtures have a name")) {
        "mismatch" => r.push("name.mismatch"),
        "wildcard_depth" => r.push("name.wildcard_depth"),
        _ => {}
    }
    r
}

fn check_strict(rep: &Value, t: &Truth, at: i64) {
    let sec = &rep["outbound_strict_validation"];
    let total = t.sessions.len() as u64;
    assert_eq!(sec["sessions"], total);
    assert_eq!(sec["base_sessions"], total);
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    let mut failing = Vec::new();
    let mut na = Vec::new();
    let mut pass = Vec::new();
    for v in &t.sessions {
        let rules = strict_rules(v, t, at);
        for r in &rules {
            *by_rule.entry(r).or_default() += 1;
        }
        if !rules.is_empty() {
            failing.push(v);
        } else if !(coverage_class(v) == "inspected"
            || (coverage_class(v) == "tls13_library" && !chain(v, "server_chain").is_empty()))
        {
            na.push(v);
        } else {
            pass.push(v);
        }
    }
    assert!(!failing.is_empty(), "the fixtures hold failing sessions");
    let got_rules: BTreeMap<String, u64> = sec["by_result_type"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            let rt = t["result_type"].as_str().unwrap().to_string();
            t["rules"].as_object().unwrap().iter().map(move |(k, v)| {
                assert_eq!(
                    mxcert::report::model::result_type(k),
                    rt,
                    "{k} listed under its RFC 8460 type"
                );
                (k.clone(), v.as_u64().unwrap())
            })
        })
        .collect();
    let want: BTreeMap<String, u64> = by_rule.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got_rules, want, "failing sessions per rule");
    assert_count(
        rep,
        &["outbound_strict_validation", "at_risk"],
        &failing,
        "server_ip",
        total,
    );
    assert_count(
        rep,
        &["outbound_strict_validation", "not_assessable"],
        &na,
        "server_ip",
        total,
    );
    assert_count(
        rep,
        &["outbound_strict_validation", "would_pass"],
        &pass,
        "server_ip",
        total,
    );
    let typed: u64 = sec["by_result_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| n(t, &["sessions"]))
        .sum();
    assert_eq!(
        typed,
        failing.len() as u64,
        "each failing session under one result type"
    );
}

fn check_our_cert(rep: &Value, t: &Truth, at: i64) {
    let base = t.sessions.len() as u64;
    let asked: Vec<&Value> = t
        .sessions
        .iter()
        .filter(|v| v["tls"]["cert_requested"] == true)
        .collect();
    let (sessions, peers) = count(&asked, "server_ip");
    let sec = &rep["outbound_our_certificate"];
    assert_eq!(sec["sessions"], sessions);
    assert_eq!(sec["peers"], peers);
    let presented: Vec<&Value> = asked
        .iter()
        .copied()
        .filter(|v| !chain(v, "client_chain").is_empty())
        .collect();
    let none: Vec<&Value> = asked
        .iter()
        .copied()
        .filter(|v| chain(v, "client_chain").is_empty())
        .collect();
    let leaf = |v: &Value| &t.certs[chain(v, "client_chain")[0]];
    let no_ca: Vec<&Value> = presented
        .iter()
        .copied()
        .filter(|v| !has_eku(leaf(v), "clientAuth"))
        .collect();
    let risk: Vec<&Value> = presented
        .iter()
        .copied()
        .filter(|v| !has_eku(leaf(v), "clientAuth") || date(leaf(v), "not_after") < at)
        .collect();
    assert_count(
        rep,
        &["outbound_our_certificate", "presented"],
        &presented,
        "server_ip",
        base,
    );
    assert_count(
        rep,
        &["outbound_our_certificate", "not_presented"],
        &none,
        "server_ip",
        base,
    );
    assert_count(
        rep,
        &["outbound_our_certificate", "without_client_auth"],
        &no_ca,
        "server_ip",
        base,
    );
    assert_count(
        rep,
        &["outbound_our_certificate", "at_risk"],
        &risk,
        "server_ip",
        base,
    );
    let ours: BTreeSet<&str> = presented
        .iter()
        .map(|v| chain(v, "client_chain")[0])
        .collect();
    let listed: BTreeSet<&str> = sec["our_certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cert_sha256"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ours, "what we present");
}

fn last_ts(t: &Truth) -> i64 {
    t.sessions.iter().map(ts).max().unwrap()
}

const STABLE_KEYS: &[(&str, &[&str])] = &[
    (
        "coverage",
        &[
            "sessions",
            "peers",
            "inspected",
            "tls13_library",
            "tls13_uninspectable",
            "no_tls",
            "incomplete",
            "rows",
        ],
    ),
    (
        "inbound_client_certs",
        &["sessions", "peers", "share", "at_risk", "rows"],
    ),
    (
        "outbound_our_certificate",
        &["sessions", "peers", "share", "at_risk", "rows"],
    ),
    (
        "outbound_strict_validation",
        &[
            "sessions",
            "peers",
            "share",
            "at_risk",
            "by_result_type",
            "rows",
        ],
    ),
];

#[test]
fn inbound_gateway_report_matches_ground_truth() {
    let rec = read("inbound", None, &["--local-net", "198.18.0.1/32"]);
    let t = truth(None);
    let rep = report_json(&[&rec], &[]);
    for (sec, keys) in STABLE_KEYS {
        for k in *keys {
            assert!(rep[sec].get(k).is_some(), "json key {sec}.{k}");
        }
    }
    let at = last_ts(&t);
    assert_eq!(rep["at"], mxcert::timefmt::rfc3339_ms(at * 1_000_000_000));
    check_coverage(&rep, &t);
    check_inbound(&rep, &t, at);
    assert!(
        n(
            &rep,
            &["inbound_client_certs", "without_client_auth", "sessions"]
        ) > 0
    );
    // Everything is inbound: the outbound sections are empty and the report says why.
    assert_eq!(n(&rep, &["outbound_our_certificate", "sessions"]), 0);
    assert_eq!(n(&rep, &["outbound_strict_validation", "sessions"]), 0);
    assert!(rep["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("No outbound sessions")));

    // Break dates: each presented client certificate's notAfter, with its sessions.
    let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
    for v in t
        .sessions
        .iter()
        .filter(|v| !chain(v, "client_chain").is_empty())
    {
        let leaf = chain(v, "client_chain")[0];
        let na = t.certs[leaf]["not_after"].as_str().unwrap().to_string();
        *want.entry((na, leaf.to_string())).or_default() += 1;
    }
    let got: BTreeMap<(String, String), u64> = rep["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["section"] == "inbound_client_certs" && e["event"] == "certificate_expires")
        .map(|e| {
            let key = (
                e["date"].as_str().unwrap().to_string(),
                e["cert_sha256"].as_str().unwrap().to_string(),
            );
            (key, n(e, &["sessions"]))
        })
        .collect();
    assert_eq!(got, want, "break dates of the inbound client certificates");

    // At a later date every client certificate of the test PKI (notAfter 2031-01-01) expired.
    let later = parse_date("2031-06-01").unwrap();
    let rep2 = report_json(&[&rec], &["--at", "2031-06-01"]);
    check_inbound(&rep2, &t, later);
    assert_eq!(
        n(&rep2, &["inbound_client_certs", "at_risk", "sessions"]),
        n(&rep2, &["inbound_client_certs", "sessions"])
    );

    // Text: the same numbers in aligned rows.
    let text = report(&[&rec], &["--format", "text"]);
    assert_eq!(text.code, 0);
    assert!(
        !text.stdout.contains('\x1b'),
        "no colour when not a terminal"
    );
    let sec = &rep["inbound_client_certs"];
    let row = text_row(&text.stdout, "without clientAuth");
    let c = &sec["without_client_auth"];
    assert_eq!(
        row[1..],
        [
            c["sessions"].to_string(),
            c["peers"].to_string(),
            format!("{:.1} %", c["share"].as_f64().unwrap() * 100.0)
        ]
    );
    for r in rep["coverage"]["rows"].as_array().unwrap() {
        let row = text_row(&text.stdout, r["category"].as_str().unwrap());
        assert_eq!(row[0], r["sessions"].to_string());
        assert_eq!(row[1], r["peers"].to_string());
    }
    let coloured = report(&[&rec], &["--format", "text", "--color", "always"]);
    assert!(coloured.stdout.contains("\x1b[1m"), "--color always paints");

    // HTML: the numbers in the tables.
    let html = report(&[&rec], &["--format", "html"]).stdout;
    for r in rep["coverage"]["rows"].as_array().unwrap() {
        let cell = format!(
            "<td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            r["category"].as_str().unwrap(),
            r["sessions"],
            r["peers"]
        );
        assert!(html.contains(&cell), "html coverage row {cell}");
    }
    let risk = &sec["at_risk"];
    let kpi = format!(
        "<b>{} sessions</b>inbound senders rejected under clientAuth enforcement<small>{} peer(s)",
        risk["sessions"], risk["peers"]
    );
    assert!(html.contains(&kpi), "html key figure {kpi}");
}

#[test]
fn outbound_sender_report_matches_ground_truth() {
    let rec = read(
        "outbound",
        None,
        &[
            "--local-net",
            "198.18.0.2/32",
            "--trust-anchors",
            "pcaps/certs/root-ca.crt",
        ],
    );
    let t = truth(None);
    let at = last_ts(&t);
    let rep = report_json(&[&rec], &[]);
    check_coverage(&rep, &t);
    check_our_cert(&rep, &t, at);
    check_strict(&rep, &t, at);
    assert_eq!(n(&rep, &["inbound_client_certs", "sessions"]), 0);

    // The exact detail of the offenders: the name and the SANs.
    let rows = rep["outbound_strict_validation"]["rows"]
        .as_array()
        .unwrap();
    let mismatch = rows
        .iter()
        .find(|r| r["rule"] == "name.mismatch")
        .expect("name.mismatch row");
    assert_eq!(mismatch["result_type"], "certificate-host-mismatch");
    assert!(
        mismatch["detail"]
            .as_str()
            .unwrap()
            .contains("other.example, www.other.example does not cover mx.test.example"),
        "{mismatch}"
    );
    let expired = rows
        .iter()
        .find(|r| r["rule"] == "validity.expired")
        .expect("expired row");
    assert!(
        expired["detail"]
            .as_str()
            .unwrap()
            .contains("expired on 2025-01-01"),
        "{expired}"
    );

    // --at moves validity only: in 2031-06 every fixture server certificate has expired.
    let later = parse_date("2031-06-01").unwrap();
    let rep2 = report_json(&[&rec], &["--at", "2031-06-01"]);
    check_strict(&rep2, &t, later);
    check_our_cert(&rep2, &t, later);
    assert!(
        n(
            &rep2,
            &["outbound_strict_validation", "at_risk", "sessions"]
        ) > n(&rep, &["outbound_strict_validation", "at_risk", "sessions"])
    );

    // tlsrpt: one RFC 8460 report per destination name, the same counts.
    let o = report(&[&rec], &["--format", "tlsrpt"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let tl: Value = serde_json::from_str(&o.stdout).unwrap();
    let reports = tl.as_array().unwrap();
    // A destination without SNI or greeting host name is named by its address.
    let names: BTreeSet<&str> = t
        .sessions
        .iter()
        .map(|v| mx_name(v).unwrap_or_else(|| v["server_ip"].as_str().unwrap()))
        .collect();
    let domains: BTreeSet<&str> = reports
        .iter()
        .map(|r| {
            r["policies"][0]["policy"]["policy-domain"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(domains, names, "one report per destination name");
    let (mut ok, mut failed) = (0, 0);
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for r in reports {
        for k in [
            "organization-name",
            "date-range",
            "contact-info",
            "report-id",
            "policies",
        ] {
            assert!(r.get(k).is_some(), "RFC 8460 key {k}");
        }
        let p = &r["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        ok += n(p, &["summary", "total-successful-session-count"]);
        let f = n(p, &["summary", "total-failure-session-count"]);
        failed += f;
        let mut detail_sum = 0;
        for d in p["failure-details"].as_array().unwrap() {
            for k in [
                "result-type",
                "sending-mta-ip",
                "receiving-ip",
                "receiving-mx-hostname",
                "failed-session-count",
            ] {
                assert!(d.get(k).is_some(), "RFC 8460 failure-details key {k}");
            }
            detail_sum += n(d, &["failed-session-count"]);
            *by_type
                .entry(d["result-type"].as_str().unwrap().into())
                .or_default() += n(d, &["failed-session-count"]);
        }
        assert_eq!(detail_sum, f, "failure details add up to the summary");
    }
    let sec = &rep["outbound_strict_validation"];
    assert_eq!(failed, n(sec, &["at_risk", "sessions"]));
    assert_eq!(ok, n(sec, &["would_pass", "sessions"]));
    let want: BTreeMap<String, u64> = sec["by_result_type"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| n(t, &["sessions"]) > 0)
        .map(|t| {
            (
                t["result_type"].as_str().unwrap().to_string(),
                n(t, &["sessions"]),
            )
        })
        .collect();
    assert_eq!(
        by_type, want,
        "tlsrpt result types agree with the json report"
    );

    // Text: the strict-validation counts and every result type row.
    let text = report(&[&rec], &["--format", "text", "--top", "50"]).stdout;
    let fail = &sec["at_risk"];
    assert_eq!(
        text_row(&text, "would fail")[..2],
        [fail["sessions"].to_string(), fail["peers"].to_string()]
    );
    for rt in sec["by_result_type"].as_array().unwrap() {
        let row = text_row(&text, rt["result_type"].as_str().unwrap());
        assert_eq!(row[0], rt["sessions"].to_string(), "{rt}");
    }
    let our = &rep["outbound_our_certificate"]["presented"];
    assert_eq!(
        text_row(&text, "we presented one")[..2],
        [our["sessions"].to_string(), our["peers"].to_string()]
    );

    // HTML: every offender's detail is in the page, escaped.
    let html = report(&[&rec], &["--format", "html"]).stdout;
    for r in rows {
        let d = mxcert::report::html::esc(r["detail"].as_str().unwrap());
        assert!(html.contains(&d), "html lacks offender detail {d}");
    }
}

#[test]
fn unknown_direction_counts_in_both_sections() {
    let cases = ["certreq_client_noeku", "server_selfsigned", "no_starttls"];
    let rec = read(
        "unknown",
        Some(&cases),
        &["--trust-anchors", "pcaps/certs/root-ca.crt"],
    );
    let t = truth(Some(&cases));
    let at = last_ts(&t);
    let rep = report_json(&[&rec], &[]);
    let total = t.sessions.len() as u64;
    assert_eq!(rep["coverage"]["by_direction"]["unknown"], total);
    check_coverage(&rep, &t);
    check_inbound(&rep, &t, at);
    check_strict(&rep, &t, at);
    assert_eq!(n(&rep, &["inbound_client_certs", "base_sessions"]), total);
    assert_eq!(
        n(&rep, &["outbound_strict_validation", "unknown_direction"]),
        total
    );
    assert!(rep["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("unknown direction")));
}

#[test]
fn window_and_repeated_inputs() {
    let rec = read("window", None, &["--local-net", "198.18.0.1/32"]);
    let t = truth(None);
    let mut times: Vec<i64> = t.sessions.iter().map(ts).collect();
    times.sort();
    let (since, until) = (times[times.len() / 4], times[3 * times.len() / 4]);
    let fmt = |x: i64| mxcert::timefmt::rfc3339_ms(x * 1_000_000_000);
    // The same file twice: sessions count once.
    let rep = report_json(
        &[&rec, &rec],
        &["--since", &fmt(since), "--until", &fmt(until)],
    );
    let want = times.iter().filter(|&&x| x >= since && x < until).count() as u64;
    assert!(want > 0 && want < t.sessions.len() as u64);
    assert_eq!(n(&rep, &["coverage", "sessions"]), want);
    assert!(rep["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("appeared twice")));
}

#[test]
fn unusable_input_says_what_to_do() {
    let o = report(&[Path::new("/nonexistent/records.jsonl")], &[]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("/nonexistent/records.jsonl") && o.stderr.contains("mxcert read"),
        "{}",
        o.stderr
    );
    let o = report(
        &[Path::new("pcaps/README.md")],
        &["--since", "2026-12-01", "--until", "2026-11-01"],
    );
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("is not before --until"), "{}", o.stderr);
    let o = report(&[Path::new("pcaps/README.md")], &["--format", "json"]);
    assert_eq!(o.code, 0, "a file of non-records is data: {}", o.stderr);
    let rep: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(rep["coverage"]["sessions"], 0);
    assert!(rep["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().contains("were skipped")));
}

#[test]
fn html_is_self_contained() {
    let rec = read("selfcontained", None, &["--local-net", "198.18.0.2/32"]);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-selfcontained/r.html");
    let o = report(
        &[&rec],
        &["--format", "html", "--out", out.to_str().unwrap()],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let html = std::fs::read_to_string(&out).unwrap();
    for bad in ["src=", "href=", "url(", "@import", "http://", "https://"] {
        assert!(!html.contains(bad), "html must load nothing, found {bad:?}");
    }
    assert!(html.contains("Content-Security-Policy"));
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 3);
}
