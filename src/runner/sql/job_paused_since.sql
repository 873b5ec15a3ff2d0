-- Since when job $1 is paused; no row when it is not.
SELECT to_char("pausedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS since
FROM job_pauses
WHERE "jobType" = $1
