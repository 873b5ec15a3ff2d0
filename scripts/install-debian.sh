#!/usr/bin/env bash
# `scripts/install-debian.sh <package>...`: installs the Debian packages given (the caller passes
# only those it found missing), as root; otherwise names them and fails. Shared by the scripts
# that need a tool the machine may lack (Postgres, Redis, Chromium, wrk).
set -euo pipefail
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" != 0 ]; then
  echo "please install: $* (sudo apt-get install $*)" >&2
  exit 1
fi
echo "installing $* from Debian packages" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
