#!/usr/bin/env bash
# Fetch third-party C sources through PyPI (source distributions only) into
# firmware/third_party/ (gitignored): CMSIS-DSP (real FFT), Monocypher
# (Ed25519 curve arithmetic) and libsodium's SHA-256/SHA-512 (the libsodium
# source tree that the PyNaCl sdist bundles; one portable C implementation for
# the host and the Cortex-M builds). Nothing third-party is committed to the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
CMSISDSP_VERSION=1.10.3
MONOCYPHER_VERSION=4.0.3.4
PYNACL_VERSION=1.5.0 # bundles libsodium 1.0.18
PIP=${PIP:-}
if [[ -z "$PIP" ]]; then
  if [[ -x ../.venv/bin/pip ]]; then PIP="../.venv/bin/pip"; else PIP="python3 -m pip"; fi
fi
mkdir -p third_party
fetch() { # name version unpacked-dir
  local name=$1 version=$2 dir=$3
  [[ -d third_party/$dir ]] && return 0
  echo "[firmware] fetching $name==$version (sdist) from PyPI"
  # --no-build-isolation: pip only needs the sdist; do not build its build dependencies
  $PIP download --quiet --no-binary :all: --no-deps --no-build-isolation "$name==$version" -d third_party/dl ||
    $PIP download --quiet --no-binary :all: --no-deps "$name==$version" -d third_party/dl
  tar -xzf "third_party/dl/$name-$version.tar.gz" -C third_party ${4:-}
}
fetch cmsisdsp "$CMSISDSP_VERSION" "cmsisdsp-$CMSISDSP_VERSION"
fetch pymonocypher "$MONOCYPHER_VERSION" "pymonocypher-$MONOCYPHER_VERSION"
# only libsodium's sources, not PyNaCl's Python package
fetch PyNaCl "$PYNACL_VERSION" "PyNaCl-$PYNACL_VERSION" "PyNaCl-$PYNACL_VERSION/src/libsodium/src/libsodium"
touch third_party/.fetched
