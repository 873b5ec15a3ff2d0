-- `running` rows of job $1 that started more than $2 seconds ago: their run died without
-- recording a result.
UPDATE job_runs
SET status = 'failed',
    "finishedAt" = timezone('UTC', now()),
    error = 'abandoned: the run ended without recording a result'
WHERE "jobType" = $1
  AND status = 'running'
  AND "startedAt" < timezone('UTC', now()) - make_interval(secs => $2::float8)
