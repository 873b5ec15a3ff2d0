-- Job $1's last run (kind `last`) and its last success (kind `success`: a `succeeded` or
-- `partial` run), each row with the seconds since the last success ended.
SELECT kind,
       id AS "jobId", "jobType", trigger, status,
       to_char("startedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "startedAt",
       to_char("finishedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "finishedAt",
       summary, error,
       (SELECT EXTRACT(EPOCH FROM timezone('UTC', now()) - max("finishedAt"))::bigint
        FROM job_runs
        WHERE "jobType" = $1 AND status IN ('succeeded', 'partial')) AS "successAge"
FROM (
    (SELECT 'last' AS kind, * FROM job_runs
     WHERE "jobType" = $1
     ORDER BY "startedAt" DESC LIMIT 1)
    UNION ALL
    (SELECT 'success' AS kind, * FROM job_runs
     WHERE "jobType" = $1 AND status IN ('succeeded', 'partial')
     ORDER BY "startedAt" DESC LIMIT 1)
) runs
