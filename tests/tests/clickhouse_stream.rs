//! `mxcert read --clickhouse` into a real clickhouse-server (Debian's 18.16, private port and
//! data directory; the schema's wire-compatible variant, chosen by `mxcert schema apply` from
//! the server version): every record arrives, re-reading a capture does not double count,
//! what an unreachable server could not take waits in the spool for the next run, and wrong
//! credentials or a missing schema stop the run with a message that says what to do.

use std::path::Path;
use std::process::{Command, Output};

use mxcert::sink::clickhouse::rows::rfc3339_to_ms;
use mxcert::sink::clickhouse::schema;
use mxcert_system_tests::clickhouse::{
    count, fixture_captures, mxcert_bin, read_jsonl, schema_apply, skip_or_fail, Server,
    SERVER_PASSWORD,
};
use mxcert_system_tests::repo_root;

const PORT: u16 = 19110;
/// Nothing listens here (inside this helper's port range, never started).
const DEAD_PORT: u16 = 19119;

fn read(url: &str, extra: &[&str], pw_file: Option<&Path>) -> Output {
    let mut cmd = Command::new(mxcert_bin());
    cmd.arg("read")
        .args(fixture_captures())
        .args(["--local-net", "198.18.0.1/32", "--trust-anchors"])
        .arg(repo_root().join("pcaps/certs/root-ca.crt"))
        .args(["--clickhouse", url])
        .args(extra)
        .env("MXCERT_CLICKHOUSE_USER", "mxcert")
        .env_remove("MXCERT_CLICKHOUSE_PASSWORD");
    if let Some(p) = pw_file {
        cmd.arg("--clickhouse-password-file").arg(p);
    }
    cmd.output().expect("mxcert runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn records_stream_into_clickhouse_18_and_the_spool_and_errors_behave() {
    if let Err(reason) = Server::binary() {
        return skip_or_fail(&reason);
    }
    let server = Server::start(PORT).expect("private clickhouse-server starts");
    let url = server.url();
    let first = schema_apply(&url);
    assert!(first.contains("applied migration(s) [1, 2]"), "{first}");
    assert!(
        first.contains("compat-18.16"),
        "18.16 gets the compatible variant: {first}"
    );
    let again = schema_apply(&url);
    assert!(again.contains("is current"), "apply is idempotent: {again}");
    assert_eq!(
        count(&server, "SELECT count() FROM mxcert.schema_migrations"),
        schema::MIGRATIONS.len() as u64
    );

    let dir = std::env::temp_dir().join(format!("mxch-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("password");
    std::fs::write(&pw, format!("{SERVER_PASSWORD}\n")).unwrap();
    let wrong_pw = dir.join("wrong");
    std::fs::write(&wrong_pw, "nope\n").unwrap();
    let jsonl = dir.join("records.jsonl");
    let spool = dir.join("spool");
    let spool_s = spool.display().to_string();

    // Both outputs: JSON lines and ClickHouse get the same records.
    let o = read(
        &url,
        &[
            "--sensor",
            "mx-in",
            "--spool-dir",
            &spool_s,
            "--out",
            jsonl.to_str().unwrap(),
        ],
        Some(&pw),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rows sent"),
        "summary has a sink line: {}",
        stderr(&o)
    );
    let records = read_jsonl(&jsonl);
    let kind = |k: &str| records.iter().filter(|r| r["record"] == k).count() as u64;
    let q = |sql: &str| count(&server, sql);
    let stored = |t: &str, fin: &str| {
        q(&format!(
            "SELECT count() FROM mxcert.{t} {fin} WHERE sensor = 'mx-in'"
        ))
    };
    assert_eq!(stored("sessions", "FINAL"), kind("session"));
    assert_eq!(stored("findings", "FINAL"), kind("finding"));
    assert_eq!(
        q("SELECT count() FROM mxcert.certificates FINAL"),
        kind("certificate")
    );

    // Column by column for sessions: what the JSON says is what the table holds.
    let mut want: Vec<String> = records
        .iter()
        .filter(|r| r["record"] == "session")
        .map(|r| {
            format!(
                "{}\t{}\t::ffff:{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r["session_id"].as_str().unwrap(),
                rfc3339_to_ms(r["ts"].as_str().unwrap()).unwrap(),
                r["client_ip"].as_str().unwrap(),
                r["server_port"],
                r["direction"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["tls"]["version"].as_str().unwrap_or(""),
                r["smtp"]["ehlo"].as_str().unwrap_or(""),
                r["tls"]["server_chain"].as_array().unwrap().len(),
            )
        })
        .collect();
    want.sort();
    let got = server
        .query(
            "SELECT session_id, ts, IPv6NumToString(client_ip), server_port, direction, outcome, \
             tls_version, ehlo, length(server_chain) FROM mxcert.sessions FINAL \
             WHERE sensor = 'mx-in' ORDER BY session_id FORMAT TabSeparated",
        )
        .unwrap();
    let got: Vec<String> = got.lines().map(String::from).collect();
    assert_eq!(got, want);

    // Re-reading the same captures replaces rows instead of adding them.
    let o = read(
        &url,
        &["--sensor", "mx-in", "--spool-dir", &spool_s],
        Some(&pw),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stored("findings", "FINAL"),
        kind("finding"),
        "no double count"
    );
    assert_eq!(
        stored("sessions", "FINAL"),
        kind("session"),
        "no double count"
    );
    println!(
        "re-read: sessions raw {} / FINAL {}, findings raw {} / FINAL {}",
        stored("sessions", ""),
        stored("sessions", "FINAL"),
        stored("findings", ""),
        stored("findings", "FINAL")
    );

    // Unreachable: the run completes, the rows wait in the spool, the next run replays them.
    let dead = format!("http://127.0.0.1:{DEAD_PORT}");
    let o = read(
        &dead,
        &[
            "--sensor",
            "mx-spool",
            "--spool-dir",
            &spool_s,
            "--clickhouse-drain-timeout",
            "1",
        ],
        Some(&pw),
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("unreachable"), "{e}");
    assert!(e.contains("left in the spool"), "{e}");
    let o = read(
        &url,
        &[
            "--sensor",
            "mx-spool",
            "--spool-dir",
            &spool_s,
            "--no-findings",
        ],
        Some(&pw),
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(!e.contains(" 0 replayed"), "the spool was replayed: {e}");
    assert_eq!(
        q("SELECT count() FROM mxcert.findings FINAL WHERE sensor = 'mx-spool'"),
        kind("finding"),
        "findings of the unreachable run arrived through the spool"
    );

    // Operator errors stop the run with what to do.
    let o = read(&url, &["--spool-dir", &spool_s], Some(&wrong_pw));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("rejected the credentials"),
        "{}",
        stderr(&o)
    );
    let o = read(
        &url,
        &["--spool-dir", &spool_s, "--clickhouse-database", "nowhere"],
        Some(&pw),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mxcert schema apply"), "{}", stderr(&o));
    let with_creds = format!("http://mxcert:{SERVER_PASSWORD}@127.0.0.1:{PORT}");
    let o = read(&with_creds, &["--spool-dir", &spool_s], None);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("do not belong in the URL"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
