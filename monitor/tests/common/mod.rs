//! Helpers shared by the integration tests: run the real `mxcert` binary and compare records.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `../shared` beside the repository (present in CI and on developer machines).
pub fn shared_dir() -> PathBuf {
    repo_root().join("..").join("shared")
}

/// Output of one `mxcert read` run.
pub struct Run {
    pub sessions: Vec<Value>,
    pub certificates: Vec<Value>,
    pub findings: Vec<Value>,
    pub stderr: String,
    pub code: i32,
}

pub fn mxcert_read(files: &[&Path], args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_mxcert"))
        .arg("read")
        .args(files)
        .args(["--out", "-"])
        .args(args)
        .output()
        .expect("run mxcert");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 records");
    let mut sessions = Vec::new();
    let mut certificates = Vec::new();
    let mut findings = Vec::new();
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("record is not JSON ({e}): {line}"));
        match v["record"].as_str() {
            Some("session") => sessions.push(v),
            Some("certificate") => certificates.push(v),
            Some("finding") => findings.push(v),
            other => panic!("unknown record kind {other:?}: {line}"),
        }
    }
    Run {
        sessions,
        certificates,
        findings,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// Every key of `expected` must be in `actual` with the same value (recursively for objects);
/// mismatches are appended to `errs` with their JSON path.
pub fn compare(path: &str, expected: &Value, actual: &Value, errs: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => compare(&format!("{path}.{k}"), ev, av, errs),
                    None => errs.push(format!("{path}.{k}: missing (expected {ev})")),
                }
            }
        }
        _ if expected == actual => {}
        _ => errs.push(format!("{path}: expected {expected}, got {actual}")),
    }
}
