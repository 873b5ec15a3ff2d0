-- whatrack-jobs: the same change as the app's migrations/007_tenant_turns.sql, for WhaTrack's
-- prisma/migrations folder. One statement alone, so that `prisma migrate deploy` (which sends a
-- migration's script as one query) runs it outside a transaction and the index is built
-- CONCURRENTLY: WhaTrack's writers never wait for it. Should the build fail, drop the invalid
-- index it leaves and run `prisma migrate resolve --rolled-back` before deploying again.

-- CreateIndex
CREATE INDEX CONCURRENTLY IF NOT EXISTS "whatsapp_webhook_logs_tenant_due_idx" ON "whatsapp_webhook_logs"("organizationId", "nextRetryAt", "createdAt") WHERE (processed = false) AND ("signatureValid" = true) AND ("deadAt" IS NULL);
