"""What TLS costs the fleet: N simulated nodes (one MQTT v5 connection each, one window per second)
against Mosquitto over plain TCP, TLS (server certificate checked, host name included) and mutual
TLS (a client certificate per node, made here with `edgefleet pki`), side by side in one run.

Per mode: time from start until every node is connected, results acknowledged per second (PUBACK),
window -> PUBACK latency, CPU of the simulator process and of Mosquitto per second. Modes alternate
over --rounds so that other work on the (shared) machine hits them alike. Writes
benchmarks/results/tls_overhead.json.

    .venv/bin/python benchmarks/tls_overhead.py --nodes 1000 --duration 30 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import write_report  # noqa: E402
from device_sim.fleet import Fleet, FleetOptions  # noqa: E402
from device_sim.link import LinkOptions  # noqa: E402
from device_sim.plant import make_plant  # noqa: E402
from edgefleet.commands.sim import default_model  # noqa: E402
from edgefleet.protocol.connect import TlsFiles, tls_context  # noqa: E402
from edgefleet.runtime.artifact import load_artifact  # noqa: E402
from edgefleet.service import pki  # noqa: E402
from edgefleet.service.broker import TlsListener, start_broker  # noqa: E402

MODES = ("plain", "tls", "mtls")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mode(mode: str, pki_dir: Path, artifact, plant, args, work: Path) -> dict:
    tls_listener = None
    if mode != "plain":
        from edgefleet.protocol.connect import free_port

        tls_listener = TlsListener.from_pki(pki_dir, free_port(), require_certificate=mode == "mtls")
    with start_broker(prefer="mosquitto", tls=tls_listener, workdir=work / mode) as b:
        port = tls_listener.port if tls_listener else b.port
        tls = None
        if mode == "tls":
            shared = tls_context(TlsFiles(str(pki_dir / "ca.crt")))
            tls = lambda _dev: shared  # noqa: E731
        elif mode == "mtls":
            contexts = {n.device_id: tls_context(TlsFiles(str(pki_dir / "ca.crt"), str(pki_dir / f"{n.device_id}.crt"),
                                                          str(pki_dir / f"{n.device_id}.key")))
                        for n in plant.nodes}
            tls = contexts.__getitem__
        fleet = Fleet(plant, artifact, LinkOptions("127.0.0.1", port, tls=tls),
                      FleetOptions(shards=args.shards, seed=0))
        try:
            t0 = time.perf_counter()
            fleet.start()
            ok = fleet.wait_connected(1.0, timeout=180)
            connect_s = time.perf_counter() - t0
            time.sleep(1.0)
            me0, mq0, w0 = time.process_time(), cpu_seconds(b.pid), time.perf_counter()
            runner = threading.Thread(target=fleet.run, args=(args.duration,))
            runner.start()
            runner.join()
            wall = time.perf_counter() - w0
            drained = fleet.drain(30)
            me1, mq1 = time.process_time(), cpu_seconds(b.pid)
        finally:
            fleet.shutdown()
    rep = fleet.report()
    return {"mode": mode, "all_connected": ok, "connect_s": round(connect_s, 2),
            "windows": rep["windows"], "published": rep["published"],
            "published_per_s": round(rep["published"] / wall, 1), "drained": drained,
            "dropped": rep["dropped"], "refused_connects": rep["refused_connects"],
            "disconnects": rep["disconnects"], "ack_latency_ms": rep["ack_latency_ms"],
            "sim_cpu_per_s": round((me1 - me0) / wall, 3),
            "sim_cpu_us_per_window": round((me1 - me0) * 1e6 / max(1, rep["windows"]), 1),
            "mosquitto_cpu_per_s": round((mq1 - mq0) / wall, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=30.0, help="measured seconds per mode, after all connect")
    ap.add_argument("--rounds", type=int, default=1, help="times each mode runs, alternating (default 1)")
    ap.add_argument("--shards", type=int, default=2)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, args.nodes * 3 + 1024), hard), hard))
    work = Path(tempfile.mkdtemp(prefix="tls-bench-"))
    pki_dir = work / "pki"
    t = time.perf_counter()
    pki.init(pki_dir, server_names=["localhost", "127.0.0.1"])
    plant = make_plant(args.nodes, n_faulty=0, seed=0)
    for n in plant.nodes:
        pki.issue(pki_dir, n.device_id)
    issue_s = time.perf_counter() - t
    model = default_model()
    artifact = load_artifact(model / "model.efm")
    load0 = round(os.getloadavg()[0], 2)
    runs = []
    for r in range(args.rounds):
        for mode in MODES:
            got = run_mode(mode, pki_dir, artifact, plant, args, work / f"r{r}")
            print(f"round {r} {mode:5s}: connect {got['connect_s']:.2f} s, {got['published_per_s']:.0f} results/s, "
                  f"sim {got['sim_cpu_per_s']:.3f} CPU/s, mosquitto {got['mosquitto_cpu_per_s']:.3f} CPU/s, "
                  f"ack p50 {got['ack_latency_ms']['p50'] if got['ack_latency_ms'] else '-'} ms", flush=True)
            runs.append(got)
    summary = {}
    for mode in MODES:
        mine = [x for x in runs if x["mode"] == mode]
        summary[mode] = {k: round(statistics.median(x[k] for x in mine), 3)
                         for k in ("connect_s", "published_per_s", "sim_cpu_per_s", "sim_cpu_us_per_window",
                                   "mosquitto_cpu_per_s")}
        summary[mode]["ack_p50_ms"] = round(statistics.median(x["ack_latency_ms"]["p50"] for x in mine), 2)
        summary[mode]["ack_p99_ms"] = round(statistics.median(x["ack_latency_ms"]["p99"] for x in mine), 2)
    for mode in ("tls", "mtls"):
        summary[mode]["sim_cpu_vs_plain"] = round(summary[mode]["sim_cpu_per_s"] / summary["plain"]["sim_cpu_per_s"], 2)
        summary[mode]["mosquitto_cpu_vs_plain"] = round(
            summary[mode]["mosquitto_cpu_per_s"] / max(1e-9, summary["plain"]["mosquitto_cpu_per_s"]), 2)
    print("\nmedians per mode:")
    for mode, s in summary.items():
        print(f"  {mode:5s} {s}")
    write_report("tls_overhead", {
        "benchmark": "tls_overhead", "nodes": args.nodes, "duration_s": args.duration, "rounds": args.rounds,
        "shards": args.shards, "model": str(model.relative_to(REPO)), "certificates_issued_s": round(issue_s, 2),
        "summary": summary, "runs": runs,
        "load_average_1m": {"before": load0, "after": round(os.getloadavg()[0], 2)},
        "note": "ECDSA P-256 certificates, TLS 1.2+ as negotiated by Python's ssl and Mosquitto 2.0.11 "
                "(TLS 1.3 here); one connection per node; machine shared with other work"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
