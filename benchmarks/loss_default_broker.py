"""A loss the operator would not have seen: thousands of nodes through a broker with Debian's
default settings, where Mosquitto keeps 1,000 queued messages per session and drops the rest.

One run, everything real on this machine: Mosquitto with a minimal config (no queue settings),
`edgefleet serve`, `edgefleet sim` with `--nodes` nodes in `--procs` processes for `--duration`
seconds, then:
- true loss = results the nodes had acknowledged by the broker (the sim's report) - results stored;
- reported loss = the store's loss accounting (`edgefleet stats`: missing + pending, every hole
  counted whether settled or not) once ingest has taken everything the broker still held: first as
  ingest left it, then after the nodes' goodbyes the queue dropped are read back from the broker's
  retained statuses (edgefleet/service/goodbyes.py);
- where the true loss sits, per device from the sim's own record: inside the seq range the store
  knows (holes) or past it (a tail that no later seq and no goodbye revealed);
- what `edgefleet doctor` says of that broker.

    .venv/bin/python benchmarks/loss_default_broker.py                  # 10,000 nodes, 60 s
    .venv/bin/python benchmarks/loss_default_broker.py --nodes 2000 --duration 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402

from edgefleet.protocol.connect import free_port  # noqa: E402
from edgefleet.service.goodbyes import apply_marks, read_marks  # noqa: E402
from edgefleet.service.store import SQLiteStore  # noqa: E402


def wait_port(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def breakdown(store: SQLiteStore, per_device: dict) -> dict:
    """Where the true loss sits, per device, from the sim's own record (boot, last seq assigned,
    results the broker acknowledged) against the store: inside the range the store knows (holes),
    past the last seq the store knows of that boot (a tail no later seq or goodbye revealed), or in
    results never acknowledged (not part of the true loss)."""
    stored = dict(((d, b), (n, m)) for d, b, n, m in store._q(
        "SELECT device, boot, count(*), max(seq) FROM results GROUP BY device, boot"))
    known = {(d, b): m for d, b, m in store._q("SELECT device, boot, max_seq FROM boots")}
    out = {"devices": len(per_device), "tail_unseen": 0, "devices_with_tail_unseen": 0, "end_known": 0,
           "inside_known_range": 0, "unacked_at_end": 0}
    for dev, e in per_device.items():
        key = (dev, e["boot"])
        n, _ = stored.get(key, (0, -1))
        top = known.get(key, -1)
        out["end_known"] += top >= e["last_seq"]  # the last result or the goodbye arrived
        tail = max(0, e["last_seq"] - top)  # assigned past what the store knows of this boot
        out["tail_unseen"] += tail
        out["devices_with_tail_unseen"] += tail > 0
        out["inside_known_range"] += (min(top, e["last_seq"]) + 1) - n
        out["unacked_at_end"] += e["last_seq"] + 1 - e["published"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--duration", type=float, default=60.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ef-loss-"))
    port = free_port()
    conf = work / "mosquitto.conf"
    run_as = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{run_as}listener {port} 127.0.0.1\nallow_anonymous true\n")  # Debian's defaults otherwise
    url = f"mqtt://127.0.0.1:{port}"
    db = work / "fleet.db"
    procs = []
    try:
        procs.append(subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_port(port)
        env = dict(os.environ, EDGEFLEET_STATS_INTERVAL_S="5")
        procs.append(subprocess.Popen([sys.executable, "-m", "edgefleet", "serve", "--broker", url, "--db", str(db)],
                                      cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                      stderr=open(work / "serve.log", "w")))
        time.sleep(3.0)
        report = work / "sim.json"
        t0 = time.monotonic()
        sim = subprocess.run([sys.executable, "-m", "edgefleet", "sim", "--broker", url, "--nodes", str(args.nodes),
                              "--procs", str(args.procs), "--faulty", "0", "--no-commission",
                              "--duration", str(args.duration), "--report", str(report)],
                             cwd=REPO, capture_output=True, text=True, timeout=args.duration * 10 + 600)
        if sim.returncode != 0:
            raise SystemExit(f"sim failed: {sim.stderr[-2000:]}")
        sim_report = json.loads(report.read_text())
        published = sim_report["published"]
        store = SQLiteStore(db)
        stored, last = -1, store.count_results()
        while stored != last:  # until ingest has taken everything the broker still held
            time.sleep(5.0)
            stored, last = last, store.count_results()
        alone = store.loss(int(time.time() * 1000), settle_ms=0)  # every hole counted, settled or not
        where_alone = breakdown(store, sim_report["per_device"])
        t1 = time.monotonic()
        marks, statuses = read_marks(url)  # the goodbyes the queue dropped, from the retained statuses
        applied = apply_marks(store, marks, int(time.time() * 1000))
        read_back_s = time.monotonic() - t1
        loss = store.loss(int(time.time() * 1000), settle_ms=0)
        where = breakdown(store, sim_report["per_device"])
        store.close()
        doctor = subprocess.run([sys.executable, "-m", "edgefleet", "doctor", "--broker", url, "--skip", "store",
                                 "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        true_loss = published - stored
        reported = loss["missing"] + loss["pending_gaps"]
        reported_alone = alone["missing"] + alone["pending_gaps"]
        out = {"nodes": args.nodes, "procs": args.procs, "duration_s": args.duration,
               "published_acked_by_broker": published, "stored": stored, "true_loss": true_loss,
               "reported_missing": reported, "dropped_on_node": loss["dropped_on_node"],
               "reported_vs_true": (reported / true_loss) if true_loss else None,
               "ingest_alone": {"reported_missing": reported_alone,
                                "reported_vs_true": (reported_alone / true_loss) if true_loss else None,
                                "where_lost": where_alone},
               "goodbyes_read_back": {"retained_statuses": statuses, "marks": len(marks), "applied": applied,
                                      "seconds": round(read_back_s, 1)},
               "where_lost": where, "doctor_exit": doctor.returncode, "doctor_queue_check": checks.get("broker.queue"),
               "wall_s": round(time.monotonic() - t0, 1)}
        print(f"{args.nodes} nodes, {args.duration:g} s through a default-config Mosquitto: published {published:,}, "
              f"stored {stored:,}, lost {true_loss:,}; the store reports {reported_alone:,} missing from what "
              f"ingest took ({out['ingest_alone']['reported_vs_true'] or 0:.2%} of the true loss), {reported:,} "
              f"({out['reported_vs_true'] or 0:.2%}) with the {statuses:,} retained goodbyes read back; "
              f"doctor exit {doctor.returncode}: "
              f"{(checks.get('broker.queue') or {}).get('detail')}")
        write_report("loss_default_broker", out)
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
