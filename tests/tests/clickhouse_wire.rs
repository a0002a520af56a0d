//! The sink's bytes land in the modern schema: `mxcert read --clickhouse` against a server
//! that is not there leaves its batches in the spool (the RowBinary an INSERT sends); those
//! rows are loaded into the modern tables on the current engine (chdb) and compared, row for
//! row, with the same records loaded from JSON lines by `schema/load/records_jsonl.sql`. With
//! the 18.16 streaming test this covers both schema variants.

use std::process::Command;

use mxcert::sink::clickhouse::schema;
use mxcert_system_tests::clickhouse::{
    fixture_captures, fixture_records, modern_schema, mxcert_bin, skip_or_fail, spool_to_rowbinary,
    Chdb,
};
use mxcert_system_tests::repo_root;

/// Nothing listens here (this helper's port range, never started).
const DEAD_PORT: u16 = 19118;

#[test]
fn spooled_rowbinary_rows_equal_the_json_records_in_the_modern_schema() {
    let chdb = match Chdb::find() {
        Ok(c) => c,
        Err(reason) => return skip_or_fail(&reason),
    };
    let dir = std::env::temp_dir().join(format!("mxch-wire-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("spool");
    let jsonl = dir.join("records.jsonl");
    let records = fixture_records(&jsonl, "198.18.0.1/32", &[]);
    let out = Command::new(mxcert_bin())
        .arg("read")
        .args(fixture_captures())
        .args(["--local-net", "198.18.0.1/32", "--trust-anchors"])
        .arg(repo_root().join("pcaps/certs/root-ca.crt"))
        .args(["--clickhouse", &format!("http://127.0.0.1:{DEAD_PORT}")])
        .args([
            "--sensor",
            "mx-in",
            "--clickhouse-drain-timeout",
            "0",
            "--spool-dir",
        ])
        .arg(&spool)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = spool_to_rowbinary(&spool, &dir);
    let rows: u64 = tables.iter().map(|t| t.2).sum();
    assert_eq!(rows as usize, records.len(), "every record was spooled");

    let mut setup = modern_schema();
    setup.extend(schema::load_records_statements(
        &jsonl.display().to_string(),
        "mx-in",
    ));
    setup.push("CREATE DATABASE wire".into());
    setup.push("USE wire".into());
    setup.extend(modern_schema());
    for (table, path, _) in &tables {
        setup.push(format!(
            "INSERT INTO wire.{table} SELECT * FROM file('{}', RowBinary, '{}')",
            path.display(),
            schema::structure(&schema::modern_ddl(), table).replace('\'', "\\'")
        ));
    }
    setup.push("USE mxcert".into());
    let mut queries = Vec::new();
    for (table, except) in [
        ("sessions", ""),
        ("findings", ""),
        // first/last seen: the sink takes the first session presenting the certificate, the
        // loader the earliest; compared separately below.
        ("certificates", " EXCEPT (first_seen, last_seen)"),
    ] {
        queries.push(format!("SELECT count() AS n FROM wire.{table}"));
        queries.push(format!(
            "SELECT count() AS n FROM (SELECT *{except} FROM wire.{table} EXCEPT SELECT *{except} FROM mxcert.{table})"
        ));
        queries.push(format!(
            "SELECT count() AS n FROM (SELECT *{except} FROM mxcert.{table} EXCEPT SELECT *{except} FROM wire.{table})"
        ));
    }
    queries.push(
        "SELECT count() AS n FROM wire.certificates AS w JOIN mxcert.certificates AS m USING sha256 \
         WHERE w.first_seen < m.first_seen OR w.first_seen > m.last_seen"
            .into(),
    );
    let res = chdb.run(&setup, &queries);
    let n = |i: usize| -> u64 {
        let v = &res[i][0]["n"];
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .expect("count")
    };
    for (k, table) in ["sessions", "findings", "certificates"].iter().enumerate() {
        let kind = &table[..table.len() - 1];
        let expected = records.iter().filter(|r| r["record"] == *kind).count() as u64;
        println!(
            "{table}: {} rows over the wire, {} only in wire, {} only in JSON",
            n(3 * k),
            n(3 * k + 1),
            n(3 * k + 2)
        );
        assert_eq!(n(3 * k), expected, "{table} rows");
        assert_eq!(n(3 * k + 1), 0, "{table}: rows only over the wire");
        assert_eq!(n(3 * k + 2), 0, "{table}: rows only in JSON");
    }
    assert_eq!(
        n(9),
        0,
        "first_seen is a session of the certificate's lifetime in the run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
