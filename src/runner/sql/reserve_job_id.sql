-- Reserves the jobId "<$2>-<ms>" with the first millisecond from $1 on (up to a second ahead)
-- that no run of the job has taken, as a `running` row; $3 is the trigger. Two runs racing for
-- the same id: the primary key refuses the second, which returns no row and tries again.
INSERT INTO job_runs (id, "jobType", trigger, status, "startedAt")
SELECT c.id, $2, $3, 'running', timezone('UTC', now())
FROM (SELECT $2 || '-' || ($1::bigint + g) AS id, g FROM generate_series(0, 999) g) c
WHERE NOT EXISTS (SELECT 1 FROM job_runs j WHERE j.id = c.id)
ORDER BY c.g
LIMIT 1
ON CONFLICT (id) DO NOTHING
RETURNING id
