-- Q2. Inbound senders whose clientAuth is sunsetting, by effective date.
-- Public CAs stop issuing clientAuth certificates (rule eku.client_auth_sunset, a warning whose
-- `effective` is the earlier of the certificate's notAfter and its issuer's cutoff): from that
-- date the sender presents a certificate without clientAuth. One row per (effective date,
-- sender host), earliest first.
SELECT
    toDate(f.effective) AS effective_date,
    if(s.ehlo != '', s.ehlo, replaceRegexpOne(toString(f.client_ip), '^::ffff:', '')) AS sender_host,
    arraySort(groupUniqArray(f.cert_sha256)) AS certificates,
    uniqExact(f.sensor, f.session_id) AS sessions,
    max(f.ts) AS last_seen
FROM
(
    SELECT sensor, session_id, client_ip, cert_sha256, ts, effective
    FROM findings FINAL
    WHERE rule = 'eku.client_auth_sunset' AND role = 'client' AND direction = 'inbound'
      AND scenario = 'clientauth_enforcement' AND effective IS NOT NULL
) AS f
LEFT JOIN
(
    SELECT sensor, session_id, ehlo FROM sessions FINAL WHERE direction = 'inbound'
) AS s ON s.sensor = f.sensor AND s.session_id = f.session_id
GROUP BY effective_date, sender_host
ORDER BY effective_date, sender_host
