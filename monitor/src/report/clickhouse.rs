//! The report's ClickHouse input: three SELECTs (sessions, certificates, non-passing findings)
//! over mxcert's schema (`schema/001_init.sql`, or the 18.16 variant), answered as JSONEachRow
//! and turned back into the records `mxcert read` writes, so the report is built by the same
//! code from either source.
//!
//! The two schema variants differ in types only (see `schema/compat-18.16/001_init.sql`):
//! times are `DateTime64(3)` or Int64 milliseconds, addresses `IPv6` or `FixedString(16)`.
//! Times are selected as milliseconds in a string (JSON output quotes 64-bit integers on old
//! servers anyway), addresses as text with the IPv4-mapped prefix removed.

use serde_json::{json, Value};

use super::input::{Dataset, Window};
use super::{ReportError, MAX_SESSIONS};
use crate::timefmt::rfc3339_ms;

/// Which schema variant the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Current ClickHouse (`DateTime64(3)`, `IPv6`).
    Modern,
    /// ClickHouse before 19 (Debian 12's 18.16): Int64 milliseconds, `FixedString(16)`.
    Compat,
}

impl Dialect {
    /// From `SELECT version()`: servers before 19 hold the compat variant.
    pub fn from_version(v: &str) -> Dialect {
        match v
            .trim()
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
        {
            Some(m) if m < 19 => Dialect::Compat,
            _ => Dialect::Modern,
        }
    }

    /// A time column as milliseconds since the epoch (a number).
    fn ms(self, col: &str) -> String {
        match self {
            Dialect::Modern => format!("toUnixTimestamp64Milli({col})"),
            Dialect::Compat => col.to_string(),
        }
    }

    /// An address column as text (`::ffff:a.b.c.d` shown as `a.b.c.d`).
    fn ip(self, col: &str) -> String {
        let text = match self {
            Dialect::Modern => format!("toString({col})"),
            Dialect::Compat => format!("IPv6NumToString({col})"),
        };
        format!("replaceRegexpOne({text}, '^::ffff:', '')")
    }
}

/// Quotes a string literal for ClickHouse SQL.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The WHERE clause of the window and sensor on a table with `ts` and `sensor`.
fn filter(d: Dialect, w: &Window, sensor: Option<&str>) -> String {
    let mut c = vec!["1".to_string()];
    if let Some(s) = w.since {
        c.push(format!("{} >= {}", d.ms("ts"), s * 1000));
    }
    if let Some(u) = w.until {
        c.push(format!("{} < {}", d.ms("ts"), u * 1000));
    }
    if let Some(s) = sensor {
        c.push(format!("sensor = {}", lit(s)));
    }
    c.join(" AND ")
}

/// The three queries, in the order [`ClickHouseInput`] runs them. FINAL: rows of a retried
/// batch count once (the schema's ReplacingMergeTree keys). Session ids are prefixed with the
/// sensor, as (sensor, session_id) is the key when several gateways share a store.
pub fn queries(d: Dialect, w: &Window, sensor: Option<&str>) -> [String; 3] {
    let f = filter(d, w, sensor);
    let sessions = format!(
        "SELECT concat(sensor, '/', session_id) AS session_id, toString({ts}) AS ts_ms, \
         {cip} AS client_ip, {sip} AS server_ip, server_port, toString(direction) AS direction, \
         banner_host, ehlo, starttls_offered, implicit_tls, tls_version, cipher, sni, \
         cert_requested, client_cert_presented, server_chain, client_chain, chain_source, \
         resumed, toString(outcome) AS outcome \
         FROM sessions FINAL WHERE {f} ORDER BY ts, session_id LIMIT {limit}",
        ts = d.ms("ts"),
        cip = d.ip("client_ip"),
        sip = d.ip("server_ip"),
        // One more than the report keeps, so the report can say the bound was hit.
        limit = MAX_SESSIONS + 1,
    );
    let certificates = format!(
        "SELECT sha256, subject, issuer, subject_cn, toString({nb}) AS not_before_ms, \
         toString({na}) AS not_after_ms, san_dns, eku_present, eku, parse_error \
         FROM certificates FINAL ORDER BY sha256",
        nb = d.ms("not_before"),
        na = d.ms("not_after"),
    );
    // Passing findings are not used by the report (and are not written by default).
    let findings = format!(
        "SELECT concat(sensor, '/', session_id) AS session_id, toString(role) AS role, \
         cert_sha256, scenario, rule, toString(verdict) AS verdict, \
         toString({eff}) AS effective_ms, detail \
         FROM findings FINAL WHERE {f} AND verdict != 'pass' ORDER BY session_id, rule, role",
        eff = d.ms("effective"),
    );
    [sessions, certificates, findings]
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(String::from)
}

/// Milliseconds (a number, or a number in a string) to the record's RFC 3339 form.
fn time(v: &Value) -> Option<String> {
    let ms = match v {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    Some(rfc3339_ms(ms * 1_000_000))
}

/// A ClickHouse boolean (UInt8, maybe Nullable) as JSON.
fn flag(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_u64().unwrap_or(0) != 0),
        Value::String(s) => json!(s != "0"),
        _ => Value::Null,
    }
}

/// One JSONEachRow row of a query of [`queries`] as the record `mxcert read` would write.
pub fn record(kind: usize, r: &Value) -> Option<Value> {
    Some(match kind {
        0 => json!({
            "record": "session",
            "session_id": r["session_id"],
            "ts": time(&r["ts_ms"])?,
            "client_ip": r["client_ip"],
            "server_ip": r["server_ip"],
            "server_port": r["server_port"],
            "direction": r["direction"],
            "smtp": {
                "banner_host": text(&r["banner_host"]),
                "ehlo": text(&r["ehlo"]),
                "starttls_offered": flag(&r["starttls_offered"]),
                "implicit_tls": flag(&r["implicit_tls"]),
            },
            "tls": {
                "version": text(&r["tls_version"]),
                "cipher": text(&r["cipher"]),
                "sni": text(&r["sni"]),
                "cert_requested": flag(&r["cert_requested"]),
                "client_cert_presented": flag(&r["client_cert_presented"]),
                "server_chain": r["server_chain"],
                "client_chain": r["client_chain"],
                "chain_source": text(&r["chain_source"]),
                "resumed": flag(&r["resumed"]).as_bool().unwrap_or(false),
            },
            "outcome": r["outcome"],
        }),
        1 => json!({
            "record": "certificate",
            "sha256": r["sha256"],
            "subject": text(&r["subject"]),
            "issuer": text(&r["issuer"]),
            "subject_cn": text(&r["subject_cn"]),
            "not_before": time(&r["not_before_ms"]),
            "not_after": time(&r["not_after_ms"]),
            "san_dns": r["san_dns"],
            "eku_present": flag(&r["eku_present"]),
            "eku": r["eku"],
            "parse_error": text(&r["parse_error"]),
        }),
        _ => json!({
            "record": "finding",
            "session_id": r["session_id"],
            "role": r["role"],
            "cert_sha256": text(&r["cert_sha256"]),
            "scenario": r["scenario"],
            "rule": r["rule"],
            "verdict": r["verdict"],
            "effective": time(&r["effective_ms"]),
            "detail": r["detail"],
        }),
    })
}

/// Runs one SQL query (without a FORMAT clause) and returns its rows as JSONEachRow text.
pub type Runner = Box<dyn FnMut(&str) -> Result<String, String>>;

/// Records from a ClickHouse store, through any query runner (HTTP to a server, or chdb).
pub struct ClickHouseInput {
    pub name: String,
    pub dialect: Dialect,
    pub sensor: Option<String>,
    pub run: Runner,
}

impl super::Input for ClickHouseInput {
    fn describe(&self) -> String {
        match &self.sensor {
            Some(s) => format!("{} (sensor {s})", self.name),
            None => self.name.clone(),
        }
    }

    fn load(&mut self, w: &Window, ds: &mut Dataset) -> Result<(), ReportError> {
        let qs = queries(self.dialect, w, self.sensor.as_deref());
        // Certificates first, as in a records file (the order does not matter to the model).
        for kind in [1, 0, 2] {
            let body = (self.run)(&qs[kind]).map_err(|message| ReportError::Input {
                input: self.describe(),
                message,
            })?;
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|r| record(kind, &r))
                {
                    Some(rec) => ds.add_json_line(&rec.to_string(), w),
                    None => ds.skipped_lines += 1,
                }
            }
        }
        ds.sources.push(self.describe());
        Ok(())
    }
}

/// A ClickHouse server over HTTP, with the sink's connection settings (URL, database,
/// credentials from the environment or a file). Asks the server's version first to know which
/// schema variant it holds; a server without mxcert's tables is a clear error.
pub fn http_input(
    cfg: &crate::sink::clickhouse::Config,
    sensor: Option<String>,
) -> Result<ClickHouseInput, ReportError> {
    use crate::sink::clickhouse::classify_error;
    let name = format!("{} (database {})", cfg.url, cfg.database);
    let fail = |message: String| ReportError::Input {
        input: name.clone(),
        message,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the HTTP client: {e}")))?;
    let client = cfg.client();
    let (url, db) = (cfg.url.clone(), cfg.database.clone());
    let version: String = rt
        .block_on(client.query("SELECT version()").fetch_one())
        .map_err(|e| fail(classify_error(&url, &db, &e).to_string()))?;
    let run: Runner = Box::new(move |sql: &str| {
        rt.block_on(async {
            let mut cursor = client.query(sql).fetch_bytes("JSONEachRow")?;
            cursor.collect().await
        })
        .map_err(|e| classify_error(&url, &db, &e).to_string())
        .and_then(|b| {
            String::from_utf8(b.to_vec()).map_err(|_| "the answer is not UTF-8".to_string())
        })
    });
    Ok(ClickHouseInput {
        name,
        dialect: Dialect::from_version(&version),
        sensor,
        run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_from_version() {
        assert_eq!(Dialect::from_version("18.16.1"), Dialect::Compat);
        assert_eq!(Dialect::from_version("25.3.2.39"), Dialect::Modern);
        assert_eq!(Dialect::from_version("?"), Dialect::Modern);
    }

    #[test]
    fn rows_become_records() {
        let row = json!({"session_id":"gw1/abc","ts_ms":"1795435759756","client_ip":"198.18.0.2",
            "server_ip":"198.18.0.1","server_port":25,"direction":"inbound","banner_host":"",
            "ehlo":"client.test.example","starttls_offered":1,"implicit_tls":0,"tls_version":"TLS1.2",
            "cipher":"","sni":"mx.test.example","cert_requested":null,"client_cert_presented":0,
            "server_chain":["aa"],"client_chain":[],"chain_source":"uprobe","resumed":1,
            "outcome":"established"});
        let rec = record(0, &row).unwrap();
        assert_eq!(rec["tls"]["chain_source"], "uprobe");
        assert_eq!(rec["tls"]["resumed"], true);
        assert_eq!(rec["ts"], "2026-11-23T12:09:19.756Z");
        assert_eq!(rec["smtp"]["banner_host"], Value::Null);
        assert_eq!(rec["smtp"]["starttls_offered"], true);
        assert_eq!(rec["tls"]["cert_requested"], Value::Null);
        assert_eq!(rec["tls"]["client_cert_presented"], false);
        let mut ds = Dataset::default();
        ds.add_json_line(&rec.to_string(), &Window::default());
        assert_eq!(ds.sessions.len(), 1);
        assert_eq!(ds.skipped_lines, 0);
        assert_eq!(ds.sessions[0].tls.chain_source.as_deref(), Some("uprobe"));
        // A row without the 002 columns (older schema read through a view) still loads.
        let old = record(
            0,
            &json!({"ts_ms":"1795435759756","server_chain":[],"client_chain":[]}),
        )
        .unwrap();
        assert_eq!(old["tls"]["resumed"], false);
    }

    #[test]
    fn window_and_sensor_reach_the_sql() {
        let w = Window {
            since: Some(10),
            until: Some(20),
        };
        let [s, _, f] = queries(Dialect::Compat, &w, Some("gw'1"));
        assert!(
            s.contains("ts >= 10000 AND ts < 20000 AND sensor = 'gw\\'1'"),
            "{s}"
        );
        assert!(f.contains("verdict != 'pass'"));
        let [s, c, _] = queries(Dialect::Modern, &w, None);
        assert!(s.contains("toUnixTimestamp64Milli(ts) >= 10000"), "{s}");
        assert!(c.contains("toUnixTimestamp64Milli(not_after)"));
    }
}
