"""The simulated node's sensor check and drift following (issue 19, docs/baseline.md "Sensor faults" and
"Drift after commissioning"): the real node logic of `device_sim`, driven tick by tick in simulated
time (a snapshot every 30 minutes, as a node that wakes to measure), its result and status messages
encoded and decoded by the protocol, and the fleet service's alarm tracker fed from them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.node import DRIFT_CHUNK, DriftFollower
from device_sim.physics import Fault, make_machines, vary_machines, with_faults
from device_sim.plant import NodeSpec, Plant
from edgefleet.protocol import decode, result_records
from edgefleet.runtime import baseline as bl
from edgefleet.runtime.artifact import load_artifact
from edgefleet.service.alarms import AlarmPolicy, AlarmTracker

MODEL = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-default" / "model.efm"
N = 3
STEP = 1800.0  # seconds between windows
DAY = 86400.0
COMMISSIONED = 96 * STEP  # 32 windows learn; room for restarts (a class still settling drops its older half)


class Rig:
    """A fleet of N nodes, its alarm tracker, and every result the nodes published (decoded)."""

    def __init__(self, follow_drift: bool = True, seed: int = 4) -> None:
        rng = np.random.default_rng(seed)
        m = vary_machines(make_machines(N, rng, bearing=None), rng)
        nodes = tuple(NodeSpec(f"d-{i}", "north", "L1", ("pump",), 12000.0, i) for i in range(N))
        self.fleet = Fleet(Plant(m, nodes), load_artifact(MODEL), LinkOptions("127.0.0.1", 1),
                           FleetOptions(commission=True, commission_windows=32, seed=seed))
        for lk in self.fleet.links:
            lk.node.follow_drift = follow_drift
        self.gain0 = m.gain.copy()
        self.tracker = AlarmTracker(AlarmPolicy())
        self.results: dict[str, list] = {lk.node.device_id: [] for lk in self.fleet.links}
        self.changes: dict[str, list] = {lk.node.device_id: [] for lk in self.fleet.links}  # alarm ops

    def run(self, t0: float, t1: float, gain=None) -> None:
        f, rows = self.fleet, np.arange(N)
        for t in np.arange(t0, t1, STEP):
            if gain is not None:
                f.plant = replace(f.plant, machines=f.plant.machines.with_(gain=gain(float(t))))
            machines = f.machines_at(float(t))
            scores, _, debug = f._score(rows, float(t), set(), machines)
            every = debug.pop(-1)
            rpm = f._speeds(rows, every, machines, float(t))
            verdicts = f._commissioning(rows, scores, every["features"], rpm, every["excess"], every["sensor"],
                                        float(t))
            for i, v in enumerate(verdicts):
                f.links[i].node.add_result(int(t * 1000), float(scores[i]), 0, verdict=v)
        for lk in f.links:  # what the node publishes, through the codec, into the service's tracker
            node = lk.node
            while (msg := node.next_message(flush=True)) is not None:
                node.commit(msg.results)
                for rec in result_records(node.device_id, decode("result", msg.payload)):
                    self.results[node.device_id].append(rec)
                    ch = self.tracker.observe(rec)
                    if ch is not None:
                        self.changes[node.device_id].append(ch.op)

    def fault(self, i: int, t: float) -> None:
        self.fleet.plant = replace(self.fleet.plant, machines=with_faults(
            self.fleet.plant.machines, [i], Fault.OUTER_RACE, onset_s=t, ramp_s=1.0, peak_g=2.0))


def ramp(rig: Rig, start: float, gain: float = 1.15, days: float = 3.0):
    """Machine 0's vibration rises by `gain` over `days` (warm-up, run-in): benign slow drift."""
    return lambda t: rig.gain0 * np.where(np.arange(N) == 0, 1 + (gain - 1) * min(1.0, (t - start) / (days * DAY)), 1.0)


@pytest.fixture(scope="module")
def drifted() -> tuple[Rig, Rig]:
    """The same plant with and without drift following: commissioned, then 4 days of slow drift on d-0."""
    rigs = (Rig(True), Rig(False))
    for rig in rigs:
        rig.run(0.0, COMMISSIONED)
        assert all(lk.node.baseline is not None for lk in rig.fleet.links)
        rig.run(COMMISSIONED, COMMISSIONED + 4 * DAY, ramp(rig, COMMISSIONED))
    return rigs


def test_slow_drift_moves_the_baseline_and_a_status_reports_it(drifted):
    rig, still = drifted
    node = rig.fleet.links[0].node
    commissioned = still.fleet.links[0].node.baseline
    assert node.baseline_changes, "4 days of slow drift moved no class centre"
    assert all(0.1 <= c["max_shift_spreads"] <= bl.DRIFT_CAP + 1e-9 for c in node.baseline_changes)
    moved = (node.baseline.classes[0].center.astype(int) - commissioned.classes[0].center.astype(int))
    assert (moved > 0).mean() > 0.5  # louder: the centres followed up
    birth = decode("status", node.birth(1).payload)
    last = node.baseline_changes[-1]
    assert birth["comm"]["drift"] == {"cls": last["cls"], "max_shift_spreads": last["max_shift_spreads"],
                                      "ts": int(last["t_s"] * 1000)}
    assert birth["comm"]["hash"] != commissioned.digest() and birth["comm"]["hash"] == node.baseline.digest()
    assert still.fleet.links[0].node.baseline_changes == [] and "drift" not in decode(
        "status", still.fleet.links[0].node.birth(1).payload)["comm"]
    # following the drift judges the drifting machine normal more often than the commissioned baseline does
    late = lambda r: [x.anom for x in r.results["d-0"] if not x.state][-4 * DRIFT_CHUNK:]  # noqa: E731
    assert np.mean(late(rig)) <= np.mean(late(still)), (np.mean(late(rig)), np.mean(late(still)))


def test_a_fault_after_drift_is_still_alarmed(drifted):
    rig, _ = drifted
    t = COMMISSIONED + 4 * DAY
    rig.fault(0, t)
    rig.run(t, t + 40 * STEP)
    assert "raise" in rig.changes["d-0"], rig.changes["d-0"]
    judged = [r for r in rig.results["d-0"] if not r.state][-30:]
    assert np.mean([r.anom for r in judged]) > 0.9
    assert all(c["max_shift_spreads"] <= bl.DRIFT_CAP + 1e-9 for c in rig.fleet.links[0].node.baseline_changes)


def test_a_dead_sensor_gives_sensor_dead_and_never_clears_an_alarm():
    rig = Rig(True, seed=5)
    rig.run(0.0, COMMISSIONED)
    rig.fault(1, COMMISSIONED)
    rig.run(COMMISSIONED, COMMISSIONED + 20 * STEP)
    assert rig.changes["d-1"].count("raise") == 1 and "clear" not in rig.changes["d-1"]
    before = rig.fleet.links[1].node.baseline.to_bytes()
    t = COMMISSIONED + 20 * STEP
    for row in (1, 2):  # d-1 (alarmed) and d-2 (healthy) go dead: flat, and the noise floor only
        rig.fleet.sensor_faults[row] = (("dead_flat", "dead_noise")[row - 1], t)
    rig.run(t, t + 3 * DRIFT_CHUNK * STEP)
    for dev in ("d-1", "d-2"):
        after = [r for r in rig.results[dev] if r.ts >= t * 1000]
        assert after and all(r.state == "sensor_dead" and not r.anom and r.score == 0.0 for r in after), dev
        assert not any(r.judged for r in after)
    assert "clear" not in rig.changes["d-1"], rig.changes["d-1"]  # the dead sensor did not clear the alarm
    assert "raise" not in rig.changes["d-2"]
    node = rig.fleet.links[1].node
    assert node.baseline.to_bytes() == before  # nor did it move the baseline
    assert node.sensor_windows == {"sensor_dead": 3 * DRIFT_CHUNK}
    assert rig.fleet.links[0].node.sensor_windows == {}  # the healthy sensor: every window judged
    per = rig.fleet.report()["per_device"]
    assert per["d-1"]["sensor_windows"] == {"sensor_dead": 3 * DRIFT_CHUNK} and per["d-0"]["sensor_windows"] == {}


def test_a_reboot_loses_the_chunk_but_keeps_the_commissioned_centres(drifted):
    rig, _ = drifted
    node = rig.fleet.links[2].node
    origin = [o.copy() for o in node.drift.origin]
    node.reboot()
    assert node.drift.count == 0 and all(r == [] for r in node.drift.rows)
    assert all((a == b).all() for a, b in zip(node.drift.origin, origin))  # the cap stays where commissioning put it


def test_drift_follower_steps_as_the_replay_does():
    """The node's chunked follower against the replay's `score_following_drift` arithmetic, on the same
    rows and times: the same centres and the same reported changes."""
    rng = np.random.default_rng(1)
    n = 8
    spread = np.full(n, 40, np.int16)
    c = bl.ClassBaseline(0.0, 0.0, 32, 1.0, 1.5, np.zeros(n, np.int16), spread)
    base = bl.Baseline(1, 0, (c,), n)
    f = DriftFollower.start(base, 0.0)
    origin, noted, changes, ref = c.center.copy(), c.center.astype(np.int64), [], c
    t = 0.0
    for step in range(20):
        rows = (rng.normal(30 + 3 * step, 10, (DRIFT_CHUNK, n))).astype(np.int16)
        keep = rng.random(DRIFT_CHUNK) < 0.7
        for j in range(DRIFT_CHUNK):
            t += 3600.0
            f.add(0 if keep[j] else None, rows[j] if keep[j] else None)
        base, got = f.step(base, t)
        ref = bl.drift(ref, origin, rows[keep], DRIFT_CHUNK * 3600.0)
        if (np.abs(ref.center.astype(np.int64) - noted) / spread).max() >= 0.1:
            noted = ref.center.astype(np.int64)
            changes.append({"t_s": t, "cls": 0, "max_shift_spreads": round(float((np.abs(noted) / spread).max()), 3)})
        assert base.classes[0].center.tolist() == ref.center.tolist()
        assert got == changes[-1:] if got else True
    assert len(changes) >= 3 and f.count == 0
