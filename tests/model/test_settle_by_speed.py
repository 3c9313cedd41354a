"""The settle test tells a trend in time from a class visited in stints at different speeds.

A class is a +-5 % speed band. A machine on a schedule visits it in stints, each at a slightly
different speed (a slow speed wander), and a line near a band edge moves that band's power with
the speed. Comparing the older half of the rows with the newer then compares one stint's speed
with another's; the old test took that for run-in and dropped the older stint, and the class was
learned without part of its own speeds (the demo's healthy sim-0035 alarmed at its first stint's
speed all hour: docs/baseline.md, "When commissioning ends").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.engine import Detector

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector(load_artifact(REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"))


def window(rng: np.random.Generator, n: int, rpm: float, t: float = 0.0) -> np.ndarray:
    """Log band powers whose band 0 falls steeply with speed (a line leaving it across an edge):
    -40 log10 units per unit of relative speed, 0.4 over 1 %; `t` adds a trend in time."""
    f = rng.normal(-4.0, 0.02, n)
    f[0] += -40.0 * (rpm / 1500.0 - 1.0)
    f[1:4] += t
    return f.astype(np.float32)


def stints(rng: np.random.Generator) -> list[float]:
    """Two stints in one class, the speed wandering inside each (as the demo's machines do): the
    first at 1494-1500 rpm, the second at 1500-1508 (0.9 % apart at most, one class)."""
    return ([float(x) for x in np.linspace(1494.0, 1500.0, 30) + rng.uniform(-0.3, 0.3, 30)]
            + [float(x) for x in np.linspace(1500.0, 1508.0, 40) + rng.uniform(-0.3, 0.3, 40)])


def test_stints_at_two_speeds_in_one_class_are_learned_together(det):
    """No restart, and once learned the class judges windows at either stint's speeds normal.
    Dropping the older stint (the old test) made the windows at its speeds anomalies."""
    n = det.artifact.features.params.n_features
    rng = np.random.default_rng(1)
    com = bl.Commissioner(n, target=64)
    outcomes = [com.add(window(rng, n, r), r) for r in stints(rng)]
    assert "not_stationary" not in outcomes and com.done()
    b = com.finish(det.score_standardized, frontend=0, learned_ms=0)
    assert len(b.classes) == 1
    later = stints(rng) * 3
    judged = bl.score_windows(b, np.stack([window(rng, n, r) for r in later]), np.array(later),
                              det.score_standardized)
    assert (judged.cls == 0).all()
    assert judged.anom.mean() <= 0.02, f"{judged.anom.mean():.2%} of healthy windows anomalous"


def test_a_trend_at_wandering_speeds_still_restarts(det):
    """Run-in while the speed wanders over the same range in both halves: the rows at shared speeds
    still differ, so the class is not taken as learned until it settles."""
    n = det.artifact.features.params.n_features
    rng = np.random.default_rng(2)
    com = bl.Commissioner(n, target=32)
    outcomes = []
    for i in range(200):
        r = 1500.0 + 10.0 * np.sin(i / 3.0)  # +-0.7 %, both halves see every speed
        outcomes.append(com.add(window(rng, n, r, t=0.02 * min(i, 60)), r))
    assert outcomes.count("not_stationary") >= 2 and com.done() and com.unsettled() == []


def test_the_speed_effect_is_learned_from_the_newer_half():
    """A step in time that the newer half's own speed moves do not explain stays a step: the speed's
    effect is fitted on the newer half only, so run-in in the older half cannot be fitted away."""
    rng = np.random.default_rng(4)
    r = 1500.0 + rng.uniform(-5.0, 5.0, 64)
    rows = (np.where(np.arange(64)[:, None] < 32, -3000, -4000) + rng.normal(0, 20, (64, 4))).astype(np.int64)
    assert not bl.stationary(rows) and not bl.stationary(rows, r)
    # the same step where the newer half shows that the feature follows the speed: explained
    r2 = np.r_[np.full(32, 1490.0), np.linspace(1495.0, 1505.0, 32)]
    follows = np.rint(-4000 - 100.0 * (r2 - 1500.0))[:, None] + rng.normal(0, 20, (64, 4))
    assert not bl.stationary(follows.astype(np.int64)) and bl.stationary(follows.astype(np.int64), r2)
    # one speed throughout (a node at a constant speed, the C node's test cases): the old test exactly
    assert bl.stationary(rows[32:], np.full(32, 1500.0)) == bl.stationary(rows[32:])
    assert not bl.stationary(rows, np.full(64, 1500.0))


def edge_window(rng: np.random.Generator, n: int, rpm: float, edge: float, t: float = 0.0) -> np.ndarray:
    """Bands 0 and 4 hold lines that leave them across band edges at `edge` rpm: their power steps
    down by 0.2 log10 units (ten spreads) there, flat on either side (no straight line explains it)."""
    f = rng.normal(-4.0, 0.02, n)
    f[[0, 4]] -= 0.2 * (rpm > edge)
    f[1:4] += t
    return f.astype(np.float32)


def stints_0026(cycles: int) -> np.ndarray:
    """The demo's sim-0026 in its fastest class (its speeds during commissioning, offline): a stint
    rising 1572.8 -> 1574.8 rpm, one over 1574.2-1575.0 and back, one falling to 1572.8; repeated.
    The first 32 windows run at 1572.8-1574.0 rpm, the next 32 at 1574.1-1575.0."""
    up = 1572.75 + 2.1 * (1 - np.cos(0.5 * np.pi * np.arange(43) / 42))
    hump = 1574.2 + 0.8 * np.sin(np.pi * np.arange(42) / 41)
    down = 1573.8 + 1.05 * np.cos(np.pi * np.arange(45) / 44)
    return np.tile(np.r_[up, hump, down], cycles)


def learn_and_judge(det: Detector, edge: float, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Commission on sim-0026's speeds with a band edge at `edge`, then judge five more cycles of them:
    the outcomes, and the share of anomalous windows below and above the edge."""
    n = det.artifact.features.params.n_features
    rng = np.random.default_rng(seed)
    speeds = stints_0026(3)
    assert bl.speeds_apart(speeds[:64])
    com = bl.Commissioner(n, target=64)
    outcomes = []
    for r in speeds:
        outcomes.append(com.add(edge_window(rng, n, float(r), edge), float(r)))
        if com.done():
            break
    b = com.finish(det.score_standardized, frontend=0, learned_ms=0)
    later = stints_0026(5)
    judged = bl.score_windows(b, np.stack([edge_window(rng, n, float(r), edge) for r in later]), later,
                              det.score_standardized)
    low = later <= edge
    assert low.sum() > 100 and (~low).sum() > 100
    return outcomes, judged.anom[low].mean(), judged.anom[~low].mean()


def test_two_steady_stints_at_speeds_that_do_not_overlap_are_learned_together(det):
    """The older half ran at 1572.8-1574.0 rpm, the newer at 1574.1-1575.0, a band edge between them:
    the settle test cannot tell the edge from a run-in, and dropping the older half (the old rule)
    left a class that judged every window below the edge anomalous. Each half is steady on its own,
    so the class keeps both, without a restart."""
    outcomes, low, high = learn_and_judge(det, 1574.05, 5)
    assert "not_stationary" not in outcomes and "speeds_apart" not in outcomes and len(outcomes) == 64
    assert low <= 0.02 and high <= 0.02, f"{low:.1%} below the edge, {high:.1%} above anomalous"


def test_a_stint_across_a_band_edge_waits_for_its_speeds_to_return(det):
    """The edge inside the older half's speeds (1573.3 rpm): that half is not steady on its own, so
    the class drops its newer half and waits until the speeds come back (the third stint falls
    through the edge), then learns both sides of it."""
    outcomes, low, high = learn_and_judge(det, 1573.3, 6)
    assert "speeds_apart" in outcomes and "not_stationary" not in outcomes
    assert low <= 0.02 and high <= 0.02, f"{low:.1%} below the edge, {high:.1%} above anomalous"


def test_a_run_in_before_a_speed_step_still_restarts_after_its_waits(det):
    """A run-in at one speed, then the load moves the speed out of its range for good: the class
    waits MAX_WAITS times for the older speeds, then drops the run-in as before, and the class
    learned is the settled machine's."""
    n = det.artifact.features.params.n_features
    rng = np.random.default_rng(6)
    com = bl.Commissioner(n, target=32)
    outcomes = []
    for i in range(600):
        r = 1500.0 + (0.0 if i < 16 else 20.0) + rng.uniform(-0.5, 0.5)
        outcomes.append(com.add(window(rng, n, r, t=0.3 * max(0.0, 1.0 - i / 24.0)), r))
        if com.done():
            break
    assert outcomes.count("speeds_apart") == bl.MAX_WAITS
    assert outcomes.index("not_stationary") > max(i for i, o in enumerate(outcomes) if o == "speeds_apart")
    b = com.finish(det.score_standardized, frontend=0, learned_ms=0)
    settled = bl.to_q10(np.stack([window(rng, n, 1520.0) for _ in range(64)]))
    assert np.abs(b.classes[0].center[1:4].astype(int) - np.median(settled[:, 1:4], axis=0)).max() < 30


def test_speeds_apart_counts_rows_inside_the_other_half_range():
    """Halves that share their speeds (a step in the middle of the newer half, a wander over both)
    are compared as before; only halves with under a quarter of the rows in the other's range wait."""
    assert not bl.speeds_apart(np.r_[np.full(32, 1500.0), np.full(16, 1500.0), np.full(16, 1510.0)])
    assert not bl.speeds_apart(1500.0 + 5.0 * np.sin(np.arange(64) / 3.0))
    assert bl.speeds_apart(np.r_[np.full(32, 1500.0), np.full(32, 1510.0)])
    assert bl.speeds_apart(np.r_[np.linspace(1500, 1501, 32), np.linspace(1500.9, 1502, 32)])
