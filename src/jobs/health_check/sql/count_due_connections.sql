-- Active connections due under the cutoff $1 (see health_check_cutoff.sql).
SELECT count(*)
FROM whatsapp_connections
WHERE status = 'active'
  AND ("lastHealthCheckAt" IS NULL OR "lastHealthCheckAt" < $1::text::timestamp)
