"""Fixtures for the C firmware tests: one build per session (release and
sanitized), models built once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import run_lock

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fw_helpers, whatever the import mode
from fw_helpers import FIRMWARE, REPO, Build  # noqa: E402

SHIPPED_MODEL = REPO / "edgefleet" / "models" / "cwru-de-12k"


@pytest.fixture(scope="session")
def fw() -> Build:
    """`make -C firmware host host-san` once per session (fetches CMSIS-DSP and Monocypher sdists)."""
    jobs = str(os.cpu_count() or 2)
    with run_lock("firmware-make"):  # one `make` at a time in firmware/build (parallel workers)
        proc = subprocess.run(["make", "-C", str(FIRMWARE), "-j", jobs, "host", "host-san"],
                              capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"firmware build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return Build(FIRMWARE / "build" / "host", FIRMWARE / "build" / "host-san")


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    if not (SHIPPED_MODEL / "model.efm").is_file():
        pytest.fail(f"the shipped CWRU model is missing at {SHIPPED_MODEL}")
    return SHIPPED_MODEL
