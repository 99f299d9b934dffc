#!/usr/bin/env bash
# The live demo: installs, brings up the local services, runs workers and simulated traffic.
# Extra arguments go to `churnpulse demo` (see --help), e.g. scripts/demo.sh --duration 60
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test,parquet
exec .venv/bin/churnpulse demo "$@"
