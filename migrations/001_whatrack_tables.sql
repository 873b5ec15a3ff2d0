-- WhaTrack's own tables, as far as the jobs use them. On WhaTrack's existing database every
-- statement here is a no-op or adds only what is missing; on an empty database it creates a
-- schema the jobs (and their tests) can run against. Columns are camelCase quoted identifiers
-- (Prisma's convention); timestamps are TIMESTAMP(3) in UTC; "updatedAt" has no default.

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
ALTER TABLE whatsapp_connections ADD COLUMN IF NOT EXISTS "healthStatus" TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE whatsapp_connections ADD COLUMN IF NOT EXISTS "lastHealthCheckAt" TIMESTAMP(3);

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
ALTER TABLE whatsapp_configs ADD COLUMN IF NOT EXISTS "tokenStatus" TEXT;
ALTER TABLE whatsapp_configs ADD COLUMN IF NOT EXISTS "tokenExpiresAt" TIMESTAMP(3);
ALTER TABLE whatsapp_configs ADD COLUMN IF NOT EXISTS "tokenLastCheckedAt" TIMESTAMP(3);

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
CREATE INDEX IF NOT EXISTS whatsapp_connections_status_last_health_check_idx
    ON whatsapp_connections (status, "lastHealthCheckAt");
-- The token lookup per connection.
CREATE INDEX IF NOT EXISTS whatsapp_configs_connection_id_idx
    ON whatsapp_configs ("connectionId");
-- The "last two checks" lookup per connection (the unknown streak).
CREATE INDEX IF NOT EXISTS whatsapp_health_connection_last_check_idx
    ON whatsapp_health ("connectionId", "lastCheck" DESC);
