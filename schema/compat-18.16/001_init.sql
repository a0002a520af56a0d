-- 001_init, wire-compatible variant for ClickHouse < 19 (Debian 12's clickhouse-server 18.16).
--
-- Same tables, same column names and order, and the same RowBinary bytes as ../001_init.sql, so
-- one mxcert binary streams into either server. Type by type:
--   DateTime64(3, 'UTC')    -> Int64 (milliseconds since the epoch; DateTime64 is that on the wire)
--   LowCardinality(String)  -> String (LowCardinality is a storage detail, String on the wire)
--   IPv6                    -> FixedString(16) (16 bytes, network order; IPv4 as ::ffff:a.b.c.d)
--   Enum8, Nullable, Array  -> unchanged
-- Not available on 18.16: TTL (drop old months with ALTER TABLE ... DROP PARTITION) and
-- non_replicated_deduplication_window / insert_deduplication_token (ReplacingMergeTree keys and
-- FINAL still remove a retried batch). The query pack in queries/ targets the current engine.

CREATE TABLE IF NOT EXISTS sessions
(
    sensor              String,
    session_id          String,
    ts                  Int64,
    end_ts              Int64,
    client_ip           FixedString(16),
    client_port         UInt16,
    server_ip           FixedString(16),
    server_port         UInt16,
    direction           Enum8('unknown' = 0, 'inbound' = 1, 'outbound' = 2),
    banner_host         String,
    ehlo                String,
    starttls_offered    Nullable(UInt8),
    starttls            UInt8,
    implicit_tls        UInt8,
    starttls_reply_code Nullable(UInt16),
    tls_version         String,
    cipher              String,
    sni                 String,
    cert_requested      Nullable(UInt8),
    client_cert_presented Nullable(UInt8),
    server_chain        Array(String),
    client_chain        Array(String),
    alert               String,
    alert_from          String,
    client_version      String,
    hello_retry         UInt8,
    outcome             Enum8('established' = 1, 'alert' = 2, 'reset' = 3, 'closed' = 4, 'incomplete' = 5, 'no_tls' = 6),
    midstream           UInt8,
    packets             UInt64,
    bytes               UInt64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000)))
ORDER BY (sensor, direction, server_ip, session_id);

CREATE TABLE IF NOT EXISTS certificates
(
    sha256              String,
    first_seen          Int64,
    last_seen           Int64,
    sensor              String,
    subject             String,
    issuer              String,
    serial              String,
    not_before          Nullable(Int64),
    not_after           Nullable(Int64),
    san_dns             Array(String),
    san_ip              Array(String),
    eku_present         Nullable(UInt8),
    eku                 Array(String),
    key_usage           Array(String),
    is_ca               Nullable(UInt8),
    self_signed         Nullable(UInt8),
    key_type            String,
    key_bits            Nullable(UInt32),
    signature_algorithm String,
    subject_cn          String,
    version             Nullable(UInt8),
    parse_error         String
)
ENGINE = ReplacingMergeTree(last_seen)
ORDER BY sha256;

CREATE TABLE IF NOT EXISTS findings
(
    sensor              String,
    ts                  Int64,
    session_id          String,
    role                Enum8('server' = 1, 'client' = 2),
    cert_sha256         String,
    scenario            String,
    rule                String,
    verdict             Enum8('pass' = 1, 'fail' = 2, 'warn' = 3, 'unknown' = 4),
    effective           Nullable(Int64),
    detail              String,
    direction           Enum8('unknown' = 0, 'inbound' = 1, 'outbound' = 2),
    client_ip           FixedString(16),
    server_ip           FixedString(16),
    server_port         UInt16,
    peer_name           String,
    validation_time     Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000)))
ORDER BY (sensor, scenario, rule, direction, session_id, role);
