"""Alarms: k-of-n raise, m-normal clear, severity, trend and early warning."""

from __future__ import annotations

import math

import pytest

from edgefleet.protocol import ResultRecord
from edgefleet.service.alarms import (
    AlarmPolicy,
    AlarmTracker,
    ewma,
    fit_log_trend,
    health_state,
    k_of_n,
    next_severity,
    severity_for,
    time_to_threshold,
)

T0 = 1_767_225_600_000
THR = 0.05


def r(seq: int, score: float, device: str = "d1") -> ResultRecord:
    return ResultRecord(device, "0000000a", seq, T0 + 1000 * seq, 3, score, THR, score > THR, 400)


def feed(tracker: AlarmTracker, scores: list[float], start: int = 0, device: str = "d1"):
    return [(i + start, c) for i, s in enumerate(scores)
            if (c := tracker.observe(r(i + start, s, device))) is not None]


def test_pure_functions() -> None:
    p = AlarmPolicy()
    assert [severity_for(x, p) for x in (1.01, 1.99, 2.0, 4.9, 5.0, 50)] == \
        ["warning", "warning", "major", "major", "critical", "critical"]
    assert k_of_n([True, False, True, True], 3) and not k_of_n([True, False, True], 3)
    assert ewma([], 0.5) is None
    assert ewma([1.0, 3.0], 0.5) == 2.0 and ewma([4.0], 0.5, start=2.0) == 3.0
    assert health_state(True, None, 10) == "alarm"
    assert health_state(False, 5.0, 10) == "degrading" and health_state(False, 50.0, 10) == "ok"
    assert health_state(False, None, 10) == "ok"
    for bad in (dict(k=6, n=5), dict(m=0), dict(major_ratio=6.0), dict(ewma_alpha=0.0)):
        with pytest.raises(ValueError):
            AlarmPolicy(**bad)


def test_trend_fit_recovers_an_exponential_and_predicts_the_crossing() -> None:
    # score = 0.001 * exp(t / 100 s): crosses 0.05 at t = 100 * ln(50) s
    ts = [T0 + 1000 * i for i in range(60)]
    scores = [0.001 * math.exp(i / 100.0) for i in range(60)]
    tr = fit_log_trend(ts, scores)
    assert tr.slope_per_s == pytest.approx(0.01, rel=1e-9) and tr.r2 == pytest.approx(1.0)
    eta = time_to_threshold(tr, THR)
    assert eta == pytest.approx(100 * math.log(50) - 59, rel=1e-9)
    assert time_to_threshold(tr, THR, now_ms=ts[-1] + 10_000) == pytest.approx(eta - 10, rel=1e-9)
    assert time_to_threshold(tr, 0.0001) == 0.0  # already above
    flat = fit_log_trend(ts, [0.01] * 60)
    assert flat.slope_per_s == 0 and time_to_threshold(flat, THR) is None
    falling = fit_log_trend(ts, list(reversed(scores)))
    assert time_to_threshold(falling, THR) is None
    assert fit_log_trend(ts[:2], scores[:2]) is None
    assert fit_log_trend([T0] * 5, [0.1] * 5) is None


def test_k_of_n_raises_and_m_normal_clears() -> None:
    t = AlarmTracker(AlarmPolicy(k=3, n=5, m=4))
    # two anomalies in five windows: nothing
    assert feed(t, [0.01, 0.06, 0.01, 0.06, 0.01]) == []
    # the third within the last five raises
    changes = feed(t, [0.07], start=5)
    assert [(i, c.op, c.severity) for i, c in changes] == [(5, "raise", "warning")]
    # three normal windows do not clear, an anomaly resets the run, four do
    assert feed(t, [0.01, 0.01, 0.01, 0.06, 0.01, 0.01, 0.01], start=6) == []
    changes = feed(t, [0.01], start=13)
    assert [(i, c.op) for i, c in changes] == [(13, "clear")]
    assert changes[0][1].peak_score == 0.07
    # after clearing, it takes k fresh anomalies again
    assert feed(t, [0.06, 0.06], start=14) == []
    assert [c.op for _, c in feed(t, [0.06], start=16)] == ["raise"]


def test_severity_escalates_with_score_over_threshold() -> None:
    t = AlarmTracker(AlarmPolicy(k=2, n=3, m=3))
    changes = feed(t, [0.06, 0.07, 0.15, 0.15, 0.3, 0.3])  # median ratio of the window
    assert [(c.op, c.severity) for _, c in changes] == [("raise", "warning"), ("update", "major"),
                                                         ("update", "critical")]
    assert [i for i, _ in changes] == [1, 3, 5] and changes[-1][1].peak_score == 0.3


def test_severity_does_not_flap_at_a_band_bound() -> None:
    """A score hovering around 2x threshold raises 'major' once and stays there; it steps down
    to 'warning' only when clearly lower (below 2x / 1.25 = 1.6x)."""
    t = AlarmTracker(AlarmPolicy(k=1, n=1, m=3))
    hover = [0.095, 0.105, 0.098, 0.102, 0.097, 0.104, 0.099]  # 1.9x .. 2.1x threshold
    changes = feed(t, hover)
    assert [(c.op, c.severity) for _, c in changes] == [("raise", "warning"), ("update", "major")]
    low = feed(t, [0.085, 0.075], start=len(hover))  # 1.7x stays major, 1.5x steps down
    assert [(i, c.op, c.severity) for i, c in low] == [(8, "update", "warning")]
    p = AlarmPolicy()
    assert next_severity("critical", 4.5, p) == "critical" and next_severity("critical", 3.9, p) == "major"
    assert next_severity("warning", 5.0, p) == "critical" and next_severity("major", 1.0, p) == "warning"
    with pytest.raises(ValueError, match="deadband"):
        AlarmPolicy(severity_deadband=0.9)


def test_devices_are_independent_and_health_reports_degrading() -> None:
    t = AlarmTracker(AlarmPolicy(trend_min_points=20, horizon_s=3600))
    feed(t, [0.06] * 5, device="bad")
    feed(t, [0.001 * math.exp(i / 30) for i in range(60)], device="rising")
    feed(t, [0.01] * 60, device="steady")
    assert t.health("bad", T0 + 5000).state == "alarm"
    rising = t.health("rising")
    assert rising.state == "degrading" and 0 < rising.eta_s < 3600 and rising.slope_per_h == pytest.approx(120)
    steady = t.health("steady")
    assert steady.state == "ok" and steady.eta_s is None and steady.ewma_score == pytest.approx(0.01)
    assert t.health("nobody") is None


def test_prime_restores_state_without_emitting() -> None:
    history = [r(i, 0.06 if i >= 7 else 0.01) for i in range(10)]
    fresh = AlarmTracker()
    fresh.prime("d1", history, active_severity=None)
    # k of n already met in the restored window: the next anomaly raises at once
    assert fresh.observe(r(10, 0.06)).op == "raise"
    held = AlarmTracker(AlarmPolicy(m=3))
    held.prime("d1", [r(i, 0.06) for i in range(5)] + [r(5, 0.01), r(6, 0.01)], active_severity="warning")
    assert held.observe(r(7, 0.01)).op == "clear"  # two normal windows came from history


@pytest.mark.parametrize("noise", [0.03, 0.10])
def test_noise_on_a_flat_score_is_not_called_degrading(noise: float) -> None:
    """Healthy machines with random scatter must not light up amber (measured: ~45% did before)."""
    import random

    rnd = random.Random(7)
    t = AlarmTracker(AlarmPolicy())
    for d in range(300):
        feed(t, [0.01 * math.exp(rnd.gauss(0, noise)) for _ in range(150)], device=f"m{d}")
    degrading = sum(t.health(f"m{d}").state == "degrading" for d in range(300))
    assert degrading <= 3
    feed(t, [0.002 * math.exp(i / 40) for i in range(100)], device="failing")  # crosses in ~30 s
    assert t.health("failing").state == "degrading"


def test_speed_classes_at_different_levels_are_not_a_trend_but_a_rise_within_them_is():
    """A commissioned machine cycles between speeds whose windows sit at different shares of their
    thresholds; moving between them is no degradation. The fit gives each class its own level."""
    import random

    from edgefleet.protocol import ResultRecord
    from edgefleet.service.alarms import AlarmPolicy, AlarmTracker, fit_log_trend

    rng = random.Random(1)

    def run(growth: float) -> object:
        t = AlarmTracker(AlarmPolicy())
        for i in range(120):
            cls = (i // 40) % 3  # 40 windows at each speed, the newest at the highest level
            level = (0.15, 0.25, 0.45)[cls] * (1 + growth) ** i * rng.uniform(0.9, 1.1)
            t.observe(ResultRecord("m", "b", i, 1_800_000_000_000 + 1000 * i, 1, level, 1.0, False, 5,
                                   cls=cls, hi=None, hi_thr=None))
        return t.health("m", 1_800_000_000_000 + 1000 * 119)

    assert run(0.0).state == "ok"
    ts = list(range(0, 120_000, 1000))
    pooled = fit_log_trend(ts, [(0.15, 0.25, 0.45)[(i // 40) % 3] for i in range(120)])
    assert pooled.slope_per_s > 0 and pooled.t_stat > 4  # what a fit across classes would have said
    assert run(0.02).state == "degrading"  # a real rise, inside each class, is still seen


def test_a_flapping_machine_is_one_alarm_reopened_with_a_count(open_db):
    """Raised, cleared and raised again within the hold-off: the same alarm, not a new one to
    acknowledge; after the hold-off a new alarm."""
    from edgefleet.service.alarms import AlarmChange
    from edgefleet.service.store.sqlite import ALARM_HOLD_OFF_MS

    store = open_db()
    ch = lambda op, ts: AlarmChange(op, "fan-1", ts, "warning", 2.0, 1.0, 2.0)  # noqa: E731
    t = 1_800_000_000_000
    for k in range(3):
        store.apply_alarm_changes([ch("raise", t + k * 60_000), ch("clear", t + k * 60_000 + 30_000)], [])
    alarms = store.alarms()
    assert len(alarms) == 1 and alarms[0].reopened == 2 and not alarms[0].active
    store.apply_alarm_changes([ch("raise", t + 3 * 60_000 + ALARM_HOLD_OFF_MS)], [])
    assert len(store.alarms()) == 2 and len(store.alarms(active=True)) == 1
    store.close()
