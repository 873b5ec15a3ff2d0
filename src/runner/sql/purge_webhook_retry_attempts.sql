-- Deletes up to $2 `webhook_retry_attempts` rows of attempts made more than $1 days ago.
DELETE FROM webhook_retry_attempts
WHERE ctid IN (SELECT ctid FROM webhook_retry_attempts
               WHERE "attemptedAt" < timezone('UTC', now()) - make_interval(days => $1)
               LIMIT $2)
