-- Q5. Coverage: what mxcert could inspect, sessions by TLS version, no TLS and uninspectable.
-- `no TLS`: STARTTLS not offered, not issued or refused (outcome no_tls); `uninspectable`:
-- TLS 1.3, where both certificates travel encrypted (RFC 8446 section 4.4); `unknown`: TLS
-- started but no ServerHello was seen (cut short or picked up mid-stream). One row per
-- (direction, coverage), with its share of that direction's sessions in percent.
SELECT
    direction,
    multiIf(
        outcome = 'no_tls', 'no TLS',
        tls_version = 'TLS1.3', 'uninspectable (TLS1.3)',
        tls_version = '', 'unknown',
        tls_version) AS coverage,
    count() AS sessions,
    round(100 * sessions / sum(sessions) OVER (PARTITION BY direction), 1) AS percent
FROM sessions FINAL
GROUP BY direction, coverage
ORDER BY direction, sessions DESC, coverage
