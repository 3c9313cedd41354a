"""The settle test with the rows' speeds on the C node (ef_baseline_settled, ef_commission) against
the Python reference (edgefleet/runtime/baseline.py stationary; docs/baseline.md, "When commissioning
ends"): the C node stores each row's speed beside it and fits the same line per feature on the newer
half, from the same integer sums and float64 steps, so a machine visiting a class in stints at
slightly different speeds finishes with the same outcomes and the same record bytes on both, and a
real run-in still restarts both. Before the C node stored speeds it restarted where Python did not.
A class full and unsettled whose two halves ran at speeds that do not overlap (bl.speeds_apart)
is kept whole on both when each half settles on its own (two steady stints, outcome "learning");
else it waits, its newer half dropped (outcome "speeds_apart", at most bl.MAX_WAITS times), then
restarts. Before the C node knew the wait it restarted there; before it tested each half it waited
where Python keeps both stints.
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


def py_trace(rows: np.ndarray, rpms: np.ndarray, target: int) -> tuple[list[str], int]:
    """Python's outcomes, and how many windows filled a class unsettled with its halves kept (halves
    apart, each settled on its own: the outcome is "learning" like any other)."""
    com = bl.Commissioner(rows.shape[1], target=target)
    outcomes, kept = [], 0
    for x, r in zip(rows, rpms):
        before = {id(a): len(a.rows) for a in com.classes}
        outcomes.append(com.add(x, float(r)))
        for a in com.classes:
            if (outcomes[-1] == "learning" and len(a.rows) == target and before.get(id(a), 0) == target - 1
                    and a.restarts < bl.MAX_RESTARTS and not bl.stationary(np.stack(a.rows), np.array(a.rpms))):
                kept += 1
    return outcomes, kept


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


def test_stints_apart_at_a_band_edge_keep_both_alike_instead_of_restarting(fw, det, tmp_path):
    """The demo's sim-0026 (docs/baseline.md): a first stint at 1572.8-1574.2 rpm, a newer one at
    1574.2-1575.0, then the speed wanders back to the first stint's. Band 0 climbs steeply across a
    band edge at 1574.0-1574.3 rpm and is flat either side (no line on the newer half's speeds
    finds it), no trend: not settled, the halves' speeds apart, but each half steady on its own, so
    both keep the class whole at its 64th window (they waited there before db3b359), never restarting."""
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
    assert "speeds_apart" not in out and "not_stationary" not in out
    assert out.count("learning") == 64 and py_trace(rows, r, 64)[1] == 1  # kept whole, unsettled, at the 64th


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
    assert py_trace(rows, r, 32)[1] == 0  # the run-in is in the older half: never kept as two stints


def stints_0026(cycles: int) -> np.ndarray:
    """The demo's sim-0026 in its fastest class (tests/model/test_settle_by_speed.py): a stint rising
    1572.8 -> 1574.8 rpm, one over 1574.2-1575.0 and back, one falling to 1572.8; repeated. The first
    32 windows run at 1572.8-1574.0 rpm, the next 32 at 1574.1-1575.0 (float32, as the node reads it)."""
    up = 1572.75 + 2.1 * (1 - np.cos(0.5 * np.pi * np.arange(43) / 42))
    hump = 1574.2 + 0.8 * np.sin(np.pi * np.arange(42) / 41)
    down = 1573.8 + 1.05 * np.cos(np.pi * np.arange(45) / 44)
    return np.tile(np.r_[up, hump, down], cycles).astype(np.float32)


def edge_rows(rng: np.random.Generator, n: int, rpms: np.ndarray, edge: float) -> np.ndarray:
    """Bands 0 and 4 step down by 0.2 log10 units (ten spreads) above `edge` rpm, flat either side
    (no straight line explains it), noise 0.02, no trend."""
    f = rng.normal(-4.0, 0.02, (rpms.size, n))
    f[:, [0, 4]] -= 0.2 * (rpms.astype(np.float64) > edge)[:, None]
    return f.astype(np.float32)


def test_two_steady_stints_apart_across_a_band_edge_are_kept_alike(fw, det, tmp_path):
    """The edge (1574.05 rpm) between the halves' speeds: the class is not settled and its halves are
    apart, but each half is steady on its own, so both keep the class whole at its 64th window
    without waiting or restarting, and write the same record (the C node before this waited there)."""
    r = stints_0026(3)
    rows = edge_rows(np.random.default_rng(5), det.artifact.features.params.n_features, r, 1574.05)
    q = bl.to_q10(rows[:64]).astype(np.int64)
    assert bl.speeds_apart(r[:64]) and not bl.stationary(q, r[:64])
    assert bl.stationary(q[:32], r[:32]) and bl.stationary(q[32:], r[32:64])
    out = both(fw, det, tmp_path, rows, r, 64)
    assert "speeds_apart" not in out and "not_stationary" not in out
    assert out.count("learning") == 64 and py_trace(rows, r, 64)[1] == 1


def test_a_stint_across_a_band_edge_in_the_older_half_waits_then_settles_alike(fw, det, tmp_path):
    """The edge (1573.3 rpm) inside the older half's speeds: that half is not steady on its own, so
    both wait (the newer half dropped) until the speeds come back, then settle, never restarting."""
    r = stints_0026(3)
    rows = edge_rows(np.random.default_rng(6), det.artifact.features.params.n_features, r, 1573.3)
    q = bl.to_q10(rows[:64]).astype(np.int64)
    assert bl.speeds_apart(r[:64]) and not bl.stationary(q[:32], r[:32])
    out = both(fw, det, tmp_path, rows, r, 64)
    assert out.count("speeds_apart") >= 1 and "not_stationary" not in out
    assert out.count("learning") == 64 + 31 * out.count("speeds_apart")  # a wait drops its own row and 31


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


def test_the_random_cases_keep_wait_and_restart(det):
    """The random cases above exercise every branch of an unsettled class (Python alone: cheap):
    some keep both stints of halves apart, some wait ("speeds_apart"), some restart, some wait and
    restart."""
    n = det.artifact.features.params.n_features
    seen, kept = [], 0
    for target in (16, 32):
        for seed in range(6):
            rows, r = random_case(n, seed)
            out, k = py_trace(rows, r, target)
            kept += k
            seen.append(("speeds_apart" in out, "not_stationary" in out))
    assert kept > 0
    assert (True, False) in seen and (False, True) in seen and (True, True) in seen
