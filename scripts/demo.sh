#!/usr/bin/env bash
# The demo: sets itself up, then runs broker + fleet service + simulated plant + dashboard.
# Options pass through to `edgefleet demo` (see `--help`), e.g. --nodes 1000 --duration 600.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m edgefleet demo "$@"
