"""Simulated nodes on the shipped v2 fleet model: every result carries its velocity (mm/s) and
running speed, and the anomalous results of a machine that develops unbalance say why."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from device_sim.fleet import Fleet, FleetOptions
from device_sim.link import LinkOptions
from device_sim.physics import Fault
from device_sim.plant import make_plant
from edgefleet.runtime.artifact import load_artifact

MODEL = Path(__file__).resolve().parents[2] / "edgefleet" / "models" / "fleet-v2" / "model.efm"


def test_results_carry_velocity_speed_and_the_why_of_an_unbalance(mosquitto, recorder_factory):
    art = load_artifact(MODEL)
    assert art.features.params.version == 2
    rec = recorder_factory(mosquitto.port)
    plant = make_plant(4, seed=3, rates=(12000.0,))
    fleet = Fleet(plant, art, LinkOptions("127.0.0.1", mosquitto.port),
                  FleetOptions(period_s=0.4, ticks_per_period=2, commission=True, commission_windows=20))
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    runner = threading.Thread(target=fleet.run, args=(90.0,), daemon=True)
    runner.start()
    # 20 windows of commissioning at 0.4 s (longer on a busy machine: wait for it, not a fixed time)
    deadline = time.monotonic() + 60
    while not all(link.node.baseline for link in fleet.links) and time.monotonic() < deadline:
        time.sleep(0.2)
    dev = plant.nodes[1].device_id
    fleet.inject_fault(dev, Fault.UNBALANCE, peak_mm_s=6.0)
    while time.monotonic() < deadline + 20 and sum(
            r["anom"] for d, b, _ in rec.of("result") if d == dev for r in b["res"]) < 8:
        time.sleep(0.2)
    fleet.stop()
    runner.join(30)
    assert fleet.drain(10)
    fleet.shutdown()
    results = [(d, r) for d, b, _ in rec.of("result") for r in b["res"]]
    assert results and all("vrms" in r and "rpm" in r for _, r in results)
    healthy = [r["vrms"] for d, r in results if d != dev]
    assert 0.2 < min(healthy) and max(healthy) < 4.5  # ISO 20816 zones A/B
    judged_bad = [r for d, r in results if d == dev and r["anom"]]
    assert len(judged_bad) >= 5
    assert all(r["why"] and r["hint"] for r in judged_bad)
    hints = [r["hint"] for r in judged_bad]
    assert hints.count("unbalance") >= len(hints) // 2, hints
    rpm = judged_bad[-1]["rpm"]
    top = judged_bad[-1]["why"][0]
    f1 = rpm / 60  # the band that rises most holds 1x or touches it (a line's lobe spans ~2 Hz)
    assert ("lo" in top and top["lo"] - 0.1 * f1 <= f1 < top["hi"] + 0.1 * f1) or top.get("name") == "vrms", top
    assert judged_bad[-1]["vrms"] > max(healthy)
    assert not any(r.get("why") for d, r in results if not r["anom"])


def test_nodes_without_a_speed_input_learn_classes_by_their_estimated_speed(mosquitto, recorder_factory):
    """No tachometer: the v2 front end's speed estimate keys the operating classes and is the rpm
    each result reports; it matches the machine's true speed."""
    import numpy as np

    from device_sim.schedule import Schedule

    art = load_artifact(MODEL)
    rec = recorder_factory(mosquitto.port)
    plant = make_plant(3, seed=5, rates=(12000.0,))
    # two speeds within the machines' usual range (at half speed a weak 1x lets the estimate slip
    # an octave now and then, which costs windows: docs/ARCHITECTURE.md, features v2 gaps)
    sched = Schedule.stepped(3, np.random.default_rng(1), speeds=2, factor_range=(0.75, 1.0), hold_s=(10.0, 10.0))
    fleet = Fleet(plant, art, LinkOptions("127.0.0.1", mosquitto.port),
                  FleetOptions(period_s=0.25, ticks_per_period=1, commission=True, commission_windows=16,
                               schedule=sched, speed_input=False))
    fleet.start()
    assert fleet.wait_connected(1.0, 10)
    fleet.run(24.0)
    assert fleet.drain(10)
    fleet.shutdown()
    classes = {n.device_id: len(fleet.links[i].node.baseline.classes) if fleet.links[i].node.baseline else 0
               for i, n in enumerate(plant.nodes)}
    logs = {n.device_id: (fleet.links[i].node.commissioner.counts(), fleet.links[i].node.commissioner.skipped) for i, n in enumerate(plant.nodes) if fleet.links[i].node.commissioner}
    assert all(c == 2 for c in classes.values()), (classes, logs)  # one class per speed, without an rpm input
    t_of = {}
    for d, b, _ in rec.of("result"):
        for r in b["res"]:
            t_of.setdefault(d, []).append(r["rpm"])
    speeds = {s.device_id: sorted({round(float(f) * float(plant.machines.rpm[s.row]), -1)
                                   for f in sched.factors[i]}) for i, s in enumerate(plant.nodes)}
    for d, rpms in t_of.items():
        # every reported speed is one of the machine's two operating speeds (within slip and 3 %)
        lo, hi = min(speeds[d]) * 0.9, max(speeds[d]) * 1.03
        assert all(lo <= r <= hi for r in rpms), (d, min(rpms), max(rpms), speeds[d])
