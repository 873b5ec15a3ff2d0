-- When job $1 last succeeded (whole unix seconds, rounded down: a success at 12.6 s has not
-- happened at 13 s) and how long its last finished run took (ms).
SELECT floor(EXTRACT(EPOCH FROM max("finishedAt") FILTER (WHERE status IN ('succeeded', 'partial'))))::bigint
           AS "lastSuccess",
       (SELECT (EXTRACT(EPOCH FROM "finishedAt" - "startedAt") * 1000)::bigint
        FROM job_runs
        WHERE "jobType" = $1 AND "finishedAt" IS NOT NULL AND status <> 'skipped'
        ORDER BY "startedAt" DESC LIMIT 1) AS "lastDurationMs"
FROM job_runs
WHERE "jobType" = $1
