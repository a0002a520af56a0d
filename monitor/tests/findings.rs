//! Every rule of the classification is tested on the real-MTA fixture captures of `pcaps/`
//! (made by real Postfix/Exim/swaks/openssl, see pcaps/README.md): each
//! `pcaps/<case>.findings.json` holds the arguments (validation time always pinned with
//! `--at`) and the findings expected for that capture, derived from the fixture's ground truth
//! (the certificates configured in `pcaps/certs/`, their dates, names, EKUs, keys and
//! signatures, the SMTP/TLS behaviour recorded in `<case>.expected.json`) and the rule
//! definitions (`monitor/src/classify/mod.rs`, `policy/default.toml`), never from mxcert's
//! output.
//!
//! File format:
//! ```json
//! { "capture": "<case>.pcap",
//!   "args": ["--at", "2026-12-01T00:00:00Z", "--trust-anchors", "pcaps/certs/root-ca.crt"],
//!   "findings": [{"scenario": "..", "rule": "..", "role": "..", "verdict": "..",
//!                 "effective": ".." | null, "cert_sha256": ".." | null,
//!                 "detail_contains": ".."}],
//!   "absent": [{"rule": "..", "role": ".."}] }
//! ```
//! A finding is matched on scenario + rule + role; then verdict, `effective` (null = must be
//! null), `cert_sha256` (when the key is present; null = must be null) and the detail
//! substring are compared. `absent` rules must not produce a non-pass finding for that role.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{mxcert_read, repo_root, shared_dir};
use serde_json::Value;

/// Arguments naming files (relative to the repository root in the findings files).
const PATH_ARGS: &[&str] = &["--trust-anchors", "--policy", "--mx-names"];

fn findings_files() -> Vec<PathBuf> {
    let dir = repo_root().join("pcaps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("pcaps/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".findings.json"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} must be a string in {v}"))
}

/// Makes the arguments that name files absolute against the repository root.
fn absolute_args(args: &[String]) -> Vec<String> {
    let root = repo_root();
    let mut out = Vec::with_capacity(args.len());
    let mut path_next = false;
    for a in args {
        if path_next && Path::new(a).is_relative() {
            out.push(root.join(a).to_string_lossy().into_owned());
        } else {
            out.push(a.clone());
        }
        path_next = PATH_ARGS.contains(&a.as_str());
    }
    out
}

/// Compares one expected finding with the candidates of the same scenario + rule + role;
/// returns an error message if none matches in every given field.
fn check_expected(name: &str, want: &Value, got: &[Value]) -> Option<String> {
    let (scenario, rule, role) = (
        str_field(want, "scenario"),
        str_field(want, "rule"),
        str_field(want, "role"),
    );
    let candidates: Vec<&Value> = got
        .iter()
        .filter(|f| f["scenario"] == scenario && f["rule"] == rule && f["role"] == role)
        .collect();
    if candidates.is_empty() {
        return Some(format!(
            "{name}: no finding {scenario}/{rule}/{role} (expected {}, effective {})",
            want["verdict"], want["effective"]
        ));
    }
    let mut diffs = Vec::new();
    for c in &candidates {
        let mut d = Vec::new();
        if c["verdict"] != want["verdict"] {
            d.push(format!(
                "verdict expected {}, got {}",
                want["verdict"], c["verdict"]
            ));
        }
        if c["effective"] != want["effective"] {
            d.push(format!(
                "effective expected {}, got {}",
                want["effective"], c["effective"]
            ));
        }
        if let Some(fp) = want.get("cert_sha256") {
            if &c["cert_sha256"] != fp {
                d.push(format!(
                    "cert_sha256 expected {fp}, got {}",
                    c["cert_sha256"]
                ));
            }
        }
        if let Some(sub) = want.get("detail_contains").and_then(Value::as_str) {
            let detail = c["detail"].as_str().unwrap_or_default();
            if !detail.contains(sub) {
                d.push(format!("detail {detail:?} lacks {sub:?}"));
            }
        }
        if d.is_empty() {
            return None;
        }
        diffs.push(d.join("; "));
    }
    Some(format!(
        "{name}: {scenario}/{rule}/{role}: {}",
        diffs.join(" | other session: ")
    ))
}

/// Runs one findings file; returns its mismatches.
fn check_file(path: &Path) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let spec = load(path);
    let mut errs = Vec::new();
    let capture = repo_root().join("pcaps").join(str_field(&spec, "capture"));
    let args: Vec<String> = spec["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: args must be an array"))
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect();
    if !args.iter().any(|a| a == "--at") {
        errs.push(format!(
            "{name}: validation time not pinned (no --at in args)"
        ));
    }
    let args = absolute_args(&args);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = mxcert_read(&[&capture], &argv);
    if run.code != 0 {
        errs.push(format!(
            "{name}: exit code {}, stderr: {}",
            run.code, run.stderr
        ));
        return errs;
    }
    for want in spec["findings"].as_array().expect("findings array") {
        errs.extend(check_expected(&name, want, &run.findings));
    }
    for a in spec["absent"].as_array().expect("absent array") {
        let (rule, role) = (str_field(a, "rule"), str_field(a, "role"));
        for f in &run.findings {
            if f["rule"] == rule && f["role"] == role && f["verdict"] != "pass" {
                errs.push(format!(
                    "{name}: unexpected {} {}/{rule}/{role} (effective {}): {}",
                    f["verdict"], f["scenario"], f["effective"], f["detail"]
                ));
            }
        }
    }
    errs
}

#[test]
fn every_fixture_yields_its_expected_findings() {
    let files = findings_files();
    assert!(
        files.len() >= 20,
        "expected findings files in {}/pcaps",
        repo_root().display()
    );
    let errs: Vec<String> = files.iter().flat_map(|f| check_file(f)).collect();
    assert!(
        errs.is_empty(),
        "{} mismatches over {} findings files:\n{}",
        errs.len(),
        files.len(),
        errs.join("\n")
    );
}

/// The client of `zeek__client-certificate.pcap` (MANIFEST.md, section 13) presents
/// CN=johanna@corelight.com (EKU clientAuth + emailProtection, 2023-02-28T15:59:27Z ..
/// 2024-02-28T15:59:27Z) with its issuer Actalis Client Authentication CA G3, which chains to
/// Actalis Authentication Root CA, a Mozilla root. No issuer cutoff of the default policy
/// matches Actalis, so the default cutoff 2026-06-15 applies; effective is the earlier of the
/// notAfter and that cutoff.
const JOHANNA_LEAF: &str = "a1f55d76849597ea678caa765fddf967cb1d9150a29c4e4479c58e0bafaaedc3";
const SUNSET_EXPECTED: &str = r#"{"scenario": "clientauth_enforcement",
    "rule": "eku.client_auth_sunset", "role": "client", "verdict": "warn",
    "effective": "2024-02-28T15:59:27.000Z",
    "cert_sha256": "a1f55d76849597ea678caa765fddf967cb1d9150a29c4e4479c58e0bafaaedc3",
    "detail_contains": "chains to a public root"}"#;

#[test]
fn public_client_certificate_with_client_auth_is_sunset() {
    let pcap = shared_dir()
        .join("pcaps-external")
        .join("zeek__client-certificate.pcap");
    if !pcap.exists() {
        eprintln!(
            "skipped: {} is missing (../shared not present beside the repository)",
            pcap.display()
        );
        return;
    }
    let run = mxcert_read(
        &[&pcap],
        &["--ports", "443", "--at", "2026-12-01T00:00:00Z"],
    );
    assert_eq!(run.code, 0, "exit code, stderr: {}", run.stderr);
    let want: Value = serde_json::from_str(SUNSET_EXPECTED).unwrap();
    let mut errs: Vec<String> =
        check_expected("zeek__client-certificate.pcap", &want, &run.findings)
            .into_iter()
            .collect();
    // The leaf keeps clientAuth: eku.client_auth_missing must not fire for it.
    for f in &run.findings {
        if f["rule"] == "eku.client_auth_missing"
            && f["cert_sha256"] == JOHANNA_LEAF
            && f["verdict"] != "pass"
        {
            errs.push(format!("unexpected eku.client_auth_missing: {f}"));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// Every rule mxcert knows has at least one expected `fail` or `warn`.
#[test]
fn every_rule_is_covered_by_an_expected_failure_or_warning() {
    let mut covered = BTreeSet::new();
    let mut expectations: Vec<Value> = findings_files()
        .iter()
        .flat_map(|f| load(f)["findings"].as_array().cloned().unwrap_or_default())
        .collect();
    expectations.push(serde_json::from_str(SUNSET_EXPECTED).unwrap());
    let mut unknown = Vec::new();
    for e in &expectations {
        let rule = str_field(e, "rule");
        if !mxcert::classify::policy::RULES.contains(&rule) {
            unknown.push(rule.to_string());
        }
        if e["verdict"] == "fail" || e["verdict"] == "warn" {
            covered.insert(rule.to_string());
        }
    }
    assert!(
        unknown.is_empty(),
        "expectations name unknown rules: {unknown:?}"
    );
    let missing: Vec<&str> = mxcert::classify::policy::RULES
        .iter()
        .copied()
        .filter(|r| !covered.contains(*r))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without an expected fail/warn on any fixture: {missing:?}"
    );
}

/// A finding's detail is read by people: webpki's `*Context` errors, whose Debug form lists
/// every supported algorithm as byte arrays, are named, not dumped.
#[test]
fn webpki_errors_in_details_stay_readable() {
    let pcap = repo_root().join("pcaps/weak_key_sha1.pcap");
    let run = mxcert_read(
        &[&pcap],
        &[
            "--at",
            "2026-12-01T00:00:00Z",
            "--trust-anchors",
            &repo_root()
                .join("pcaps/certs/root-ca.crt")
                .to_string_lossy(),
        ],
    );
    assert_eq!(run.code, 0, "exit code, stderr: {}", run.stderr);
    let untrusted: Vec<&str> = run
        .findings
        .iter()
        .filter(|f| f["rule"] == "chain.untrusted" && f["verdict"] == "fail")
        .map(|f| f["detail"].as_str().unwrap_or_default())
        .collect();
    assert!(!untrusted.is_empty(), "no chain.untrusted failure");
    for d in untrusted {
        assert!(
            d.contains("webpki: UnsupportedSignatureAlgorithm") && d.contains("(…)"),
            "webpki error not named: {d}"
        );
        assert!(d.len() < 400, "detail of {} bytes: {d}", d.len());
    }
}
