"""What keeping the rollups costs ingest: `write_batch` of the same batches into a fresh store with the rollups
(store/rollup_sql.py: `write_kept` on SQLite, `write_locked` on PostgreSQL) and without them (a no-op), interleaved,
median of `--runs`, for SQLite and (with a PostgreSQL from tests/pg.py, fsync on) PostgreSQL. Batches of
`--batch` results from `--devices` devices at one result per second each, the way ingest batches a fleet.

    .venv/bin/python benchmarks/rollup_ingest.py [--devices 1000] [--results 200000] [--batch 1000] [--runs 3]
        [--no-pg]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks._report import write_report  # noqa: E402
from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.service.store import IngestBatch, SQLiteStore, rollup_sql  # noqa: E402

T0 = int(time.time() * 1000) // 3_600_000 * 3_600_000 - 3_600_000


def batches(devices: int, total: int, size: int) -> list[IngestBatch]:
    rng = random.Random(1)
    recs = []
    for k in range(total):
        i, t = k % devices, k // devices
        score = 0.05 * (1 + rng.random())
        recs.append(ResultRecord(f"m-{i:04d}", "00000001", t, T0 + t * 1000 + i, 2, score, 0.3, False, 400,
                                 hi=1.0, hi_thr=3.0, vrms=2.0 + rng.random(), rpm=1480.0))
    return [IngestBatch(T0 + 3_600_000, size, recs[k:k + size]) for k in range(0, total, size)]


def run(make_store, bs: list[IngestBatch], rollups_on: bool) -> float:
    real = rollup_sql.write_locked, rollup_sql.write_kept
    if not rollups_on:
        rollup_sql.write_locked = rollup_sql.write_kept = lambda *a, **k: None
    try:
        store = make_store()
        t = time.perf_counter()
        for b in bs:
            store.write_batch(b)
        dt = time.perf_counter() - t
        store.close()
    finally:
        rollup_sql.write_locked, rollup_sql.write_kept = real
    return sum(len(b.results) for b in bs) / dt


def measure(label: str, make_store, bs: list[IngestBatch], runs: int) -> dict:
    on, off = [], []
    for _ in range(runs):
        off.append(run(make_store, bs, False))
        on.append(run(make_store, bs, True))
    row = {"store": label, "without_rollups_per_s": round(statistics.median(off)),
           "with_rollups_per_s": round(statistics.median(on)),
           "cost_pct": round(100 * (1 - statistics.median(on) / statistics.median(off)), 1),
           "runs_without": [round(x) for x in off], "runs_with": [round(x) for x in on]}
    print(f"{label:>10}: {row['without_rollups_per_s']:>8,} results/s without rollups, "
          f"{row['with_rollups_per_s']:>8,} with ({row['cost_pct']:+.1f} % cost)")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--results", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-pg", action="store_true")
    a = ap.parse_args()
    bs = batches(a.devices, a.results, a.batch)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        n = [0]

        def sqlite_store() -> SQLiteStore:
            n[0] += 1
            return SQLiteStore(Path(tmp) / f"s{n[0]}.db")
        rows.append(measure("sqlite", sqlite_store, bs, a.runs))
    if not a.no_pg:
        from pg import PgServer, missing_reason

        why = missing_reason()
        if why:
            print(f"PostgreSQL skipped: {why}")
        else:
            from edgefleet.service.store.postgres import PostgresStore

            with PgServer(fsync=True) as server:
                rows.append(measure("postgresql", lambda: PostgresStore(server.create_db("r")), bs, a.runs))
    write_report("rollup_ingest", {"devices": a.devices, "results": a.results, "batch": a.batch, "runs": a.runs,
                                   "load": os.getloadavg()[0], "stores": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
