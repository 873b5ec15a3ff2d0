-- One row per run attempt of a job (SPEC section 7), 429s included.
-- Safe on a live database, as 001 explains.
SET lock_timeout = '3s';
CREATE TABLE IF NOT EXISTS job_runs (
    id TEXT PRIMARY KEY,                 -- the jobId: <jobType>-<unix ms>
    "jobType" TEXT NOT NULL,
    trigger TEXT NOT NULL,               -- http | cron
    status TEXT NOT NULL,                -- running | succeeded | partial | failed | skipped
    "startedAt" TIMESTAMP(3) NOT NULL,
    "finishedAt" TIMESTAMP(3),
    summary JSONB,
    error TEXT
);

SELECT format('DROP INDEX CONCURRENTLY %I', 'job_runs_job_type_started_at_idx') FROM pg_index
    WHERE indexrelid = to_regclass('job_runs_job_type_started_at_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY job_runs_job_type_started_at_idx ON job_runs ("jobType", "startedAt" DESC)'
    WHERE to_regclass('job_runs_job_type_started_at_idx') IS NULL \gexec
