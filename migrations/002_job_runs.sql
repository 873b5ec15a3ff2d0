-- One row per run attempt of a job (SPEC section 7), 429s included.
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

CREATE INDEX IF NOT EXISTS job_runs_job_type_started_at_idx
    ON job_runs ("jobType", "startedAt" DESC);
