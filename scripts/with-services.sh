#!/usr/bin/env bash
# Runs a command with the local Kafka broker and redis-server up: starts what is not running,
# exports KAFKA_BOOTSTRAP_SERVERS and REDIS_URL, runs the command, then stops only what it
# started. Used by scripts/test.sh and `make bench`, so both work on a fresh machine.
# Usage: scripts/with-services.sh COMMAND [ARGS...]   (after scripts/bootstrap.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cp=.venv/bin/churnpulse

started=$("$cp" services up --json | .venv/bin/python -c \
  'import json,sys; print(" ".join(s["name"] for s in json.load(sys.stdin) if s["state"] == "started"))')
cleanup() {
  if [ -n "$started" ]; then
    # shellcheck disable=SC2086
    "$cp" services down $started >/dev/null || true
  fi
}
trap cleanup EXIT

KAFKA_BOOTSTRAP_SERVERS="$("$cp" config --get kafka.bootstrap_servers)"
REDIS_URL="$("$cp" config --get redis.url)"
export KAFKA_BOOTSTRAP_SERVERS REDIS_URL
echo "services: kafka $KAFKA_BOOTSTRAP_SERVERS, redis $REDIS_URL (started now: ${started:-none})"

set +e
"$@"
code=$?
set -e
exit "$code"
