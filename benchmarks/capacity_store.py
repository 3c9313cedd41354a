"""The store figures docs/capacity.md needs that no other benchmark gives: bytes on disk per raw result and per
rollup row, SQLite beside PostgreSQL, and the Device page's long-range read (`timeseries.bucket_rows`, what a
30-day or 365-day chart of one machine costs) on a fleet's year of 1-hour rollups.

1. Bytes per row: `--size-devices` devices, one result per second each for an hour, written through
   `write_batch` (10 results per device per batch, like 10-result messages), realistic fields (score, threshold,
   HI, velocity, speed). SQLite: the `dbstat` table (pages of each table and its indexes); PostgreSQL:
   `pg_total_relation_size` after `VACUUM FULL` (live rows; a busy rollup table also carries dead row versions
   until autovacuum reuses them).
2. Long-range reads: `--devices` devices with 1-hour rollup rows for `--days` days (inserted in SQL, one row
   per device-hour, a histogram of the size the ingest path writes), then `bucket_rows` for 30 and 365 days of
   `--probe` devices, `--runs` times each: p50/p95 of a first read (no cache).

    .venv/bin/python benchmarks/capacity_store.py [--devices 2000] [--days 365] [--no-pg]
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from _report import write_report  # noqa: E402

from dashboards.loaders import timeseries  # noqa: E402
from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.service.rollups import COLUMNS, HOUR_MS  # noqa: E402
from edgefleet.service.store import IngestBatch, SQLiteStore  # noqa: E402

DAY = 86_400_000
TABLES = ("results", "rollup_1m", "rollup_1h")
SUMMARY_EVERY_S = 300




def hour_of_results(devices: int, t0: int) -> list[IngestBatch]:
    rng = random.Random(7)
    out = []
    for k in range(0, 3600, 10):
        recs = []
        for i in range(devices):
            for s in range(k, k + 10):
                score = 0.05 * rng.lognormvariate(0, 0.35)
                recs.append(ResultRecord(f"m-{i:04d}", "b0000001", s, t0 + s * 1000 + i, 3, score, 0.21, score > 0.21,
                                         412, hi=rng.uniform(0.5, 1.5), cls=1, hi_thr=3.0,
                                         vrms=2.0 + rng.random(), rpm=1480.0 + rng.random()))
        out.append(IngestBatch(t0 + k * 1000 + 10_000, len(recs), recs))
    return out


def hour_of_summaries(devices: int, t0: int) -> list:
    """A summary every SUMMARY_EVERY_S of one-second windows per device for an hour (summary mode)."""
    from edgefleet import protocol

    rng = random.Random(8)
    out = []
    for k in range(3600 // SUMMARY_EVERY_S):
        for i in range(devices):
            scores = [0.05 * rng.lognormvariate(0, 0.35) for _ in range(SUMMARY_EVERY_S)]
            body = protocol.summary_of_scores("b0000001", k, t0 + (k + 1) * SUMMARY_EVERY_S * 1000 + i,
                                              SUMMARY_EVERY_S * 1000, 3, 0.21, scores, 0)
            out.append(protocol.summary_record(f"s-{i:04d}", body))
    return out


def write_summaries(store, sums: list, t0: int) -> None:
    from edgefleet.service.store import summary_sql

    for k in range(0, len(sums), 1000):
        summary_sql.write_summaries(store, sums[k:k + 1000], t0 + 3_700_000)


def sizes_sqlite(path: Path, tables: tuple = TABLES) -> dict[str, dict]:
    import sqlite3

    c = sqlite3.connect(path)
    per: dict[str, int] = {}
    idx = {n: t for n, t in c.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')")}
    for name, size in c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        t = idx.get(name, name)
        per[t] = per.get(t, 0) + size
    out = {t: {"rows": c.execute(f"SELECT count(*) FROM {t}").fetchone()[0], "bytes": per.get(t, 0)} for t in tables}
    c.close()
    return out


def sizes_pg(url: str, tables: tuple = TABLES) -> dict[str, dict]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        out = {}
        for t in tables:
            c.execute(f"VACUUM FULL {t}")
            out[t] = {"rows": c.execute(f"SELECT count(*) FROM {t}").fetchone()[0],
                      "bytes": c.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]}
    return out


def per_row(sizes: dict[str, dict]) -> dict[str, float]:
    return {t: round(v["bytes"] / v["rows"], 1) for t, v in sizes.items() if v["rows"]}


def fill_hours(store, pg: bool, devices: int, days: int, now: int, hist: str) -> float:
    """One 1-hour rollup row per device-hour for `days` days up to `now`, in SQL; seconds taken."""
    lo = (now - days * DAY) // HOUR_MS * HOUR_MS
    hours = days * 24
    vals = (f"'m-' || lpad(d::text, 4, '0'), {lo} + h::bigint * {HOUR_MS}" if pg else
            f"printf('m-%04d', d), {lo} + h * {HOUR_MS}")
    big = "::bigint" if pg else ""
    body = (f"{vals}, {lo} + h{big} * {HOUR_MS} + 3599000, 3600, 2, 3600, 0.02, 180.0, 0.11, '{hist}', 0.21, 1.4, 3.0, 3,"
            " 3600, 9000.0, 3.1, 3600, 5328000.0")
    t = time.perf_counter()
    if pg:
        with store._tx() as cur:
            cur.execute(f"INSERT INTO rollup_1h({', '.join(COLUMNS)}) SELECT {body} FROM generate_series(0, {devices - 1})"
                        f" d, generate_series(0, {hours - 1}) h ORDER BY 1, 2")
            cur.execute("ANALYZE rollup_1h")
    else:
        with store._tx() as db:
            db.execute(f"INSERT INTO rollup_1h({', '.join(COLUMNS)}) WITH RECURSIVE dd(d) AS (SELECT 0 UNION ALL SELECT"
                       f" d + 1 FROM dd WHERE d < {devices - 1}), hh(h) AS (SELECT 0 UNION ALL SELECT h + 1 FROM hh"
                       f" WHERE h < {hours - 1}) SELECT {body} FROM dd, hh")  # dd outer, hh inner: key order
        store._db.execute("ANALYZE")
    return time.perf_counter() - t


def reads(store, devices: int, probe: int, runs: int, now: int) -> dict[str, dict]:
    rng = random.Random(3)
    picks = [f"m-{rng.randrange(devices):04d}" for _ in range(probe)]
    out = {}
    for label, days in (("30d", 30), ("365d", 365)):
        ts, points = [], 0
        for _ in range(runs):
            for dev in picks:
                t = time.perf_counter()
                df = timeseries.bucket_rows(store, dev, now - days * DAY, now, now_ms=now)
                ts.append(time.perf_counter() - t)
                points = len(df)
        ts.sort()
        out[label] = {"p50_ms": round(1000 * statistics.median(ts), 1),
                      "p95_ms": round(1000 * ts[min(len(ts) - 1, int(0.95 * len(ts)))], 1), "reads": len(ts),
                      "chart_points": points, "rows_read": days * 24}
        print(f"  {label}: p50 {out[label]['p50_ms']} ms, p95 {out[label]['p95_ms']} ms ({points} points)", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-devices", type=int, default=20)
    ap.add_argument("--summary-devices", type=int, default=500)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--probe", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-pg", action="store_true")
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    now = int(time.time() * 1000)
    t0 = now // HOUR_MS * HOUR_MS - 2 * HOUR_MS
    batches = hour_of_results(a.size_devices, t0)
    sums = hour_of_summaries(a.summary_devices, t0)
    report: dict = {"size_devices": a.size_devices, "devices": a.devices, "days": a.days, "probe": a.probe,
                    "runs": a.runs}
    with tempfile.TemporaryDirectory() as tmp:
        s = SQLiteStore(Path(tmp) / "size.db")
        for b in batches:
            s.write_batch(b)
        s.close()
        sz = sizes_sqlite(Path(tmp) / "size.db")
        hist = max((r[0] for r in __import__("sqlite3").connect(Path(tmp) / "size.db").execute(
            "SELECT hist FROM rollup_1h")), key=len)
        s = SQLiteStore(Path(tmp) / "summaries.db")
        write_summaries(s, sums, t0)
        s.close()
        sz.update(sizes_sqlite(Path(tmp) / "summaries.db", ("summaries",)))
        report["sqlite"] = {"sizes": sz, "bytes_per_row": per_row(sz)}
        print("sqlite bytes per row (table + indexes):", report["sqlite"]["bytes_per_row"], flush=True)
        s = SQLiteStore(Path(tmp) / "year.db")
        built = fill_hours(s, False, a.devices, a.days, now, hist)
        print(f"sqlite: {a.devices * a.days * 24:,} hour rows in {built:.0f} s; Device page reads:", flush=True)
        s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        year = sizes_sqlite(Path(tmp) / "year.db", ("rollup_1h",))["rollup_1h"]
        report["sqlite"]["long_range"] = {"hour_rows": a.devices * a.days * 24, "build_s": round(built, 1),
                                          "rollup_1h_bytes_per_row": round(year["bytes"] / year["rows"], 1),
                                          **reads(s, a.devices, a.probe, a.runs, now)}
        s.close()
    if not a.no_pg:
        from pg import PgServer

        from edgefleet.service.store.postgres import PostgresStore

        with PgServer(fsync=True) as server:
            url = server.create_db("size")
            s = PostgresStore(url)
            for b in batches:
                s.write_batch(b)
            s.close()
            sz = sizes_pg(url)
            url_s = server.create_db("sums")
            s = PostgresStore(url_s)
            write_summaries(s, sums, t0)
            s.close()
            sz.update(sizes_pg(url_s, ("summaries",)))
            report["postgresql"] = {"sizes": sz, "bytes_per_row": per_row(sz)}
            print("postgresql bytes per row (table + indexes):", report["postgresql"]["bytes_per_row"], flush=True)
            url_y = server.create_db("year")
            s = PostgresStore(url_y)
            built = fill_hours(s, True, a.devices, a.days, now, hist)
            year = sizes_pg(url_y, ("rollup_1h",))["rollup_1h"]
            print(f"postgresql: {a.devices * a.days * 24:,} hour rows in {built:.0f} s; Device page reads:", flush=True)
            report["postgresql"]["long_range"] = {"hour_rows": a.devices * a.days * 24, "build_s": round(built, 1),
                                                  "rollup_1h_bytes_per_row": round(year["bytes"] / year["rows"], 1),
                                                  **reads(s, a.devices, a.probe, a.runs, now)}
            s.close()
    report["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    report["note"] = "2 cores shared with other work; long-range reads are first reads (no dashboard cache)"
    write_report("capacity_store", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
