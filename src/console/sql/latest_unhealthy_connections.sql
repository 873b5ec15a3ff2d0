-- The $1 active connections in `error` or `warning` checked last, each with its latest check's
-- reason ("apiResponse": what Meta or the run said, untrusted text).
SELECT c.id::text AS "connectionId", c."phoneNumberId"::text AS "phoneNumberId",
       c."healthStatus"::text AS health, h."apiResponse"::text AS reason,
       to_char(h."lastCheck", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "checkedAt",
       row_number() OVER (ORDER BY c."lastHealthCheckAt" DESC NULLS LAST, c.id) AS ord
FROM (SELECT id, "phoneNumberId", "healthStatus", "lastHealthCheckAt"
      FROM whatsapp_connections
      WHERE status = 'active' AND "healthStatus" IN ('error', 'warning')
      ORDER BY "lastHealthCheckAt" DESC NULLS LAST, id
      LIMIT $1) c
LEFT JOIN LATERAL (
    SELECT "apiResponse", "lastCheck" FROM whatsapp_health
    WHERE "connectionId" = c.id
    ORDER BY "lastCheck" DESC
    LIMIT 1
) h ON true
