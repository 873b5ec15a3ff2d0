-- A batch of attempts: each one's outcome on its webhook and its `webhook_retry_attempts` row,
-- all in one statement (one transaction). Arrays, one element per attempt: $1 webhook ids (text),
-- $2 attempt, $3 HTTP status, $4 ms, $6 error (NULL when delivered), $7 ms until the next
-- attempt (NULL unless one is planned), $8 delivered and $9 dead-lettered now ('true' or 'false':
-- Spin's interface has no boolean arrays); $5 is the jobId.
WITH u AS (
    SELECT (json_populate_record(NULL::whatsapp_webhook_logs, json_build_object('id', a.id))).id,
           a.attempt, a.status, a.ms, a.error, a.retry_in_ms, a.delivered::boolean, a.dead::boolean
    FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $6::text[], $7::bigint[], $8::text[], $9::text[])
         AS a(id, attempt, status, ms, error, retry_in_ms, delivered, dead)
),
done AS (
    UPDATE whatsapp_webhook_logs w
    SET processed = w.processed OR u.delivered,
        "processedAt" = CASE WHEN u.delivered THEN timezone('UTC', now()) ELSE w."processedAt" END,
        "processingError" = u.error,
        "retryCount" = w."retryCount" + CASE WHEN u.delivered THEN 0 ELSE 1 END,
        "lastRetryAt" = CASE WHEN u.delivered THEN w."lastRetryAt" ELSE timezone('UTC', now()) END,
        "nextRetryAt" = timezone('UTC', now()) + u.retry_in_ms * interval '1 millisecond',
        "deadAt" = CASE WHEN u.dead THEN timezone('UTC', now()) ELSE NULL END
    FROM u
    WHERE w.id = u.id
    RETURNING w.id, u.attempt, u.status, u.error, u.ms
)
INSERT INTO webhook_retry_attempts
    (id, "webhookLogId", attempt, "attemptedAt", "httpStatus", error, "durationMs", "jobId")
SELECT gen_random_uuid(), done.id::text, done.attempt, timezone('UTC', now()), done.status, done.error, done.ms, $5
FROM done
