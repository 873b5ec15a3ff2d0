#!/usr/bin/env bash
# The whole test suite, without Spin: starts Postgres and Redis on loopback (scripts/services.sh),
# builds the shipped component (release, wasm32-wasip2), then runs the unit tests and the
# integration tests that load that .wasm into the wasmtime test host. Extra arguments go to
# `cargo test` (e.g. scripts/test.sh --test health_check).
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh)"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --target wasm32-wasip2 --release
cargo test --workspace "$@"
