#!/usr/bin/env bash
# Prints spin.toml without its cron triggers and cron components: the manifest for hosts that
# run no custom triggers (Fermyon Cloud), where an external scheduler POSTs to the job routes
# instead. Its outbound requests are held below Fermyon Cloud's 500 an hour
# (outbound_requests_per_hour 450). Write it beside spin.toml, since component sources are relative to the manifest:
#   scripts/cloud-manifest.sh > spin.cloud.toml
set -euo pipefail
cd "$(dirname "$0")/.."
awk '
  /^\[/ { skip = ($0 ~ /^\[\[trigger\.cron\]\]/ || $0 ~ /^\[component\.cron-/) }
  !skip && /^outbound_requests_per_hour = \{ default/ { print "outbound_requests_per_hour = { default = \"450\" }"; next }
  !skip { print }
' spin.toml
