"""Dashboard load with a fleet's history (issue 17: 2,000 devices, 30 days; target under 2 s per page): one SQLite
store with `--devices` machines, their 1-hour rollups for `--days`, 1-minute rollups for the newest
`--minute-days` (the `--full` devices: all of `--days`), written directly (`rollups.aggregate` shape, synthetic
scores), and the newest day of raw results written through the store's ingest path (`write_batch`, which
keeps the rollups), one result per `--raw-every-s` per device and one per second for the `--full` devices the
Device and Compare pages look at; ingest statistics one row per second for `--days`. Then each page's loaders,
as its view calls them without the Streamlit cache (a first view: fresh store connection, empty bucket
cache), for the 1 h, 1 d and 30 d ranges: median of `--runs`.

Pages: Fleet (fleet_frame, alarm counts, ISO zones from latest_vrms, recent windows), Device (device, series,
events, capture, active alarm), Compare (6 machines), Alarms (alarms in range, sites, notifications), System
(ingest, rejects, loss). Models & OTA reads no history and is not timed.

With `--browser`, also each page's time to its first chart in headless Chromium at 1280x800 (issue 17's figure):
per run a fresh `streamlit run` on the database (empty caches: a first view), then every page opened by URL in
turn, from navigation to a drawn Vega chart (pages without one: to the page having run), median of `--runs`.
The ranges are absolute, ending at the newest result (1 h and 30 d), so a database built earlier shows data;
its machines are all offline then (their last result is old), which costs the Fleet page the same queries.

    .venv/bin/python benchmarks/dashboard_load.py [--devices 2000] [--days 30] [--db /tmp/ef-dashboard-load.db]
        [--keep] (reuse the --db built before, viewed at its newest result) [--quick] (200 devices, 3 days)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import write_report  # noqa: E402
from dashboards.loaders import (  # noqa: E402
    alarms,
    commissioning,
    device,
    fleet,
    readings,
    system,
    timerange,
    timeseries,
)
from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.service import rollups  # noqa: E402
from edgefleet.service.store import DeviceUpdate, IngestBatch, SQLiteStore, rollup_sql  # noqa: E402

DAY = 86_400_000
RANGES = {"1h": 3_600_000, "1d": DAY, "30d": 30 * DAY}
FULL = 6  # devices with full-density history (the ones the Device and Compare pages open): --full


def name(i: int) -> str:
    return f"m-{i:04d}"


def synth_rows(dev: str, lo: int, hi: int, width: int, rng: random.Random, per_bucket: int) -> list[tuple]:
    """Rollup rows (rollups.COLUMNS) of one device for buckets in [lo, hi): a score around 0.05 drifting slowly."""
    out = []
    base = rng.uniform(0.02, 0.08)
    for b in range(lo // width * width, hi, width):
        s = base * (1 + 0.3 * rng.random())
        hist = {rollups.score_bin(s * f): per_bucket // 4 for f in (0.7, 0.9, 1.1, 1.6)}
        n = sum(hist.values())
        anom = int(rng.random() < 0.02)
        out.append((dev, b, b + width - 1000, n, anom, n, s * 0.6, s * n, s * 1.8, rollups.hist_text(hist), 0.3,
                    1.2, 3.0, 2, n, n * 2.1, 3.2, n, n * 1480.0))
    return out


def build(store: SQLiteStore, a: argparse.Namespace, now: int) -> dict:
    rng = random.Random(7)
    t = time.perf_counter()
    start, raw_from = now - a.days * DAY, now - DAY
    births = [DeviceUpdate(name(i), start, status="online", boot="00000001", fw="1.4.0", model=2, thr=0.3,
                           site=f"site-{i % 20:02d}", line=f"line-{i % 7}", comm={"state": "commissioned"})
              for i in range(a.devices)]
    store.write_batch(IngestBatch(start, len(births), devices=births))
    minute_from = int(now - a.minute_days * DAY)
    db = store._db
    for i in range(a.devices):
        dev = name(i)
        rows_h = synth_rows(dev, start, raw_from, rollups.HOUR_MS, rng, 3600 // a.raw_every_s)
        lo = start if i < a.full else minute_from
        rows_m = synth_rows(dev, lo, raw_from, rollups.MINUTE_MS, rng, max(4, 60 // a.raw_every_s))
        with store._tx():
            db.executemany(f"INSERT INTO rollup_1h({', '.join(rollups.COLUMNS)}) VALUES ({','.join('?' * 19)})",
                           rows_h)
            db.executemany(f"INSERT INTO rollup_1m({', '.join(rollups.COLUMNS)}) VALUES ({','.join('?' * 19)})",
                           rows_m)
    t_rollups = time.perf_counter() - t
    # ingest statistics: one row per --stats-every-s of the history (what the System page reads; ingest writes
    # one per batch, several a second at this fleet's rate)
    t = time.perf_counter()
    with store._tx():
        db.executemany("INSERT INTO ingest_stats VALUES (?,?,?,?,?,?,?,?)",
                       ((ts, 2000, 2000 // a.raw_every_s or 1, 0, 0, 150 * 2000, 2000, 400)
                        for ts in range(start, now, 1000 * a.stats_every_s)))
        db.execute(rollup_sql.ingest_backfill_sql())  # their minutes (ingest keeps them as it writes a batch)
    t_stats = time.perf_counter() - t
    # the newest day, raw, through the ingest path (rollups kept by write_batch)
    t = time.perf_counter()
    seq = {i: 0 for i in range(a.devices)}
    n_raw = 0
    step = 1000
    batch: list[ResultRecord] = []
    for ts in range(raw_from, now, step):
        k = (ts - raw_from) // 1000
        for i in range(a.devices):
            if (k + i) % (a.full_every_s if i < a.full else a.raw_every_s):
                continue
            score = 0.05 * (1 + 0.3 * rng.random())
            batch.append(ResultRecord(name(i), "00000001", seq[i], ts, 2, score, 0.3, score > 0.3, 400, hi=1.0,
                                      hi_thr=3.0, vrms=2.0 + rng.random() / 5, rpm=1480.0))
            seq[i] += 1
        if len(batch) >= 2000:
            store.write_batch(IngestBatch(ts + 100, len(batch), batch))
            n_raw += len(batch)
            batch = []
    if batch:
        store.write_batch(IngestBatch(now, len(batch), batch))
        n_raw += len(batch)
    t_raw = time.perf_counter() - t
    (n_h,), = db.execute("SELECT count(*) FROM rollup_1h").fetchall()
    (n_m,), = db.execute("SELECT count(*) FROM rollup_1m").fetchall()
    return {"raw_results": n_raw, "rollup_1h_rows": n_h, "rollup_1m_rows": n_m,
            "build_rollups_s": round(t_rollups, 1), "build_stats_s": round(t_stats, 1),
            "raw_ingest_s": round(t_raw, 1), "raw_ingest_results_per_s": round(n_raw / t_raw)}


def recent(store: SQLiteStore, devices: int, n: int, newest: int) -> int:
    """`n` more results per device over the hour before `newest` (a new boot, one per 3600/n s), through
    write_batch: the Fleet page reads each device's newest 120 windows, which a sparse raw day lacks."""
    rng = random.Random(3)
    for k in range(n):
        ts = newest - 3_600_000 + k * (3_600_000 // n) + 500
        batch = [ResultRecord(name(i), "00000002", k, ts + i, 2, 0.05 * (1 + 0.3 * rng.random()), 0.3, False, 400,
                              hi=1.0, hi_thr=3.0, vrms=2.0 + rng.random() / 5, rpm=1480.0) for i in range(devices)]
        store.write_batch(IngestBatch(ts + 3000, len(batch), batch))
    return n * devices


def pages(store: SQLiteStore, now: int, start: int, end: int, n_devices: int) -> dict:
    """Each page's loaders as its view calls them (dashboards/ui.py without the cache): seconds per page."""
    out = {}
    t = time.perf_counter()
    df = fleet.fleet_frame(store, now, 120.0)
    fleet.alarm_counts(store)
    readings.fleet_zones(df, store.latest_vrms(), store.machine_classes())
    commissioning.recent_window_states(store, df.loc[df["comm"] == "commissioned", "device"].tolist())
    out["fleet"] = time.perf_counter() - t
    t = time.perf_counter()
    store.device(name(0))
    s = timeseries.device_series(store, name(0), start, end, cache=timeseries.BucketCache(), now_ms=now)
    device.events_frame(store, name(0))
    readings.last_capture(store, name(0))
    store.active_alarm(name(0))
    out["device"] = time.perf_counter() - t
    out["device_resolution"] = s.label
    out["device_points"] = len(s.frame)
    t = time.perf_counter()
    c = timeseries.compare_frame(store, [name(i) for i in range(min(FULL, n_devices))], start, end,
                                 cache=timeseries.BucketCache())
    out["compare"] = time.perf_counter() - t
    out["compare_points"] = len(c)
    t = time.perf_counter()
    alarms.in_range(alarms.alarm_frame(store, "all", None, None), start, end)
    alarms.sites(store)
    alarms.notification_frame(store)
    out["alarms"] = time.perf_counter() - t
    t = time.perf_counter()
    bucket_s = max(10, timerange.bucket_ms(end - start, 90) // 1000)
    system.ingest_frame(store, start, bucket_s, now)
    system.reject_series(store, start, bucket_s)
    system.loss_frame(store, start)
    system.loss_totals(store, now)
    system.loss_alarm_frame(store)
    out["system"] = time.perf_counter() - t
    return out


def browser_pages(db: Path, newest: int, n_devices: int, runs: int) -> dict:
    """Time to first chart per page in headless Chromium (see the module's doc): {page: {median_s, max_s, runs}}."""
    from dashboards.loaders.timerange import iso_utc
    from dashboards.snapshot import CHART_DRAWN_JS, chromium, dashboard

    ready = ("!document.querySelector('[data-testid=\"stStatusWidget\"]') && "
             "document.querySelectorAll('[data-testid=\"stMain\"] h1').length > 0")
    six = ",".join(name(i) for i in range(min(FULL, n_devices)))
    pages: list[tuple[str, str, str | None]] = [("fleet", "", None), ("fleet_zones", "?colour=zone", None)]
    for rname in ("1h", "30d"):
        q = f"from={iso_utc(newest - RANGES[rname])}&to={iso_utc(newest)}"
        pages += [(f"device_{rname}", f"device?device={name(0)}&{q}", None),
                  (f"compare_{rname}", f"compare?devices={six}&{q}", None),
                  (f"alarms_{rname}", f"alarms?{q}", "Acknowledge"),  # no alarm in the synthetic store: no chart
                  (f"system_{rname}", f"system?{q}", None)]
    pages.append(("models", "models", "Start a campaign"))
    times: dict[str, list[float]] = {p: [] for p, _, _ in pages}
    for k in range(runs):
        with dashboard(db, timeout=120) as url, chromium() as browser:
            browser.open(f"{url}/audit", 1280, 800)  # the browser and Streamlit's page code, not a page timed
            browser.wait_for(ready, 120, "the first page")
            for page, path, text in pages:
                t = time.perf_counter()
                browser.open(f"{url}/{path}", 1280, 800)
                if text is None:
                    browser.wait_for(CHART_DRAWN_JS, 120, f"{page}: a chart")
                else:
                    browser.wait_for(f"document.body.innerText.includes({text!r})", 120, f"{page}: {text}")
                    browser.wait_for(ready, 120, f"{page}: the run to end")
                times[page].append(time.perf_counter() - t)
        print(f"browser run {k + 1}: " + ", ".join(f"{p} {v[-1]:.2f}" for p, v in times.items()))
    return {p: {"median_s": round(statistics.median(v), 3), "max_s": round(max(v), 3), "runs": [round(x, 3) for x in v]}
            for p, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--minute-days", type=float, default=2.0, help="1-minute rollups of all devices for this many "
                    "days (the first devices: all --days)")
    ap.add_argument("--raw-every-s", type=int, default=30, help="raw results: one per device per this many seconds")
    ap.add_argument("--full", type=int, default=FULL, help="devices with 1-minute rollups for all --days and raw "
                    "results every --full-every-s (the Device and Compare pages open the first 6)")
    ap.add_argument("--full-every-s", type=int, default=1)
    ap.add_argument("--stats-every-s", type=int, default=1, help="one ingest_stats row per this many seconds")
    ap.add_argument("--recent", type=int, default=0, help="then N more results per device over the newest hour "
                    "(the dashboard_load.json of 2026-12-06: 120, on a build cut short at 1.8 h of raw results)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", type=Path, default=Path("/tmp/ef-dashboard-load.db"))
    ap.add_argument("--keep", action="store_true", help="reuse --db as built before (its build figures are not re-measured)")
    ap.add_argument("--quick", action="store_true", help="200 devices, 3 days, 3 runs (what the test runs)")
    ap.add_argument("--out", default="dashboard_load", help="report name in benchmarks/results/")
    ap.add_argument("--browser", action="store_true", help="also each page's time to first chart in headless Chromium")
    ap.add_argument("--note", default="", help="a line for the report (how the database was built, the load)")
    a = ap.parse_args()
    if a.quick:
        a.devices, a.days, a.runs, a.out = 200, 3, 3, a.out if a.out != "dashboard_load" else "dashboard_load-quick"
    if (a.devices < 1 or a.days < 2 or min(a.raw_every_s, a.full_every_s, a.stats_every_s) < 1
            or not 0 <= a.full <= a.devices):
        print("dashboard_load: need devices >= 1, days >= 2, --raw-every-s, --full-every-s, --stats-every-s >= 1, "
              "0 <= --full <= --devices", file=sys.stderr)
        return 2
    now = int(time.time() * 1000) // 60_000 * 60_000
    built = {}
    if not (a.keep and a.db.exists()):
        for p in (a.db, Path(f"{a.db}-wal"), Path(f"{a.db}-shm")):
            p.unlink(missing_ok=True)
        store = SQLiteStore(a.db, synchronous="OFF")
        built = build(store, a, now)
        store.close()
        print(f"built {a.db}: {built}")
    store = SQLiteStore(a.db)
    if not store._db.execute(f"SELECT 1 FROM {rollup_sql.INGEST_1M} LIMIT 1").fetchall():  # built before it existed
        with store._tx() as db:
            db.execute(rollup_sql.ingest_backfill_sql())
    (newest,), = store._db.execute("SELECT coalesce(max(ts), 0) FROM results").fetchall()
    if a.recent:
        t = time.perf_counter()
        n = recent(store, a.devices, a.recent, int(newest) or now)
        built["recent_results"], built["recent_s"] = n, round(time.perf_counter() - t, 1)
    if a.keep and newest:  # a kept database is viewed at its newest result (a build cut short ends there)
        now = int(newest) + 1000
    report: dict = {"devices": a.devices, "days": a.days, "minute_days": a.minute_days, "raw_every_s": a.raw_every_s, "recent": a.recent, "stats_every_s": a.stats_every_s,
                    "full_devices": a.full, "full_every_s": a.full_every_s, "db_bytes": a.db.stat().st_size, "load": os.getloadavg()[0], "build": built,
                    "rows": {t: store._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                             for t in ("devices", "results", "rollup_1m", "rollup_1h", "ingest_stats", "ingest_stats_1m")},
                    "now_ms": now, "target_s": 2.0, "before_30d_device_first_s": 9.523, "ranges": []}
    print(f"{'range':>5} {'page':>8} {'median s':>9} {'max s':>7}  resolution")
    for rname, span in RANGES.items():
        if span > a.days * DAY:
            continue
        runs = []
        for _ in range(a.runs):
            store.close()
            store = SQLiteStore(a.db)  # a first view: no connection cache, no bucket cache
            runs.append(pages(store, now, now - span, now, a.devices))
        row = {"range": rname, "device_resolution": runs[0]["device_resolution"],
               "device_points": runs[0]["device_points"], "compare_points": runs[0]["compare_points"]}
        for page in ("fleet", "device", "compare", "alarms", "system"):
            times = [r[page] for r in runs]
            row[f"{page}_median_s"] = round(statistics.median(times), 3)
            row[f"{page}_max_s"] = round(max(times), 3)
            print(f"{rname:>5} {page:>8} {statistics.median(times):9.3f} {max(times):7.3f}"
                  + (f"  {row['device_resolution']}" if page in ("device", "compare") else ""))
        report["ranges"].append(row)
    store.close()
    worst = max(v for r in report["ranges"] for k, v in r.items() if k.endswith("_median_s"))
    report["worst_page_median_s"] = worst
    print(f"worst page median {worst:.3f} s (target < 2 s); machine: {os.cpu_count()} cores, load {report['load']:.1f}")
    if a.browser:
        report["browser"] = browser_pages(a.db, now - 1000, a.devices, a.runs)
        report["browser_worst_median_s"] = max(v["median_s"] for v in report["browser"].values())
        report["load_after_browser"] = os.getloadavg()[0]
        print(f"browser: worst page median {report['browser_worst_median_s']:.3f} s (target < 2 s), "
              f"load {report['load_after_browser']:.1f}")
    if a.note:
        report["note"] = a.note
    write_report(a.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
