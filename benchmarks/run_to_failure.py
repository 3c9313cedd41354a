"""From install to failure: does the node warn early, never cry wolf, and say how long is left?

Simulated run-to-failure machines (`device_sim/run_to_failure.py`: run-in, daily temperature
swing, load changes, an exponentially growing bearing defect from a random onset to failure), one
0.1 s snapshot every 10 minutes, replayed through the node's whole logic (`edgefleet replay`'s
engine: commissioning, HI, alarms 3 of 5, stages, remaining life) and, in the same run, through
the plain RMS rule (mean + 3 sigma of the commissioning snapshots, 3 of 5 snapshots over it).

    .venv/bin/python benchmarks/run_to_failure.py             # 100 machines
    .venv/bin/python benchmarks/run_to_failure.py --quick     # 12 machines
    .venv/bin/python benchmarks/run_to_failure.py --calibrate  # the fleet failure level (AlarmPolicy.failure_hi)

The remaining-life estimate needs the health-indicator level at which machines fail. `--calibrate`
measures it on other machines (seed 7, never the evaluated ones) and prints the 5th/50th/95th
percentile, which is `AlarmPolicy.failure_hi`'s default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402

from device_sim.run_to_failure import make_run  # noqa: E402
from edgefleet.runtime import baseline as bl  # noqa: E402
from edgefleet.runtime.artifact import load_artifact  # noqa: E402
from edgefleet.runtime.engine import Detector  # noqa: E402
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker  # noqa: E402
from edgefleet.toolchain.replay import ReplayInput, replay  # noqa: E402

MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
HEALTH_EVERY = 6  # the node's health check (trend, stage, remaining life): every 6 snapshots, hourly


def rms_rule(snaps: np.ndarray, learn: int, k: int = 3, n: int = 5) -> int | None:
    """Index of the first snapshot where k of the last n exceed mean + 3 sigma of the first `learn`."""
    rms = np.sqrt(np.mean((snaps - snaps.mean(axis=1, keepdims=True)) ** 2, axis=1))
    limit = rms[:learn].mean() + 3 * rms[:learn].std()
    over = rms > limit
    for i in range(learn, len(over)):
        if over[max(learn, i - n + 1):i + 1].sum() >= k:
            return i
    return None


def one_machine(det: Detector, i: int, rng: np.random.Generator, commission: int,
                policy: AlarmPolicy = AlarmPolicy()) -> dict:
    run = make_run(i, rng)
    n = det.window_samples(run.fs)
    rec = ReplayInput(run.name, run.name, run.fs, run.snaps[:, :n], run.t_s + n / run.fs, run.rpm, {})
    out = replay(det, rec, AlarmTracker(policy), commission_windows=commission, trace=True, health_every=HEALTH_EVERY)
    fault_s = run.failure_s - run.onset_s
    first = out["first_alarm_s"]
    tr = out["trace"]
    t = np.array(tr["t_s"]) - n / run.fs
    sev = np.interp(t, run.t_s, run.severity)
    in_fault = sev > 0
    rho_hi = spearmanr(sev[in_fault], np.array(tr["hi"])[in_fault]).correlation if in_fault.sum() > 3 else None
    rho_score = spearmanr(sev[in_fault], np.array(tr["score"])[in_fault]).correlation if in_fault.sum() > 3 else None
    # remaining life: checkpoints in the last half of the fault's duration
    half = run.onset_s + 0.5 * fault_s
    # every health check the node made there counts; one without an estimate is not covered
    cls = tr["cls"]
    check_t = [tr["t_s"][j] for j in range(len(cls)) if cls[j] >= 0 and j % HEALTH_EVERY == HEALTH_EVERY - 1
               and tr["t_s"][j] >= half and tr["t_s"][j] <= run.failure_s]
    given = {r["t_s"]: r for r in out["rul"]}
    rul_kinds = {"covered": 0, "too_long": 0, "too_short": 0, "none": 0}
    errors = []
    for tc in check_t:
        r = given.get(round(tc, 3))
        true = run.failure_s - tc
        if r is None or r["low_s"] is None:
            rul_kinds["none"] += 1
            continue
        high = r["high_s"] if r["high_s"] is not None else np.inf
        rul_kinds["covered" if r["low_s"] <= true <= high else "too_long" if true < r["low_s"] else "too_short"] += 1
        errors.append(abs(r["rul_s"] - true) / fault_s)
    checks, covered = check_t, rul_kinds["covered"]
    early_rul = sum(1 for r in out["rul"] if r["t_s"] < run.onset_s)  # a life given to a healthy machine
    warn = next((s["t_s"] for s in out["stages"] if s["stage"] in ("degrading", "alarm", "critical")), None)
    rms_i = rms_rule(run.snaps, commission)
    rms_t = float(run.t_s[rms_i]) if rms_i is not None else None
    return {
        "machine": run.name, "fault": run.fault, "onset_h": run.onset_s / 3600, "failure_h": run.failure_s / 3600,
        "commissioned_h": None if out["commissioned_at_s"] is None else out["commissioned_at_s"] / 3600,
        "node": {"first_alarm_h": None if first is None else first / 3600,
                 "alarmed_before_failure": first is not None and first <= run.failure_s,
                 "alarm_in_healthy_phase": first is not None and first < run.onset_s,
                 "lead_share": None if first is None else (run.failure_s - first) / fault_s,
                 "stages": out["stages"], "spearman_hi": rho_hi, "spearman_score": rho_score,
                 "rul_checkpoints": len(checks), "rul_covered": covered, "rul_outcomes": rul_kinds, "rul_in_healthy_phase": early_rul,
                 "degrading_in_healthy_phase": any(s["stage"] == "degrading" and s["t_s"] < run.onset_s
                                                   for s in out["stages"]),
                 "first_warning_lead_share": None if warn is None else (run.failure_s - warn) / fault_s,
                 "rul_median_error_share": statistics.median(errors) if errors else None},
        "rms_rule": {"first_alarm_h": None if rms_t is None else rms_t / 3600,
                     "alarmed_before_failure": rms_t is not None,
                     "alarm_in_healthy_phase": rms_t is not None and rms_t < run.onset_s,
                     "lead_share": None if rms_t is None else (run.failure_s - rms_t) / fault_s},
    }


def failure_level(det: Detector, i: int, rng: np.random.Generator, commission: int) -> float | None:
    """The HI ratio (HI over its class limit) a machine shows at failure: the median of its last 3 snapshots."""
    run = make_run(i, rng)
    n = det.window_samples(run.fs)
    rec = ReplayInput(run.name, run.name, run.fs, run.snaps[:, :n], run.t_s + n / run.fs, run.rpm, {})
    out = replay(det, rec, AlarmTracker(AlarmPolicy()), commission_windows=commission, trace=True)
    if "trace" not in out:
        return None
    tr = out["trace"]
    thr = {k: c["hi_thr"] for k, c in enumerate(out["classes"])}
    ratios = [h / thr[c] for h, c in zip(tr["hi"], tr["cls"]) if c >= 0]
    return float(np.median(ratios[-3:])) if ratios else None


def summary(rows: list[dict], key: str) -> dict:
    r = [x[key] for x in rows]
    leads = [x["lead_share"] for x in r if x["lead_share"] is not None and not x["alarm_in_healthy_phase"]]
    out = {"machines": len(r), "alarmed_before_failure": sum(x["alarmed_before_failure"] for x in r),
           "alarmed_in_healthy_phase": sum(x["alarm_in_healthy_phase"] for x in r),
           "median_lead_share_of_fault": statistics.median(leads) if leads else None}
    if key == "node":
        rho = [x["spearman_hi"] for x in r if x["spearman_hi"] is not None]
        rs = [x["spearman_score"] for x in r if x["spearman_score"] is not None]
        out["median_spearman_hi"] = statistics.median(rho) if rho else None
        out["median_spearman_score"] = statistics.median(rs) if rs else None
        checks = sum(x["rul_checkpoints"] for x in r)
        out["rul_checkpoints"] = checks
        out["rul_coverage"] = sum(x["rul_covered"] for x in r) / checks if checks else None
        out["rul_outcomes"] = {k: sum(x["rul_outcomes"][k] for x in r) for k in r[0]["rul_outcomes"]} if r else {}
        out["rul_estimates_in_healthy_phase"] = sum(x["rul_in_healthy_phase"] for x in r)
        out["degrading_in_healthy_phase"] = sum(x["degrading_in_healthy_phase"] for x in r)
        warn = [x["first_warning_lead_share"] for x in r if x["first_warning_lead_share"] is not None
                and not x["degrading_in_healthy_phase"] and not x["alarm_in_healthy_phase"]]
        out["median_first_warning_lead_share"] = statistics.median(warn) if warn else None
        errs = [x["rul_median_error_share"] for x in r if x["rul_median_error_share"] is not None]
        out["rul_median_error_share_of_fault"] = statistics.median(errs) if errs else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=100)
    ap.add_argument("--commission", type=int, default=bl.DEFAULT_WINDOWS,
                    help=f"snapshots per class that commission a node, at least (default {bl.DEFAULT_WINDOWS}, the "
                         "node's: 10.7 h at one per 10 min, longer while the features are not stationary)")
    ap.add_argument("--calibrate", action="store_true",
                    help="measure the fleet failure level on 40 other machines (seed 7) and print it")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.machines = 12
    det = Detector(load_artifact(MODEL))
    if args.calibrate:
        rng = np.random.default_rng(7)
        levels = [x for x in (failure_level(det, i, rng, args.commission) for i in range(40)) if x is not None]
        q = np.quantile(levels, [0.05, 0.5, 0.95])
        print(f"HI ratio at failure over {len(levels)} machines: 5th {q[0]:.2f}, median {q[1]:.2f}, 95th {q[2]:.2f} "
              f"(min {min(levels):.2f}, max {max(levels):.2f})\n  -> AlarmPolicy(failure_hi=({q[0]:.1f}, {q[1]:.1f}, {q[2]:.1f}))")
        write_report("run_to_failure-calibration", {"config": vars(args), "levels": levels,
                                                    "quantiles_5_50_95": [float(v) for v in q]})
        return 0
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()
    rows = []
    for i in range(args.machines):
        rows.append(one_machine(det, i, rng, args.commission))
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{args.machines} machines ({time.monotonic() - t0:.0f} s)", flush=True)
    report = {"config": vars(args), "node": summary(rows, "node"), "rms_rule": summary(rows, "rms_rule"),
              "machines": rows, "wall_s": round(time.monotonic() - t0, 1)}
    for key in ("node", "rms_rule"):
        s = report[key]
        print(f"{key:9}: {s['alarmed_before_failure']}/{s['machines']} alarmed before failure, "
              f"{s['alarmed_in_healthy_phase']} in the healthy phase, median lead "
              f"{s['median_lead_share_of_fault']} of the fault's duration"
              + (f"; HI Spearman {s['median_spearman_hi']:.3f} (score {s['median_spearman_score']:.3f}); RUL interval "
                 f"covers the truth at {s['rul_coverage']} of {s['rul_checkpoints']} checkpoints" if key == "node" else ""))
    write_report("run_to_failure-quick" if args.quick else "run_to_failure", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
