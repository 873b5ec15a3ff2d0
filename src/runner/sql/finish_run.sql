-- A run's outcome: $1 jobId, $2 status, $3 summary (jsonb), $4 error.
UPDATE job_runs
SET status = $2, "finishedAt" = timezone('UTC', now()), summary = $3, error = $4
WHERE id = $1
