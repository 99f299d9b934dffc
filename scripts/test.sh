#!/usr/bin/env bash
# The whole test suite on real services: installs, starts the local Kafka broker and
# redis-server (reusing running ones), runs pytest, and stops only what it started.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh "${CHURN_EXTRAS:-test,parquet}"
scripts/ensure_chromium.sh  # the dashboard's browser test drives Debian's chromium
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
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  code=1
fi
exit "$code"
