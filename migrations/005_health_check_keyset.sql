-- The health check reads due connections a page at a time, stalest first, each page after the
-- last one's key (last check, then id): this index serves each page from where the last ended,
-- instead of sorting every active connection again. Safe on a live database, as 001 explains.
SET lock_timeout = '3s';
SELECT format('DROP INDEX CONCURRENTLY %I', 'whatsapp_connections_due_idx') FROM pg_index
    WHERE indexrelid = to_regclass('whatsapp_connections_due_idx') AND NOT indisvalid \gexec
SELECT 'CREATE INDEX CONCURRENTLY whatsapp_connections_due_idx ON whatsapp_connections ((COALESCE("lastHealthCheckAt", ''-infinity'')), (id::text COLLATE "C")) WHERE status = ''active'''
    WHERE to_regclass('whatsapp_connections_due_idx') IS NULL \gexec
