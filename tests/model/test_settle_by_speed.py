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
