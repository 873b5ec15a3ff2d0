-- Stores one webhook: $1 its payload (jsonb), $2 its raw body, $3 its event type, $4 the WABA it
-- is about. `processed = false` and `"signatureValid" = true`, with the raw bytes and their hash;
-- the organization found through the WABA when WhaTrack knows it. A body stored before (the
-- same hash) inserts nothing and returns no row.
INSERT INTO whatsapp_webhook_logs
    ("organizationId", payload, "eventType", processed, "signatureValid", "retryCount", "rawBody",
     "rawBodyHash", "createdAt")
SELECT (SELECT c."organizationId" FROM whatsapp_connections c WHERE c."wabaId" = $4 LIMIT 1),
       $1::jsonb, $3, false, true, 0, $2, encode(sha256(convert_to($2, 'UTF8')), 'hex'), timezone('UTC', now())
ON CONFLICT ("rawBodyHash") WHERE "rawBodyHash" IS NOT NULL DO NOTHING
RETURNING id::text AS id
