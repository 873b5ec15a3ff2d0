#!/usr/bin/env bash
# Runs the app locally under Spin: starts Postgres and Redis on loopback when none is running
# (installing them where it can), creates the database `whatrack_jobs`, applies the migrations,
# generates a cron secret (kept in .spin/dev-secret) and runs `spin build --up` with local
# defaults. Needs Spin 3.x and the cron trigger plugin 0.4.2 (README, "Running locally"); without
# Spin it serves the HTTP routes with the project's wasmtime test host instead (no cron).
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(PG_PORT=${PG_PORT:-55432} REDIS_PORT=${REDIS_PORT:-56379} scripts/services.sh)"
admin=$TEST_PG_ADMIN_URL
db_url="${admin%/*}/whatrack_jobs"
psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = 'whatrack_jobs'" | grep -q 1 \
  || psql "$admin" -qc "CREATE DATABASE whatrack_jobs"
scripts/migrate.sh "$db_url"

mkdir -p .spin
[ -s .spin/dev-secret ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .spin/dev-secret
[ -s .spin/dev-key ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .spin/dev-key
secret=$(cat .spin/dev-secret)

cat >&2 <<MSG

cron secret: $secret
try:  curl -s -X POST -H "x-cron-secret: $secret" http://127.0.0.1:3000/api/v1/jobs/whatsapp-health-check
      curl -s -H "x-cron-secret: $secret" http://127.0.0.1:3000/api/v1/jobs/whatsapp-health-check

MSG
variables=(
  --variable cron_secret="$secret"
  --variable database_url="$db_url"
  --variable database_host="postgres://127.0.0.1:${PG_PORT:-55432}"
  --variable redis_url="$TEST_REDIS_URL"
  --variable redis_host="$TEST_REDIS_URL"
  --variable token_encryption_key="$(cat .spin/dev-key)"
)
scripts/wasm-target.sh
if command -v spin >/dev/null; then
  scripts/check-cron-plugin.sh
  exec spin build --up --listen 127.0.0.1:3000 "${variables[@]}" "$@"
fi
cat >&2 <<'MSG'
spin is not installed: serving the HTTP routes with the test host instead (cron schedules do
not fire; POST the job routes). To run under Spin, install Spin 3.x and the cron plugin line
this component is built for (README, "The cron trigger plugin"):
  curl -fsSL https://spinframework.dev/downloads/install.sh | bash && sudo mv spin /usr/local/bin/
  spin plugins update && spin plugins install trigger-cron --version 0.4.2 --yes
MSG
scripts/build.sh
exec cargo run -q -p spin-test-host --bin serve -- --listen 127.0.0.1:3000 "${variables[@]}" "$@"
