-- Steering one organization's webhooks (docs/webhook-retry.md, "Fair to every tenant"): the
-- organizations whose deliveries an operator paused, one row while paused (in Postgres, so that
-- a Redis flush does not lift it), and what operators did to one organization's webhooks
-- (pause, resume, redrive), the audit trail of those actions. Safe on a live database, as 001
-- explains.
SET lock_timeout = '3s';
CREATE TABLE IF NOT EXISTS webhook_tenant_pauses (
    "organizationId" TEXT PRIMARY KEY,   -- as whatsapp_webhook_logs holds it, as text
    "pausedAt" TIMESTAMP(3) NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_tenant_actions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    "at" TIMESTAMP(3) NOT NULL,
    action TEXT NOT NULL,                -- pause, resume or redrive
    "organizationId" TEXT NOT NULL,
    detail JSONB                         -- redrive: {"redriven": N}
);
