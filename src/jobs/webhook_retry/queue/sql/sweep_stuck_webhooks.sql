-- Dead-letters what must not be re-delivered any more: pending webhooks whose "retryCount"
-- already reached $1 (webhook_retry_max_attempts) without being dead-lettered, and webhooks
-- pending for longer than $2 seconds. Up to $3 a run; the new reason goes before the last error.
-- An organization an operator paused keeps its webhooks as they are until it is resumed.
UPDATE whatsapp_webhook_logs
SET "deadAt" = timezone('UTC', now()),
    "processingError" = CASE WHEN "retryCount" >= $1 THEN 'attempts exhausted'
                             ELSE 'expired: pending longer than webhook_retry_max_age_hours' END
                        || COALESCE('; last error: ' || "processingError", '')
WHERE id IN (
    SELECT id FROM whatsapp_webhook_logs
    WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL
      AND ("retryCount" >= $1 OR "createdAt" < timezone('UTC', now()) - make_interval(secs => $2::float8))
      AND NOT EXISTS (SELECT 1 FROM webhook_tenant_pauses p
                      WHERE p."organizationId" = whatsapp_webhook_logs."organizationId"::text)
    LIMIT $3)
RETURNING id::text AS id, CASE WHEN "retryCount" >= $1 THEN 'exhausted' ELSE 'expired' END AS why
