"""Drift after commissioning must be too slow to learn a developing fault (issue 19, item 2).

The simulator's slowest fault growth is 2.5 days from onset to failure (`make_run`'s
`fault_days`); here a fault four times slower still (10 days) is replayed through the node with and
without drift following: both must alarm before failure, and following drift must not cost more
than a tenth of the lead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_sim.run_to_failure import make_run
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.engine import Detector
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker
from edgefleet.toolchain.replay import ReplayInput, replay

MODEL = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-default" / "model.efm"


@pytest.mark.parametrize("fault_days", [2.5, 10.0])
def test_drift_does_not_learn_the_slowest_fault_away(fault_days: float) -> None:
    det = Detector(load_artifact(MODEL))
    run = make_run(0, np.random.default_rng(3), fault_days=(fault_days, fault_days), onset_days=(2.0, 2.0),
                   every_s=1800.0)
    n = det.window_samples(run.fs)
    leads = {}
    for follow in (False, True):
        rec = ReplayInput(run.name, run.name, run.fs, run.snaps[:, :n], run.t_s + n / run.fs, run.rpm, {})
        out = replay(det, rec, AlarmTracker(AlarmPolicy()), follow_drift=follow)
        assert out["first_alarm_s"] is not None, f"no alarm before failure with follow_drift={follow}"
        assert out["first_alarm_s"] > run.onset_s, "an alarm in the healthy phase"
        leads[follow] = (run.failure_s - out["first_alarm_s"]) / (run.failure_s - run.onset_s)
        if follow:
            moved = [c["max_shift_spreads"] for c in out["baseline_changes"]]
            assert all(m <= 1.0 + 1e-6 for m in moved), "drift went past its cap"
    print(f"fault over {fault_days} days: lead without drift {leads[False]:.3f}, with {leads[True]:.3f}")
    assert leads[True] >= leads[False] - 0.1, leads
