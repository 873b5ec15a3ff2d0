-- Pauses job $1 and says since when; a second pause keeps the first one's time (the no-op update
-- is there so that the row comes back whether it was inserted or already there).
INSERT INTO job_pauses ("jobType", "pausedAt")
VALUES ($1, timezone('UTC', now()))
ON CONFLICT ("jobType") DO UPDATE SET "pausedAt" = job_pauses."pausedAt"
RETURNING to_char("pausedAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS since
