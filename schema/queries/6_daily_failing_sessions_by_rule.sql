-- Q6. Daily trend of failing sessions per rule.
-- Distinct sessions with at least one failing finding of the rule, per UTC day (a session
-- failing the same rule in several scenarios or roles counts once).
SELECT
    toDate(ts) AS day,
    rule,
    uniqExact(sensor, session_id) AS failing_sessions
FROM findings FINAL
WHERE verdict = 'fail'
GROUP BY day, rule
ORDER BY day, rule
