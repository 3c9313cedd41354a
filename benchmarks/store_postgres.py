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
`edgefleet serve --role ingest` (child processes; `--ingest-procs 1,2,3` on one shared-subscription
group) -> the store; results/s until all N are stored, each once, and the cores each part used
(publishers, broker, ingest and PostgreSQL share the machine's).
"""

from __future__ import annotations

import argparse
import json
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


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (the PostgreSQL server's backends and helpers)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _sched(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) over all threads of `pid` so far: the
    wait is what other work on the shared cores took from it (/proc/PID/task/*/schedstat)."""
    run = wait = 0
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            try:
                a, b, _ = (t / "schedstat").read_text().split()
                run, wait = run + int(a), wait + int(b)
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return run / 1e9, wait / 1e9


def _timed_publisher(port, k, names, msgs, per_msg, window, rate, out, cpu_out) -> None:
    """benchmarks/ingest_throughput.py's publisher, then the CPU seconds it used and its run-queue wait."""
    from ingest_throughput import publisher

    publisher(port, k, names, msgs, per_msg, window, rate, out)
    r = resource.getrusage(resource.RUSAGE_SELF)
    cpu_out.put((r.ru_utime + r.ru_stime, _sched(os.getpid())[1]))


def ingest_run(backend: str, db: str, total: int, work: Path, procs_n: int = 1, pg_pid: int | None = None, *,
               pubs: int = 2, window: int = 100, env_extra: dict | None = None, trace: bool = False,
               drain: bool = False) -> dict:
    """Publishers -> Mosquitto -> `procs_n` x `serve --role ingest` (one shared-subscription group) ->
    `db`; results/s until every one is stored, the cores each part used meanwhile, the share of the
    wall time each part waited for a core (other work), and when the publishers were done.
    `window`: unacknowledged QoS 1 publishes per publisher; `env_extra`: EDGEFLEET_* for serve;
    `trace`: serve writes one JSON line per batch (`ingest_phases.py`), returned as `trace`.
    `drain`: ingest subscribes, stops, the publishers fill its sessions at the broker, ingest starts again
    and is timed from its first message to the last result stored: ingest and the store alone, without
    the publishers taking the same cores meanwhile."""
    from edgefleet.service.broker import start_broker

    devices, per_msg = 200, 10
    msgs_per_device = max(1, total // (devices * per_msg))
    total = msgs_per_device * devices * per_msg
    tag = f"{backend}-{procs_n}"
    with start_broker(prefer="mosquitto", workdir=work / f"broker-{tag}") as broker:
        env = dict(os.environ, EDGEFLEET_SQLITE_SYNC="FULL", EDGEFLEET_STATS_INTERVAL_S="5", **(env_extra or {}))
        logs = [work / f"serve-{tag}-{i}.log" for i in range(procs_n)]
        traces = [work / f"trace-{tag}-{i}-{time.time_ns()}.jsonl" for i in range(procs_n)]
        trace = trace or drain

        def start(logs: list[Path]) -> list[subprocess.Popen]:
            serves = [subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--role", "ingest", "--broker",
                                        broker.url, "--db", db, "--client-id", f"bench-{tag}-{i}", "--group",
                                        f"bench-{tag}"], cwd=ROOT, stderr=open(log, "w"),
                                       env=dict(env, EDGEFLEET_INGEST_TRACE=str(traces[i])) if trace else env)
                      for i, log in enumerate(logs)]
            deadline = time.time() + 90
            while not all(("subscribed" if not drain or log.name.startswith("serve-") else "connected") in log.read_text()
                          for log in logs):
                if time.time() > deadline or any(p.poll() is not None for p in serves):
                    raise SystemExit("serve did not start:\n" + "".join(x.read_text()[-2000:] for x in logs))
                time.sleep(0.05)
            return serves

        serves = start(logs)
        store = None
        try:
            if drain:  # the sessions and their subscriptions exist now: stop ingest, let the broker keep them
                for p in serves:
                    p.terminate()
                for p in serves:
                    p.wait(30)
            names = [f"bench-{i:05d}" for i in range(devices)]
            ctx = mp.get_context("spawn")
            out, cpu_out = ctx.Queue(), ctx.Queue()
            procs = [ctx.Process(target=_timed_publisher, args=(broker.port, k, names[k::pubs], msgs_per_device,
                                                                 per_msg, window, 0.0, out, cpu_out)) for k in range(pubs)]
            if drain:
                for p in procs:
                    p.start()
                pub_out = [out.get(timeout=1800) for _ in procs]
                pub_cpu_wait = [cpu_out.get(timeout=60) for _ in procs]
                t_pub = max(p["seconds"] for p in pub_out)
                for p in procs:
                    p.join()
                serves = start([work / f"drain-{tag}-{i}.log" for i in range(procs_n)])
            pg_parts = _children(pg_pid) if pg_pid else []
            broker_pid = broker._proc.pid if broker._proc else None
            before = {"ingest": sum(_cpu_s(p.pid) for p in serves), "broker": _cpu_s(broker_pid) if broker_pid else 0.0,
                      "postgresql": sum(_cpu_s(x) for x in pg_parts)}
            waits0 = {"ingest": sum(_sched(p.pid)[1] for p in serves),
                      "postgresql": sum(_sched(x)[1] for x in pg_parts)}
            t0 = t_cpu = time.time()
            if not drain:
                for p in procs:
                    p.start()
                pub_out = [out.get(timeout=1800) for _ in procs]
                t_pub = time.time() - t0
                pub_cpu_wait = [cpu_out.get(timeout=60) for _ in procs]
                for p in procs:
                    p.join()
            pub_cpu = 0.0 if drain else sum(c for c, _ in pub_cpu_wait)
            store = open_store(db)
            while (n := store.count_results()) < total:
                if time.time() - t0 > 1800:
                    raise SystemExit(f"only {n} of {total} results stored")
                time.sleep(0.1)
            t_all = time.time() - t0
            if drain:  # from the first message taken (the trace: a batch's t less its time through ingest)
                firsts = [(b := json.loads(t.read_text().splitlines()[0]))["t"] - sum(
                    b[k] for k in ("fill", "decode", "taken", "write", "alarms", "ack")) / 1e3
                    for t in traces if t.exists() and t.stat().st_size]
                t_all = time.time() - min(firsts)
            t_cpu = time.time() - t_cpu
            pg_now = set(_children(pg_pid)) | set(pg_parts) if pg_pid else set()
            after = {"ingest": sum(_cpu_s(p.pid) for p in serves), "broker": _cpu_s(broker_pid) if broker_pid else 0.0,
                     "postgresql": sum(_cpu_s(x) for x in pg_now)}
            waits = {"ingest": sum(_sched(p.pid)[1] for p in serves) - waits0["ingest"],
                     "publishers": 0.0 if drain else sum(w for _, w in pub_cpu_wait)}
            if pg_pid:
                waits["postgresql"] = sum(_sched(x)[1] for x in pg_now) - waits0["postgresql"]
            stored = store.count_results()
        finally:
            for p in serves:
                p.terminate()
            for p in serves:
                p.wait(30)
            if store is not None:
                store.close()
    assert stored == total, f"{tag}: {stored} results stored of {total}"  # (device, boot, seq) is the key
    cores = {k: round((after[k] - before[k]) / t_cpu, 2) for k in after if k != "postgresql" or pg_pid}
    cores["publishers"] = round(pub_cpu / t_all, 2)
    return {"ingest_processes": procs_n, "results": total, "results_per_s": total / t_all, "seconds": t_all,
            "cores_used": cores, "publish_seconds": round(t_pub, 2),
            "publisher_window_wait_share": round(sum(p["window_wait_s"] for p in pub_out) / (pubs * t_pub), 3),
            "waiting_for_a_core": {k: round(v / t_cpu, 2) for k, v in waits.items()}, "drain": drain,
            "load_average_1min": round(os.getloadavg()[0], 2),
            **({"trace": [[json.loads(x) for x in t.read_text().splitlines()] if t.exists() else [] for t in traces]}
               if trace else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=60, help="batches of 1,000 per round (split among writers)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 20 batches")
    ap.add_argument("--ingest", type=int, default=0, metavar="N",
                    help="also N results through Mosquitto and `serve --role ingest` into each backend")
    ap.add_argument("--ingest-procs", type=lambda v: [int(x) for x in v.split(",")], default=[1],
                    help="numbers of ingest processes to run --ingest with, e.g. 1,2,3 (default 1)")
    ap.add_argument("--skip-store", action="store_true", help="only the --ingest measurement")
    ap.add_argument("--repeats", type=int, default=1,
                    help="--ingest runs per configuration, interleaved (backends and process counts alternate)")
    ap.add_argument("--drain", action="store_true",
                    help="also time ingest draining the broker's queued messages, publishers done before it starts "
                         "(keys BACKEND/N/drain)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.batches = 2, 20
    from pg import missing_reason

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
    from pg import PgServer

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
        runs: dict[str, list[dict]] = {}
        pg_pid = int((server.data / "postmaster.pid").read_text().split()[0])
        for r in range(args.repeats if args.ingest else 0):
            for n, drain, backend in [(n, d, b) for n in args.ingest_procs for d in (False, True)[:1 + args.drain]
                                  for b in ("sqlite", "postgresql")]:
                db = (str(Path(tmp) / f"ingest-{n}-{r}-{drain}.db") if backend == "sqlite"
                      else server.create_db("ingest"))
                got = ingest_run(backend, db, args.ingest, Path(tmp), n, pg_pid if backend == "postgresql" else None,
                                 drain=drain)
                got.pop("trace", None)
                runs.setdefault(f"{backend}/{n}" + "/drain" * drain, []).append(got)
                print(f"ingest {'drain' if drain else 'end to end'}, round {r + 1}: {backend:10} {n} process(es) "
                      f"{got['results_per_s']:9,.0f} "
                      f"results/s ({got['results']:,} stored once, load {got['load_average_1min']}); cores used "
                      f"{got['cores_used']}; waiting for a core {got['waiting_for_a_core']}", flush=True)
    ingest = {k: _median_run(v) for k, v in runs.items()}
    if args.skip_store:
        return 0 if not ingest else _write_ingest_only(ingest, runs, pg_version)
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
                                          "N x serve --role ingest (shared subscription) -> store; the median run of "
                                          "each; cores_used = CPU seconds of each part / wall seconds",
                                  **ingest}, "ingest_repeats": _repeats(runs)} if ingest else {})})
    return 0


def _median_run(runs: list[dict]) -> dict:
    """The run with the median results/s (the lower middle one of an even number): a real run, so its
    cores and its rate belong together."""
    return sorted(runs, key=lambda g: g["results_per_s"])[(len(runs) - 1) // 2]


def _repeats(runs: dict[str, list[dict]]) -> dict:
    return {k: {"results_per_s": [round(g["results_per_s"]) for g in v],
                "median_results_per_s": round(statistics.median(g["results_per_s"] for g in v)),
                "cores_used": [g["cores_used"] for g in v],
                "waiting_for_a_core": [g["waiting_for_a_core"] for g in v],
                "load_average_1min": [g["load_average_1min"] for g in v]} for k, v in runs.items()}


def _write_ingest_only(ingest: dict, runs: dict[str, list[dict]], pg_version: str) -> int:
    reps = _repeats(runs)
    for key, got in ingest.items():
        print(f"{key:14} median {reps[key]['median_results_per_s']:9,} results/s end to end of "
              f"{reps[key]['results_per_s']}; median run's cores used {got['cores_used']}")
    write_report("store_postgres_ingest", {
        "postgresql": pg_version, "ingest_end_to_end": ingest, "repeats": reps,
        "what": "2 publishers (QoS 1, 10 results/message, 200 devices) -> Mosquitto -> N x serve --role ingest "
                "(shared subscription) -> store; ingest_end_to_end: each configuration's median run; repeats: all "
                "runs, interleaved; waiting_for_a_core: seconds runnable but not running (other work) / wall seconds",
        "note": "2 cores shared with other work; the PostgreSQL server runs on the same machine"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
