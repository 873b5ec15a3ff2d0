#!/usr/bin/env bash
# Builds the component and deploys the HTTP-only manifest to Fermyon Cloud (`spin cloud login`
# first). Variables are set separately, once: see docs/deploying.md. Extra arguments go to
# `spin cloud deploy`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
scripts/cloud-manifest.sh > spin.cloud.toml
spin cloud deploy --from spin.cloud.toml "$@"
