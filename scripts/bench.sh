#!/usr/bin/env bash
# The benchmark (docs/BENCHMARKS.md): both jobs at 1,000 and 20,000 items against stand-ins for
# the Graph API and the processor that answer after a fixed latency, the status route against a
# minimal component, and the component's size; in the test host and, where `spin` is on PATH,
# under the real `spin up` beside it (jobs through their HTTP route, the status route over HTTP
# with wrk). Prints Markdown tables; about 30 minutes here with Spin, plus a release build of the
# test host the first time (about 20 minutes): the host is measured optimised, as Spin ships.
#
#   BENCH_SEQUENTIAL_UP_TO=20000 scripts/bench.sh   # also the one-at-a-time runs at 20,000 (over an hour)
#   BENCH_ONLY=20:16 scripts/bench.sh               # one latency (ms) and concurrency only
#   BENCH_ONLY=status scripts/bench.sh              # no job: the status route, size, cold start
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh)"
scripts/build-components.sh
# The status route over HTTP is driven by wrk, beside `spin up` when Spin is installed.
command -v wrk >/dev/null || scripts/install-debian.sh wrk
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GB", $2/1e6}' /proc/meminfo), $(uname -sr)"
cargo test --profile bench-host --test bench table -- --ignored --nocapture --test-threads 1 2>&1 \
  | grep -E '^(\||status route /|test host:|spin up:|component:|machine|test result)|panicked'
