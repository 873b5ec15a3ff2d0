-- The webhook $1 (its id as text) was delivered by the immediate forward.
UPDATE whatsapp_webhook_logs
SET processed = true, "processedAt" = timezone('UTC', now()), "processingError" = NULL
WHERE id = (json_populate_record(NULL::whatsapp_webhook_logs, json_build_object('id', $1::text))).id
