//! ClickHouse sink: records leave the packet path as rows in batches, through a bounded queue,
//! to a writer thread that inserts them with the official `clickhouse` crate over HTTP.
//!
//! Nothing is lost while the process lives: a batch that cannot be inserted (server down,
//! slow, auth or schema error) or that finds the queue full goes to the on-disk [`spool`],
//! replayed oldest first when the server answers again, and by the next process after a crash
//! or restart. Rows are dropped only when the spool's size bound is hit, counted and logged.
//! A retried batch cannot double count: every table is a ReplacingMergeTree on the record's
//! natural key (queries read with FINAL), and on servers that support it each INSERT carries
//! an `insert_deduplication_token` derived from the batch id.

pub mod args;
pub mod rows;
pub mod schema;
pub mod spool;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use self::args::{apply_schema, Applied, ClickHouseArgs};
use self::schema::Variant;
use super::{Sink, SinkError};
use crate::classify::Finding;
use crate::session::SessionRecord;
use crate::x509::CertificateRecord;

/// Failures of the ClickHouse path that stop a command (the running sink never fails: it
/// spools).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClickHouseError {
    /// The URL is not usable.
    #[error("--clickhouse {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The password file cannot be read.
    #[error("cannot read --clickhouse-password-file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The spool directory cannot be used.
    #[error("spool {path}: {source} (check --spool-dir exists and is writable)")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server rejected the credentials.
    #[error("ClickHouse at {url} rejected the credentials: {message} (set MXCERT_CLICKHOUSE_USER and MXCERT_CLICKHOUSE_PASSWORD or --clickhouse-password-file)")]
    Auth { url: String, message: String },
    /// The tables are missing or older than this binary.
    #[error("ClickHouse at {url}, database {database}: {message}; run `mxcert schema apply --clickhouse {url} --clickhouse-database {database}`")]
    Schema {
        url: String,
        database: String,
        message: String,
    },
    /// The server cannot be reached.
    #[error("ClickHouse at {url} is unreachable: {message} (is it running? is the URL right?)")]
    Unreachable { url: String, message: String },
    /// Any other error reported by the server.
    #[error("ClickHouse at {url}: {message}")]
    Server { url: String, message: String },
    #[error("cannot start the ClickHouse writer: {0}")]
    Runtime(std::io::Error),
}

/// What went wrong talking to the server, from the crate's error (ClickHouse error codes:
/// 192 UNKNOWN_USER, 193 WRONG_PASSWORD, 516 AUTHENTICATION_FAILED, 60 UNKNOWN_TABLE,
/// 81 UNKNOWN_DATABASE, 16 NO_SUCH_COLUMN_IN_TABLE; src/Common/ErrorCodes.cpp).
pub fn classify_error(url: &str, database: &str, e: &clickhouse::error::Error) -> ClickHouseError {
    let message = e.to_string();
    let url = url.to_string();
    let has = |codes: &[u32]| {
        codes.iter().any(|c| {
            message.contains(&format!("Code: {c}.")) || message.contains(&format!("Code: {c},"))
        })
    };
    if has(&[192, 193, 516]) || message.contains("Authentication failed") {
        ClickHouseError::Auth { url, message }
    } else if has(&[60, 81, 16]) {
        ClickHouseError::Schema {
            url,
            database: database.to_string(),
            message,
        }
    } else if matches!(
        e,
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
    ) {
        ClickHouseError::Unreachable { url, message }
    } else {
        ClickHouseError::Server { url, message }
    }
}

/// Rows of one table, RowBinary-encoded back to back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub rows: u64,
    pub data: Vec<u8>,
}

/// Rows of all three tables sealed together; the unit of insert, retry and spooling.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Unique per batch (sensor, process start, sequence): the deduplication token's base.
    pub id: String,
    pub certificates: TableRows,
    pub sessions: TableRows,
    pub findings: TableRows,
}

impl Batch {
    pub fn rows(&self) -> u64 {
        self.certificates.rows + self.sessions.rows + self.findings.rows
    }
    fn is_empty(&self) -> bool {
        self.rows() == 0
    }
    /// (table, rows) in insert order: certificates before the sessions that reference them.
    pub fn tables(&self) -> [(&'static str, &TableRows); 3] {
        [
            ("certificates", &self.certificates),
            ("sessions", &self.sessions),
            ("findings", &self.findings),
        ]
    }
    pub fn tables_mut(&mut self) -> [&mut TableRows; 3] {
        [
            &mut self.certificates,
            &mut self.sessions,
            &mut self.findings,
        ]
    }
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub sensor: String,
    pub batch_rows: usize,
    pub batch_interval: Duration,
    /// Sealed batches waiting for the writer; beyond this they go to the spool.
    pub queue_batches: usize,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// How long closing waits for the server to take the spool before leaving it on disk.
    pub drain_timeout: Duration,
    /// First and longest wait between retries while the server is down.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Config {
    pub fn new(url: &str) -> Config {
        Config {
            url: url.to_string(),
            database: "mxcert".into(),
            user: None,
            password: None,
            sensor: default_sensor(),
            batch_rows: 10_000,
            batch_interval: Duration::from_secs(1),
            queue_batches: 16,
            spool_dir: PathBuf::from("mxcert-out/clickhouse-spool"),
            spool_max_bytes: 1 << 30,
            drain_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
        }
    }

    /// The `clickhouse` client. Validation is off: it needs RowBinaryWithNamesAndTypes and
    /// `describe_include_subcolumns`, which servers before 23 lack; the rows follow the
    /// schema's column order instead (checked by `schema::tests`).
    pub fn client(&self) -> clickhouse::Client {
        let mut c = clickhouse::Client::default()
            .with_url(&self.url)
            .with_database(&self.database)
            .with_validation(false);
        if let Some(u) = &self.user {
            c = c.with_user(u);
        }
        if let Some(p) = &self.password {
            c = c.with_password(p);
        }
        c
    }
}

/// The host name, else `mxcert`.
pub fn default_sensor() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mxcert".into())
}

/// Counters, shared with the writer thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows_sent: AtomicU64,
    pub batches_sent: AtomicU64,
    pub rows_spooled: AtomicU64,
    pub rows_replayed: AtomicU64,
    pub rows_dropped: AtomicU64,
    pub failed_inserts: AtomicU64,
    pub spool_files_left: AtomicU64,
    pub spool_bytes_left: AtomicU64,
}

/// A snapshot of [`Counters`] for the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    pub rows_sent: u64,
    pub batches_sent: u64,
    pub rows_spooled: u64,
    pub rows_replayed: u64,
    pub rows_dropped: u64,
    pub failed_inserts: u64,
    pub spool_files_left: u64,
    pub spool_bytes_left: u64,
}

impl Counters {
    pub fn snapshot(&self) -> SinkStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            rows_sent: g(&self.rows_sent),
            batches_sent: g(&self.batches_sent),
            rows_spooled: g(&self.rows_spooled),
            rows_replayed: g(&self.rows_replayed),
            rows_dropped: g(&self.rows_dropped),
            failed_inserts: g(&self.failed_inserts),
            spool_files_left: g(&self.spool_files_left),
            spool_bytes_left: g(&self.spool_bytes_left),
        }
    }
}

impl std::fmt::Display for SinkStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rows sent in {} batches, {} spooled, {} replayed, {} dropped (spool full), {} failed inserts",
            self.rows_sent,
            self.batches_sent,
            self.rows_spooled,
            self.rows_replayed,
            self.rows_dropped,
            self.failed_inserts
        )?;
        if self.spool_files_left > 0 {
            write!(
                f,
                "; {} batches ({:.1} MB) left in the spool, replayed at the next start",
                self.spool_files_left,
                self.spool_bytes_left as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

struct State {
    pending: Batch,
    pending_since: Option<Instant>,
    queue: VecDeque<Batch>,
    /// Emptied batches handed back by the writer: their buffers keep their capacity, so the
    /// packet path neither grows vectors nor faults in fresh pages for every batch.
    spare: Vec<Batch>,
    closing: bool,
}

/// Spare batches kept for reuse (each holds up to a batch of rows' worth of capacity).
const SPARE_BATCHES: usize = 4;

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    spool: Mutex<spool::Spool>,
    counters: Counters,
    /// Batch ids: `sensor-pid-start-seq`, unique across restarts.
    batch_base: String,
    batch_seq: AtomicU64,
}

impl Shared {
    fn seal_pending(&self, st: &mut State) -> Batch {
        let fresh = st.spare.pop().unwrap_or_default();
        let mut b = std::mem::replace(&mut st.pending, fresh);
        b.id = format!(
            "{}-{}",
            self.batch_base,
            self.batch_seq.fetch_add(1, Ordering::Relaxed)
        );
        st.pending_since = None;
        b
    }
}

/// The sink. Record calls only take a mutex and push a row; inserts happen on the writer
/// thread.
pub struct ClickHouseSink {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
    cfg: Config,
    /// Certificate records wait for the session that presents them: its start is first_seen.
    pending_certs: Vec<CertificateRecord>,
    last_ts: i64,
}

/// What the preflight learned about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub variant: Variant,
    pub schema_version: u32,
}

/// Asks the server for its version and the applied schema version. Errors are classified
/// (auth, schema, unreachable).
pub fn preflight(cfg: &Config) -> Result<ServerInfo, ClickHouseError> {
    runtime()?.block_on(server_info(cfg, &cfg.client()))
}

/// The version and schema check behind [`preflight`], also run by the writer when the server
/// answers again after an outage (it may have been replaced or upgraded meanwhile); a failure
/// keeps batches in the spool.
async fn server_info(
    cfg: &Config,
    client: &clickhouse::Client,
) -> Result<ServerInfo, ClickHouseError> {
    let err = |e: clickhouse::error::Error| classify_error(&cfg.url, &cfg.database, &e);
    let version: String = client
        .query("SELECT version()")
        .fetch_one()
        .await
        .map_err(err)?;
    let schema_version: u32 = client
        .query("SELECT toUInt32(max(version)) FROM schema_migrations")
        .fetch_one()
        .await
        .map_err(err)?;
    if schema_version < schema::latest_version() {
        return Err(ClickHouseError::Schema {
            url: cfg.url.clone(),
            database: cfg.database.clone(),
            message: format!(
                "schema version {schema_version}, this mxcert writes version {}",
                schema::latest_version()
            ),
        });
    }
    Ok(ServerInfo {
        variant: Variant::for_server(&version),
        version,
        schema_version,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ClickHouseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClickHouseError::Runtime)
}

impl ClickHouseSink {
    /// Opens the spool and starts the writer (which first replays what the spool holds).
    /// `server`: what [`preflight`] found, or `None` when the server was not reachable yet
    /// (deduplication tokens are then not sent until it is).
    pub fn start(
        cfg: Config,
        server: Option<ServerInfo>,
    ) -> Result<ClickHouseSink, ClickHouseError> {
        let spool = spool::Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Batch::default(),
                pending_since: None,
                queue: VecDeque::new(),
                spare: Vec::new(),
                closing: false,
            }),
            cv: Condvar::new(),
            spool: Mutex::new(spool),
            counters: Counters::default(),
            batch_base: format!("{}-{}-{started:x}", cfg.sensor, std::process::id()),
            batch_seq: AtomicU64::new(1),
        });
        let rt = runtime()?;
        let w_shared = Arc::clone(&shared);
        let w_cfg = cfg.clone();
        let writer = std::thread::Builder::new()
            .name("mxcert-clickhouse".into())
            .spawn(move || Writer::new(w_cfg, w_shared, server).run(&rt))
            .map_err(ClickHouseError::Runtime)?;
        Ok(ClickHouseSink {
            shared,
            writer: Some(writer),
            cfg,
            pending_certs: Vec::new(),
            last_ts: 0,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> SinkStats {
        self.shared.counters.snapshot()
    }

    fn push(&self, add: impl FnOnce(&mut Batch, &str)) {
        let mut st = lock(&self.shared.state);
        if st.pending.is_empty() {
            st.pending_since = Some(Instant::now());
        }
        add(&mut st.pending, &self.cfg.sensor);
        if st.pending.rows() as usize >= self.cfg.batch_rows {
            let batch = self.shared.seal_pending(&mut st);
            if st.queue.len() < self.cfg.queue_batches {
                st.queue.push_back(batch);
                drop(st);
                self.shared.cv.notify_all();
            } else {
                // The writer is behind: never block the packet path, spool instead.
                drop(st);
                spool_batch(&self.shared, &batch);
            }
        }
    }

    /// Seals the pending rows (the writer inserts them soon).
    fn seal(&mut self) {
        let mut st = lock(&self.shared.state);
        if !st.pending.is_empty() {
            let batch = self.shared.seal_pending(&mut st);
            st.queue.push_back(batch);
        }
        drop(st);
        self.shared.cv.notify_all();
    }

    fn flush_certs(&mut self, ts: i64) {
        if self.pending_certs.is_empty() {
            return;
        }
        let certs = std::mem::take(&mut self.pending_certs);
        self.push(|b, sensor| {
            for c in &certs {
                rows::encode_certificate(&mut b.certificates.data, c, sensor, ts);
                b.certificates.rows += 1;
            }
        });
    }

    /// Seals everything, waits for the writer to insert it (up to the drain timeout while the
    /// server is down; what is left stays in the spool) and returns the counters.
    pub fn close(mut self) -> SinkStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        let ts = self.last_ts;
        self.flush_certs(ts);
        self.seal();
        lock(&self.shared.state).closing = true;
        self.shared.cv.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for ClickHouseSink {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.shutdown();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic on the other thread must not take the rows with it: keep using the data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends to the spool; counts the rows as spooled, or as dropped (loudly) when it is full.
fn spool_batch(shared: &Shared, batch: &Batch) {
    let rows = batch.rows();
    let mut spool = lock(&shared.spool);
    match spool.push(batch) {
        Ok(true) => {
            shared
                .counters
                .rows_spooled
                .fetch_add(rows, Ordering::Relaxed);
        }
        Ok(false) => {
            shared
                .counters
                .rows_dropped
                .fetch_add(rows, Ordering::Relaxed);
            eprintln!(
                "mxcert: error: ClickHouse spool is full ({} batches, {:.1} MB, bound --spool-max-mb): {rows} rows DROPPED; raise the bound or bring ClickHouse back",
                spool.len(),
                spool.bytes() as f64 / 1e6
            );
        }
        Err(e) => {
            shared
                .counters
                .rows_dropped
                .fetch_add(rows, Ordering::Relaxed);
            eprintln!("mxcert: error: {e}: {rows} rows DROPPED");
        }
    }
}

impl Sink for ClickHouseSink {
    fn certificate(&mut self, rec: &CertificateRecord) -> Result<(), SinkError> {
        // Bounded: the pipeline writes a session's certificates right before the session.
        if self.pending_certs.len() >= 64 {
            let ts = self.last_ts;
            self.flush_certs(ts);
        }
        self.pending_certs.push(rec.clone());
        Ok(())
    }
    fn session(&mut self, rec: &SessionRecord) -> Result<(), SinkError> {
        let ts = rows::rfc3339_to_ms(&rec.ts).unwrap_or(0);
        self.last_ts = ts;
        self.flush_certs(ts);
        self.push(|b, sensor| {
            rows::encode_session(&mut b.sessions.data, rec, sensor);
            b.sessions.rows += 1;
        });
        Ok(())
    }
    fn finding(&mut self, rec: &Finding) -> Result<(), SinkError> {
        self.push(|b, sensor| {
            rows::encode_finding(&mut b.findings.data, rec, sensor);
            b.findings.rows += 1;
        });
        Ok(())
    }
    /// Hands waiting certificates to the batch. It does not seal the batch: the writer
    /// sends it within the batch interval, and a caller flushing often (the pipeline at
    /// every file's end) must not turn into one tiny INSERT per call.
    fn flush(&mut self) -> Result<(), SinkError> {
        let ts = self.last_ts;
        self.flush_certs(ts);
        Ok(())
    }
}

/// The writer thread: inserts queued batches, spools on failure, replays the spool.
struct Writer {
    cfg: Config,
    shared: Arc<Shared>,
    client: clickhouse::Client,
    server: Option<ServerInfo>,
    down: bool,
    retry_wait: Duration,
    next_retry: Instant,
    last_problem: Option<String>,
}

impl Writer {
    fn new(cfg: Config, shared: Arc<Shared>, server: Option<ServerInfo>) -> Writer {
        let client = cfg.client();
        let down = server.is_none();
        Writer {
            retry_wait: cfg.retry_min,
            cfg,
            shared,
            client,
            server,
            down,
            next_retry: Instant::now(),
            last_problem: None,
        }
    }

    fn run(mut self, rt: &tokio::runtime::Runtime) {
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let batch = {
                let mut st = lock(&self.shared.state);
                loop {
                    if let Some(b) = st.queue.pop_front() {
                        break Some(b);
                    }
                    let aged = st
                        .pending_since
                        .is_some_and(|t| t.elapsed() >= self.cfg.batch_interval);
                    if aged {
                        // Time-based seal: sparse traffic still reaches the server.
                        break Some(self.shared.seal_pending(&mut st));
                    }
                    let spool_due =
                        !lock(&self.shared.spool).is_empty() && Instant::now() >= self.next_retry;
                    if st.closing || spool_due {
                        break None;
                    }
                    let wait = self.cfg.batch_interval.min(self.cfg.retry_min);
                    st = self
                        .shared
                        .cv
                        .wait_timeout(st, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            };
            if let Some(b) = batch {
                self.take(rt, b);
            }
            self.replay(rt);
            let st = lock(&self.shared.state);
            if st.closing && st.queue.is_empty() && st.pending.is_empty() {
                let spool_empty = lock(&self.shared.spool).is_empty();
                let deadline =
                    *drain_deadline.get_or_insert_with(|| Instant::now() + self.cfg.drain_timeout);
                if spool_empty || Instant::now() >= deadline {
                    break;
                }
                drop(st);
                std::thread::sleep(self.cfg.retry_min.min(Duration::from_millis(100)));
            }
        }
        let spool = lock(&self.shared.spool);
        let c = &self.shared.counters;
        c.spool_files_left
            .store(spool.len() as u64, Ordering::Relaxed);
        c.spool_bytes_left.store(spool.bytes(), Ordering::Relaxed);
    }

    /// A new batch: straight to the server when nothing older waits, else behind the spool.
    fn take(&mut self, rt: &tokio::runtime::Runtime, b: Batch) {
        if b.is_empty() {
            return;
        }
        let spool_empty = lock(&self.shared.spool).is_empty();
        let mut done = false;
        if spool_empty && !self.down {
            match rt.block_on(self.insert(&b)) {
                Ok(()) => {
                    self.sent(&b, false);
                    done = true;
                }
                Err(e) => self.failed(e),
            }
        }
        if !done {
            spool_batch(&self.shared, &b);
        }
        self.recycle(b);
    }

    fn recycle(&self, mut b: Batch) {
        b.id.clear();
        for t in b.tables_mut() {
            t.rows = 0;
            t.data.clear();
        }
        let mut st = lock(&self.shared.state);
        if st.spare.len() < SPARE_BATCHES {
            st.spare.push(b);
        }
    }

    /// Replays the spool, oldest first, while the server takes it.
    fn replay(&mut self, rt: &tokio::runtime::Runtime) {
        loop {
            if Instant::now() < self.next_retry {
                return;
            }
            let Some(b) = lock(&self.shared.spool).oldest() else {
                return;
            };
            match rt.block_on(self.insert(&b)) {
                Ok(()) => {
                    lock(&self.shared.spool).pop();
                    self.sent(&b, true);
                }
                Err(e) => {
                    self.failed(e);
                    return;
                }
            }
        }
    }

    fn sent(&mut self, b: &Batch, replayed: bool) {
        let c = &self.shared.counters;
        c.rows_sent.fetch_add(b.rows(), Ordering::Relaxed);
        c.batches_sent.fetch_add(1, Ordering::Relaxed);
        if replayed {
            c.rows_replayed.fetch_add(b.rows(), Ordering::Relaxed);
        }
        if self.down || self.last_problem.is_some() {
            eprintln!("mxcert: ClickHouse at {} is back; sending", self.cfg.url);
        }
        self.down = false;
        self.last_problem = None;
        self.retry_wait = self.cfg.retry_min;
    }

    fn failed(&mut self, e: ClickHouseError) {
        self.shared
            .counters
            .failed_inserts
            .fetch_add(1, Ordering::Relaxed);
        let msg = e.to_string();
        // One line per change of problem, not per retry.
        if self.last_problem.as_deref() != Some(msg.as_str()) {
            eprintln!(
                "mxcert: warning: {msg}; batches go to the spool {} and are retried",
                self.cfg.spool_dir.display()
            );
            self.last_problem = Some(msg);
        }
        self.down = true;
        self.next_retry = Instant::now() + self.retry_wait;
        self.retry_wait = (self.retry_wait * 2).min(self.cfg.retry_max);
        // The server may have been replaced (upgrade): ask again once it answers.
        self.server = None;
    }

    async fn insert(&mut self, b: &Batch) -> Result<(), ClickHouseError> {
        if self.server.is_none() {
            self.server = Some(server_info(&self.cfg, &self.client).await?);
        }
        let tokens = self
            .server
            .as_ref()
            .is_some_and(|s| s.variant == Variant::Modern);
        let err =
            |e: clickhouse::error::Error| classify_error(&self.cfg.url, &self.cfg.database, &e);
        for (table, rows) in b.tables() {
            let token = tokens.then(|| format!("{}-{table}", b.id));
            insert_table(&self.client, table, rows, token)
                .await
                .map_err(err)?;
        }
        Ok(())
    }
}

/// One INSERT of pre-encoded RowBinary rows (all columns, in table order).
async fn insert_table(
    client: &clickhouse::Client,
    table: &str,
    rows: &TableRows,
    token: Option<String>,
) -> Result<(), clickhouse::error::Error> {
    if rows.rows == 0 {
        return Ok(());
    }
    let mut ins = client
        .insert_formatted_with(format!("INSERT INTO {table} FORMAT RowBinary"))
        .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
    if let Some(t) = token {
        ins = ins.with_setting("insert_deduplication_token", t);
    }
    let mut ins = ins.buffered_with_capacity(256 * 1024);
    let mut off = 0;
    while off < rows.data.len() {
        off += ins.write(&rows.data[off..]).await?;
    }
    ins.end().await
}
