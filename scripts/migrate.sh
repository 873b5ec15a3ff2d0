#!/usr/bin/env bash
# Applies migrations/*.sql in name order to the database given as $1 (or $DATABASE_URL).
# Every file is idempotent: re-running it, or running it against WhaTrack's existing database,
# only adds what is missing, and a second run takes no lock on any table. On a busy table a
# statement gives up after the lock_timeout the files set (3 s) and the run stops with
# "canceling statement due to lock timeout": run it again when the table is quieter.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-${DATABASE_URL:?usage: scripts/migrate.sh postgres://user:pass@host:port/db}}
export PGOPTIONS="-c client_min_messages=warning"

for f in migrations/*.sql; do
  echo "applying $f" >&2
  psql "$url" -q -v ON_ERROR_STOP=1 -f "$f"
done
