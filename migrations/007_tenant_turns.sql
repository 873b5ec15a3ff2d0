-- Fair turns between tenants (SPEC section 6): the claim finds each organization that has open
-- webhooks, and its oldest due ones, through this index, so that its cost grows with the page it
-- claims, not with the queue. Built CONCURRENTLY: WhaTrack's writers never wait for it. Safe on a
-- live database, as 001 explains.
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_webhook_logs_tenant_due_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_webhook_logs_tenant_due_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY whatsapp_webhook_logs_tenant_due_idx ON whatsapp_webhook_logs ("organizationId", "nextRetryAt", "createdAt") WHERE processed = false AND "signatureValid" = true AND "deadAt" IS NULL'
    WHERE to_regclass('whatsapp_webhook_logs_tenant_due_idx') IS NULL \gexec
