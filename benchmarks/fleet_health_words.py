"""What the Fleet page's health words and search cost with a large fleet: `fleet_frame` (the registry, active alarms,
names and tags), `attention` (stage, since, remaining life and trend in words per machine that needs attention)
and `search`, on one SQLite store with `--devices` machines, `--attention` of them degrading or alarming,
every one named and tagged. Median of `--runs`, fresh store connection each run (a first view, no cache).

    .venv/bin/python benchmarks/fleet_health_words.py [--devices 2000] [--attention 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import write_report  # noqa: E402
from dashboards.loaders import fleet  # noqa: E402
from edgefleet.service.store import DeviceUpdate, IngestBatch, open_store  # noqa: E402
from edgefleet.service.store.base import AlarmChange, DeviceHealth  # noqa: E402


def build(path: Path, devices: int, attention: int, now: int) -> None:
    store = open_store(path, synchronous="OFF")
    names = [f"m-{i:05d}" for i in range(devices)]
    store.write_batch(IngestBatch(now, 1, devices=[
        DeviceUpdate(d, now, status="online", site=f"site-{i % 7}", line=f"L{i % 5}", tags=("pump",))
        for i, d in enumerate(names)]))
    for i, d in enumerate(names):
        store.set_machine_meta(d, {"name": f"Pump {i}", "tags": {"type": "pump", "room": f"R{i % 40}"}})
    sick = names[:attention]
    store.apply_alarm_changes([AlarmChange("raise", d, now - 3_600_000, "major", 3.0, 1.0, 3.0)
                               for d in sick[: attention // 2]],
                              [DeviceHealth(d, now - 60_000, 1.0, 0.5, 7200.0, "alarm" if k < attention // 2 else
                                            "degrading", 86400.0, 40000.0, 200000.0) for k, d in enumerate(sick)])
    store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--attention", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    now = int(time.time() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.db"
        t0 = time.perf_counter()
        build(path, args.devices, args.attention, now)
        build_s = time.perf_counter() - t0
        timings: dict[str, list[float]] = {"fleet_frame": [], "attention": [], "search": []}
        for _ in range(args.runs):
            store = open_store(path)
            t0 = time.perf_counter()
            df = fleet.fleet_frame(store, now)
            t1 = time.perf_counter()
            att = fleet.attention(df, now)
            t2 = time.perf_counter()
            hits = fleet.search(df, "room=r7 pump")
            t3 = time.perf_counter()
            store.close()
            timings["fleet_frame"].append(t1 - t0)
            timings["attention"].append(t2 - t1)
            timings["search"].append(t3 - t2)
        assert len(att) == args.attention and len(hits) == args.devices // 40, (len(att), len(hits))
    medians = {k: statistics.median(v) * 1000 for k, v in timings.items()}
    for k, v in medians.items():
        print(f"{k:<12} median {v:8.1f} ms over {args.runs} runs ({args.devices} devices, {args.attention} need attention)")
    write_report("fleet_health_words", {"devices": args.devices, "attention": args.attention, "runs": args.runs,
                                        "build_s": build_s, "median_ms": medians,
                                        "runs_ms": {k: [x * 1000 for x in v] for k, v in timings.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
