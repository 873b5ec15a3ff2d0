-- A page of due connections (active, checked before the cutoff $1 or never), stalest first,
-- after the key ($2 last check, $3 id; $2 NULL for the first page), at most $4: the keyset reads
-- each page from where the last ended, not by an offset that rereads the table (the index
-- whatsapp_connections_due_idx serves this order). Each comes with its best token (SPEC 5.1: a
-- non-NULL token, `connected` configs first, then the newest), how many of its last $5 checks
-- were `unknown` (the streak's window, `classify::UNKNOWN_STREAK_WARNING` - 1), its key, and its place in that order (`ord`, which the read aggregates by:
-- the run takes the next page's key from the last row).
WITH page AS (
    SELECT c.id, c."organizationId", c."healthStatus", c."wabaId", c."phoneNumberId",
           COALESCE(c."lastHealthCheckAt", '-infinity') AS checked, c.id::text COLLATE "C" AS key
    FROM whatsapp_connections c
    WHERE c.status = 'active'
      AND (c."lastHealthCheckAt" IS NULL OR c."lastHealthCheckAt" < $1::text::timestamp)
      AND ($2::text IS NULL
           OR (COALESCE(c."lastHealthCheckAt", '-infinity'), c.id::text COLLATE "C")
              > ($2::text::timestamp, $3::text COLLATE "C"))
    ORDER BY COALESCE(c."lastHealthCheckAt", '-infinity'), c.id::text COLLATE "C"
    LIMIT $4
)
SELECT c.id::text AS id, c."organizationId"::text AS "organizationId",
       c."healthStatus"::text AS "healthStatus", c."wabaId"::text AS "wabaId",
       c."phoneNumberId"::text AS "phoneNumberId", cfg."accessToken"::text AS "accessToken",
       cfg."phoneId"::text AS "configPhoneId", cfg."wabaId"::text AS "configWabaId",
       cfg.id::text AS "configId",
       (SELECT count(*)
        FROM (SELECT h.status FROM whatsapp_health h
              WHERE h."connectionId" = c.id
              ORDER BY h."lastCheck" DESC LIMIT $5) recent
        WHERE recent.status = 'unknown') AS "previousUnknowns",
       c.checked::text AS "checkedKey",
       row_number() OVER (ORDER BY c.checked, c.key) AS ord
FROM page c
LEFT JOIN LATERAL (
    SELECT w.id, w."accessToken", w."phoneId", w."wabaId"
    FROM whatsapp_configs w
    WHERE w."connectionId" = c.id AND w."accessToken" IS NOT NULL
    ORDER BY (w.status = 'connected') DESC NULLS LAST, w."updatedAt" DESC NULLS LAST
    LIMIT 1
) cfg ON true
