-- Active connections of the businesses Meta holds ($1: their WABA ids), by business: how many,
-- and the phone numbers of the first five.
SELECT c."wabaId"::text AS business, count(*) AS connections,
       (array_agg(c."phoneNumberId"::text ORDER BY c."phoneNumberId"))[1:5] AS "phoneNumbers"
FROM whatsapp_connections c
WHERE c.status = 'active' AND c."wabaId" = ANY($1::text[])
GROUP BY 1
