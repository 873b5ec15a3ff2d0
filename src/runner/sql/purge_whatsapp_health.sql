-- Deletes up to $2 `whatsapp_health` rows of checks made more than $1 days ago.
DELETE FROM whatsapp_health
WHERE ctid IN (SELECT ctid FROM whatsapp_health
               WHERE "lastCheck" < timezone('UTC', now()) - make_interval(days => $1)
               LIMIT $2)
