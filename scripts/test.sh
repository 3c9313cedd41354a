#!/usr/bin/env bash
# The whole test suite: sets itself up, then runs pytest (every server it needs is started by the tests).
# Parallel by default: pytest-xdist workers, EDGEFLEET_TEST_WORKERS of them (default: one per core,
# at least 2, as many tests wait on brokers and subprocesses rather than the CPU; 0: one process,
# no xdist). Tests sharing an expensive session fixture stay on one worker (`--dist loadgroup` and
# xdist_group marks). An explicit `-n N`, `--numprocesses`, `--dist` or `-p no:xdist` on the command
# line wins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

workers=${EDGEFLEET_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}
((workers >= 2)) || [[ -n "${EDGEFLEET_TEST_WORKERS:-}" ]] || workers=2
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
