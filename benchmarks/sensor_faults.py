"""Sensor faults on failing machines: told apart from machine faults, and never hiding one?

Simulated run-to-failure machines (`device_sim/run_to_failure.py`) each get a sensor fault from a
random time (20-90 % of the time to failure, so before or after the bearing defect's onset): a
loose mount, a saturating sensor, a dead channel (flat, or the sensor's noise floor only) or
intermittent dropouts, in turn. Each is replayed through the node's whole logic (`edgefleet
replay`'s engine, with the per-window sensor check, `edgefleet/runtime/sensor_check.py`), and so
is the same machine with a healthy sensor (the control: same draws, same machine).

Per run: detected (a window named a sensor fault after the fault's onset) and after how long;
mistaken for a machine fault (an alarm raised while the machine is still healthy, after the
sensor fault's onset); machine fault hidden (at failure neither an active alarm nor a sensor
fault named in the last hour's windows: the node would report a failing machine as healthy; must
be 0); sensor faults named on the control (false flags on a healthy sensor).

    .venv/bin/python benchmarks/sensor_faults.py            # 30 machines (6 per fault)
    .venv/bin/python benchmarks/sensor_faults.py --quick    # 10 machines
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402

from device_sim.run_to_failure import SENSOR_FAULTS, RunToFailure, make_run  # noqa: E402
from edgefleet.runtime.artifact import load_artifact  # noqa: E402
from edgefleet.runtime.engine import Detector  # noqa: E402
from edgefleet.runtime.sensor_check import check_windows  # noqa: E402
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker  # noqa: E402
from edgefleet.toolchain.replay import ReplayInput, replay  # noqa: E402

MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"
LAST_S = 3600.0  # "at failure": the last hour's windows


def run_node(det: Detector, run: RunToFailure, commission: int) -> dict:
    n = det.window_samples(run.fs)
    rec = ReplayInput(run.name, run.name, run.fs, run.snaps[:, :n], run.t_s + n / run.fs, run.rpm, {})
    return replay(det, rec, AlarmTracker(AlarmPolicy()), commission_windows=commission, trace=True)


def verdicts(out: dict, run: RunToFailure) -> dict:
    """What the node said about the machine and the sensor, beside the truth."""
    t = np.array(out.get("trace", {}).get("t_s", []))
    names = out.get("trace", {}).get("sensor", [])
    flagged = [tt for tt, nm in zip(t, names) if nm]
    raises = [a["t_s"] for a in out["alarms"] if a["op"] == "raise"]
    active_at_end = bool(out["stages"]) and out["stages"][-1]["stage"] in ("alarm", "critical")
    flagged_at_end = any(tt >= t[-1] - LAST_S for tt in flagged) if len(t) else False
    s_on = run.sensor_onset_s
    first_flag = next((tt for tt in flagged if tt >= s_on), None)
    return {
        "commissioned": out["commissioned_at_s"] is not None,
        "sensor_windows": {k: v for k, v in out["states"].items() if k.startswith("sensor_")},
        "flags_before_sensor_onset": sum(1 for tt in flagged if tt < s_on),
        "detected": first_flag is not None,
        "detect_delay_h": None if first_flag is None else (first_flag - s_on) / 3600,
        "flagged_share_after_onset": (sum(1 for tt in flagged if tt >= s_on) / max(1, int((t >= s_on).sum())))
        if np.isfinite(s_on) else None,
        "first_alarm_h": None if out["first_alarm_s"] is None else out["first_alarm_s"] / 3600,
        "alarm_in_healthy_machine": any(r < run.onset_s for r in raises),
        "mistaken_for_machine_fault": any(s_on <= r < run.onset_s for r in raises),
        "alarmed_before_failure": out["first_alarm_s"] is not None and any(r >= run.onset_s for r in raises),
        "alarm_active_at_failure": active_at_end,
        "sensor_named_at_failure": flagged_at_end,
        "machine_fault_hidden": not active_at_end and not flagged_at_end,
        "sensor_changes": len(out["sensor"]),
    }


def summarize(rows: list[dict], key: str) -> dict:
    r = [x[key] for x in rows]
    delays = [x["detect_delay_h"] for x in r if x["detect_delay_h"] is not None]
    return {"runs": len(r), "commissioned": sum(x["commissioned"] for x in r),
            "detected_as_sensor_fault": sum(x["detected"] for x in r),
            "median_detect_delay_h": statistics.median(delays) if delays else None,
            "mistaken_for_machine_fault": sum(x["mistaken_for_machine_fault"] for x in r),
            "alarm_in_healthy_machine": sum(x["alarm_in_healthy_machine"] for x in r),
            "alarmed_before_failure": sum(x["alarmed_before_failure"] for x in r),
            "alarm_active_at_failure": sum(x["alarm_active_at_failure"] for x in r),
            "sensor_named_at_failure": sum(x["sensor_named_at_failure"] for x in r),
            "machine_fault_hidden": sum(x["machine_fault_hidden"] for x in r),
            "runs_with_false_flags_before_onset": sum(x["flags_before_sensor_onset"] > 0 for x in r)}


def healthy_flags(n: int, seed: int = 19) -> dict:
    """Windows a healthy sensor gets flagged on: the run-to-failure benchmark's machines (same seed)."""
    rng = np.random.default_rng(seed)
    total, flagged = 0, {}
    for i in range(n):
        run = make_run(i, rng)
        names = check_windows(run.snaps[:, :960]).names()
        total += len(names)
        for nm in names:
            if nm:
                flagged[nm] = flagged.get(nm, 0) + 1
    return {"machines": n, "windows": total, "flagged": flagged}


def check_cost(det: Detector, repeats: int = 5) -> dict:
    """The Python check's cost per window (vectorized, 4,096 windows of one model window), median of
    `repeats`; the C check's cost on the node is not measured here."""
    run = make_run(0, np.random.default_rng(1), sensor_fault="dropouts")
    w = run.snaps[:, :det.window_samples(run.fs)]
    w = np.concatenate([w] * (4096 // len(w) + 1))[:4096]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        check_windows(w)
        times.append(time.perf_counter() - t0)
    return {"windows": len(w), "samples": w.shape[1], "median_us_per_window": statistics.median(times) / len(w) * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=30)
    ap.add_argument("--commission", type=int, default=32, help="snapshots that commission a node (5.3 h)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--healthy", type=int, default=100, help="healthy-sensor machines checked for false flags")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.machines, args.healthy = 10, 10
    det = Detector(load_artifact(MODEL))
    t0 = time.monotonic()
    rows = []
    for i in range(args.machines):
        kind = SENSOR_FAULTS[i % len(SENSOR_FAULTS)]
        seed = args.seed * 1000 + i
        faulty = make_run(i, np.random.default_rng(seed), sensor_fault=kind)
        control = make_run(i, np.random.default_rng(seed))  # the same machine, healthy sensor
        rows.append({"machine": faulty.name, "sensor_fault": kind, "machine_fault": faulty.fault,
                     "sensor_onset_h": faulty.sensor_onset_s / 3600, "machine_onset_h": faulty.onset_s / 3600,
                     "failure_h": faulty.failure_s / 3600,
                     "sensor_before_machine_fault": faulty.sensor_onset_s < faulty.onset_s,
                     "faulty": verdicts(run_node(det, faulty, args.commission), faulty),
                     "control": verdicts(run_node(det, control, args.commission), control)})
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{args.machines} machines ({time.monotonic() - t0:.0f} s)", flush=True)
    per_kind = {k: summarize([r for r in rows if r["sensor_fault"] == k], "faulty") for k in SENSOR_FAULTS}
    wall = round(time.monotonic() - t0, 1)
    report = {"config": vars(args), "faulty": summarize(rows, "faulty"), "control": summarize(rows, "control"),
              "per_fault": per_kind, "healthy_sensor": healthy_flags(args.healthy), "check_cost": check_cost(det),
              "runs": rows, "wall_s": wall}
    print(f"{'fault':12} {'runs':>4} {'detected':>8} {'delay h':>7} {'mistaken':>8} {'alarmed':>7} {'hidden':>6}")
    for k, s in [*per_kind.items(), ("all", report["faulty"]), ("control", report["control"])]:
        d = s["median_detect_delay_h"]
        print(f"{k:12} {s['runs']:>4} {s['detected_as_sensor_fault']:>8} {'-' if d is None else f'{d:.2f}':>7} "
              f"{s['mistaken_for_machine_fault']:>8} {s['alarmed_before_failure']:>7} {s['machine_fault_hidden']:>6}")
    c = report["control"]
    print(f"control (healthy sensor): {c['runs_with_false_flags_before_onset']} runs with a false sensor flag, "
          f"{c['alarmed_before_failure']}/{c['runs']} alarmed before failure, {c['machine_fault_hidden']} hidden; "
          f"{report['wall_s']} s")
    h = report["healthy_sensor"]
    print(f"healthy sensor, run-to-failure machines (seed 19): {sum(h['flagged'].values())} of {h['windows']} windows "
          f"flagged on {h['machines']} machines {h['flagged'] or ''}")
    cc = report["check_cost"]
    print(f"sensor check (Python, vectorized): {cc['median_us_per_window']:.1f} us per window of {cc['samples']} samples")
    write_report("sensor_faults-quick" if args.quick else "sensor_faults", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
