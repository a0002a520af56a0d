//! Versioned migrations of `schema/` (embedded, so the binary needs no repository), applied by
//! `mxcert schema apply`, and the query pack.
//!
//! Applied versions are recorded in `schema_migrations`; a version is applied once, so running
//! `apply` again is a no-op. The server version decides the variant: ClickHouse 19 and later
//! get `schema/NNN_*.sql` (DateTime64, LowCardinality, IPv6, TTL, deduplication window); older
//! servers (Debian 12 ships 18.16) get `schema/compat-18.16/NNN_*.sql`, the same columns with
//! wire-compatible types, so the sink's RowBinary rows land in either.

use std::fmt;

/// One migration, in both variants.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub modern: &'static str,
    pub compat_18: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        modern: include_str!("../../../../schema/001_init.sql"),
        compat_18: include_str!("../../../../schema/compat-18.16/001_init.sql"),
    },
    Migration {
        version: 2,
        name: "library_chains",
        modern: include_str!("../../../../schema/002_library_chains.sql"),
        compat_18: include_str!("../../../../schema/compat-18.16/002_library_chains.sql"),
    },
];

/// Every migration's DDL of the modern variant, in order (what a fresh server ends up with).
pub fn modern_ddl() -> String {
    MIGRATIONS
        .iter()
        .map(|m| m.modern)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The schema version this binary writes rows for.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// `schema/load/records_jsonl.sql`: loads a `mxcert read --out` file into the modern tables.
pub const LOAD_RECORDS_JSONL: &str = include_str!("../../../../schema/load/records_jsonl.sql");

/// The query pack, `schema/queries/*.sql`: (file stem, SQL).
pub const QUERIES: &[(&str, &str)] = &[
    (
        "1_inbound_client_certs_without_clientauth",
        include_str!("../../../../schema/queries/1_inbound_client_certs_without_clientauth.sql"),
    ),
    (
        "2_inbound_clientauth_sunset",
        include_str!("../../../../schema/queries/2_inbound_clientauth_sunset.sql"),
    ),
    (
        "3_outbound_destinations_requesting_client_certs",
        include_str!(
            "../../../../schema/queries/3_outbound_destinations_requesting_client_certs.sql"
        ),
    ),
    (
        "4_outbound_strict_validation_failures",
        include_str!("../../../../schema/queries/4_outbound_strict_validation_failures.sql"),
    ),
    (
        "5_coverage",
        include_str!("../../../../schema/queries/5_coverage.sql"),
    ),
    (
        "6_daily_failing_sessions_by_rule",
        include_str!("../../../../schema/queries/6_daily_failing_sessions_by_rule.sql"),
    ),
];

/// Which DDL a server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// ClickHouse 19 and later.
    Modern,
    /// ClickHouse before 19 (Debian 12's 18.16): no DateTime64/LowCardinality/IPv6/TTL.
    Compat18,
}

impl Variant {
    /// From `SELECT version()` (`18.16.1`, `24.8.4.13`); unparsable text counts as modern.
    pub fn for_server(version: &str) -> Variant {
        match version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
        {
            Some(major) if major < 19 => Variant::Compat18,
            _ => Variant::Modern,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Modern => "modern",
            Variant::Compat18 => "compat-18.16",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Retention, rendered into `{sessions_ttl}` / `{findings_ttl}` (0 days: keep forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub sessions_days: u32,
    pub findings_days: u32,
}

impl Default for Ttl {
    fn default() -> Ttl {
        Ttl {
            sessions_days: 400,
            findings_days: 400,
        }
    }
}

/// The migration's DDL for a variant, placeholders rendered.
pub fn render(m: &Migration, variant: Variant, ttl: Ttl) -> String {
    let ttl_clause = |days: u32| {
        if days == 0 {
            String::new()
        } else {
            format!("TTL toDateTime(ts) + INTERVAL {days} DAY")
        }
    };
    match variant {
        Variant::Modern => m
            .modern
            .replace("{sessions_ttl}", &ttl_clause(ttl.sessions_days))
            .replace("{findings_ttl}", &ttl_clause(ttl.findings_days)),
        Variant::Compat18 => m.compat_18.to_string(),
    }
}

/// Splits a file into statements: a statement ends with a line ending in `;`; comment-only
/// lines before a statement are dropped (18.16 rejects an empty query).
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with("--")) {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            let stmt = cur.trim().trim_end_matches(';').trim().to_string();
            out.push(stmt);
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// `schema/load/records_jsonl.sql` for one file and sensor, as statements.
pub fn load_records_statements(file: &str, sensor: &str) -> Vec<String> {
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    statements(
        &LOAD_RECORDS_JSONL
            .replace("{file}", &quote(file))
            .replace("{sensor}", &quote(sensor)),
    )
}

/// `(table, column, type)` of every `CREATE TABLE` column and `ALTER TABLE ... ADD COLUMN` in
/// migration text, in declaration order (ADD COLUMN appends, as the server does).
pub fn columns(sql: &str) -> Vec<(String, String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in sql.lines() {
        let t = line.trim();
        if let Some(rest) = t
            .strip_prefix("CREATE TABLE IF NOT EXISTS ")
            .or_else(|| t.strip_prefix("ALTER TABLE "))
        {
            table = rest.trim().to_string();
        } else if line.starts_with("    ") && !t.starts_with("--") {
            let t = t.strip_prefix("ADD COLUMN ").unwrap_or(t);
            if let Some((col, ty)) = t.split_once(char::is_whitespace) {
                out.push((
                    table.clone(),
                    col.to_string(),
                    ty.trim().trim_end_matches([',', ';']).to_string(),
                ));
            }
        }
    }
    out
}

/// A table's columns as a structure string for `file(path, RowBinary, structure)`.
pub fn structure(sql: &str, table: &str) -> String {
    columns(sql)
        .into_iter()
        .filter(|c| c.0 == table)
        .map(|c| format!("{} {}", c.1, c.2))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The migrations table (same DDL on every supported server).
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
    (version UInt32, name String, variant String, applied_at DateTime) \
    ENGINE = MergeTree() ORDER BY version";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_get_the_compatible_variant() {
        assert_eq!(Variant::for_server("18.16.1"), Variant::Compat18);
        assert_eq!(Variant::for_server("19.1.6"), Variant::Modern);
        assert_eq!(Variant::for_server("24.8.4.13"), Variant::Modern);
    }

    /// Both variants must declare the same columns in the same order: the sink sends
    /// RowBinary by position.
    #[test]
    fn variants_declare_the_same_columns() {
        let names = |sql: &str| -> Vec<(String, String)> {
            super::columns(sql)
                .into_iter()
                .map(|c| (c.0, c.1))
                .collect()
        };
        let all = modern_ddl();
        let sessions = structure(&all, "sessions");
        assert!(sessions.starts_with(
            "sensor LowCardinality(String), session_id String, ts DateTime64(3, 'UTC'), end_ts"
        ));
        assert!(
            sessions.ends_with(
                "chain_source LowCardinality(String), resumed UInt8, resumed_from String"
            ),
            "{sessions}"
        );
        assert!(
            names(&all).len() > 50,
            "{} columns parsed",
            names(&all).len()
        );
        for m in MIGRATIONS {
            assert_eq!(
                names(m.modern),
                names(m.compat_18),
                "migration {}",
                m.version
            );
        }
    }

    #[test]
    fn statements_split_at_semicolons_and_drop_comments() {
        let s =
            statements("-- head\n\nCREATE TABLE a (x UInt8)\nENGINE = Log;\n-- two\nSELECT 1;\n");
        assert_eq!(s, ["CREATE TABLE a (x UInt8)\nENGINE = Log", "SELECT 1"]);
        let ddl = render(&MIGRATIONS[0], Variant::Modern, Ttl::default());
        assert!(ddl.contains("TTL toDateTime(ts) + INTERVAL 400 DAY"));
        assert!(!ddl.contains('{'), "every placeholder rendered");
        let none = render(
            &MIGRATIONS[0],
            Variant::Modern,
            Ttl {
                sessions_days: 0,
                findings_days: 0,
            },
        );
        assert!(!none.contains("TTL"));
        assert_eq!(statements(&ddl).len(), 3);
    }
}
