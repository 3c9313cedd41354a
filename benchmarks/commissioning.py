"""Commissioning: one fleet model on machines it has never seen, with no training (docs/baseline.md).

Side by side, in one run, the shipped `fleet-default` model (trained on the simulator's machines,
never on CWRU, never on these simulated machines):
- as shipped (the artifact's own input standardization), and
- commissioned: each node learns its machine's normal per speed class, then judges.

1. CWRU (../shared/data/cwru): commissioned on the first half of the normal recording; AUC per
   fault file and the false-alarm rate on the held-out half.
2. Simulated machines that differ as real ones do (speed, load, sensor gain and mounting,
   resonance, noise floor), each at 3 operating points: per-machine bearing-fault AUC and held-out
   false-alarm rate, and the same for 16..256 commissioning windows (why 64 is the default).
3. A long run faster than real time: machines cycling through 3 speeds with the real node logic
   (`device_sim.fleet`: commissioning at start, new classes learned as speeds appear) and the
   service's alarm tracker (3 of 5): raised false alarms per 100 machine-days on healthy machines,
   and the detection time of bearing faults that start after commissioning.

    .venv/bin/python benchmarks/commissioning.py            # 50 machines, 2 simulated days each
    .venv/bin/python benchmarks/commissioning.py --quick    # 10 machines, a short run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from device_sim.dataset import machine_recordings, write_recordings  # noqa: E402
from device_sim.fleet import Fleet, FleetOptions  # noqa: E402
from device_sim.link import LinkOptions  # noqa: E402
from device_sim.physics import Fault, make_machines, vary_machines, with_faults  # noqa: E402
from device_sim.plant import NodeSpec, Plant  # noqa: E402
from device_sim.schedule import Schedule  # noqa: E402
from edgefleet.protocol import ResultRecord  # noqa: E402
from edgefleet.runtime.artifact import load_artifact  # noqa: E402
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker  # noqa: E402
from edgefleet.toolchain.datasets import load_folder  # noqa: E402
from edgefleet.toolchain.evaluation import evaluate, evaluate_commissioned  # noqa: E402

MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
CWRU = REPO.parent / "shared" / "data" / "cwru"


def cwru_part(art) -> dict:
    recs = load_folder(CWRU)
    plain = evaluate(art, None, recs)
    comm = evaluate_commissioned(art, recs, fraction=0.5, folder_name="cwru")
    m = comm["machines"]["cwru"]
    normal = next(f for f in plain["per_file"] if f["label"] == "normal")
    files = {f["name"]: f["auc_int8"] for f in plain["per_file"] if f["auc_int8"] is not None}
    # per fault file under commissioning: the same machine baseline, one file at a time
    per_file = {}
    normal_recs = [r for r in recs if r.is_normal]
    for r in recs:
        if not r.is_normal:
            ev = evaluate_commissioned(art, normal_recs + [r], fraction=0.5, folder_name="cwru")
            per_file[r.name] = ev["machines"]["cwru"]["auc_int8"]
    return {
        "as_shipped": {"min_file_auc": min(files.values()), "mean_file_auc": statistics.mean(files.values()),
                       "normal_windows_flagged": normal["anomaly_rate"]},
        "commissioned": {"min_file_auc": min(per_file.values()), "mean_file_auc": statistics.mean(per_file.values()),
                         "held_out_normal_flagged": m["false_alarm_rate"], "fault_windows_flagged": m["detection_rate"],
                         "classes": m["classes"]},
        "per_file_auc": {k: {"as_shipped": files[k], "commissioned": per_file[k]} for k in sorted(per_file)},
    }


def simulated_part(art, n: int, seed: int, targets: list[int]) -> dict:
    recs = machine_recordings(n, seed=seed, fault_g=(1.0, 2.0))
    with tempfile.TemporaryDirectory() as d:
        write_recordings(d, recs)
        loaded = load_folder(d)
    by_machine: dict[str, list] = {}
    for r in loaded:
        by_machine.setdefault(str(r.meta["machine"]), []).append(r)
    plain_auc, plain_fa = [], []
    for name, rs in sorted(by_machine.items()):  # as shipped: the artifact's standardization
        ev = evaluate(art, None, rs)
        plain_auc.append(ev["auc_int8"])
        normal = [f for f in ev["per_file"] if f["label"] == "normal"]
        plain_fa.append(statistics.mean(f["anomaly_rate"] for f in normal))
    sweep = {}
    for t in targets:
        ev = evaluate_commissioned(art, loaded, fraction=0.5, target=t)
        ms = ev["machines"].values()
        sweep[t] = {"min_machine_auc": ev["min_machine_auc"],
                    "median_machine_auc": statistics.median(m["auc_int8"] for m in ms),
                    "mean_false_alarm_rate": statistics.mean(m["false_alarm_rate"] for m in ms),
                    "max_false_alarm_rate": max(m["false_alarm_rate"] for m in ms),
                    "mean_detection_rate": statistics.mean(m["detection_rate"] for m in ms),
                    "by_label": ev["by_label"]}
    return {"machines": n, "operating_points": 3, "fault_peak_g": [1.0, 2.0],
            "as_shipped": {"min_machine_auc": min(plain_auc), "median_machine_auc": statistics.median(plain_auc),
                           "mean_normal_flagged": statistics.mean(plain_fa)},
            "commissioned_by_windows": sweep}


def long_run(art, n_healthy: int, n_faulty: int, days: float, step_s: float, seed: int) -> dict:
    """The real node logic on a schedule of speeds, fed faster than real time."""
    n = n_healthy + n_faulty
    rng = np.random.default_rng(seed)
    m = vary_machines(make_machines(n, rng, bearing=None), rng)
    hold_hi = min(4 * 3600.0, days * 86400 / 12)  # each speed held up to 4 h: all three seen early
    commission_s = 3 * hold_hi  # every speed seen (and learned) by then
    onset = rng.uniform(1.1 * commission_s, days * 86400 * 0.7, n_faulty)
    ramp = rng.uniform(0.05, 0.2, n_faulty) * days * 86400  # from onset to full severity
    kinds = np.array([(Fault.OUTER_RACE, Fault.INNER_RACE, Fault.BALL)[i % 3] for i in range(n_faulty)])
    faulty_rows = np.arange(n_healthy, n)
    m = with_faults(m, faulty_rows, kinds, onset_s=onset, ramp_s=ramp, peak_g=rng.uniform(1.0, 2.0, n_faulty))
    nodes = tuple(NodeSpec(f"lr-{i:04d}", "north", "L1", ("pump",), 12000.0, i) for i in range(n))
    sched = Schedule.stepped(n, rng, speeds=3, hold_s=(hold_hi / 4, hold_hi))
    fleet = Fleet(Plant(m, nodes), art, LinkOptions("127.0.0.1", 1),
                  FleetOptions(commission=True, seed=seed, schedule=sched))
    trackers = {"commissioned": AlarmTracker(AlarmPolicy()), "as_shipped": AlarmTracker(AlarmPolicy())}
    thr0 = float(art.scoring.threshold)
    raised: dict[str, list[tuple[int, float]]] = {k: [] for k in trackers}
    rows = np.arange(n)
    steps = int(days * 86400 / step_s)
    states = {"commissioning": 0, "uncommissioned": 0, "judged": 0}
    t_wall = time.monotonic()
    for k in range(steps):
        t = k * step_s
        machines = fleet.machines_at(t)
        scores, _, debug = fleet._score(rows, t, set(), machines)
        plain = scores.copy()
        every = debug.pop(-1)
        verdicts = fleet._commissioning(rows, scores, every["features"], fleet._speeds(rows, every, machines, t),
                                        every["excess"])
        ts = int(t * 1000)
        for i in range(n):
            v = verdicts[i]
            dev = nodes[i].device_id
            state = "" if v is None else v.state
            states[state or "judged"] += 1
            rec = ResultRecord(dev, "b0", k, ts, 1, float(scores[i]), float(v.thr if v and v.thr else thr0),
                               bool(v.anom) if v else False, 0, state=state, hi=v.hi if v else None,
                               cls=v.cls if v else None, hi_thr=v.hi_thr if v else None)
            c = trackers["commissioned"].observe(rec)
            if c is not None and c.op == "raise":
                raised["commissioned"].append((i, t))
            c = trackers["as_shipped"].observe(ResultRecord(dev, "b0", k, ts, 1, float(plain[i]), thr0,
                                                            bool(plain[i] > thr0), 0))
            if c is not None and c.op == "raise":
                raised["as_shipped"].append((i, t))
        if k and k % max(1, steps // 10) == 0:
            print(f"  {t / 86400:5.2f} simulated days of {days:g} ({time.monotonic() - t_wall:.0f} s)", flush=True)
    out = {}
    healthy_days = n_healthy * days
    for key, events in raised.items():
        fa = [t for i, t in events if i < n_healthy]
        pre = [t for i, t in events if i >= n_healthy and t < onset[i - n_healthy]]
        det = {}
        for j in range(n_faulty):
            after = [t for i, t in events if i == n_healthy + j and t >= onset[j]]
            det[j] = (min(after) - onset[j]) if after else None
        found = [v for v in det.values() if v is not None]
        out[key] = {"false_alarms_on_healthy": len(fa),
                    "false_alarms_per_100_machine_days": 100.0 * len(fa) / healthy_days,
                    "alarms_on_faulty_before_onset": len(pre),
                    "faults_detected": len(found), "faults": n_faulty,
                    "detection_time_s": {"median": statistics.median(found) if found else None,
                                         "max": max(found) if found else None,
                                         "per_fault": [None if v is None else round(v) for v in det.values()]}}
    return {"healthy_machines": n_healthy, "faulty_machines": n_faulty, "simulated_days": days,
            "window_every_s": step_s, "healthy_machine_days": healthy_days, "windows": states,
            "wall_s": round(time.monotonic() - t_wall, 1), **out,
            "fault_onsets_h": [round(x / 3600, 1) for x in onset], "fault_ramps_h": [round(x / 3600, 1) for x in ramp]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=50, help="simulated machines for the AUC part (default 50)")
    ap.add_argument("--days", type=float, default=2.0, help="simulated days per machine in the long run (default 2)")
    ap.add_argument("--step", type=float, default=10.0, help="seconds between windows in the long run (default 10)")
    ap.add_argument("--faulty", type=int, default=10, help="machines in the long run that develop a fault (default 10)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--quick", action="store_true", help="10 machines, 0.5 day, 4 faulty: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.machines, args.days, args.faulty = 10, 0.75, 4
    art = load_artifact(MODEL)
    t0 = time.monotonic()
    report: dict = {"model": str(MODEL.relative_to(REPO)), "config": vars(args)}
    print("CWRU ...", flush=True)
    report["cwru"] = cwru_part(art)
    print("simulated machines ...", flush=True)
    report["simulated"] = simulated_part(art, args.machines, args.seed, [16, 32, 64, 128, 256])
    print("long run ...", flush=True)
    report["long_run"] = long_run(art, args.machines, args.faulty, args.days, args.step, args.seed + 1)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    c, s, lr = report["cwru"], report["simulated"], report["long_run"]
    print(f"\nCWRU fault files, min AUC: as shipped {c['as_shipped']['min_file_auc']:.3f}, commissioned "
          f"{c['commissioned']['min_file_auc']:.3f}; normal windows flagged: as shipped "
          f"{c['as_shipped']['normal_windows_flagged']:.0%}, commissioned {c['commissioned']['held_out_normal_flagged']:.0%}")
    print(f"{s['machines']} simulated machines x 3 speeds, bearing faults: as shipped min AUC "
          f"{s['as_shipped']['min_machine_auc']:.3f} (normal flagged {s['as_shipped']['mean_normal_flagged']:.0%})")
    for t, r in s["commissioned_by_windows"].items():
        print(f"  commissioned on {t:3d} windows/class: min machine AUC {r['min_machine_auc']:.3f}, median "
              f"{r['median_machine_auc']:.3f}, held-out normal flagged {r['mean_false_alarm_rate']:.2%} "
              f"(worst {r['max_false_alarm_rate']:.2%}), fault windows flagged {r['mean_detection_rate']:.0%}")
    for key in ("as_shipped", "commissioned"):
        r = lr[key]
        print(f"long run ({lr['healthy_machine_days']:g} healthy machine-days, a window every {lr['window_every_s']:g} s) "
              f"{key}: {r['false_alarms_per_100_machine_days']:.2f} false alarms per 100 machine-days; "
              f"{r['faults_detected']}/{r['faults']} faults detected, median {r['detection_time_s']['median']} s "
              f"after onset")
    write_report("commissioning-quick" if args.quick else "commissioning", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
