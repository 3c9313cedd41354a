"""`edgefleet replay`: a recording through a node's whole logic, on the desktop, faster than real time."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgefleet.commands.helptext import Formatter, examples
from edgefleet.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="run recordings through a node's logic (commissioning, classes, HI, alarms)",
        description="Replays each recording as a node would live it, in simulated time: it commissions "
                    "on the first windows (per speed class when the recording has `rpm`), then judges "
                    "every window against its class and raises alarms k of n like the fleet service. "
                    "A recording is an .npz with `fs` and either `signal` (continuous) or `snaps` [n, m] "
                    "with `t_s` [n] (snapshot times in seconds), optionally `rpm` (a number or one per "
                    "window/snapshot), `machine` and `unit` (default g; docs/features.md, Recordings). Use it to reproduce a "
                    "node's verdicts from a capture; other formats: `edgefleet data import`.",
        epilog=examples("edgefleet replay edgefleet/models/fleet-default --data ../shared/data/cwru/normal_0hp_97.npz",
                        "edgefleet replay models/v2 --data recordings/ --commission-windows 32 --json"),
        formatter_class=Formatter)
    p.add_argument("model_dir", type=Path, help="model folder (or .efm artifact)")
    p.add_argument("--data", required=True, type=Path, help="an .npz recording or a folder of them")
    p.add_argument("--commission-windows", type=int, default=64, metavar="N",
                   help="windows per speed class that end commissioning (default 64, as a node)")
    p.add_argument("--json", action="store_true", help="one JSON object: {recordings: [...]}")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from edgefleet.runtime.artifact import load_artifact
    from edgefleet.runtime.engine import Detector
    from edgefleet.service.alarms import AlarmPolicy, AlarmTracker
    from edgefleet.toolchain.replay import load_replay, replay, replay_paths

    if not 16 <= args.commission_windows <= 4096:
        raise DataError("--commission-windows must be between 16 and 4096")
    path = args.model_dir / "model.efm" if args.model_dir.is_dir() else args.model_dir
    det = Detector(load_artifact(path))
    params = det.artifact.features.params  # type: ignore[union-attr]
    reports, refused = [], []
    files = replay_paths(args.data)
    for f in files:
        try:
            rec = load_replay(f, params)
        except DataError as exc:
            if len(files) == 1:
                raise
            refused.append({"recording": f.stem, "refused": str(exc)})  # the folder's other recordings still run
            continue
        tracker = AlarmTracker(AlarmPolicy())  # one node per recording
        reports.append(replay(det, rec, tracker, commission_windows=args.commission_windows))
    code = 2 if refused else 0  # a script sees that not every recording was replayed
    if args.json:
        print(json.dumps({"model": str(path), "recordings": reports, "refused": refused}))
        return code
    for r in refused:
        print(f"{r['recording']}: refused: {r['refused']}")
    for r in reports:
        print(f"{r['recording']}: {r['windows']} windows over {r['end_s']:.1f} s")
        if r.get("vrms_mm_s"):
            v = r["vrms_mm_s"]
            print(f"  velocity RMS 10-1,000 Hz: median {v['median']:.3g} mm/s, p95 {v['p95']:.3g}, max {v['max']:.3g} "
                  "(from the samples in g: the recording's `unit`, default g)")
        if r.get("error"):
            print(f"  {r['error']}" + (f" (input: {_issues(r)})" if r["issues"] else ""))
            continue
        at = r["commissioned_at_s"]
        classes = ", ".join(
            f"{c['n']} windows at {c['rpm'][0]:g}-{c['rpm'][1]:g} rpm" if c["rpm"][1] else f"{c['n']} windows (any speed)"
            for c in r["classes"])
        print(("  not commissioned" if at is None else f"  commissioned at {at:.1f} s") + (f": {classes}" if classes else ""))
        st = r["states"]
        raised = len([a for a in r["alarms"] if a["op"] == "raise"])
        first = "" if r["first_alarm_s"] is None else f", the first at {r['first_alarm_s']:.1f} s"
        print(f"  judged {st['judged']}, uncommissioned {st['uncommissioned']}; "
              f"alarms: {'none' if not raised else raised} raised{first}")
        for s in r["stages"]:
            print(f"    {s['t_s']:>10.1f} s  {s['stage']}")
        if r["issues"]:
            print("  input: " + _issues(r))
    if refused:
        print(f"edgefleet: error: {len(refused)} of {len(files)} recordings refused (above)", file=sys.stderr)
    return code


def _issues(report: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(report["issues"].items()))
