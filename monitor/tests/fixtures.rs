//! Every capture in `pcaps/` (made by real Postfix/Exim/swaks/openssl, see pcaps/make.sh) yields
//! exactly the records in the `.expected.json` beside it, field by field. The expectations come
//! from the fixture configuration, tshark and python-cryptography, never from mxcert.

mod common;

use std::collections::BTreeMap;

use common::{compare, mxcert_read, repo_root};
use serde_json::Value;

#[test]
fn every_fixture_matches_its_expected_records() {
    let dir = repo_root().join("pcaps");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("pcaps/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "expected fixtures in {}", dir.display());
    let mut errs = Vec::new();
    for case in &cases {
        let exp: Value = serde_json::from_slice(&std::fs::read(case).unwrap()).unwrap();
        let capture = dir.join(exp["capture"].as_str().unwrap());
        let args: Vec<&str> = exp["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let run = mxcert_read(&[&capture], &args);
        let name = capture.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(run.code, 0, "{name}: exit code, stderr: {}", run.stderr);

        let want = exp["sessions"].as_array().unwrap();
        // Sessions are matched by their 4-tuple and start time, not by output order.
        let key = |s: &Value| {
            format!(
                "{} {}:{} {}:{}",
                s["ts"], s["client_ip"], s["client_port"], s["server_ip"], s["server_port"]
            )
        };
        let got: BTreeMap<String, &Value> = run.sessions.iter().map(|s| (key(s), s)).collect();
        if run.sessions.len() != want.len() {
            errs.push(format!(
                "{name}: {} sessions, expected {}",
                run.sessions.len(),
                want.len()
            ));
        }
        for w in want {
            match got.get(&key(w)) {
                Some(g) => compare(&format!("{name} session {}", key(w)), w, g, &mut errs),
                None => errs.push(format!("{name}: no session {}", key(w))),
            }
        }

        let want = exp["certificates"].as_array().unwrap();
        let got: BTreeMap<&str, &Value> = run
            .certificates
            .iter()
            .map(|c| (c["sha256"].as_str().unwrap(), c))
            .collect();
        if run.certificates.len() != want.len() {
            errs.push(format!(
                "{name}: {} certificates, expected {}",
                run.certificates.len(),
                want.len()
            ));
        }
        for w in want {
            let fp = w["sha256"].as_str().unwrap();
            match got.get(fp) {
                Some(g) => compare(&format!("{name} cert {fp}"), w, g, &mut errs),
                None => errs.push(format!("{name}: no certificate {fp}")),
            }
        }
    }
    assert!(
        errs.is_empty(),
        "{} mismatches over {} fixtures:\n{}",
        errs.len(),
        cases.len(),
        errs.join("\n")
    );
}
