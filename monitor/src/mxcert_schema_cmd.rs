//! `mxcert schema apply`: flags and output; the work is `sink::clickhouse::apply_schema`.

use mxcert::sink::clickhouse::schema::{Ttl, Variant};
use mxcert::sink::clickhouse::{apply_schema, ClickHouseArgs};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,

    /// Days sessions are kept (TTL on the `sessions` table; 0 keeps them forever). Takes effect
    /// when the table is created; later: ALTER TABLE sessions MODIFY TTL ...
    #[arg(long, value_name = "DAYS", default_value_t = Ttl::default().sessions_days)]
    pub sessions_ttl_days: u32,

    /// Days findings are kept (TTL on the `findings` table; 0 keeps them forever).
    #[arg(long, value_name = "DAYS", default_value_t = Ttl::default().findings_days)]
    pub findings_ttl_days: u32,

    /// Force a variant instead of detecting it from the server version.
    #[arg(long, value_enum)]
    pub variant: Option<VariantArg>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum VariantArg {
    /// Current ClickHouse (19 and later).
    Modern,
    /// ClickHouse 18.x (Debian 12's clickhouse-server).
    Compat18,
}

pub fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let Some(cfg) = args.clickhouse.config()? else {
        anyhow::bail!("schema apply needs --clickhouse URL (e.g. http://127.0.0.1:8123)");
    };
    let ttl = Ttl {
        sessions_days: args.sessions_ttl_days,
        findings_days: args.findings_ttl_days,
    };
    let force = args.variant.map(|v| match v {
        VariantArg::Modern => Variant::Modern,
        VariantArg::Compat18 => Variant::Compat18,
    });
    let a = apply_schema(&cfg, ttl, force)?;
    if a.applied.is_empty() {
        println!(
            "schema of database {} is current (version {}, {} variant; server {})",
            cfg.database, a.version, a.variant, a.server_version
        );
    } else {
        println!(
            "applied migration(s) {:?} to database {} ({} variant for server {}); schema version {}",
            a.applied, cfg.database, a.variant, a.server_version, a.version
        );
    }
    Ok(())
}
