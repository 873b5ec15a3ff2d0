-- Takes up to $3 due webhooks, oldest due first, and pushes their "nextRetryAt" ahead by a lease
-- of $4 seconds. One statement, so one transaction, and `SKIP LOCKED` keeps two concurrent
-- claims from ever taking the same row, Redis lock or not.
-- Pending and due as states.sql defines them ($1 webhook_retry_max_attempts, $2
-- webhook_retry_base_seconds).
WITH due AS (
    SELECT id FROM whatsapp_webhook_logs
    WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
      AND COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)) <= timezone('UTC', now())
    ORDER BY COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8)), id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE whatsapp_webhook_logs w
SET "nextRetryAt" = timezone('UTC', now()) + make_interval(secs => $4::float8)
FROM due
WHERE w.id = due.id
RETURNING w.id::text AS id, w."retryCount", COALESCE(w."rawBody", w.payload::text) AS body
