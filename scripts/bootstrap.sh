#!/usr/bin/env bash
# Creates .venv and installs churnpulse into it (editable), once per change of pyproject.toml.
# Usage: scripts/bootstrap.sh [extras]   (default extras: test,parquet)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,parquet}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "churnpulse needs Python 3.11 or newer as '$python' (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
  echo "installing churnpulse[$extras] into .venv (first run takes a minute or two)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
