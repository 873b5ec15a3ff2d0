-- Pauses the deliveries of organization $1 (as text, checked against the log's type) and
-- records it in webhook_tenant_actions; answers since when it is paused (a second pause keeps
-- the first one's time, and is recorded too). One statement: the pause and its record land
-- together. Its answer is one JSON value (a data-changing WITH must be the statement's own).
WITH org AS (
    SELECT (json_populate_record(NULL::whatsapp_webhook_logs,
        json_build_object('organizationId', $1::text)))."organizationId"::text AS id
), paused AS (
    INSERT INTO webhook_tenant_pauses ("organizationId", "pausedAt")
    SELECT id, timezone('UTC', now()) FROM org
    ON CONFLICT ("organizationId") DO UPDATE SET "pausedAt" = webhook_tenant_pauses."pausedAt"
    RETURNING "organizationId", "pausedAt"
), recorded AS (
    INSERT INTO webhook_tenant_actions ("at", action, "organizationId")
    SELECT timezone('UTC', now()), 'pause', id FROM org
)
SELECT json_build_object(
    'organizationId', p."organizationId",
    'since', to_char(p."pausedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text AS answer
FROM paused p
