#!/usr/bin/env bash
# Builds what the tests and the benchmark load: the shipped component and the benchmark's
# minimal component (into CARGO_TARGET_DIR when set), after adding the wasm target if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/wasm-target.sh
cargo build --target wasm32-wasip2 --release
cargo build --manifest-path bench/minimal-status/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}" --target wasm32-wasip2 --release
