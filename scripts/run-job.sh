#!/usr/bin/env bash
# Runs one job once, now, from a shell: the command app (deploy/spin-command.toml) under
# `spin up` with the command trigger plugin, the same way a Kubernetes CronJob's pod runs it. No
# secret, no curl, no HTTP server. Prints the run's result as one JSON line on stdout (the log
# on stderr) and exits with its status: 0 when the run succeeded, was skipped because another
# run holds the lock, or the job is paused; non-zero when it failed or the configuration is
# wrong.
#
#   SPIN_VARIABLE_DATABASE_URL=... SPIN_VARIABLE_REDIS_URL=... scripts/run-job.sh whatsapp-health-check
#   scripts/run-job.sh webhook-retry
#
# The variables are the app's (docs/configuration.md), as SPIN_VARIABLE_<NAME> in the
# environment. Needs `spin` (or SPIN=spin4) and its command trigger plugin
# (`spin plugins install trigger-command`, or ../shared/spin/install.sh); builds the component
# first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  whatsapp-health-check | webhook-retry) ;;
  *)
    echo "usage: scripts/run-job.sh whatsapp-health-check|webhook-retry" >&2
    exit 2
    ;;
esac
[ -f target/wasm32-wasip2/release/whatrack_jobs.wasm ] || scripts/build.sh >&2

# Spin prints a component's stdout on its own stderr, beside the log: the component's two
# streams are taken from its log files instead, stdout to stdout.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
SPIN_VARIABLE_JOB=$1 "${SPIN:-spin}" up --from deploy/spin-command.toml --quiet --log-dir "$logs" >/dev/null || status=$?
cat "$logs/job_stderr.txt" >&2 2>/dev/null || true
cat "$logs/job_stdout.txt" 2>/dev/null || true
exit "$status"
