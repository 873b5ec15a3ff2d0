-- WhaTrack's own tables as an older WhaTrack has them, before this app: no health or token
-- columns, none of the app's indexes, and columns of WhaTrack's that the app never reads.
CREATE TABLE whatsapp_connections (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "organizationId" UUID NOT NULL,
    "wabaId" TEXT,
    "phoneNumberId" TEXT,
    "displayPhoneNumber" TEXT,
    "verifiedName" TEXT NOT NULL DEFAULT 'Acme',
    status TEXT NOT NULL DEFAULT 'pending',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL
);
CREATE TABLE whatsapp_configs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "organizationId" UUID NOT NULL,
    "connectionId" UUID REFERENCES whatsapp_connections(id),
    "wabaId" TEXT,
    "phoneId" TEXT,
    "accessToken" TEXT,
    "webhookVerifyToken" TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL
);
CREATE TABLE whatsapp_health (
    id UUID PRIMARY KEY,
    "organizationId" UUID NOT NULL,
    "connectionId" UUID NOT NULL REFERENCES whatsapp_connections(id),
    status TEXT NOT NULL,
    "tokenValid" BOOLEAN NOT NULL,
    "tokenExpired" BOOLEAN NOT NULL,
    "apiResponse" TEXT,
    "responseTime" INTEGER,
    "lastCheck" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "checkedBy" TEXT
);
CREATE TABLE whatsapp_webhook_logs (
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
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "sourceIp" TEXT
);
INSERT INTO whatsapp_connections (id, "organizationId", "wabaId", "phoneNumberId", "displayPhoneNumber", status, "updatedAt")
VALUES ('11111111-1111-1111-1111-111111111111', '22222222-2222-2222-2222-222222222222', '2001', '1001', '+1 555 0100', 'active', now());
