"""The settle test with the rows' speeds on the C node (ef_baseline_settled, ef_commission) against
the Python reference (edgefleet/runtime/baseline.py stationary; docs/baseline.md, "When commissioning
ends"): the C node stores each row's speed beside it and fits the same line per feature on the newer
half, from the same integer sums and float64 steps, so a machine visiting a class in stints at
slightly different speeds finishes with the same outcomes and the same record bytes on both, and a
real run-in still restarts both. Before the C node stored speeds it restarted where Python did not.
A class full and unsettled whose two halves ran at speeds that do not overlap (bl.speeds_apart)
waits on both instead, its newer half dropped (outcome "speeds_apart", at most bl.MAX_WAITS times);
before the C node knew the wait it restarted there.
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


def test_stints_apart_at_a_band_edge_wait_alike_instead_of_restarting(fw, det, tmp_path):
    """The demo's sim-0026 (docs/baseline.md): a first stint at 1572.8-1574.2 rpm, a newer one at
    1574.2-1575.0, then the speed wanders back to the first stint's. Band 0 climbs steeply across a
    band edge at 1574.0-1574.3 rpm and is flat either side (no line on the newer half's speeds
    finds it), no trend: not settled, the halves' speeds apart, so both wait (the newer half
    dropped) and then finish with the first stint's speeds, never restarting."""
    rng = np.random.default_rng(26)
    r = np.concatenate([np.linspace(1572.8, 1574.2, 32), np.linspace(1574.2, 1575.0, 32),
                        np.linspace(1572.8, 1574.2, 40)]) + rng.uniform(-0.05, 0.05, 104)
    r = r.astype(np.float32)
    f = rng.normal(-4.0, 0.02, (r.size, det.artifact.features.params.n_features))
    edge = np.clip((r.astype(np.float64) - 1574.0) / 0.3, 0.0, 1.0)
    f[:, 0] += 0.1 * edge
    f[:, 1] += 0.01 * edge
    rows = f.astype(np.float32)
    assert bl.speeds_apart(r[:64])
    assert not bl.stationary(bl.to_q10(rows[:64]).astype(np.int64), r[:64])
    out = both(fw, det, tmp_path, rows, r, 64)
    assert out.index("speeds_apart") == 63 and "not_stationary" not in out
    assert out.count("learning") == 63 + 32  # the 64th waits (its row dropped with the newer half), 32 more


def test_a_run_in_across_a_speed_step_waits_max_waits_then_restarts_alike(fw, det, tmp_path):
    """A real run-in (a trend in time) while the speed steps from 1500 to 1508 rpm at the class's
    half and stays there: the halves' speeds apart, both wait bl.MAX_WAITS times for 1500 rpm to
    return, then restart as before (the older half dropped), with the same record."""
    rng = np.random.default_rng(27)
    i = np.arange(240)
    r = (np.where(i < 16, 1500.0, 1508.0) + rng.uniform(-0.3, 0.3, i.size)).astype(np.float32)
    rows = windows(rng, det.artifact.features.params.n_features, r, -40.0, 0.02 * np.minimum(i, 150))
    assert bl.speeds_apart(r[:32])
    out = both(fw, det, tmp_path, rows, r, 32)
    decided = [o for o in out if o in ("speeds_apart", "not_stationary")]
    assert decided[:bl.MAX_WAITS + 1] == ["speeds_apart"] * bl.MAX_WAITS + ["not_stationary"]
    assert out.count("speeds_apart") == bl.MAX_WAITS


def random_case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Slopes from none to steep (some near four standard errors), stints at random speeds, a run-in
    or none, two speed classes: rows and speeds."""
    rng = np.random.default_rng(100 + seed)
    parts, trend = [], []
    for centre in (900.0, 1500.0):
        k = rng.integers(3, 6)
        r = stints(rng, list(rng.integers(10, 30, k)), list(centre + rng.uniform(-8, 8, k)))
        parts.append(r)
        trend.append(rng.choice([0.0, 0.01]) * np.minimum(np.arange(r.size), rng.integers(10, 60)))
    order = np.argsort(np.concatenate([np.arange(p.size) / p.size for p in parts]), kind="stable")
    r = np.concatenate(parts)[order]
    return windows(rng, n, r, rng.choice([0.0, -1.0, -3.0, -40.0]), np.concatenate(trend)[order]), r


@pytest.mark.parametrize("target", [16, 32])
@pytest.mark.parametrize("seed", range(6))
def test_random_stints_slopes_and_trends_decide_alike(fw, det, tmp_path, seed, target):
    """Every outcome and the record the same."""
    rows, r = random_case(det.artifact.features.params.n_features, seed)
    both(fw, det, tmp_path, rows, r, target)


def test_the_random_cases_wait_and_restart(det):
    """The random cases above exercise both branches of an unsettled class (Python alone: cheap):
    some wait ("speeds_apart"), some restart, some do both."""
    n = det.artifact.features.params.n_features
    seen = []
    for target in (16, 32):
        for seed in range(6):
            rows, r = random_case(n, seed)
            com = bl.Commissioner(n, target=target)
            out = [com.add(x, float(v)) for x, v in zip(rows, r)]
            seen.append(("speeds_apart" in out, "not_stationary" in out))
    assert (True, False) in seen and (False, True) in seen and (True, True) in seen
