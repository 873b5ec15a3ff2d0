-- The status route's counts: webhooks waiting for a retry (fewer than $1 attempts), and
-- dead-lettered ones.
SELECT count(*) FILTER (WHERE "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1)
           AS "pendingWebhooks",
       count(*) FILTER (WHERE "deadAt" IS NOT NULL) AS "deadWebhooks"
FROM whatsapp_webhook_logs
WHERE processed = false
