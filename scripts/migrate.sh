#!/usr/bin/env bash
# Applies migrations/*.sql in name order to the database given as $1 (or $DATABASE_URL).
# Every file is idempotent: re-running it, or running it against WhaTrack's existing database,
# only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-${DATABASE_URL:?usage: scripts/migrate.sh postgres://user:pass@host:port/db}}
for f in migrations/*.sql; do
  echo "applying $f" >&2
  PGOPTIONS="-c client_min_messages=warning" psql "$url" -q -v ON_ERROR_STOP=1 -f "$f"
done
