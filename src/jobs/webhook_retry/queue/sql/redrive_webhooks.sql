-- Puts dead-lettered webhooks back in the queue, attempts reset: all of them ($1 NULL), or
-- those whose ids (as text) are in $1.
UPDATE whatsapp_webhook_logs
SET "deadAt" = NULL, "retryCount" = 0, "nextRetryAt" = timezone('UTC', now())
WHERE "deadAt" IS NOT NULL AND processed = false
  AND ($1::text[] IS NULL OR id = ANY(ARRAY(
      SELECT (json_populate_record(NULL::whatsapp_webhook_logs, json_build_object('id', x))).id
      FROM unnest($1::text[]) x)))
