"""A node without a speed input commissions one class per running speed all the same: a v2 front
end estimates the speed from its own spectrum (issue 14's gap; v1 can only learn one any-speed
class)."""

from __future__ import annotations

import tempfile

import numpy as np

from device_sim.dataset import SimRecording, write_recordings
from device_sim.physics import Fault, at_speed, make_machines, synthesize, vary_machines, with_faults
from edgefleet.runtime.artifact import load_artifact
from edgefleet.toolchain.datasets import load_folder
from edgefleet.toolchain.evaluation import evaluate_commissioned, features_and_speed
from edgefleet.runtime.engine import Detector

FLEET_V2 = "edgefleet/models/fleet-v2/model.efm"


def machine_at_three_speeds(seed: int, *, with_rpm: bool) -> list:
    rng = np.random.default_rng(seed)
    m = vary_machines(make_machines(1, rng, bearing=None), rng)
    fs, recs = 12000.0, []
    for s, factor in enumerate((0.55, 0.75, 1.0)):
        one = at_speed(m, factor, 0.5)
        rpm = float(one.shaft_hz(0.0)[0] * 60) if with_rpm else 0.0
        for label, part in (("normal", one), ("unbalance", with_faults(one, [0], Fault.UNBALANCE, onset_s=-1,
                                                                          ramp_s=1e-6, peak_mm_s=1.5))):
            secs = 60 if label == "normal" else 12
            x = np.concatenate([synthesize(part, np.array([100.0 * s + i]), 12000, fs, rng)[0] for i in range(secs)])
            recs.append(SimRecording(f"m_s{s}_{label}", x.astype(np.float32), fs, label, rpm, 0.5, "", 0, seed, "m"))
    with tempfile.TemporaryDirectory() as d:
        write_recordings(d, recs)
        return load_folder(d)


def test_estimated_speed_is_the_machines_speed():
    det = Detector(load_artifact(FLEET_V2))
    for r in machine_at_three_speeds(4, with_rpm=True):
        truth = float(r.meta["rpm"])
        r.meta.pop("rpm")
        w = r.signal[: det.window_samples(r.fs) * 5].reshape(5, -1)
        _, rpm = features_and_speed(det, w, r)
        assert np.all(np.abs(rpm - truth) < 0.02 * truth), (rpm, truth)


def test_classes_per_speed_without_a_speed_input():
    art = load_artifact(FLEET_V2)
    recs = machine_at_three_speeds(5, with_rpm=False)
    assert all("rpm" not in r.meta or float(r.meta["rpm"]) == 0 for r in recs)
    ev = evaluate_commissioned(art, recs, fraction=0.5, target=24)
    m = ev["machines"]["m"]
    assert len(m["classes"]) == 3  # one per running speed, from the estimate
    assert m["auc_int8"] > 0.97 and m["false_alarm_rate"] < 0.05
