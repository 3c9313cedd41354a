"""The short variant of benchmarks/dashboard_load.py: a small fleet's 31 days (rollups written directly, the
newest day raw through write_batch), then every page's loaders for 1 h, 1 d and 30 d: the Device and Compare
pages read raw results, 1-minute and 1-hour rollups in turn and count every result of the range."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import dashboard_load  # noqa: E402

from edgefleet.service.store import SQLiteStore  # noqa: E402

DAY = 86_400_000


def test_pages_read_the_resolution_their_range_calls_for(tmp_path: Path) -> None:
    a = argparse.Namespace(devices=12, days=31, minute_days=1.0, raw_every_s=600, full=1, full_every_s=60,
                           stats_every_s=3600)
    now = int(time.time() * 1000) // 60_000 * 60_000
    store = SQLiteStore(tmp_path / "load.db", synchronous="OFF")
    built = dashboard_load.build(store, a, now)
    assert built["raw_results"] == 1440 + 11 * 144
    seen = {}
    for label, span in dashboard_load.RANGES.items():
        out = dashboard_load.pages(store, now, now - span, now, a.devices)
        assert all(out[p] < 30 for p in ("fleet", "device", "compare", "alarms", "system"))
        seen[label] = out["device_resolution"]
        assert out["device_points"] > 0 and out["compare_points"] > 0
    assert seen == {"1h": "raw results", "1d": "1-minute rollups, 5 min buckets", "30d": "1-hour rollups, 2 h buckets"}
    h = -(-(now - DAY) // 3_600_000) * 3_600_000  # the raw day's first whole hour: counted by ingest alone
    counts = [store._db.execute(f"SELECT {what} WHERE device = 'm-0000' AND {col} >= ?", (h,)).fetchone()[0]
              for what, col in (("count(*) FROM results", "ts"), ("sum(n) FROM rollup_1m", "bucket"),
                                ("sum(n) FROM rollup_1h", "bucket"))]
    assert counts[0] > 1300 and counts == [counts[0]] * 3
    store.close()
