-- whatrack-jobs: the same change as the app's migrations/008_tenant_steering.sql, for WhaTrack's
-- prisma/migrations folder: the organizations whose webhook deliveries an operator paused, and
-- the audit trail of what operators did to one organization's webhooks.

-- CreateTable
CREATE TABLE "webhook_tenant_pauses" (
    "organizationId" TEXT NOT NULL,
    "pausedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "webhook_tenant_pauses_pkey" PRIMARY KEY ("organizationId")
);

-- CreateTable
CREATE TABLE "webhook_tenant_actions" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "at" TIMESTAMP(3) NOT NULL,
    "action" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "detail" JSONB,

    CONSTRAINT "webhook_tenant_actions_pkey" PRIMARY KEY ("id")
);
