-- The webhook dead-letter queue: scheduling columns on WhaTrack's webhook log, and one row per
-- re-delivery attempt.
-- Safe on a live database, as 001 explains.
SET lock_timeout = '3s';
SELECT 'ALTER TABLE whatsapp_webhook_logs ADD COLUMN "nextRetryAt" TIMESTAMP(3)'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_webhook_logs' AND column_name = 'nextRetryAt') \gexec
SELECT 'ALTER TABLE whatsapp_webhook_logs ADD COLUMN "deadAt" TIMESTAMP(3)'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_webhook_logs' AND column_name = 'deadAt') \gexec
-- The body exactly as Meta sent it, when WhaTrack keeps it: re-delivered byte for byte, so that
-- a receiver checking X-Hub-Signature-256 over the raw bytes accepts it.
SELECT 'ALTER TABLE whatsapp_webhook_logs ADD COLUMN "rawBody" TEXT'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_webhook_logs' AND column_name = 'rawBody') \gexec

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
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_webhook_logs_pending_due_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_webhook_logs_pending_due_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY whatsapp_webhook_logs_pending_due_idx ON whatsapp_webhook_logs ("nextRetryAt", "createdAt") WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL'
    WHERE to_regclass('whatsapp_webhook_logs_pending_due_idx') IS NULL \gexec
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_webhook_logs_dead_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_webhook_logs_dead_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY whatsapp_webhook_logs_dead_idx ON whatsapp_webhook_logs ("deadAt") WHERE "deadAt" IS NOT NULL'
    WHERE to_regclass('whatsapp_webhook_logs_dead_idx') IS NULL \gexec
SELECT format('DROP INDEX CONCURRENTLY %I', 'webhook_retry_attempts_log_idx') FROM pg_index
    WHERE indexrelid = to_regclass('webhook_retry_attempts_log_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY webhook_retry_attempts_log_idx ON webhook_retry_attempts ("webhookLogId", attempt)'
    WHERE to_regclass('webhook_retry_attempts_log_idx') IS NULL \gexec
