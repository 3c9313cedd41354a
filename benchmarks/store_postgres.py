"""Store write throughput, SQLite beside PostgreSQL: results/s through `write_batch`, one and two writers.

What ingest does per batch, without the broker: batches of 1,000 results from 2,000 devices (one boot
each, consecutive sequence numbers, 1 % lost on the way so the loss accounting opens holes), each
batch one transaction with its device rows, statistics and loss bookkeeping, durable on return:
SQLite `synchronous=FULL` (serve's default) and PostgreSQL with `fsync` and `synchronous_commit` on
(a throwaway server from tests/pg.py, on this machine's disk). With two writers, two processes
write disjoint halves of the devices at once into the same file or database (what two ingest
processes do). A fresh store per run; configurations alternate over the rounds; medians reported.

    .venv/bin/python benchmarks/store_postgres.py            # 5 rounds, 60 batches each (~2 min)
    .venv/bin/python benchmarks/store_postgres.py --quick    # 2 rounds, 20 batches

With `--ingest N` it also measures the whole path, per backend: 2 publisher processes (QoS 1, 10
results a message, 200 devices; benchmarks/ingest_throughput.py's publisher) -> Mosquitto ->
`edgefleet serve --role ingest` (a child process) -> the store; results/s until all N are stored,
each once (publishers, broker, ingest and PostgreSQL share the cores).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_report  # noqa: E402

from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.service.store import IngestBatch, open_store  # noqa: E402

DEVICES, BATCH = 2000, 1000


def batches(seed: int, n: int, devices: range) -> list[list[ResultRecord]]:
    rng = np.random.default_rng(seed)
    seq = {d: 0 for d in devices}
    devs = np.array(list(devices))
    out, t = [], 1_800_000_000_000
    for _ in range(n):
        b = []
        for d in rng.choice(devs, BATCH):
            s = seq[int(d)]
            seq[int(d)] += 1
            if rng.random() < 0.01:
                continue  # lost on the way: a hole
            t += 1
            b.append(ResultRecord(f"dev-{int(d):05d}", "b0000001", s, t, 1, 0.5, 1.0, False, 5))
        out.append(b)
    return out


def _writer(db: str, data: list[list[ResultRecord]], start: mp.Barrier, out: mp.Queue) -> None:
    store = open_store(db, synchronous="FULL")
    start.wait()
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    for i, b in enumerate(data):
        store.write_batch(IngestBatch(ingest_ts=1_800_000_000_000 + i, messages=len(b), results=b))
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    out.put((sum(len(b) for b in data), time.perf_counter() - t0, (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)))
    store.close()


def run(db: str, parts: list[list[list[ResultRecord]]]) -> dict:
    """Every part written by its own process at once; results/s over the longest writer's time."""
    open_store(db).close()  # the schema first: two processes creating one SQLite file at once collide
    ctx = mp.get_context("fork")
    start, out = ctx.Barrier(len(parts) + 1, timeout=120), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, p, start, out)) for p in parts]
    for p in procs:
        p.start()
    start.wait()
    got = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    n, wall = sum(g[0] for g in got), max(g[1] for g in got)
    return {"results_per_s": n / wall, "client_cpu_s_per_10k": 1e4 * sum(g[2] for g in got) / n}


def ingest_run(backend: str, db: str, total: int, work: Path) -> dict:
    """Publishers -> Mosquitto -> `serve --role ingest` -> `db`; results/s until every one is stored."""
    from ingest_throughput import publisher

    from edgefleet.service.broker import start_broker

    devices, per_msg, pubs = 200, 10, 2
    msgs_per_device = max(1, total // (devices * per_msg))
    total = msgs_per_device * devices * per_msg
    log = work / f"serve-{backend}.log"
    with start_broker(prefer="mosquitto", workdir=work / f"broker-{backend}") as broker:
        env = dict(os.environ, EDGEFLEET_SQLITE_SYNC="FULL", EDGEFLEET_STATS_INTERVAL_S="5")
        serve = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--role", "ingest", "--broker",
                                  broker.url, "--db", db, "--client-id", f"bench-{backend}"], cwd=ROOT, env=env,
                                 stderr=open(log, "w"))
        store = None
        try:
            deadline = time.time() + 60
            while "subscribed" not in log.read_text():
                if time.time() > deadline or serve.poll() is not None:
                    raise SystemExit("serve did not start:\n" + log.read_text()[-3000:])
                time.sleep(0.1)
            names = [f"bench-{i:05d}" for i in range(devices)]
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            procs = [ctx.Process(target=publisher, args=(broker.port, k, names[k::pubs], msgs_per_device, per_msg,
                                                           100, 0.0, out)) for k in range(pubs)]
            t0 = time.time()
            for p in procs:
                p.start()
            for _ in procs:
                out.get(timeout=1800)
            for p in procs:
                p.join()
            store = open_store(db)
            while (n := store.count_results()) < total:
                if time.time() - t0 > 1800:
                    raise SystemExit(f"only {n} of {total} results stored")
                time.sleep(0.1)
            t_all = time.time() - t0
            once = store._q("SELECT count(*) FROM (SELECT device FROM results GROUP BY device, boot, seq) t")[0][0]
        finally:
            serve.terminate()
            serve.wait(30)
            if store is not None:
                store.close()
    assert once == total, f"{backend}: {once} distinct results of {total}"
    return {"results": total, "results_per_s": total / t_all, "seconds": t_all}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=60, help="batches of 1,000 per round (split among writers)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 20 batches")
    ap.add_argument("--ingest", type=int, default=0, metavar="N",
                    help="also N results through Mosquitto and `serve --role ingest` into each backend")
    ap.add_argument("--skip-store", action="store_true", help="only the --ingest measurement")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.batches = 2, 20
    from pg import PgServer, missing_reason

    reason = missing_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    m = machine()
    load_before = os.getloadavg()
    print(f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; load average {load_before[0]:.2f} "
          "(other work shares these cores)", flush=True)
    one = [batches(1, args.batches, range(DEVICES))]
    two = [batches(2, args.batches // 2, range(0, DEVICES, 2)), batches(3, args.batches // 2, range(1, DEVICES, 2))]
    configs = [(backend, writers) for writers in (1, 2) for backend in ("sqlite", "postgresql")]
    rounds: dict[str, list[dict]] = {f"{b}/{w}": [] for b, w in configs}
    with PgServer(fsync=True) as server, tempfile.TemporaryDirectory() as tmp:
        pg_version = subprocess.run([str(server.bin / "postgres"), "--version"], capture_output=True,
                                    text=True).stdout.strip()
        for r in range(0 if args.skip_store else args.rounds):
            for backend, writers in configs:
                db = str(Path(tmp) / f"s{r}-{writers}.db") if backend == "sqlite" else server.create_db("bench")
                got = run(db, one if writers == 1 else two)
                rounds[f"{backend}/{writers}"].append(got)
                print(f"round {r + 1}: {backend:10} {writers} writer(s) {got['results_per_s']:9,.0f} results/s",
                      flush=True)
        ingest = {}
        for backend in ("sqlite", "postgresql") if args.ingest else ():
            db = str(Path(tmp) / "ingest.db") if backend == "sqlite" else server.create_db("ingest")
            ingest[backend] = ingest_run(backend, db, args.ingest, Path(tmp))
            print(f"ingest end to end: {backend:10} {ingest[backend]['results_per_s']:9,.0f} results/s "
                  f"({ingest[backend]['results']:,} stored once)", flush=True)
    if args.skip_store:
        return 0 if not ingest else _write_ingest_only(ingest, pg_version)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("results_per_s", "client_cpu_s_per_10k")}
           for k, v in rounds.items()}
    import sqlite3

    load_after = os.getloadavg()
    print(f"\nstore writes, {DEVICES} devices, batches of {BATCH}, durable commits, medians of {args.rounds} rounds")
    print(f"{'writers':>8} {'SQLite (FULL)':>16} {'PostgreSQL':>16}   results/s")
    for w in (1, 2):
        print(f"{w:>8} {med[f'sqlite/{w}']['results_per_s']:>16,.0f} {med[f'postgresql/{w}']['results_per_s']:>16,.0f}")
    write_report("store_postgres", {
        "what": "Store.write_batch results/s, batches of 1,000 from 2,000 devices, 1% lost (loss accounting on), "
                "durable commits; two writers = two processes, disjoint devices, same file/database",
        "sqlite": sqlite3.sqlite_version, "postgresql": pg_version, "devices": DEVICES, "batch": BATCH,
        "batches_per_round": args.batches, "rounds": args.rounds,
        "note": "2 cores shared with other work; the PostgreSQL server runs on the same machine",
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "median": med, "runs": rounds,
        **({"ingest_end_to_end": {"what": "2 publishers (QoS 1, 10 results/message, 200 devices) -> Mosquitto -> "
                                          "serve --role ingest -> store, one run per backend",
                                  **ingest}} if ingest else {})})
    return 0


def _write_ingest_only(ingest: dict, pg_version: str) -> int:
    for backend, got in ingest.items():
        print(f"{backend:10} {got['results_per_s']:9,.0f} results/s end to end")
    write_report("store_postgres_ingest", {"postgresql": pg_version, "ingest_end_to_end": ingest,
                                           "note": "one run per backend; 2 cores shared with other work"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
