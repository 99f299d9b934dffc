#!/usr/bin/env bash
# The whole test suite on real services: installs, starts the local Kafka broker and
# redis-server (reusing running ones), runs pytest, and stops only what it started.
# Extra arguments go to pytest, e.g. scripts/test.sh -k pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh "${CHURN_EXTRAS:-test,parquet}"
scripts/ensure_chromium.sh  # the dashboard's browser test drives Debian's chromium

set +e
scripts/with-services.sh .venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  code=1
fi
exit "$code"
