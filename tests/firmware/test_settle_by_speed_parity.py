"""The settle test with the rows' speeds on the C node (ef_baseline_settled, ef_commission) against
the Python reference (edgefleet/runtime/baseline.py stationary; docs/baseline.md, "When commissioning
ends"): the C node stores each row's speed beside it and fits the same line per feature on the newer
half, from the same integer sums and float64 steps, so a machine visiting a class in stints at
slightly different speeds finishes with the same outcomes and the same record bytes on both, and a
real run-in still restarts both. Before the C node stored speeds it restarted where Python did not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.engine import Detector
from fw_helpers import REPO, run

MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector(load_artifact(MODEL))


def c_learn(fw, tmp: Path, rows: np.ndarray, rpms: np.ndarray, target: int) -> tuple[list[str], bytes]:
    """The host tool's commissioning (ef_commission_add per row, then finish): outcomes, record."""
    f, r, out = tmp / "rows.f32", tmp / "rpm.f32", tmp / "out.rec"
    np.ascontiguousarray(rows, "<f4").tofile(f)
    np.ascontiguousarray(rpms, "<f4").tofile(r)
    proc = run([fw.tool("ef_baseline"), "learn", MODEL, f, r, out, "--target", str(target), "--learned", "7"])
    return json.loads(proc.stdout)["outcomes"], out.read_bytes()


def py_learn(det: Detector, rows: np.ndarray, rpms: np.ndarray, target: int) -> tuple[list[str], bytes]:
    com = bl.Commissioner(rows.shape[1], target=target)
    outcomes = [com.add(x, float(r)) for x, r in zip(rows, rpms)]
    rec = com.finish(det.score_standardized, frontend=bl.frontend_crc(det.artifact.features.params), learned_ms=7)
    return outcomes, rec.to_bytes()


def windows(rng: np.random.Generator, n: int, rpms: np.ndarray, slope: float, trend: np.ndarray) -> np.ndarray:
    """Log band powers: band 0 moves with the speed by `slope` log10 units per unit of relative speed
    (a line near a band edge), band 1 by a tenth of it, bands 2-4 by `trend` (time), noise 0.02."""
    f = rng.normal(-4.0, 0.02, (rpms.size, n))
    rel = rpms.astype(np.float64) / 1500.0 - 1.0
    f[:, 0] += slope * rel
    f[:, 1] += 0.1 * slope * rel
    f[:, 2:5] += trend[:, None]
    return f.astype(np.float32)


def stints(rng: np.random.Generator, lengths: list[int], centres: list[float]) -> np.ndarray:
    """Stints in one class, each at its own speed wandering +-0.3 rpm (float32, as the node reads it)."""
    parts = [np.linspace(c - 3.0, c + 3.0, k) + rng.uniform(-0.3, 0.3, k) for k, c in zip(lengths, centres)]
    return np.concatenate(parts).astype(np.float32)


def both(fw, det, tmp: Path, rows: np.ndarray, rpms: np.ndarray, target: int) -> list[str]:
    c_out, c_rec = c_learn(fw, tmp, rows, rpms, target)
    py_out, py_rec = py_learn(det, rows, rpms, target)
    assert c_out == py_out
    assert c_rec == py_rec
    return py_out


def test_stints_at_wandering_speeds_finish_alike_without_a_restart(fw, det, tmp_path):
    """Two stints 0.7 % apart, a steep line: learned together by both (the C node without speeds
    took the first stint for run-in)."""
    rng = np.random.default_rng(11)
    r = stints(rng, [30, 40], [1497.0, 1505.0])
    rows = windows(rng, det.artifact.features.params.n_features, r, -40.0, np.zeros(r.size))
    out = both(fw, det, tmp_path, rows, r, 64)
    assert "not_stationary" not in out and out.count("learning") == 64


def test_a_run_in_at_wandering_speeds_still_restarts_both(fw, det, tmp_path):
    """A trend in time while the speed wanders over the same range (the line fitted and used):
    both restart the same windows and end with the same record."""
    rng = np.random.default_rng(12)
    i = np.arange(200)
    r = (1500.0 + 10.0 * np.sin(i / 3.0)).astype(np.float32)
    rows = windows(rng, det.artifact.features.params.n_features, r, -40.0, 0.02 * np.minimum(i, 60))
    assert bl.speed_slopes(bl.to_q10(rows[:32]).astype(np.int64), bl.speed_q(r[:32]))[0] != 0
    out = both(fw, det, tmp_path, rows, r, 32)
    assert out.count("not_stationary") >= 2


@pytest.mark.parametrize("target", [16, 32])
@pytest.mark.parametrize("seed", range(6))
def test_random_stints_slopes_and_trends_decide_alike(fw, det, tmp_path, seed, target):
    """Slopes from none to steep (some near four standard errors), stints at random speeds, a run-in
    or none, two speed classes: every outcome and the record the same."""
    rng = np.random.default_rng(100 + seed)
    n = det.artifact.features.params.n_features
    parts, trend = [], []
    for centre in (900.0, 1500.0):
        k = rng.integers(3, 6)
        r = stints(rng, list(rng.integers(10, 30, k)), list(centre + rng.uniform(-8, 8, k)))
        parts.append(r)
        trend.append(rng.choice([0.0, 0.01]) * np.minimum(np.arange(r.size), rng.integers(10, 60)))
    order = np.argsort(np.concatenate([np.arange(p.size) / p.size for p in parts]), kind="stable")
    r = np.concatenate(parts)[order]
    rows = windows(rng, n, r, rng.choice([0.0, -1.0, -3.0, -40.0]), np.concatenate(trend)[order])
    both(fw, det, tmp_path, rows, r, target)
