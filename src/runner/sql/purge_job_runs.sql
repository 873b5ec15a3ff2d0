-- Deletes up to $2 `job_runs` rows of runs started more than $1 days ago.
DELETE FROM job_runs
WHERE ctid IN (SELECT ctid FROM job_runs
               WHERE "startedAt" < timezone('UTC', now()) - make_interval(days => $1)
               LIMIT $2)
