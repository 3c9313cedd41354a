"""Alarms on healthy machines in a demo-speed run (issue 17's figure: 0 in one hour).

Runs `edgefleet demo --no-dashboard --fresh` (Mosquitto, serve, 100 simulated machines on the
shipped fleet-v2 model, 6 of them developing faults, each node commissioning on site) for the
given time, then reads the demo's database: every alarm, on which machine, and whether that
machine was one of the faulty ones (the simulator's report names them).

    .venv/bin/python benchmarks/demo_alarms.py                  # one hour
    .venv/bin/python benchmarks/demo_alarms.py --seconds 600    # ten minutes

--offline runs the same plant without the broker, the service or the wall clock
(benchmarks/demo_offline.py: the demo's plant, Fleet ticks, node messages, the service's AlarmTracker),
over simulated hours as fast as the CPU goes, for several plant seeds; it counts alarms per machine
and the time from each fault's onset to its machine's first alarm:

    .venv/bin/python benchmarks/demo_alarms.py --offline --seeds 0 1 --procs 2
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


def offline_part(seed: int, noise: int, part: int, seconds: float, nodes: int, faulty: int, windows: int,
                 only: tuple[str, ...] = ()) -> dict:
    """One worker's half of one plant (the demo's `--procs 2` split), offline: its alarms."""
    import demo_offline as offline

    args = offline.demo_sim_args(nodes=nodes, faulty=faulty, seed=seed, commission_windows=windows)
    plant, _ = offline.demo_plant(args)
    mine = [n.device_id for n in plant.nodes[part::args.procs] if not only or n.device_id in only]
    if not mine:
        return {"raises": [], "results": 0, "judged": 0, "wall_s": 0.0}
    t0 = time.monotonic()
    run = offline.run(args, seconds, only=mine, noise_seed=noise)
    return {"raises": [{"device": c.device, "t_s": (c.ts - offline.T0_MS) / 1000, "severity": c.severity,
                        "ratio": round(c.score / c.thr, 3) if c.thr else None, "hint": c.hint}
                       for c in run.changes if c.op == "raise"],
            "results": run.results, "judged": run.judged, "wall_s": time.monotonic() - t0}


def offline_main(args: argparse.Namespace) -> int:
    """The demo's plants offline, per seed: alarms on healthy machines, faulty ones found and when."""
    from concurrent.futures import ProcessPoolExecutor

    import demo_offline as offline

    windows = args.commission_windows or 64
    jobs = [(seed, noise, part) for seed in args.seeds for noise in args.noise_seeds for part in range(2)]
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.procs) as ex:
        outs = list(ex.map(offline_part, *zip(*jobs), *[[v] * len(jobs) for v in
                                                          (args.seconds, args.nodes, args.faulty, windows,
                                                           tuple(args.only))]))
    runs = []
    for seed in args.seeds:
        plant, _ = offline.demo_plant(offline.demo_sim_args(nodes=args.nodes, faulty=args.faulty, seed=seed,
                                                            commission_windows=windows))
        onset = {n.device_id: plant.describe(n.row) for n in plant.nodes
                 if n.device_id in plant.faulty and (not args.only or n.device_id in args.only)}
        for noise in args.noise_seeds:
            parts = [o for (s, n, _), o in zip(jobs, outs) if (s, n) == (seed, noise)]
            raises = sorted((r for o in parts for r in o["raises"]), key=lambda r: r["t_s"])
            healthy = [r for r in raises if r["device"] not in onset]
            first = {}
            for r in raises:
                if r["device"] in onset:
                    first.setdefault(r["device"], r["t_s"])
            ttd = {d: round(t - onset[d]["fault_onset_s"], 1) for d, t in first.items()}
            runs.append({"seed": seed, "noise_seed": noise, "healthy_alarms": len(healthy),
                         "healthy_machines_alarmed": sorted({r["device"] for r in healthy}), "healthy": healthy,
                         "faulty_alarmed": len(first), "faulty": len(onset),
                         "faults": {d: {"fault": onset[d]["fault"], "onset_s": round(onset[d]["fault_onset_s"], 1),
                                        "detected_after_s": ttd.get(d)} for d in onset},
                         "median_detection_s": statistics.median(ttd.values()) if ttd else None,
                         "results": sum(o["results"] for o in parts), "judged": sum(o["judged"] for o in parts)})
            r = runs[-1]
            print(f"seed {seed} noise {noise}: {r['healthy_alarms']} alarm(s) on healthy machines "
                  f"{r['healthy_machines_alarmed'] or ''}; {r['faulty_alarmed']}/{r['faulty']} faulty machines alarmed, "
                  f"median {r['median_detection_s']} s after onset", flush=True)
    report = {"config": {**vars(args), "simulated_s_per_run": args.seconds}, "runs": runs,
              "healthy_alarms_total": sum(r["healthy_alarms"] for r in runs),
              "faulty_alarmed_total": f"{sum(r['faulty_alarmed'] for r in runs)}/{sum(r['faulty'] for r in runs)}",
              "median_detection_s": statistics.median([d["detected_after_s"] for r in runs for d in r["faults"].values()
                                                       if d["detected_after_s"] is not None] or [float("nan")]),
              "wall_s": round(time.monotonic() - t0, 1)}
    print(f"{len(runs)} run(s) of {args.seconds:.0f} simulated s x {len(args.only) or args.nodes} machines: {report['healthy_alarms_total']} alarm(s) on healthy "
          f"machines, {report['faulty_alarmed_total']} faulty machines alarmed, median detection "
          f"{report['median_detection_s']} s after onset ({report['wall_s']} s wall)")
    write_report(args.out or "demo_alarms-offline", report)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3600.0, help="how long the demo runs (default 3600)")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--faulty", type=int, default=6)
    ap.add_argument("--commission-windows", type=int, default=None,
                    help="windows per class each node learns its normal from (default: the demo's)")
    ap.add_argument("--offline", action="store_true",
                    help="no broker, service or wall clock: the plant offline (benchmarks/demo_offline.py)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="--offline: plant seeds (default 0, the demo's)")
    ap.add_argument("--noise-seeds", type=int, nargs="+", default=[0],
                    help="--offline: noise draws on the same plant (default 0)")
    ap.add_argument("--procs", type=int, default=2, help="--offline: worker processes (default 2)")
    ap.add_argument("--out", default=None, help="--offline: report name (default demo_alarms-offline)")
    ap.add_argument("--only", nargs="+", default=[], metavar="DEVICE",
                    help="--offline: simulate only these machines (each alone: the others change only the noise)")
    args = ap.parse_args()
    if args.offline:
        return offline_main(args)
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
