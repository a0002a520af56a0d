-- Load a records file written by `mxcert read --out FILE` (JSON lines) into the tables of
-- 001_init.sql and 002_library_chains.sql, on the current engine (clickhouse-local,
-- clickhouse-client with a server-side file, or chdb). The streaming sink writes the same rows; this is for runs made without
-- --clickhouse and for the query-pack tests. Placeholders: {file} (path readable by the
-- server), {sensor} (a quoted string literal naming the gateway).
--
-- Sessions load first: a certificate's first_seen/last_seen come from the sessions presenting it.
-- Timestamps are parsed from their RFC 3339 text: a JSON number into DateTime64 would be read
-- as seconds, not milliseconds.

INSERT INTO sessions
SELECT
    {sensor},
    JSONExtractString(line, 'session_id'),
    parseDateTime64BestEffort(JSONExtractString(line, 'ts'), 3, 'UTC'),
    parseDateTime64BestEffort(JSONExtractString(line, 'end_ts'), 3, 'UTC'),
    toIPv6(JSONExtractString(line, 'client_ip')),
    JSONExtractUInt(line, 'client_port'),
    toIPv6(JSONExtractString(line, 'server_ip')),
    JSONExtractUInt(line, 'server_port'),
    JSONExtractString(line, 'direction'),
    JSONExtractString(line, 'smtp', 'banner_host'),
    JSONExtractString(line, 'smtp', 'ehlo'),
    JSONExtract(line, 'smtp', 'starttls_offered', 'Nullable(UInt8)'),
    JSONExtract(line, 'smtp', 'starttls', 'UInt8'),
    JSONExtract(line, 'smtp', 'implicit_tls', 'UInt8'),
    JSONExtract(line, 'smtp', 'starttls_reply_code', 'Nullable(UInt16)'),
    JSONExtractString(line, 'tls', 'version'),
    JSONExtractString(line, 'tls', 'cipher'),
    JSONExtractString(line, 'tls', 'sni'),
    JSONExtract(line, 'tls', 'cert_requested', 'Nullable(UInt8)'),
    JSONExtract(line, 'tls', 'client_cert_presented', 'Nullable(UInt8)'),
    JSONExtract(line, 'tls', 'server_chain', 'Array(String)'),
    JSONExtract(line, 'tls', 'client_chain', 'Array(String)'),
    JSONExtractString(line, 'tls', 'alert'),
    JSONExtractString(line, 'tls', 'alert_from'),
    JSONExtractString(line, 'tls', 'client_version'),
    JSONExtract(line, 'tls', 'hello_retry', 'UInt8'),
    JSONExtractString(line, 'outcome'),
    JSONExtract(line, 'midstream', 'UInt8'),
    JSONExtractUInt(line, 'packets'),
    JSONExtractUInt(line, 'bytes'),
    JSONExtractString(line, 'tls', 'chain_source'),
    JSONExtract(line, 'tls', 'resumed', 'UInt8'),
    JSONExtractString(line, 'tls', 'resumed_from')
FROM file({file}, 'LineAsString')
WHERE JSONExtractString(line, 'record') = 'session';

INSERT INTO findings
SELECT
    {sensor},
    parseDateTime64BestEffort(JSONExtractString(line, 'ts'), 3, 'UTC'),
    JSONExtractString(line, 'session_id'),
    JSONExtractString(line, 'role'),
    JSONExtractString(line, 'cert_sha256'),
    JSONExtractString(line, 'scenario'),
    JSONExtractString(line, 'rule'),
    JSONExtractString(line, 'verdict'),
    parseDateTime64BestEffortOrNull(JSONExtractString(line, 'effective'), 3, 'UTC'),
    JSONExtractString(line, 'detail'),
    JSONExtractString(line, 'direction'),
    toIPv6(JSONExtractString(line, 'client_ip')),
    toIPv6(JSONExtractString(line, 'server_ip')),
    JSONExtractUInt(line, 'server_port'),
    JSONExtractString(line, 'peer_name'),
    parseDateTime64BestEffort(JSONExtractString(line, 'validation_time'), 3, 'UTC')
FROM file({file}, 'LineAsString')
WHERE JSONExtractString(line, 'record') = 'finding';

INSERT INTO certificates
SELECT
    JSONExtractString(line, 'sha256') AS fp,
    -- first/last seen: the sessions of this file that present the certificate.
    ifNull(seen.first_seen, toDateTime64(0, 3, 'UTC')),
    ifNull(seen.last_seen, toDateTime64(0, 3, 'UTC')),
    {sensor},
    JSONExtractString(line, 'subject'),
    JSONExtractString(line, 'issuer'),
    JSONExtractString(line, 'serial'),
    parseDateTime64BestEffortOrNull(JSONExtractString(line, 'not_before'), 3, 'UTC'),
    parseDateTime64BestEffortOrNull(JSONExtractString(line, 'not_after'), 3, 'UTC'),
    JSONExtract(line, 'san_dns', 'Array(String)'),
    JSONExtract(line, 'san_ip', 'Array(String)'),
    JSONExtract(line, 'eku_present', 'Nullable(UInt8)'),
    JSONExtract(line, 'eku', 'Array(String)'),
    JSONExtract(line, 'key_usage', 'Array(String)'),
    JSONExtract(line, 'is_ca', 'Nullable(UInt8)'),
    JSONExtract(line, 'self_signed', 'Nullable(UInt8)'),
    JSONExtractString(line, 'key_type'),
    JSONExtract(line, 'key_bits', 'Nullable(UInt32)'),
    JSONExtractString(line, 'signature_algorithm'),
    JSONExtractString(line, 'subject_cn'),
    JSONExtract(line, 'version', 'Nullable(UInt8)'),
    JSONExtractString(line, 'parse_error')
FROM file({file}, 'LineAsString') AS c
LEFT JOIN
(
    SELECT chain_fp, min(ts) AS first_seen, max(ts) AS last_seen
    FROM sessions FINAL
    ARRAY JOIN arrayConcat(server_chain, client_chain) AS chain_fp
    WHERE sensor = {sensor}
    GROUP BY chain_fp
) AS seen ON seen.chain_fp = JSONExtractString(c.line, 'sha256')
WHERE JSONExtractString(line, 'record') = 'certificate';
