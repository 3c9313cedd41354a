"""Run-to-failure machines in the replay format, and the node's logic on one of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from device_sim.run_to_failure import exponential_severity, write_runs

REPO = Path(__file__).resolve().parents[2]


def test_defect_grows_exponentially_from_onset_to_failure():
    t = np.linspace(0, 100, 101)
    s = exponential_severity(t, 40.0, 90.0)
    assert (s[t < 40] == 0).all() and s[90] == 1.0 and (np.diff(s[40:91]) > 0).all()
    assert s[65] < 0.2  # slow first, fast at the end


def test_a_run_to_failure_replays_to_an_alarm_between_onset_and_failure(tmp_path):
    path = write_runs(tmp_path, 1, seed=3, onset_days=(0.6, 0.7), fault_days=(0.4, 0.5))[0]
    with np.load(path) as z:
        onset, failure = float(z["onset_s"]), float(z["failure_s"])
        assert z["snaps"].shape[0] == z["t_s"].shape[0] == z["rpm"].shape[0]
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "replay", str(REPO / "edgefleet" / "models" / "fleet-default"),
                           "--data", str(path), "--commission-windows", "32", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["recordings"][0]
    assert r["commissioned_at_s"] < onset and onset < r["first_alarm_s"] <= failure
    assert r["stages"][0]["stage"] == "commissioning" and r["stages"][-1]["stage"] in ("alarm", "critical")
