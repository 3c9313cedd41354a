"""What keeping the rollups costs ingest, and what a change of the write path bought: `write_batch` of the same
batches into a fresh store with the rollups (store/rollup_sql.py: `write_kept` on SQLite, `write_locked` on
PostgreSQL) and without them (a no-op), and with `--against REV` the same with the code of another commit
(`git archive REV edgefleet` into a temporary directory), side by side in one run: each measurement is a child
process, the variants alternate within every round, medians of `--runs` rounds. SQLite `synchronous=FULL`, and
(with a PostgreSQL from tests/pg.py, fsync on) PostgreSQL.

Two batch shapes: `worst`, one result per device per batch (1,000 devices, batches of 1,000: every result
touches its own minute and hour row), and `messages`, what ingest's batches look like at capacity (200
devices, 50 results each per batch of 10,000: ten 10-result messages per device). Besides results/s (wall
time, which the other work on this shared machine moves a lot) it reports the CPU each result cost: the writing
process (`client_us`) and its PostgreSQL backend (`server_us`), which move much less with the load.

    .venv/bin/python benchmarks/rollup_ingest.py [--runs 3] [--against 5f7b10b] [--no-pg] [--name rollup_ingest]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"worst": (1000, 1, 31), "messages": (200, 50, 7)}  # devices, results per device per batch, batches




def batches(devices: int, per: int, n: int, t0: int) -> list:
    from edgefleet.protocol import ResultRecord
    from edgefleet.service.store import IngestBatch

    rng, seq, out = random.Random(1), [0] * devices, []
    for _ in range(n):
        recs = []
        for i in range(devices):
            for _ in range(per):
                s = seq[i]
                seq[i] += 1
                recs.append(ResultRecord(f"m-{i:04d}", "00000001", s, t0 + s * 1000 // per + i, 2,
                                         0.05 * (1 + rng.random()), 0.3, False, 400, hi=1.0, hi_thr=3.0,
                                         vrms=2.0 + rng.random(), rpm=1480.0))
        out.append(IngestBatch(t0 + 3_600_000, len(recs), recs))
    return out


def _cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def child(tree: str, store: str, shape: str, rollups: bool, admin_url: str) -> dict:
    """One measurement with the code in `tree`: the first batch warms the store (schema, temporary tables),
    the others are timed."""
    sys.path.insert(0, tree)
    from edgefleet.service.store import SQLiteStore, rollup_sql

    if not rollups:
        rollup_sql.write_locked = rollup_sql.write_kept = lambda *a, **k: None
    t0 = int(time.time() * 1000) // 3_600_000 * 3_600_000 - 3_600_000
    bs = batches(*SHAPES[shape], t0)
    with tempfile.TemporaryDirectory() as tmp:
        if store == "sqlite":
            s, pid = SQLiteStore(Path(tmp) / "s.db"), None
        else:
            import psycopg

            from edgefleet.service.store.postgres import PostgresStore

            name = f"ri_{os.getpid()}"
            with psycopg.connect(admin_url, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            s = PostgresStore(admin_url.rsplit("/", 1)[0] + "/" + name)
            pid = s._conn.info.backend_pid
        s.write_batch(bs[0])
        c0, s0, t = resource.getrusage(resource.RUSAGE_SELF), _cpu_s(pid) if pid else 0.0, time.perf_counter()
        for b in bs[1:]:
            s.write_batch(b)
        dt = time.perf_counter() - t
        c1, s1 = resource.getrusage(resource.RUSAGE_SELF), _cpu_s(pid) if pid else 0.0
        n = sum(len(b.results) for b in bs[1:])
        s.close()
    return {"per_s": n / dt, "client_us": 1e6 * (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) / n,
            "server_us": 1e6 * (s1 - s0) / n, "load": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--against", metavar="REV", help="also measure the write path of this commit")
    ap.add_argument("--shapes", default="worst,messages")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--name", default="rollup_ingest")
    ap.add_argument("--child", nargs=5, metavar=("TREE", "STORE", "SHAPE", "ROLLUPS", "ADMIN_URL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        tree, store, shape, on, url = a.child
        print(json.dumps(child(tree, store, shape, on == "1", url)))
        return 0
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
    from _report import write_report

    stores = ["sqlite"] if a.no_pg else ["sqlite", "postgresql"]
    trees = {"now": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        if a.against:
            rev = subprocess.run(["git", "rev-parse", "--short", a.against], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.strip()
            archive = Path(tmp) / "rev.tar"
            subprocess.run(["git", "archive", "-o", str(archive), rev, "edgefleet"], cwd=ROOT, check=True)
            with tarfile.open(archive) as tf:
                tf.extractall(Path(tmp) / "rev")
            trees[rev] = str(Path(tmp) / "rev")
        variants = [(t, True) for t in trees] + [("now", False)]
        server = None
        if not a.no_pg:
            from pg import PgServer, missing_reason

            why = missing_reason()
            if why:
                print(f"PostgreSQL skipped: {why}")
                stores.remove("postgresql")
            else:
                server = PgServer(fsync=True)
        got: dict[tuple, list[dict]] = {}
        load_before = os.getloadavg()
        try:
            for r in range(a.runs):
                for shape in a.shapes.split(","):
                    for store in stores:
                        order = variants if r % 2 == 0 else variants[::-1]
                        for tree, on in order:
                            out = subprocess.run([sys.executable, __file__, "--child", trees[tree], store, shape,
                                                  "1" if on else "0", server.url() if server else "-"],
                                                 capture_output=True, text=True, cwd=ROOT)
                            if out.returncode != 0:
                                raise SystemExit(out.stderr[-3000:])
                            m = json.loads(out.stdout.strip().splitlines()[-1])
                            got.setdefault((shape, store, tree, on), []).append(m)
                            print(f"round {r + 1} {shape:8} {store:10} {tree:8} rollups {'on ' if on else 'off'}"
                                  f" {m['per_s']:9,.0f} results/s  client {m['client_us']:6.1f} us  server"
                                  f" {m['server_us']:6.1f} us/result  load {m['load']:.1f}", flush=True)
        finally:
            if server is not None:
                server.stop()
    rows = []
    print("\nmedians")
    for (shape, store, tree, on), ms in got.items():
        med = {k: round(statistics.median(m[k] for m in ms), 1) for k in ("per_s", "client_us", "server_us")}
        rows.append({"shape": shape, "store": store, "code": tree, "rollups": on, **med,
                     "runs": [{k: round(v, 1) for k, v in m.items()} for m in ms]})
        print(f"{shape:8} {store:10} {tree:8} rollups {'on ' if on else 'off'} {med['per_s']:9,.0f} results/s"
              f"  client {med['client_us']:6.1f}  server {med['server_us']:6.1f} us/result")
    cost = {}
    for shape in a.shapes.split(","):
        for store in stores:
            on = next(x for x in rows if (x["shape"], x["store"], x["code"], x["rollups"]) == (shape, store, "now", True))
            off = next(x for x in rows if (x["shape"], x["store"], x["code"], x["rollups"]) == (shape, store, "now", False))
            cost[f"{shape}/{store}"] = {"cost_pct_rate": round(100 * (1 - on["per_s"] / off["per_s"]), 1),
                                        "rollup_cpu_us_per_result": round(on["client_us"] + on["server_us"]
                                                                          - off["client_us"] - off["server_us"], 1)}
            print(f"rollups cost {shape}/{store}: {cost[f'{shape}/{store}']}")
    write_report(a.name, {
        "what": "Store.write_batch with and without rollups (and, with --against, another commit's write path), "
                "child processes alternating in each round, medians; client_us/server_us = CPU seconds of the "
                "writing process / its PostgreSQL backend per result",
        "shapes": {k: {"devices": v[0], "results_per_device_per_batch": v[1], "timed_batches": v[2] - 1}
                   for k, v in SHAPES.items() if k in a.shapes.split(",")},
        "runs": a.runs, "against": a.against, "codes": list(trees),
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "note": "2 cores shared with other work; wall-time rates move with the load, CPU per result much less",
        "rollup_cost_now": cost, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
