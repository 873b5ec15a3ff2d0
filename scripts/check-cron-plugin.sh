#!/usr/bin/env bash
# Checks that the installed cron trigger plugin is the line this component targets. Plugin
# versions up to 0.4.2 call `fermyon:spin-cron@2.0.0`, which this component exports; 0.5 and
# later expect the WASIp3 world `spin:cron@3.0.0` and cannot run it. Exits 1 with what to do.
set -euo pipefail
want=0.4.2
# `spin plugins list --installed` prints one "name version [installed]" line a plugin.
have=$(spin plugins list --installed 2>/dev/null | awk '$1 == "trigger-cron" { print $2; exit }')
if [ "$have" = "$want" ]; then
  exit 0
fi
if [ -z "$have" ]; then
  echo "The cron trigger plugin is not installed. Install the line this component targets:" >&2
else
  echo "The cron trigger plugin is $have; this component needs $want (0.5 and later call the" >&2
  echo "WASIp3 world spin:cron@3.0.0, which a WASI 0.2 component does not export). Replace it:" >&2
  echo "  spin plugins uninstall trigger-cron" >&2
fi
echo "  spin plugins update && spin plugins install trigger-cron --version $want --yes" >&2
exit 1
