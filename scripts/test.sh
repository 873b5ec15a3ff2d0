#!/usr/bin/env bash
# The whole test suite: starts Postgres and Redis on loopback (scripts/services.sh), builds the
# shipped component (scripts/build.sh), installs Chromium and playwright-core for the
# dashboard's browser test when missing, then runs the unit tests and the integration tests that
# load that .wasm into the wasmtime test host; then, when `spin` is on PATH, the integration tests
# that also run under the real `spin up` (UNDER_SPIN below), again under it, and the end-to-end
# suites once more through PgBouncer in session mode (installed from Debian when missing, as is
# Prisma's schema parser for tests/prisma.rs). Extra arguments go to `cargo test` and run the
# test host's part only (e.g. scripts/test.sh --test health_check). The closing line sums the
# tests and names every pass that did not run, and why; with CI=true and ../shared/spin present,
# a real-Spin pass that did not run fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh)"
scripts/build-components.sh
# The dashboard's test drives Debian's Chromium with playwright-core (tests/browser/).
command -v chromium >/dev/null || scripts/install-debian.sh chromium
command -v npm >/dev/null || scripts/install-debian.sh nodejs npm
[ -d tests/browser/node_modules/playwright-core ] || npm ci --prefix tests/browser --no-audit --no-fund >&2
# PgBouncer for tests/pooler.rs and the session-mode pass below.
[ -x /usr/sbin/pgbouncer ] || scripts/install-debian.sh pgbouncer
# Prisma's own schema parser for tests/prisma.rs (WebAssembly: no engine binaries to download).
[ -d tests/prisma/node_modules/@prisma/prisma-schema-wasm ] || npm ci --prefix tests/prisma --no-audit --no-fund >&2

# Each test makes its own database; drop those that earlier runs left behind.
psql "$TEST_PG_ADMIN_URL" -tAc "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE);', datname) \
  FROM pg_database WHERE datname LIKE 'wt\_%'" | psql "$TEST_PG_ADMIN_URL" -q >/dev/null || true

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --tests --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

# The same tests served by the real `spin up` instead of the test host (tests/common/spin.rs):
# "<test binary> [cargo test arguments]" each. Left out: the tests that call a cron export
# directly (tests/schedules.rs runs the schedules under Spin instead), and the binaries with no
# app to serve (bench, manifest, hostile_input).
UNDER_SPIN=(
  "traces --ignored"
  "resource_rules --ignored"
  "dev_script --ignored"
  "schedules"
  "readme"
  "deploy"
  "faults"
  "front_door"
  "webhook_retry --skip cron_runs_the_webhook_retry"
  "tenants --skip a_claim_of_fifty_among_a_million_rows"
  "health_check --skip a_cron_run_has_a_budget_of_its_own"
  "throttling"
  "refusals"
  "outbound_allowance"
  "command --include-ignored"
  "pooler"
  "operations"
  "runs --skip cron_ --skip a_lock_ttl_shorter_than_a_run_is_refused"
  "console --skip a_paused_job_runs_nothing_until_resumed_or_forced"
  "migrations"
)
# The passes that did not run, each with why: named in the closing line.
not_run=()
args_given="test host only: arguments given"
# Under `spin` (3.x), then again under `spin4` (4.x) where it is installed beside it.
for cli in spin spin4; do
  if [ $# -gt 0 ]; then not_run+=("$cli ($args_given)"); continue; fi
  if ! command -v "$cli" >/dev/null; then
    not_run+=("$cli (not on PATH; ../shared/spin/install.sh or Spin's installer puts it there)")
    continue
  fi
  echo "== under $("$cli" --version)" | tee -a "$log"
  for suite in "${UNDER_SPIN[@]}"; do
    read -r binary args <<<"$suite"
    # shellcheck disable=SC2086 # the arguments are words
    WHATRACK_RUNTIME=$cli cargo test --test "$binary" -- $args 2>&1 | tee -a "$log" || status=$?
  done
done
# The schedules once more under Spin 4 with the cron plugin of its own line (0.5, in the plugin
# store ../shared/spin/install.sh fills for spin4), where that is installed.
spin4_store=${SPIN4_DATA_HOME:-$HOME/.spin4-data}
if [ $# -gt 0 ]; then
  not_run+=("cron 0.5 under spin4 ($args_given)")
elif command -v spin4 >/dev/null \
  && XDG_DATA_HOME=$spin4_store spin4 plugins list --installed 2>/dev/null | grep -q '^trigger-cron 0\.5'; then
  echo "== under $(spin4 --version) with $(XDG_DATA_HOME=$spin4_store spin4 plugins list --installed | grep '^trigger-cron')" | tee -a "$log"
  WHATRACK_RUNTIME=spin4 WHATRACK_SPIN_DATA_HOME=$spin4_store cargo test --test schedules 2>&1 | tee -a "$log" || status=$?
else
  not_run+=("cron 0.5 under spin4 (not in $spin4_store)")
fi
# The end-to-end suites that touch Postgres once more, the app's database behind PgBouncer in
# session mode (tests/common: WHATRACK_PGBOUNCER), in the test host.
if [ $# -eq 0 ]; then
  echo "== the app's Postgres through PgBouncer in session mode" | tee -a "$log"
  for suite in health_check webhook_retry runs operations console front_door throttling command refusals; do
    WHATRACK_PGBOUNCER=session cargo test --test "$suite" 2>&1 | tee -a "$log" || status=$?
  done
else
  not_run+=("PgBouncer session pass ($args_given)")
fi
# The passes inside the test binaries, told by the tests that ran.
grep -q '^test behind_a_transaction_pooler.* ok$' "$log" || not_run+=("PgBouncer transaction-mode tests (tests/pooler.rs did not pass)")
grep -q '^test the_page_shows_the_estate_in_a_real_browser ... ok$' "$log" \
  || not_run+=("Chromium (tests/console.rs's page test did not pass)")
# One closing line for the whole suite, summed over every test binary, naming what did not run.
summary=$(awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed", p, f }' "$log")
if [ ${#not_run[@]} -eq 0 ]; then
  echo "$summary; every pass ran (test host, spin, spin4, cron 0.5, PgBouncer, Chromium)"
else
  echo "$summary; not run: $(IFS=';'; echo "${not_run[*]}" | sed 's/;/; /g')"
fi
# In CI, where this workplace's Spin builds are at hand, a real-Spin pass that did not run fails
# the run: a green run must mean the component worked under both Spins.
if [ "${CI:-}" = true ] && [ -d ../shared/spin ]; then
  for pass in "${not_run[@]}"; do
    case "$pass" in
      spin\ * | spin4\ * | "cron 0.5"*) echo "CI: the $pass pass did not run" >&2; status=1 ;;
    esac
  done
fi
exit "$status"
