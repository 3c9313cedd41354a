"""The commissioning baseline (docs/baseline.md): the golden record bytes, robust statistics,
every way a record can be broken, class lookup, and what it does for an unseen machine (CWRU)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.engine import Detector

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "firmware" / "testdata" / "baseline" / "golden.json"
FLEET = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"


@pytest.fixture(scope="module")
def det() -> Detector:
    return Detector(load_artifact(FLEET))


def learn(det: Detector, case: dict) -> tuple[bl.Baseline, list[str]]:
    params = det.artifact.features.params
    com = bl.Commissioner(params.n_bands, target=case["target"])
    outcomes = [com.add(np.asarray(q, np.float32) / np.float32(bl.Q), r) for q, r in zip(case["rows_q10"], case["rpm"])]
    return com.finish(det.score_standardized, frontend=bl.frontend_crc(params),
                      learned_ms=json.loads(GOLDEN.read_text())["learned_ms"]), outcomes


@pytest.mark.parametrize("name", [c["name"] for c in json.loads(GOLDEN.read_text())["cases"]])
def test_golden_record_bytes(det, name):
    """The bytes the C node must produce too (firmware/testdata/baseline/generate.py wrote them)."""
    case = next(c for c in json.loads(GOLDEN.read_text())["cases"] if c["name"] == name)
    b, outcomes = learn(det, case)
    assert b.to_bytes().hex() == case["record_hex"]
    assert outcomes == case["outcomes"]
    again = bl.Baseline.from_bytes(bytes.fromhex(case["record_hex"]), frontend_crc=b.frontend_crc, n_features=32)
    assert again.to_bytes() == b.to_bytes() and again.summary() == case["summary"]


def test_median_and_mad_ignore_outliers_and_a_dead_band_gets_the_floor():
    rng = np.random.default_rng(1)
    rows = rng.normal(-4.0, 0.1, (64, 8))
    rows[:5] += 6.0  # five wild windows out of 64
    rows[:, 3] = -5.0  # a band that never moves
    center, spread, floored = bl.robust_stats(bl.to_q10(rows))
    assert np.all(np.abs(center / bl.Q + 4.0)[[0, 1, 2, 4]] < 0.05)
    assert np.all(np.abs(spread / bl.Q - 0.1)[[0, 1, 2, 4]] < 0.04)  # 1.4826 MAD ~ sigma
    assert spread[3] == bl.SPREAD_FLOOR_Q and floored == 1


def test_integer_median_rounds_down_on_even_counts():
    assert bl.median_q(np.array([1, 2])) == 1 and bl.median_q(np.array([-2, -1])) == -2
    assert bl.median_q(np.array([5, 1, 3])) == 3


def test_q10_rounds_half_away_from_zero_and_refuses_nan():
    assert bl.to_q10(np.array([0.5 / 1024, -0.5 / 1024, 1.0], np.float32)).tolist() == [1, -1, 1024]
    with pytest.raises(bl.BaselineError, match="non-finite"):
        bl.to_q10(np.array([np.nan]))


@pytest.fixture(scope="module")
def record(det) -> bytes:
    case = json.loads(GOLDEN.read_text())["cases"][0]
    return bytes.fromhex(case["record_hex"])


@pytest.mark.parametrize("breakage, reason", [
    (lambda r: r[:-1], "bytes"),
    (lambda r: b"XXXX" + r[4:], "magic"),
    (lambda r: r[:4] + struct.pack("<H", 9) + r[6:], "version"),
    (lambda r: r[:40] + bytes([r[40] ^ 1]) + r[41:], "CRC"),
    (lambda r: r[:10], "shorter"),
])
def test_a_broken_record_is_refused_with_its_reason(record, breakage, reason):
    with pytest.raises(bl.BaselineError, match=reason):
        bl.Baseline.from_bytes(breakage(record))


def test_every_single_byte_flip_is_caught(record):
    for i in range(len(record)):
        bad = bytearray(record)
        bad[i] ^= 0x40
        with pytest.raises(bl.BaselineError):
            bl.Baseline.from_bytes(bytes(bad))


def test_a_record_for_another_front_end_or_width_is_refused(det, record):
    crc = bl.frontend_crc(det.artifact.features.params)
    with pytest.raises(bl.BaselineError, match="front end"):
        bl.Baseline.from_bytes(record, frontend_crc=crc ^ 1)
    with pytest.raises(bl.BaselineError, match="features"):
        bl.Baseline.from_bytes(record, frontend_crc=crc, n_features=16)


def test_class_lookup_by_speed(record):
    b = bl.Baseline.from_bytes(record)
    assert [round(c.rpm_lo) for c in b.classes] == [855, 1140, 1701] or len(b.classes) == 3
    assert b.class_for(1790.0) == 2 and b.class_for(905.0) == 0
    assert b.class_for(1400.0) is None  # between classes: uncommissioned
    assert b.class_for(None) is None  # rpm-keyed baseline, no speed: uncommissioned
    any_speed = bl.Baseline(b.frontend_crc, 0, (bl.ClassBaseline(0, 0, 20, 1.0, 1.0, b.classes[0].center,
                                                                 b.classes[0].spread),), 32)
    assert any_speed.class_for(None) == 0 and any_speed.class_for(3000.0) == 0


def test_commissioner_named_outcomes(det):
    com = bl.Commissioner(32, target=2)
    f = np.zeros(32, np.float32) - 3
    assert com.add(np.full(32, np.nan), 1000.0) == "nonfinite"
    assert [com.add(f, 1000.0) for _ in range(3)] == ["learning", "learning", "class_full"]
    for k in range(bl.MAX_CLASSES - 1):
        com.add(f, 2000.0 * 1.2 ** k)
    assert com.add(f, 1e5) == "class_limit"
    only = bl.Commissioner(32, only_rpm=1500.0)
    assert only.add(f, 3000.0) == "other_class" and only.add(f, 1510.0) == "learning"
    with pytest.raises(bl.BaselineError, match="too few windows"):
        only.finish(det.score_standardized, frontend=0, learned_ms=0)


def test_cwru_commissioned_versus_as_shipped(det, cwru_dir):
    """fleet-default never saw CWRU: as shipped it flags every normal window; commissioned on the
    first half of the normal recording it separates every fault file and flags no held-out window."""
    from edgefleet.toolchain.datasets import load_folder
    from edgefleet.toolchain.evaluation import evaluate, evaluate_commissioned

    recs = load_folder(cwru_dir)
    plain = evaluate(det.artifact, None, recs)
    normal = next(f for f in plain["per_file"] if f["label"] == "normal")
    assert normal["anomaly_rate"] > 0.9  # every machine would alarm at once
    ev = evaluate_commissioned(det.artifact, recs, fraction=0.5, folder_name="cwru")
    m = ev["machines"]["cwru"]
    assert m["auc_int8"] >= 0.99 and m["false_alarm_rate"] == 0.0 and m["detection_rate"] > 0.95
    assert min(ev["by_label"].values()) >= 0.99 and ev["uncommissioned_windows"] == 0


def test_a_class_still_moving_is_not_finished_until_it_settles():
    """Run-in (or a fault starting while commissioning) drifts the features: the class is not taken
    as learned; its older half is dropped and learning goes on until the halves agree."""
    rng = np.random.default_rng(3)
    com = bl.Commissioner(8, target=32)
    outcomes = []
    for i in range(200):
        drift = 0.02 * min(i, 60)  # settles after 60 windows
        outcomes.append(com.add(rng.normal(-4.0 + drift, 0.05, 8).astype(np.float32), 1500.0))
    assert outcomes.count("not_stationary") >= 2 and com.done() and com.unsettled() == []
    assert bl.stationary(np.stack(com.classes[0].rows))
    forever = bl.Commissioner(8, target=32)
    for i in range(32 * (bl.MAX_RESTARTS + 3)):
        forever.add(np.full(8, -4.0 + 0.01 * i, np.float32), 1500.0)
    assert forever.done() and forever.unsettled() == [1500.0]  # finished anyway, and flagged


def test_drift_follows_healthy_windows_slowly_and_never_beyond_its_cap():
    spread = np.full(4, 100, np.int16)
    origin = np.zeros(4, np.int16)
    cls = bl.ClassBaseline(0, 0, 64, 1.0, 2.0, origin.copy(), spread)
    healthy = np.full((8, 4), 150, np.int16)  # 1.5 spreads away: more than the cap allows
    day = bl.drift(cls, origin, healthy, 86400.0)
    assert np.all(day.center == 50)  # a third of the way in a day (time constant 3 days)
    for _ in range(30):
        day = bl.drift(day, origin, healthy, 86400.0)
    assert np.all(day.center == int(bl.DRIFT_CAP * 100))  # never more than the cap from commissioning
    assert bl.drift(cls, origin, healthy, 0.0) is cls and bl.drift(cls, origin, healthy[:0], 60.0) is cls
