"""The demo's plant without a broker: its nodes' results straight into the service's alarm rules.

`edgefleet demo` runs an hour of wall time to show whether healthy machines raise alarms. This
drives the same plant (built by `edgefleet sim`'s own parser and functions from the demo's
arguments), the same `Fleet` ticks (physics, features, commissioning, judging, drift), the same
node messages (ring -> result message -> the service's decoder) and the same `AlarmTracker`
ingest uses, as fast as the CPU allows: simulation time instead of the wall clock. What it leaves
out is the network (no loss in the demo either) and the demo's wall-clock jitter.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.plant import Plant, make_plant
from device_sim.schedule import Schedule
from edgefleet import protocol
from edgefleet.protocol import ResultRecord
from edgefleet.service.alarms import AlarmChange, AlarmTracker

REPO = Path(__file__).resolve().parents[1]
T0_MS = 1_800_000_000_000  # window timestamps: simulation time from a fixed epoch


def demo_sim_args(nodes: int = 100, faulty: int = 6, seed: int = 0, commission_windows: int = 64,
                  speeds: int = 3, fault: str = "all") -> argparse.Namespace:
    """The arguments `edgefleet demo` gives `edgefleet sim`, parsed by the sim command's own parser."""
    from edgefleet.commands import sim

    ap = argparse.ArgumentParser()
    sim.register(ap.add_subparsers())
    model = REPO / "edgefleet" / "models" / "fleet-v2"
    return ap.parse_args(["sim", "--broker", "mqtt://127.0.0.1:1", "--nodes", str(nodes), "--procs", "2",
                          "--faulty", str(faulty), "--fault", fault, "--model", str(model), "--seed", str(seed),
                          "--commission-windows", str(commission_windows), "--speeds", str(speeds),
                          "--speed-hold", "30", "60"])


def demo_plant(args: argparse.Namespace) -> tuple[Plant, Schedule | None]:
    """The whole plant and schedule exactly as `edgefleet sim` builds them (commands/sim.py `run`)."""
    from device_sim.physics import fault_from_label
    from edgefleet.commands.sim import fault_onset, parse_fault_kinds

    kinds = parse_fault_kinds(args.fault_kinds)
    plant = make_plant(args.nodes, n_faulty=args.faulty, seed=args.seed, prefix=args.prefix, n_sites=args.sites,
                       fault_onset_s=fault_onset(args), fault_ramp_s=tuple(args.fault_ramp),
                       kinds=tuple(map(fault_from_label, kinds)), fault_peak_mm_s=tuple(args.fault_size_mm_s))
    schedule = None
    if args.speeds > 1:
        schedule = Schedule.stepped(args.nodes, np.random.default_rng(args.seed + 17), speeds=args.speeds,
                                    hold_s=tuple(args.speed_hold), ramp_s=args.speed_ramp)
    return plant, schedule


@dataclass
class Run:
    """What the alarm rules made of the results: every change, per device, and the records fed."""

    changes: list[AlarmChange] = field(default_factory=list)
    results: int = 0
    judged: int = 0
    records: dict[str, list[ResultRecord]] = field(default_factory=dict)  # only devices asked to be kept

    def raises(self) -> dict[str, list[AlarmChange]]:
        out: dict[str, list[AlarmChange]] = {}
        for ch in self.changes:
            if ch.op == "raise":
                out.setdefault(ch.device, []).append(ch)
        return out


def demo_fleets(args: argparse.Namespace, only: Iterable[str] | None = None, noise_seed: int = 0) -> list[Fleet]:
    """One `Fleet` per worker process of the demo (`--procs 2`: node i in worker i mod 2, seeded
    seed + worker), optionally keeping only the devices `only` (each machine is simulated alone:
    the others change only the noise draws); `noise_seed` != 0 draws other noise on the same plant."""
    from edgefleet.runtime.artifact import load_artifact

    plant, schedule = demo_plant(args)
    model = Path(args.model)
    artifact = load_artifact(model / "model.efm" if model.is_dir() else model)
    keep = set(only) if only is not None else None
    fleets = []
    for part in range(args.procs):
        nodes = tuple(n for n in plant.nodes[part::args.procs] if keep is None or n.device_id in keep)
        if not nodes:
            continue
        fleets.append(Fleet(replace(plant, nodes=nodes), artifact, LinkOptions("127.0.0.1", 1),
                            FleetOptions(period_s=args.period, calibrate_n=args.calibrate, seed=args.seed + part + 1000 * noise_seed,
                                         commission=args.commission, commission_windows=args.commission_windows,
                                         schedule=schedule, speed_input=args.speed_input)))
    return fleets


def tick(fleet: Fleet, k: int, t_sim: float, ts_ms: int) -> list[ResultRecord]:
    """`Fleet.tick` without the network: each due node takes its window's result into its ring,
    then hands the ring over as result messages, decoded as the service decodes them."""
    o = fleet.opts
    rows = np.flatnonzero(fleet.slot_of == k % o.ticks_per_period)
    if rows.size == 0:
        return []
    machines = fleet.machines_at(t_sim)
    scores, shadow, debug = fleet._score(rows, t_sim, set(), machines)
    every = debug.pop(-1)
    rpm = fleet._speeds(rows, every, machines, t_sim)
    verdicts = fleet._commissioning(rows, scores, every["features"], rpm, every["excess"], every.get("sensor"),
                                    t_sim, shadow)
    readings = fleet._readings(rows, every, rpm)
    out: list[ResultRecord] = []
    for i, r in enumerate(rows.tolist()):
        node = fleet.links[r].node
        node.add_result(ts_ms, float(scores[i]), 1000, verdict=verdicts[i], reading=readings[i])
        while (msg := node.next_message(flush=True)) is not None:
            m = protocol.decode_message(msg.topic, msg.payload)
            out.extend(protocol.result_records(m.device, m.body))
            node.commit(msg.results)
    return out


def run(args: argparse.Namespace, seconds: float, *, only: Iterable[str] | None = None,
        keep_records: Iterable[str] = (), tracker: AlarmTracker | None = None, noise_seed: int = 0,
        progress: Callable[[float], None] | None = None) -> Run:
    """Simulate `seconds` of the demo's plant, every result through the alarm rules ingest uses."""
    fleets = demo_fleets(args, only, noise_seed)
    tracker = tracker or AlarmTracker()
    keep = set(keep_records)
    res = Run()
    tick_s = args.period / FleetOptions.ticks_per_period
    n_ticks = int(round(seconds / tick_s))
    for k in range(n_ticks):
        t = k * tick_s
        ts = T0_MS + int(round(t * 1000))
        recs = [rec for fl in fleets for rec in tick(fl, k, t, ts)]
        recs.sort(key=lambda r: (r.device, r.ts, r.seq))
        res.results += len(recs)
        res.judged += sum(r.judged for r in recs)
        for rec in recs:
            if rec.device in keep:
                res.records.setdefault(rec.device, []).append(rec)
        res.changes.extend(tracker.observe_many(recs))
        if progress is not None and k % (600 * FleetOptions.ticks_per_period) == 0:
            progress(t)
    res.fleets = fleets  # type: ignore[attr-defined]
    return res


__all__ = ["Run", "demo_fleets", "demo_plant", "demo_sim_args", "run", "tick"]
