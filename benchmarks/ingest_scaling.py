"""Ingest scaling (docs/store.md): results/s with one and two `edgefleet serve` processes on a shared
subscription, into SQLite and into a real InfluxDB-v2-write peer (VictoriaMetrics), beside a bare
paho subscriber that only counts, all through the same Mosquitto on this machine.

    .venv/bin/python benchmarks/ingest_scaling.py [--results 100000] [--per-msg 10]

Prints a table and writes benchmarks/results/ingest_scaling.json. Every scenario gets a fresh
broker and store; publishers, broker, ingest and the peer all share this machine's two cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _report import machine, write_report  # noqa: E402
from ingest_throughput import publisher  # noqa: E402

from edgefleet.protocol.connect import free_port  # noqa: E402
from edgefleet.service.broker import start_broker  # noqa: E402


def bare_subscriber(port: int, expected_msgs: int, ready, out) -> None:
    """A paho QoS 1 subscriber doing nothing but counting: the client library's ceiling here."""
    n = 0
    t_first = None

    def on_message(_c, _u, _m):
        nonlocal n, t_first
        t_first = t_first or time.time()
        n += 1

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("ef/v1/+/result", qos=1)
    c.loop_start()
    time.sleep(0.5)
    ready.set()
    deadline = time.time() + 1800
    while n < expected_msgs and time.time() < deadline:
        time.sleep(0.05)
    out.put(time.time())
    c.loop_stop()


def start_victoria(work: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("victoria-metrics")
    if not exe:
        raise SystemExit("victoria-metrics is not installed (apt-get install victoria-metrics)")
    port = free_port()
    proc = subprocess.Popen([exe, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={work / 'vm'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=0.5).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise SystemExit("victoria-metrics did not start")


def run(scenario: str, processes: int, influx: bool, a) -> dict:
    msgs_per_device = max(1, a.results // (a.devices * a.per_msg))
    total = msgs_per_device * a.devices * a.per_msg
    work = Path(tempfile.mkdtemp(prefix="ef-scale-"))
    db = work / "fleet.db"
    vm = None
    serves: list[subprocess.Popen] = []
    ctx = mp.get_context("spawn")
    with start_broker(prefer="mosquitto", workdir=work / "broker") as broker:
        try:
            env = dict(os.environ, EDGEFLEET_SQLITE_SYNC="NORMAL", EDGEFLEET_STATS_INTERVAL_S="5")
            if influx:
                vm, url = start_victoria(work)
                env.update(EDGEFLEET_INFLUX_URL=url, EDGEFLEET_INFLUX_TOKEN="unused",
                           EDGEFLEET_INFLUX_ORG="edgefleet", EDGEFLEET_INFLUX_BUCKET="telemetry")
            bare_done = None
            if scenario == "bare":
                ready, bare_done = ctx.Event(), ctx.Queue()
                sub = ctx.Process(target=bare_subscriber, args=(broker.port, total // a.per_msg, ready, bare_done))
                sub.start()
                ready.wait(30)
            else:
                for k in range(processes):
                    log = work / f"serve{k}.log"
                    serves.append(subprocess.Popen(
                        [sys.executable, "-m", "edgefleet", "serve", "--role", "ingest", "--broker", broker.url,
                         "--db", str(db), "--client-id", f"scale-{k}", "--group", "ingest" if processes > 1 else ""],
                        cwd=REPO, env=env, stderr=open(log, "w")))
                for k in range(processes):
                    log = work / f"serve{k}.log"
                    deadline = time.time() + 60
                    while "subscribed" not in log.read_text():
                        if time.time() > deadline or serves[k].poll() is not None:
                            raise SystemExit(f"serve did not start:\n{log.read_text()}")
                        time.sleep(0.1)
            devices = [f"bench-{i:05d}" for i in range(a.devices)]
            out = ctx.Queue()
            procs = [ctx.Process(target=publisher, args=(broker.port, k, devices[k::a.publishers], msgs_per_device,
                                                           a.per_msg, a.window, 0.0, out)) for k in range(a.publishers)]
            t0 = time.time()
            for p in procs:
                p.start()
            for _ in procs:
                out.get(timeout=1800)
            for p in procs:
                p.join()
            if bare_done is not None:
                t_end = bare_done.get(timeout=1800)
            else:
                con = sqlite3.connect(db, timeout=30)
                while con.execute("SELECT count(*) FROM results").fetchone()[0] < total:
                    if time.time() - t0 > 1800:
                        raise SystemExit("results missing")
                    time.sleep(0.1)
                t_end = time.time()
                con.close()
        finally:
            for s in serves:
                s.terminate()
                s.wait(30)
            if vm:
                vm.terminate()
                vm.wait(30)
    secs = t_end - t0
    return {"scenario": scenario, "processes": processes, "store": "influx(v2 write: VictoriaMetrics)+sqlite ledger"
            if influx else ("none" if scenario == "bare" else "sqlite"),
            "results": total, "seconds": round(secs, 2), "results_per_s": round(total / secs, 1),
            "messages_per_s": round(total / a.per_msg / secs, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=100_000)
    ap.add_argument("--per-msg", type=int, default=10)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--window", type=int, default=100)
    a = ap.parse_args()
    print(f"machine: {machine()}")
    rows = []
    for scenario, procs, influx in [("bare", 1, False), ("sqlite", 1, False), ("sqlite", 2, False),
                                    ("influx", 1, True), ("influx", 2, True)]:
        r = run(scenario, procs, influx, a)
        rows.append(r)
        print(f"  {scenario:7} x{procs}: {r['results_per_s']:9.0f} results/s ({r['messages_per_s']:.0f} msg/s)", flush=True)
    bare = rows[0]["results_per_s"]
    for r in rows:
        r["ratio_to_bare_paho"] = round(r["results_per_s"] / bare, 3)
    print(f"\n{'scenario':10} {'procs':>5} {'results/s':>10} {'x bare paho':>11}")
    for r in rows:
        print(f"{r['scenario']:10} {r['processes']:5d} {r['results_per_s']:10.0f} {r['ratio_to_bare_paho']:11.2f}")
    write_report("ingest_scaling", {"benchmark": "ingest_scaling", "per_msg": a.per_msg, "qos": 1, "rows": rows,
                                    "note": "all processes share the machine's cores"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
