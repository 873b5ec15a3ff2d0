-- The oldest due webhook's organization (as text; NULL for a webhook without one) and how long
-- it has waited since it became due, in seconds; no row when none is due. For the overview,
-- which monitors poll: two probes of whatsapp_webhook_logs_pending_due_idx, one for the webhooks
-- retried before (by "nextRetryAt"), one for those never retried (by "createdAt"), each read in
-- the index's order. $1 and $2 as in states.sql.
WITH candidates AS (
    (SELECT "organizationId", COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) AS due_at
     FROM whatsapp_webhook_logs
     WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
       AND "nextRetryAt" IS NOT NULL
     ORDER BY "nextRetryAt", "createdAt" LIMIT 1)
    UNION ALL
    (SELECT "organizationId", COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) AS due_at
     FROM whatsapp_webhook_logs
     WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
       AND "nextRetryAt" IS NULL
     ORDER BY "nextRetryAt", "createdAt" LIMIT 1)
)
SELECT "organizationId"::text AS "organizationId",
       GREATEST(EXTRACT(EPOCH FROM timezone('UTC', now()) - due_at)::bigint, 0) AS "waitingSeconds"
FROM candidates
WHERE due_at <= timezone('UTC', now())
ORDER BY due_at
LIMIT 1
