"""Cost of the simulator's arithmetic per tick: physics, features, one int8 engine call.

    .venv/bin/python benchmarks/sim_physics.py [--nodes 2000]

Prints milliseconds per stage for all nodes' windows (mixed 12.8/25.6/12 kHz sensors)
and writes benchmarks/results/sim_physics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from device_sim.physics import synthesize  # noqa: E402
from device_sim.plant import make_plant  # noqa: E402
from edgefleet.runtime.artifact import load_artifact  # noqa: E402
from edgefleet.commands.sim import default_model  # noqa: E402
from edgefleet.runtime.engine import Detector  # noqa: E402
from edgefleet.runtime.features import log_band_power, plan, quantize, standardize  # noqa: E402


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=2000)
    args = ap.parse_args()
    model = default_model()
    a = load_artifact(model / "model.efm")
    det = Detector(a)
    fsec = a.features
    plant = make_plant(args.nodes, n_faulty=args.nodes // 100, seed=0, fault_onset_s=(0, 1))
    rng = np.random.default_rng(0)
    fs_of = np.array([n.fs for n in plant.nodes])
    groups = {fs: np.flatnonzero(fs_of == fs) for fs in np.unique(fs_of)}
    stages = {"physics": 0.0, "features": 0.0, "quantize": 0.0}
    qs = []
    for fs, rows in groups.items():
        n = plan(fsec.params, float(fs)).n_samples
        m = plant.machines.take(rows)
        stages["physics"] += best_of(lambda: synthesize(m, 100.0, n, float(fs), rng))
        x = synthesize(m, 100.0, n, float(fs), rng)
        stages["features"] += best_of(lambda: log_band_power(x, float(fs), fsec.params))
        f = log_band_power(x, float(fs), fsec.params)
        stages["quantize"] += best_of(lambda: quantize(standardize(f, fsec.mean, fsec.inv_std),
                                                        a.input_scale, a.input_zero_point))
        qs.append(quantize(standardize(f, fsec.mean, fsec.inv_std), a.input_scale, a.input_zero_point))
    q = np.concatenate(qs)
    stages["engine"] = best_of(lambda: det.engine.score(q, det.engine.infer(q)))
    total = sum(stages.values())
    result = {"benchmark": "sim_physics", "nodes": args.nodes,
              "rates_hz": {str(k): int(v.size) for k, v in groups.items()},
              "ms": {k: round(v * 1e3, 2) for k, v in stages.items()}, "total_ms": round(total * 1e3, 2),
              "us_per_window": round(total * 1e6 / args.nodes, 2),
              "load_average_1m": round(os.getloadavg()[0], 2), "model": str(model)}
    print(json.dumps(result, indent=1))
    out = REPO / "benchmarks" / "results" / "sim_physics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
