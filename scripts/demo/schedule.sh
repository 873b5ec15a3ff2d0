#!/usr/bin/env bash
# DEMO ONLY (scripts/dev.sh --demo): the demo's scheduler. Waits for the app on 127.0.0.1:3000
# and the stand-ins, then runs the health check once and the webhook retry every 5 s for two
# minutes (the cron schedules would take until 02:00 and 5 minutes), printing each answer.
set -euo pipefail
secret=$1
app=http://127.0.0.1:3000/api/v1/jobs
for ready in "$app" http://127.0.0.1:3901/ http://127.0.0.1:3902/; do
  until curl -s -o /dev/null "$ready"; do sleep 1; done
done
say() { echo "[demo scheduler] $*" >&2; }
say "health check: $(curl -s -X POST -H "x-cron-secret: $secret" "$app/whatsapp-health-check")"
for _ in $(seq 24); do
  say "webhook retry: $(curl -s -X POST -H "x-cron-secret: $secret" "$app/webhook-retry")"
  sleep 5
done
