#!/usr/bin/env bash
# Checks that the installed cron trigger plugin can run this component. Both lines call the
# component's `handle-cron-event`: up to 0.4.x through `fermyon:spin-cron@2.0.0`, which it
# exports; from 0.5 (built on Spin 4) through `spin:cron@3.0.0`, whose function has the same
# name and shapes, so the WASI 0.2 export is matched. The test suite runs the schedules under
# 0.3.0 (Spin 3.5.0 and 4.0.2) and 0.5.0 (Spin 4.0.2) (tests/schedules.rs). A newer version
# (the plugin index's current one, without --version) is accepted with a line naming the tested
# ones; only versions known not to work (before 0.3, another world) are refused, with what to do.
set -euo pipefail
TESTED="0.3.0 and 0.5.0"
# `spin plugins list --installed` prints one "name version [installed]" line a plugin.
have=$(spin plugins list --installed 2>/dev/null | awk '$1 == "trigger-cron" { print $2; exit }')
case "$have" in
  "") echo "The cron trigger plugin is not installed. Install it:" >&2 ;;
  0.[0-2].*) echo "The cron trigger plugin is $have, which calls another world than this component exports. Replace it:" >&2
    echo "  spin plugins uninstall trigger-cron" >&2 ;;
  0.3.* | 0.4.* | 0.5.*) exit 0 ;;
  *)
    echo "The cron trigger plugin is $have, newer than the versions this component was run under ($TESTED)." >&2
    exit 0
    ;;
esac
echo "  spin plugins update && spin plugins install trigger-cron --version 0.4.2 --yes" >&2
exit 1
