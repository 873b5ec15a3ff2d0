-- The webhook front door (POST /api/v1/whatsapp/webhook): a hash of the raw body, so that the
-- same delivery re-sent by Meta is stored once. Safe on a live database, as 001 explains.
SET lock_timeout = '3s';
SELECT 'ALTER TABLE whatsapp_webhook_logs ADD COLUMN "rawBodyHash" TEXT'
    WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'whatsapp_webhook_logs' AND column_name = 'rawBodyHash') \gexec
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_webhook_logs_raw_body_hash_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_webhook_logs_raw_body_hash_idx') AND NOT indisvalid \gexec
SELECT 'CREATE UNIQUE INDEX CONCURRENTLY whatsapp_webhook_logs_raw_body_hash_idx ON whatsapp_webhook_logs ("rawBodyHash") WHERE "rawBodyHash" IS NOT NULL'
    WHERE to_regclass('whatsapp_webhook_logs_raw_body_hash_idx') IS NULL \gexec
