-- Resumes the deliveries of organization $1 (as text, checked against the log's type) and
-- records it in webhook_tenant_actions; answers whether it was paused. One statement, one JSON
-- answer (a data-changing WITH must be the statement's own).
WITH org AS (
    SELECT (json_populate_record(NULL::whatsapp_webhook_logs,
        json_build_object('organizationId', $1::text)))."organizationId"::text AS id
), resumed AS (
    DELETE FROM webhook_tenant_pauses WHERE "organizationId" = (SELECT id FROM org)
    RETURNING "organizationId"
), recorded AS (
    INSERT INTO webhook_tenant_actions ("at", action, "organizationId")
    SELECT timezone('UTC', now()), 'resume', id FROM org
)
SELECT json_build_object('organizationId', org.id, 'wasPaused', EXISTS (SELECT 1 FROM resumed))::text AS answer
FROM org
