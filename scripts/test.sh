#!/usr/bin/env bash
# The whole test suite: starts Postgres and Redis on loopback (scripts/services.sh), builds the
# shipped component (scripts/build.sh), installs Chromium and playwright-core for the
# dashboard's browser test when missing, then runs the unit tests and the integration tests that
# load that .wasm into the wasmtime test host; then, when `spin` is on PATH, the integration tests
# that also run under the real `spin up` (UNDER_SPIN below), again under it. Extra arguments go
# to `cargo test` and run the test host's part only (e.g. scripts/test.sh --test health_check).
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

# The same tests served by the real `spin up` instead of the test host (tests/common/spin.rs):
# "<test binary> [cargo test arguments]" each. Left out: the tests that call the cron export
# directly, which only the test host can do.
UNDER_SPIN=(
  "front_door"
  "webhook_retry --skip cron_runs_the_webhook_retry"
  "health_check --skip a_cron_run_has_a_budget_of_its_own"
  "operations"
  "console dead_webhooks_are_redriven_by_time_window"
)
if [ $# -gt 0 ]; then
  :
elif command -v spin >/dev/null; then
  echo "== under $(spin --version)" | tee -a "$log"
  for suite in "${UNDER_SPIN[@]}"; do
    read -r binary args <<<"$suite"
    # shellcheck disable=SC2086 # the arguments are words
    WHATRACK_RUNTIME=spin cargo test --test "$binary" -- $args 2>&1 | tee -a "$log" || status=$?
  done
else
  echo "under spin up: skipped (spin is not on PATH; ../shared/spin/install.sh or Spin's installer puts it there)" | tee -a "$log"
fi
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
