-- Puts organization $1's dead-lettered webhooks (the organization as text, checked against the
-- log's type) back in the queue, attempts reset, and records it in webhook_tenant_actions with
-- how many. One statement, one JSON answer (a data-changing WITH must be the statement's own).
WITH org AS (
    SELECT (json_populate_record(NULL::whatsapp_webhook_logs,
        json_build_object('organizationId', $1::text)))."organizationId" AS id
), redriven AS (
    UPDATE whatsapp_webhook_logs
    SET "deadAt" = NULL, "retryCount" = 0, "nextRetryAt" = timezone('UTC', now())
    WHERE "deadAt" IS NOT NULL AND processed = false AND "organizationId" = (SELECT id FROM org)
    RETURNING id
), recorded AS (
    INSERT INTO webhook_tenant_actions ("at", action, "organizationId", detail)
    SELECT timezone('UTC', now()), 'redrive', org.id::text,
           jsonb_build_object('redriven', (SELECT count(*) FROM redriven))
    FROM org
)
SELECT json_build_object('redriven', (SELECT count(*) FROM redriven))::text AS answer
