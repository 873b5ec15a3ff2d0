#!/usr/bin/env bash
# Builds the component that ships (spin.toml's build command; the tests and scripts/dev.sh call
# it too): cargo's release build for wasm32-wasip2, then its code shrunk by binaryen's `wasm-opt`
# (tools/shrink) into target/wasm32-wasip2/release/whatrack_jobs.opt.wasm, the file spin.toml
# and the tests load. Adds the wasm target and installs binaryen when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/wasm-target.sh
command -v wasm-opt >/dev/null || scripts/install-debian.sh binaryen
cargo build --target wasm32-wasip2 --release
out="${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release"
cargo run -q --release -p shrink -- "$out/whatrack_jobs.wasm" "$out/whatrack_jobs.opt.wasm" >&2
