"""replay's `clipped_windows` follows the sensor check's rule (a piled-up extreme,
runtime/sensor_check.py): a clean sine (0.1 g at 100 Hz sampled at 12 kHz, a whole number of samples
a period) hits its peak value every cycle and was counted clipped on every window (750 of 750) by
the old "samples within 0.1 % of the peak" rule; the same sine clipped is counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefleet.cli import main
from edgefleet.runtime.artifact import load_artifact
from edgefleet.toolchain.replay import load_replay

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "edgefleet" / "models" / "fleet-default"
FS = 12000.0


def sine(seconds: float, phase_samples: float = 0.0) -> np.ndarray:
    """0.1 g at 100 Hz at 12 kHz (120 samples a period); phase 0.5: two equal samples at each peak."""
    n = np.arange(int(FS * seconds))
    return (0.1 * np.sin(2 * np.pi * (n + phase_samples) / 120 + np.pi / 2 * (phase_samples != 0))).astype(np.float32)


@pytest.mark.parametrize("phase", [0.0, 0.5])
def test_a_clean_sine_has_no_clipped_windows_and_the_same_sine_clipped_has(tmp_path: Path, phase: float) -> None:
    params = load_artifact(MODEL / "model.efm").features.params
    x = sine(60.0, phase)
    np.savez(tmp_path / "clean.npz", signal=x, fs=FS)
    np.savez(tmp_path / "clipped.npz", signal=np.clip(x, -0.08, 0.08), fs=FS)
    clean = load_replay(tmp_path / "clean.npz", params)
    assert len(clean.windows) == 750 and clean.issues.get("clipped_windows", 0) == 0, clean.issues
    clipped = load_replay(tmp_path / "clipped.npz", params)
    assert clipped.issues["clipped_windows"] == 750, clipped.issues


def test_replay_reports_clipped_windows_of_a_clipped_sine_only(tmp_path: Path, capsys) -> None:
    x = sine(20.0)
    np.savez(tmp_path / "clean.npz", signal=x, fs=FS)
    np.savez(tmp_path / "clipped.npz", signal=np.clip(x, -0.08, 0.08), fs=FS)
    for name, clipped in (("clean", 0), ("clipped", 250)):
        assert main(["replay", str(MODEL), "--data", str(tmp_path / f"{name}.npz"), "--commission-windows", "16",
                     "--json"]) == 0
        issues = json.loads(capsys.readouterr().out)["recordings"][0]["issues"]
        assert issues.get("clipped_windows", 0) == clipped, issues
