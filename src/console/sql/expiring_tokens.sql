-- Tokens of active connections that expire within $1 days (and have not yet), soonest first, at
-- most $2, each row with the count of all of them.
SELECT c.id::text AS "connectionId", c."phoneNumberId"::text AS "phoneNumberId",
       to_char(w."tokenExpiresAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "expiresAt",
       count(*) OVER () AS total,
       row_number() OVER (ORDER BY w."tokenExpiresAt", w.id) AS ord
FROM whatsapp_configs w
JOIN whatsapp_connections c ON c.id = w."connectionId"
WHERE c.status = 'active'
  AND w."tokenExpiresAt" > timezone('UTC', now())
  AND w."tokenExpiresAt" <= timezone('UTC', now()) + make_interval(days => $1)
ORDER BY w."tokenExpiresAt", w.id
LIMIT $2
