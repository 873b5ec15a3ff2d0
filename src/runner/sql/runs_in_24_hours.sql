-- Runs of each job started over the last 24 hours, by status.
SELECT "jobType", status, count(*) AS count, row_number() OVER (ORDER BY "jobType", status) AS ord
FROM job_runs
WHERE "startedAt" > timezone('UTC', now()) - interval '24 hours'
GROUP BY 1, 2
