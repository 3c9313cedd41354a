"""Fixtures for the Cortex-M tests: the M4 images and the host build, made once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from testkit import run_lock

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
FLEET_MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
QEMU = ["qemu-system-arm", "-machine", "mps2-an386", "-nographic", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native"]


@pytest.fixture(scope="session")
def mcu() -> Path:
    """`make -C firmware mps2-an386 host`: the M4 images and the host programs."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/apt-packages.txt lists it)")
    with run_lock("firmware-make"):  # one `make` at a time in firmware/build (parallel workers)
        proc = subprocess.run(["make", "-C", str(FIRMWARE), "-j", str(os.cpu_count() or 2), "mps2-an386", "host"],
                              capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"firmware build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return FIRMWARE / "build" / "mps2-an386"


@pytest.fixture(scope="session")
def recording(tmp_path_factory) -> tuple[Path, float]:
    """40 windows of a healthy simulated machine at 12 kHz (device_sim physics), float32 g."""
    from device_sim.physics import synthesize
    from device_sim.plant import make_plant

    fs = 12000.0
    plant = make_plant(1, seed=3, rates=(fs,))
    x = synthesize(plant.machines, 5.0, 960 * 40, fs, np.random.default_rng(5))[0]
    path = tmp_path_factory.mktemp("rec") / "healthy.f32"
    x.astype("<f4").tofile(path)
    return path, fs
