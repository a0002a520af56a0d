-- Q1. Inbound senders presenting client certificates without the clientAuth EKU.
-- Who breaks when we (or a receiver) enforce clientAuth on inbound SMTP: rule
-- eku.client_auth_missing failing on the client's certificate. One row per sender host (the
-- EHLO name, else the client address), with its addresses, the certificates it presented,
-- the number of sessions and when it was last seen. FINAL: retried batches never count twice.
SELECT
    if(s.ehlo != '', s.ehlo, replaceRegexpOne(toString(f.client_ip), '^::ffff:', '')) AS sender_host,
    arraySort(groupUniqArray(replaceRegexpOne(toString(f.client_ip), '^::ffff:', ''))) AS client_ips,
    arraySort(groupUniqArray(f.cert_sha256)) AS certificates,
    uniqExact(f.sensor, f.session_id) AS sessions,
    max(f.ts) AS last_seen
FROM
(
    SELECT sensor, session_id, client_ip, cert_sha256, ts
    FROM findings FINAL
    WHERE rule = 'eku.client_auth_missing' AND verdict = 'fail' AND role = 'client'
      AND direction = 'inbound' AND scenario = 'clientauth_enforcement'
) AS f
LEFT JOIN
(
    SELECT sensor, session_id, ehlo FROM sessions FINAL WHERE direction = 'inbound'
) AS s ON s.sensor = f.sensor AND s.session_id = f.session_id
GROUP BY sender_host
ORDER BY sessions DESC, sender_host
