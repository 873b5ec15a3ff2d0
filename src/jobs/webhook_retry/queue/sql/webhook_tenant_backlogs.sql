-- The ten organizations with the largest backlog (their due webhooks, then their dead-lettered
-- ones), for the console and /api/v1/metrics: a bounded set, whatever the number of tenants.
-- The webhooks without an organization are a tenant of their own ("organizationId" NULL). Each
-- with whether an operator paused its deliveries. $1 and $2 as in states.sql.
WITH q AS (
    SELECT "organizationId"::text AS tenant,
           processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
               AND COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) <= timezone('UTC', now())
               AS due,
           "deadAt" IS NOT NULL AS dead
    FROM whatsapp_webhook_logs
    WHERE processed = false
), backlog AS (
    SELECT tenant, count(*) FILTER (WHERE due) AS due, count(*) FILTER (WHERE dead) AS dead
    FROM q
    GROUP BY tenant
    HAVING count(*) FILTER (WHERE due OR dead) > 0
    ORDER BY 2 DESC, 3 DESC, tenant NULLS FIRST
    LIMIT 10
)
SELECT b.tenant AS "organizationId", b.due, b.dead,
       EXISTS (SELECT 1 FROM webhook_tenant_pauses p WHERE p."organizationId" = b.tenant) AS paused,
       row_number() OVER (ORDER BY b.due DESC, b.dead DESC, b.tenant NULLS FIRST) AS ord
FROM backlog b
