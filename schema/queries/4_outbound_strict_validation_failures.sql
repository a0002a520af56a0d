-- Q4. Outbound destinations that would fail strict validation, by reason.
-- Failing findings of the strict_validation scenario on sessions we opened, mapped to the
-- RFC 8460 (SMTP TLS Reporting) result types where one fits (section 4.3): certificate-expired,
-- certificate-host-mismatch, certificate-not-trusted; validation-failure otherwise (not-yet-valid
-- included: RFC 8460 has no type of its own for it). Only the destination's certificate counts
-- (role 'server'): a rule failing for the client certificate we present is the receiver's
-- question (Q3), not a destination that would fail. One row per (result type, rule,
-- destination).
SELECT
    multiIf(
        rule = 'validity.expired', 'certificate-expired',
        rule IN ('name.mismatch', 'name.wildcard_depth'), 'certificate-host-mismatch',
        rule IN ('chain.untrusted', 'chain.self_signed', 'chain.incomplete'), 'certificate-not-trusted',
        'validation-failure') AS result_type,
    rule,
    replaceRegexpOne(toString(server_ip), '^::ffff:', '') AS destination_ip,
    peer_name,
    uniqExact(sensor, session_id) AS sessions,
    max(ts) AS last_seen
FROM findings FINAL
WHERE scenario = 'strict_validation' AND verdict = 'fail' AND direction = 'outbound'
    AND role = 'server'
GROUP BY result_type, rule, destination_ip, peer_name
ORDER BY result_type, rule, destination_ip, peer_name
