-- Makes the claimed webhooks $1 (ids as text) that were never attempted due again, without
-- counting an attempt.
UPDATE whatsapp_webhook_logs
SET "nextRetryAt" = timezone('UTC', now())
WHERE id = ANY(ARRAY(
    SELECT (json_populate_record(NULL::whatsapp_webhook_logs, json_build_object('id', x))).id
    FROM unnest($1::text[]) x))
