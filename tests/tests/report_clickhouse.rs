//! The impact report and ClickHouse: the same numbers from either side.
//!
//! 1. The report's numbers agree with the SQL query pack (`schema/queries/*.sql`) run on the
//!    current ClickHouse engine (chdb) over the same records: the fixtures read as the
//!    receiving gateway (198.18.0.1, all inbound) and as the sending one (198.18.0.2, all
//!    outbound). The fixture PKI is private, so `eku.client_auth_sunset` never fires on it; as
//!    in the query-pack test, sunset findings are added for the inbound sessions presenting a
//!    clientAuth certificate, as the classifier would write them were the root public.
//! 2. `--clickhouse` gives the same report as `--from` on the same records: on the current
//!    engine (the report's queries run in chdb, modern schema) and on a real `clickhouse-server`
//!    (Debian's 18.16, compat schema) that `mxcert read --clickhouse` streamed into.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mxcert::classify::policy::Policy;
use mxcert::report::clickhouse::{queries, ClickHouseInput, Dialect};
use mxcert::report::{build, Dataset, Input, JsonlInput, ReportOptions, Window};
use mxcert_system_tests::clickhouse::{
    fixture_captures, fixture_records, mxcert_bin, query_pack, skip_or_fail, Chdb, Server,
};
use mxcert_system_tests::repo_root;
use serde_json::{json, Value};

/// HTTP port of the private server (native protocol on the next one); the report's range.
const PORT: u16 = 19241;
const CUTOFF: &str = "2026-06-15T00:00:00.000Z";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mxreport-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `mxcert schema apply` against the private server.
fn schema_apply(url: &str) {
    let o = Command::new(mxcert_bin())
        .args(["schema", "apply", "--clickhouse", url])
        .env_remove("MXCERT_CLICKHOUSE_USER")
        .env_remove("MXCERT_CLICKHOUSE_PASSWORD")
        .output()
        .expect("mxcert schema apply runs");
    assert!(
        o.status.success(),
        "schema apply: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn report_json(args: &[&str]) -> Value {
    let o = Command::new(mxcert_bin())
        .arg("report")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("mxcert report runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json report")
}

fn n(v: &Value) -> u64 {
    match v {
        Value::Number(x) => x.as_u64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a count: {other}"),
    }
}

fn sum(rows: &[Value], key: &str) -> u64 {
    rows.iter().map(|r| n(&r[key])).sum()
}

/// Sunset findings for the inbound sessions presenting a clientAuth certificate.
fn sunset_findings(records: &[Value], out: &Path) {
    let certs: BTreeMap<&str, &Value> = records
        .iter()
        .filter(|r| r["record"] == "certificate")
        .map(|r| (r["sha256"].as_str().unwrap(), r))
        .collect();
    let mut lines = String::new();
    for r in records.iter().filter(|r| r["record"] == "session") {
        let Some(leaf) = r["tls"]["client_chain"].get(0).and_then(Value::as_str) else {
            continue;
        };
        if !certs[leaf]["eku"]
            .as_array()
            .unwrap()
            .contains(&json!("clientAuth"))
        {
            continue;
        }
        let not_after = certs[leaf]["not_after"].as_str().unwrap();
        let f = json!({
            "record": "finding", "ts": r["ts"], "session_id": r["session_id"], "role": "client",
            "cert_sha256": leaf, "scenario": "clientauth_enforcement",
            "rule": "eku.client_auth_sunset", "verdict": "warn",
            "effective": not_after.min(CUTOFF), "detail": "public root assumed",
            "direction": r["direction"], "client_ip": r["client_ip"], "server_ip": r["server_ip"],
            "server_port": r["server_port"], "peer_name": null, "validation_time": r["ts"],
        });
        lines.push_str(&format!("{f}\n"));
    }
    assert!(
        !lines.is_empty(),
        "the fixtures present clientAuth certificates"
    );
    std::fs::write(out, lines).unwrap();
}

#[test]
fn report_numbers_agree_with_the_query_pack() {
    let chdb = match Chdb::find() {
        Ok(c) => c,
        Err(reason) => return skip_or_fail(&reason),
    };
    let dir = tmpdir("pack");
    let (inf, outf, sunf) = (
        dir.join("in.jsonl"),
        dir.join("out.jsonl"),
        dir.join("sunset.jsonl"),
    );
    let inbound = fixture_records(&inf, "198.18.0.1/32", &[]);
    fixture_records(&outf, "198.18.0.2/32", &[]);
    sunset_findings(&inbound, &sunf);

    let pack = query_pack();
    let names: Vec<&str> = pack.iter().map(|(n, _)| n.as_str()).collect();
    let sql: Vec<String> = pack.iter().map(|(_, q)| q.clone()).collect();
    let res = chdb.load_and_query(
        &[(&inf, "mx-in"), (&sunf, "mx-in"), (&outf, "mx-out")],
        &sql,
    );
    let q = |prefix: &str| -> &Vec<Value> {
        let i = names
            .iter()
            .position(|n| n.starts_with(prefix))
            .unwrap_or_else(|| panic!("query {prefix}_* in the pack: {names:?}"));
        &res[i]
    };
    let rin = report_json(&[
        "--from",
        inf.to_str().unwrap(),
        "--from",
        sunf.to_str().unwrap(),
    ]);
    let rout = report_json(&["--from", outf.to_str().unwrap()]);
    let ib = &rin["inbound_client_certs"];
    let our = &rout["outbound_our_certificate"];
    let st = &rout["outbound_strict_validation"];

    // Q1: senders without clientAuth.
    let q1 = q("1");
    assert!(!q1.is_empty());
    assert_eq!(
        sum(q1, "sessions"),
        n(&ib["without_client_auth"]["sessions"]),
        "Q1 sessions"
    );
    let ips: BTreeSet<String> = q1
        .iter()
        .flat_map(|r| {
            r["client_ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
        })
        .collect();
    assert_eq!(
        ips.len() as u64,
        n(&ib["without_client_auth"]["peers"]),
        "Q1 senders"
    );

    // Q2: clientAuth sunset, by effective date.
    let q2 = q("2");
    assert_eq!(
        sum(q2, "sessions"),
        n(&ib["losing_client_auth"]["sessions"]),
        "Q2 sessions"
    );
    let days: BTreeSet<String> = q2
        .iter()
        .map(|r| r["effective_date"].as_str().unwrap().to_string())
        .collect();
    let mine: BTreeSet<String> = ib["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            r["loses_client_auth_on"]
                .as_str()
                .map(|d| d[..10].to_string())
        })
        .collect();
    assert_eq!(days, mine, "Q2 effective dates");

    // Q3: destinations requesting client certificates.
    let q3 = q("3");
    assert!(!q3.is_empty());
    assert_eq!(sum(q3, "sessions"), n(&our["sessions"]), "Q3 sessions");
    assert_eq!(
        sum(q3, "presented"),
        n(&our["presented"]["sessions"]),
        "Q3 presented"
    );
    assert_eq!(
        sum(q3, "declined"),
        n(&our["not_presented"]["sessions"]),
        "Q3 declined"
    );
    let dests: BTreeSet<&str> = q3
        .iter()
        .map(|r| r["destination_ip"].as_str().unwrap())
        .collect();
    assert_eq!(dests.len() as u64, n(&our["peers"]), "Q3 destinations");

    // Q4: strict-validation failures per rule (Q4 reads the strict_validation scenario; the
    // report also counts the MTA-STS rules on STARTTLS and TLS versions, compared elsewhere).
    let strict_rules: BTreeSet<&str> = Policy::default_policy()
        .scenarios
        .iter()
        .find(|s| s.name == "strict_validation")
        .expect("default policy has strict_validation")
        .rules
        .iter()
        .copied()
        .collect();
    let mut q4: BTreeMap<String, u64> = BTreeMap::new();
    for r in q("4") {
        let rule = r["rule"].as_str().unwrap();
        *q4.entry(rule.to_string()).or_default() += n(&r["sessions"]);
        assert_eq!(
            r["result_type"].as_str().unwrap(),
            mxcert::report::model::result_type(rule),
            "{r}"
        );
    }
    let mut mine: BTreeMap<String, u64> = BTreeMap::new();
    for t in st["by_result_type"].as_array().unwrap() {
        for (rule, c) in t["rules"].as_object().unwrap() {
            if strict_rules.contains(rule.as_str()) {
                mine.insert(rule.clone(), n(c));
            }
        }
    }
    assert!(!q4.is_empty());
    assert_eq!(
        q4, mine,
        "Q4 failing sessions per rule (destinations' certificates)"
    );

    // Q5: coverage per direction.
    let q5 = q("5");
    for (dir, rep) in [("inbound", &rin), ("outbound", &rout)] {
        let cov = &rep["coverage"];
        let rows: Vec<&Value> = q5.iter().filter(|r| r["direction"] == dir).collect();
        let get = |c: &str| {
            rows.iter()
                .filter(|r| r["coverage"] == c)
                .map(|r| n(&r["sessions"]))
                .sum::<u64>()
        };
        let total: u64 = rows.iter().map(|r| n(&r["sessions"])).sum();
        assert_eq!(total, n(&cov["by_direction"][dir]), "Q5 {dir} sessions");
        assert_eq!(get("no TLS"), n(&cov["no_tls"]), "Q5 {dir} no TLS");
        assert_eq!(
            get("uninspectable (TLS1.3)"),
            n(&cov["tls13_uninspectable"]),
            "Q5 {dir} TLS 1.3"
        );
        assert_eq!(
            get("TLS1.3 via TLS library"),
            n(&cov["tls13_library"]),
            "Q5 {dir} TLS 1.3 through the library"
        );
        // Q5 splits the rest by negotiated version (unknown: no ServerHello); the report by
        // whether the server's certificate was seen. Both partition the same sessions.
        let versions =
            total - get("no TLS") - get("uninspectable (TLS1.3)") - get("TLS1.3 via TLS library");
        assert_eq!(
            versions,
            n(&cov["inspected"]) + n(&cov["incomplete"]),
            "Q5 {dir} TLS rest"
        );
        assert!(
            get("unknown") <= n(&cov["incomplete"]),
            "no ServerHello implies no certificate"
        );
    }

    // Q6: failing sessions per rule over time (both gateways).
    let mut q6: BTreeMap<String, u64> = BTreeMap::new();
    for r in q("6") {
        *q6.entry(r["rule"].as_str().unwrap().to_string())
            .or_default() += n(&r["failing_sessions"]);
    }
    let mut trend: BTreeMap<String, u64> = BTreeMap::new();
    for rep in [&rin, &rout] {
        for s in rep["trend"]["series"].as_array().unwrap() {
            let total: u64 = s["counts"].as_array().unwrap().iter().map(n).sum();
            *trend
                .entry(s["rule"].as_str().unwrap().to_string())
                .or_default() += total;
        }
    }
    assert_eq!(q6, trend, "Q6 failing sessions per rule");
    eprintln!(
        "agreement: Q1 {} sessions, Q2 {}, Q3 {}, Q4 {} rules, Q5 {} rows, Q6 {} rules",
        sum(q1, "sessions"),
        sum(q2, "sessions"),
        sum(q3, "sessions"),
        q4.len(),
        q5.len(),
        q6.len()
    );
}

/// The report model as JSON, without the input names (they differ by design).
fn model(input: &mut dyn Input) -> Value {
    let mut ds = Dataset::default();
    input
        .load(&Window::default(), &mut ds)
        .expect("input loads");
    ds.finish();
    let mut v = serde_json::to_value(build(&ds, &ReportOptions::default())).unwrap();
    v.as_object_mut().unwrap().remove("inputs");
    v
}

#[test]
fn clickhouse_input_matches_jsonl_on_the_current_engine() {
    let chdb = match Chdb::find() {
        Ok(c) => c,
        Err(reason) => return skip_or_fail(&reason),
    };
    let dir = tmpdir("modern");
    let file = dir.join("out.jsonl");
    fixture_records(&file, "198.18.0.2/32", &[]);
    let qs = queries(Dialect::Modern, &Window::default(), None).to_vec();
    let answers = chdb.load_and_query(&[(&file, "gw")], &qs);
    let texts: Vec<String> = answers
        .iter()
        .map(|rows| rows.iter().map(|r| format!("{r}\n")).collect())
        .collect();
    let mut ch = ClickHouseInput {
        name: "chdb".into(),
        dialect: Dialect::Modern,
        sensor: None,
        run: Box::new(move |sql: &str| {
            let i = qs
                .iter()
                .position(|q| q == sql)
                .expect("one of the report's queries");
            Ok(texts[i].clone())
        }),
    };
    let from_ch = model(&mut ch);
    let from_jsonl = model(&mut JsonlInput { path: file });
    assert!(from_jsonl["coverage"]["sessions"].as_u64().unwrap() > 0);
    assert_eq!(from_ch, from_jsonl);
}

#[test]
fn report_reads_a_clickhouse_server() {
    if let Err(reason) = Server::binary() {
        return skip_or_fail(&reason);
    }
    let server = Server::start(PORT).expect("private clickhouse-server starts");
    let url = server.url();
    schema_apply(&url);
    let dir = tmpdir("server");
    let jsonl = dir.join("records.jsonl");
    let st = Command::new(mxcert_bin())
        .current_dir(repo_root())
        .arg("read")
        .args(fixture_captures())
        .args([
            "--local-net",
            "198.18.0.2/32",
            "--trust-anchors",
            "pcaps/certs/root-ca.crt",
        ])
        .args(["--clickhouse", &url, "--sensor", "gw1", "-q", "--spool-dir"])
        .arg(dir.join("spool"))
        .arg("--out")
        .arg(&jsonl)
        .env_remove("MXCERT_CLICKHOUSE_USER")
        .env_remove("MXCERT_CLICKHOUSE_PASSWORD")
        .status()
        .expect("mxcert read runs");
    assert!(st.success());
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("inputs");
        v
    };
    for at in ["2026-11-24", "2031-06-01"] {
        let from_ch = strip(report_json(&[
            "--clickhouse",
            &url,
            "--sensor",
            "gw1",
            "--at",
            at,
        ]));
        let from_file = strip(report_json(&[
            "--from",
            jsonl.to_str().unwrap(),
            "--at",
            at,
        ]));
        assert!(n(&from_file["outbound_strict_validation"]["at_risk"]["sessions"]) > 0);
        assert_eq!(
            from_ch, from_file,
            "--clickhouse and --from disagree at {at}"
        );
    }
    // The HTML says how to reproduce each number from the same store.
    let html = Command::new(mxcert_bin())
        .args([
            "report",
            "--format",
            "html",
            "--clickhouse",
            &url,
            "--sensor",
            "gw1",
        ])
        .output()
        .expect("mxcert report runs");
    assert!(html.status.success());
    let html = String::from_utf8(html.stdout).unwrap();
    assert!(html.contains(&format!(
        "mxcert report --clickhouse {url} --sensor gw1 --at"
    )));
    // Another gateway's name selects nothing.
    let none = report_json(&["--clickhouse", &url, "--sensor", "elsewhere"]);
    assert_eq!(none["coverage"]["sessions"], 0);
}
