//! The modern schema and every query of `schema/queries/` on the current ClickHouse engine
//! (chdb), over the records `mxcert read` writes for the fixture captures. Each query's rows
//! are compared with the answer computed here from the same records.
//!
//! The fixtures are read twice: as the receiving gateway (`--local-net 198.18.0.1/32`, sensor
//! `mx-in`: every session inbound) and as the sending one (`198.18.0.2/32`, sensor `mx-out`:
//! every session outbound). Their certificates chain to a private root, so
//! `eku.client_auth_sunset` (public roots only) never fires on them; for Q2 the test adds the
//! findings the classifier would emit were that root public: one per inbound session presenting
//! a clientAuth certificate, effective at the earlier of its notAfter and the default cutoff.

use mxcert_system_tests::clickhouse::{fixture_records, query_pack, skip_or_fail, Chdb};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const CUTOFF: &str = "2026-06-15T00:00:00.000Z";

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

/// `2026-11-23T12:09:34.975Z` as ClickHouse prints DateTime64(3, 'UTC').
fn ch_time(t: &str) -> String {
    t.trim_end_matches('Z').replace('T', " ")
}

fn host(ip: &str) -> String {
    ip.trim_start_matches("::ffff:").to_string()
}

/// Values compared as text: ClickHouse may quote 64-bit integers in JSON.
fn canon(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(canon).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn canon_rows(rows: &[Value]) -> Vec<BTreeMap<String, String>> {
    rows.iter()
        .map(|r| {
            r.as_object()
                .expect("row object")
                .iter()
                .map(|(k, v)| (k.clone(), canon(v)))
                .collect()
        })
        .collect()
}

struct Data {
    /// (sensor, record)
    sessions: Vec<(String, Value)>,
    findings: Vec<(String, Value)>,
}

impl Data {
    fn ehlo(&self, sensor: &str, session_id: &str) -> String {
        self.sessions
            .iter()
            .find(|(se, r)| se == sensor && s(r, &["session_id"]) == session_id)
            .map(|(_, r)| s(r, &["smtp", "ehlo"]).to_string())
            .unwrap_or_default()
    }
}

/// Q1/Q2 shape: findings grouped by (key, sender host).
fn sender_rows(d: &Data, rule: &str, with_date: bool) -> Vec<Value> {
    type Acc = (
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<(String, String)>,
        String,
    );
    let mut groups: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for (sensor, f) in &d.findings {
        if s(f, &["rule"]) != rule
            || s(f, &["role"]) != "client"
            || s(f, &["direction"]) != "inbound"
            || s(f, &["scenario"]) != "clientauth_enforcement"
            || (!with_date && s(f, &["verdict"]) != "fail")
        {
            continue;
        }
        let ehlo = d.ehlo(sensor, s(f, &["session_id"]));
        let sender = if ehlo.is_empty() {
            host(s(f, &["client_ip"]))
        } else {
            ehlo
        };
        let date = if with_date {
            s(f, &["effective"])[..10].to_string()
        } else {
            String::new()
        };
        let g = groups.entry((date, sender)).or_default();
        g.0.insert(host(s(f, &["client_ip"])));
        g.1.insert(s(f, &["cert_sha256"]).to_string());
        g.2.insert((sensor.clone(), s(f, &["session_id"]).to_string()));
        let ts = ch_time(s(f, &["ts"]));
        if ts > g.3 {
            g.3 = ts;
        }
    }
    let mut rows: Vec<(u64, Value)> = groups
        .into_iter()
        .map(|((date, sender), (ips, certs, sessions, last))| {
            let mut row = json!({
                "sender_host": sender,
                "certificates": certs.into_iter().collect::<Vec<_>>(),
                "sessions": sessions.len(),
                "last_seen": last,
            });
            if with_date {
                row["effective_date"] = json!(date);
            } else {
                row["client_ips"] = json!(ips.into_iter().collect::<Vec<_>>());
            }
            (sessions.len() as u64, row)
        })
        .collect();
    if !with_date {
        // ORDER BY sessions DESC, sender_host (the BTreeMap already sorted by host).
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    }
    rows.into_iter().map(|r| r.1).collect()
}

fn q3(d: &Data) -> Vec<Value> {
    let mut g: BTreeMap<(String, String), (u64, u64, u64, String)> = BTreeMap::new();
    for (_, r) in &d.sessions {
        if s(r, &["direction"]) != "outbound" || r["tls"]["cert_requested"] != json!(true) {
            continue;
        }
        let sni = s(r, &["tls", "sni"]);
        let name = if sni.is_empty() {
            s(r, &["smtp", "banner_host"])
        } else {
            sni
        };
        let e = g
            .entry((host(s(r, &["server_ip"])), name.to_string()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(r["tls"]["client_cert_presented"] == json!(true));
        e.2 += u64::from(r["tls"]["client_cert_presented"] == json!(false));
        e.3 = e.3.clone().max(ch_time(s(r, &["ts"])));
    }
    let mut rows: Vec<_> = g.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    rows.into_iter()
        .map(|((ip, name), (n, p, dcl, last))| {
            json!({"destination_ip": ip, "destination_name": name, "sessions": n, "presented": p, "declined": dcl, "last_seen": last})
        })
        .collect()
}

fn rfc8460(rule: &str) -> &'static str {
    match rule {
        "validity.expired" => "certificate-expired",
        "name.mismatch" | "name.wildcard_depth" => "certificate-host-mismatch",
        "chain.untrusted" | "chain.self_signed" | "chain.incomplete" => "certificate-not-trusted",
        _ => "validation-failure",
    }
}

fn q4(d: &Data) -> Vec<Value> {
    type Sessions = BTreeSet<(String, String)>;
    let mut g: BTreeMap<(String, String, String, String), (Sessions, String)> = BTreeMap::new();
    for (sensor, f) in &d.findings {
        if s(f, &["scenario"]) != "strict_validation"
            || s(f, &["verdict"]) != "fail"
            || s(f, &["direction"]) != "outbound"
            || s(f, &["role"]) != "server"
        {
            continue;
        }
        let rule = s(f, &["rule"]);
        let e = g
            .entry((
                rfc8460(rule).to_string(),
                rule.to_string(),
                host(s(f, &["server_ip"])),
                s(f, &["peer_name"]).to_string(),
            ))
            .or_default();
        e.0.insert((sensor.clone(), s(f, &["session_id"]).to_string()));
        e.1 = e.1.clone().max(ch_time(s(f, &["ts"])));
    }
    g.into_iter()
        .map(|((rt, rule, ip, peer), (sessions, last))| {
            json!({"result_type": rt, "rule": rule, "destination_ip": ip, "peer_name": peer, "sessions": sessions.len(), "last_seen": last})
        })
        .collect()
}

fn q5(d: &Data) -> Vec<Value> {
    let mut g: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut totals: HashMap<String, u64> = HashMap::new();
    for (_, r) in &d.sessions {
        let v = s(r, &["tls", "version"]);
        let cov = if s(r, &["outcome"]) == "no_tls" {
            "no TLS"
        } else if v == "TLS1.3" && matches!(s(r, &["tls", "chain_source"]), "uprobe" | "resumed") {
            "TLS1.3 via TLS library"
        } else if v == "TLS1.3" && s(r, &["tls", "chain_source"]).is_empty() {
            "uninspectable (TLS1.3)"
        } else if v.is_empty() {
            "unknown"
        } else {
            v
        };
        let dir = s(r, &["direction"]).to_string();
        *g.entry((dir.clone(), cov.to_string())).or_default() += 1;
        *totals.entry(dir).or_default() += 1;
    }
    // Enum8 sorts by its code: unknown, inbound, outbound.
    let code = |d: &str| match d {
        "inbound" => 1,
        "outbound" => 2,
        _ => 0,
    };
    let mut rows: Vec<_> = g.into_iter().collect();
    rows.sort_by(|a, b| {
        code(&a.0 .0)
            .cmp(&code(&b.0 .0))
            .then(b.1.cmp(&a.1))
            .then(a.0 .1.cmp(&b.0 .1))
    });
    rows.into_iter()
        .map(|((dir, cov), n)| {
            let pct = (1000.0 * n as f64 / totals[&dir] as f64).round() / 10.0;
            json!({"direction": dir, "coverage": cov, "sessions": n, "percent": pct})
        })
        .collect()
}

fn q6(d: &Data) -> Vec<Value> {
    let mut g: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
    for (sensor, f) in &d.findings {
        if s(f, &["verdict"]) == "fail" {
            g.entry((s(f, &["ts"])[..10].to_string(), s(f, &["rule"]).to_string()))
                .or_default()
                .insert((sensor.clone(), s(f, &["session_id"]).to_string()));
        }
    }
    g.into_iter()
        .map(|((day, rule), n)| json!({"day": day, "rule": rule, "failing_sessions": n.len()}))
        .collect()
}

#[test]
fn query_pack_answers_match_the_fixture_records_on_the_current_engine() {
    let chdb = match Chdb::find() {
        Ok(c) => c,
        Err(reason) => return skip_or_fail(&reason),
    };
    let dir = std::env::temp_dir().join(format!("mxch-queries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (inf, outf, sunf) = (
        dir.join("in.jsonl"),
        dir.join("out.jsonl"),
        dir.join("sunset.jsonl"),
    );
    let inbound = fixture_records(&inf, "198.18.0.1/32", &[]);
    let outbound = fixture_records(&outf, "198.18.0.2/32", &[]);

    // Q2's findings, as the classifier writes them for a public root (see the module doc).
    let certs: HashMap<&str, &Value> = inbound
        .iter()
        .filter(|r| s(r, &["record"]) == "certificate")
        .map(|r| (s(r, &["sha256"]), r))
        .collect();
    let mut sunset = Vec::new();
    for r in inbound.iter().filter(|r| s(r, &["record"]) == "session") {
        let Some(leaf) = r["tls"]["client_chain"].get(0).and_then(Value::as_str) else {
            continue;
        };
        let c = certs[leaf];
        if !c["eku"].as_array().unwrap().contains(&json!("clientAuth")) {
            continue;
        }
        let not_after = s(c, &["not_after"]);
        let effective = if not_after < CUTOFF {
            not_after
        } else {
            CUTOFF
        };
        sunset.push(json!({
            "record": "finding", "ts": r["ts"], "session_id": r["session_id"], "role": "client",
            "cert_sha256": leaf, "scenario": "clientauth_enforcement", "rule": "eku.client_auth_sunset",
            "verdict": "warn", "effective": effective, "detail": "synthetic (public root assumed)",
            "direction": "inbound", "client_ip": r["client_ip"], "server_ip": r["server_ip"],
            "server_port": r["server_port"], "peer_name": null, "validation_time": r["ts"],
        }));
    }
    assert!(
        !sunset.is_empty(),
        "fixtures hold clientAuth client certificates"
    );
    std::fs::write(
        &sunf,
        sunset
            .iter()
            .map(|v| v.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();

    let mut data = Data {
        sessions: Vec::new(),
        findings: Vec::new(),
    };
    let mut cert_fps = BTreeSet::new();
    for (sensor, recs) in [
        ("mx-in", &inbound),
        ("mx-out", &outbound),
        ("mx-in", &sunset),
    ] {
        for r in recs.iter() {
            match s(r, &["record"]) {
                "session" => data.sessions.push((sensor.to_string(), r.clone())),
                "finding" => data.findings.push((sensor.to_string(), r.clone())),
                "certificate" => {
                    cert_fps.insert(s(r, &["sha256"]).to_string());
                }
                _ => {}
            }
        }
    }

    let pack = query_pack();
    let mut queries: Vec<String> = pack.iter().map(|(_, q)| q.clone()).collect();
    queries.push("SELECT count() AS n FROM sessions FINAL".into());
    queries.push("SELECT count() AS n FROM findings FINAL".into());
    queries.push("SELECT count() AS n, countIf(first_seen > toDateTime64(0, 3, 'UTC')) AS seen FROM certificates FINAL".into());
    let results = chdb.load_and_query(
        &[(&inf, "mx-in"), (&outf, "mx-out"), (&sunf, "mx-in")],
        &queries,
    );

    let expected = [
        sender_rows(&data, "eku.client_auth_missing", false),
        sender_rows(&data, "eku.client_auth_sunset", true),
        q3(&data),
        q4(&data),
        q5(&data),
        q6(&data),
    ];
    for (i, ((name, _), want)) in pack.iter().zip(&expected).enumerate() {
        let got = &results[i];
        println!("{name}: {} rows", got.len());
        for r in got {
            println!("  {r}");
        }
        assert!(
            !want.is_empty(),
            "{name}: the fixtures give this query rows"
        );
        assert_eq!(canon_rows(got), canon_rows(want), "{name}");
    }
    let n = |i: usize, k: &str| canon(&results[i][0][k]);
    assert_eq!(
        n(6, "n"),
        data.sessions.len().to_string(),
        "sessions loaded"
    );
    assert_eq!(
        n(7, "n"),
        data.findings.len().to_string(),
        "findings loaded"
    );
    assert_eq!(
        n(8, "n"),
        cert_fps.len().to_string(),
        "one row per certificate"
    );
    assert_eq!(
        n(8, "seen"),
        n(8, "n"),
        "every certificate has a first_seen"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
