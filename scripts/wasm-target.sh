#!/usr/bin/env bash
# Adds the wasm32-wasip2 target the component builds for, when rustup is there and it is
# missing. Shared by scripts/test.sh and scripts/dev.sh, so that the first command on a fresh
# machine builds.
set -euo pipefail
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 >&2
fi
