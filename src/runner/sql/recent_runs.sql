-- The latest $2 runs of job $1, newest first.
SELECT id AS "jobId", "jobType", trigger, status,
       to_char("startedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "startedAt",
       to_char("finishedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "finishedAt",
       summary, error,
       row_number() OVER (ORDER BY "startedAt" DESC, id DESC) AS ord
FROM job_runs
WHERE "jobType" = $1
ORDER BY "startedAt" DESC, id DESC
LIMIT $2
