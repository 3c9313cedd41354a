"""Writes golden.json: feature rows (Q10) and speeds -> the baseline record bytes (docs/baseline.md).

Both languages check it: tests/model/test_baseline.py (Python) and the C node's baseline test.
Regenerate after changing the baseline rules or the shipped fleet-default model:

    .venv/bin/python firmware/testdata/baseline/generate.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.engine import Detector

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
LEARNED_MS = 1_765_000_000_000


def cases() -> list[dict]:
    """Three machines: rpm-keyed with three classes (one with a dead band: zero spread), one without
    a speed input, one with an odd window count and a window in a fourth speed that is too short."""
    rng = np.random.default_rng(2026)
    n = 32
    out = []
    base = rng.uniform(-7.0, -2.0, n)
    rows, rpms = [], []
    for k, rpm in enumerate((900.0, 1200.0, 1790.0)):
        level = base + 0.4 * k + rng.normal(0, 0.3, n)
        for _ in range(20 + 3 * k):
            f = level + rng.normal(0, 0.15, n) * rng.uniform(0.5, 1.5, n)
            if k == 1:
                f[5] = level[5]  # a band with zero spread: the floor applies
            if rng.random() < 0.1:
                f += rng.normal(0, 2.0, n)  # a few outliers: median and MAD ignore them
            rows.append(f)
            rpms.append(rpm * (1 + rng.uniform(-0.02, 0.02)))
    out.append({"name": "three_speeds", "target": 64, "rows": rows, "rpm": rpms})
    rows = [base + rng.normal(0, 0.2, n) for _ in range(24)]
    out.append({"name": "no_speed_input", "target": 64, "rows": rows, "rpm": [0.0] * 24})
    rows = [base + rng.normal(0, 0.2, n) for _ in range(21)] + [base + 1.0 for _ in range(5)]
    out.append({"name": "odd_count_and_short_class", "target": 21, "rows": rows,
                "rpm": [1500.0] * 21 + [3000.0] * 5})
    return out


def run(case: dict, det: Detector) -> dict:
    params = det.artifact.features.params
    com = bl.Commissioner(params.n_bands, target=case["target"])
    q_rows = [bl.to_q10(np.asarray(r, np.float32)) for r in case["rows"]]
    rpms = [float(np.float32(r)) for r in case["rpm"]]  # what a C node holds: float32
    outcomes = [com.add(q.astype(np.float32) / np.float32(bl.Q), r) for q, r in zip(q_rows, rpms)]
    b = com.finish(det.score_standardized, frontend=bl.frontend_crc(params), learned_ms=LEARNED_MS)
    return {"name": case["name"], "target": case["target"], "rows_q10": [q.tolist() for q in q_rows],
            "rpm": rpms, "outcomes": outcomes,
            "record_hex": b.to_bytes().hex(), "summary": b.summary()}


def main() -> None:
    det = Detector(load_artifact(MODEL))
    golden = {"model": str(MODEL.relative_to(REPO)), "learned_ms": LEARNED_MS,
              "cases": [run(c, det) for c in cases()]}
    (HERE / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    for c in golden["cases"]:
        print(c["name"], len(c["record_hex"]) // 2, "bytes", [k["n"] for k in c["summary"]["classes"]])


if __name__ == "__main__":
    main()
