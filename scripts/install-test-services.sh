#!/usr/bin/env bash
# Install what the tests need beyond Python packages: Debian's chromium for the dashboard test.
# (The S3 emulator is moto's server, a Python package started by the tests on loopback.)
# Idempotent and quiet; never fails the test run: tests that need a missing tool skip with a reason.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -x scripts/install-browser.sh ]] || [[ -f scripts/install-browser.sh ]]; then
  bash scripts/install-browser.sh || echo "warning: chromium could not be installed; browser tests will skip" >&2
fi
exit 0
