"""What a long time range costs the dashboard: one machine with `--days` of results at one per second in SQLite
(30 days: 2.59 M rows), then the Device page's loader (`loaders.timeseries.device_series`: results bucketed in
the database) and the compare view's (`compare_frame`, here the same machine 6 times) for ranges from 15 min to 30 d:
rows returned, the first load (an empty `BucketCache`; median of 3 up to 24 h, one run beyond) and a refresh
(the cache keeps the settled buckets; median of 5). Beside it, what reading the raw rows would mean (`score_history` without a
limit, on the 24 h range only, once).

    .venv/bin/python benchmarks/dashboard_range.py [--days 30] [--db /tmp/range.db] [--out benchmarks/results/dashboard_range.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboards.loaders import timeseries  # noqa: E402
from dashboards.loaders.timerange import PRESETS, TimeRange  # noqa: E402
from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.service.store import SQLiteStore  # noqa: E402


def fill(store: SQLiteStore, days: float, end_ms: int) -> int:
    n = int(days * 86400)
    t0 = end_ms - n * 1000
    batch = 20_000
    for k in range(0, n, batch):
        recs = [ResultRecord("m-1", "b0000001", i, t0 + i * 1000, 1, 0.1 + (i % 97) / 1000, 1.0, i % 3000 == 0, 5,
                             hi=0.5 + (i % 89) / 100, cls=0, hi_thr=3.0, vrms=1.0 + (i % 10) / 10, rpm=1500.0)
                for i in range(k, min(n, k + batch))]
        store.write_results(recs, end_ms)
    return n


def timed(fn, runs: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--db", type=Path, default=Path("/tmp/ef-dashboard-range.db"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dashboard_range.json")
    a = ap.parse_args()
    end = int(time.time() * 1000)
    if a.db.exists():
        a.db.unlink()
    store = SQLiteStore(a.db, synchronous="OFF")
    t = time.perf_counter()
    n = fill(store, a.days, end)
    print(f"wrote {n:,} results in {time.perf_counter() - t:.0f} s", flush=True)
    end += 1  # the ranges end now
    rows = []
    for preset in PRESETS:
        start, stop = TimeRange(preset).bounds(end)
        runs = 3 if PRESETS[preset] <= 86_400_000 else 1
        s_cold, series = timed(lambda: timeseries.device_series(store, "m-1", start, stop,
                                                                cache=timeseries.BucketCache()), runs)
        cache = timeseries.BucketCache()
        timeseries.device_series(store, "m-1", start, stop, cache=cache)
        s_warm, _ = timed(lambda: timeseries.device_series(store, "m-1", start, stop, cache=cache))
        c_cold, cmp = timed(lambda: timeseries.compare_frame(store, ["m-1"] * 6, start, stop), runs)
        c_warm, _ = timed(lambda: timeseries.compare_frame(store, ["m-1"] * 6, start, stop, cache=cache))
        rows.append({"range": preset, "results_in_range": series.total, "device_rows": len(series.frame),
                     "bucketed": series.bucketed, "bucket_s": series.bucket_ms / 1000,
                     "device_first_s": round(s_cold, 3), "device_refresh_s": round(s_warm, 3),
                     "compare_rows": len(cmp), "compare_6_first_s": round(c_cold, 3),
                     "compare_6_refresh_s": round(c_warm, 3)})
        print(rows[-1], flush=True)
    start, stop = TimeRange("24h").bounds(end)
    t = time.perf_counter()
    raw = store.score_history("m-1", since_ms=start, until_ms=stop, limit=10**9)
    raw_s = time.perf_counter() - t
    store.close()
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
              "load": os.getloadavg()[0], "results": n, "ranges": rows,
              "raw_24h": {"rows": len(raw), "seconds": round(raw_s, 3)}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["raw_24h"]))
    a.db.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
