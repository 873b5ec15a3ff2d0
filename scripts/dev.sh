#!/usr/bin/env bash
# Runs the app locally under Spin: starts Postgres and Redis on loopback when none is running
# (installing them where it can), creates the database `whatrack_jobs`, applies the migrations,
# generates a cron secret (kept in .spin/dev-secret) and runs `spin build --up` with local
# defaults. Needs Spin 3.x and the cron trigger plugin 0.4.2 (docs/developing.md, "Running locally"); without
# Spin it serves the HTTP routes with the project's wasmtime test host instead (no cron).
#
#   scripts/dev.sh [--demo] [extra arguments for spin up]
#
# --demo: a fresh database `whatrack_jobs_demo` seeded with a dozen organizations' connections
# and a few failed webhooks (scripts/demo/seed.mjs), a Redis database of its own emptied at
# start (the server's last), demo stand-ins for the Graph API and the processor
# (scripts/demo/standins.mjs, Node.js), the app pointed at them, and a demo scheduler that runs
# the health check once and the retry every 5 s (scripts/demo/schedule.sh). Nothing of the demo
# runs without --demo.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=false
if [ "${1:-}" = --demo ]; then
  demo=true
  shift
fi

eval "$(PG_PORT=${PG_PORT:-55432} REDIS_PORT=${REDIS_PORT:-56379} scripts/services.sh)"
admin=$TEST_PG_ADMIN_URL
database=whatrack_jobs
redis_url=$TEST_REDIS_URL
if $demo; then
  database=whatrack_jobs_demo
  psql "$admin" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)"
  # The demo's own Redis database (the server's last), emptied: nothing a test or an earlier run
  # left there (a cool-down, a lock, Meta's figures) changes what the demo shows.
  databases=$(redis-cli -u "$TEST_REDIS_URL" CONFIG GET databases | tail -n 1)
  redis_url="$TEST_REDIS_URL/$((databases - 1))"
  redis-cli -u "$redis_url" FLUSHDB >/dev/null
fi
db_url="${admin%/*}/$database"
psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1 \
  || psql "$admin" -qc "CREATE DATABASE $database"
scripts/migrate.sh "$db_url"

mkdir -p .spin
[ -s .spin/dev-secret ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .spin/dev-secret
[ -s .spin/dev-key ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .spin/dev-key
secret=$(cat .spin/dev-secret)

cat >&2 <<MSG

cron secret: $secret
dashboard:   http://127.0.0.1:3000/api/v1/jobs/ui  (paste the cron secret)
try:  curl -s -X POST -H "x-cron-secret: $secret" http://127.0.0.1:3000/api/v1/jobs/whatsapp-health-check
      curl -s -H "x-cron-secret: $secret" http://127.0.0.1:3000/api/v1/jobs/whatsapp-health-check

MSG
variables=(
  --variable cron_secret="$secret"
  --variable database_url="$db_url"
  --variable database_host="postgres://127.0.0.1:${PG_PORT:-55432}"
  --variable redis_url="$redis_url"
  --variable redis_host="$TEST_REDIS_URL"
  --variable token_encryption_key="$(cat .spin/dev-key)"
)

if $demo; then
  command -v node >/dev/null || scripts/install-debian.sh nodejs
  node scripts/demo/seed.mjs "$(cat .spin/dev-key)" | psql -q "$db_url" >/dev/null
  node scripts/demo/standins.mjs &
  standins=$!
  scripts/demo/schedule.sh "$secret" &
  scheduler=$!
  # Stopped on any exit from here on (a failed build included), and with the app below.
  trap 'kill $standins $scheduler ${app:-} 2>/dev/null || true' EXIT
  trap 'exit 143' TERM INT
  # The app pointed at the stand-ins, retrying after 5 s instead of 5 minutes.
  while read -r setting; do variables+=(--variable "$setting"); done < scripts/demo/variables
  echo "demo: database $database seeded; stand-ins on 127.0.0.1:3901 (Graph API) and :3902 (processor)" >&2
fi

# The demo's stand-ins and scheduler go when the app does (or this script is stopped), so in a
# demo the app runs as a child instead of replacing this shell.
run() {
  if ! $demo; then exec "$@"; fi
  "$@" &
  app=$!
  wait $app
}

scripts/wasm-target.sh
if command -v spin >/dev/null; then
  scripts/check-cron-plugin.sh
  run spin build --up --listen 127.0.0.1:3000 "${variables[@]}" "$@"
  exit
fi
cat >&2 <<'MSG'
spin is not installed: serving the HTTP routes with the test host instead (cron schedules do
not fire; POST the job routes). To run under Spin, install Spin 3.x and the cron plugin line
this component is built for (docs/developing.md, "The cron trigger plugin"):
  curl -fsSL https://spinframework.dev/downloads/install.sh | bash && sudo mv spin /usr/local/bin/
  spin plugins update && spin plugins install trigger-cron --version 0.4.2 --yes
MSG
scripts/build.sh
run cargo run -q -p spin-test-host --bin serve -- --listen 127.0.0.1:3000 "${variables[@]}" "$@"
