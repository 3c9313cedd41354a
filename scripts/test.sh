#!/usr/bin/env bash
# The whole test suite: sets itself up, then runs pytest (every server it needs is started by the tests).
# Parallel on request: pytest-xdist workers, EDGEFLEET_TEST_WORKERS of them (0, the default: one
# process, no xdist). Tests sharing an expensive session fixture stay on one worker (`--dist loadgroup` and
# xdist_group marks). An explicit `-n N`, `--numprocesses`, `--dist` or `-p no:xdist` on the command
# line wins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# Default for now: one process. With 2 workers the suite took 15:26 instead of ~20 min, but two
# timing-sensitive end-to-end tests (the README's engineer loop campaign, a NATS member kill) failed
# when the other worker loaded the same 2 cores; EDGEFLEET_TEST_WORKERS=2 runs it in parallel.
workers=${EDGEFLEET_TEST_WORKERS:-0}
num=(-n "$workers") dist=(--dist loadgroup)
prev=
for arg in "$@"; do
  case "$arg" in
    -n|-n?*|--numprocesses|--numprocesses=*) num=() ;;
    --dist|--dist=*) dist=() ;;
    -pno:xdist) num=() dist=() ;;
    no:xdist) [[ "$prev" == "-p" ]] && num=() dist=() ;;
  esac
  prev=$arg
done
if [[ "$workers" == "0" ]]; then num=() dist=(); fi  # EDGEFLEET_TEST_WORKERS=0: one process, as before
exec .venv/bin/python -m pytest "${num[@]}" "${dist[@]}" "$@"
