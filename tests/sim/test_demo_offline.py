"""The demo's plant driven without a broker (benchmarks/demo_offline.py: it joins the simulator and the service's AlarmTracker, so it lives with the benchmarks): the short variant of
`benchmarks/demo_alarms.py --offline`.

sim-0035 is the healthy machine that alarmed in the hour-long demo run of 2026-12-06 (a warning at
523 s, reopened 15 times). Offline, with the noise of seed 2, it raised its first alarm at 515 s:
its middle speed's class had been learned without its first stint, dropped by the settle test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import demo_offline as offline  # noqa: E402


def test_the_offline_plant_is_the_demos():
    args = offline.demo_sim_args()
    plant, schedule = offline.demo_plant(args)
    # the faulty machines the demo's own report named (benchmarks/results/demo_alarms.json)
    assert plant.faulty == ["sim-0044", "sim-0053", "sim-0057", "sim-0060", "sim-0068", "sim-0087"]
    assert len(plant.nodes) == 100 and schedule is not None and schedule.n_points == 3
    assert args.commission and args.commission_windows == 64 and tuple(args.speed_hold) == (30.0, 60.0)


def test_healthy_sim_0035_raises_no_alarm_after_commissioning():
    args = offline.demo_sim_args()
    run = offline.run(args, 600.0, only=["sim-0035"], keep_records=["sim-0035"], noise_seed=2)
    recs = run.records["sim-0035"]
    judged = [r for r in recs if r.judged]
    assert len(recs) == 600 and len(judged) > 250  # commissioned, and judged for most of the rest
    assert {r.cls for r in judged} == {0, 1, 2}
    assert run.raises() == {}, [(c.ts - offline.T0_MS) / 1000 for c in run.changes if c.op == "raise"]
    node = run.fleets[0].links[0].node  # type: ignore[attr-defined]
    first_stint = [r.rpm for r in recs[:30]]  # the schedule starts it at its middle speed
    k = node.baseline.class_for(first_stint[0])
    assert k == 1 and sum(r.cls == 1 and r.anom for r in judged) == 0
