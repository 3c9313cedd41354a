"""Remaining life: the hinge fit, the interval, and the tracker's use of them (docs/baseline.md, "Remaining life")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefleet.protocol import ResultRecord
from edgefleet.service.alarms import (
    AlarmPolicy,
    AlarmTracker,
    fit_hinge,
    remaining_life,
)

T0 = 1_700_000_000_000
STEP_MS = 600_000  # one snapshot every 10 minutes


def broken_stick(n: int, knee: int, slope: float, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    x = np.arange(n, dtype=float)
    return 0.5 + slope * np.maximum(x - knee, 0.0) + rng.normal(0.0, noise, n)


def test_hinge_finds_the_knee_and_the_slope_after_it():
    rng = np.random.default_rng(1)
    ts = [T0 + i * STEP_MS for i in range(60)]
    life = fit_hinge(ts, broken_stick(60, 35, 0.1, rng))
    assert life is not None
    assert abs(life.knee_ms - ts[35]) <= 2 * STEP_MS
    assert life.slope_per_s * STEP_MS / 1000 == pytest.approx(0.1, rel=0.1)
    assert life.t_stat > 10


def test_a_line_through_the_floor_and_the_rise_reads_the_rise_too_slow():
    """Why the hinge: a plain line over both parts underestimates the slope (and overestimates life)."""
    rng = np.random.default_rng(2)
    y = broken_stick(60, 40, 0.1, rng)
    x = np.arange(60.0)
    plain = np.polyfit(x, y, 1)[0]
    life = fit_hinge([T0 + i * STEP_MS for i in range(60)], y)
    assert plain < 0.75 * life.slope_per_s * STEP_MS / 1000


def test_hinge_refuses_too_few_points_or_no_time_spread():
    assert fit_hinge([T0 + i for i in range(8)], [1.0] * 8, min_after=6) is None
    assert fit_hinge([T0] * 20, list(np.linspace(1, 2, 20))) is None
    assert fit_hinge([T0 + i for i in range(20)], [1.0] * 19 + [math.nan]) is None


def test_interval_brackets_the_estimate_and_reaches_zero_at_the_failure_level():
    rng = np.random.default_rng(3)
    ts = [T0 + i * STEP_MS for i in range(60)]
    life = fit_hinge(ts, broken_stick(60, 30, 0.1, rng))
    rul, low, high = remaining_life(life, (3.9, 6.6, 9.2))
    assert 0 < low <= rul <= high < math.inf
    # the line is at 0.5 + 0.1 * 29 = 3.4 now: the typical level 6.6 is about 32 snapshots away
    assert rul / (STEP_MS / 1000) == pytest.approx(32, rel=0.15)
    past = remaining_life(life, (1.1, 1.2, 1.3))
    assert past[0] == 0.0 and past[1] == 0.0


def test_accelerating_rise_pulls_the_early_end_in():
    x = np.arange(60.0)
    y = 0.5 + 0.002 * np.maximum(x - 10, 0.0) ** 2  # still bending upwards
    ts = [T0 + int(i) * STEP_MS for i in x]
    life = fit_hinge(ts, y)
    assert life.accel is not None
    with_accel = remaining_life(life, (6.0, 8.0, 10.0))
    without = remaining_life(life.__class__(**{**life.__dict__, "accel": None}), (6.0, 8.0, 10.0))
    assert with_accel[1] < without[1]
    assert with_accel[0] == without[0] and with_accel[2] == without[2]


def rec(i: int, hi_ratio: float) -> ResultRecord:
    hi_thr = 1.5
    return ResultRecord("m1", "b1", i, T0 + i * STEP_MS, 2, 0.5, 2.0, hi_ratio > 1.0, 0, state="",
                        hi=hi_ratio * hi_thr, cls=0, hi_thr=hi_thr)


def test_tracker_gives_a_life_that_covers_the_truth_on_a_failing_machine():
    rng = np.random.default_rng(4)
    policy = AlarmPolicy()
    t = AlarmTracker(policy)
    ratios = broken_stick(200, 120, 0.08, rng)  # reaches the typical failure level 6.6 at about 196
    true_fail = 120 + (policy.failure_hi[1] - 0.5) / 0.08
    for i in range(170):
        t.observe(rec(i, float(ratios[i])))
    h = t.health("m1")
    assert h.state == "alarm"
    assert h.rul_s is not None
    true_s = (true_fail - 169) * STEP_MS / 1000
    assert h.rul_low_s <= true_s <= h.rul_high_s
    assert h.rul_s == pytest.approx(true_s, rel=0.25)


def test_tracker_gives_no_life_to_a_healthy_machine():
    rng = np.random.default_rng(5)
    t = AlarmTracker(AlarmPolicy())
    for i in range(300):
        t.observe(rec(i, float(0.5 + rng.normal(0, 0.08))))
    h = t.health("m1")
    assert h.state == "ok" and h.rul_s is None and h.rul_low_s is None


def test_policy_refuses_a_nonsense_failure_level():
    with pytest.raises(ValueError, match="failure_hi"):
        AlarmPolicy(failure_hi=(5.0, 4.0, 9.0))
    with pytest.raises(ValueError, match="failure_hi"):
        AlarmPolicy(failure_hi=(0.5, 4.0, math.inf))


def vel(i: int, vrms: float, device: str = "m2", anom: bool = False) -> ResultRecord:
    return ResultRecord(device, "b1", i, T0 + i * 1000, 2, 0.5 if not anom else 3.0, 2.0, anom, 0, state="",
                        hi=0.6, cls=0, hi_thr=1.5, vrms=vrms)


def test_iso_zone_d_raises_a_critical_alarm_even_where_the_node_learned_a_rough_normal():
    """A machine commissioned while already rough: its node sees nothing abnormal, mm/s does."""
    t = AlarmTracker(AlarmPolicy())  # default class II: zone D from 7.1 mm/s
    changes = [t.observe(vel(i, 2.0)) for i in range(10)]
    assert not any(changes)
    changes = [c for c in (t.observe(vel(10 + i, 9.0)) for i in range(5)) if c]
    assert [(c.op, c.severity) for c in changes] == [("raise", "critical")]
    cleared = [c for c in (t.observe(vel(20 + i, 2.0)) for i in range(6)) if c]
    assert [c.op for c in cleared] == ["clear"]


def test_the_machine_class_decides_zone_d_and_a_bad_class_falls_back_to_the_default():
    big = AlarmTracker(AlarmPolicy(), iso_class_of=lambda d: "IV")  # class IV: zone D from 18 mm/s
    assert not any(big.observe(vel(i, 9.0)) for i in range(6))
    bad = AlarmTracker(AlarmPolicy(), iso_class_of=lambda d: "nonsense")
    assert any(c and c.severity == "critical" for c in (bad.observe(vel(i, 9.0)) for i in range(6)))


def test_a_model_alarm_turns_critical_when_the_velocity_reaches_zone_d():
    t = AlarmTracker(AlarmPolicy())
    first = [c for c in (t.observe(vel(i, 3.0, anom=True)) for i in range(3)) if c]
    assert [(c.op, c.severity) for c in first] == [("raise", "warning")]
    later = [c for c in (t.observe(vel(3 + i, 12.0, anom=True)) for i in range(3)) if c]
    assert [(c.op, c.severity) for c in later] == [("update", "critical")]


def test_machine_classes_are_read_once_a_minute_and_follow_the_site(tmp_path):
    from edgefleet.service.machine_classes import MachineClasses
    from edgefleet.service.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "fleet.db")
    reads = []
    clock = [0.0]

    def read():
        reads.append(clock[0])
        return store.machine_classes()

    mc = MachineClasses(read, clock=lambda: clock[0])
    assert mc.of("pump-1") == "II"
    store.set_machine_class("IV", site="north")
    store.set_machine_class("I", device="fan-2")
    assert mc.of("fan-2") == "II"  # not re-read yet
    clock[0] = 61.0
    mc.saw_site("pump-1", "north")
    assert (mc.of("pump-1"), mc.of("fan-2"), mc.of("other")) == ("IV", "I", "II")
    assert reads == [0.0, 61.0]

    def broken():
        raise OSError("disk gone")
    bad = MachineClasses(broken, clock=lambda: 0.0)
    assert bad.of("x") == "II"


def res(device: str, boot: str, seq: int, ts: int, bad: bool) -> ResultRecord:
    return ResultRecord(device, boot, seq, ts, 2, 8.0 if bad else 0.5, 2.0, bad, 0, state="",
                        hi=4.0 if bad else 0.5, cls=0, hi_thr=1.5)


def test_a_burst_of_fresh_boot_ids_cannot_manufacture_alarms():
    """Replays of anomalous results under new boot ids (each a fresh dedupe key): once a device has
    started more than 3 boots in 10 minutes, none of them raises an alarm; an ordinary reboot before
    a real fault still does."""
    t = AlarmTracker(AlarmPolicy())
    for i in range(10):
        t.observe(res("m3", "b0", i, T0 + i * 1000, False))
    raised = []
    for b in range(6):  # six new boots within a minute, each three anomalous windows then five normal ones
        for j in range(8):
            c = t.observe(res("m3", f"r{b}", j, T0 + 20_000 + b * 8000 + j * 1000, j < 3))
            if c is not None and c.op == "raise":
                raised.append(b)
    assert t.boots_suspect("m3")
    assert raised == [0, 1, 2]  # the 4th new boot in 10 minutes and later: no alarm
    later = T0 + 20_000 + 6 * 8000 + 700_000  # the boots calm down: a new fault alarms again
    changes = [t.observe(res("m3", "r5", 100 + j, later + j * 1000, True)) for j in range(3)]
    assert [c.op for c in changes if c] == ["raise"]
    honest = AlarmTracker(AlarmPolicy())
    for i in range(5):
        honest.observe(res("m4", "b0", i, T0 + i * 1000, False))
    changes = [honest.observe(res("m4", "b1", j, T0 + 60_000 + j * 1000, True)) for j in range(5)]
    assert not honest.boots_suspect("m4")
    assert [c.op for c in changes if c] == ["raise"]


def test_the_fleet_failure_level_is_a_setting_ingest_uses():
    """EDGEFLEET_FAILURE_HI / serve --failure-hi: a fleet calibrated on its own failures sets its level;
    ingest's remaining life then runs to it (a lower level: a shorter life on the same rise)."""
    from edgefleet.service.config import load_settings
    from edgefleet.service.ingest import IngestService
    from edgefleet.service.store import open_store

    s = load_settings({"EDGEFLEET_FAILURE_HI": " 3.0, 4.0 ,5.5"})
    assert s.failure_levels() == (3.0, 4.0, 5.5) and load_settings({}).failure_levels() is None
    rng = np.random.default_rng(4)
    ratios = broken_stick(200, 120, 0.08, rng)
    lives = []
    for env in ({}, {"EDGEFLEET_FAILURE_HI": "3.0,4.0,5.5"}):
        svc = IngestService(load_settings(env), open_store(":memory:"))
        assert svc.tracker.policy.failure_hi == ((3.0, 4.0, 5.5) if env else AlarmPolicy().failure_hi)
        for i in range(170):
            svc.tracker.observe(rec(i, float(ratios[i])))
        lives.append(svc.tracker.health("m1").rul_s)
    assert lives[1] < lives[0]


@pytest.mark.parametrize("raw, why", [("4,5", "three numbers"), ("a,b,c", "three numbers"),
                                      ("5,4,9", "1 < low <= typical <= high"), ("0.5,2,3", "1 < low"),
                                      ("2,3,inf", "finite")])
def test_a_nonsense_failure_level_setting_is_refused_in_one_line(raw, why):
    from edgefleet.service.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=why.replace("<", "<")):
        load_settings({}, failure_hi=raw)


def test_serve_refuses_a_nonsense_failure_level_in_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-m", "edgefleet", "serve", "--broker", "mqtt://127.0.0.1:1", "--db",
                        str(tmp_path / "f.db"), "--failure-hi", "5,4,9"], cwd=repo, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "edgefleet: error: failure_hi '5,4,9': need 1 < low <= typical <= high, finite (a machine fails above its "
        "HI limit, ratio 1)"]
    assert not (tmp_path / "f.db").exists()  # nothing started
