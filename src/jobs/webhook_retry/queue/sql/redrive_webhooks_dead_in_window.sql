-- Puts back the webhooks dead-lettered from $1 until $2 (now when NULL), oldest first, at most
-- $3 (all when NULL); the times are RFC 3339, any offset.
UPDATE whatsapp_webhook_logs
SET "deadAt" = NULL, "retryCount" = 0, "nextRetryAt" = timezone('UTC', now())
WHERE id IN (
    SELECT id FROM whatsapp_webhook_logs
    WHERE "deadAt" IS NOT NULL AND processed = false
      AND "deadAt" >= ($1::text::timestamptz AT TIME ZONE 'UTC')
      AND ($2::text IS NULL OR "deadAt" < ($2::text::timestamptz AT TIME ZONE 'UTC'))
    ORDER BY "deadAt"
    LIMIT $3)
