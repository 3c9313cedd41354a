#!/usr/bin/env bash
# Idempotent set-up: Debian packages (when root) and a .venv with the project.
# Used by both README commands; safe to run again (it skips what is present).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

missing_apt=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg -s "$pkg" >/dev/null 2>&1 || missing_apt+=("$pkg")
done < scripts/apt-packages.txt
if ((${#missing_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
  else
    log "not root: skipping Debian packages ${missing_apt[*]} (features needing them fall back or skip with a reason)"
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.edgefleet-req-$(cat requirements*.txt pyproject.toml | sha256sum | cut -c1-16)
if [[ ! -f "$stamp" ]]; then
  log "installing Python packages (first run takes a few minutes: TensorFlow is large)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.edgefleet-req-*
  touch "$stamp"
fi
log "ready: $(.venv/bin/python --version), edgefleet at $ROOT"
