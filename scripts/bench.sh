#!/usr/bin/env bash
# The benchmark (docs/BENCHMARKS.md): both jobs at 1,000 and 20,000 items against stand-ins for
# the Graph API and the processor that answer after a fixed latency, the status route against a
# minimal component, and the component's size. Prints Markdown tables; about 15 minutes here, plus
# a release build of the test host the first time (about 20 minutes): the host is measured
# optimised, as Spin ships.
#
#   BENCH_SEQUENTIAL_UP_TO=20000 scripts/bench.sh   # also the one-at-a-time runs at 20,000 (over an hour)
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh)"
scripts/build-components.sh
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GB", $2/1e6}' /proc/meminfo), $(uname -sr)"
cargo test --profile bench-host --test bench table -- --ignored --nocapture --test-threads 1 2>&1 \
  | grep -E '^(\||status route /|component:|machine|test result)|panicked'
