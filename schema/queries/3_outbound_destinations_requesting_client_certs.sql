-- Q3. Outbound destinations that request client certificates.
-- Sessions we opened (direction outbound) whose server sent a CertificateRequest (TLS 1.2 and
-- earlier; in TLS 1.3 it is encrypted and cert_requested is NULL, so those are not counted).
-- One row per destination (server address and the name we expected: SNI, else banner host),
-- with how often we presented a certificate and how often we declined.
SELECT
    replaceRegexpOne(toString(server_ip), '^::ffff:', '') AS destination_ip,
    if(sni != '', sni, banner_host) AS destination_name,
    count() AS sessions,
    countIf(client_cert_presented = 1) AS presented,
    countIf(client_cert_presented = 0) AS declined,
    max(ts) AS last_seen
FROM sessions FINAL
WHERE direction = 'outbound' AND cert_requested = 1
GROUP BY destination_ip, destination_name
ORDER BY sessions DESC, destination_ip, destination_name
