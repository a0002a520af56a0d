-- 002_library_chains: where a session's certificate chains came from, and resumption (issue #8).
--
-- chain_source: 'wire' (cleartext handshake), 'uprobe' (TLS 1.3: read in the MTA's TLS library
-- by `mxcert capture --tls-library`), 'resumed' (carried over from the full handshake named by
-- resumed_from), '' when no chain was seen. Columns are appended, so rows written by an older
-- mxcert (before `schema apply`) are refused rather than shifted: the sink checks the schema
-- version first. The 18.16 variant is compat-18.16/002_library_chains.sql.

ALTER TABLE sessions
    ADD COLUMN chain_source LowCardinality(String),
    ADD COLUMN resumed UInt8,
    ADD COLUMN resumed_from String;
