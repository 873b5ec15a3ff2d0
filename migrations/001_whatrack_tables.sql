-- WhaTrack's own tables, as far as the jobs use them. On WhaTrack's existing database every
-- statement here is a no-op or adds only what is missing; on an empty database it creates a
-- schema the jobs (and their tests) can run against. Columns are camelCase quoted identifiers
-- (Prisma's convention); timestamps are TIMESTAMP(3) in UTC; "updatedAt" has no default.
-- Safe on a live database, and for psql (scripts/migrate.sh runs `psql -f` on each file):
-- - a busy table makes a statement fail after lock_timeout rather than stall WhaTrack's writers
--   queued behind it;
-- - a column is added only when missing: an ALTER TABLE that would change nothing is not even
--   issued, since it would queue for an exclusive lock first (`ADD COLUMN IF NOT EXISTS` does);
-- - an index is built CONCURRENTLY (no write is blocked while it builds), and only when missing:
--   `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would lock the table before finding it there; one
--   left invalid by a failed build (a lock timeout) is dropped and built again.
-- psql's \gexec runs the statement a SELECT returns (none when there is nothing to do), outside
-- any transaction, as CONCURRENTLY needs.
SET lock_timeout = '3s';

CREATE TABLE IF NOT EXISTS whatsapp_connections (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "organizationId" UUID NOT NULL,
    "wabaId" TEXT,
    "phoneNumberId" TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    "healthStatus" TEXT NOT NULL DEFAULT 'unknown',
    "lastHealthCheckAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL
);
SELECT 'ALTER TABLE whatsapp_connections ADD COLUMN "healthStatus" TEXT NOT NULL DEFAULT ''unknown'''
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_connections' AND column_name = 'healthStatus') \gexec
SELECT 'ALTER TABLE whatsapp_connections ADD COLUMN "lastHealthCheckAt" TIMESTAMP(3)'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_connections' AND column_name = 'lastHealthCheckAt') \gexec

CREATE TABLE IF NOT EXISTS whatsapp_configs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "organizationId" UUID NOT NULL,
    "connectionId" UUID,
    "wabaId" TEXT,
    "phoneId" TEXT,
    "accessToken" TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    "tokenStatus" TEXT,
    "tokenExpiresAt" TIMESTAMP(3),
    "tokenLastCheckedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL
);
SELECT 'ALTER TABLE whatsapp_configs ADD COLUMN "tokenStatus" TEXT'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_configs' AND column_name = 'tokenStatus') \gexec
SELECT 'ALTER TABLE whatsapp_configs ADD COLUMN "tokenExpiresAt" TIMESTAMP(3)'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_configs' AND column_name = 'tokenExpiresAt') \gexec
SELECT 'ALTER TABLE whatsapp_configs ADD COLUMN "tokenLastCheckedAt" TIMESTAMP(3)'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_configs' AND column_name = 'tokenLastCheckedAt') \gexec

CREATE TABLE IF NOT EXISTS whatsapp_health (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "organizationId" UUID NOT NULL,
    "connectionId" UUID NOT NULL,
    status TEXT NOT NULL,
    "tokenValid" BOOLEAN NOT NULL DEFAULT false,
    "tokenExpired" BOOLEAN NOT NULL DEFAULT false,
    "apiResponse" TEXT,
    "responseTime" INTEGER,
    "lastCheck" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS whatsapp_webhook_logs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "organizationId" UUID,
    payload JSONB NOT NULL,
    "eventType" TEXT,
    processed BOOLEAN NOT NULL DEFAULT false,
    "signatureValid" BOOLEAN,
    "processingError" TEXT,
    "processedAt" TIMESTAMP(3),
    "retryCount" INTEGER NOT NULL DEFAULT 0,
    "lastRetryAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- The health check's selection: active connections by staleness.
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_connections_status_last_health_check_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_connections_status_last_health_check_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY whatsapp_connections_status_last_health_check_idx ON whatsapp_connections (status, "lastHealthCheckAt")'
    WHERE to_regclass('whatsapp_connections_status_last_health_check_idx') IS NULL \gexec
-- The token lookup per connection.
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_configs_connection_id_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_configs_connection_id_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY whatsapp_configs_connection_id_idx ON whatsapp_configs ("connectionId")'
    WHERE to_regclass('whatsapp_configs_connection_id_idx') IS NULL \gexec
-- The "last two checks" lookup per connection (the unknown streak).
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_health_connection_last_check_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_health_connection_last_check_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY whatsapp_health_connection_last_check_idx ON whatsapp_health ("connectionId", "lastCheck" DESC)'
    WHERE to_regclass('whatsapp_health_connection_last_check_idx') IS NULL \gexec
