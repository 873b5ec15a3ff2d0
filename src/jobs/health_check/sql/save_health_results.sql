-- A batch of results, in one statement (so one transaction): the audit rows, the connections'
-- health and what debug_token said of each config's token. Arrays, one element per result:
-- $1 connection id, $2 status, $3 tokenValid, $4 tokenExpired ('true' or 'false': Spin's
-- interface has no boolean arrays), $5 reason, $6 ms, $7 config id, $8 token status (NULL where
-- debug_token did not answer), $9 expiry (unix seconds). The audit row's organization comes from
-- the connection itself. An `unknown` leaves the connection alone (SPEC 5: a transient failure
-- keeps the last known status and stays first in line).
WITH u AS (
    SELECT (json_populate_record(NULL::whatsapp_connections, json_build_object('id', r.id))).id,
           r.status, r.valid::boolean, r.expired::boolean, r.reason, r.ms,
           (json_populate_record(NULL::whatsapp_configs, json_build_object('id', r.config_id))).id AS config_id,
           r.token_status, r.expires
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[],
                $9::bigint[])
         AS r(id, status, valid, expired, reason, ms, config_id, token_status, expires)
),
audit AS (
    INSERT INTO whatsapp_health
        (id, "organizationId", "connectionId", status, "tokenValid", "tokenExpired", "apiResponse",
         "responseTime", "lastCheck", "createdAt")
    SELECT gen_random_uuid(), c."organizationId", c.id, u.status, u.valid, u.expired, u.reason, u.ms::int,
           timezone('UTC', now()), timezone('UTC', now())
    FROM u JOIN whatsapp_connections c ON c.id = u.id
),
connections AS (
    UPDATE whatsapp_connections c
    SET "healthStatus" = u.status, "lastHealthCheckAt" = timezone('UTC', now()), "updatedAt" = timezone('UTC', now())
    FROM u
    WHERE c.id = u.id AND u.status <> 'unknown'
)
UPDATE whatsapp_configs w
SET "tokenStatus" = u.token_status,
    "tokenExpiresAt" = CASE WHEN u.expires IS NULL THEN NULL ELSE timezone('UTC', to_timestamp(u.expires)) END,
    "tokenLastCheckedAt" = timezone('UTC', now()),
    "updatedAt" = timezone('UTC', now())
FROM u
WHERE w.id = u.config_id AND u.token_status IS NOT NULL
