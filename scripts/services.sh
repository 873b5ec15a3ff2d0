#!/usr/bin/env bash
# Starts a Postgres and a Redis of our own on loopback (installing them from Debian packages when
# they are absent) and prints the `export` lines that point at them. Used by the tests
# (scripts/test.sh) and by the local run (scripts/dev.sh). Idempotent: a server already answering
# on its port is reused.
#
#   PG_PORT (default 55432), REDIS_PORT (default 56379), SERVICES_DIR (default /tmp/whatrack-services)
set -euo pipefail

PG_PORT=${PG_PORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
STATE=${SERVICES_DIR:-/tmp/whatrack-services}
log() { echo "services: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/postgres" ] || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
"$(dirname "$0")/install-debian.sh" ${missing[@]+"${missing[@]}"}
PG_BIN=$(pg_bin)
mkdir -p "$STATE"

# Postgres refuses to run as root: as root, the cluster belongs to the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
  log "postgres already answering on 127.0.0.1:$PG_PORT"
else
  PGDATA="$STATE/pg"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$STATE"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >"$STATE/initdb.log" 2>&1
  fi
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$STATE"
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$STATE/postgres.log" -w start \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $STATE -c fsync=off -c synchronous_commit=off -c max_connections=300" >&2
  log "postgres started on 127.0.0.1:$PG_PORT (log: $STATE/postgres.log)"
fi

if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "redis already answering on 127.0.0.1:$REDIS_PORT"
else
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --databases 1024 --dir "$STATE" --logfile "$STATE/redis.log" >&2
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  log "redis started on 127.0.0.1:$REDIS_PORT"
fi

echo "export TEST_PG_ADMIN_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
echo "export TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
