#!/usr/bin/env bash
# The whole test suite on real services: installs, starts the local Kafka broker and
# redis-server (reusing running ones), runs pytest, and stops only what it started.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pipeline
# Tests run in CHURN_TEST_WORKERS pytest-xdist workers (default 2; 0 runs them in this process):
# every test has its own topics, group and Redis prefix, the fault tests their own broker or
# Redis, and the tests of the local Redis Cluster share one worker (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh "${CHURN_EXTRAS:-test,parquet}"
scripts/ensure_chromium.sh  # the dashboard's browser test drives Debian's chromium

set +e
workers="${CHURN_TEST_WORKERS:-2}"
scripts/with-services.sh .venv/bin/python -m pytest -n "$workers" --dist loadgroup "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  code=1
fi
exit "$code"
