//! Command-line flags of the ClickHouse sink (one struct, flattened into `mxcert read` and
//! `mxcert capture`), and the functions that turn them into a running sink or an applied
//! schema.

use std::path::PathBuf;
use std::time::Duration;

use super::schema::{self, Ttl, Variant};
use super::{preflight, ClickHouseError, ClickHouseSink, Config};

/// Streaming to ClickHouse. Credentials come from the environment
/// (MXCERT_CLICKHOUSE_USER, MXCERT_CLICKHOUSE_PASSWORD) or --clickhouse-password-file, never
/// from the command line, where any local user could read them in the process list.
#[derive(clap::Args, Debug, Clone)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP(S) endpoint, e.g. http://127.0.0.1:8123. Records are streamed there
    /// (JSON lines are then written only when --out is given too).
    #[arg(long, value_name = "URL", env = "MXCERT_CLICKHOUSE_URL")]
    pub clickhouse: Option<String>,

    /// Database holding mxcert's tables.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "mxcert",
        env = "MXCERT_CLICKHOUSE_DATABASE"
    )]
    pub clickhouse_database: String,

    /// File whose first line is the ClickHouse password (instead of MXCERT_CLICKHOUSE_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub clickhouse_password_file: Option<PathBuf>,

    /// Name of this gateway in the `sensor` column [default: the host name].
    #[arg(long, value_name = "NAME", env = "MXCERT_SENSOR")]
    pub sensor: Option<String>,

    /// Rows per INSERT batch.
    #[arg(long, value_name = "ROWS", default_value_t = 10_000)]
    pub clickhouse_batch_rows: usize,

    /// Longest time a row waits in memory before its batch is sent.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub clickhouse_batch_ms: u64,

    /// Where batches wait while ClickHouse is down or slow; replayed in order when it returns
    /// and at the next start.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "mxcert-out/clickhouse-spool",
        env = "MXCERT_SPOOL_DIR"
    )]
    pub spool_dir: PathBuf,

    /// Bound of the spool; beyond it batches are dropped (counted, logged as errors).
    #[arg(long, value_name = "MB", default_value_t = 1024)]
    pub spool_max_mb: u64,

    /// At the end of a run, how long to wait for ClickHouse to take the spool before leaving
    /// it on disk for the next start.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub clickhouse_drain_timeout: u64,
}

impl ClickHouseArgs {
    /// The sink configuration, `None` without --clickhouse.
    pub fn config(&self) -> Result<Option<Config>, ClickHouseError> {
        let Some(url) = &self.clickhouse else {
            return Ok(None);
        };
        let bad = |reason: &str| ClickHouseError::Url {
            url: url.clone(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("write http://HOST:PORT (the HTTP interface, usually port 8123)"))?;
        if url.starts_with("https://") {
            return Err(bad(
                "this build speaks plain HTTP; put a TLS proxy (or an SSH tunnel) in front, or use http:// on a trusted network",
            ));
        }
        if rest.split('/').next().unwrap_or("").contains('@') {
            return Err(bad(
                "credentials do not belong in the URL (it shows in the process list); use MXCERT_CLICKHOUSE_USER / MXCERT_CLICKHOUSE_PASSWORD or --clickhouse-password-file",
            ));
        }
        let mut cfg = Config::new(url.trim_end_matches('/'));
        cfg.database = self.clickhouse_database.clone();
        cfg.user = std::env::var("MXCERT_CLICKHOUSE_USER")
            .ok()
            .filter(|s| !s.is_empty());
        cfg.password = match &self.clickhouse_password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|source| ClickHouseError::PasswordFile {
                        path: p.clone(),
                        source,
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ),
            None => std::env::var("MXCERT_CLICKHOUSE_PASSWORD").ok(),
        };
        if let Some(s) = &self.sensor {
            cfg.sensor = s.clone();
        }
        cfg.batch_rows = self.clickhouse_batch_rows.max(1);
        cfg.batch_interval = Duration::from_millis(self.clickhouse_batch_ms.max(1));
        cfg.spool_dir = self.spool_dir.clone();
        cfg.spool_max_bytes = self.spool_max_mb.saturating_mul(1 << 20);
        cfg.drain_timeout = Duration::from_secs(self.clickhouse_drain_timeout);
        Ok(Some(cfg))
    }

    /// Starts the sink: `None` without --clickhouse. Wrong credentials or a missing schema
    /// stop here with a message saying what to do; an unreachable server does not (a
    /// gateway's capture must not wait for its database): batches are spooled until it
    /// answers.
    pub fn start_sink(&self) -> Result<Option<ClickHouseSink>, ClickHouseError> {
        let Some(cfg) = self.config()? else {
            return Ok(None);
        };
        let server = match preflight(&cfg) {
            Ok(info) => Some(info),
            Err(e @ ClickHouseError::Unreachable { .. }) => {
                eprintln!(
                    "mxcert: warning: {e}; records go to the spool {} until it answers",
                    cfg.spool_dir.display()
                );
                None
            }
            Err(e) => return Err(e),
        };
        ClickHouseSink::start(cfg, server).map(Some)
    }
}

/// What `schema apply` did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub server_version: String,
    pub variant: Variant,
    /// Versions applied now (empty: the schema was current).
    pub applied: Vec<u32>,
    pub version: u32,
}

/// Creates the database and applies the missing migrations in the variant the server
/// supports (or `force`), recording each in `schema_migrations`. Idempotent.
pub fn apply_schema(
    cfg: &Config,
    ttl: Ttl,
    force: Option<Variant>,
) -> Result<Applied, ClickHouseError> {
    let rt = super::runtime()?;
    let err = |e: clickhouse::error::Error| super::classify_error(&cfg.url, &cfg.database, &e);
    rt.block_on(async {
        let root = {
            let mut c = cfg.clone();
            c.database = "default".into();
            c.client()
        };
        let server_version: String = root
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(err)?;
        let variant = force.unwrap_or_else(|| Variant::for_server(&server_version));
        let db = cfg.database.replace('`', "");
        root.query(&format!("CREATE DATABASE IF NOT EXISTS `{db}`"))
            .execute()
            .await
            .map_err(err)?;
        let client = cfg.client();
        client
            .query(schema::MIGRATIONS_TABLE)
            .execute()
            .await
            .map_err(err)?;
        let done: Vec<u32> = client
            .query("SELECT version FROM schema_migrations")
            .fetch_all()
            .await
            .map_err(err)?;
        let mut applied = Vec::new();
        for m in schema::MIGRATIONS {
            if done.contains(&m.version) {
                continue;
            }
            for stmt in schema::statements(&schema::render(m, variant, ttl)) {
                client.query(&stmt).execute().await.map_err(err)?;
            }
            client
                .query(&format!(
                    "INSERT INTO schema_migrations VALUES ({}, '{}', '{}', now())",
                    m.version,
                    m.name,
                    variant.as_str()
                ))
                .execute()
                .await
                .map_err(err)?;
            applied.push(m.version);
        }
        Ok(Applied {
            server_version,
            variant,
            applied,
            version: schema::latest_version(),
        })
    })
}
