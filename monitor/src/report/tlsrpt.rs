//! `--format tlsrpt`: the outbound what-if as RFC 8460 aggregate reports (§4.4 JSON), one per
//! destination: what a TLSRPT report would say if we enforced MTA-STS (RFC 8461) today.
//!
//! mxcert stops reading before RCPT TO, so the recipient domain (RFC 8460's policy domain) is
//! never seen; the destination's MX name (SNI, else greeting host, else address) stands in for
//! it and for `mx-host`. `policy-type` is `sts` and `policy-string` is empty: this is a what-if,
//! no MTA-STS policy was fetched. Sessions mxcert could not assess (TLS 1.3, incomplete) are in
//! neither count. Each failed session is counted once, under its first failure.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::model::DestinationRow;
use super::Report;

pub fn render(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(&reports(r)).expect("JSON values serialize");
    s.push('\n');
    s
}

/// The reports as JSON values (an array, one per destination name).
pub fn reports(r: &Report) -> Value {
    let mut by_name: BTreeMap<&str, Vec<&DestinationRow>> = BTreeMap::new();
    for d in &r.outbound_strict_validation.destinations {
        by_name.entry(&d.destination_name).or_default().push(d);
    }
    let start = r
        .window
        .since
        .clone()
        .or_else(|| r.window.first_session.clone())
        .unwrap_or_else(|| r.at.clone());
    let end = r
        .window
        .until
        .clone()
        .or_else(|| r.window.last_session.clone())
        .unwrap_or_else(|| r.at.clone());
    let out: Vec<Value> = by_name
        .into_iter()
        .map(|(name, rows)| {
            let ok: u64 = rows.iter().map(|d| d.would_pass).sum();
            let failed: u64 = rows
                .iter()
                .flat_map(|d| &d.failures)
                .map(|f| f.sessions)
                .sum();
            let details: Vec<Value> = rows
                .iter()
                .flat_map(|d| {
                    d.failures.iter().map(move |f| {
                        let mut v = json!({
                            "result-type": f.result_type,
                            "sending-mta-ip": d.sending_ip,
                            "receiving-mx-hostname": d.destination_name,
                            "receiving-ip": d.destination_ip,
                            "failed-session-count": f.sessions,
                            "failure-reason-code": format!("{}: {}", f.rule, f.detail),
                        });
                        if let Some(h) = &d.destination_helo {
                            v["receiving-mx-helo"] = json!(h);
                        }
                        v
                    })
                })
                .collect();
            json!({
                "organization-name": "mxcert what-if (not sent)",
                "date-range": {
                    "start-datetime": start,
                    "end-datetime": end,
                },
                "contact-info": "postmaster@localhost",
                "report-id": format!("{start}_{name}@mxcert"),
                "policies": [{
                    "policy": {
                        "policy-type": "sts",
                        "policy-string": [],
                        "policy-domain": name,
                        "mx-host": [name],
                    },
                    "summary": {
                        "total-successful-session-count": ok,
                        "total-failure-session-count": failed,
                    },
                    "failure-details": details,
                }],
            })
        })
        .collect();
    Value::Array(out)
}
