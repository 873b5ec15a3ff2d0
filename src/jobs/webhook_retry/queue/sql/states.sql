-- The queue's states, defined once: every statement that asks for one uses its text as it is
-- here, and tests/statements.rs holds them to it (the partial index of migrations/ included).
-- This file is not sent; $1 is webhook_retry_max_attempts and $2 webhook_retry_base_seconds,
-- as in the statements.
--
-- open: a webhook still in the queue's hands (not processed, signed, not dead-lettered); the
-- predicate of the partial index whatsapp_webhook_logs_pending_due_idx.
processed = false AND "signatureValid" = true AND "deadAt" IS NULL
-- pending: open, with attempts left.
processed = false AND "signatureValid" = true AND "deadAt" IS NULL AND "retryCount" < $1
-- due at: its next retry, or for a failure never retried, $2 seconds after it came in (the
-- grace for processing still in flight); due once that time has passed.
COALESCE("nextRetryAt", "createdAt" + make_interval(secs => $2::float8))
