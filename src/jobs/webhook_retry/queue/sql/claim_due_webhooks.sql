-- Takes up to $3 due webhooks in turn across tenants, and pushes their "nextRetryAt" ahead by a
-- lease of $4 seconds. A tenant is an organization, and the rows without one are a tenant of
-- their own. A round of turns visits the tenants in order (the one without an organization,
-- then the organizations by id); one claim continues the round after tenant $5 (as text; NULL
-- starts a round) and visits up to $3 of them, each giving its oldest due rows, an equal share
-- of $3, in turn: the first of each, then the second of each, and so on; an organization an
-- operator paused (webhook_tenant_pauses) gives none. One statement, so one
-- transaction, and `SKIP LOCKED` keeps two concurrent claims from ever taking the same row,
-- Redis lock or not. Pending and due as states.sql defines them ($1
-- webhook_retry_max_attempts, $2 webhook_retry_base_seconds).
--
-- Its cost grows with $3, not with the queue: each organization is found with one probe of
-- whatsapp_webhook_logs_tenant_due_idx, and its oldest due rows with two more, the due time
-- read as that index orders it (one for rows retried before, by "nextRetryAt"; one for those
-- never retried, by "createdAt"; each ordered by the index's own columns, which within one
-- tenant and one branch is the due time's order, and lets the planner read the index in order
-- where an `IS NULL` column would otherwise make it sort); the rows taken are held to pending
-- and due as states.sql writes them.
-- Its answer is one JSON value (a data-changing WITH must be the statement's own): the rows
-- claimed, in turn order, the last tenant visited, and whether the round ended.
WITH RECURSIVE orgs AS (
    (SELECT o."organizationId" AS org, 1 AS n FROM whatsapp_webhook_logs o
     WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL
       AND o."organizationId" IS NOT NULL
       AND ($5::text IS NULL OR o."organizationId" > (json_populate_record(NULL::whatsapp_webhook_logs,
           json_build_object('organizationId', $5::text)))."organizationId")
     ORDER BY o."organizationId" LIMIT 1)
    UNION ALL
    SELECT (SELECT o."organizationId" FROM whatsapp_webhook_logs o
            WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL
              AND o."organizationId" > orgs.org
            ORDER BY o."organizationId" LIMIT 1), orgs.n + 1
    FROM orgs WHERE orgs.org IS NOT NULL AND orgs.n < $3::bigint
), visited AS (
    SELECT count(*) FILTER (WHERE org IS NOT NULL) + ($5::text IS NULL)::int AS tenants,
           (array_agg(org::text ORDER BY n DESC) FILTER (WHERE org IS NOT NULL))[1] AS last,
           count(*) FILTER (WHERE org IS NOT NULL) < $3::bigint AS ended
    FROM orgs
), share AS (
    SELECT ceil($3::bigint::float8 / greatest(tenants, 1))::bigint AS rows FROM visited
), unowned AS (
    SELECT d.id, d.due, row_number() OVER (ORDER BY d.due, d.id) AS turn, NULL::text AS tenant
    FROM (
        (SELECT id, COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) AS due
         FROM whatsapp_webhook_logs
         WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
           AND $5::text IS NULL AND "organizationId" IS NULL
           AND "nextRetryAt" <= timezone('UTC', now())
         ORDER BY "organizationId", "nextRetryAt" LIMIT (SELECT rows FROM share))
        UNION ALL
        (SELECT id, COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) AS due
         FROM whatsapp_webhook_logs
         WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
           AND $5::text IS NULL AND "organizationId" IS NULL AND "nextRetryAt" IS NULL
           AND "createdAt" <= timezone('UTC', now()) - make_interval(secs => $2::float8)
         ORDER BY "organizationId", "nextRetryAt", "createdAt" LIMIT (SELECT rows FROM share))
    ) d
    ORDER BY d.due, d.id LIMIT (SELECT rows FROM share)
), owned AS (
    SELECT d.id, d.due, d.turn, orgs.org::text AS tenant
    FROM orgs CROSS JOIN LATERAL (
        SELECT e.id, e.due, row_number() OVER (ORDER BY e.due, e.id) AS turn
        FROM (
            (SELECT id, COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) AS due
             FROM whatsapp_webhook_logs
             WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
               AND "organizationId" = orgs.org AND "nextRetryAt" <= timezone('UTC', now())
             ORDER BY "organizationId", "nextRetryAt" LIMIT (SELECT rows FROM share))
            UNION ALL
            (SELECT id, COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) AS due
             FROM whatsapp_webhook_logs
             WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
               AND "organizationId" = orgs.org AND "nextRetryAt" IS NULL
               AND "createdAt" <= timezone('UTC', now()) - make_interval(secs => $2::float8)
             ORDER BY "organizationId", "nextRetryAt", "createdAt" LIMIT (SELECT rows FROM share))
        ) e
        ORDER BY e.due, e.id LIMIT (SELECT rows FROM share)
    ) d
    WHERE orgs.org IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM webhook_tenant_pauses p WHERE p."organizationId" = orgs.org::text)
), turns AS (
    SELECT * FROM unowned UNION ALL SELECT * FROM owned
), taken AS (
    SELECT w.id FROM whatsapp_webhook_logs w
    WHERE w.id IN (SELECT id FROM turns ORDER BY turn, due, id LIMIT $3::bigint)
      AND processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
      AND COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) <= timezone('UTC', now())
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE whatsapp_webhook_logs w
    SET "nextRetryAt" = timezone('UTC', now()) + make_interval(secs => $4::float8)
    FROM taken
    WHERE w.id = taken.id
    RETURNING w.id, w."retryCount", COALESCE(w."rawBody", w.payload::text) AS body
)
SELECT json_build_object(
    'claimed', (SELECT coalesce(json_agg(json_build_object(
                    'id', c.id::text, 'retryCount', c."retryCount", 'body', c.body, 'tenant', t.tenant)
                    ORDER BY t.turn, t.due, c.id), '[]'::json)
                FROM claimed c JOIN turns t ON t.id = c.id),
    'lastTenant', v.last,
    'roundEnded', v.ended)::text AS answer
FROM visited v
