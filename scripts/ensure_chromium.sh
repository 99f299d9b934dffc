#!/usr/bin/env bash
# Makes sure a chromium is installed for the dashboard's browser test (Debian's `chromium`
# package; no browser download of its own). Idempotent: does nothing when one is found.
# Without root or apt-get it only warns: the browser test then skips on a developer machine
# and fails under CI (CI=true).
set -euo pipefail
for name in "${CHROMIUM:-}" chromium chromium-browser; do
  if [ -n "$name" ] && command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: no chromium and no apt-get; install chromium to run the browser test" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "ensure_chromium: not root; run 'apt-get install chromium' to run the browser test" >&2
    exit 0
  fi
fi
echo "ensure_chromium: installing Debian's chromium package (once)..."
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3; do  # another apt-get may hold the lock for a while
  if $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium; then
    break
  fi
  echo "ensure_chromium: apt-get failed (attempt $attempt), retrying in 10 s" >&2
  sleep 10
done
command -v chromium >/dev/null 2>&1 || echo "ensure_chromium: chromium is still missing" >&2
