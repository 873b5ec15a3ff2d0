-- Active connections by "healthStatus".
SELECT COALESCE("healthStatus"::text, 'unknown') AS health, count(*) AS count,
       row_number() OVER (ORDER BY COALESCE("healthStatus"::text, 'unknown')) AS ord
FROM whatsapp_connections
WHERE status = 'active'
GROUP BY 1
