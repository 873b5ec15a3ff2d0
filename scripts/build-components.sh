#!/usr/bin/env bash
# Builds what the tests and the benchmark load: the shipped component (scripts/build.sh), the
# benchmark's minimal components and the test host's fixture (into CARGO_TARGET_DIR when set).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cargo build --manifest-path bench/minimal-status/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}" --target wasm32-wasip2 --release
cargo build --manifest-path bench/minimal-front-door/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}" --target wasm32-wasip2 --release
cargo build --manifest-path test-host/fixtures/host-rules/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}" --target wasm32-wasip2 --release
