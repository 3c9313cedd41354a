"""What the simulated node's per-window sensor check costs the fleet simulator (device_sim/fleet.py
`score_windows`: physics, features, one engine call, and now `sensor_check.check_windows` on every window).

    .venv/bin/python benchmarks/node_sensor_check.py [--nodes 2000] [--repeat 5]

Times `score_windows` for all nodes' windows (12 kHz, the shipped fleet model) with the check and with it
replaced by a no-op, medians of --repeat passes, and writes benchmarks/results/node_sensor_check.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import device_sim.fleet as fleet  # noqa: E402
from benchmarks._report import write_report  # noqa: E402
from device_sim.plant import make_plant  # noqa: E402
from edgefleet.runtime.artifact import load_artifact  # noqa: E402
from edgefleet.runtime.engine import Detector  # noqa: E402

MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"


class _NoCheck:
    def __init__(self, windows, limits) -> None:
        self.outcome = np.zeros(len(windows), np.int8)


def median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    if a.nodes < 1 or a.repeat < 1:
        print("error: --nodes and --repeat must be at least 1", file=sys.stderr)
        return 2
    det = Detector(load_artifact(MODEL))
    plant = make_plant(a.nodes, seed=3, rates=(12000.0,))
    rows = np.arange(a.nodes)
    rng = np.random.default_rng(0)
    run = lambda: fleet.score_windows(det, plant, rows, 10.0, rng)  # noqa: E731
    run()  # warm up
    with_check = median_s(run, a.repeat)
    real = fleet.check_windows
    fleet.check_windows = _NoCheck
    try:
        without = median_s(run, a.repeat)
    finally:
        fleet.check_windows = real
    report = {"nodes": a.nodes, "repeat": a.repeat, "model": str(MODEL.relative_to(REPO)),
              "us_per_window_with_check": round(with_check / a.nodes * 1e6, 1),
              "us_per_window_without_check": round(without / a.nodes * 1e6, 1),
              "check_share_of_tick": round(1 - without / with_check, 3)}
    print(f"{a.nodes} nodes: {report['us_per_window_with_check']} us/window with the sensor check, "
          f"{report['us_per_window_without_check']} without (medians of {a.repeat})")
    write_report("node_sensor_check", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
