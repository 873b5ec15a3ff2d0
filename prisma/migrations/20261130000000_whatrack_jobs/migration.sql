-- whatrack-jobs: the same changes as the app's migrations/ (001 to 006), in the form Prisma
-- writes, for WhaTrack's prisma/migrations folder: `prisma migrate deploy` applies it; on a
-- database the app's own migrations already changed, `prisma migrate resolve --applied
-- 20261130000000_whatrack_jobs` records it instead. The columns an older WhaTrack may lack are
-- added only where missing. Prisma runs a migration in a transaction, so the indexes are built
-- without CONCURRENTLY here: on a large webhook log, apply it when WhaTrack is quiet, or let the
-- app's migrations (which build them concurrently) run first and resolve this one as applied.
-- tests/prisma.rs holds the database it leaves equal to the one migrations/ leaves.

-- AlterTable
ALTER TABLE "whatsapp_connections" ADD COLUMN IF NOT EXISTS "healthStatus" TEXT NOT NULL DEFAULT 'unknown',
ADD COLUMN IF NOT EXISTS "lastHealthCheckAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "whatsapp_configs" ADD COLUMN IF NOT EXISTS "tokenStatus" TEXT,
ADD COLUMN IF NOT EXISTS "tokenExpiresAt" TIMESTAMP(3),
ADD COLUMN IF NOT EXISTS "tokenLastCheckedAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "whatsapp_webhook_logs" ADD COLUMN "nextRetryAt" TIMESTAMP(3),
ADD COLUMN "deadAt" TIMESTAMP(3),
ADD COLUMN "rawBody" TEXT,
ADD COLUMN "rawBodyHash" TEXT;

-- CreateTable
CREATE TABLE "job_runs" (
    "id" TEXT NOT NULL,
    "jobType" TEXT NOT NULL,
    "trigger" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "startedAt" TIMESTAMP(3) NOT NULL,
    "finishedAt" TIMESTAMP(3),
    "summary" JSONB,
    "error" TEXT,

    CONSTRAINT "job_runs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_retry_attempts" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "webhookLogId" TEXT NOT NULL,
    "attempt" INTEGER NOT NULL,
    "attemptedAt" TIMESTAMP(3) NOT NULL,
    "httpStatus" INTEGER,
    "error" TEXT,
    "durationMs" INTEGER NOT NULL,
    "jobId" TEXT,

    CONSTRAINT "webhook_retry_attempts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "job_pauses" (
    "jobType" TEXT NOT NULL,
    "pausedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "job_pauses_pkey" PRIMARY KEY ("jobType")
);

-- CreateIndex
CREATE INDEX "job_runs_job_type_started_at_idx" ON "job_runs"("jobType", "startedAt" DESC);

-- CreateIndex
CREATE INDEX "webhook_retry_attempts_log_idx" ON "webhook_retry_attempts"("webhookLogId", "attempt");

-- CreateIndex
CREATE INDEX "whatsapp_connections_status_last_health_check_idx" ON "whatsapp_connections"("status", "lastHealthCheckAt");

-- CreateIndex
CREATE INDEX "whatsapp_configs_connection_id_idx" ON "whatsapp_configs"("connectionId");

-- CreateIndex
CREATE INDEX "whatsapp_health_connection_last_check_idx" ON "whatsapp_health"("connectionId", "lastCheck" DESC);

-- CreateIndex
CREATE INDEX "whatsapp_webhook_logs_pending_due_idx" ON "whatsapp_webhook_logs"("nextRetryAt", "createdAt") WHERE (processed = false) AND ("signatureValid" = true) AND ("deadAt" IS NULL);

-- CreateIndex
CREATE INDEX "whatsapp_webhook_logs_dead_idx" ON "whatsapp_webhook_logs"("deadAt") WHERE "deadAt" IS NOT NULL;

-- CreateIndex
CREATE UNIQUE INDEX "whatsapp_webhook_logs_raw_body_hash_idx" ON "whatsapp_webhook_logs"("rawBodyHash") WHERE "rawBodyHash" IS NOT NULL;

-- The health check's keyset (stalest first, then by id as text): an expression index, which
-- Prisma's schema language cannot write, so it lives here alone. A `prisma migrate dev` that
-- offers to drop it must not be followed (README).
CREATE INDEX "whatsapp_connections_due_idx" ON "whatsapp_connections"((COALESCE("lastHealthCheckAt", '-infinity')), (id::text COLLATE "C")) WHERE status = 'active';
