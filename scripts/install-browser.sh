#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the dashboard browser test (pytest -m browser).
# Idempotent and quiet: does nothing when /usr/bin/chromium is already present.
# The Python playwright package drives it with executable_path=/usr/bin/chromium;
# `playwright install` (which downloads its own browsers) is never needed.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium
