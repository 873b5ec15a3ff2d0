#!/usr/bin/env bash
# The whole test suite, without Spin: starts Postgres and Redis on loopback (scripts/services.sh),
# builds the shipped component (scripts/build.sh), installs Chromium and playwright-core for the
# dashboard's browser test when missing, then runs the unit tests and the
# integration tests that load that .wasm into the wasmtime test host. Extra arguments go to
# `cargo test` (e.g. scripts/test.sh --test health_check).
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh)"
scripts/build-components.sh
# The dashboard's test drives Debian's Chromium with playwright-core (tests/browser/).
command -v chromium >/dev/null || scripts/install-debian.sh chromium
command -v npm >/dev/null || scripts/install-debian.sh nodejs npm
[ -d tests/browser/node_modules/playwright-core ] || npm ci --prefix tests/browser --no-audit --no-fund >&2

# Each test makes its own database; drop those that earlier runs left behind.
psql "$TEST_PG_ADMIN_URL" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'wt\_%'" \
  | while read -r db; do psql "$TEST_PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db" || true; done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --tests "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
