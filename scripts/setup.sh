#!/usr/bin/env bash
# Create .venv and install nowcast with its test extras. Idempotent.
# torch is pinned in constraints.txt (==2.13.0): on a CPU-only machine with the local wheel
# pip takes that; elsewhere pip takes the same version from PyPI (CUDA build on Linux x86_64).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
fi
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e '.[dev]'
touch "$VENV/.installed"
