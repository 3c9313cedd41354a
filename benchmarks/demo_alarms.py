"""Alarms on healthy machines in a demo-speed run (issue 17's figure: 0 in one hour).

Runs `edgefleet demo --no-dashboard --fresh` (Mosquitto, serve, 100 simulated machines on the
shipped fleet-v2 model, 6 of them developing faults, each node commissioning on site) for the
given time, then reads the demo's database: every alarm, on which machine, and whether that
machine was one of the faulty ones (the simulator's report names them).

    .venv/bin/python benchmarks/demo_alarms.py                  # one hour
    .venv/bin/python benchmarks/demo_alarms.py --seconds 600    # ten minutes
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402

from edgefleet.service.store import SQLiteStore  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3600.0, help="how long the demo runs (default 3600)")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--faulty", type=int, default=6)
    ap.add_argument("--commission-windows", type=int, default=None,
                    help="windows per class each node learns its normal from (default: the demo's)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ef-demo-alarms-"))
    t0 = time.monotonic()
    print(f"demo for {args.seconds:.0f} s in {work} ...", flush=True)
    p = subprocess.run([sys.executable, "-m", "edgefleet", "demo", "--no-dashboard", "--fresh", "--nodes",
                        str(args.nodes), "--faulty", str(args.faulty), "--duration", str(args.seconds),
                        "--workdir", str(work)]
                       + ([] if args.commission_windows is None else ["--commission-windows", str(args.commission_windows)]),
                       cwd=REPO, capture_output=True, text=True,
                       timeout=args.seconds + 600)
    if p.returncode != 0:
        print(f"demo failed ({p.returncode}): {p.stderr.strip()[-500:]}")
        return 1
    sim = json.loads((work / "sim-report.json").read_text())
    faulty = set(sim["faulty"])
    store = SQLiteStore(work / "fleet.db")
    alarms = store.alarms(limit=100_000)
    devices = store.devices()
    on_healthy = [a for a in alarms if a.device not in faulty]
    t0_ms = min((d.first_seen for d in devices), default=0)
    on_faulty = [a for a in alarms if a.device in faulty]
    first = {}
    for a in sorted(on_faulty, key=lambda a: a.raised_ts):
        first.setdefault(a.device, a.raised_ts)
    report = {
        "config": vars(args), "devices": len(devices), "faulty": sorted(faulty),
        "alarms_on_healthy_machines": len(on_healthy),
        "healthy_machines_with_alarms": sorted({a.device for a in on_healthy}),
        "healthy_alarms": [{"device": a.device, "severity": a.severity, "raised_s": round((a.raised_ts - t0_ms) / 1000),
                            "ratio": round(a.peak_score / a.thr, 3) if a.thr else None, "hint": a.hint,
                            "reopened": a.reopened} for a in on_healthy],
        "alarms_on_faulty_machines": len(on_faulty),
        "faulty_machines_alarmed": len(first),
        "reopened_total": sum(a.reopened for a in alarms),
        "severities": {s: sum(a.severity == s for a in alarms) for s in ("warning", "major", "critical")},
        "results_stored": sum(d.results for d in devices),
        "wall_s": round(time.monotonic() - t0, 1),
        "median_results_per_device": statistics.median([d.results for d in devices]) if devices else 0,
    }
    print(f"{report['devices']} machines, {report['results_stored']} results in {args.seconds:.0f} s: "
          f"{report['alarms_on_healthy_machines']} alarm(s) on healthy machines "
          f"{report['healthy_machines_with_alarms'] or ''}; {report['faulty_machines_alarmed']}/{len(faulty)} faulty "
          f"machines alarmed ({report['alarms_on_faulty_machines']} alarms, {report['reopened_total']} reopens)")
    tag = "" if args.commission_windows is None else f"-commission{args.commission_windows}"
    write_report(("demo_alarms" if args.seconds >= 3600 else "demo_alarms-short") + tag, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
