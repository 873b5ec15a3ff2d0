#!/usr/bin/env bash
# Prints spin.toml without its cron triggers and cron components: the manifest for hosts that
# run no custom triggers (Fermyon Cloud), where an external scheduler POSTs to the job routes
# instead. Write it beside spin.toml, since component sources are relative to the manifest:
#   scripts/cloud-manifest.sh > spin.cloud.toml
set -euo pipefail
cd "$(dirname "$0")/.."
awk '
  /^\[/ { skip = ($0 ~ /^\[\[trigger\.cron\]\]/ || $0 ~ /^\[component\.cron-/) }
  !skip { print }
' spin.toml
