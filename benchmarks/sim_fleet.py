"""Fleet simulator load: N virtual nodes, one MQTT v5 connection each, one window per second.

Starts its own Mosquitto on a free port, runs the fleet in this process for a while and
prints what it sustained: connections, windows/s computed, results/s acknowledged by the
broker (PUBACK), window -> PUBACK latency, tick lateness, CPU of the simulator and of
Mosquitto. A separate subscriber process counts what the broker delivered, so the figure
is end to end through the broker. Writes benchmarks/results/sim_fleet[-<tag>].json.

    .venv/bin/python benchmarks/sim_fleet.py --nodes 2000 --duration 60
    .venv/bin/python benchmarks/sim_fleet.py --nodes 2000 --duration 60 --batch 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from device_sim.fleet import Fleet, FleetOptions  # noqa: E402
from device_sim.link import LinkOptions  # noqa: E402
from device_sim.plant import make_plant  # noqa: E402
from edgefleet.runtime.artifact import load_artifact  # noqa: E402
from edgefleet.commands.sim import default_model  # noqa: E402

COUNTER = r"""
import sys, time, json, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
n = {"msgs": 0, "results": 0, "bytes": 0}
def on_message(c, u, m):
    n["msgs"] += 1
    n["bytes"] += len(m.payload) + len(m.topic)
    n["results"] += m.payload.count(b'"seq"')
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=mqtt.MQTTv5)
c.on_message = on_message
c.on_connect = lambda c, u, f, rc, p: c.subscribe("ef/v1/+/result", qos=0)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
for line in sys.stdin:
    print(json.dumps(n), flush=True)
"""


def cpu_seconds(pid: int) -> float:
    """user+system CPU of a process from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds after all connect")
    ap.add_argument("--batch", type=int, default=1, help="results per message")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--faulty", type=int, default=20)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.nodes * 2 + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    exe = shutil.which("mosquitto")
    if exe is None:
        sys.exit("mosquitto is not installed")
    work = Path(tempfile.mkdtemp(prefix="sim-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([exe, "-c", str(work / "m.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    counter = subprocess.Popen([sys.executable, "-c", COUNTER, str(port)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)

    def count() -> dict:
        counter.stdin.write("\n")
        counter.stdin.flush()
        return json.loads(counter.stdout.readline())

    load0 = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure here
    model = args.model or default_model()
    artifact = load_artifact(model / "model.efm" if model.is_dir() else model)
    plant = make_plant(args.nodes, n_faulty=args.faulty, seed=0, fault_onset_s=(5, 20), fault_ramp_s=(20, 40))
    fleet = Fleet(plant, artifact, LinkOptions("127.0.0.1", port),
                  FleetOptions(shards=args.shards, results_per_message=args.batch))
    try:
        t0 = time.perf_counter()
        fleet.start()
        ok = fleet.wait_connected(1.0, timeout=120)
        connect_s = time.perf_counter() - t0
        print(f"{fleet.connected()}/{args.nodes} connected in {connect_s:.1f} s", flush=True)
        if not ok:
            print("not every node connected; measuring anyway", flush=True)
        time.sleep(1.0)
        c0, me0, mq0 = count(), time.process_time(), cpu_seconds(broker.pid)
        w0 = time.perf_counter()
        runner = threading.Thread(target=fleet.run, args=(args.duration,))
        runner.start()
        runner.join()
        wall = time.perf_counter() - w0
        drained = fleet.drain(30)
        time.sleep(1.0)
        c1, me1, mq1 = count(), time.process_time(), cpu_seconds(broker.pid)
    finally:
        fleet.shutdown()
        counter.kill()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    rep = fleet.report()
    per = rep.pop("per_device")
    # wire bytes per node-hour: results (topic + payload as delivered) vs raw int16 samples
    per_result = (c1["bytes"] - c0["bytes"]) / max(1, c1["results"] - c0["results"])
    rates = [n.fs for n in plant.nodes]
    window_samples = [artifact.features.params.window_s * fs for fs in rates]
    wire = {
        "result_bytes_per_node_hour": round(per_result * 3600),
        "raw_windows_bytes_per_node_hour": round(2 * 3600 * sum(window_samples) / len(rates)),
        "raw_stream_bytes_per_node_hour": round(2 * 3600 * sum(rates) / len(rates)),
        "note": "MQTT payload + topic only; raw = int16 samples of the same windows, or the "
                "continuous signal",
    }
    wire["ratio_vs_raw_windows"] = round(wire["raw_windows_bytes_per_node_hour"]
                                         / wire["result_bytes_per_node_hour"], 1)
    wire["ratio_vs_raw_stream"] = round(wire["raw_stream_bytes_per_node_hour"]
                                        / wire["result_bytes_per_node_hour"], 1)
    expected = args.nodes * args.duration
    result = {
        "benchmark": "sim_fleet", "nodes": args.nodes, "duration_s": args.duration,
        "results_per_message": args.batch, "shards": args.shards,
        "connect_s": round(connect_s, 2), "connected": sum(1 for d in per.values() if d["connects"]),
        "windows": rep["windows"], "windows_expected": int(expected),
        "windows_per_s": round(rep["windows"] / wall, 1),
        "published": rep["published"], "published_per_s": round(rep["published"] / wall, 1),
        "delivered_to_subscriber": c1["results"] - c0["results"],
        "messages_to_subscriber": c1["msgs"] - c0["msgs"],
        "payload_bytes_per_result": round(per_result, 1), "wire": wire,
        "drained": drained, "dropped": rep["dropped"], "pending": rep["pending"],
        "ack_latency_ms": rep["ack_latency_ms"], "late_ticks": rep["late_ticks"], "ticks": rep["ticks"],
        "skipped_windows": rep["skipped_windows"],
        "max_tick_lag_s": rep["max_tick_lag_s"],
        "compute_s_per_s": round(rep["compute_s"] / wall, 3),
        "sim_cpu_per_s": round((me1 - me0) / wall, 3),
        # CPU the simulator spent per window, everything included: what capacity depends on
        "sim_cpu_us_per_window": round((me1 - me0) * 1e6 / max(1, rep["windows"]), 1),
        "mosquitto_cpu_per_s": round((mq1 - mq0) / wall, 3),
        "disconnects": rep["disconnects"], "shard_errors": rep["shard_errors"],
        "model": str(model), "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_1m": {"before": load0, "after": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=1))
    out = REPO / "benchmarks" / "results" / f"sim_fleet{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
