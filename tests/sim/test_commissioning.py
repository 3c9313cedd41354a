"""Commissioning on the simulated node (docs/baseline.md): the real node logic of `device_sim`,
driven tick by tick without a network, on machines that change speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.physics import Fault, make_machines, vary_machines, with_faults
from device_sim.plant import NodeSpec, Plant
from device_sim.schedule import Schedule
from edgefleet.protocol import decode
from edgefleet.runtime.artifact import load_artifact

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "edgefleet" / "models" / "fleet-default" / "model.efm"


def make_fleet(n: int = 6, faulty: int = 2, windows: int = 20, seed: int = 4) -> Fleet:
    rng = np.random.default_rng(seed)
    m = vary_machines(make_machines(n, rng, bearing=None), rng)
    m = with_faults(m, np.arange(n - faulty, n), Fault.OUTER_RACE, onset_s=3000.0, ramp_s=1.0, peak_g=2.0)
    nodes = tuple(NodeSpec(f"c-{i}", "north", "L1", ("pump",), 12000.0, i) for i in range(n))
    sched = Schedule.stepped(n, rng, speeds=3, hold_s=(150.0, 300.0))
    return Fleet(Plant(m, nodes), load_artifact(MODEL), LinkOptions("127.0.0.1", 1),
                 FleetOptions(commission=True, commission_windows=windows, schedule=sched, seed=seed))


def run(fleet: Fleet, t0: float, t1: float, step: float = 10.0) -> list[list]:
    rows = np.arange(len(fleet.links))
    out = []
    for t in np.arange(t0, t1, step):
        machines = fleet.machines_at(float(t))
        scores, _, debug = fleet._score(rows, float(t), set(), machines)
        every = debug.pop(-1)
        rpm = fleet._speeds(rows, every, machines, float(t))
        verdicts = fleet._commissioning(rows, scores, every["features"], rpm, every["excess"])
        for i, v in enumerate(verdicts):
            fleet.links[i].node.add_result(int(t * 1000), float(scores[i]), 0, verdict=v)
        out.append(verdicts)
    return out


@pytest.fixture(scope="module")
def learned() -> tuple[Fleet, list[list]]:
    fleet = make_fleet(windows=64)
    return fleet, run(fleet, 0.0, 2900.0, step=4.0)


def test_nodes_commission_by_themselves_then_judge(learned):
    fleet, ticks = learned
    assert all(v.state == "commissioning" and not v.anom for v in ticks[0])
    for lk in fleet.links:
        b = lk.node.baseline
        assert b is not None and len(b.classes) == 3, lk.node.device_id  # every speed learned
        assert all(c.windows >= 20 for c in b.classes) and lk.node.commissioner is None
    judged = [v for tick in ticks[-60:] for v in tick if v is not None and not v.state]
    assert len(judged) > 300 and np.mean([v.anom for v in judged]) < 0.005  # healthy before any fault


def test_faults_after_commissioning_are_anomalous_and_the_rest_stay_normal(learned):
    fleet, _ = learned
    ticks = run(fleet, 3100.0, 3400.0)
    for i in range(len(fleet.links)):
        flags = [t[i].anom for t in ticks if t[i] is not None and not t[i].state]
        assert flags, i
        if i >= 4:
            assert np.mean(flags) > 0.9, i
        else:
            assert np.mean(flags) < 0.05, i


def test_results_and_status_carry_commissioning_on_the_wire(learned):
    fleet, _ = learned
    node = fleet.links[0].node
    birth = decode("status", node.birth(1).payload)
    comm = birth["comm"]
    assert comm["state"] == "commissioned" and len(comm["classes"]) == 3 and len(comm["hash"]) == 16
    assert "commission" in birth["caps"]
    while True:  # the ring holds the commissioning results first, then the judged ones
        msg = node.next_message(flush=True)
        body = decode("result", msg.payload)
        node.commit(msg.results)
        if "state" not in body["res"][0]:
            break
    assert "cls" in body and "hi_thr" in body and all("hi" in r and "state" not in r for r in body["res"])
    fresh = make_fleet(n=1, faulty=0)
    run(fresh, 0.0, 30.0)
    first = decode("result", fresh.links[0].node.next_message(flush=True).payload)
    assert all(r["state"] == "commissioning" and r["anom"] is False for r in first["res"])
    assert decode("status", fresh.links[0].node.birth(1).payload)["comm"]["state"] == "commissioning"


def test_a_reboot_keeps_the_baseline(learned):
    fleet, _ = learned
    node = fleet.links[1].node
    before = node.baseline.to_bytes()
    node.reboot()
    assert node.baseline.to_bytes() == before and node.commissioner is None


def test_commission_command_relearns_one_class_and_keeps_the_others():
    fleet = make_fleet(n=1, faulty=0, windows=16)
    run(fleet, 0.0, 2000.0)
    node = fleet.links[0].node
    old = node.baseline
    assert len(old.classes) == 3
    mid = old.classes[1]
    rpm = 0.5 * (mid.rpm_lo + mid.rpm_hi)
    out = node.handle_command({"id": "c1", "op": "commission", "rpm": rpm, "windows": 16}, 1)
    assert decode("status", out[0].payload)["comm"]["state"] == "commissioning"
    run(fleet, 2000.0, 5000.0)
    new = node.baseline
    assert node.commissioner is None and len(new.classes) == 3
    assert new.classes[0].center.tolist() == old.classes[0].center.tolist()  # kept
    assert new.classes[2].center.tolist() == old.classes[2].center.tolist()
    assert new.learned_ms != old.learned_ms


def test_commission_end_with_too_few_windows_keeps_learning():
    fleet = make_fleet(n=1, faulty=0, windows=64)
    run(fleet, 0.0, 50.0)  # 5 windows
    node = fleet.links[0].node
    assert node.handle_command({"id": "e1", "op": "commission_end"}, 1) == []
    assert node.commissioner is not None and node.commission_log[-1][0] == "too_few_windows"


def test_a_new_model_with_the_same_front_end_keeps_the_normal_and_rederives_thresholds(learned):
    fleet, _ = learned
    node = fleet.links[2].node
    before = node.baseline
    art = load_artifact(MODEL)
    art.model_version = 7
    art.scoring.threshold = float(art.scoring.threshold) * 2
    from edgefleet.runtime.engine import Detector

    fleet._detectors[7] = Detector(art)
    node.model_version = 7
    run(fleet, 3000.0, 3010.0)
    after = node.baseline
    assert node.baseline_model == 7
    assert [c.center.tolist() for c in after.classes] == [c.center.tolist() for c in before.classes]
    assert json.dumps(after.summary()["classes"]) == json.dumps(before.summary()["classes"])  # same weights
