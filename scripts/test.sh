#!/usr/bin/env bash
# The whole test suite: sets itself up, then runs pytest (every server it needs is started by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
