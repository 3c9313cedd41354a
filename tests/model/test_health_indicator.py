"""The health indicator rises with damage where the int8 score saturates (docs/baseline.md): on the
simulator's outer-race fault at 21 severities, after commissioning on the healthy machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from device_sim.physics import Fault, make_machines, synthesize, vary_machines, with_faults
from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import load_artifact
from edgefleet.runtime.engine import Detector

MODEL = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-default" / "model.efm"


def test_hi_is_monotonic_in_severity_where_the_score_saturates():
    det = Detector(load_artifact(MODEL))
    params = det.artifact.features.params
    rng = np.random.default_rng(0)
    machines = vary_machines(make_machines(3, rng, bearing=None), rng)
    fs, n = 12000.0, 960
    severity = np.linspace(0.0, 1.0, 21)
    for i in range(3):
        one = machines.take([i])
        rpm = float(one.rpm[0])
        com = bl.Commissioner(params.n_bands)
        for f in det.features(synthesize(one.take(np.zeros(64, int)), rng.uniform(0, 1000, 64), n, fs, rng), fs):
            com.add(f, rpm)
        base = com.finish(det.score_standardized, frontend=0, learned_ms=0)
        hi, score = [], []
        for s in severity:
            bad = with_faults(one, [0], Fault.OUTER_RACE, onset_s=-1.0, ramp_s=1e-6, peak_g=4.0 * s + 1e-9)
            x = synthesize(bad.take(np.zeros(32, int)), rng.uniform(0, 1000, 32), n, fs, rng)
            r = bl.score_windows(base, det.features(x, fs), np.full(32, rpm), det.score_standardized)
            hi.append(float(np.median(r.hi)))
            score.append(float(np.median(r.score)))
        assert spearmanr(severity, hi).correlation >= 0.98, (i, hi)
        assert hi[-1] > 1.3 * hi[10]  # still rising over the second half of the damage range ...
        assert score[-1] < 1.1 * score[10]  # ... where the model's score has flattened out
