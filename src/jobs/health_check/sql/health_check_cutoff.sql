-- Where a run draws the line, once at its start: connections checked before $1 hours ago are
-- due; with how many active ones were checked since. Fixed for the whole run, so that the
-- connections it checks (now checked "since") never come round again, even with a recheck
-- window of 0.
WITH t AS (SELECT timezone('UTC', now()) - make_interval(hours => $1) AS cutoff)
SELECT t.cutoff::text AS at,
       (SELECT count(*) FROM whatsapp_connections
        WHERE status = 'active' AND "lastHealthCheckAt" >= t.cutoff) AS "recentlyChecked"
FROM t
