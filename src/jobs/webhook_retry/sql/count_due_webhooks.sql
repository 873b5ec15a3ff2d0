-- Due webhooks not yet attempted: the work a run leaves to the next one. $1 and $2 as in
-- claim_due_webhooks.sql.
SELECT count(*)
FROM whatsapp_webhook_logs
WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
  AND COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) <= timezone('UTC', now())
