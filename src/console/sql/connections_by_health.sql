-- Active connections by "healthStatus".
SELECT COALESCE("healthStatus"::text, 'unknown') AS health, count(*) AS count
FROM whatsapp_connections
WHERE status = 'active'
GROUP BY 1
ORDER BY 1
