"""A broker member killed mid-load: what is lost, what is duplicated, how long until it recovers.

Everything real on this machine: a 3-member NATS cluster (edgefleet/service/cluster.py: MQTT 3.1.1
gateway, JetStream, sessions and messages replicated on all 3), `edgefleet serve --role ingest` on
member 3 (its own), `edgefleet sim` with the nodes spread round-robin over members 1 and 2. At
--kill-at seconds one member gets SIGKILL:
- `--victim node`: member 1, which half the nodes use: they move to member 2;
- `--victim ingest`: member 3, ingest's own: ingest moves to another member and resumes its
  persistent session there (--broker lists every member).
The victim is started again --restart-after seconds later (0: never). Then, from the sim's report
and the store:
- windows made by the nodes, results the broker acknowledged, results stored (unique), duplicates
  the ledger dropped, the store's loss accounting (`edgefleet stats --json`: missing, pending_gaps,
  dropped_on_node), and lost = windows - stored - still on the nodes - dropped on the nodes;
- time to recover: from the kill until every moved node's results reach the store again, and the
  longest pause in the store's ingest times.

    .venv/bin/python benchmarks/broker_cluster.py                         # both victims, 500 nodes, 60 s
    .venv/bin/python benchmarks/broker_cluster.py --nodes 60 --duration 20 --kill-at 8 --victim node --out x.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_report  # noqa: E402

from edgefleet.service.cluster import NatsCluster, start_cluster  # noqa: E402


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgefleet", *args]


def _wait_stored_stable(db: Path, expected: int, quiet_s: float = 10.0, timeout: float = 120.0) -> int:
    """Results in the store once `expected` are there, or the count has not moved for quiet_s (ingest
    has caught up with what it will get; a loaded machine can pause it for seconds)."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline and last < expected:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
                n = c.execute("SELECT count(*) FROM results").fetchone()[0]
        except sqlite3.Error:
            n = -1
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return n
        time.sleep(0.5)
    return last


def recovery(db: Path, kill_ms: int, moved: list[str]) -> dict:
    """From the store's ingest times: seconds from the kill until each moved device's first result
    stored after it (max and median), and the longest pause of the whole ingest stream after the kill."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        firsts = [r[0] for d in moved if (r := c.execute(
            "SELECT min(ingest_ts) FROM results WHERE device = ? AND ingest_ts >= ?", (d, kill_ms)).fetchone())[0]]
        ts = [r[0] for r in c.execute("SELECT DISTINCT ingest_ts FROM results WHERE ingest_ts >= ? ORDER BY 1",
                                      (kill_ms - 5000,))]
    waits = [(t - kill_ms) / 1000 for t in firsts]
    gaps = [(b - a) / 1000 for a, b in zip(ts, ts[1:])]
    return {"moved_devices": len(moved), "moved_devices_back": len(firsts),
            "moved_first_result_s": {"max": max(waits), "median": statistics.median(waits)} if waits else None,
            "longest_ingest_pause_s": max(gaps) if gaps else None}


def run_once(*, nodes: int, duration: float, kill_at: float, victim: str, restart_after: float,
             work: Path, period: float = 1.0) -> dict:
    """One run with one member killed; returns the figures (see the module docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    db = work / "fleet.db"
    cluster: NatsCluster = start_cluster(3, workdir=work / "nats")
    procs: list[subprocess.Popen] = []
    try:
        m1, m2, m3 = cluster.members
        node_urls = f"{m1.url},{m2.url}"
        ingest_urls = f"{m3.url},{m1.url},{m2.url}"  # its own member first, the others to move to
        env = dict(os.environ, EDGEFLEET_STATS_INTERVAL_S="5", PYTHONUNBUFFERED="1")
        serve_log = (work / "serve.log").open("w")
        serve = subprocess.Popen(_cli("serve", "--role", "ingest", "--broker", ingest_urls, "--db", str(db)),
                                 cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=serve_log,
                                 start_new_session=True)
        procs.append(serve)
        _wait_for_log(work / "serve.log", "subscribed to", 60.0, serve)
        report = work / "sim.json"
        sim_log = (work / "sim.log").open("w")
        sim = subprocess.Popen(_cli("sim", "--broker", node_urls, "--nodes", str(nodes), "--faulty", "0",
                                    "--no-commission", "--ota-key", "none", "--period", str(period),
                                    "--duration", str(duration), "--report", str(report)),
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=sim_log, start_new_session=True)
        procs.append(sim)
        _wait_for_log(work / "sim.log", "sim:", 60.0, sim)
        member = {"node": m1, "ingest": m3}[victim]
        killed: dict = {}

        def kill() -> None:
            killed["ms"] = int(time.time() * 1000)
            member.kill()
            if restart_after > 0:
                time.sleep(restart_after)
                member.start()
                killed["restarted_ms"] = int(time.time() * 1000)

        timer = threading.Timer(kill_at, kill)
        timer.start()
        if sim.wait(duration + 180) != 0:
            raise SystemExit(f"sim failed, see {work / 'sim.log'}")
        timer.join()
        sim_report = json.loads(report.read_text())
        stored = _wait_stored_stable(db, sum(v["last_seq"] + 1 for v in sim_report["per_device"].values())
                                     - sim_report["pending"] - sim_report["dropped"])
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        stats = json.loads(subprocess.run(_cli("stats", "--db", str(db), "--json"), cwd=REPO, capture_output=True,
                                          text=True, timeout=60, check=True).stdout)
        per_device = sim_report["per_device"]
        # device i used member i mod 2 at start (round-robin over node_urls): member 1 = even indices
        moved = sorted(d for i, d in enumerate(sorted(per_device)) if i % 2 == 0) if victim == "node" \
            else sorted(per_device)
        windows = sum(v["last_seq"] + 1 for v in per_device.values())
        on_nodes = sim_report["pending"] + sim_report["dropped"]
        return {
            "victim": victim, "nodes": nodes, "duration_s": duration, "kill_at_s": kill_at,
            "restart_after_s": restart_after,
            "windows": windows, "broker_acked": sim_report["published"], "stored": stored,
            "lost": windows - stored - on_nodes,
            "still_on_nodes": sim_report["pending"], "dropped_on_nodes": sim_report["dropped"],
            "duplicates": stats["duplicates"], "missing": stats["missing"], "pending_gaps": stats["pending_gaps"],
            "dropped_on_node": stats["dropped_on_node"], "stats_results": stats["results"],
            "sim_failovers": sim_report["failovers"], "sim_disconnects": sim_report["disconnects"],
            "sim_connects": sim_report["connects"],
            "ingest_connects": _count_in_log(work / "serve.log", "subscribed to"),
            "recovery": recovery(db, killed["ms"], moved),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        cluster.stop()


def _wait_for_log(path: Path, text: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[3]} exited with {proc.returncode}: {path.read_text()[-1500:]}")
        time.sleep(0.2)
    raise SystemExit(f"no {text!r} in {path} after {timeout:g} s")


def _count_in_log(path: Path, text: str) -> int:
    return path.read_text(errors="replace").count(text)


def summarize(runs: list[dict]) -> dict:
    """Medians over the runs, and the worst run's loss (one bad run in three must show)."""
    rec = [r["recovery"] for r in runs]
    med = {k: statistics.median(r[k] for r in runs) for k in ("lost", "duplicates", "missing", "pending_gaps")}
    med["moved_first_result_max_s"] = statistics.median(x["moved_first_result_s"]["max"] for x in rec)
    med["moved_first_result_median_s"] = statistics.median(x["moved_first_result_s"]["median"] for x in rec)
    med["longest_ingest_pause_s"] = statistics.median(x["longest_ingest_pause_s"] for x in rec)
    return {"median": med, "worst_lost": max(r["lost"] for r in runs),
            "worst_lost_share": max(r["lost"] / r["windows"] for r in runs),
            "runs_with_loss": sum(r["lost"] > 0 for r in runs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--kill-at", type=float, default=20.0)
    ap.add_argument("--restart-after", type=float, default=15.0)
    ap.add_argument("--victim", choices=["node", "ingest", "both"], default="both")
    ap.add_argument("--runs", type=int, default=1, help="runs per victim (figures: each run, and medians)")
    ap.add_argument("--out", type=Path, help="write the JSON here instead of benchmarks/results/")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory (logs, store, JetStream)")
    args = ap.parse_args()
    victims = ["node", "ingest"] if args.victim == "both" else [args.victim]
    results: dict = {}
    for v in victims:
        runs = []
        for i in range(args.runs):
            work = Path(tempfile.mkdtemp(prefix=f"ef-cluster-{v}-"))
            r = run_once(nodes=args.nodes, duration=args.duration, kill_at=args.kill_at, victim=v,
                         restart_after=args.restart_after, work=work)
            print(json.dumps(r), flush=True)
            runs.append(r)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        results[v] = {"runs": runs, **summarize(runs)}
    report = {"benchmark": "broker_cluster", "broker": "nats-server 3 members (MQTT 3.1.1, JetStream R3)",
              "note": "2-core x86_64 shared with other work; broker, ingest and sim on the same cores",
              "results": results}
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), **report}, indent=2) + "\n")
    else:
        write_report("broker_cluster", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
