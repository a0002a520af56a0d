//! ClickHouse for the system tests: a private Debian `clickhouse-server` (18.16) on a private
//! port and data directory, and the current engine in-process through chdb (PyPI `chdb-core`,
//! installed by `cargo xtask setup` into `target/chdb-venv`), both with mxcert's own schema.
//!
//! Reusable by any test that wants records in ClickHouse: [`fixture_records`] runs
//! `mxcert read` over the shipped captures, [`Chdb::load_and_query`] loads record files into
//! the modern schema and answers SQL with JSON rows, [`Server`] starts/kills/restarts a real
//! server.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mxcert::sink::clickhouse::schema::{self, Ttl, Variant};
use serde_json::Value;

use crate::repo_root;

/// Skips a test whose prerequisite is missing, with the reason; fails instead under CI=true,
/// where `cargo xtask setup` must have installed everything.
pub fn skip_or_fail(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("prerequisite missing under CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// Builds (if needed) and returns the `mxcert` binary of this workspace (debug profile).
pub fn mxcert_bin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args(["build", "-q", "-p", "mxcert", "--bin", "mxcert"])
        .status()
        .expect("cargo build runs");
    assert!(status.success(), "building mxcert failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug/mxcert")
}

/// Every fixture capture in `pcaps/`, sorted.
pub fn fixture_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("pcaps"))
        .expect("pcaps/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    v.sort();
    v
}

/// Runs `mxcert read` over every fixture into `out` (JSON lines) with `--local-net local` and
/// the fixtures' private root as trust anchor. Returns the parsed records.
pub fn fixture_records(out: &Path, local_net: &str, extra: &[&str]) -> Vec<Value> {
    let st = Command::new(mxcert_bin())
        .arg("read")
        .args(fixture_captures())
        .args(["--local-net", local_net, "--trust-anchors"])
        .arg(repo_root().join("pcaps/certs/root-ca.crt"))
        .args(["-q", "--out"])
        .arg(out)
        .args(extra)
        .status()
        .expect("mxcert runs");
    assert!(st.success(), "mxcert read over the fixtures failed");
    read_jsonl(out)
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("records file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record is JSON"))
        .collect()
}

/// The modern schema's statements, TTL as shipped by default.
pub fn modern_schema() -> Vec<String> {
    schema::MIGRATIONS
        .iter()
        .flat_map(|m| schema::statements(&schema::render(m, Variant::Modern, Ttl::default())))
        .collect()
}

/// The query pack: (name, SQL).
pub fn query_pack() -> Vec<(String, String)> {
    schema::QUERIES
        .iter()
        .map(|(n, q)| (n.to_string(), q.to_string()))
        .collect()
}

/// The current ClickHouse engine, in-process in a Python child (chdb).
pub struct Chdb {
    python: PathBuf,
}

const CHDB_RUNNER: &str = r#"
import json, sys, tempfile
from chdb import session
req = json.load(sys.stdin)
with tempfile.TemporaryDirectory() as d:
    s = session.Session(d)
    s.query("CREATE DATABASE IF NOT EXISTS mxcert")
    s.query("USE mxcert")
    for st in req["setup"]:
        try:
            s.query(st)
        except Exception as e:
            sys.stderr.write("setup statement failed: %s\n%s\n" % (e, st))
            sys.exit(1)
    out = []
    for q in req["queries"]:
        try:
            res = s.query(q, "JSONEachRow")
        except Exception as e:
            sys.stderr.write("query failed: %s\n%s\n" % (e, q))
            sys.exit(1)
        text = res.bytes().decode() if hasattr(res, "bytes") else str(res)
        out.append([json.loads(l) for l in text.splitlines() if l.strip()])
    json.dump(out, sys.stdout)
"#;

impl Chdb {
    /// `MXCERT_CHDB_PYTHON`, else `target/chdb-venv/bin/python3`; `Err(reason)` when it is
    /// missing or cannot import chdb.
    pub fn find() -> Result<Chdb, String> {
        let python = std::env::var_os("MXCERT_CHDB_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/chdb-venv/bin/python3"));
        let ok = Command::new(&python)
            .args(["-c", "import chdb"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(Chdb { python })
        } else {
            Err(format!(
                "{} cannot import chdb (run `cargo xtask setup`)",
                python.display()
            ))
        }
    }

    /// Runs `setup` statements then each query in a fresh session (database `mxcert`), and
    /// returns each query's rows as JSON objects (JSONEachRow).
    pub fn run(&self, setup: &[String], queries: &[String]) -> Vec<Vec<Value>> {
        let req = serde_json::json!({ "setup": setup, "queries": queries });
        let mut child = Command::new(&self.python)
            .args(["-c", CHDB_RUNNER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(req.to_string().as_bytes())
                .expect("request written");
        }
        let out = child.wait_with_output().expect("chdb runner finishes");
        assert!(
            out.status.success(),
            "chdb runner failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("chdb runner prints JSON")
    }

    /// The modern schema, then each (records file, sensor) loaded with
    /// `schema/load/records_jsonl.sql`, then the queries.
    pub fn load_and_query(&self, files: &[(&Path, &str)], queries: &[String]) -> Vec<Vec<Value>> {
        let mut setup = modern_schema();
        for (file, sensor) in files {
            setup.extend(schema::load_records_statements(
                &file.display().to_string(),
                sensor,
            ));
        }
        self.run(&setup, queries)
    }
}

/// A private `clickhouse-server` (Debian's package), HTTP on `http_port`, native on
/// `http_port + 1`, data in its own directory; killed on drop.
pub struct Server {
    pub http_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// Password of the `mxcert` user of the private server's users.xml (`default` has none).
pub const SERVER_PASSWORD: &str = "mxcert-test";

impl Server {
    /// The binary, or why not.
    pub fn binary() -> Result<PathBuf, String> {
        ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| "clickhouse-server is not installed (run `cargo xtask setup`)".into())
    }

    /// Writes config.xml/users.xml into a fresh directory and starts the server.
    pub fn start(http_port: u16) -> Result<Server, String> {
        Server::binary()?;
        let dir = std::env::temp_dir().join(format!("mxch-{http_port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["data", "tmp", "log"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
        }
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<yandex>\n  <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/err.log</errorlog><console>0</console></logger>\n  <http_port>{http_port}</http_port>\n  <tcp_port>{}</tcp_port>\n  <listen_host>127.0.0.1</listen_host>\n  <path>{d}/data/</path>\n  <tmp_path>{d}/tmp/</tmp_path>\n  <users_config>{d}/users.xml</users_config>\n  <default_profile>default</default_profile>\n  <default_database>default</default_database>\n  <mark_cache_size>5368709</mark_cache_size>\n</yandex>\n",
                http_port + 1
            ),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("users.xml"),
            format!(
                "<yandex>\n  <profiles><default></default></profiles>\n  <quotas><default></default></quotas>\n  <users>\n    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>\n    <mxcert><password>{SERVER_PASSWORD}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></mxcert>\n  </users>\n</yandex>\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut s = Server {
            http_port,
            dir,
            child: None,
        };
        s.restart()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Starts the process on the existing data directory (after [`Server::kill`]) and waits
    /// until it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(Server::binary()?);
        cmd.arg(format!(
            "--config-file={}",
            self.dir.join("config.xml").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // The server refuses nothing as root, but the package's user keeps file ownership
        // realistic; fall back to the current user when it does not exist.
        if let Some((uid, gid)) = user_ids("clickhouse") {
            let _ = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&self.dir)
                .status();
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(|e| format!("clickhouse-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.query("SELECT 1").is_ok_and(|r| r.trim() == "1") {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "clickhouse-server exited with {st}; see {}",
                    self.dir.join("log/err.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("clickhouse-server did not answer within 30 s".into())
    }

    /// SIGKILL, as a crash: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The port is free again once nothing listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", self.http_port)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One query over HTTP (POST, so DDL works on 18.16), as `default`; the response text.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        http_post(self.http_port, sql)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(name))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// Minimal HTTP/1.0 POST (no client library needed for a test's control queries).
fn http_post(port: u16, sql: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(body.to_string())
    } else {
        Err(format!("{}: {body}", head.lines().next().unwrap_or("")))
    }
}

/// Runs `mxcert schema apply` against `url`; panics with its output when it fails.
pub fn schema_apply(url: &str) -> String {
    let out = Command::new(mxcert_bin())
        .args(["schema", "apply", "--clickhouse", url])
        .env_remove("MXCERT_CLICKHOUSE_USER")
        .env_remove("MXCERT_CLICKHOUSE_PASSWORD")
        .output()
        .expect("mxcert runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schema apply failed: {text}");
    text
}

/// Opens a FIFO for writing without hanging forever when no reader comes (30 s).
pub fn open_fifo_writer(path: &Path) -> std::fs::File {
    let p = path.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(&p));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the reader opened the FIFO within 30 s")
        .expect("FIFO opens for writing")
}

/// `mkfifo PATH`.
pub fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// A number from a one-row TabSeparated answer.
pub fn count(server: &Server, sql: &str) -> u64 {
    let r = server.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    r.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: not a number: {r:?}"))
}

/// Waits for a child with a deadline; kills it (and panics) when it is exceeded.
pub fn wait_with_deadline(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("child status") {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
