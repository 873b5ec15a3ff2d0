-- The webhook dead-letter queue: scheduling columns on WhaTrack's webhook log, and one row per
-- re-delivery attempt.
ALTER TABLE whatsapp_webhook_logs ADD COLUMN IF NOT EXISTS "nextRetryAt" TIMESTAMP(3);
ALTER TABLE whatsapp_webhook_logs ADD COLUMN IF NOT EXISTS "deadAt" TIMESTAMP(3);
-- The body exactly as Meta sent it, when WhaTrack keeps it: re-delivered byte for byte, so that
-- a receiver checking X-Hub-Signature-256 over the raw bytes accepts it.
ALTER TABLE whatsapp_webhook_logs ADD COLUMN IF NOT EXISTS "rawBody" TEXT;

CREATE TABLE IF NOT EXISTS webhook_retry_attempts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "webhookLogId" TEXT NOT NULL,        -- whatsapp_webhook_logs.id (as text: uuid or text ids)
    attempt INTEGER NOT NULL,            -- 1 for the first re-delivery
    "attemptedAt" TIMESTAMP(3) NOT NULL,
    "httpStatus" INTEGER,                -- NULL when no HTTP answer (timeout, network error)
    error TEXT,                          -- NULL when delivered
    "durationMs" INTEGER NOT NULL,
    "jobId" TEXT
);

-- The due-rows query scans only pending rows, by due time.
CREATE INDEX IF NOT EXISTS whatsapp_webhook_logs_pending_due_idx
    ON whatsapp_webhook_logs ("nextRetryAt", "createdAt")
    WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL;
CREATE INDEX IF NOT EXISTS whatsapp_webhook_logs_dead_idx
    ON whatsapp_webhook_logs ("deadAt") WHERE "deadAt" IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhook_retry_attempts_log_idx
    ON webhook_retry_attempts ("webhookLogId", attempt);
