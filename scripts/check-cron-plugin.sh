#!/usr/bin/env bash
# Checks that the installed cron trigger plugin is one this component has been run under. Both
# lines call the component's `handle-cron-event`: up to 0.4.x through `fermyon:spin-cron@2.0.0`,
# which it exports; 0.5 (built on Spin 4) through `spin:cron@3.0.0`, whose function has the same
# name and shapes, so the WASI 0.2 export is matched. The test suite runs the schedules under
# 0.3.0 (Spin 3.5.0 and 4.0.2) and 0.5.0 (Spin 4.0.2) (tests/schedules.rs). Exits 1 with what
# to do when the plugin is missing or of a version outside 0.3 to 0.5.
set -euo pipefail
# `spin plugins list --installed` prints one "name version [installed]" line a plugin.
have=$(spin plugins list --installed 2>/dev/null | awk '$1 == "trigger-cron" { print $2; exit }')
case "$have" in
  0.3.* | 0.4.* | 0.5.*) exit 0 ;;
  "") echo "The cron trigger plugin is not installed. Install it:" >&2 ;;
  *)
    echo "The cron trigger plugin is $have; this component has been run under 0.3 to 0.5 only." >&2
    echo "Replace it with one of those:" >&2
    echo "  spin plugins uninstall trigger-cron" >&2
    ;;
esac
echo "  spin plugins update && spin plugins install trigger-cron --version 0.4.2 --yes" >&2
exit 1
