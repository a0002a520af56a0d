-- Q5. Coverage: what mxcert could inspect, sessions by TLS version, no TLS and uninspectable.
-- `no TLS`: STARTTLS not offered, not issued or refused (outcome no_tls); `TLS1.3 via TLS
-- library`: TLS 1.3 whose peer chain was read in the MTA's TLS library (or carried over from
-- the full handshake a resumed session names); `uninspectable`: TLS 1.3 with no chain from any
-- path (both certificates travel encrypted, RFC 8446 section 4.4); `unknown`: TLS
-- started but no ServerHello was seen (cut short or picked up mid-stream). One row per
-- (direction, coverage), with its share of that direction's sessions in percent.
SELECT
    direction,
    multiIf(
        outcome = 'no_tls', 'no TLS',
        tls_version = 'TLS1.3' AND chain_source IN ('uprobe', 'resumed'), 'TLS1.3 via TLS library',
        tls_version = 'TLS1.3' AND chain_source = '', 'uninspectable (TLS1.3)',
        tls_version = '', 'unknown',
        tls_version) AS coverage,
    count() AS sessions,
    round(100 * sessions / sum(sessions) OVER (PARTITION BY direction), 1) AS percent
FROM sessions FINAL
GROUP BY direction, coverage
ORDER BY direction, sessions DESC, coverage
