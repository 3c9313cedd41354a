"""Sensor faults on run-to-failure machines: each named by the node's per-window check, none
training the baseline or clearing an alarm, and none hiding a failing machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_sim.run_to_failure import SENSOR_FAULTS, make_run, write_runs
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.engine import Detector
from edgefleet.runtime.sensor_check import SensorLimits, check_window, check_windows
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker
from edgefleet.toolchain.replay import ReplayInput, replay

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "edgefleet" / "models" / "fleet-default"
SHORT = {"onset_days": (0.6, 0.7), "fault_days": (0.4, 0.5)}  # ~180 snapshots, 10 min apart
COMMISSION = 32


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector(load_artifact(MODEL / "model.efm"))


def node(det: Detector, run) -> dict:
    n = det.window_samples(run.fs)
    rec = ReplayInput(run.name, run.name, run.fs, run.snaps[:, :n], run.t_s + n / run.fs, run.rpm, {})
    return replay(det, rec, AlarmTracker(AlarmPolicy()), commission_windows=COMMISSION, trace=True)


def alarm_at_end(out: dict) -> bool:
    return out["stages"][-1]["stage"] in ("alarm", "critical")


def test_the_check_names_flat_noise_floor_clipped_and_dropped_windows():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.08, 960).astype(np.float32)
    assert check_window(x) == ""
    assert check_window(np.full(960, 0.37, np.float32)) == "sensor_dead"  # stuck at an offset
    assert check_window(rng.normal(0.0, 0.004, 960)) == "sensor_dead"  # the sensor's own noise only
    assert check_window(np.clip(x, -0.12, 0.12)) == "sensor_saturated"  # flat tops
    assert check_window(x, SensorLimits(rail=0.12)) == "sensor_saturated"  # at the known full scale
    held = x.copy()
    held[300:340] = 0.0  # 3 ms of zeros inside the range
    assert check_window(held) == "sensor_dropout"
    nan = x.copy()
    nan[5] = np.nan
    assert check_window(nan) == "sensor_dropout"
    with pytest.raises(ValueError):
        check_windows(np.zeros((3, 1), np.float32))


@pytest.mark.parametrize("kind,named", [("dead_flat", {"sensor_dead"}), ("dead_noise", {"sensor_dead"}),
                                        ("saturating", {"sensor_saturated"}),
                                        ("dropouts", {"sensor_dropout", "sensor_dead"})])
def test_each_simulated_sensor_fault_is_named_after_its_onset_and_never_before(kind, named):
    run = make_run(1, np.random.default_rng(7), sensor_fault=kind, **SHORT)
    names = np.array(check_windows(run.snaps[:, :960]).names())
    before, after = run.t_s < run.sensor_onset_s, run.t_s >= run.sensor_onset_s
    assert before.sum() > 20 and after.sum() > 20
    assert set(names[before]) == {""}  # a healthy sensor on a healthy-then-failing machine: never flagged
    flagged = names[after][names[after] != ""]
    assert set(flagged) <= named
    share = len(flagged) / after.sum()
    assert share == 1.0 if kind.startswith("dead") else share > (0.8 if kind == "saturating" else 0.1)


def test_sensor_fault_kind_and_onset_are_written_with_the_recording(tmp_path):
    p = write_runs(tmp_path, 1, seed=2, sensor_fault="dead_noise", **SHORT)[0]
    with np.load(p) as z:
        assert str(z["sensor_fault"]) == "dead_noise"
        onset = float(z["sensor_onset_s"])
        assert 0 < onset < float(z["failure_s"]) and z["snaps"].shape[0] == z["t_s"].shape[0]
    with pytest.raises(ValueError, match="unknown sensor fault"):
        make_run(0, np.random.default_rng(0), sensor_fault="wobbly", **SHORT)


def test_a_machine_fault_under_a_healthy_sensor_alarms_with_no_sensor_outcome(det):
    out = node(det, run := make_run(3, np.random.default_rng(11), **SHORT))
    assert out["sensor"] == [] and not any(k.startswith("sensor_") for k in out["issues"])
    assert run.onset_s < out["first_alarm_s"] <= run.failure_s and alarm_at_end(out)


def test_a_dead_channel_after_the_alarm_neither_clears_it_nor_trains_the_baseline(det):
    seed = 11
    first = node(det, make_run(3, np.random.default_rng(seed), **SHORT))["first_alarm_s"]
    run = make_run(3, np.random.default_rng(seed), sensor_fault="dead_noise", sensor_onset_s=first + 1200, **SHORT)
    out = node(det, run)
    assert out["first_alarm_s"] == first  # the same machine, the same alarm
    assert [a for a in out["alarms"] if a["t_s"] > run.sensor_onset_s] == []  # nothing judged after: no change
    assert alarm_at_end(out)  # ... and it was never cleared by a "quiet" sensor
    assert out["sensor"][0]["outcome"] == "sensor_dead" and out["sensor"][0]["t_s"] >= run.sensor_onset_s
    assert out["states"]["sensor_dead"] == out["issues"]["sensor_dead_windows"] > 10
    assert all(c["t_s"] < run.sensor_onset_s + 32 * 600 for c in out["baseline_changes"])


def test_a_saturating_sensor_on_a_failing_machine_is_never_reported_healthy(det):
    for i in range(3):
        run = make_run(i, np.random.default_rng(20 + i), sensor_fault="saturating", sensor_at=(0.25, 0.5), **SHORT)
        out = node(det, run)
        last = [s for t, s in zip(out["trace"]["t_s"], out["trace"]["sensor"]) if t >= out["end_s"] - 3600]
        assert alarm_at_end(out) or "sensor_saturated" in last, (run.name, out["stages"], last)
        assert out["issues"]["sensor_saturated_windows"] > 0


def test_loose_mount_and_dropouts_never_hide_the_machine_fault(det):
    for kind in ("loose_mount", "dropouts"):
        run = make_run(4, np.random.default_rng(31), sensor_fault=kind, sensor_at=(0.2, 0.3), **SHORT)
        out = node(det, run)
        assert out["first_alarm_s"] is not None and alarm_at_end(out), (kind, out["stages"])


def test_replay_json_names_the_sensor_outcomes(tmp_path):
    path = write_runs(tmp_path, 1, seed=4, sensor_fault="dead_flat", sensor_at=(0.5, 0.6), **SHORT)[0]
    proc = subprocess.run([sys.executable, "-m", "edgefleet", "replay", str(MODEL), "--data", str(path),
                           "--commission-windows", str(COMMISSION), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["recordings"][0]
    with np.load(path) as z:
        onset = float(z["sensor_onset_s"])
    assert [s["outcome"] for s in r["sensor"]] == ["sensor_dead"] and r["sensor"][0]["t_s"] >= onset
    assert r["issues"]["sensor_dead_windows"] == r["states"]["sensor_dead"] > 0
    assert SENSOR_FAULTS == ("loose_mount", "saturating", "dead_flat", "dead_noise", "dropouts")


def sine(n: int, phase_samples: float = 0.0, full_scale: float = 0.0, amp: float = 0.1) -> np.ndarray:
    """A calibrator's or shaker's sine: amp g at 100 Hz sampled at 12 kHz (120 samples a period);
    phase_samples 0.5 puts two samples symmetric about each peak (equal in float32); full_scale > 0
    quantizes it as a 16-bit ADC of that range does."""
    x = amp * np.sin(2 * np.pi * (np.arange(n) + phase_samples) / 120 + np.pi / 2 * (phase_samples != 0))
    return (np.round(x / (full_scale / 32768)) * (full_scale / 32768) if full_scale else x).astype(np.float32)


@pytest.mark.parametrize("phase", [0.0, 0.5])
@pytest.mark.parametrize("full_scale", [0.0, 2.0, 16.0])
def test_a_clean_sine_is_not_saturated_but_the_same_sine_clipped_is(phase, full_scale):
    x = sine(960, phase, full_scale)
    if phase:
        assert (x[:-1] == x[1:]).sum() >= 8  # two equal samples at each peak: flat tops of 2 are no clip
    assert check_window(x) == ""
    assert check_window(np.clip(x, -0.08, 0.08)) == "sensor_saturated"
    assert check_window(x, SensorLimits(rail=float(np.abs(x).max()))) == "sensor_saturated"  # at a known rail


def test_a_clean_sine_recording_commissions_and_is_judged(det):
    n = det.window_samples(12000.0)
    k = 40
    x = sine(n * k, 0.5).reshape(k, n)
    rec = ReplayInput("sine", "sine", 12000.0, x, (np.arange(k) + 1) * n / 12000.0, None, {})
    out = replay(det, rec, AlarmTracker(AlarmPolicy()), commission_windows=COMMISSION)
    assert "error" not in out and not any(key.startswith("commissioning_sensor") for key in out["issues"]), out
    assert not any(key.startswith("sensor_") for key in out.get("states", {})), out["states"]
