#!/usr/bin/env bash
# Install the load generator of the API benchmark (benchmarks/bench_api.py): Debian's wrk.
# Idempotent and quiet: does nothing when wrk is already on PATH. Without wrk the benchmark
# falls back to a bounded Python client and says so in its results.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
command -v wrk >/dev/null
