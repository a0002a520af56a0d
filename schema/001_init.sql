-- 001_init: sessions, certificates and findings (single node, current ClickHouse).
--
-- Natural keys: a retried batch replaces rows instead of adding them. ReplacingMergeTree keeps
-- one row per ORDER BY key after merges; queries read with FINAL (or argMax) so duplicates that
-- are not merged yet never count twice. Inserts also carry an insert_deduplication_token per
-- batch, which non_replicated_deduplication_window makes effective on non-replicated tables.
-- {sessions_ttl} / {findings_ttl} are rendered by `mxcert schema apply` (--ttl-days; empty
-- when 0). The 18.16 variant of this file is compat-18.16/001_init.sql.

CREATE TABLE IF NOT EXISTS sessions
(
    sensor              LowCardinality(String),
    session_id          String,
    ts                  DateTime64(3, 'UTC'),
    end_ts              DateTime64(3, 'UTC'),
    client_ip           IPv6,
    client_port         UInt16,
    server_ip           IPv6,
    server_port         UInt16,
    direction           Enum8('unknown' = 0, 'inbound' = 1, 'outbound' = 2),
    banner_host         String,
    ehlo                String,
    starttls_offered    Nullable(UInt8),
    starttls            UInt8,
    implicit_tls        UInt8,
    starttls_reply_code Nullable(UInt16),
    tls_version         LowCardinality(String),
    cipher              LowCardinality(String),
    sni                 String,
    cert_requested      Nullable(UInt8),
    client_cert_presented Nullable(UInt8),
    server_chain        Array(String),
    client_chain        Array(String),
    alert               LowCardinality(String),
    alert_from          LowCardinality(String),
    client_version      LowCardinality(String),
    hello_retry         UInt8,
    outcome             Enum8('established' = 1, 'alert' = 2, 'reset' = 3, 'closed' = 4, 'incomplete' = 5, 'no_tls' = 6),
    midstream           UInt8,
    packets             UInt64,
    bytes               UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (sensor, direction, server_ip, session_id)
{sessions_ttl}
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS certificates
(
    sha256              String,
    first_seen          DateTime64(3, 'UTC'),
    last_seen           DateTime64(3, 'UTC'),
    sensor              LowCardinality(String),
    subject             String,
    issuer              String,
    serial              String,
    not_before          Nullable(DateTime64(3, 'UTC')),
    not_after           Nullable(DateTime64(3, 'UTC')),
    san_dns             Array(String),
    san_ip              Array(String),
    eku_present         Nullable(UInt8),
    eku                 Array(LowCardinality(String)),
    key_usage           Array(LowCardinality(String)),
    is_ca               Nullable(UInt8),
    self_signed         Nullable(UInt8),
    key_type            LowCardinality(String),
    key_bits            Nullable(UInt32),
    signature_algorithm LowCardinality(String),
    subject_cn          String,
    version             Nullable(UInt8),
    parse_error         String
)
ENGINE = ReplacingMergeTree(last_seen)
ORDER BY sha256
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS findings
(
    sensor              LowCardinality(String),
    ts                  DateTime64(3, 'UTC'),
    session_id          String,
    role                Enum8('server' = 1, 'client' = 2),
    cert_sha256         String,
    scenario            LowCardinality(String),
    rule                LowCardinality(String),
    verdict             Enum8('pass' = 1, 'fail' = 2, 'warn' = 3, 'unknown' = 4),
    effective           Nullable(DateTime64(3, 'UTC')),
    detail              String,
    direction           Enum8('unknown' = 0, 'inbound' = 1, 'outbound' = 2),
    client_ip           IPv6,
    server_ip           IPv6,
    server_port         UInt16,
    peer_name           String,
    validation_time     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (sensor, scenario, rule, direction, session_id, role)
{findings_ttl}
SETTINGS non_replicated_deduplication_window = 1000;
