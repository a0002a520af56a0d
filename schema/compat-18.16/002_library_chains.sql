-- 002_library_chains, wire-compatible variant for ClickHouse < 19 (see ../002_library_chains.sql
-- and 001_init.sql here for the type mapping).

ALTER TABLE sessions
    ADD COLUMN chain_source String,
    ADD COLUMN resumed UInt8,
    ADD COLUMN resumed_from String;
