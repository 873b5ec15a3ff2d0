#!/usr/bin/env bash
# Builds the component that ships (spin.toml's build command; the tests and scripts/dev.sh call
# it too): cargo's release build for wasm32-wasip2, target/wasm32-wasip2/release/whatrack_jobs.wasm,
# the file spin.toml and the tests load. Adds the wasm target when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/wasm-target.sh
cargo build --target wasm32-wasip2 --release
