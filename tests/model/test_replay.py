"""`edgefleet replay`: a node's logic on a recording in simulated time (commissioning, alarms),
with a named outcome for every input problem and no traceback for a bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "edgefleet" / "models" / "fleet-default"


def replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefleet", "replay", str(MODEL), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def recordings(cwru_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("replay")
    normal = np.load(cwru_dir / "normal_0hp_97.npz")["signal"]
    fault = np.load(cwru_dir / "ir007_0hp_105.npz")["signal"][:24000]
    sig = np.concatenate([normal, fault])
    np.savez(d / "continuous.npz", signal=sig, fs=12000, rpm=1796.0, machine="rig")
    snaps = sig[: (sig.size // 2000) * 2000].reshape(-1, 2000)[:, :1200].copy()
    snaps[2, 7] = np.nan
    np.savez(d / "snapshots.npz", snaps=snaps, t_s=np.arange(len(snaps)) * 10.0, fs=12000,
             rpm=np.full(len(snaps), 1796.0))
    return d


def test_replay_commissions_then_alarms_only_after_the_fault(recordings):
    proc = replay("--data", str(recordings), "--commission-windows", "16", "--json")
    assert proc.returncode == 0, proc.stderr
    out = {r["recording"]: r for r in json.loads(proc.stdout)["recordings"]}
    cont = out["continuous"]
    fault_start = 42689 / 12000
    assert cont["commissioned_at_s"] < fault_start and cont["first_alarm_s"] > fault_start
    assert cont["first_alarm_s"] < fault_start + 0.5  # 3 of 5 windows of 80 ms
    assert [s["stage"] for s in cont["stages"]][:2] == ["commissioning", "healthy"]
    assert cont["classes"][0]["n"] == 16 and cont["states"]["uncommissioned"] == 0
    snap = out["snapshots"]
    assert snap["issues"] == {"nan_windows_skipped": 1} and snap["first_alarm_s"] > 210


@pytest.mark.parametrize("content, message", [
    ({"signal": np.zeros(10), "fs": 12000}, "shorter"),
    ({"snaps": np.zeros((3, 2000)), "t_s": np.array([0.0, 5.0, 5.0]), "fs": 12000}, "increase strictly"),
    ({"fs": 12000}, "needs fs and either signal"),
    ({"signal": np.zeros(5000), "fs": 2000}, "Hz"),
])
def test_bad_recordings_are_refused_with_a_reason(tmp_path, content, message):
    np.savez(tmp_path / "bad.npz", **content)
    proc = replay("--data", str(tmp_path / "bad.npz"))
    if message == "shorter":  # a continuous signal shorter than a window: nothing to judge, said so
        assert proc.returncode == 0 and "not commissioned" in proc.stdout
        return
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_file_that_is_not_a_npz_is_refused_without_pickle_advice(tmp_path):
    (tmp_path / "log.npz").write_text("time,accel\n0,0.1\n")  # a CSV under the wrong name
    proc = replay("--data", str(tmp_path / "log.npz"))
    assert proc.returncode == 2 and "log.npz: not a readable .npz recording" in proc.stderr
    assert "pickle" not in proc.stderr and "Traceback" not in proc.stderr
