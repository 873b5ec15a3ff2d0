-- Jobs an operator paused (POST /api/v1/jobs/<job>/pause): one row while paused. In Postgres, not
-- Redis, so that a pause survives a Redis flush. Safe on a live database, as 001 explains.
SET lock_timeout = '3s';
CREATE TABLE IF NOT EXISTS job_pauses (
    "jobType" TEXT PRIMARY KEY,
    "pausedAt" TIMESTAMP(3) NOT NULL
);
