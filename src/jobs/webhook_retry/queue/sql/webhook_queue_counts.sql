-- The queue's counts, for the status route, the console and a run's `remaining`: pending
-- (waiting for a retry), due now among them, those of organizations an operator paused (held),
-- dead-lettered, and how long the oldest due webhook has waited, in seconds (0 when none is
-- due). $1 and $2 as in states.sql.
WITH q AS (
    SELECT processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1 AS pending,
           "deadAt" IS NOT NULL AS dead,
           "organizationId"::text IN (SELECT "organizationId" FROM webhook_tenant_pauses) AS held,
           COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) AS due_at
    FROM whatsapp_webhook_logs
    WHERE processed = false
)
SELECT count(*) FILTER (WHERE pending) AS pending,
       count(*) FILTER (WHERE pending AND due_at <= timezone('UTC', now())) AS due,
       count(*) FILTER (WHERE pending AND due_at <= timezone('UTC', now()) AND held) AS held,
       count(*) FILTER (WHERE dead) AS dead,
       GREATEST(COALESCE(EXTRACT(EPOCH FROM timezone('UTC', now())
                                 - min(due_at) FILTER (WHERE pending AND due_at <= timezone('UTC', now())))::bigint,
                         0), 0) AS "oldestDueAgeSeconds"
FROM q
