"""Ingest throughput: publishers -> Mosquitto -> `edgefleet serve` (a real child process) -> SQLite.

Prints results/s stored and node-to-store latency (p50/p99: result timestamp set at
publish time -> the commit that stored it), and writes JSON to
benchmarks/results/ingest_throughput.json.

    .venv/bin/python benchmarks/ingest_throughput.py [--results 200000] [--per-msg 10] [--publishers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _report import write_report  # noqa: E402

from edgefleet import protocol  # noqa: E402
from edgefleet.service.broker import start_broker  # noqa: E402


def publisher(port: int, index: int, devices: list[str], msgs_per_device: int, per_msg: int, window: int,
              msg_rate: float, out: mp.Queue) -> None:
    """QoS 1, at most `window` unacknowledged, `msg_rate` messages/s (0: as fast as possible);
    timestamps are wall-clock at publish."""
    slots = threading.BoundedSemaphore(window)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{index}", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(window)
    c.on_publish = lambda *a: slots.release()
    c.connect("127.0.0.1", port)
    c.loop_start()
    sent_bytes = 0
    blocked = 0.0  # seconds spent waiting for a free slot of the window (the broker's PUBACKs)
    t0 = time.time()
    k = 0
    for i in range(msgs_per_device):
        for dev in devices:
            if msg_rate:
                k += 1
                ahead = t0 + k / msg_rate - time.time()
                if ahead > 0:
                    time.sleep(ahead)
            now = int(time.time() * 1000)
            res = [{"seq": i * per_msg + j, "ts": now, "score": 0.0123, "anom": False, "inf_us": 410}
                   for j in range(per_msg)]
            payload = protocol.encode("result", protocol.result_message("0badc0de", 1, 0.05, res))
            if not slots.acquire(blocking=False):
                b0 = time.perf_counter()
                slots.acquire()
                blocked += time.perf_counter() - b0
            c.publish(protocol.topic(dev, "result"), payload, qos=1)
            sent_bytes += len(payload)
    for _ in range(window):
        slots.acquire()
    out.put({"seconds": time.time() - t0, "bytes": sent_bytes, "window_wait_s": blocked})
    c.disconnect()
    c.loop_stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=200_000)
    ap.add_argument("--per-msg", type=int, default=10, help="results per MQTT message (a node's batch)")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--window", type=int, default=100, help="unacknowledged QoS 1 publishes per publisher")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="offered load in results/s over all publishers (0: as fast as possible, which "
                    "measures capacity; latency is then queueing time)")
    ap.add_argument("--sync", default="FULL", help="SQLite synchronous setting of the store")
    ap.add_argument("--name", default="ingest_throughput", help="report name under benchmarks/results/")
    a = ap.parse_args()
    msgs_per_device = max(1, a.results // (a.devices * a.per_msg))
    total = msgs_per_device * a.devices * a.per_msg
    work = Path(tempfile.mkdtemp(prefix="ef-bench-"))
    db = work / "bench.db"
    with start_broker(prefer="mosquitto", workdir=work / "broker") as broker:
        env = dict(os.environ, EDGEFLEET_SQLITE_SYNC=a.sync, EDGEFLEET_STATS_INTERVAL_S="5")
        serve = subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", broker.url, "--db", str(db),
                                  "--client-id", "bench-ingest"], cwd=REPO, env=env,
                                 stderr=open(work / "serve.log", "w"))
        try:
            deadline = time.time() + 30
            while "subscribed" not in (work / "serve.log").read_text():
                if time.time() > deadline or serve.poll() is not None:
                    raise SystemExit("serve did not start:\n" + (work / "serve.log").read_text())
                time.sleep(0.1)
            devices = [f"bench-{i:05d}" for i in range(a.devices)]
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            procs = [ctx.Process(target=publisher, args=(broker.port, k, devices[k::a.publishers], msgs_per_device,
                                                           a.per_msg, a.window, a.rate / a.per_msg / a.publishers, out)) for k in range(a.publishers)]
            t0 = time.time()
            for p in procs:
                p.start()
            pubs = [out.get(timeout=1800) for _ in procs]
            for p in procs:
                p.join()
            t_pub = time.time() - t0
            con = sqlite3.connect(db, timeout=30)
            while (n := con.execute("SELECT count(*) FROM results").fetchone()[0]) < total:
                if time.time() - t0 > 1800:
                    raise SystemExit(f"only {n} of {total} results stored")
                time.sleep(0.2)
            t_all = time.time() - t0
            lags = sorted(r[0] for r in con.execute("SELECT ingest_ts - ts FROM results"))
            dups = con.execute("SELECT coalesce(sum(duplicates), 0) FROM ingest_stats").fetchone()[0]
            con.close()
        finally:
            serve.terminate()
            serve.wait(30)
    pct = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
    wire = sum(p["bytes"] for p in pubs)
    report = {
        "benchmark": "ingest_throughput",
        "note": "publishers, Mosquitto and `edgefleet serve` share this machine's cores",
        "params": {"results": total, "per_msg": a.per_msg, "devices": a.devices, "publishers": a.publishers,
                   "window": a.window, "offered_results_per_s": a.rate or "max", "sqlite_synchronous": a.sync, "qos": 1},
        "results_per_s": round(total / t_all, 1),
        "messages_per_s": round(total / a.per_msg / t_all, 1),
        "publish_results_per_s": round(total / t_pub, 1),
        "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": lags[-1]},
        "stored": total, "duplicates": dups,
        "payload_bytes_per_result": round(wire / total, 1),
        "seconds": round(t_all, 2), "publish_seconds": round(t_pub, 2),
    }
    out_path = write_report(a.name, report)
    print(f"{total} results ({total // a.per_msg} messages of {a.per_msg}) stored in {t_all:.1f} s: "
          f"{report['results_per_s']:.0f} results/s, {report['messages_per_s']:.0f} msg/s; "
          f"latency p50 {report['latency_ms']['p50']} ms, p99 {report['latency_ms']['p99']} ms; "
          f"{report['payload_bytes_per_result']} payload bytes/result -> {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
